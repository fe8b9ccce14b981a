package cluster

// Revocation: `shoal node rm` puts the removed node's ID on a list kept in
// the replicated cluster secrets (so it survives restarts, snapshots and
// leader changes). Every node refuses a certificate carrying a revoked ID:
// in the TLS handshakes of the API, raft (both directions) and peer calls,
// on every API call of a connection made before the revocation, on the next
// read or write of a raft connection made before it, when the node asks
// to renew its certificate, and in gossip (its alive messages are ignored).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// ErrRevoked is wrapped by every refusal of a revoked node's certificate.
var ErrRevoked = errors.New("removed from the cluster (shoal node rm)")

// ErrAdminRevoked is wrapped by every refusal of a revoked administrator
// certificate.
var ErrAdminRevoked = errors.New("revoked (shoal admin-cert revoke)")

// revokedLogEvery bounds how often the refusal of one certificate at one
// place is logged: a removed node that keeps retrying must not flood the log.
const revokedLogEvery = 30 * time.Second

// revokedSet is an immutable view of the revocation list.
type revokedSet struct {
	byID   map[string]*storepb.RevokedNode
	byName map[string]*storepb.RevokedNode
	admins map[string]*storepb.RevokedAdmin // by name, the latest revocation
}

func newRevokedSet(list []*storepb.RevokedNode) *revokedSet {
	s := &revokedSet{byID: map[string]*storepb.RevokedNode{}, byName: map[string]*storepb.RevokedNode{}}
	for _, r := range list {
		if r.GetNodeId() != "" {
			s.byID[r.GetNodeId()] = r
		}
		if r.GetName() != "" {
			if cur, ok := s.byName[r.GetName()]; !ok || cur.GetRevokedUnixNano() < r.GetRevokedUnixNano() {
				s.byName[r.GetName()] = r
			}
		}
	}
	return s
}

// nodeRevoked tells whether the node with this ID was removed.
func (s *revokedSet) nodeRevoked(id string) bool {
	if s == nil || id == "" {
		return false
	}
	_, ok := s.byID[id]
	return ok
}

// withAdmins returns the set with these administrator revocations too.
func (s *revokedSet) withAdmins(list []*storepb.RevokedAdmin) *revokedSet {
	out := *s
	out.admins = map[string]*storepb.RevokedAdmin{}
	for _, r := range list {
		if cur, ok := out.admins[r.GetName()]; !ok || cur.GetRevokedUnixNano() < r.GetRevokedUnixNano() {
			out.admins[r.GetName()] = r
		}
	}
	return &out
}

// adminIssuedBefore tells whether an administrator certificate was issued
// before t. Certificates are valid from a little before they are issued,
// so one valid from before t could be either; but one issued after a
// revocation of its name is made valid only from after it (SignAdmin).
func adminIssuedBefore(cert *x509.Certificate, t time.Time) bool {
	return !cert.NotBefore.After(t)
}

// check refuses a certificate of a removed node or of a revoked
// administrator. A certificate carrying a
// node ID is refused when that ID is revoked. One without (issued before
// certificates carried IDs) is refused when it is a node certificate whose
// name was revoked after the certificate was issued: a node that joins
// later under the same name gets a new certificate, with its own ID.
func (s *revokedSet) check(cert *x509.Certificate) error {
	if s == nil || cert == nil || len(s.byID)+len(s.byName)+len(s.admins) == 0 {
		return nil
	}
	if name, _, isAdmin := PeerIdentity(cert); isAdmin {
		if r, ok := s.admins[name]; ok && adminIssuedBefore(cert, time.Unix(0, r.GetRevokedUnixNano())) {
			return fmt.Errorf("the certificates of administrator %q issued before %s were %w", name,
				time.Unix(0, r.GetRevokedUnixNano()).UTC().Format(time.RFC3339), ErrAdminRevoked)
		}
		return nil
	}
	if id := NodeIDOf(cert); id != "" {
		if r, ok := s.byID[id]; ok {
			return revokedError(r)
		}
		return nil
	}
	name, isNode, _ := PeerIdentity(cert)
	if !isNode {
		return nil
	}
	if r, ok := s.byName[name]; ok && cert.NotBefore.Before(time.Unix(0, r.GetRevokedUnixNano())) {
		return revokedError(r)
	}
	return nil
}

