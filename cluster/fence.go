package cluster

// Fencing: a node the cluster removed (`shoal node rm`, or dropped by
// --force-new-cluster on another node) is refused at every handshake, so
// it cannot hurt the cluster; but on its own it would go on serving its
// stale copy, and voters dropped by --force-new-cluster that come back
// together still make a majority of their old configuration and elect a
// leader: a second cluster. Each replica therefore asks the other servers
// of its raft configuration, now and then, whether they removed it (an
// answer that needs no client certificate, since its own is refused), and
// a node told so stops its raft and answers every call with the reason, as
// an etcd member that learns it was removed stops.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

const (
	// fenceCheckEvery is how often a replica asks its peers whether it was
	// removed; during fenceCheckFastFor after its start, while gossip
	// finds the peers' addresses, every fenceCheckFast, so that dropped
	// voters of a forced new cluster that come back stop within seconds.
	fenceCheckEvery   = 10 * time.Second
	fenceCheckFast    = time.Second
	fenceCheckFastFor = 30 * time.Second
	// fenceCheckTimeout bounds one question to one peer.
	fenceCheckTimeout = 3 * time.Second
)

// removedMethod needs no client certificate, like joining.
const removedMethod = "/shoal.v1.Join/Removed"

// fenceState is why this node stopped, once it has.
type fenceState struct {
	mu     sync.Mutex
	reason string
}

func (f *fenceState) get() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reason
}

// set records the reason and reports whether it is the first.
func (f *fenceState) set(reason string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reason != "" {
		return false
	}
	f.reason = reason
	return true
}

// Fenced is why this node stopped serving, or "" while it serves.
func (c *Cluster) Fenced() string { return c.fence.get() }

// fencedError is what every call to a fenced node answers.
func (c *Cluster) fencedError() error {
	if r := c.fence.get(); r != "" {
		return status.Error(codes.FailedPrecondition, r)
	}
	return nil
}

// Removed answers whether the cluster removed the node with this ID.
func (j *joinServer) Removed(_ context.Context, req *api.RemovedRequest) (*api.RemovedResponse, error) {
	if req.GetNodeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "nodeId is required")
	}
	out := &api.RemovedResponse{AnsweredBy: j.c.id.Name}
	if set := j.c.sec.live.revoked.Load(); set != nil {
		if r, ok := set.byID[req.GetNodeId()]; ok {
			out.Removed, out.RemovedUnixNano = true, r.GetRevokedUnixNano()
		}
	}
	return out, nil
}

// fenceLoop asks the peers of this node's raft configuration whether they
// removed it, at start and then every fenceCheckEvery, until it is told so
// or ctx ends.
func (c *Cluster) fenceLoop(ctx context.Context) {
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if by, at, ok := c.askRemoved(ctx); ok {
			c.fenceSelf(fmt.Sprintf("node %s (ID %s) was removed from the cluster on %s (told by %s): it serves nothing any more. "+
				"Wipe its data directory (%s) and join it again with `shoal agent --join ... --token ...`",
				c.id.Name, c.id.ID, at.UTC().Format(time.RFC3339), by, c.cfg.DataDir))
			return
		}
		if time.Since(start) < fenceCheckFastFor {
			t.Reset(fenceCheckFast)
		} else {
			t.Reset(fenceCheckEvery)
		}
	}
}

// askRemoved asks every other server of the raft configuration, at the
// API address gossip or the Node objects give for it, and returns the
// first that says this node was removed.
func (c *Cluster) askRemoved(ctx context.Context) (by string, at time.Time, removed bool) {
	if c.raft == nil || c.raft.raft == nil {
		return "", time.Time{}, false
	}
	servers, err := c.raftServers()
	if err != nil {
		return "", time.Time{}, false
	}
	apiAddr := map[string]string{}
	nodes, _ := c.state.List("Node", "", "")
	for _, r := range nodes {
		n := r.(*api.Node)
		if id, ep := n.GetStatus().GetNodeId(), n.GetStatus().GetApiEndpoint(); id != "" && ep != "" {
			apiAddr[id] = ep
		}
	}
	if c.members != nil {
		for _, m := range c.members.Members() {
			if m.Meta.API != "" {
				apiAddr[m.ID] = m.Meta.API
			}
		}
	}
	tlsCfg, err := c.fenceClientTLS()
	if err != nil {
		c.log.Debug("fence check", "err", err)
		return "", time.Time{}, false
	}
	for _, s := range servers {
		addr := apiAddr[s.ID]
		if s.ID == c.id.ID || addr == "" {
			continue
		}
		resp, err := askRemovedAt(ctx, tlsCfg, addr, c.id.ID)
		if err != nil {
			c.log.Debug("fence check", "peer", addr, "err", err)
			continue
		}
		if resp.GetRemoved() {
			return fmt.Sprintf("%s at %s", resp.GetAnsweredBy(), addr), time.Unix(0, resp.GetRemovedUnixNano()), true
		}
	}
	return "", time.Time{}, false
}

// fenceClientTLS verifies the peer as a node of this cluster's CA, like
// every peer call, but shows no certificate of its own: a removed node's
// would fail the handshake before the question is asked.
func (c *Cluster) fenceClientTLS() (*tls.Config, error) {
	cfg, err := NodeClientTLS(c.creds)
	if err != nil {
		return nil, err
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{}, nil
	}
	return cfg, nil
}

func askRemovedAt(ctx context.Context, tlsCfg *tls.Config, addr, id string) (*api.RemovedResponse, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg := tlsCfg.Clone()
	cfg.ServerName = host
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	qctx, cancel := context.WithTimeout(ctx, fenceCheckTimeout)
	defer cancel()
	return api.NewJoinClient(cc).Removed(qctx, &api.RemovedRequest{NodeId: id})
}

// fenceSelf stops this node's raft for good and makes every call answer
// the reason. The node's agent, refused too, keeps what runs on it as it
// would through any loss of its API.
func (c *Cluster) fenceSelf(reason string) {
	if !c.fence.set(reason) {
		return
	}
	c.log.Error("FENCED: " + reason)
	if c.raft != nil && c.raft.raft != nil {
		if err := c.raft.raft.Shutdown().Error(); err != nil {
			c.log.Warn("fence: raft shutdown", "err", err)
		}
	}
}
