package cluster

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// joinCluster asks an existing node for admission: it checks the node's CA
// against the token's fingerprint, proves it knows the token's secret, and
// receives its certificate and the gossip key.
func (c *Cluster) joinCluster(ctx context.Context) error {
	tok, err := ParseJoinToken(c.cfg.Token)
	if err != nil {
		return fmt.Errorf("invalid join token: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.cfg.Join); err != nil {
		return fmt.Errorf("--join %q: want HOST:PORT of a node's API (port %d by default): %w", c.cfg.Join, DefaultAPIPort, err)
	}
	id, err := c.newIdentity()
	if err != nil {
		return err
	}
	c.id = id
	keyPEM, csrPEM, err := NewNodeKey(id.Name, c.certIPs())
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(c.cfg.Join, grpc.WithTransportCredentials(credentials.NewTLS(JoinClientTLS(tok.Fingerprint))))
	if err != nil {
		return fmt.Errorf("join %s: %w", c.cfg.Join, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := &api.JoinRequest{
		NodeId:        id.ID,
		NodeName:      id.Name,
		NameExplicit:  c.cfg.NodeName != "",
		Csr:           csrPEM,
		Proof:         JoinProof(tok.Secret, csrPEM),
		AdvertiseAddr: id.AdvertiseAddr,
	}
	var resp *api.JoinResponse
	for {
		resp, err = api.NewJoinClient(cc).Join(ctx, req)
		// A node that is still starting refuses connections or has no
		// leader yet: wait for it. Every other answer is final.
		if err == nil || !retryableForward(err) && !strings.Contains(err.Error(), "still starting") {
			break
		}
		c.log.Info("join: waiting for the node to answer", "node", c.cfg.Join, "err", err)
		select {
		case <-ctx.Done():
			return joinError(c.cfg.Join, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
	if err != nil {
		return joinError(c.cfg.Join, err)
	}
	c.id.Name = resp.NodeName
	c.id.ClusterID = resp.ClusterId
	c.creds = NodeCredentials{CertPEM: resp.Certificate, KeyPEM: keyPEM, CAPEM: resp.CaCertificate}
	if err := saveCredentials(c.cfg.DataDir, c.creds, resp.GossipKey); err != nil {
		return err
	}
	c.savePeers(resp.GossipPeers)
	return saveIdentity(c.cfg.DataDir, c.id)
}

// joinError turns a failed join into a message that says why.
func joinError(target string, err error) error {
	st, _ := status.FromError(err)
	msg := st.Message()
	switch {
	case strings.Contains(msg, ErrCAMismatch.Error()):
		return fmt.Errorf("join %s refused: %w", target, ErrCAMismatch)
	case st.Code() == codes.PermissionDenied, st.Code() == codes.AlreadyExists, st.Code() == codes.InvalidArgument:
		return fmt.Errorf("join %s refused: %s", target, msg)
	case st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded:
		return fmt.Errorf("join %s: cannot reach a shoal node there: %s", target, msg)
	}
	return fmt.Errorf("join %s: %s", target, msg)
}

// joinServer admits new nodes. It answers without a client certificate:
// the joiner authenticates with the token's secret.
type joinServer struct {
	api.UnimplementedJoinServer
	c *Cluster
}

func (j *joinServer) Join(ctx context.Context, req *api.JoinRequest) (*api.JoinResponse, error) {
	c := j.c
	// Only the leader admits: it has the current secret (a follower may lag
	// behind a rotation) and decides names without races.
	if !c.isLeader() {
		if isForwarded(ctx) {
			return nil, status.Error(codes.Unavailable, "no leader to admit the node; try again")
		}
		var resp *api.JoinResponse
		err := c.onLeader(ctx, "Join", nil, func(ctx context.Context, addr string) error {
			cc, err := c.peers.conn(addr)
			if err != nil {
				return err
			}
			resp, err = api.NewJoinClient(cc).Join(ctx, req)
			return err
		})
		return resp, err
	}
	ca, sec, err := c.caFromState()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "the cluster is still starting: %v", err)
	}
	if !CheckJoinProof(sec.JoinSecret, req.Csr, req.Proof) {
		c.log.Warn("join refused: wrong token secret", "node", req.NodeName, "addr", req.AdvertiseAddr)
		return nil, status.Error(codes.PermissionDenied,
			"the token's secret is not this cluster's join secret (a wrong token, or one replaced by `shoal token --rotate`; `shoal token` prints the current one)")
	}
	ip := net.ParseIP(req.AdvertiseAddr)
	if ip == nil {
		return nil, status.Errorf(codes.InvalidArgument, "advertise address %q is not an IP address", req.AdvertiseAddr)
	}
	if req.NodeId == "" || req.NodeName == "" {
		return nil, status.Error(codes.InvalidArgument, "node ID and name are required")
	}
	if c.sec.live.nodeRevoked(req.NodeId) {
		return nil, status.Errorf(codes.PermissionDenied, "node ID %s was %v; a new node joins with a new ID", req.NodeId, ErrRevoked)
	}
	if m, ok := c.members.Member(req.NodeId); ok && m.Alive {
		return nil, status.Errorf(codes.AlreadyExists, "node ID %s is already the ID of live node %q", req.NodeId, m.Meta.Name)
	}
	if !nodeNameRE.MatchString(req.NodeName) || len(req.NodeName) > 253 {
		return nil, status.Errorf(codes.InvalidArgument, "node name %q: must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", req.NodeName)
	}
	name := req.NodeName
	if c.nameTaken(name, req.NodeId) {
		if req.NameExplicit {
			return nil, status.Errorf(codes.AlreadyExists, "a live node named %q is already in the cluster; choose another --node-name", name)
		}
		name = name + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
		if c.nameTaken(name, req.NodeId) {
			return nil, status.Errorf(codes.AlreadyExists, "a live node named %q is already in the cluster; choose a --node-name", name)
		}
	}
	cert, err := ca.SignNodeID(req.Csr, req.NodeId, name, []net.IP{ip}, c.cfg.NodeCertValidity)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate request: %v", err)
	}
	var peers []string
	for _, m := range c.members.Members() {
		if m.Alive {
			peers = append(peers, m.Gossip)
		}
	}
	c.log.Info("node admitted", "node", name, "id", req.NodeId, "addr", ip.String())
	return &api.JoinResponse{
		Certificate:   cert,
		CaCertificate: sec.CaCert,
		GossipKey:     sec.GossipKey,
		GossipPeers:   peers,
		NodeName:      name,
		ClusterId:     sec.ClusterId,
	}, nil
}

// nameTaken reports whether a live node other than id has this name.
func (c *Cluster) nameTaken(name, id string) bool {
	for _, m := range c.members.Members() {
		if m.Alive && m.ID != id && m.Meta.Name == name {
			return true
		}
	}
	return false
}

// nodeNameRE is a DNS-1123 subdomain, as Kubernetes names nodes.
var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
