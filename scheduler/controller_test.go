package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shoalproj/shoal/api"
)

func ctlNode(name string, ready bool, since time.Time) *api.Node {
	st := "True"
	if !ready {
		st = "False"
	}
	return &api.Node{
		Metadata: &api.ObjectMeta{Name: name},
		Spec:     &api.NodeSpec{},
		Status: &api.NodeStatus{
			Capacity:   map[string]string{"cpu": "2", "memory": "4Gi"},
			Conditions: []*api.NodeCondition{{Type: "Ready", Status: st, LastTransitionTime: since.UTC().Format(time.RFC3339)}},
		},
	}
}

func ctlPod(name, node, ownerUID string) *api.Pod {
	p := &api.Pod{
		Metadata: &api.ObjectMeta{Name: name, Namespace: "default", ResourceVersion: "7", CreationTimestamp: "2026-01-01T00:00:00Z"},
		Spec:     &api.PodSpec{NodeName: node, Containers: []*api.Container{{Name: "c", Image: "busybox"}}},
	}
	if ownerUID != "" {
		p.Metadata.OwnerReferences = []*api.OwnerReference{{Kind: "Deployment", Name: "web", Uid: ownerUID, Controller: true}}
	}
	return p
}

func TestPlanBindingsSpreadsAnOwnersPods(t *testing.T) {
	now := time.Now()
	v := &view{nodes: []*api.Node{ctlNode("a", true, now), ctlNode("b", true, now), ctlNode("c", true, now)}}
	for _, n := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		v.pods = append(v.pods, ctlPod(n, "", "u1"))
	}
	ops := planBindings(v, Spread, nil, new(int))
	if len(ops) != 6 {
		t.Fatalf("want 6 bindings, got %d", len(ops))
	}
	per := map[string]int{}
	for _, op := range ops {
		p := op.Put.(*api.Pod)
		if op.StatusOnly || op.ResourceVersion != "7" {
			t.Fatalf("a binding is a spec write with the pod's resourceVersion: %+v", op)
		}
		per[p.Spec.NodeName]++
	}
	if per["a"] != 2 || per["b"] != 2 || per["c"] != 2 {
		t.Fatalf("want 2 per node, got %v", per)
	}
}

func TestPlanBindingsUnschedulableOnce(t *testing.T) {
	now := time.Now()
	v := &view{nodes: []*api.Node{ctlNode("a", true, now), ctlNode("b", false, now)}}
	p := ctlPod("big", "", "")
	p.Spec.Containers[0].Resources = &api.ResourceRequirements{Requests: map[string]string{"memory": "64Gi"}}
	v.pods = []*api.Pod{p}
	ops := planBindings(v, Spread, nil, new(int))
	if len(ops) != 1 || !ops[0].StatusOnly {
		t.Fatalf("want one status write, got %+v", ops)
	}
	got := ops[0].Put.(*api.Pod).Status
	c := got.Conditions[0]
	if got.Phase != "Pending" || c.Type != "PodScheduled" || c.Status != "False" || c.Reason != "Unschedulable" ||
		!strings.HasPrefix(c.Message, "0/2 nodes are available: ") || !strings.Contains(c.Message, "Insufficient memory") {
		t.Fatalf("status %+v", got)
	}
	// Written once: the same reasons are not written again.
	v.pods = []*api.Pod{ops[0].Put.(*api.Pod)}
	if ops := planBindings(v, Spread, nil, new(int)); len(ops) != 0 {
		t.Fatalf("the same reason written again: %+v", ops)
	}
}

func TestPlanNodeLifecycleAfterGrace(t *testing.T) {
	now := time.Now()
	r := &rounds{cfg: Config{NodeLostGrace: 5 * time.Second}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), notReadySince: map[string]time.Time{}}
	v := &view{
		nodes: []*api.Node{ctlNode("a", true, now), ctlNode("b", false, now.Add(-2*time.Second))},
		pods:  []*api.Pod{ctlPod("owned-on-b", "b", "u1"), ctlPod("bare-on-b", "b", ""), ctlPod("owned-on-a", "a", "u1")},
	}
	if ops := r.planNodeLifecycle(v, now, nil); len(ops) != 0 {
		t.Fatalf("within the grace: %+v", ops)
	}
	ops := r.planNodeLifecycle(v, now.Add(4*time.Second), nil)
	if len(ops) != 1 || ops[0].Delete == nil || ops[0].Delete.Name != "owned-on-b" || ops[0].ResourceVersion != "7" || ops[0].Graceful {
		t.Fatalf("after the grace want only the owned pod of b deleted, at once (its node cannot stop it), got %+v", ops)
	}
	// A bare pod that was terminating on the lost node will never be
	// stopped there: removed too.
	v.pods[1].Metadata.DeletionTimestamp = now.UTC().Format(time.RFC3339)
	ops = r.planNodeLifecycle(v, now.Add(4*time.Second), nil)
	if len(ops) != 2 || ops[1].Delete == nil || ops[1].Delete.Name != "bare-on-b" || ops[1].Graceful {
		t.Fatalf("terminating bare pod on a lost node: want it removed at once, got %+v", ops)
	}
	v.pods[1].Metadata.DeletionTimestamp = ""
	// Back Ready: nothing, and the clock starts again next time.
	v.nodes[1] = ctlNode("b", true, now)
	if ops := r.planNodeLifecycle(v, now.Add(10*time.Second), nil); len(ops) != 0 || len(r.notReadySince) != 0 {
		t.Fatalf("ready again: %+v %v", ops, r.notReadySince)
	}
}

