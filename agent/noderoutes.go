package agent

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/api"
)

// wantedPeers is, for node self, every other node that has a pod subnet
// and an address (its InternalIP), sorted by name: the peers its pods
// reach, through a route to that subnet (host-gw) or the VXLAN overlay, as
// the pod network's mode decides.
func wantedPeers(self string, nodes []*api.Node) []podnet.Peer {
	var peers []podnet.Peer
	for _, n := range nodes {
		name := n.GetMetadata().GetName()
		if name == self || n.GetSpec().GetPodCidr() == "" {
			continue
		}
		for _, a := range n.GetStatus().GetAddresses() {
			if a.GetType() == "InternalIP" && a.GetAddress() != "" {
				peers = append(peers, podnet.Peer{Name: name, PodCIDR: n.GetSpec().GetPodCidr(), Address: a.GetAddress()})
				break
			}
		}
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	return peers
}

// routeSyncer sets the host's way to other nodes' pods.
type routeSyncer interface {
	SyncRoutes(peers []podnet.Peer) error
}

// nodeRoutesResync bounds the time between two syncs, to put back a route
// someone removed.
const nodeRoutesResync = 30 * time.Second

// syncNodeRoutes keeps the way to the other nodes' pod subnets (routes,
// and the overlay's entries) in line with the Node objects until ctx ends:
// a list, then a watch; again from a list when the watch breaks.
func syncNodeRoutes(ctx context.Context, client api.ShoalClient, self string, routes routeSyncer, log *slog.Logger) {
	var last error
	mirrorKind(ctx, client, "Node", nodeRoutesResync, log, func(objs map[string]api.Resource) {
		list := make([]*api.Node, 0, len(objs))
		for _, r := range objs {
			if n, ok := r.(*api.Node); ok {
				list = append(list, n)
			}
		}
		err := routes.SyncRoutes(wantedPeers(self, list))
		if err != nil && (last == nil || err.Error() != last.Error()) {
			log.Warn("routes to other nodes' pods", "err", err)
		}
		last = err
	})
}
