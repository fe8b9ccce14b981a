package scheduler

import (
	"fmt"
	"testing"

	"github.com/shoalproj/shoal/api"
)

// benchCluster is n Ready nodes of 32 cpu and 128Gi, each running
// podsPerNode pods of 100m/128Mi owned by one of owners Deployments, the
// shape `make bench-sched` places into.
// The objects are made first and the NodeStates after, in one loop, as
// planBindings makes them over the objects of the store.
func benchCluster(n, podsPerNode, owners int) []*NodeState {
	objs := make([]*api.Node, n)
	pods := make([][]*api.Pod, n)
	k := 0
	for i := range objs {
		objs[i] = node(fmt.Sprintf("hollow-%05d", i))
		objs[i].Status.Allocatable = map[string]string{"cpu": "32", "memory": "128Gi", "pods": "250"}
		for j := 0; j < podsPerNode; j++ {
			pods[i] = append(pods[i], benchPod(fmt.Sprintf("p%d", k), k%owners))
			k++
		}
	}
	nodes := make([]*NodeState, n)
	for i := range nodes {
		nodes[i] = &NodeState{Node: objs[i]}
		for _, p := range pods[i] {
			nodes[i].AddPod(p)
		}
	}
	return nodes
}

func benchPod(name string, owner int) *api.Pod {
	return pod(name, requests("100m", "128Mi"), func(p *api.Pod) {
		p.Metadata.OwnerReferences = []*api.OwnerReference{{Kind: "Deployment", Uid: fmt.Sprintf("uid-%d", owner), Controller: true}}
	})
}

// BenchmarkPlace is one placement decision over every node (Place) and
// over a sample (PlaceSampled), on clusters of 500 and 5,000 nodes with 20
// pods each; the nodes' caches are warm as they are after the first pod
// of a round.
func BenchmarkPlace(b *testing.B) {
	for _, n := range []int{500, 5000} {
		nodes := benchCluster(n, 20, 100)
		p := benchPod("new", 7)
		b.Run(fmt.Sprintf("exact/nodes=%d", n), func(b *testing.B) {
			_, _ = Place(p, nodes, Spread) // fills the nodes' caches
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Place(p, nodes, Spread); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlaceSampled is PlaceSampled on the same clusters, the start
// offset rotating as planBindings would carry it.
func BenchmarkPlaceSampled(b *testing.B) {
	for _, n := range []int{500, 5000} {
		nodes := benchCluster(n, 20, 100)
		p := benchPod("new", 7)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			_, _ = Place(p, nodes, Spread) // fills the nodes' caches
			b.ReportAllocs()
			start := 0
			for b.Loop() {
				var err error
				if _, start, err = PlaceSampled(p, nodes, Spread, start); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
