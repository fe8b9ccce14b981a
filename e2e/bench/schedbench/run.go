package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/e2e/bench/hollow"
)

// result is one scenario: N hollow nodes, P pods in D Deployments.
type result struct {
	nodes, pods, deployments int

	setup time.Duration // leader start and hollow nodes Ready

	// From the Apply of the Deployments (t0), as the watch saw it.
	// A milestone not reached is 0.
	firstCreated, allCreated, allBound, allRunning, available time.Duration
	lastBound                                                 time.Duration // the last binding seen, reached or not
	created, bound, running                                   int
	timedOut                                                  string // what was not reached in time

	bindLatency []time.Duration // per pod: first seen → first seen bound
	runLatency  []time.Duration // per pod: first seen bound → first seen Running+Ready
	inferred    int             // pods first seen in a re-list (times approximate)
	relists     int

	voters                            int
	leaderCPU, benchCPU, followersCPU time.Duration // over the measured window
	rssPeak, rssEnd                   uint64
	heapPeak, heapEnd                 uint64
	gcCPU                             float64
	raftEntries                       float64
	raftWrites                        float64
	kubelet                           hollow.Stats

	nodesExist, nodesReady int // hollow Node objects after the run
	profile, heapProfile   string
	watchErr               error
}

// podsPerSecond is pods bound over the time from the first pod's creation
// to the last binding.
func (r *result) podsPerSecond() float64 {
	d := r.lastBound - r.firstCreated
	if r.bound == 0 || d <= 0 {
		return 0
	}
	return float64(r.bound) / d.Seconds()
}