func revokedError(r *storepb.RevokedNode) error {
	return fmt.Errorf("node %q (ID %s) was %w on %s: its certificates are revoked", r.GetName(), r.GetNodeId(), ErrRevoked,
		time.Unix(0, r.GetRevokedUnixNano()).UTC().Format(time.RFC3339))
}

// liveTLS is what every TLS configuration of a running node shares: the
// node's current certificate, replaced when the node renews it, and the
// cluster's revocation list, replaced when it grows.
type liveTLS struct {
	cert    atomic.Pointer[tls.Certificate]
	revoked atomic.Pointer[revokedSet]
	log     *slog.Logger

	mu       sync.Mutex
	logged   map[string]time.Time // "where serial" -> last refusal logged
	stateSrc *storepb.ClusterSecrets
	stateSet bool
	// fetched are revocations learnt from a replica while this node holds
	// no store (revocations are never undone: the list is their union
	// with the store's).
	fetched       []*storepb.RevokedNode
	fetchedAdmins []*storepb.RevokedAdmin
}

func newLiveTLS(creds NodeCredentials, log *slog.Logger) (*liveTLS, error) {
	pair, err := creds.Certificate()
	if err != nil {
		return nil, err
	}
	l := &liveTLS{log: log, logged: map[string]time.Time{}}
	l.cert.Store(&pair)
	return l, nil
}

// current is the certificate to present now.
func (l *liveTLS) current() *tls.Certificate { return l.cert.Load() }

// leaf is the current certificate, parsed.
func (l *liveTLS) leaf() *x509.Certificate { return l.cert.Load().Leaf }

// setRevoked takes the revocation list of the store's secrets, and returns
// the entries that were not revoked before.
func (l *liveTLS) setRevoked(sec *storepb.ClusterSecrets) []*storepb.RevokedNode {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stateSet && l.stateSrc == sec {
		return nil
	}
	l.stateSrc, l.stateSet = sec, true
	return l.rebuildLocked()
}

// addFetched adds revocations a replica reported, and returns the nodes
// that are new.
func (l *liveTLS) addFetched(list []*storepb.RevokedNode, admins ...*storepb.RevokedAdmin) []*storepb.RevokedNode {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.revoked.Load()
	n := len(l.fetched)
	for _, r := range list {
		if r.GetNodeId() != "" && !cur.nodeRevoked(r.GetNodeId()) {
			l.fetched = append(l.fetched, r)
		}
	}
	newAdmins := false
	for _, r := range admins {
		if cur == nil || cur.admins[r.GetName()].GetRevokedUnixNano() < r.GetRevokedUnixNano() {
			l.fetchedAdmins = append(l.fetchedAdmins, r)
			newAdmins = true
		}
	}
	if len(l.fetched) == n && !newAdmins {
		return nil
	}
	return l.rebuildLocked()
}

func (l *liveTLS) rebuildLocked() []*storepb.RevokedNode {
	old := l.revoked.Load()
	all := append(append([]*storepb.RevokedNode(nil), l.stateSrc.GetRevokedNodes()...), l.fetched...)
	admins := append(append([]*storepb.RevokedAdmin(nil), l.stateSrc.GetRevokedAdmins()...), l.fetchedAdmins...)
	next := newRevokedSet(all).withAdmins(admins)
	l.revoked.Store(next)
	var added []*storepb.RevokedNode
	for id, r := range next.byID {
		if !old.nodeRevoked(id) {
			added = append(added, r)
		}
	}
	return added
}

// nodeRevoked tells whether the node with this ID was removed.
func (l *liveTLS) nodeRevoked(id string) bool { return l.revoked.Load().nodeRevoked(id) }

