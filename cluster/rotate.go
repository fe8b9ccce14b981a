package cluster

// Certificate rotation: every node renews its own certificate once a share
// of its lifetime (Config.CertRenewFraction, 2/3 by default) has passed. It
// makes a new key, sends a certificate request to the leader's Renew call
// over a connection authenticated by its current certificate, writes the
// new certificate and key to disk, and swaps them into every TLS
// configuration at once (they read the certificate at each handshake), so
// nothing restarts. A revoked node cannot renew: its certificate is refused
// before the call is served.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

const (
	// DefaultNodeCertValidity is the lifetime of node certificates.
	DefaultNodeCertValidity = 365 * 24 * time.Hour
	// DefaultCertRenewFraction is the share of its lifetime after which a
	// node renews its certificate.
	DefaultCertRenewFraction = 2.0 / 3
	// renewTimeout bounds one renewal call.
	renewTimeout = 10 * time.Second
	// renewRetryMin and renewRetryMax bound the wait between failed
	// renewals (a fortieth of the certificate's lifetime in between).
	renewRetryMin = 200 * time.Millisecond
	renewRetryMax = 30 * time.Second
)

// Files of a node's credentials in its data directory. A renewal writes the
// new key as nodeKeyNextFile, replaces the certificate, then renames the
// key into place; a start after a crash in between finishes the job (see
// finishCertRenewal).
const (
	nodeCertFile    = "tls/node.crt"
	nodeKeyFile     = "tls/node.key"
	nodeKeyNextFile = "tls/node.key.next"
)

// security is a running node's share of the security model: its live TLS
// state, and the lock that orders changes to the replicated secrets.
type security struct {
	live      *liveTLS
	secretsMu sync.Mutex
}

// setupSecurity checks the certificate settings and gives the node's
// credentials their live part, before any listener or client is built.
func (c *Cluster) setupSecurity() error {
	if c.cfg.NodeCertValidity <= 0 {
		return fmt.Errorf("node certificate validity must be positive, got %v", c.cfg.NodeCertValidity)
	}
	if f := c.cfg.CertRenewFraction; !(f > 0 && f < 1) {
		return fmt.Errorf("certificate renewal fraction must be between 0 and 1 (exclusive), got %v", f)
	}
	live, err := newLiveTLS(c.creds, c.log.With("component", "security"))
	if err != nil {
		return err
	}
	c.sec.live = live
	c.creds.live = live
	return nil
}

// startSecurityLoops runs revocation following and certificate renewal
// until the node closes.
func (c *Cluster) startSecurityLoops() {
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.revocationLoop(c.ctx) }()
	go func() { defer c.wg.Done(); c.revocationFetchLoop(c.ctx) }()
	go func() { defer c.wg.Done(); c.certRenewLoop(c.ctx) }()
}

// renewAt is when a certificate is due for renewal: once fraction of its
// lifetime has passed.
func renewAt(cert *x509.Certificate, fraction float64) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(time.Duration(float64(life) * fraction))
}

// renewRetry is how long to wait after a failed renewal.
func renewRetry(cert *x509.Certificate) time.Duration {
	return min(max(cert.NotAfter.Sub(cert.NotBefore)/40, renewRetryMin), renewRetryMax)
}

