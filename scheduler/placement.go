// Package scheduler places pods on nodes: pure functions that filter nodes,
// score them and pick one (this file), and, to come, the controllers only
// the leader runs (binding, deployments, node lifecycle, endpoints).
package scheduler

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/shoalproj/shoal/api"
)

// NodeState is one node as placement sees it: the Node object and the pods
// already bound to it.
type NodeState struct {
	Node *api.Node
	Pods []*api.Pod
}

// Strategy is how pods are spread over the nodes that fit.
type Strategy string

const (
	// Spread prefers the least loaded nodes (Swarm's default).
	Spread Strategy = "spread"
	// Binpack prefers the most loaded nodes that still fit, to keep others
	// empty.
	Binpack Strategy = "binpack"
)

// filter says why a node cannot take a pod, or "" when it can.
type filter func(pod *api.Pod, n *NodeState) string

// filters run in order; the first reason a node gives is the one reported.
func filters() []filter {
	return []filter{
		nodeReady,
		nodeSchedulable,
		nodeSelectorMatches,
		requiredNodeAffinity,
		taintsTolerated,
		hostPortsFree,
		resourcesFit,
		requiredAntiAffinity,
	}
}

// Unschedulable is a pod that no node can take, with the reasons per node
// in Kubernetes' words.
type Unschedulable struct {
	Nodes   int
	Reasons map[string]int // reason → number of nodes
}

func (u *Unschedulable) Error() string {
	var parts []string
	for r, n := range u.Reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s", u.Nodes, strings.Join(parts, ", "))
}

// Place picks the node for pod among nodes: those that pass every filter,
// the best scored, ties broken by name so that the result is stable. It
// returns *Unschedulable when no node fits.
func Place(pod *api.Pod, nodes []*NodeState, strategy Strategy) (string, error) {
	fit := make([]*NodeState, 0, len(nodes))
	reasons := map[string]int{}
	pipeline := filters()
	for _, n := range nodes {
		reason := ""
		for _, f := range pipeline {
			if reason = f(pod, n); reason != "" {
				break
			}
		}
		if reason != "" {
			reasons[reason]++
			continue
		}
		fit = append(fit, n)
	}
	if len(fit) == 0 {
		return "", &Unschedulable{Nodes: len(nodes), Reasons: reasons}
	}
	best, bestScore := "", int64(-1<<62)
	for _, n := range fit {
		s := score(pod, n, strategy)
		name := n.Node.GetMetadata().GetName()
		if s > bestScore || (s == bestScore && name < best) {
			best, bestScore = name, s
		}
	}
	return best, nil
}

// ---------------------------------------------------------------- filters

func nodeReady(_ *api.Pod, n *NodeState) string {
	for _, c := range n.Node.GetStatus().GetConditions() {
		if c.Type == "Ready" && c.Status == "True" {
			return ""
		}
	}
	return "node(s) were not ready"
}

func nodeSchedulable(_ *api.Pod, n *NodeState) string {
	if n.Node.GetSpec().GetUnschedulable() {
		return "node(s) were unschedulable"
	}
	return ""
}

func nodeSelectorMatches(pod *api.Pod, n *NodeState) string {
	labels := nodeLabels(n.Node)
	for k, v := range pod.GetSpec().GetNodeSelector() {
		if labels[k] != v {
			return "node(s) didn't match nodeSelector"
		}
	}
	return ""
}

// nodeLabels are the node's labels with the well-known hostname label.
func nodeLabels(n *api.Node) map[string]string {
	out := map[string]string{"kubernetes.io/hostname": n.GetMetadata().GetName()}
	for k, v := range n.GetMetadata().GetLabels() {
		out[k] = v
	}
	return out
}

func requiredNodeAffinity(pod *api.Pod, n *NodeState) string {
	req := pod.GetSpec().GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution()
	if req == nil || len(req.NodeSelectorTerms) == 0 {
		return ""
	}
	labels := nodeLabels(n.Node)
	// The terms are ORed, the expressions of a term ANDed.
	for _, term := range req.NodeSelectorTerms {
		if termMatches(term, labels) {
			return ""
		}
	}
	return "node(s) didn't match node affinity"
}

