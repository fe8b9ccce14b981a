package scheduler

import "github.com/shoalproj/shoal/api"

// topologySpread is one of the pod's topologySpreadConstraints with the
// number of matching pods in each domain (the values of topologyKey on the
// nodes; the hostname label is the node's name), counted once per
// decision over every node.
type topologySpread struct {
	c      *api.TopologySpreadConstraint
	counts map[string]int
	min    int // the fewest matching pods in a domain
}

// topologyDomain is node n's domain for key, and whether it has one.
func topologyDomain(n *NodeState, key string) (string, bool) {
	if key == "kubernetes.io/hostname" {
		return n.Node.GetMetadata().GetName(), true
	}
	v, ok := n.Node.GetMetadata().GetLabels()[key]
	return v, ok
}

// prepareTopology counts, for each constraint of the pod, its matching
// pods per domain over nodes. Like kube-scheduler, only nodes that are
// Ready, schedulable and match the pod's nodeSelector and required node
// affinity make domains. Pods without constraints cost nothing here.
func (pi *podInfo) prepareTopology(nodes []*NodeState) {
	cons := pi.pod.GetSpec().GetTopologySpreadConstraints()
	if len(cons) == 0 {
		return
	}
	pi.spreads = make([]topologySpread, len(cons))
	for i, c := range cons {
		pi.spreads[i] = topologySpread{c: c, counts: map[string]int{}}
	}
	for _, n := range nodes {
		n.sync()
		if n.c.nodeReason != "" || nodeSelectorMatches(pi, n) != "" || requiredNodeAffinity(pi, n) != "" {
			continue
		}
		for i := range pi.spreads {
			ts := &pi.spreads[i]
			d, ok := topologyDomain(n, ts.c.GetTopologyKey())
			if !ok {
				continue
			}
			c := ts.counts[d]
			for _, p := range n.Pods {
				if p.GetMetadata().GetNamespace() == pi.namespace && selectorMatches(ts.c.GetLabelSelector(), p.GetMetadata().GetLabels()) {
					c++
				}
			}
			ts.counts[d] = c
		}
	}
	for i := range pi.spreads {
		ts := &pi.spreads[i]
		first := true
		for _, c := range ts.counts {
			if first || c < ts.min {
				ts.min, first = c, false
			}
		}
	}
}

// topologySpreadFits: placing the pod on n keeps every DoNotSchedule
// constraint within its maxSkew.
func topologySpreadFits(pi *podInfo, n *NodeState) string {
	for i := range pi.spreads {
		ts := &pi.spreads[i]
		if ts.c.GetWhenUnsatisfiable() == "ScheduleAnyway" {
			continue
		}
		d, ok := topologyDomain(n, ts.c.GetTopologyKey())
		if !ok {
			return "node(s) didn't match pod topology spread constraints (missing required label)"
		}
		if skew := ts.counts[d] + 1 - ts.min; skew > int(max(ts.c.GetMaxSkew(), 1)) {
			return "node(s) didn't match pod topology spread constraints"
		}
	}
	return ""
}

// topologySpreadPenalty ranks nodes for ScheduleAnyway constraints: the
// more matching pods in the node's domain, the lower.
func topologySpreadPenalty(pi *podInfo, n *NodeState) int64 {
	var p int64
	for i := range pi.spreads {
		ts := &pi.spreads[i]
		if ts.c.GetWhenUnsatisfiable() != "ScheduleAnyway" {
			continue
		}
		d, ok := topologyDomain(n, ts.c.GetTopologyKey())
		if !ok {
			continue
		}
		p += int64(ts.counts[d]-ts.min) * 100_000
	}
	return p
}