func TestPlanEndpointsManagedOnly(t *testing.T) {
	now := time.Now()
	svc := &api.Service{Metadata: &api.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &api.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []*api.ServicePort{{Name: "http", Port: 80}}}}
	p := ctlPod("web-1", "a", "u1")
	p.Metadata.Labels = map[string]string{"app": "web"}
	p.Status = &api.PodStatus{Phase: "Running", PodIp: "10.244.0.5", Conditions: []*api.PodCondition{{Type: "Ready", Status: "True"}}}
	user := &api.Endpoints{Metadata: &api.ObjectMeta{Name: "external", Namespace: "default", ResourceVersion: "3"}}
	stale := &api.Endpoints{Metadata: &api.ObjectMeta{Name: "gone", Namespace: "default", ResourceVersion: "4",
		Labels: map[string]string{LabelManagedBy: managedByEndpoint}}}
	v := &view{nodes: []*api.Node{ctlNode("a", true, now)}, pods: []*api.Pod{p}, services: []*api.Service{svc},
		endpoints: []*api.Endpoints{user, stale}}
	ops := planEndpoints(v)
	var created, deleted []string
	for _, op := range ops {
		switch {
		case op.Delete != nil:
			deleted = append(deleted, op.Delete.Name)
		case op.Create:
			e := op.Put.(*api.Endpoints)
			created = append(created, e.Metadata.Name)
			if len(e.Subsets) != 1 || e.Subsets[0].Addresses[0].Ip != "10.244.0.5" {
				t.Fatalf("endpoints %+v", e)
			}
		}
	}
	if strings.Join(created, ",") != "web" || strings.Join(deleted, ",") != "gone" {
		t.Fatalf("created %v deleted %v (the user's Endpoints stay)", created, deleted)
	}
}

func TestPlanBindingsBoundedPerRound(t *testing.T) {
	now := time.Now()
	v := &view{nodes: []*api.Node{ctlNode("a", true, now)}}
	v.nodes[0].Status.Capacity = map[string]string{"cpu": "1000", "memory": "1000Gi"}
	for i := range maxBindingsPerRound + 10 {
		p := ctlPod(fmt.Sprintf("p%05d", i), "", "u1")
		v.pods = append(v.pods, p)
	}
	start := 0
	ops := planBindings(v, Spread, nil, &start)
	if len(ops) != maxBindingsPerRound {
		t.Fatalf("want %d bindings this round, got %d", maxBindingsPerRound, len(ops))
	}
	if last := ops[len(ops)-1].Put.(*api.Pod).Metadata.Name; last != fmt.Sprintf("p%05d", maxBindingsPerRound-1) {
		t.Fatalf("the oldest (then by name) go first; last bound %s", last)
	}
}

// captureStore serves fixed objects and keeps the first round's writes.
type captureStore struct {
	objs   map[string][]api.Resource
	ops    chan []Op
	cancel func()
}

func (s *captureStore) List(kinds ...string) ([]api.Resource, uint64) {
	var out []api.Resource
	for _, k := range kinds {
		out = append(out, s.objs[k]...)
	}
	return out, 1
}
func (s *captureStore) Changed(uint64) <-chan struct{} { return make(chan struct{}) }
func (s *captureStore) Write(_ context.Context, ops []Op) ([]error, error) {
	select {
	case s.ops <- ops:
	default:
	}
	s.cancel()
	return make([]error, len(ops)), nil
}

func TestRunUsesTheClusterStrategy(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		strategy Strategy
		want     string
	}{{Spread, "empty"}, {Binpack, "busy"}} {
		busy, empty := ctlNode("busy", true, now), ctlNode("empty", true, now)
		loaded := ctlPod("load", "busy", "")
		loaded.Spec.Containers[0].Resources = &api.ResourceRequirements{Requests: map[string]string{"cpu": "1"}}
		ctx, cancel := context.WithCancel(context.Background())
		st := &captureStore{objs: map[string][]api.Resource{
			"Node": {busy, empty},
			"Pod":  {loaded, ctlPod("new", "", "")},
		}, ops: make(chan []Op, 1), cancel: cancel}
		m := NewMetrics(prometheus.NewRegistry())
		Run(ctx, st, Config{StrategyOf: func() Strategy { return tc.strategy }, Metrics: m}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if got := testutil.ToFloat64(m.writes.WithLabelValues("bind", "applied")); got != 1 {
			t.Fatalf("bind writes counted: %v, want 1", got)
		}
		if got := testutil.ToFloat64(m.pending); got != 1 {
			t.Fatalf("pending pods: %v, want 1", got)
		}
		ops := <-st.ops
		var bound string
		for _, op := range ops {
			if p, ok := op.Put.(*api.Pod); ok && p.Metadata.Name == "new" && !op.StatusOnly {
				bound = p.Spec.NodeName
			}
		}
		if bound != tc.want {
			t.Fatalf("%s: bound to %q, want %q (ops %+v)", tc.strategy, bound, tc.want, ops)
		}
	}
}
