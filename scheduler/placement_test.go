package scheduler

import (
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

func TestPlace(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pod      *api.Pod
		nodes    []*NodeState
		strategy Strategy
		want     string // node, or the error's text
	}{
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
	} {
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