// check refuses a revoked certificate, and logs the refusal (at most every
// revokedLogEvery for one certificate at one place).
func (l *liveTLS) check(where string, cert *x509.Certificate) error {
	err := l.revoked.Load().check(cert)
	if err != nil {
		l.refused(where, fmt.Sprintf("%x", cert.SerialNumber), cert.Subject.CommonName, err)
	}
	return err
}

// checker is check for one place, in the form WithRevocationCheck takes.
func (l *liveTLS) checker(where string) func(*x509.Certificate) error {
	return func(cert *x509.Certificate) error { return l.check(where, cert) }
}

func (l *liveTLS) refused(where, serial, name string, err error) {
	key := where + " " + serial
	now := time.Now()
	l.mu.Lock()
	last, seen := l.logged[key]
	if !seen || now.Sub(last) >= revokedLogEvery {
		l.logged[key] = now
	}
	if len(l.logged) > 4096 { // forget old entries rather than grow
		for k, t := range l.logged {
			if now.Sub(t) >= revokedLogEvery {
				delete(l.logged, k)
			}
		}
	}
	l.mu.Unlock()
	if !seen || now.Sub(last) >= revokedLogEvery {
		l.log.Warn("refused a revoked node", "where", where, "peer", name, "serial", serial, "reason", err)
	}
}

// guardedConn is a raft connection that fails its next read or write once
// the peer's certificate is revoked, so that a connection made before the
// revocation does not outlive it.
type guardedConn struct {
	*tls.Conn
	live    *liveTLS
	where   string
	peer    atomic.Pointer[x509.Certificate]
	checked atomic.Pointer[revokedSet] // the list the peer last passed
}

// guardConn wraps a TLS connection of a running node (credentials with a
// live part) in a guardedConn; anything else passes unchanged.
func (c NodeCredentials) guardConn(where string) func(net.Conn, error) (net.Conn, error) {
	return func(conn net.Conn, err error) (net.Conn, error) {
		tc, ok := conn.(*tls.Conn)
		if err != nil || c.live == nil || !ok {
			return conn, err
		}
		return &guardedConn{Conn: tc, live: c.live, where: where}, nil
	}
}

func (g *guardedConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if n > 0 {
		if verr := g.verify(); verr != nil {
			g.Conn.Close()
			return 0, verr
		}
	}
	return n, err
}

func (g *guardedConn) Write(p []byte) (int, error) {
	if err := g.verify(); err != nil {
		g.Conn.Close()
		return 0, err
	}
	return g.Conn.Write(p)
}

// verify checks the peer against the revocation list when the list changed
// since the peer last passed it. Before the handshake there is no peer yet:
// the handshake's own check covers it.
func (g *guardedConn) verify() error {
	set := g.live.revoked.Load()
	if g.checked.Load() == set {
		return nil
	}
	peer := g.peer.Load()
	if peer == nil {
		cs := g.Conn.ConnectionState()
		if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
			return nil
		}
		peer = cs.PeerCertificates[0]
		g.peer.Store(peer)
	}
	if err := g.live.check(g.where, peer); err != nil {
		return fmt.Errorf("%s connection closed: %w", g.where, err)
	}
	g.checked.Store(set)
	return nil
}

// revocationLoop follows the replicated secrets: whenever they change, the
// new revocation list takes effect on this node and the removed nodes are
// forgotten by gossip.
func (c *Cluster) revocationLoop(ctx context.Context) {
	for {
		idx := c.state.Index()
		c.revoked(c.sec.live.setRevoked(c.state.Secrets()))
		if err := c.state.WaitIndex(ctx, idx+1); err != nil {
			return
		}
	}
}

func (c *Cluster) revoked(added []*storepb.RevokedNode) {
	for _, r := range added {
		c.members.forget(r.GetNodeId())
		c.log.Info("node revoked: its certificates and gossip are refused from now on", "node", r.GetName(), "id", r.GetNodeId())
	}
}

// revocationFetchEvery is how often a node outside the raft replicas asks
// its replica for the revocation list.
const revocationFetchEvery = 3 * time.Second

