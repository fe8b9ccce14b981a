package scheduler

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shoalproj/shoal/api"
)

func node(name string, opts ...func(*api.Node)) *api.Node {
	n := &api.Node{
		Metadata: &api.ObjectMeta{Name: name, Labels: map[string]string{}},
		Spec:     &api.NodeSpec{},
		Status: &api.NodeStatus{
			Conditions:  []*api.NodeCondition{{Type: "Ready", Status: "True"}},
			Allocatable: map[string]string{"cpu": "2", "memory": "4Gi"},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func pod(name string, opts ...func(*api.Pod)) *api.Pod {
	p := &api.Pod{Metadata: &api.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{}},
		Spec: &api.PodSpec{Containers: []*api.Container{{Name: "c", Image: "busybox"}}}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func requests(cpu, mem string) func(*api.Pod) {
	return func(p *api.Pod) {
		p.Spec.Containers[0].Resources = &api.ResourceRequirements{Requests: map[string]string{"cpu": cpu, "memory": mem}}
	}
}

func owned(uid string) func(*api.Pod) {
	return func(p *api.Pod) {
		p.Metadata.OwnerReferences = []*api.OwnerReference{{Kind: "ReplicaSet", Uid: uid, Controller: true}}
	}
}

func label(k, v string) func(*api.Pod) { return func(p *api.Pod) { p.Metadata.Labels[k] = v } }

func nodeLabel(k, v string) func(*api.Node) { return func(n *api.Node) { n.Metadata.Labels[k] = v } }

func notReady(n *api.Node) { n.Status.Conditions[0].Status = "False" }

func cordoned(n *api.Node) { n.Spec.Unschedulable = true }

func tainted(key, effect string) func(*api.Node) {
	return func(n *api.Node) {
		n.Spec.Taints = append(n.Spec.Taints, &api.Taint{Key: key, Value: "x", Effect: effect})
	}
}

func hostPortPod(port int32) func(*api.Pod) {
	return func(p *api.Pod) {
		p.Spec.Containers[0].Ports = []*api.ContainerPort{{ContainerPort: 80, HostPort: port}}
	}
}

func state(n *api.Node, pods ...*api.Pod) *NodeState { return &NodeState{Node: n, Pods: pods} }

// placeCase is one placement and its answer.
type placeCase struct {
	name     string
	pod      *api.Pod
	nodes    []*NodeState
	strategy Strategy
	want     string // node, or the error's text
}

// placeCases are made afresh for each use: placement caches what it reads
// in the NodeStates.
func placeCases() []placeCase {
	return []placeCase{
		{name: "the least loaded node", pod: pod("p", requests("100m", "64Mi")),
			nodes: []*NodeState{state(node("a"), pod("x", requests("1", "1Gi"))), state(node("b"))}, want: "b"},
		{name: "binpack: the most loaded node that fits", pod: pod("p", requests("100m", "64Mi")), strategy: Binpack,
			nodes: []*NodeState{state(node("a"), pod("x", requests("1", "1Gi"))), state(node("b"))}, want: "a"},
		{name: "replicas of one owner spread over nodes", pod: pod("p", owned("rs1")),
			nodes: []*NodeState{state(node("a"), pod("x", owned("rs1"))), state(node("b"), pod("y", owned("rs2")), pod("z", owned("rs2")))}, want: "b"},
		{name: "ties go to the first name", pod: pod("p"), nodes: []*NodeState{state(node("b")), state(node("a"))}, want: "a"},
		{name: "not ready and cordoned nodes are skipped", pod: pod("p"),
			nodes: []*NodeState{state(node("a", notReady)), state(node("b", cordoned)), state(node("c"))}, want: "c"},
		{name: "nodeSelector", pod: pod("p", func(p *api.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }),
			nodes: []*NodeState{state(node("a")), state(node("b", nodeLabel("disk", "ssd")))}, want: "b"},
		{name: "nodeSelector on the hostname label", pod: pod("p", func(p *api.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "b"} }),
			nodes: []*NodeState{state(node("a")), state(node("b"))}, want: "b"},
		{name: "required node affinity: terms ORed", pod: pod("p", func(p *api.Pod) {
			p.Spec.Affinity = &api.Affinity{NodeAffinity: &api.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &api.NodeSelector{
				NodeSelectorTerms: []*api.NodeSelectorTerm{
					{MatchExpressions: []*api.NodeSelectorRequirement{{Key: "zone", Operator: "In", Values: []string{"z9"}}}},
					{MatchExpressions: []*api.NodeSelectorRequirement{{Key: "gen", Operator: "Gt", Values: []string{"3"}}}},
				}}}}
		}), nodes: []*NodeState{state(node("a", nodeLabel("gen", "3"))), state(node("b", nodeLabel("gen", "4")))}, want: "b"},
		{name: "preferred node affinity wins over load", pod: pod("p", func(p *api.Pod) {
			p.Spec.Affinity = &api.Affinity{NodeAffinity: &api.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []*api.PreferredSchedulingTerm{
				{Weight: 10, Preference: &api.NodeSelectorTerm{MatchExpressions: []*api.NodeSelectorRequirement{{Key: "disk", Operator: "Exists"}}}}}}}
		}), nodes: []*NodeState{state(node("a", nodeLabel("disk", "ssd")), pod("x", requests("1", "1Gi"))), state(node("b"))}, want: "a"},
		{name: "NoSchedule taint needs a toleration", pod: pod("p"),
			nodes: []*NodeState{state(node("a", tainted("gpu", "NoSchedule"))), state(node("b", tainted("x", "PreferNoSchedule")))}, want: "b"},
		{name: "a toleration lets it in", pod: pod("p", func(p *api.Pod) {
			p.Spec.Tolerations = []*api.Toleration{{Key: "gpu", Operator: "Exists"}}
		}), nodes: []*NodeState{state(node("a", tainted("gpu", "NoSchedule")))}, want: "a"},
		{name: "hostPort taken", pod: pod("p", hostPortPod(8080)),
			nodes: []*NodeState{state(node("a"), pod("x", hostPortPod(8080))), state(node("b"), pod("y", hostPortPod(9090)))}, want: "b"},
		{name: "required anti-affinity keeps replicas apart", pod: pod("p", label("app", "web"), func(p *api.Pod) {
			p.Spec.Affinity = &api.Affinity{PodAntiAffinity: &api.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []*api.PodAffinityTerm{
				{LabelSelector: &api.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TopologyKey: "kubernetes.io/hostname"}}}}
		}), nodes: []*NodeState{state(node("a"), pod("x", label("app", "web"))), state(node("b"), pod("y", requests("1", "3Gi")))}, want: "b"},
		{name: "no node fits: reasons counted", pod: pod("p", requests("100m", "3Gi"), func(p *api.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }),
			nodes: []*NodeState{
				state(node("a", nodeLabel("disk", "ssd")), pod("x", requests("100m", "2Gi"))),
				state(node("b", nodeLabel("disk", "ssd")), pod("y", requests("100m", "2Gi"))),
				state(node("c")),
			},
			want: "0/3 nodes are available: 1 node(s) didn't match nodeSelector, 2 Insufficient memory"},
		{name: "cpu", pod: pod("p", requests("1500m", "1Mi")), nodes: []*NodeState{state(node("a"), pod("x", requests("1", "1Mi")))},
			want: "0/1 nodes are available: 1 Insufficient cpu"},
		{name: "topology spread over zones, DoNotSchedule: the emptier zone even if busier", pod: pod("p", label("app", "web"), spreadOn("zone", 1, "DoNotSchedule")),
			nodes: []*NodeState{
				state(node("a", nodeLabel("zone", "z1")), pod("x", label("app", "web"))),
				state(node("b", nodeLabel("zone", "z1"))),
				state(node("c", nodeLabel("zone", "z2")), pod("y", requests("1", "2Gi"))),
			}, want: "c"},
		{name: "topology spread: skew already at maxSkew blocks the fuller zone", pod: pod("p", label("app", "web"), spreadOn("zone", 1, "DoNotSchedule")),
			nodes: []*NodeState{
				state(node("a", nodeLabel("zone", "z1")), pod("x", label("app", "web"))),
				state(node("c", nodeLabel("zone", "z2")), pod("y", requests("100m", "1Mi"), func(p *api.Pod) { p.Spec.NodeSelector = map[string]string{"x": "y"} })),
			}, want: "c"},
		{name: "topology spread on hostname, maxSkew 2 allows a second pod", pod: pod("p", label("app", "web"), spreadOn("kubernetes.io/hostname", 2, "DoNotSchedule"), requests("1500m", "1Mi")),
			nodes: []*NodeState{
				state(node("a"), pod("x", label("app", "web"))),
				state(node("b"), pod("y", requests("1", "1Mi"))),
			}, want: "a"},
		{name: "topology spread: nodes without the key cannot take the pod", pod: pod("p", label("app", "web"), spreadOn("zone", 1, "DoNotSchedule")),
			nodes: []*NodeState{state(node("a"))},
			want:  "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label)"},
		{name: "topology spread, ScheduleAnyway: preferred, not required", pod: pod("p", label("app", "web"), spreadOn("zone", 1, "ScheduleAnyway")),
			nodes: []*NodeState{
				state(node("a", nodeLabel("zone", "z1")), pod("x", label("app", "web")), pod("x2", label("app", "web"))),
				state(node("c", nodeLabel("zone", "z2")), pod("y", requests("1", "2Gi"))),
			}, want: "c"},
		{name: "topology spread, ScheduleAnyway: the only node still takes it", pod: pod("p", label("app", "web"), spreadOn("zone", 1, "ScheduleAnyway")),
			nodes: []*NodeState{state(node("a", nodeLabel("zone", "z1")), pod("x", label("app", "web")), pod("x2", label("app", "web")))}, want: "a"},
	}
}