// runScenario runs one scenario on a fresh leader.
func runScenario(ctx context.Context, o *options, root string, nodes int) (*result, error) {
	r := &result{nodes: nodes, pods: o.pods, deployments: o.deployments}
	dir, err := os.MkdirTemp(root, fmt.Sprintf("nodes-%d-", nodes))
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	logf("%d nodes: starting the leader (data in %s)", nodes, dir)
	l, err := startLeader(ctx, dir, o.addr, o.statsAddr, o.logLevel, o.readyTimeout)
	if l != nil {
		defer l.stop()
	}
	if err != nil {
		return nil, err
	}
	followers, err := startFollowers(ctx, l, dir, o.followerAddrs, o.logLevel, o.readyTimeout)
	for _, f := range followers {
		defer f.stop()
	}
	if err != nil {
		return nil, err
	}
	// No pod lands on the agents' own nodes: no kubelet runs there.
	for _, name := range append([]string{leaderName}, names(followers)...) {
		if err := cordon(ctx, l.api, name); err != nil {
			return nil, fmt.Errorf("cordon node %s: %w", name, err)
		}
	}
	h := hollow.New(l.api, hollow.Config{Nodes: nodes, CPU: o.nodeCPU, Memory: o.nodeMemory, Pods: o.nodePods})
	cctx, cancel := context.WithTimeout(ctx, o.readyTimeout)
	err = h.CreateNodes(cctx)
	cancel()
	if err != nil {
		return nil, err
	}
	r.setup = time.Since(t0)
	logf("%d nodes: leader and %d hollow nodes Ready after %v", nodes, nodes, r.setup.Round(time.Millisecond))

	// One watch for the measurements and the hollow kubelet.
	list, err := l.api.List(ctx, &api.ListRequest{Kind: "Pod"})
	if err != nil {
		return nil, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w := newPodWatch(l.api, h)
	go w.run(wctx, list.GetResourceVersion())
	go h.Run(wctx)

	if o.profileDir != "" {
		r.profile = filepath.Join(o.profileDir, fmt.Sprintf("leader-cpu-%dnodes.pprof", nodes))
		r.heapProfile = filepath.Join(o.profileDir, fmt.Sprintf("leader-heap-%dnodes.pprof", nodes))
		if err := l.profile(ctx, r.profile); err != nil {
			return nil, fmt.Errorf("start the leader's CPU profile: %w", err)
		}
	}
	st0, err := l.stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("leader stats: %w", err)
	}
	cpu0, bench0, fcpu0 := l.cpu(), procCPU(os.Getpid()), cpuOf(followers)

	start := time.Now()
	deps := deployments(o, nodes)
	for from := 0; from < len(deps); from += 1000 {
		objs := deps[from:min(from+1000, len(deps))]
		if _, err := l.api.Apply(ctx, &api.ApplyRequest{Objects: objs}); err != nil {
			return nil, fmt.Errorf("apply deployments: %w", err)
		}
	}
	logf("%d nodes: %d Deployments applied (%d pods)", nodes, len(deps), o.pods)

	deadline := start.Add(o.timeout)
	r.waitPods(ctx, w, start, deadline)
	if r.timedOut == "" {
		r.available = waitAvailable(ctx, l.api, o.pods, start, deadline)
		if r.available == 0 {
			r.timedOut = "Deployments available"
		}
	}
	r.leaderCPU, r.benchCPU, r.followersCPU = l.cpu()-cpu0, procCPU(os.Getpid())-bench0, cpuOf(followers)-fcpu0
	r.voters = 1 + len(followers)
	if o.profileDir != "" {
		if err := l.profile(ctx, ""); err != nil {
			logf("stop the leader's CPU profile: %v", err)
		}
		if err := l.saveHeap(ctx, r.heapProfile); err != nil {
			logf("leader heap profile: %v", err)
		}
	}
	st1, err := l.stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("leader stats: %w", err)
	}
	r.heapPeak, r.heapEnd, r.gcCPU = st1.HeapPeakBytes, st1.HeapBytes, st1.GCCPUSeconds-st0.GCCPUSeconds
	r.raftEntries, r.raftWrites = st1.RaftEntries-st0.RaftEntries, st1.RaftWrites-st0.RaftWrites
	r.rssEnd, r.rssPeak = l.rss()
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := h.Idle(ictx); err != nil {
		logf("%d nodes: the hollow kubelet still writes: %v", nodes, err)
	}
	cancel()
	r.kubelet = h.Stats()
	stopWatch()

	times, relists, werr := w.snapshot()
	r.relists, r.watchErr = relists, werr
	r.timesFrom(times, start)
	for _, t := range times {
		if t.inferred {
			r.inferred++
			continue
		}
		if !t.bound.IsZero() {
			r.bindLatency = append(r.bindLatency, t.bound.Sub(t.created))
		}
		if !t.running.IsZero() && !t.bound.IsZero() {
			r.runLatency = append(r.runLatency, t.running.Sub(t.bound))
		}
	}
	sort.Slice(r.bindLatency, func(i, j int) bool { return r.bindLatency[i] < r.bindLatency[j] })
	sort.Slice(r.runLatency, func(i, j int) bool { return r.runLatency[i] < r.runLatency[j] })

	cctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	r.nodesExist, r.nodesReady, err = h.CheckNodes(cctx)
	cancel()
	if err != nil {
		logf("list hollow nodes: %v", err)
	}
	if !o.keep {
		for _, f := range followers {
			f.stop()
		}
		l.stop()
		if err := os.RemoveAll(dir); err != nil {
			logf("remove %s: %v", dir, err)
		}
	}
	return r, nil
}

// waitPods follows the watch until every pod is Running+Ready (so also
// created and bound), or the deadline passes, logging progress every 2 s.
// The times themselves come from the watch's records afterwards.
func (r *result) waitPods(ctx context.Context, w *podWatch, start, deadline time.Time) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Now()
	for {
		created, bound, running, _ := w.counts()
		if running >= r.pods {
			return
		}
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			logf("%d nodes: %v: %d created, %d bound, %d Running+Ready", r.nodes, time.Since(start).Round(time.Second), created, bound, running)
		}
		select {
		case <-ctx.Done():
			r.timedOut = "interrupted"
			return
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			switch {
			case created < r.pods:
				r.timedOut = fmt.Sprintf("all created (%d of %d)", created, r.pods)
			case bound < r.pods:
				r.timedOut = fmt.Sprintf("all bound (%d of %d)", bound, r.pods)
			default:
				r.timedOut = fmt.Sprintf("all Running (%d of %d)", running, r.pods)
			}
			return
		}
	}
}