// certRenewLoop renews this node's certificate whenever it is due.
func (c *Cluster) certRenewLoop(ctx context.Context) {
	expiredLogged := false
	for {
		leaf := c.sec.live.leaf()
		if wait := time.Until(renewAt(leaf, c.cfg.CertRenewFraction)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		err := c.renewCertificate(ctx)
		if err == nil {
			expiredLogged = false
			continue
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case time.Now().After(leaf.NotAfter) && !expiredLogged:
			c.log.Error("this node's certificate has expired: other nodes refuse it; remove the node (shoal node rm) and join it again",
				"expired", leaf.NotAfter.UTC().Format(time.RFC3339), "err", err)
			expiredLogged = true
		case !time.Now().After(leaf.NotAfter):
			c.log.Warn("certificate renewal failed; trying again", "expires", leaf.NotAfter.UTC().Format(time.RFC3339), "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(renewRetry(leaf)):
		}
	}
}

// renewCertificate gets this node a new key and certificate from the
// leader (or signs them itself when it leads), writes them to disk and
// presents them from the next handshake on.
func (c *Cluster) renewCertificate(ctx context.Context) error {
	old := c.sec.live.leaf()
	keyPEM, csrPEM, err := NewNodeKey(c.id.Name, c.certIPs())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	var certPEM []byte
	if c.isLeader() {
		if certPEM, _, err = c.signRenewal(old, csrPEM); err != nil {
			return err
		}
	} else {
		addr := c.leaderAPI()
		if addr == "" {
			return errors.New("no leader to renew the certificate with")
		}
		cc, err := c.peers.conn(addr)
		if err != nil {
			return fmt.Errorf("renew at %s: %w", addr, err)
		}
		resp, err := api.NewJoinClient(cc).Renew(ctx, &api.RenewRequest{Csr: csrPEM})
		if err != nil {
			return fmt.Errorf("renew at %s: %w", addr, err)
		}
		certPEM = resp.GetCertificate()
	}
	next := NodeCredentials{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: c.creds.CAPEM}
	pair, err := next.Certificate() // the key matches, the CA signed it
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	name, isNode, _ := PeerIdentity(pair.Leaf)
	if !isNode || name != c.id.Name || (NodeIDOf(pair.Leaf) != "" && NodeIDOf(pair.Leaf) != c.id.ID) {
		return fmt.Errorf("renewed certificate names %q (node ID %q), not this node %q (%s)",
			name, NodeIDOf(pair.Leaf), c.id.Name, c.id.ID)
	}
	if err := saveRenewedCredentials(c.cfg.DataDir, certPEM, keyPEM); err != nil {
		return err
	}
	c.sec.live.cert.Store(&pair)
	c.log.Info("node certificate renewed", "serial", fmt.Sprintf("%x", pair.Leaf.SerialNumber),
		"previous_serial", fmt.Sprintf("%x", old.SerialNumber), "expires", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// signRenewal signs a new certificate for the node that holds cur, for the
// key in csrPEM: same name, ID and addresses, a fresh lifetime. Only the
// leader signs, so that a node revoked a moment ago is known to be.
func (c *Cluster) signRenewal(cur *x509.Certificate, csrPEM []byte) (certPEM, caPEM []byte, err error) {
	name, isNode, _ := PeerIdentity(cur)
	if !isNode {
		return nil, nil, status.Errorf(codes.PermissionDenied,
			"%q is not a node: only nodes renew certificates here (admin certificates are issued by --init)", name)
	}
	if err := c.sec.live.check("renewal", cur); err != nil {
		return nil, nil, status.Error(codes.PermissionDenied, err.Error())
	}
	if !c.isLeader() {
		return nil, nil, status.Error(codes.Unavailable, notLeaderMessage+": renew at the leader")
	}
	ca, sec, err := c.caFromState()
	if err != nil {
		return nil, nil, status.Errorf(codes.Unavailable, "the cluster is still starting: %v", err)
	}
	id := NodeIDOf(cur)
	if id == "" {
		// A certificate from before node IDs: the live member of that name.
		for _, m := range c.members.Members() {
			if m.Alive && m.Meta.Name == name {
				id = m.ID
			}
		}
	}
	if c.sec.live.nodeRevoked(id) {
		return nil, nil, status.Errorf(codes.PermissionDenied, "node %q (ID %s) was %v", name, id, ErrRevoked)
	}
	// The addresses the current certificate names (SignNodeID drops the
	// duplicates of the loopback addresses it adds).
	certPEM, err = ca.SignNodeID(csrPEM, id, name, cur.IPAddresses, c.cfg.NodeCertValidity)
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "certificate request: %v", err)
	}
	return certPEM, sec.CaCert, nil
}

// Renew serves a node's renewal (see signRenewal). The interceptor has
// already refused callers without a valid certificate of this cluster, or
// with a revoked one.
func (j *joinServer) Renew(ctx context.Context, req *api.RenewRequest) (*api.RenewResponse, error) {
	cur := peerLeaf(ctx)
	if cur == nil {
		return nil, status.Error(codes.Unauthenticated, "renewing a certificate takes the current one")
	}
	certPEM, caPEM, err := j.c.signRenewal(cur, req.GetCsr())
	if err != nil {
		return nil, err
	}
	j.c.log.Info("signed a renewed node certificate", "node", cur.Subject.CommonName, "id", NodeIDOf(cur))
	return &api.RenewResponse{Certificate: certPEM, CaCertificate: caPEM}, nil
}

// peerLeaf is the verified client certificate of a gRPC call, or nil.
func peerLeaf(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return verifiedLeaf(info.State)
}

// verifiedLeaf is the peer certificate of a connection, when it verified.
func verifiedLeaf(cs tls.ConnectionState) *x509.Certificate {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}

// saveRenewedCredentials writes a renewed certificate and its key so that a
// crash at any point leaves a pair that belongs together, or one that
// finishCertRenewal completes at the next start.
func saveRenewedCredentials(dir string, certPEM, keyPEM []byte) error {
	next := filepath.Join(dir, nodeKeyNextFile)
	if err := WriteSecretFile(next, keyPEM); err != nil {
		return err
	}
	if err := WriteSecretFile(filepath.Join(dir, nodeCertFile), certPEM); err != nil {
		return err
	}
	return renameSynced(next, filepath.Join(dir, nodeKeyFile))
}

// finishCertRenewal completes a renewal interrupted between writing the new
// certificate and moving its key into place: a new key that belongs to the
// certificate on disk replaces the old key; one that does not (the crash
// came before the certificate was written) is dropped.
func finishCertRenewal(dir string) error {
	next := filepath.Join(dir, nodeKeyNextFile)
	keyPEM, err := os.ReadFile(next)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node credentials: %w", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, nodeCertFile))
	if err != nil {
		return fmt.Errorf("node credentials: %w", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		if err := os.Remove(next); err != nil {
			return fmt.Errorf("node credentials: drop the key of an unfinished renewal: %w", err)
		}
		return nil
	}
	if cur, err := os.ReadFile(filepath.Join(dir, nodeKeyFile)); err == nil && bytes.Equal(cur, keyPEM) {
		return os.Remove(next)
	}
	return renameSynced(next, filepath.Join(dir, nodeKeyFile))
}

// renameSynced renames from to to and makes the rename durable.
func renameSynced(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("writing %s: %w", to, err)
	}
	if d, err := os.Open(filepath.Dir(to)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