func spreadOn(key string, maxSkew int32, when string) func(*api.Pod) {
	return func(p *api.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, &api.TopologySpreadConstraint{
			MaxSkew: maxSkew, TopologyKey: key, WhenUnsatisfiable: when,
			LabelSelector: &api.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		})
	}
}

func TestPlace(t *testing.T) {
	for _, tc := range placeCases() {
		t.Run(tc.name, func(t *testing.T) {
			strategy := tc.strategy
			if strategy == "" {
				strategy = Spread
			}
			got, err := Place(tc.pod, tc.nodes, strategy)
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if strings.HasPrefix(tc.want, "0/") {
				if _, ok := err.(*Unschedulable); !ok {
					t.Fatalf("error %T, want *Unschedulable", err)
				}
			}
		})
	}
}

func TestFeasibleTarget(t *testing.T) {
	for _, tc := range []struct{ nodes, want int }{
		{0, 0}, {1, 1}, {99, 99}, // under 100: every node
		{100, 100}, {200, 100}, // 50% and 49%, but never under 100
		{500, 230},     // 46%
		{1000, 420},    // 42%
		{5000, 500},    // 10%
		{5625, 281},    // 5%
		{6000, 300},    // the share stops falling at 5%
		{100000, 5000}, // 5%
	} {
		if got := feasibleTarget(tc.nodes); got != tc.want {
			t.Errorf("feasibleTarget(%d) = %d, want %d", tc.nodes, got, tc.want)
		}
	}
}

