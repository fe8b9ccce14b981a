package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/shoalproj/shoal/api"
)

// wantedRoutes is, for node self, a route to every other node's pod subnet
// through that node's address (host-gw: nodes on one link reach each
// other's pods without an overlay).
func wantedRoutes(self string, nodes []*api.Node) map[string]string {
	want := map[string]string{}
	for _, n := range nodes {
		if n.GetMetadata().GetName() == self || n.GetSpec().GetPodCidr() == "" {
			continue
		}
		for _, a := range n.GetStatus().GetAddresses() {
			if a.GetType() == "InternalIP" && a.GetAddress() != "" {
				want[n.GetSpec().GetPodCidr()] = a.GetAddress()
				break
			}
		}
	}
	return want
}

// routeSyncer sets the host's routes to other nodes' pod subnets.
type routeSyncer interface {
	SyncRoutes(want map[string]string) error
}

// nodeRoutesResync bounds the time between two syncs, to put back a route
// someone removed.
const nodeRoutesResync = 30 * time.Second

// syncNodeRoutes keeps the routes to the other nodes' pod subnets in line
// with the Node objects until ctx ends: a list, then a watch; again from a
// list when the watch breaks.
func syncNodeRoutes(ctx context.Context, client api.ShoalClient, self string, routes routeSyncer, log *slog.Logger) {
	var last error
	sync := func(nodes map[string]*api.Node) {
		list := make([]*api.Node, 0, len(nodes))
		for _, n := range nodes {
			list = append(list, n)
		}
		err := routes.SyncRoutes(wantedRoutes(self, list))
		if err != nil && (last == nil || err.Error() != last.Error()) {
			log.Warn("routes to other nodes' pods", "err", err)
		}
		last = err
	}
	for ctx.Err() == nil {
		err := func() error {
			list, err := client.List(ctx, &api.ListRequest{Kind: "Node"})
			if err != nil {
				return err
			}
			nodes := map[string]*api.Node{}
			for _, o := range list.Items {
				nodes[o.GetNode().GetMetadata().GetName()] = o.GetNode()
			}
			sync(nodes)
			wctx, cancel := context.WithTimeout(ctx, nodeRoutesResync)
			defer cancel()
			w, err := client.Watch(wctx, &api.WatchRequest{Kind: "Node", ResourceVersion: list.ResourceVersion})
			if err != nil {
				return err
			}
			for {
				ev, err := w.Recv()
				if err != nil {
					return err
				}
				n := ev.GetObject().GetNode()
				if ev.Type == "DELETED" {
					delete(nodes, n.GetMetadata().GetName())
				} else {
					nodes[n.GetMetadata().GetName()] = n
				}
				sync(nodes)
			}
		}()
		if ctx.Err() != nil {
			return
		}
		log.Debug("node routes: list again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
