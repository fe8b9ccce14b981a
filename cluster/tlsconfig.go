package cluster

// TLS configurations for the cluster's connections:
//
//   - the API port (gRPC and HTTP on one listener): any client may connect,
//     a certificate is verified if given (the join call comes without one);
//   - raft between nodes: mutual TLS, and both sides must be nodes;
//   - a node calling another node's API with its node certificate;
//   - a joining node, which knows only the CA's fingerprint from its token.
//
// Every configuration requires TLS 1.3. The checks that depend on who the peer
// is run in VerifyConnection, which, unlike VerifyPeerCertificate, also runs
// when a session is resumed.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// ErrCAMismatch is the error of a join handshake with a server whose CA is not
// the one the join token names.
var ErrCAMismatch = errors.New("the cluster's CA certificate does not match the join token's fingerprint (wrong token, or not a shoal cluster)")

// NodeCredentials are a node's certificate and key and the cluster CA
// certificate, as PEM.
type NodeCredentials struct {
	CertPEM []byte
	KeyPEM  []byte
	CAPEM   []byte

	// live is set on the credentials of a running node: configurations
	// built from them present the node's current certificate (replaced
	// when it is renewed, see rotate.go) rather than CertPEM, and refuse
	// peers whose certificates are revoked (see revoke.go).
	live *liveTLS
}

// Certificate returns the node's key pair with the chain leaf, CA: a joining
// node finds the CA in it and checks it against its token's fingerprint.
func (c NodeCredentials) Certificate() (tls.Certificate, error) {
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate and key: %w", err)
	}
	cas, err := pkiParseCertsPEM(c.CAPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster CA certificate: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("node certificate: %w", err)
		}
		pair.Leaf = leaf
	}
	// CAPEM may hold more than one CA (while the CA is being replaced); the
	// chain ends with the one that signed this certificate.
	i := slices.IndexFunc(cas, func(ca *x509.Certificate) bool { return leaf.CheckSignatureFrom(ca) == nil })
	if i < 0 {
		return tls.Certificate{}, fmt.Errorf("node certificate %q is not signed by the cluster CA %q",
			leaf.Subject.CommonName, cas[0].Subject.CommonName)
	}
	ca := cas[i]
	// Keep the leaf, drop whatever else the file held, and end with the CA.
	pair.Certificate = [][]byte{pair.Certificate[0], ca.Raw}
	return pair, nil
}

// CAPool returns a pool holding only the cluster CA.
func (c NodeCredentials) CAPool() (*x509.CertPool, error) {
	certs, err := pkiParseCertsPEM(c.CAPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

// APIServerTLS is the configuration of the API listener (gRPC and HTTP/1.1 on
// one port). A client certificate is optional but, when given, must chain to
// the cluster CA; the server refuses every call but the join from a
// connection without a verified certificate.
func APIServerTLS(c NodeCredentials) (*tls.Config, error) {
	cert, pool, err := tlsLoad(c)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: tlsServerCert(cert),
		NextProtos:     []string{"h2", "http/1.1"},
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
	}
	c.withRevocation(cfg, "API")
	return cfg, nil
}

// PeerServerTLS is the configuration of the raft listener: the client must
// present a certificate of the cluster CA that belongs to a node.
func PeerServerTLS(c NodeCredentials) (*tls.Config, error) {
	cert, pool, err := tlsLoad(c)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		GetCertificate:   tlsServerCert(cert),
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		VerifyConnection: tlsRequireNode("raft client"),
	}
	c.withRevocation(cfg, "raft server")
	return cfg, nil
}

// PeerClientTLS is the configuration for dialling another node's raft port:
// the server must present a node certificate of the cluster CA valid for the
// address dialled. ServerName is left empty for the dialer to fill in from
// the address (tls.Dial does); see PeerClientTLSFor.
func PeerClientTLS(c NodeCredentials) (*tls.Config, error) {
	cert, pool, err := tlsLoad(c)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              pool,
		GetClientCertificate: tlsAlwaysPresent(cert),
		VerifyConnection:     tlsRequireNode("raft server"),
	}
	c.withRevocation(cfg, "raft client")
	return cfg, nil
}

// PeerClientTLSFor is PeerClientTLS with ServerName set to the host of addr
// ("192.168.56.12:7947" → "192.168.56.12"), for dialers that do not set it.
func PeerClientTLSFor(c NodeCredentials, addr string) (*tls.Config, error) {
	cfg, err := PeerClientTLS(c)
	if err != nil {
		return nil, err
	}
	host, err := tlsHost(addr)
	if err != nil {
		return nil, err
	}
	cfg.ServerName = host
	return cfg, nil
}