func termMatches(term *api.NodeSelectorTerm, labels map[string]string) bool {
	for _, e := range term.GetMatchExpressions() {
		if !expressionMatches(e.Key, e.Operator, e.Values, labels) {
			return false
		}
	}
	return true
}

func expressionMatches(key, op string, values []string, labels map[string]string) bool {
	v, has := labels[key]
	switch op {
	case "In":
		return has && contains(values, v)
	case "NotIn":
		return !has || !contains(values, v)
	case "Exists":
		return has
	case "DoesNotExist":
		return !has
	case "Gt", "Lt":
		if !has || len(values) != 1 {
			return false
		}
		a, err1 := strconv.ParseInt(v, 10, 64)
		b, err2 := strconv.ParseInt(values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if op == "Gt" {
			return a > b
		}
		return a < b
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// taintsTolerated: every NoSchedule and NoExecute taint of the node must be
// tolerated by the pod.
func taintsTolerated(pod *api.Pod, n *NodeState) string {
	for _, t := range n.Node.GetSpec().GetTaints() {
		if t.Effect != "NoSchedule" && t.Effect != "NoExecute" {
			continue
		}
		if !tolerates(pod.GetSpec().GetTolerations(), t) {
			return fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value)
		}
	}
	return ""
}

func tolerates(tols []*api.Toleration, t *api.Taint) bool {
	for _, tol := range tols {
		if tol.Effect != "" && tol.Effect != t.Effect {
			continue
		}
		switch tol.Operator {
		case "Exists":
			if tol.Key == "" || tol.Key == t.Key {
				return true
			}
		default: // Equal
			if tol.Key == t.Key && tol.Value == t.Value {
				return true
			}
		}
	}
	return false
}

type hostPort struct {
	port     int32
	protocol string
}

func podHostPorts(p *api.Pod) []hostPort {
	var out []hostPort
	for _, c := range p.GetSpec().GetContainers() {
		for _, port := range c.GetPorts() {
			if port.HostPort != 0 {
				proto := port.Protocol
				if proto == "" {
					proto = "TCP"
				}
				out = append(out, hostPort{port.HostPort, proto})
			}
		}
	}
	return out
}

func hostPortsFree(pod *api.Pod, n *NodeState) string {
	want := podHostPorts(pod)
	if len(want) == 0 {
		return ""
	}
	used := map[hostPort]bool{}
	for _, p := range n.Pods {
		for _, hp := range podHostPorts(p) {
			used[hp] = true
		}
	}
	for _, hp := range want {
		if used[hp] {
			return "node(s) didn't have free ports for the requested pod ports"
		}
	}
	return ""
}

// podRequests sums a pod's requested cpu (millicores) and memory (bytes).
// Quantities were validated when the pod was applied; one that does not
// parse counts as zero.
func podRequests(p *api.Pod) (cpu, mem int64) {
	for _, c := range p.GetSpec().GetContainers() {
		req := c.GetResources().GetRequests()
		if v, ok := req["cpu"]; ok {
			if m, err := api.ParseCPU(v); err == nil {
				cpu += m
			}
		}
		if v, ok := req["memory"]; ok {
			if b, err := api.ParseBytes(v); err == nil {
				mem += b
			}
		}
	}
	return cpu, mem
}

// allocatable is what the node offers pods (its status.allocatable, or its
// capacity when it reports no allocatable).
func allocatable(n *api.Node) (cpu, mem int64) {
	a := n.GetStatus().GetAllocatable()
	if len(a) == 0 {
		a = n.GetStatus().GetCapacity()
	}
	if v, ok := a["cpu"]; ok {
		cpu, _ = api.ParseCPU(v)
	}
	if v, ok := a["memory"]; ok {
		mem, _ = api.ParseBytes(v)
	}
	return cpu, mem
}

func used(n *NodeState) (cpu, mem int64) {
	for _, p := range n.Pods {
		c, m := podRequests(p)
		cpu += c
		mem += m
	}
	return cpu, mem
}

func resourcesFit(pod *api.Pod, n *NodeState) string {
	wantCPU, wantMem := podRequests(pod)
	if wantCPU == 0 && wantMem == 0 {
		return ""
	}
	capCPU, capMem := allocatable(n.Node)
	usedCPU, usedMem := used(n)
	switch {
	case wantCPU > 0 && usedCPU+wantCPU > capCPU:
		return "Insufficient cpu"
	case wantMem > 0 && usedMem+wantMem > capMem:
		return "Insufficient memory"
	}
	return ""
}

// selectorMatches applies a LabelSelector (matchLabels and
// matchExpressions ANDed; an empty selector matches nothing here, as a
// term with no selector selects no pods).
func selectorMatches(s *api.LabelSelector, labels map[string]string) bool {
	if s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0) {
		return false
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	for _, e := range s.MatchExpressions {
		if !expressionMatches(e.Key, e.Operator, e.Values, labels) {
			return false
		}
	}
	return true
}

// requiredAntiAffinity: no pod matching a required anti-affinity term may
// run on the node (topology kubernetes.io/hostname, the node itself).
func requiredAntiAffinity(pod *api.Pod, n *NodeState) string {
	for _, term := range pod.GetSpec().GetAffinity().GetPodAntiAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution() {
		for _, p := range n.Pods {
			if p.GetMetadata().GetNamespace() == pod.GetMetadata().GetNamespace() && selectorMatches(term.LabelSelector, p.GetMetadata().GetLabels()) {
				return "node(s) didn't match pod anti-affinity rules"
			}
		}
	}
	return ""
}

// ---------------------------------------------------------------- scores

// score ranks a node that fits: higher is better. The parts are scaled so
// that keeping a workload's replicas apart weighs most, then preferred
// affinities, then the strategy's view of load.
func score(pod *api.Pod, n *NodeState, strategy Strategy) int64 {
	var s int64
	// Spread the pods of one owner (a Deployment's revision) over nodes.
	owner := ownerOf(pod)
	same := 0
	for _, p := range n.Pods {
		if owner != "" && ownerOf(p) == owner {
			same++
		}
	}
	s -= int64(same) * 1_000_000
	// Preferred node affinity: the weights of the terms the node matches.
	labels := nodeLabels(n.Node)
	for _, pref := range pod.GetSpec().GetAffinity().GetNodeAffinity().GetPreferredDuringSchedulingIgnoredDuringExecution() {
		if pref.Preference != nil && termMatches(pref.Preference, labels) {
			s += int64(pref.Weight) * 1_000
		}
	}
	// Preferred anti-affinity: the weight of each term the node breaks.
	for _, w := range pod.GetSpec().GetAffinity().GetPodAntiAffinity().GetPreferredDuringSchedulingIgnoredDuringExecution() {
		for _, p := range n.Pods {
			if p.GetMetadata().GetNamespace() == pod.GetMetadata().GetNamespace() && selectorMatches(w.GetPodAffinityTerm().GetLabelSelector(), p.GetMetadata().GetLabels()) {
				s -= int64(w.Weight) * 1_000
				break
			}
		}
	}
	// Load: the share of the node's cpu and memory requested, 0-100.
	load := loadPercent(n)
	if strategy == Binpack {
		s += load
	} else {
		s -= load
	}
	return s
}

func loadPercent(n *NodeState) int64 {
	capCPU, capMem := allocatable(n.Node)
	usedCPU, usedMem := used(n)
	var pct int64
	if capCPU > 0 {
		pct += usedCPU * 50 / capCPU
	}
	if capMem > 0 {
		pct += usedMem * 50 / capMem
	}
	if capCPU == 0 && capMem == 0 {
		pct = int64(len(n.Pods)) // no capacity known: count pods
	}
	return pct
}

// ownerOf is the controller that owns a pod, "" for a bare pod.
func ownerOf(p *api.Pod) string {
	for _, o := range p.GetMetadata().GetOwnerReferences() {
		if o.Controller {
			return o.Kind + "/" + o.Uid
		}
	}
	return ""
}