// Under 100 nodes PlaceSampled looks at every node, from wherever it
// starts: Place's answers.
func TestPlaceSampledSmallIsPlace(t *testing.T) {
	for _, tc := range placeCases() {
		for _, start := range []int{0, 1, 2, 7, -1} {
			t.Run(tc.name, func(t *testing.T) {
				strategy := tc.strategy
				if strategy == "" {
					strategy = Spread
				}
				got, next, err := PlaceSampled(tc.pod, tc.nodes, strategy, start)
				if err != nil {
					got = err.Error()
				}
				if got != tc.want {
					t.Fatalf("start %d: got %q, want %q", start, got, tc.want)
				}
				if n := len(tc.nodes); next != ((start%n)+n)%n {
					t.Fatalf("start %d: next %d, want the start again (every node looked at)", start, next)
				}
			})
		}
	}
}

// bigCluster is n nodes n0000, n0001, ... with opts applied to node i by
// each(i).
func bigCluster(n int, each func(i int) []func(*api.Node)) []*NodeState {
	out := make([]*NodeState, n)
	for i := range out {
		var opts []func(*api.Node)
		if each != nil {
			opts = each(i)
		}
		out[i] = state(node(fmt.Sprintf("n%04d", i), opts...))
	}
	return out
}

func TestPlaceSampled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nodes     func() []*NodeState
		pod       *api.Pod
		start     int
		want      string // node, or the error's text
		wantNext  int
		wantError bool
	}{
		{name: "1000 equal nodes: the first name of the 420 from the start", nodes: func() []*NodeState { return bigCluster(1000, nil) },
			pod: pod("p"), start: 0, want: "n0000", wantNext: 420},
		{name: "the next pod looks at the next 420", nodes: func() []*NodeState { return bigCluster(1000, nil) },
			pod: pod("p"), start: 420, want: "n0420", wantNext: 840},
		{name: "the walk wraps around", nodes: func() []*NodeState { return bigCluster(1000, nil) },
			pod: pod("p"), start: 900, want: "n0000", wantNext: 320},
		{name: "a start out of range is taken modulo the nodes", nodes: func() []*NodeState { return bigCluster(1000, nil) },
			pod: pod("p"), start: 2420, want: "n0420", wantNext: 840},
		{name: "nodes that do not fit do not count towards the sample", nodes: func() []*NodeState {
			return bigCluster(1000, func(i int) []func(*api.Node) {
				if i < 500 {
					return []func(*api.Node){notReady}
				}
				return nil
			})
		}, pod: pod("p"), start: 0, want: "n0500", wantNext: 920},
		{name: "the best node outside the sample is not seen", nodes: func() []*NodeState {
			nodes := bigCluster(1000, nil)
			for i, n := range nodes {
				if i != 999 {
					n.AddPod(pod(fmt.Sprintf("x%d", i), requests("1", "1Gi")))
				}
			}
			return nodes
		}, pod: pod("p", requests("100m", "64Mi")), start: 0, want: "n0000", wantNext: 420},
		{name: "and is chosen once the sample holds it", nodes: func() []*NodeState {
			nodes := bigCluster(1000, nil)
			for i, n := range nodes {
				if i != 999 {
					n.AddPod(pod(fmt.Sprintf("x%d", i), requests("1", "1Gi")))
				}
			}
			return nodes
		}, pod: pod("p", requests("100m", "64Mi")), start: 600, want: "n0999", wantNext: 20},
		{name: "fewer nodes fit than the target: every node looked at, Place's answer", nodes: func() []*NodeState {
			return bigCluster(1000, func(i int) []func(*api.Node) {
				if i%100 != 37 {
					return []func(*api.Node){cordoned}
				}
				return nil
			})
		}, pod: pod("p"), start: 500, want: "n0037", wantNext: 500},
		{name: "no node fits: every node looked at, every reason counted", nodes: func() []*NodeState {
			return bigCluster(1000, func(i int) []func(*api.Node) {
				if i%10 < 3 {
					return []func(*api.Node){cordoned}
				}
				return []func(*api.Node){notReady}
			})
		}, pod: pod("p"), start: 123, wantError: true, wantNext: 123,
			want: "0/1000 nodes are available: 300 node(s) were unschedulable, 700 node(s) were not ready"},
		{name: "no nodes at all", nodes: func() []*NodeState { return nil }, pod: pod("p"), wantError: true,
			want: "0/0 nodes are available: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := PlaceSampled(tc.pod, tc.nodes(), Spread, tc.start)
			if err != nil {
				if _, ok := err.(*Unschedulable); !ok {
					t.Fatalf("error %T, want *Unschedulable", err)
				}
				got = err.Error()
			}
			if (err != nil) != tc.wantError || got != tc.want || next != tc.wantNext {
				t.Fatalf("got %q (error %v), next %d; want %q, next %d", got, err != nil, next, tc.want, tc.wantNext)
			}
		})
	}
}

