package agent

import (
	"reflect"
	"testing"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/api"
)

func TestWantedRoutes(t *testing.T) {
	node := func(name, cidr string, addrs ...string) *api.Node {
		n := &api.Node{Metadata: &api.ObjectMeta{Name: name}, Spec: &api.NodeSpec{PodCidr: cidr}, Status: &api.NodeStatus{}}
		for i := 0; i+1 < len(addrs); i += 2 {
			n.Status.Addresses = append(n.Status.Addresses, &api.NodeAddress{Type: addrs[i], Address: addrs[i+1]})
		}
		return n
	}
	for _, tc := range []struct {
		name  string
		self  string
		nodes []*api.Node
		want  []podnet.Peer
	}{
		{name: "no nodes", self: "a"},
		{name: "only itself", self: "a", nodes: []*api.Node{node("a", "10.244.0.0/24", "InternalIP", "10.0.0.1")}},
		{
			name: "the others, by name, each with its InternalIP",
			self: "a",
			nodes: []*api.Node{
				node("e", "10.244.4.0/24", "Hostname", "e", "InternalIP", "192.168.20.5"),
				node("a", "10.244.0.0/24", "InternalIP", "10.0.0.1"), // itself: its pods are on its bridge
				node("c", "", "InternalIP", "10.0.0.3"),              // no subnet leased yet
				node("d", "10.244.3.0/24", "Hostname", "d"),          // no address known
				node("b", "10.244.1.0/24", "Hostname", "b", "InternalIP", "10.0.0.2", "InternalIP", "10.0.0.22"),
				node("f", "10.244.5.0/24", "InternalIP", ""),            // an empty address is none
				node("g", "10.244.6.0/24", "ExternalIP", "203.0.113.7"), // only InternalIP counts
			},
			want: []podnet.Peer{
				{Name: "b", PodCIDR: "10.244.1.0/24", Address: "10.0.0.2"},
				{Name: "e", PodCIDR: "10.244.4.0/24", Address: "192.168.20.5"},
			},
		},
		{name: "a nil node is skipped", self: "a", nodes: []*api.Node{nil, node("b", "10.244.1.0/24", "InternalIP", "10.0.0.2")},
			want: []podnet.Peer{{Name: "b", PodCIDR: "10.244.1.0/24", Address: "10.0.0.2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wantedPeers(tc.self, tc.nodes); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("peers %+v, want %+v", got, tc.want)
			}
		})
	}
}
