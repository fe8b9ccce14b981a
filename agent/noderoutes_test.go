package agent

import (
	"testing"

	"github.com/shoalproj/shoal/api"
)

func TestWantedRoutes(t *testing.T) {
	node := func(name, cidr, ip string) *api.Node {
		n := &api.Node{Metadata: &api.ObjectMeta{Name: name}, Spec: &api.NodeSpec{PodCidr: cidr}, Status: &api.NodeStatus{}}
		if ip != "" {
			n.Status.Addresses = []*api.NodeAddress{{Type: "Hostname", Address: name}, {Type: "InternalIP", Address: ip}}
		}
		return n
	}
	got := wantedRoutes("a", []*api.Node{
		node("a", "10.244.0.0/24", "10.0.0.1"), // itself: its pods are on its bridge
		node("b", "10.244.1.0/24", "10.0.0.2"),
		node("c", "", "10.0.0.3"),      // no subnet leased yet
		node("d", "10.244.3.0/24", ""), // no address known
		node("e", "10.244.4.0/24", "10.0.0.5"),
	})
	if len(got) != 2 || got["10.244.1.0/24"] != "10.0.0.2" || got["10.244.4.0/24"] != "10.0.0.5" {
		t.Fatalf("routes %v", got)
	}
}