// Successive pods spread over the whole cluster as the offset rotates,
// as planBindings places a round's pods.
func TestPlaceSampledRotates(t *testing.T) {
	nodes := bigCluster(5000, nil)
	byName := map[string]*NodeState{}
	for _, n := range nodes {
		byName[n.Node.Metadata.Name] = n
	}
	start, hit := 0, map[string]int{}
	for i := range 5000 {
		p := pod(fmt.Sprintf("p%d", i), requests("100m", "64Mi"), owned("rs1"))
		name, next, err := PlaceSampled(p, nodes, Spread, start)
		if err != nil {
			t.Fatal(err)
		}
		start = next
		hit[name]++
		byName[name].AddPod(p)
	}
	// 5,000 replicas of one owner on 5,000 nodes: one each.
	if len(hit) != 5000 {
		t.Fatalf("5000 pods on %d nodes, want one per node", len(hit))
	}
}

// The cache in NodeState follows what placement is shown: pods appended
// (AddPod or append), a Pods slice replaced, a Node replaced; Place over
// warm NodeStates answers as over fresh ones.
func TestPlaceCacheFollowsState(t *testing.T) {
	n := state(node("a")) // 2 cpu, 4Gi
	big := pod("p", requests("1", "1Gi"))
	for i := range 2 {
		if got, err := Place(big, []*NodeState{n}, Spread); err != nil || got != "a" {
			t.Fatalf("pod %d: %q, %v", i, got, err)
		}
		n.AddPod(pod(fmt.Sprintf("x%d", i), requests("1", "1Gi")))
	}
	if _, err := Place(big, []*NodeState{n}, Spread); err == nil || !strings.Contains(err.Error(), "Insufficient cpu") {
		t.Fatalf("full node: %v, want Insufficient cpu", err)
	}
	n.Pods = n.Pods[:1:1] // a new, shorter list
	if got, err := Place(big, []*NodeState{n}, Spread); err != nil || got != "a" {
		t.Fatalf("after Pods was cut: %q, %v", got, err)
	}
	n.Pods = append(make([]*api.Pod, 0, 8), n.Pods...)
	n.Pods = append(n.Pods, pod("y", requests("1", "1Gi"))) // appended within capacity
	if _, err := Place(big, []*NodeState{n}, Spread); err == nil {
		t.Fatal("the appended pod was not counted")
	}
	bigger := node("a")
	bigger.Status.Allocatable["cpu"] = "8"
	n.Node = bigger
	if got, err := Place(big, []*NodeState{n}, Spread); err != nil || got != "a" {
		t.Fatalf("after the Node grew: %q, %v", got, err)
	}

	// A round of placements over warm states against fresh ones.
	rnd := rand.New(rand.NewPCG(1, 2))
	warm := bigCluster(40, func(i int) []func(*api.Node) {
		if i%7 == 3 {
			return []func(*api.Node){cordoned}
		}
		return nil
	})
	for i := range 600 {
		p := pod(fmt.Sprintf("p%d", i), requests(fmt.Sprintf("%dm", 10+rnd.IntN(200)), fmt.Sprintf("%dMi", 16+rnd.IntN(256))),
			owned(fmt.Sprintf("rs%d", rnd.IntN(5))))
		if rnd.IntN(4) == 0 {
			p.Spec.Affinity = &api.Affinity{NodeAffinity: &api.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []*api.PreferredSchedulingTerm{
				{Weight: 1, Preference: &api.NodeSelectorTerm{MatchExpressions: []*api.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{"n0005", "n0006"}}}}}}}}
		}
		fresh := make([]*NodeState, len(warm))
		for j, s := range warm {
			fresh[j] = &NodeState{Node: s.Node, Pods: append([]*api.Pod(nil), s.Pods...)}
		}
		strategy := []Strategy{Spread, Binpack}[i%2]
		got, err1 := Place(p, warm, strategy)
		want, err2 := Place(p, fresh, strategy)
		if got != want || (err1 == nil) != (err2 == nil) {
			t.Fatalf("pod %d: warm %q %v, fresh %q %v", i, got, err1, want, err2)
		}
		if err1 != nil {
			continue
		}
		for _, s := range warm {
			if s.Node.Metadata.Name == got {
				s.AddPod(p)
			}
		}
	}
}

