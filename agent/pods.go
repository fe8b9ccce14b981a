package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/api"
)

// podManager runs the pods bound to this node: it compares them with what
// the runtime runs and acts on the difference, one worker per pod so that a
// slow pull holds up only its own pod, and reports their status in batches.
type podManager struct {
	node    string
	hostIP  string
	dataDir string // pods' logs and emptyDir volumes live under it
	// endpointsHave, when set, says whether an address is a ready
	// endpoint of some Service, as this node's load balancer sees it:
	// a terminating pod is stopped once it is not (terminate.go).
	endpointsHave func(ip string) bool
	terminating   map[string]*terminationState // by pod UID; under mu
	// resolvConf, when set, is the resolv.conf of a pod in a namespace
	// (the node's DNS server for service names); nil keeps the image's.
	resolvConf func(namespace string) []byte
	rt         runtime.Runtime
	net        podnet.Network
	api        api.ShoalClient
	log        *slog.Logger

	mu       sync.Mutex
	synced   bool                      // desired holds a full list: until then, nothing is stopped
	desired  map[string]*api.Pod       // by UID
	busy     map[string]bool           // pods whose worker runs
	doneAt   map[string]time.Time      // when each pod's last worker finished
	status   map[string]*api.Pod       // to report: pod (name, namespace) with its new status
	reported map[string]*api.PodStatus // last status written, by UID
	pulls    map[string]*pullState     // failed starts, by UID/container
	trigger  chan struct{}
	flushReq chan struct{} // a status is queued
	rounds   int           // reconcile rounds done, for tests and metrics

	ctx     context.Context          // the manager's, for probe workers
	probers map[string]*proberHandle // by UID/container
	ready   map[string]bool          // readiness by UID/container, from probes
	http    *http.Client             // for httpGet probes
}

// proberHandle is the running probe worker of one container instance.
type proberHandle struct {
	instance string
	cancel   context.CancelFunc
}

// idleAfter reports whether at least n reconcile rounds ran and no pod
// worker is busy.
func (m *podManager) idleAfter(n int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rounds >= n && len(m.busy) == 0
}

// pullState remembers the failed starts of a container before it ran (a
// pull, its configuration or its creation), to back off as Kubernetes does
// (ErrImagePull, then ImagePullBackOff; CreateContainerError retried with
// the same back-off) instead of trying again every round.
type pullState struct {
	failures int
	until    time.Time
	reason   string // shown while backing off
	message  string
}

func newPodManager(node, hostIP, dataDir string, rt runtime.Runtime, net podnet.Network, client api.ShoalClient, log *slog.Logger) *podManager {
	return &podManager{
		node: node, hostIP: hostIP, dataDir: dataDir, rt: rt, net: net, api: client, log: log,
		desired:     map[string]*api.Pod{},
		busy:        map[string]bool{},
		doneAt:      map[string]time.Time{},
		status:      map[string]*api.Pod{},
		reported:    map[string]*api.PodStatus{},
		pulls:       map[string]*pullState{},
		trigger:     make(chan struct{}, 1),
		flushReq:    make(chan struct{}, 1),
		probers:     map[string]*proberHandle{},
		ready:       map[string]bool{},
		terminating: map[string]*terminationState{},
		http:        newProbeHTTPClient(),
	}
}

func (m *podManager) kick() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// run reconciles until ctx ends: on every change of the node's pods, every
// container exit, and every two seconds (back-offs expire, probes change).
func (m *podManager) run(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	events, err := m.rt.Events(ctx)
	if err != nil {
		return fmt.Errorf("runtime events: %w", err)
	}
	go m.watchPods(ctx)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.flushLoop(ctx)
	}()
	announced := false
	for {
		// Before this round's workers start: idle now means the workers of
		// two full rounds have finished, so everything found at start is
		// adopted or acted on.
		if !announced && m.idleAfter(2) {
			announced = true
			m.mu.Lock()
			n := len(m.desired)
			m.mu.Unlock()
			m.log.Info("pods in sync", "pods", n)
		}
		m.reconcile(ctx, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-m.trigger:
		case <-tick.C:
		case _, ok := <-events:
			if !ok {
				return errors.New("runtime events ended")
			}
		}
	}
}