// revocationFetchLoop keeps the revocation list of a node outside the raft
// replicas (it holds no store) from the replica it reads from.
func (c *Cluster) revocationFetchLoop(ctx context.Context) {
	tick := time.NewTicker(revocationFetchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		addr := c.replica.get()
		if addr == "" {
			continue // a replica: revocationLoop follows its own store
		}
		cc, err := c.peers.conn(addr)
		if err != nil {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := api.NewJoinClient(cc).Revocations(fctx, &api.RevocationsRequest{})
		cancel()
		if err != nil {
			c.log.Debug("revocation list from the replica", "replica", addr, "err", err)
			continue
		}
		var list []*storepb.RevokedNode
		for _, r := range resp.GetNodes() {
			list = append(list, &storepb.RevokedNode{NodeId: r.GetNodeId(), Name: r.GetName(), RevokedUnixNano: r.GetRevokedUnixNano()})
		}
		var admins []*storepb.RevokedAdmin
		for _, r := range resp.GetAdmins() {
			admins = append(admins, &storepb.RevokedAdmin{Name: r.GetName(), RevokedUnixNano: r.GetRevokedUnixNano()})
		}
		c.revoked(c.sec.live.addFetched(list, admins...))
	}
}

// Revocations serves the revocation list of this replica's store to nodes.
func (j *joinServer) Revocations(ctx context.Context, _ *api.RevocationsRequest) (*api.RevocationsResponse, error) {
	if c, ok := callerFrom(ctx); !ok || !c.IsNode {
		return nil, status.Error(codes.PermissionDenied, "nodes only")
	}
	if j.c.replica.get() != "" {
		return nil, status.Error(codes.Unavailable, "this node holds no store; ask a replica")
	}
	sec := j.c.state.Secrets()
	if sec == nil {
		return nil, status.Error(codes.Unavailable, "the cluster is still starting")
	}
	out := &api.RevocationsResponse{}
	for _, r := range sec.GetRevokedNodes() {
		out.Nodes = append(out.Nodes, &api.RevokedNode{NodeId: r.GetNodeId(), Name: r.GetName(), RevokedUnixNano: r.GetRevokedUnixNano()})
	}
	for _, r := range sec.GetRevokedAdmins() {
		out.Admins = append(out.Admins, &api.RevokedAdmin{Name: r.GetName(), RevokedUnixNano: r.GetRevokedUnixNano()})
	}
	return out, nil
}

// updateSecrets changes the replicated cluster secrets on the leader. The
// changes are made one at a time, each from the secrets the previous one
// left, so that rotating the join token and revoking a node at the same
// moment cannot undo each other. change returns false to leave the secrets
// as they are.
func (c *Cluster) updateSecrets(ctx context.Context, change func(next *storepb.ClusterSecrets) bool) (*storepb.ClusterSecrets, error) {
	c.sec.secretsMu.Lock()
	defer c.sec.secretsMu.Unlock()
	sec := c.state.Secrets()
	if sec == nil {
		return nil, status.Error(codes.Unavailable, "the cluster is still starting")
	}
	next := proto.Clone(sec).(*storepb.ClusterSecrets)
	if !change(next) {
		return sec, nil
	}
	if _, err := c.write(ctx, &storepb.Txn{SetSecrets: next, TimeUnixNano: time.Now().UnixNano()}); err != nil {
		return nil, err
	}
	return next, nil
}

// revokeNode puts a node on the revocation list (on the leader).
func (c *Cluster) revokeNode(ctx context.Context, id, name string) error {
	_, err := c.updateSecrets(ctx, func(next *storepb.ClusterSecrets) bool {
		for _, r := range next.RevokedNodes {
			if r.NodeId == id {
				return false // revoked already
			}
		}
		next.RevokedNodes = append(next.RevokedNodes, &storepb.RevokedNode{NodeId: id, Name: name, RevokedUnixNano: time.Now().UnixNano()})
		return true
	})
	if err != nil {
		return fmt.Errorf("revoke the certificates of node %s: %w", name, err)
	}
	return nil
}