// Owners whose hashes collide on one node are counted apart.
func TestOwnerCountsCollisions(t *testing.T) {
	var oc ownerCounts
	a, b, c := ownerKey{"Deployment", "a"}, ownerKey{"Deployment", "b"}, ownerKey{"Deployment", "c"}
	oc.add(a, 42)
	oc.add(b, 42) // the same hash as a
	oc.add(b, 42)
	oc.add(c, 7)
	for _, tc := range []struct {
		o    ownerKey
		h    uint64
		want int32
	}{{a, 42, 1}, {b, 42, 2}, {c, 7, 1}, {ownerKey{"Deployment", "d"}, 42, 0}, {ownerKey{"Deployment", "e"}, 99, 0}} {
		if got := oc.get(tc.o, tc.h); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.o, got, tc.want)
		}
	}
	// The last owner looked up is cached: adds keep it exact.
	oc.add(b, 42)
	if got := oc.get(b, 42); got != 3 {
		t.Errorf("b after an add: %d, want 3", got)
	}
	oc.add(a, 42)
	if got, got2 := oc.get(a, 42), oc.get(b, 42); got != 2 || got2 != 3 {
		t.Errorf("a, b: %d, %d, want 2, 3", got, got2)
	}
	oc.reset()
	if got := oc.get(b, 42); got != 0 {
		t.Errorf("after reset: %d", got)
	}
}