// watchPods keeps desired equal to the pods bound to this node: a list,
// then a watch from the list's resourceVersion; again from a list when the
// watch breaks, so nothing deleted meanwhile is missed.
func (m *podManager) watchPods(ctx context.Context) {
	for ctx.Err() == nil {
		err := func() error {
			list, err := m.api.List(ctx, &api.ListRequest{Kind: "Pod", NodeName: m.node})
			if err != nil {
				return err
			}
			pods := map[string]*api.Pod{}
			for _, o := range list.Items {
				p := o.GetPod()
				pods[p.GetMetadata().GetUid()] = p
			}
			m.mu.Lock()
			m.desired = pods
			m.synced = true
			m.mu.Unlock()
			m.kick()
			w, err := m.api.Watch(ctx, &api.WatchRequest{Kind: "Pod", NodeName: m.node, ResourceVersion: list.ResourceVersion})
			if err != nil {
				return err
			}
			for {
				ev, err := w.Recv()
				if err != nil {
					return err
				}
				p := ev.GetObject().GetPod()
				m.mu.Lock()
				if ev.Type == "DELETED" || p.GetSpec().GetNodeName() != m.node {
					delete(m.desired, p.GetMetadata().GetUid())
				} else {
					m.desired[p.GetMetadata().GetUid()] = p
				}
				m.mu.Unlock()
				m.kick()
			}
		}()
		if ctx.Err() != nil {
			return
		}
		m.log.Debug("pod watch restarts", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// reconcile starts a worker for every pod, desired or found running, that
// has none.
func (m *podManager) reconcile(ctx context.Context, wg *sync.WaitGroup) {
	m.mu.Lock()
	synced := m.synced
	m.mu.Unlock()
	if !synced {
		// Without the list of pods bound here, every running container
		// would look unwanted: wait for it.
		return
	}
	listedAt := time.Now()
	all, err := m.rt.List(ctx, nil)
	if err != nil {
		m.log.Warn("list containers", "err", err)
		return
	}
	byPod := map[string][]runtime.ContainerStatus{}
	for _, c := range all {
		if uid := c.Labels[runtime.LabelPodUID]; uid != "" {
			byPod[uid] = append(byPod[uid], c)
		}
	}
	sandboxes, err := m.net.List(ctx)
	if err != nil {
		m.log.Warn("list pod networks", "err", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	start := func(uid string, pod *api.Pod, containers []runtime.ContainerStatus) {
		if m.busy[uid] {
			return
		}
		if m.doneAt[uid].After(listedAt) {
			// Its last worker acted after the list was taken: the list
			// does not show what it did. Next round.
			m.kick()
			return
		}
		m.busy[uid] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				m.mu.Lock()
				delete(m.busy, uid)
				m.doneAt[uid] = time.Now()
				m.mu.Unlock()
			}()
			switch {
			case pod != nil && pod.GetMetadata().GetDeletionTimestamp() != "":
				m.terminatePod(ctx, pod, containers)
			case pod != nil:
				m.syncPod(ctx, pod, containers)
			default:
				m.cleanPod(ctx, uid, containers)
			}
		}()
	}
	for uid, pod := range m.desired {
		start(uid, pod, byPod[uid])
	}
	for uid, cs := range byPod {
		if _, ok := m.desired[uid]; !ok {
			start(uid, nil, cs)
		}
	}
	for _, ref := range sandboxes {
		if _, ok := m.desired[ref.UID]; !ok && len(byPod[ref.UID]) == 0 {
			start(ref.UID, nil, nil)
		}
	}
	for uid := range m.reported {
		if _, ok := m.desired[uid]; !ok {
			delete(m.reported, uid)
		}
	}
	for uid := range m.terminating {
		if _, ok := m.desired[uid]; !ok {
			delete(m.terminating, uid)
		}
	}
	for uid := range m.doneAt {
		if _, ok := m.desired[uid]; !ok && len(byPod[uid]) == 0 && !m.busy[uid] {
			delete(m.doneAt, uid)
		}
	}
	m.rounds++
}

func observe(cs []runtime.ContainerStatus) []observedContainer {
	var out []observedContainer
	for _, c := range cs {
		o, ok := observedFromLabels(c.ID, c.Labels)
		if !ok {
			continue
		}
		o.Running = c.State == runtime.StateRunning
		o.Exited = c.State == runtime.StateExited || c.State == runtime.StateUnknown
		o.ExitCode = c.ExitCode
		o.OOMKilled = c.OOMKilled
		o.ImageID = c.ImageID
		o.StartedAt, o.FinishedAt = c.StartedAt, c.FinishedAt
		out = append(out, o)
	}
	return out
}

func podRef(pod *api.Pod) podnet.PodRef {
	m := pod.GetMetadata()
	return podnet.PodRef{UID: m.GetUid(), Namespace: m.GetNamespace(), Name: m.GetName()}
}

func (m *podManager) podDir(uid string) string { return filepath.Join(m.dataDir, "pods", uid) }

func graceOf(pod *api.Pod) time.Duration {
	if g := pod.GetSpec().TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// syncPod brings one desired pod to its spec and records its status.
func (m *podManager) syncPod(ctx context.Context, pod *api.Pod, containers []runtime.ContainerStatus) {
	uid := pod.GetMetadata().GetUid()
	now := time.Now()
	obs := podObservation{Waiting: map[string]waitingState{}, HostIP: m.hostIP}
	att, ok, err := m.net.Status(ctx, podRef(pod))
	if err == nil && !ok {
		att, err = m.net.Setup(ctx, podRef(pod), hostPorts(pod))
	}
	if err != nil {
		for _, c := range pod.GetSpec().GetContainers() {
			obs.Waiting[c.Name] = waitingState{Reason: "ContainerCreating", Message: "pod network: " + err.Error()}
		}
		m.log.Warn("pod network", "pod", api.KeyOf(pod), "err", err)
		m.record(pod, obs, now)
		return
	}
	obs.PodIP = att.IP.String()
	actions, _ := planPod(pod, observe(containers), now)
	for _, a := range actions {
		if err := m.do(ctx, pod, att, a, obs.Waiting); err != nil {
			m.log.Warn("container action", "pod", api.KeyOf(pod), "container", a.Container, "action", a.Kind, "err", err)
		}
	}
	if len(actions) > 0 {
		// Report what is there now, not what was there before acting.
		if containers, err = m.rt.List(ctx, map[string]string{runtime.LabelPodUID: uid}); err != nil {
			return
		}
	}
	m.mu.Lock()
	for _, c := range pod.GetSpec().GetContainers() {
		if p := m.pulls[uid+"/"+c.Name]; p != nil {
			if _, set := obs.Waiting[c.Name]; !set {
				obs.Waiting[c.Name] = waitingState{Reason: p.reason, Message: p.message}
			}
		}
	}
	m.mu.Unlock()
	obs.Instances = observe(containers)
	_, obs.Plans = planPod(pod, obs.Instances, now)
	obs.Ready = m.syncProbes(pod, obs)
	for _, inst := range obs.Instances {
		if obs.StartTime.IsZero() || (!inst.StartedAt.IsZero() && inst.StartedAt.Before(obs.StartTime)) {
			obs.StartTime = inst.StartedAt
		}
	}
	m.record(pod, obs, now)
}

// syncProbes runs a probe worker for the running instance of each
// container, stops those of instances that are gone, and returns the
// readiness the workers report.
func (m *podManager) syncProbes(pod *api.Pod, obs podObservation) map[string]bool {
	uid := pod.GetMetadata().GetUid()
	m.mu.Lock()
	defer m.mu.Unlock()
	ready := map[string]bool{}
	for _, c := range pod.GetSpec().GetContainers() {
		key := uid + "/" + c.Name
		latest := obs.Plans[c.Name].Latest
		h := m.probers[key]
		if latest == nil || !latest.Running {
			if h != nil {
				h.cancel()
				delete(m.probers, key)
			}
			delete(m.ready, key)
			continue
		}
		if h != nil && h.instance != latest.ID {
			h.cancel()
			delete(m.ready, key)
			h = nil
		}
		if h == nil && m.ctx != nil {
			ctx, cancel := context.WithCancel(m.ctx)
			m.probers[key] = &proberHandle{instance: latest.ID, cancel: cancel}
			id, c := latest.ID, c
			target := probeTarget{podIP: obs.PodIP, container: c, http: m.http,
				exec: func(ctx context.Context, cmd []string) (int, error) {
					return m.rt.Exec(ctx, id, cmd, nil, io.Discard, io.Discard, false)
				}}
			go containerProbes(ctx, c, target, func(ok bool) {
				m.mu.Lock()
				if h := m.probers[key]; h != nil && h.instance == id {
					m.ready[key] = ok
				}
				m.mu.Unlock()
				m.kick()
			}, func(reason string) {
				m.log.Info("stopping container", "pod", api.KeyOf(pod), "container", c.Name, "reason", reason)
				if err := m.rt.Stop(ctx, id, graceOf(pod)); err != nil && ctx.Err() == nil {
					m.log.Warn("stop container", "id", id, "err", err)
				}
				m.kick()
			})
		}
		if v, ok := m.ready[key]; ok {
			ready[c.Name] = v
		}
	}
	return ready
}

// record queues the pod's status when it changed.
func (m *podManager) record(pod *api.Pod, obs podObservation, now time.Time) {
	uid := pod.GetMetadata().GetUid()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.desired[uid]; !ok {
		return
	}
	prev := m.reported[uid]
	if prev == nil {
		prev = pod.GetStatus()
	}
	st := podStatus(pod, obs, prev, now)
	if proto.Equal(st, prev) {
		return
	}
	m.status[uid] = &api.Pod{Metadata: &api.ObjectMeta{Name: pod.GetMetadata().GetName(), Namespace: pod.GetMetadata().GetNamespace()}, Status: st}
	m.requestFlush()
}

// statusSpacing is the least time between two status writes of a node:
// statuses queued meanwhile go out together.
const statusSpacing = 50 * time.Millisecond

// flushLoop writes queued statuses as soon as there are some and no write
// is in flight, and no more often than statusSpacing: a lone change is
// reported at once, a burst in few writes.
func (m *podManager) flushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.flushReq:
		}
		m.flushStatus(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(statusSpacing):
		}
	}
}

func (m *podManager) requestFlush() {
	select {
	case m.flushReq <- struct{}{}:
	default:
	}
}

// flushStatus writes the queued statuses in one call: one raft entry for
// many pods, not one write per pod or probe.
func (m *podManager) flushStatus(ctx context.Context) {
	m.mu.Lock()
	if len(m.status) == 0 {
		m.mu.Unlock()
		return
	}
	var objs []*api.Object
	var uids []string
	for uid, p := range m.status {
		objs = append(objs, api.Wrap(p))
		uids = append(uids, uid)
	}
	m.status = map[string]*api.Pod{}
	m.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := m.api.Apply(wctx, &api.ApplyRequest{Status: true, Objects: objs})
	failed := map[int]bool{}
	if err != nil {
		for i := range objs {
			failed[i] = true
		}
		m.log.Debug("pod status write", "err", err)
	} else {
		for _, f := range resp.GetFailures() {
			if codes.Code(f.Code) != codes.NotFound { // a deleted pod needs none
				failed[int(f.Index)] = true
			}
		}
	}
	retry := false
	defer func() {
		if retry {
			m.requestFlush()
		}
	}()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, uid := range uids {
		if failed[i] {
			if _, newer := m.status[uid]; !newer {
				m.status[uid] = objs[i].GetPod() // again on the next flush
			}
			retry = true
			continue
		}
		m.reported[uid] = objs[i].GetPod().GetStatus()
	}
}

// cleanPod stops and removes what is left of a pod no longer bound here.
func (m *podManager) cleanPod(ctx context.Context, uid string, containers []runtime.ContainerStatus) {
	m.cleanPodWithGrace(ctx, uid, containers, -1)
}

// cleanPodWithGrace stops and removes a pod's containers, with grace
// between SIGTERM and SIGKILL (negative: the grace each container was
// created with), then its network and files; false when something is
// left for the next round.
func (m *podManager) cleanPodWithGrace(ctx context.Context, uid string, containers []runtime.ContainerStatus, podGrace time.Duration) bool {
	// All containers at once: a pod takes one grace period to stop, not
	// one per container.
	errs := make(chan error, len(containers))
	for _, c := range containers {
		go func() {
			if c.State == runtime.StateRunning {
				grace := podGrace
				if grace < 0 {
					grace = 30 * time.Second
					if s, err := strconv.Atoi(c.Labels[LabelGrace]); err == nil {
						grace = time.Duration(s) * time.Second
					}
				}
				if err := m.rt.Stop(ctx, c.ID, grace); err != nil && !runtime.IsNotFound(err) {
					errs <- fmt.Errorf("stop container %s: %w", c.ID, err)
					return
				}
			}
			if err := m.rt.Remove(ctx, c.ID); err != nil && !runtime.IsNotFound(err) {
				errs <- fmt.Errorf("remove container %s: %w", c.ID, err)
				return
			}
			errs <- nil
		}()
	}
	failed := false
	for range containers {
		if err := <-errs; err != nil {
			m.log.Warn("clean up pod", "pod", uid, "err", err)
			failed = true
		}
	}
	if failed {
		return false // again on the next round
	}
	if err := m.net.Teardown(ctx, podnet.PodRef{UID: uid}); err != nil {
		m.log.Warn("pod network teardown", "pod", uid, "err", err)
		return false
	}
	if err := os.RemoveAll(m.podDir(uid)); err != nil {
		m.log.Warn("remove pod directory", "pod", uid, "err", err)
	}
	m.mu.Lock()
	for k := range m.pulls {
		if strings.HasPrefix(k, uid+"/") {
			delete(m.pulls, k)
		}
	}
	for k, h := range m.probers {
		if strings.HasPrefix(k, uid+"/") {
			h.cancel()
			delete(m.probers, k)
			delete(m.ready, k)
		}
	}
	m.mu.Unlock()
	m.log.Info("pod cleaned up", "uid", uid)
	return true
}

func hostPorts(pod *api.Pod) []podnet.PortMapping {
	var out []podnet.PortMapping
	for _, c := range pod.GetSpec().GetContainers() {
		for _, p := range c.GetPorts() {
			if p.HostPort != 0 {
				out = append(out, podnet.PortMapping{HostPort: int(p.HostPort), ContainerPort: int(p.ContainerPort), Protocol: p.Protocol})
			}
		}
	}
	return out
}

// do carries out one action on one pod.
func (m *podManager) do(ctx context.Context, pod *api.Pod, att podnet.Attachment, a Action, waiting map[string]waitingState) error {
	switch a.Kind {
	case "stop":
		return m.rt.Stop(ctx, a.ID, graceOf(pod))
	case "remove":
		return m.rt.Remove(ctx, a.ID)
	case "start":
		var c *api.Container
		for _, x := range pod.GetSpec().GetContainers() {
			if x.Name == a.Container {
				c = x
			}
		}
		if c == nil {
			return nil
		}
		return m.start(ctx, pod, c, att, a.Restart, waiting)
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

func (m *podManager) start(ctx context.Context, pod *api.Pod, c *api.Container, att podnet.Attachment, restart int, waiting map[string]waitingState) error {
	uid := pod.GetMetadata().GetUid()
	key := uid + "/" + c.Name
	m.mu.Lock()
	ps := m.pulls[key]
	m.mu.Unlock()
	if ps != nil && time.Now().Before(ps.until) {
		waiting[c.Name] = waitingState{Reason: ps.reason, Message: ps.message}
		return nil
	}
	// failed records a failure before the container ran: shown as reason
	// now, as backoffReason until the back-off ends.
	failed := func(reason, backoffReason string, err error) error {
		m.mu.Lock()
		if ps == nil {
			ps = &pullState{}
			m.pulls[key] = ps
		}
		ps.failures++
		ps.reason, ps.message = backoffReason, err.Error()
		ps.until = time.Now().Add(restartDelay(ps.failures))
		m.mu.Unlock()
		waiting[c.Name] = waitingState{Reason: reason, Message: err.Error()}
		return err
	}
	if _, err := m.rt.PullImage(ctx, c.Image, runtime.PullPolicy(c.ImagePullPolicy)); err != nil {
		reason := "ErrImagePull"
		switch {
		case errors.Is(err, runtime.ErrImageNeverPull):
			reason = "ErrImageNeverPull"
		case errors.Is(err, runtime.ErrInvalidImageName):
			reason = "InvalidImageName"
		}
		return failed(reason, "ImagePullBackOff", err)
	}
	spec, err := m.containerSpec(pod, c, att, restart)
	if err != nil {
		return failed("CreateContainerConfigError", "CreateContainerConfigError", err)
	}
	id, err := m.rt.Create(ctx, spec)
	if err != nil {
		return failed("CreateContainerError", "CreateContainerError", err)
	}
	m.mu.Lock()
	delete(m.pulls, key)
	m.mu.Unlock()
	if err := m.rt.Start(ctx, id); err != nil {
		// Keep the instance: it shows as exited and follows the restart
		// policy like any other failure.
		waiting[c.Name] = waitingState{Reason: "RunContainerError", Message: err.Error()}
		return err
	}
	m.log.Info("container started", "pod", api.KeyOf(pod), "container", c.Name, "id", id, "restart", restart)
	return nil
}

// containerSpec turns a container of a pod into what the runtime runs.
func (m *podManager) containerSpec(pod *api.Pod, c *api.Container, att podnet.Attachment, restart int) (runtime.ContainerSpec, error) {
	meta := pod.GetMetadata()
	uid := meta.GetUid()
	spec := runtime.ContainerSpec{
		PodUID: uid, PodName: meta.GetName(), PodNamespace: meta.GetNamespace(), Name: c.Name,
		Image: c.Image, Command: c.Command, Args: c.Args, WorkingDir: c.WorkingDir,
		NetNSPath: att.NetNSPath,
		Hostname:  meta.GetName(),
		LogPath:   filepath.Join(m.podDir(uid), "logs", c.Name, strconv.Itoa(restart)+".log"),
		Labels: map[string]string{
			LabelSpecHash: containerHash(c),
			LabelRestart:  strconv.Itoa(restart),
			LabelGrace:    strconv.Itoa(int(graceOf(pod) / time.Second)),
		},
	}
	if h := pod.GetSpec().GetHostname(); h != "" {
		spec.Hostname = h
	}
	if m.resolvConf != nil {
		spec.ResolvConfPath = filepath.Join(m.podDir(uid), "resolv.conf")
		if err := writeFileAtomic(spec.ResolvConfPath, m.resolvConf(meta.GetNamespace())); err != nil {
			return spec, fmt.Errorf("resolv.conf: %w", err)
		}
	}
	for _, e := range c.Env {
		spec.Env = append(spec.Env, e.Name+"="+e.Value)
	}
	if v := c.GetResources().GetLimits()["cpu"]; v != "" {
		millis, err := api.ParseCPU(v)
		if err != nil {
			return spec, fmt.Errorf("resources.limits.cpu: %w", err)
		}
		spec.CPUMillis = millis
	}
	if v := c.GetResources().GetLimits()["memory"]; v != "" {
		b, err := api.ParseBytes(v)
		if err != nil {
			return spec, fmt.Errorf("resources.limits.memory: %w", err)
		}
		spec.MemoryBytes = b
	}
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o700); err != nil {
		return spec, fmt.Errorf("log directory: %w", err)
	}
	volumes := map[string]*api.Volume{}
	for _, v := range pod.GetSpec().GetVolumes() {
		volumes[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v := volumes[vm.Name]
		if v == nil {
			return spec, fmt.Errorf("volumeMounts: no volume %q", vm.Name)
		}
		var src string
		switch {
		case v.EmptyDir != nil:
			src = filepath.Join(m.podDir(uid), "volumes", v.Name)
			if err := os.MkdirAll(src, 0o777); err != nil {
				return spec, fmt.Errorf("emptyDir %s: %w", v.Name, err)
			}
		case v.HostPath != nil:
			src = v.HostPath.Path
			if v.HostPath.Type == "DirectoryOrCreate" {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return spec, fmt.Errorf("hostPath %s: %w", v.Name, err)
				}
			}
			if _, err := os.Stat(src); err != nil {
				return spec, fmt.Errorf("hostPath %s: %w", v.Name, err)
			}
		}
		spec.Mounts = append(spec.Mounts, runtime.Mount{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	return spec, nil
}

// writeFileAtomic makes path hold data (mode 0644), creating its directory;
// a file that already holds data is left alone, and a changed one is
// replaced by a rename, so a container starting meanwhile never mounts a
// half-written file.
func writeFileAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
