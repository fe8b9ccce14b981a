package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
)

// roundStore is a Store whose state never changes: every round sees the
// same objects, finds the store changed, and its writes go nowhere. Run
// stops after the given number of rounds.
type roundStore struct {
	objs   map[string][]api.Resource
	rounds atomic.Int64
	stop   int64
	cancel context.CancelFunc
	ops    atomic.Int64
}

func (s *roundStore) List(kinds ...string) ([]api.Resource, uint64) {
	if s.rounds.Add(1) >= s.stop {
		s.cancel() // this round still runs to its end
	}
	var out []api.Resource
	for _, k := range kinds {
		out = append(out, s.objs[k]...)
	}
	return out, 1
}

func (s *roundStore) Changed(uint64) <-chan struct{} {
	ch := make(chan struct{})
	if s.rounds.Load()+1 < s.stop { // asked before the round it follows
		close(ch)
	} // else never: Run returns once the last round ends
	return ch
}

func (s *roundStore) Write(_ context.Context, ops []Op) ([]error, error) {
	s.ops.Add(int64(len(ops)))
	return make([]error, len(ops)), nil
}

// roundState is what `make bench-sched` builds: nodes hollow nodes of 32
// cpu, deployments Deployments sharing pods pods of 100m/128Mi, every pod
// bound and Running+Ready (bound) or none bound (pending).
func roundState(nodes, pods, deployments int, bound bool) map[string][]api.Resource {
	objs := map[string][]api.Resource{}
	now := time.Now().UTC().Format(time.RFC3339)
	for i := range nodes {
		n := node(fmt.Sprintf("hollow-%05d", i))
		n.Status.Allocatable = map[string]string{"cpu": "32", "memory": "128Gi", "pods": "250"}
		objs["Node"] = append(objs["Node"], n)
	}
	k := 0
	for d := range deployments {
		replicas := pods / deployments
		labels := map[string]string{"app": fmt.Sprintf("bench-%03d", d)}
		dep := &api.Deployment{
			Metadata: &api.ObjectMeta{Name: fmt.Sprintf("bench-%03d", d), Namespace: "default", Uid: fmt.Sprintf("dep-uid-%03d", d), Generation: 1},
			Spec: &api.DeploymentSpec{
				Replicas: proto.Int32(int32(replicas)),
				Selector: &api.LabelSelector{MatchLabels: labels},
				Template: &api.PodTemplateSpec{
					Metadata: &api.ObjectMeta{Labels: labels},
					Spec: &api.PodSpec{Containers: []*api.Container{{Name: "app", Image: "registry.invalid/hollow/app:1",
						Resources: &api.ResourceRequirements{Requests: map[string]string{"cpu": "100m", "memory": "128Mi"}}}}},
				},
			},
		}
		hash := TemplateHash(dep.Spec.Template)
		for range replicas {
			p := newPodFor(dep, hash)
			p.Metadata.Uid = fmt.Sprintf("pod-uid-%06d", k)
			p.Metadata.CreationTimestamp = now
			p.Metadata.ResourceVersion = "7"
			if bound {
				p.Spec.NodeName = fmt.Sprintf("hollow-%05d", k%nodes)
				p.Status = &api.PodStatus{Phase: "Running", PodIp: "10.0.0.1", HostIp: "100.64.0.1", StartTime: now,
					ContainerStatuses: []*api.ContainerStatus{{Name: "app", Ready: true, Started: true,
						State: &api.ContainerState{Running: &api.ContainerStateRunning{StartedAt: now}}}}}
				for _, typ := range []string{"PodScheduled", "Initialized", "ContainersReady", "Ready"} {
					p.Status.Conditions = append(p.Status.Conditions, &api.PodCondition{Type: typ, Status: "True", LastTransitionTime: now})
				}
			}
			objs["Pod"] = append(objs["Pod"], p)
			k++
		}
		// The status the controller would write, so that a steady round
		// has nothing to change.
		var owned []*api.Pod
		for _, o := range objs["Pod"][k-replicas : k] {
			owned = append(owned, o.(*api.Pod))
		}
		dep.Status = PlanRollout(dep, owned, time.Now()).Status
		objs["Deployment"] = append(objs["Deployment"], dep)
	}
	return objs
}

// BenchmarkRound is one round of the leader's controllers (read, node
// lifecycle, deployments, binding, endpoints) over a state that does not
// change: "steady" with every pod bound and running (the cost every round
// pays, whatever changed), "pending" with no pod bound (a round that
// places every pod). The store's own List (sorting) is not included.
func BenchmarkRound(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		nodes, pods int
		bound       bool
	}{
		{500, 100_000, true}, {5000, 100_000, true},
		{500, 100_000, false}, {5000, 100_000, false},
	} {
		name := "steady"
		if !tc.bound {
			name = "pending"
		}
		b.Run(fmt.Sprintf("%s/nodes=%d/pods=%d", name, tc.nodes, tc.pods), func(b *testing.B) {
			st := &roundStore{objs: roundState(tc.nodes, tc.pods, 100, tc.bound), stop: int64(b.N)}
			ctx, cancel := context.WithCancel(context.Background())
			st.cancel = cancel
			b.ResetTimer()
			Run(ctx, st, Config{}, log)
			b.StopTimer()
			b.ReportMetric(float64(st.ops.Load())/float64(b.N), "ops/round")
			cancel()
		})
	}
}
