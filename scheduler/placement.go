// Package scheduler places pods on nodes: pure functions that filter nodes,
// score them and pick one (this file; PlaceSampled for large clusters),
// and the controllers only the leader runs (binding, deployments, node
// lifecycle, endpoints).
package scheduler

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/shoalproj/shoal/api"
)

// NodeState is one node as placement sees it: the Node object and the pods
// already bound to it.
//
// Placement keeps what it derives from Node and Pods (the node's own
// verdict, allocatable, the sums of requested cpu and memory, pods per
// owner) inside the NodeState, so that one decision costs the same however
// many pods a node runs. Between two calls Pods may only grow by
// appending (AddPod, or append); to remove or replace pods, set Pods to a
// new slice (a slice on another array, or a shorter one, is counted
// again) or make a new NodeState: pods changed in place, on the same
// array, are not noticed. A new Node is read again. Because Place and
// PlaceSampled update the cache, a NodeState is not safe for concurrent
// use.
type NodeState struct {
	Node *api.Node
	Pods []*api.Pod

	c nodeCache
}

// AddPod records pod as bound to the node (the same as appending it to
// Pods).
func (n *NodeState) AddPod(pod *api.Pod) { n.Pods = append(n.Pods, pod) }

// nodeCache is what placement derived from a NodeState. The fields one
// decision reads of every node it looks at come first, together: over
// thousands of nodes a decision's cost is the memory it touches.
type nodeCache struct {
	node *api.Node // the Node the node fields were read from
	pods int       // how many of Pods the sums include
	base **api.Pod // &Pods[0] when summed: a new array is summed again
	// nodeReason is the first reason of the filters that look at the
	// node alone (ready, schedulable), "" when it passes them.
	nodeReason         string
	tainted            bool // the node has NoSchedule or NoExecute taints
	allocCPU, allocMem int64
	usedCPU, usedMem   int64
	load               int64     // loadPercent of the above
	nameKey            [2]uint64 // the name's first 16 bytes, big-endian: ties compare these first
	owners             ownerCounts

	name   string
	labels map[string]string // nodeLabels(node), made on first use
}

// sync brings the cache in line with Node and Pods.
func (n *NodeState) sync() {
	c := &n.c
	if c.node != n.Node {
		c.node = n.Node
		c.name = n.Node.GetMetadata().GetName()
		c.nameKey = nameKey(c.name)
		c.nodeReason = nodeReady(nil, n)
		if c.nodeReason == "" {
			c.nodeReason = nodeSchedulable(nil, n)
		}
		c.tainted = false
		for _, t := range n.Node.GetSpec().GetTaints() {
			c.tainted = c.tainted || t.Effect == "NoSchedule" || t.Effect == "NoExecute"
		}
		c.allocCPU, c.allocMem = allocatable(n.Node)
		c.labels = nil
		c.load = loadPercent(c.allocCPU, c.allocMem, c.usedCPU, c.usedMem, c.pods)
	}
	if len(n.Pods) < c.pods || (c.pods > 0 && &n.Pods[0] != c.base) {
		c.pods, c.usedCPU, c.usedMem = 0, 0, 0
		c.owners.reset()
		c.load = loadPercent(c.allocCPU, c.allocMem, 0, 0, 0)
	}
	if c.pods == len(n.Pods) {
		return
	}
	for _, p := range n.Pods[c.pods:] {
		cpu, mem := podRequests(p)
		c.usedCPU += cpu
		c.usedMem += mem
		if o, ok := ownerKeyOf(p); ok {
			c.owners.add(o, o.hash())
		}
	}
	c.pods = len(n.Pods)
	c.base = &n.Pods[0]
	c.load = loadPercent(c.allocCPU, c.allocMem, c.usedCPU, c.usedMem, c.pods)
}

