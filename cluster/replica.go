package cluster

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// readReplica tracks, for a node outside the raft replicas (role none),
// which replica's API serves its reads. Such a node holds no log: its own
// store stays empty or stale, so every read and watch it receives goes to
// a replica, and to another when that one dies.
type readReplica struct {
	mu     sync.Mutex
	addr   string // "" while this node is a replica itself
	leader string // the leader's API, as the replicas' Node objects say
}

func (r *readReplica) leaderAPI() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.addr == "" {
		return ""
	}
	return r.leader
}

func (r *readReplica) get() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

func (r *readReplica) set(addr string) {
	r.mu.Lock()
	r.addr = addr
	r.mu.Unlock()
}

// roleLoop learns this node's raft role from the cluster (a removed node's
// own raft state cannot be trusted to say it was removed) and, while it is
// none, picks a live replica to read from.
func (c *Cluster) roleLoop(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		c.refreshRole(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (c *Cluster) refreshRole(ctx context.Context) {
	var nodes []*api.Node
	if c.isLeader() {
		c.replica.set("")
		return
	}
	if c.replica.get() == "" {
		// Replicas read their own store.
		for _, r := range listNodes(c.state) {
			nodes = append(nodes, r)
		}
	}
	if len(nodes) == 0 || roleOf(nodes, c.id.Name) == RoleNone {
		nodes = c.nodesFromPeers(ctx)
	}
	if len(nodes) == 0 {
		return // nobody answers; keep what we have
	}
	if roleOf(nodes, c.id.Name) != RoleNone {
		c.replica.set("")
		return
	}
	for _, n := range nodes {
		if n.GetStatus().GetRaftRole() == RoleLeader {
			c.replica.mu.Lock()
			c.replica.leader = n.GetStatus().GetApiEndpoint()
			c.replica.mu.Unlock()
		}
	}
	cur := c.replica.get()
	var pick string
	for _, n := range nodes {
		role := n.GetStatus().GetRaftRole()
		if role == RoleNone || role == "" || !nodeReady(n) || n.GetStatus().GetApiEndpoint() == "" {
			continue
		}
		if n.GetStatus().GetApiEndpoint() == cur {
			return // the current replica is fine
		}
		if pick == "" {
			pick = n.GetStatus().GetApiEndpoint()
		}
	}
	if pick != cur {
		c.log.Info("this node holds no raft log; reads go to a replica", "replica", pick)
		c.replica.set(pick)
	}
}

// nodesFromPeers asks live peers for the Node list until one answers.
func (c *Cluster) nodesFromPeers(ctx context.Context) []*api.Node {
	for _, m := range c.members.Members() {
		if !m.Alive || m.ID == c.id.ID {
			continue
		}
		cl, err := c.peers.client(m.Meta.API)
		if err != nil {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		list, err := cl.List(metadata.AppendToOutgoingContext(qctx, forwardedKey, c.id.Name), &api.ListRequest{Kind: "Node"})
		cancel()
		if err != nil || len(list.Items) == 0 {
			continue
		}
		var out []*api.Node
		for _, o := range list.Items {
			out = append(out, o.GetNode())
		}
		return out
	}
	return nil
}

func listNodes(s *State) []*api.Node {
	objs, _ := s.List("Node", "", "")
	out := make([]*api.Node, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*api.Node))
	}
	return out
}

func roleOf(nodes []*api.Node, name string) string {
	for _, n := range nodes {
		if n.GetMetadata().GetName() == name {
			return n.GetStatus().GetRaftRole()
		}
	}
	return ""
}

func nodeReady(n *api.Node) bool {
	for _, c := range n.GetStatus().GetConditions() {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// remoteReader returns the replica's client when this node's reads must go
// there, or nil when it serves them itself.
func (c *Cluster) remoteReader(ctx context.Context) (api.ShoalClient, context.Context, error) {
	addr := c.replica.get()
	if addr == "" || isForwarded(ctx) {
		return nil, ctx, nil
	}
	cl, err := c.peers.client(addr)
	if err != nil {
		return nil, ctx, status.Errorf(codes.Unavailable, "replica %s: %v", addr, err)
	}
	return cl, metadata.AppendToOutgoingContext(ctx, forwardedKey, c.id.Name), nil
}

// replicaFailed drops a replica that did not answer, so the next read
// picks another.
func (c *Cluster) replicaFailed(err error) {
	if status.Code(err) == codes.Unavailable {
		c.replica.set("")
		go c.refreshRole(c.ctx)
	}
}

// relayWatch streams a replica's watch to this node's caller.
func relayWatch(ctx context.Context, cl api.ShoalClient, req *api.WatchRequest, stream grpc.ServerStreamingServer[api.WatchEvent]) error {
	w, err := cl.Watch(ctx, req)
	if err != nil {
		return err
	}
	for {
		ev, err := w.Recv()
		if err != nil {
			if stream.Context().Err() != nil {
				return nil
			}
			return err
		}
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
}
