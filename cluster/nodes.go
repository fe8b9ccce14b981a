package cluster

import (
	"context"
	"net"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// nodeStatusFor is the status a Node object should show for a member: what
// gossip says (addresses, Ready) and what raft says (role). Fields the
// member's agent reports itself (capacity, nodeInfo) are kept from cur.
func nodeStatusFor(cur *api.NodeStatus, m Member, role string, now time.Time) *api.NodeStatus {
	next := &api.NodeStatus{}
	if cur != nil {
		next = proto.Clone(cur).(*api.NodeStatus)
	}
	host, _, _ := net.SplitHostPort(m.Meta.API)
	next.Addresses = []*api.NodeAddress{{Type: "InternalIP", Address: host}, {Type: "Hostname", Address: m.Meta.Name}}
	next.NodeId = m.ID
	next.ApiEndpoint = m.Meta.API
	next.RaftRole = role
	ready := &api.NodeCondition{Type: "Ready", Status: "True", Reason: "NodeAlive", Message: "gossip reports the node alive"}
	if !m.Alive {
		ready = &api.NodeCondition{Type: "Ready", Status: "False", Reason: "NodeUnreachable", Message: "gossip reports the node unreachable"}
	}
	var conds []*api.NodeCondition
	found := false
	for _, c := range next.Conditions {
		if c.Type != "Ready" {
			conds = append(conds, c)
			continue
		}
		found = true
		if c.Status == ready.Status && c.Reason == ready.Reason {
			ready = c // unchanged: keep its times
		} else {
			ready.LastTransitionTime = m.Since.UTC().Format(time.RFC3339)
			ready.LastHeartbeatTime = now.UTC().Format(time.RFC3339)
		}
		conds = append(conds, ready)
	}
	if !found {
		ready.LastTransitionTime = m.Since.UTC().Format(time.RFC3339)
		ready.LastHeartbeatTime = now.UTC().Format(time.RFC3339)
		conds = append(conds, ready)
	}
	next.Conditions = conds
	return next
}

// roles maps node IDs to raft roles as the leader sees them.
func (c *Cluster) roles() map[string]string {
	out := map[string]string{}
	servers, err := c.raftServers()
	if err != nil {
		return out
	}
	for _, s := range servers {
		switch {
		case s.ID == c.id.ID:
			out[s.ID] = RoleLeader
		case s.Voter:
			out[s.ID] = RoleVoter
		default:
			out[s.ID] = RoleNonvoter
		}
	}
	return out
}

// reconcileNodes keeps one Node object per member in line with gossip and
// raft. It writes only what changed.
func (c *Cluster) reconcileNodes(ctx context.Context) {
	roles := c.roles()
	existing, _ := c.state.List("Node", "", "")
	byName := map[string]*api.Node{}
	for _, r := range existing {
		byName[r.GetMetadata().GetName()] = r.(*api.Node)
	}
	podCIDR := DefaultPodCIDR
	if st := c.state.Settings(); st != nil && st.PodCidr != "" {
		podCIDR = st.PodCidr
	}
	var leased []string
	for _, n := range byName {
		leased = append(leased, n.GetSpec().GetPodCidr())
	}
	lease := func(node string) string {
		s, err := allocateNodeSubnet(podCIDR, leased)
		if err != nil {
			c.log.Warn("no pod subnet for node", "node", node, "err", err)
			return ""
		}
		leased = append(leased, s)
		return s
	}
	members := c.members.Members()
	aliveName := map[string]string{} // name -> ID of its live member
	for _, m := range members {
		if m.Alive {
			aliveName[m.Meta.Name] = m.ID
		}
	}
	now := time.Now()
	for _, m := range members {
		name := m.Meta.Name
		if owner, ok := aliveName[name]; ok && owner != m.ID {
			continue // a dead member whose name a live node now carries
		}
		cur := byName[name]
		if cur == nil && !m.Alive {
			continue // removed, or never seen alive by this leader
		}
		role := roles[m.ID]
		if role == "" {
			role = RoleNone
		}
		want := nodeStatusFor(cur.GetStatus(), m, role, now)
		var op *storepb.Op
		switch {
		case cur == nil:
			op = &storepb.Op{Type: storepb.Op_PUT, CreateOnly: true, NewUid: uuid.NewString(),
				Object: api.Wrap(&api.Node{Metadata: &api.ObjectMeta{Name: name}, Spec: &api.NodeSpec{PodCidr: lease(name)}, Status: want})}
		case cur.GetSpec().GetPodCidr() == "":
			// A node from before subnets were leased, or whose lease failed.
			next := proto.Clone(cur).(*api.Node)
			if next.Spec == nil {
				next.Spec = &api.NodeSpec{}
			}
			if next.Spec.PodCidr = lease(name); next.Spec.PodCidr == "" {
				continue
			}
			op = &storepb.Op{Type: storepb.Op_PUT, ResourceVersion: cur.GetMetadata().GetResourceVersion(), Object: api.Wrap(next)}
		case !proto.Equal(cur.GetStatus(), want):
			op = &storepb.Op{Type: storepb.Op_PUT, StatusOnly: true, ResourceVersion: cur.GetMetadata().GetResourceVersion(),
				Object: api.Wrap(&api.Node{Metadata: &api.ObjectMeta{Name: name}, Status: want})}
		default:
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.write(wctx, &storepb.Txn{TimeUnixNano: now.UnixNano(), Ops: []*storepb.Op{op}})
		cancel()
		if err != nil && ctx.Err() == nil {
			c.log.Debug("node status write", "node", name, "err", err)
		}
	}
}

// removeNode takes a node that is gone out of the cluster: onto the
// revocation list, out of raft, out of the store, out of this leader's
// member list.
func (c *Cluster) removeNode(ctx context.Context, name string) error {
	var id string
	for _, m := range c.members.Members() {
		if m.Meta.Name == name {
			if m.Alive {
				return status.Errorf(codes.FailedPrecondition, "node %q is alive: stop its agent first, or it keeps its place in the cluster", name)
			}
			id = m.ID
		}
	}
	node, _ := c.state.Get("Node", "", name).(*api.Node)
	if id == "" && node != nil {
		id = node.GetStatus().GetNodeId()
	}
	if id == "" && node == nil {
		return status.Errorf(codes.NotFound, "nodes %q not found", name)
	}
	if id == c.id.ID {
		return status.Error(codes.FailedPrecondition, "a node cannot remove itself")
	}
	if id != "" {
		// Revoked first: from this commit on, every node refuses the
		// removed node's certificates and gossip.
		if err := c.revokeNode(ctx, id, name); err != nil {
			return err
		}
		servers, err := c.raftServers()
		if err != nil {
			return status.Errorf(codes.Unavailable, "raft configuration: %v", err)
		}
		for _, s := range servers {
			if s.ID == id {
				if err := c.raft.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
					return status.Errorf(codes.Unavailable, "remove %s from raft: %v", name, err)
				}
			}
		}
		c.members.forget(id)
	}
	if node != nil {
		_, err := c.write(ctx, &storepb.Txn{TimeUnixNano: time.Now().UnixNano(), Ops: []*storepb.Op{{
			Type: storepb.Op_DELETE, Kind: "Node", Name: name,
		}}})
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
	}
	c.log.Info("node removed", "node", name, "id", id)
	return nil
}