// NodeClientTLS is the configuration for calling another node's API (for
// instance to forward a write to the leader) with the node's certificate;
// the server must be a node of the cluster. ServerName is left to the dialer
// (gRPC fills it in from the target's host).
func NodeClientTLS(c NodeCredentials) (*tls.Config, error) {
	cert, pool, err := tlsLoad(c)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              pool,
		GetClientCertificate: tlsAlwaysPresent(cert),
		NextProtos:           []string{"h2"},
		VerifyConnection:     tlsRequireNode("API server"),
	}
	c.withRevocation(cfg, "API client")
	return cfg, nil
}

// JoinClientTLS is the configuration of a joining node, which has no CA yet,
// only the CA fingerprint from its token. The usual verification is replaced
// by one that looks in the chain the server presents for a CA certificate
// with that fingerprint and verifies the server's certificate against that CA
// alone. Without such a CA the handshake fails with ErrCAMismatch.
func JoinClientTLS(fingerprint string) *tls.Config {
	want := strings.ToLower(strings.TrimSpace(fingerprint))
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"h2"},
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate below
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			return tlsVerifyPinned(want, rawCerts, time.Now())
		},
	}
}

// WithRevocationCheck makes cfg fail every handshake in which the peer's
// certificate is refused by check (for instance because its serial number is
// on the cluster's revocation list). It runs after the checks cfg already
// has, on new and on resumed sessions. A nil check changes nothing.
func WithRevocationCheck(cfg *tls.Config, check func(cert *x509.Certificate) error) {
	if cfg == nil || check == nil {
		return
	}
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return nil // no certificate, nothing to revoke (API clients may have none)
		}
		leaf := cs.PeerCertificates[0]
		if err := check(leaf); err != nil {
			return fmt.Errorf("certificate of %q (serial %x) is refused: %w",
				leaf.Subject.CommonName, leaf.SerialNumber, err)
		}
		return nil
	}
}

// tlsLoad returns the source of the certificate to present (the node's
// current one for a running node, else the one in c) and the CA pool.
func tlsLoad(c NodeCredentials) (func() *tls.Certificate, *x509.CertPool, error) {
	pool, err := c.CAPool()
	if err != nil {
		return nil, nil, err
	}
	if c.live != nil {
		return c.live.current, pool, nil
	}
	cert, err := c.Certificate()
	if err != nil {
		return nil, nil, err
	}
	return func() *tls.Certificate { return &cert }, pool, nil
}

// withRevocation makes cfg refuse peers on the cluster's revocation list
// when c belongs to a running node.
func (c NodeCredentials) withRevocation(cfg *tls.Config, where string) {
	if c.live != nil {
		WithRevocationCheck(cfg, c.live.checker(where))
	}
}

// tlsServerCert presents the certificate cert returns at each handshake.
func tlsServerCert(cert func() *tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return cert(), nil
	}
}

// tlsAlwaysPresent sends the node's certificate whatever CAs the server says
// it accepts, so that a server of another cluster refuses it loudly instead of
// seeing a client without a certificate.
func tlsAlwaysPresent(cert func() *tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return cert(), nil
	}
}

// tlsRequireNode checks that the peer's verified certificate belongs to a
// node (O=shoal:nodes): an admin certificate is no peer.
func tlsRequireNode(role string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return fmt.Errorf("%s presented no certificate verified by the cluster CA", role)
		}
		leaf := cs.VerifiedChains[0][0]
		name, isNode, _ := PeerIdentity(leaf)
		if !isNode {
			return fmt.Errorf("%s certificate %q is not a node certificate (organisation %q, want %q)",
				role, name, leaf.Subject.Organization, OrgNodes)
		}
		return nil
	}
}

// tlsVerifyPinned implements JoinClientTLS's verification.
func tlsVerifyPinned(fingerprint string, rawCerts [][]byte, now time.Time) error {
	if len(rawCerts) == 0 {
		return errors.New("the cluster presented no certificate")
	}
	var ca *x509.Certificate
	for _, raw := range rawCerts {
		if Fingerprint(raw) != fingerprint {
			continue
		}
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("the cluster's CA certificate cannot be parsed: %w", err)
		}
		if cert.BasicConstraintsValid && cert.IsCA {
			ca = cert
			break
		}
	}
	if ca == nil {
		return fmt.Errorf("%w: no certificate the cluster presented has fingerprint %s", ErrCAMismatch, fingerprint)
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return fmt.Errorf("the cluster's certificate cannot be parsed: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("the cluster's certificate %q does not verify against the CA named by the join token: %w",
			leaf.Subject.CommonName, err)
	}
	if !slices.Contains(leaf.Subject.Organization, OrgNodes) {
		return fmt.Errorf("the cluster's certificate %q is not a node certificate", leaf.Subject.CommonName)
	}
	return nil
}

// tlsHost returns the host part of "host:port", "[v6]:port", or a bare host.
func tlsHost(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("peer address is empty")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		// No port: the whole address is the host (brackets allowed for IPv6).
		host = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	}
	if host == "" {
		return "", fmt.Errorf("peer address %q has no host", addr)
	}
	return host, nil
}