// timesFrom fills the milestones from the watch's records: each the
// moment its last pod reached it, from start.
func (r *result) timesFrom(times []podTimes, start time.Time) {
	var first, lastCreated, lastBound, lastRunning time.Time
	for _, t := range times {
		r.created++
		if first.IsZero() || t.created.Before(first) {
			first = t.created
		}
		lastCreated = later(lastCreated, t.created)
		if !t.bound.IsZero() {
			r.bound++
			lastBound = later(lastBound, t.bound)
		}
		if !t.running.IsZero() {
			r.running++
			lastRunning = later(lastRunning, t.running)
		}
	}
	since := func(t time.Time) time.Duration {
		if t.IsZero() {
			return 0
		}
		return t.Sub(start)
	}
	r.firstCreated, r.allCreated, r.allBound, r.allRunning = since(first), since(lastCreated), since(lastBound), since(lastRunning)
	if r.created < r.pods {
		r.allCreated = 0
	}
	if r.bound < r.pods {
		r.allBound = 0
	}
	if r.running < r.pods {
		r.allRunning = 0
	}
	r.lastBound = since(lastBound)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// waitAvailable polls the Deployments until their status counts every
// replica available: the controllers have seen every status.
func waitAvailable(ctx context.Context, client api.ShoalClient, pods int, start, deadline time.Time) time.Duration {
	for time.Now().Before(deadline) && ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := client.List(qctx, &api.ListRequest{Kind: "Deployment", Namespace: "default"})
		cancel()
		if err == nil {
			n := 0
			for _, o := range list.Items {
				n += int(o.GetDeployment().GetStatus().GetAvailableReplicas())
			}
			if n >= pods {
				return time.Since(start)
			}
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return 0
}

// deployments are the Deployments of the run: o.pods replicas spread over
// o.deployments, pods of one container requesting o.podCPU and o.podMemory.
func deployments(o *options, nodes int) []*api.Object {
	var out []*api.Object
	for i := range o.deployments {
		replicas := o.pods / o.deployments
		if i < o.pods%o.deployments {
			replicas++
		}
		name := fmt.Sprintf("bench-%d-%03d", nodes, i)
		labels := map[string]string{"app": name}
		out = append(out, api.Wrap(&api.Deployment{
			Metadata: &api.ObjectMeta{Name: name, Namespace: "default"},
			Spec: &api.DeploymentSpec{
				Replicas: proto.Int32(int32(replicas)),
				Selector: &api.LabelSelector{MatchLabels: labels},
				Template: &api.PodTemplateSpec{
					Metadata: &api.ObjectMeta{Labels: labels},
					Spec: &api.PodSpec{Containers: []*api.Container{{
						Name: "app", Image: "registry.invalid/hollow/app:1",
						Resources: &api.ResourceRequirements{Requests: map[string]string{"cpu": o.podCPU, "memory": o.podMemory}},
					}}},
				},
			},
		}))
	}
	return out
}

// cordon marks a node unschedulable (the leader's own: no pod lands where
// no kubelet runs).
func cordon(ctx context.Context, client api.ShoalClient, name string) error {
	for attempt := 0; attempt < 20; attempt++ {
		obj, err := client.Get(ctx, &api.GetRequest{Kind: "Node", Name: name})
		if err != nil {
			return err
		}
		n := obj.GetNode()
		n.Status = nil
		if n.Spec == nil {
			n.Spec = &api.NodeSpec{}
		}
		n.Spec.Unschedulable = true
		if _, err = client.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(n)}}); err == nil {
			return nil
		}
		sleepCtx(ctx, 100*time.Millisecond) // a concurrent status write: again
	}
	return fmt.Errorf("node %s: could not cordon", name)
}

func names(ps []*leaderProc) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.name)
	}
	return out
}

func cpuOf(ps []*leaderProc) time.Duration {
	var t time.Duration
	for _, p := range ps {
		t += p.cpu()
	}
	return t
}