// nameKey packs the first 16 bytes of name, zero-padded, into two
// big-endian words: two names whose keys differ compare as their keys do.
func nameKey(name string) [2]uint64 {
	var b [16]byte
	copy(b[:], name)
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// nameLess is name(a) < name(b) for two synced nodes.
func nameLess(a, b *nodeCache) bool {
	switch {
	case a.nameKey[0] != b.nameKey[0]:
		return a.nameKey[0] < b.nameKey[0]
	case a.nameKey[1] != b.nameKey[1]:
		return a.nameKey[1] < b.nameKey[1]
	}
	return a.name < b.name
}

// labelMap is the node's labels with the hostname label (cached).
func (n *NodeState) labelMap() map[string]string {
	if n.c.labels == nil {
		n.c.labels = nodeLabels(n.Node)
	}
	return n.c.labels
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
type filter func(pod *podInfo, n *NodeState) string

// The filters run in this order; the first reason a node gives is the one
// reported: nodeReady, nodeSchedulable (these two look at the node alone:
// their verdict is cached), then the filters of the pod (podInfo.filters:
// those that can fail for it).
var podFilters = []struct {
	f       filter
	applies func(pi *podInfo) bool
}{
	{nodeSelectorMatches, func(pi *podInfo) bool { return len(pi.pod.GetSpec().GetNodeSelector()) > 0 }},
	{requiredNodeAffinity, func(pi *podInfo) bool {
		return len(pi.pod.GetSpec().GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution().GetNodeSelectorTerms()) > 0
	}},
	{taintsTolerated, func(*podInfo) bool { return true }},
	{hostPortsFree, func(pi *podInfo) bool { return len(pi.ports) > 0 }},
	{resourcesFit, func(pi *podInfo) bool { return pi.cpu != 0 || pi.mem != 0 }},
	{requiredAntiAffinity, func(pi *podInfo) bool {
		return len(pi.pod.GetSpec().GetAffinity().GetPodAntiAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution()) > 0
	}},
	{topologySpreadFits, func(pi *podInfo) bool { return len(pi.pod.GetSpec().GetTopologySpreadConstraints()) > 0 }},
}

// podInfo is what placement reads from the pod to place, once per
// decision rather than once per node.
type podInfo struct {
	pod       *api.Pod
	namespace string
	cpu, mem  int64
	ports     []hostPort
	owner     ownerKey
	ownerHash uint64
	owned     bool
	filters   []filter // the pod filters that can fail for this pod
	buf       [7]filter
	spreads   []topologySpread // see prepareTopology
	prefNode  []*api.PreferredSchedulingTerm
	prefAnti  []*api.WeightedPodAffinityTerm
}

func newPodInfo(pod *api.Pod) *podInfo {
	pi := &podInfo{pod: pod, namespace: pod.GetMetadata().GetNamespace(), ports: podHostPorts(pod)}
	pi.filters = pi.buf[:0]
	aff := pod.GetSpec().GetAffinity()
	pi.prefNode = aff.GetNodeAffinity().GetPreferredDuringSchedulingIgnoredDuringExecution()
	pi.prefAnti = aff.GetPodAntiAffinity().GetPreferredDuringSchedulingIgnoredDuringExecution()
	pi.cpu, pi.mem = podRequests(pod)
	pi.owner, pi.owned = ownerKeyOf(pod)
	if pi.owned {
		pi.ownerHash = pi.owner.hash()
	}
	for _, f := range podFilters {
		if f.applies(pi) {
			pi.filters = append(pi.filters, f.f)
		}
	}
	return pi
}

// check runs the filters on one node: the first reason it gives, or "".
func check(pi *podInfo, n *NodeState) string {
	n.sync()
	if n.c.nodeReason != "" {
		return n.c.nodeReason
	}
	for _, f := range pi.filters {
		if reason := f(pi, n); reason != "" {
			return reason
		}
	}
	return ""
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
// returns *Unschedulable when no node fits. It looks at every node: see
// PlaceSampled for large clusters.
func Place(pod *api.Pod, nodes []*NodeState, strategy Strategy) (string, error) {
	pi := newPodInfo(pod)
	pi.prepareTopology(nodes)
	reasons := map[string]int{}
	var best bestNode
	for _, n := range nodes {
		if reason := check(pi, n); reason != "" {
			reasons[reason]++
			continue
		}
		best.consider(n, score(pi, n, strategy))
	}
	if best.found == 0 {
		return "", &Unschedulable{Nodes: len(nodes), Reasons: reasons}
	}
	return best.name(), nil
}

// bestNode is the best scored node so far, ties going to the first name.
type bestNode struct {
	node  *nodeCache
	score int64
	found int
}

func (b *bestNode) consider(n *NodeState, s int64) {
	if b.found == 0 || s > b.score || (s == b.score && nameLess(&n.c, b.node)) {
		b.node, b.score = &n.c, s
	}
	b.found++
}

func (b *bestNode) name() string { return b.node.name }

// Sampling bounds, as kube-scheduler's percentageOfNodesToScore when left
// adaptive: every node of a small cluster, otherwise a share that shrinks
// from 50% as the cluster grows, never under 5% nor under 100 nodes.
const (
	minFeasibleNodes        = 100
	minFeasiblePercent      = 5
	adaptivePercentBase     = 50
	adaptivePercentPerNodes = 125 // the share drops one point per this many nodes
)

// feasibleTarget is how many feasible nodes PlaceSampled looks for among
// n before it stops filtering and scores what it found.
func feasibleTarget(n int) int {
	if n < minFeasibleNodes {
		return n
	}
	pct := max(minFeasiblePercent, adaptivePercentBase-n/adaptivePercentPerNodes)
	return max(minFeasibleNodes, n*pct/100)
}

// PlaceSampled picks the node for pod as Place does, among a sample: it
// walks nodes from index start (wrapping around) and stops as soon as it
// has found feasibleTarget(len(nodes)) nodes that pass every filter, then
// scores only those (kube-scheduler's percentageOfNodesToScore), so that
// one decision costs the same at 500 nodes and at 5,000. It returns the
// index the next pod's walk should start at, past the nodes this one
// looked at, so that successive pods look at different nodes.
//
// Below 100 nodes, and whenever fewer nodes fit than the target, it looks
// at every node and its answer is Place's. When no node fits it has looked
// at every node and returns *Unschedulable with every node's reason.
func PlaceSampled(pod *api.Pod, nodes []*NodeState, strategy Strategy, start int) (node string, next int, err error) {
	total := len(nodes)
	if total == 0 {
		return "", 0, &Unschedulable{Reasons: map[string]int{}}
	}
	if start < 0 || start >= total {
		start = ((start % total) + total) % total
	}
	pi := newPodInfo(pod)
	pi.prepareTopology(nodes)
	target := feasibleTarget(total)
	reasons := map[string]int{}
	var best bestNode
	looked, i := 0, start
	for looked < total && best.found < target {
		n := nodes[i]
		looked++
		if i++; i == total {
			i = 0
		}
		if reason := check(pi, n); reason != "" {
			reasons[reason]++
			continue
		}
		best.consider(n, score(pi, n, strategy))
	}
	next = i
	if best.found == 0 {
		return "", next, &Unschedulable{Nodes: total, Reasons: reasons}
	}
	return best.name(), next, nil
}

// ---------------------------------------------------------------- filters

func nodeReady(_ *podInfo, n *NodeState) string {
	for _, c := range n.Node.GetStatus().GetConditions() {
		if c.Type == "Ready" && c.Status == "True" {
			return ""
		}
	}
	return "node(s) were not ready"
}

func nodeSchedulable(_ *podInfo, n *NodeState) string {
	if n.Node.GetSpec().GetUnschedulable() {
		return "node(s) were unschedulable"
	}
	return ""
}

func nodeSelectorMatches(pi *podInfo, n *NodeState) string {
	sel := pi.pod.GetSpec().GetNodeSelector()
	if len(sel) == 0 {
		return ""
	}
	labels := n.labelMap()
	for k, v := range sel {
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

func requiredNodeAffinity(pi *podInfo, n *NodeState) string {
	req := pi.pod.GetSpec().GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution()
	if req == nil || len(req.NodeSelectorTerms) == 0 {
		return ""
	}
	labels := n.labelMap()
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
func taintsTolerated(pi *podInfo, n *NodeState) string {
	if !n.c.tainted {
		return ""
	}
	for _, t := range n.Node.GetSpec().GetTaints() {
		if t.Effect != "NoSchedule" && t.Effect != "NoExecute" {
			continue
		}
		if !tolerates(pi.pod.GetSpec().GetTolerations(), t) {
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

func hostPortsFree(pi *podInfo, n *NodeState) string {
	if len(pi.ports) == 0 {
		return ""
	}
	used := map[hostPort]bool{}
	for _, p := range n.Pods {
		for _, hp := range podHostPorts(p) {
			used[hp] = true
		}
	}
	for _, hp := range pi.ports {
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
			if m, ok := parseQuantity(v, true); ok {
				cpu += m
			}
		}
		if v, ok := req["memory"]; ok {
			if b, ok := parseQuantity(v, false); ok {
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
		cpu, _ = parseQuantity(v, true)
	}
	if v, ok := a["memory"]; ok {
		mem, _ = parseQuantity(v, false)
	}
	return cpu, mem
}

// Parsed quantities are kept: the same few strings ("100m", "128Mi") are
// parsed for every pod of every round otherwise. At most maxQuantities
// distinct strings are kept; others are parsed each time.
var quantities struct {
	sync.RWMutex
	m map[quantityKey]quantityValue
}

const maxQuantities = 4096

type quantityKey struct {
	s   string
	cpu bool // millicores (api.ParseCPU), else bytes (api.ParseBytes)
}

type quantityValue struct {
	n  int64
	ok bool
}

// parseQuantity is api.ParseCPU (cpu) or api.ParseBytes, the value and
// whether it parsed.
func parseQuantity(s string, cpu bool) (int64, bool) {
	k := quantityKey{s, cpu}
	quantities.RLock()
	q, ok := quantities.m[k]
	quantities.RUnlock()
	if ok {
		return q.n, q.ok
	}
	var n int64
	var err error
	if cpu {
		n, err = api.ParseCPU(s)
	} else {
		n, err = api.ParseBytes(s)
	}
	quantities.Lock()
	if len(quantities.m) < maxQuantities {
		if quantities.m == nil {
			quantities.m = map[quantityKey]quantityValue{}
		}
		quantities.m[k] = quantityValue{n, err == nil}
	}
	quantities.Unlock()
	return n, err == nil
}

// resourcesFit: the pod's requests fit in what the node's pods leave of
// its allocatable (n's cache is in sync: check ran sync).
func resourcesFit(pi *podInfo, n *NodeState) string {
	if pi.cpu == 0 && pi.mem == 0 {
		return ""
	}
	c := &n.c
	switch {
	case pi.cpu > 0 && c.usedCPU+pi.cpu > c.allocCPU:
		return "Insufficient cpu"
	case pi.mem > 0 && c.usedMem+pi.mem > c.allocMem:
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
func requiredAntiAffinity(pi *podInfo, n *NodeState) string {
	for _, term := range pi.pod.GetSpec().GetAffinity().GetPodAntiAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution() {
		for _, p := range n.Pods {
			if p.GetMetadata().GetNamespace() == pi.namespace && selectorMatches(term.LabelSelector, p.GetMetadata().GetLabels()) {
				return "node(s) didn't match pod anti-affinity rules"
			}
		}
	}
	return ""
}

// ---------------------------------------------------------------- scores

// score ranks a node that fits (n's cache is in sync): higher is better.
// The parts are scaled so that keeping a workload's replicas apart weighs
// most, then preferred affinities, then the strategy's view of load.
func score(pi *podInfo, n *NodeState, strategy Strategy) int64 {
	var s int64
	// Spread the pods of one owner (a Deployment's revision) over nodes.
	if pi.owned {
		s -= int64(n.c.owners.get(pi.owner, pi.ownerHash)) * 1_000_000
	}
	// Preferred node affinity: the weights of the terms the node matches.
	if len(pi.prefNode) > 0 {
		labels := n.labelMap()
		for _, pref := range pi.prefNode {
			if pref.Preference != nil && termMatches(pref.Preference, labels) {
				s += int64(pref.Weight) * 1_000
			}
		}
	}
	// Preferred anti-affinity: the weight of each term the node breaks.
	for _, w := range pi.prefAnti {
		for _, p := range n.Pods {
			if p.GetMetadata().GetNamespace() == pi.namespace && selectorMatches(w.GetPodAffinityTerm().GetLabelSelector(), p.GetMetadata().GetLabels()) {
				s -= int64(w.Weight) * 1_000
				break
			}
		}
	}
	// Soft topology spread (ScheduleAnyway): fewer matching pods in the
	// node's domain is better.
	if len(pi.spreads) > 0 {
		s -= topologySpreadPenalty(pi, n)
	}
	// Load: the share of the node's cpu and memory requested, 0-100.
	if strategy == Binpack {
		s += n.c.load
	} else {
		s -= n.c.load
	}
	return s
}

// loadPercent is the share of a node's allocatable cpu and memory its
// pods request, 0-100 (more when overcommitted); with no capacity known,
// the number of pods.
func loadPercent(allocCPU, allocMem, usedCPU, usedMem int64, pods int) int64 {
	var pct int64
	if allocCPU > 0 {
		pct += usedCPU * 50 / allocCPU
	}
	if allocMem > 0 {
		pct += usedMem * 50 / allocMem
	}
	if allocCPU == 0 && allocMem == 0 {
		pct = int64(pods) // no capacity known: count pods
	}
	return pct
}

// ownerOf is the controller that owns a pod, "" for a bare pod.
func ownerOf(p *api.Pod) string {
	if o, ok := ownerKeyOf(p); ok {
		return o.kind + "/" + o.uid
	}
	return ""
}

// ownerKey is ownerOf without building a string.
type ownerKey struct{ kind, uid string }

// ownerSeed seeds the hashes of owners for this process.
var ownerSeed = maphash.MakeSeed()

func (o ownerKey) hash() uint64 {
	var h maphash.Hash
	h.SetSeed(ownerSeed)
	h.WriteString(o.kind)
	h.WriteByte(0)
	h.WriteString(o.uid)
	return h.Sum64()
}

// ownerCounts counts a node's pods per owner. It is keyed by the owner's
// hash, computed once per pod, so that a lookup hashes no strings; owners
// whose hashes collide with another's on the same node are counted apart,
// so the counts are exact. A small Bloom filter of the hashes answers most
// lookups of owners the node has no pod of without reading the map (the
// map's memory, not its arithmetic, is what a lookup costs over thousands
// of nodes). The last owner looked up is kept with its count, so that the
// replicas of one Deployment, placed one after the other, read the map of
// a node once.
type ownerCounts struct {
	bloom     [4]uint64
	byHash    map[uint64]ownerCount
	colliding map[ownerKey]int32

	lastSet  bool
	lastHash uint64
	lastKey  ownerKey
	lastN    int32
}

// bloomBits are the two bits of the filter an owner's hash sets.
func bloomBits(h uint64) (uint64, uint64) { return h & 255, (h >> 8) & 255 }

type ownerCount struct {
	key ownerKey
	n   int32
}

func (oc *ownerCounts) add(o ownerKey, h uint64) {
	if oc.byHash == nil {
		oc.byHash = map[uint64]ownerCount{}
	}
	a, b := bloomBits(h)
	oc.bloom[a/64] |= 1 << (a % 64)
	oc.bloom[b/64] |= 1 << (b % 64)
	cur, ok := oc.byHash[h]
	switch {
	case !ok:
		oc.byHash[h] = ownerCount{key: o, n: 1}
	case cur.key == o:
		cur.n++
		oc.byHash[h] = cur
	default:
		if oc.colliding == nil {
			oc.colliding = map[ownerKey]int32{}
		}
		oc.colliding[o]++
	}
	if oc.lastSet && oc.lastHash == h && oc.lastKey == o {
		oc.lastN++
	}
}

func (oc *ownerCounts) get(o ownerKey, h uint64) int32 {
	if oc.lastSet && oc.lastHash == h && oc.lastKey == o {
		return oc.lastN
	}
	if a, b := bloomBits(h); oc.bloom[a/64]&(1<<(a%64)) == 0 || oc.bloom[b/64]&(1<<(b%64)) == 0 {
		return 0
	}
	var n int32
	cur, ok := oc.byHash[h]
	switch {
	case !ok:
	case cur.key == o:
		n = cur.n
	default:
		n = oc.colliding[o]
	}
	oc.lastSet, oc.lastHash, oc.lastKey, oc.lastN = true, h, o, n
	return n
}

func (oc *ownerCounts) reset() {
	oc.lastSet = false
	oc.bloom = [4]uint64{}
	clear(oc.byHash)
	clear(oc.colliding)
}

func ownerKeyOf(p *api.Pod) (ownerKey, bool) {
	for _, o := range p.GetMetadata().GetOwnerReferences() {
		if o.Controller {
			return ownerKey{o.Kind, o.Uid}, true
		}
	}
	return ownerKey{}, false
}
