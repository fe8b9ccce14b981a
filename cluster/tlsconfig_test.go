package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// tlsTestPKI is a cluster's CA with credentials for two nodes and an admin,
// and a second, unrelated cluster.
type tlsTestPKI struct {
	ca           *CA
	node1, node2 NodeCredentials
	admin        NodeCredentials
	expiredNode  NodeCredentials // a node certificate of ca that expired an hour ago
	otherCA      *CA
	otherNode    NodeCredentials // a node of the other cluster
	foreignNode  NodeCredentials // a node certificate of the other CA, but our CA as CAPEM
}

func tlsTestNode(t *testing.T, ca *CA, name string) NodeCredentials {
	t.Helper()
	keyPEM, csrPEM, err := NewNodeKey(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignNode(csrPEM, name, []net.IP{net.ParseIP("192.0.2.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return NodeCredentials{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
}

// tlsTestExpiredNode makes a node certificate of ca whose validity ended an
// hour ago (SignNode cannot make one).
func tlsTestExpiredNode(t *testing.T, ca *CA, name string) NodeCredentials {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: name, Organization: []string{OrgNodes}},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pkiEncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return NodeCredentials{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  keyPEM,
		CAPEM:   ca.CertPEM,
	}
}

func tlsTestNewPKI(t *testing.T) *tlsTestPKI {
	t.Helper()
	p := &tlsTestPKI{ca: pkiTestCA(t, "c1c1c1c1c1"), otherCA: pkiTestCA(t, "c2c2c2c2c2")}
	p.node1 = tlsTestNode(t, p.ca, "node1")
	p.node2 = tlsTestNode(t, p.ca, "node2")
	adminCert, adminKey, err := p.ca.IssueAdmin("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.admin = NodeCredentials{CertPEM: adminCert, KeyPEM: adminKey, CAPEM: p.ca.CertPEM}
	p.expiredNode = tlsTestExpiredNode(t, p.ca, "node9")
	p.otherNode = tlsTestNode(t, p.otherCA, "node1")
	p.foreignNode = p.otherNode
	p.foreignNode.CAPEM = p.ca.CertPEM
	return p
}

// tlsTestForced is a client configuration that trusts the cluster CA and
// presents creds' certificate whatever it is (NodeCredentials.Certificate
// refuses a certificate of another CA; a hostile client would not).
func tlsTestForced(t *testing.T, creds NodeCredentials, trust *CA) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(trust.Cert)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &pair, nil
		},
	}
}

type tlsTestResult struct {
	server    tls.ConnectionState
	client    tls.ConnectionState
	serverErr error
	clientErr error
}

func (r tlsTestResult) String() string {
	return fmt.Sprintf("server error: %v; client error: %v", r.serverErr, r.clientErr)
}

// tlsTestHandshake runs one TLS handshake over loopback TCP. After a good
// handshake the server writes one byte and the client reads it, so that a
// client certificate the server refuses (TLS 1.3 tells the client after its
// own handshake has finished) shows as a client error too. The client dials
// 127.0.0.1 and, like tls.Dial, uses that as ServerName unless the
// configuration names a server or skips verification.
func tlsTestHandshake(t *testing.T, serverCfg, clientCfg *tls.Config) tlsTestResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()

	type serverOut struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan serverOut, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- serverOut{err: err}
			return
		}
		conn.SetDeadline(deadline)
		tc := tls.Server(conn, serverCfg)
		defer tc.Close()
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- serverOut{err: err}
			return
		}
		if _, err := tc.Write([]byte{'k'}); err != nil {
			done <- serverOut{err: err}
			return
		}
		done <- serverOut{state: tc.ConnectionState()}
	}()

	var res tlsTestResult
	cfg := clientCfg.Clone()
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg.ServerName = "127.0.0.1"
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(deadline)
	tc := tls.Client(conn, cfg)
	if res.clientErr = tc.HandshakeContext(ctx); res.clientErr == nil {
		res.client = tc.ConnectionState()
		buf := make([]byte, 1)
		if _, err := tc.Read(buf); err != nil {
			res.clientErr = err
		}
	}
	tc.Close()
	out := <-done
	res.server, res.serverErr = out.state, out.err
	return res
}

// tlsTestMust(t)(APIServerTLS(c)) is the configuration, or the test fails.
func tlsTestMust(t *testing.T) func(*tls.Config, error) *tls.Config {
	return func(cfg *tls.Config, err error) *tls.Config {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
}

func TestTLSAPIServer(t *testing.T) {
	p := tlsTestNewPKI(t)
	pool, err := p.node1.CAPool()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		client     *tls.Config
		wantErr    string // in the server's error; "" for success
		wantPeer   string // CN of the verified client certificate, "" for none
		wantNode   bool
		wantAdmin  bool
		wantALPNh2 bool
	}{
		{"node", tlsTestMust(t)(NodeClientTLS(p.node2)), "", "node2", true, false, true},
		{"admin", tlsTestMust(t)(NodeClientTLS(p.admin)), "", "alice", false, true, true},
		{"no certificate", &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}, "", "", false, false, false},
		{"certificate of another CA", tlsTestForced(t, p.otherNode, p.ca), "unknown authority", "", false, false, false},
		{"expired certificate", tlsTestForced(t, p.expiredNode, p.ca), "expired", "", false, false, false},
		{"TLS 1.2 client", &tls.Config{MaxVersion: tls.VersionTLS12, RootCAs: pool}, "unsupported versions", "", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := tlsTestMust(t)(APIServerTLS(p.node1))
			res := tlsTestHandshake(t, server, tt.client)
			if tt.wantErr != "" {
				if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), tt.wantErr) {
					t.Fatalf("want a server error containing %q; %v", tt.wantErr, res)
				}
				if res.clientErr == nil {
					t.Fatalf("client did not see the refusal; %v", res)
				}
				return
			}
			if res.serverErr != nil || res.clientErr != nil {
				t.Fatalf("handshake failed; %v", res)
			}
			if tt.wantPeer == "" {
				if len(res.server.PeerCertificates) != 0 || len(res.server.VerifiedChains) != 0 {
					t.Fatalf("server sees a client certificate: %d certificates, %d verified chains",
						len(res.server.PeerCertificates), len(res.server.VerifiedChains))
				}
			} else {
				if len(res.server.VerifiedChains) == 0 {
					t.Fatal("server has no verified chain for the client")
				}
				name, isNode, isAdmin := PeerIdentity(res.server.VerifiedChains[0][0])
				if name != tt.wantPeer || isNode != tt.wantNode || isAdmin != tt.wantAdmin {
					t.Fatalf("client identity = %q, node %v, admin %v; want %q, %v, %v",
						name, isNode, isAdmin, tt.wantPeer, tt.wantNode, tt.wantAdmin)
				}
			}
			if tt.wantALPNh2 && res.server.NegotiatedProtocol != "h2" {
				t.Errorf("negotiated protocol %q, want h2", res.server.NegotiatedProtocol)
			}
			if res.server.Version != tls.VersionTLS13 {
				t.Errorf("TLS version %x, want 1.3", res.server.Version)
			}
			// The server's chain is leaf, CA.
			chain := res.client.PeerCertificates
			if len(chain) != 2 || !bytes.Equal(chain[1].Raw, p.ca.Cert.Raw) {
				t.Errorf("server presented %d certificates, want the leaf and the CA", len(chain))
			}
		})
	}
}

func TestTLSAPIServerHTTP1(t *testing.T) {
	p := tlsTestNewPKI(t)
	client := tlsTestMust(t)(NodeClientTLS(p.admin))
	client.NextProtos = []string{"http/1.1"}
	res := tlsTestHandshake(t, tlsTestMust(t)(APIServerTLS(p.node1)), client)
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake failed; %v", res)
	}
	if res.server.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("negotiated %q, want http/1.1", res.server.NegotiatedProtocol)
	}
}

func TestTLSPeer(t *testing.T) {
	p := tlsTestNewPKI(t)
	pool, err := p.node1.CAPool()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		server    NodeCredentials
		client    *tls.Config
		serverErr string // expected in the server's error
		clientErr string // expected in the client's error
	}{
		{"node to node", p.node1, tlsTestMust(t)(PeerClientTLS(p.node2)), "", ""},
		{"admin is not a peer", p.node1, tlsTestMust(t)(PeerClientTLS(p.admin)), "raft client certificate \"alice\" is not a node certificate", "bad certificate"},
		{"no client certificate", p.node1, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}, "client didn't provide a certificate", "certificate required"},
		{"client of another CA", p.node1, tlsTestForced(t, p.otherNode, p.ca), "unknown authority", "unknown certificate authority"},
		{"expired client", p.node1, tlsTestForced(t, p.expiredNode, p.ca), "expired", "expired certificate"},
		{"server of another CA", p.otherNode, tlsTestMust(t)(PeerClientTLS(p.node2)), "bad certificate", "unknown authority"},
		{"expired server", p.expiredNode, tlsTestMust(t)(PeerClientTLS(p.node2)), "bad certificate", "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tlsTestHandshake(t, tlsTestMust(t)(PeerServerTLS(tt.server)), tt.client)
			if tt.serverErr == "" && tt.clientErr == "" {
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("handshake failed; %v", res)
				}
				name, isNode, _ := PeerIdentity(res.server.VerifiedChains[0][0])
				if name != "node2" || !isNode {
					t.Errorf("server sees %q (node %v), want node2", name, isNode)
				}
				name, isNode, _ = PeerIdentity(res.client.VerifiedChains[0][0])
				if name != "node1" || !isNode {
					t.Errorf("client sees %q (node %v), want node1", name, isNode)
				}
				return
			}
			if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), tt.serverErr) {
				t.Errorf("want a server error containing %q; %v", tt.serverErr, res)
			}
			if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), tt.clientErr) {
				t.Errorf("want a client error containing %q; %v", tt.clientErr, res)
			}
		})
	}
}

func TestTLSPeerClientFor(t *testing.T) {
	p := tlsTestNewPKI(t)
	hosts := []struct {
		addr, want string
	}{
		{"127.0.0.1:7947", "127.0.0.1"},
		{"[::1]:7947", "::1"},
		{"192.168.56.12", "192.168.56.12"},
		{"[fd00::1]", "fd00::1"},
		{"node3:7947", "node3"},
	}
	for _, h := range hosts {
		cfg, err := PeerClientTLSFor(p.node2, h.addr)
		if err != nil {
			t.Errorf("PeerClientTLSFor(%q): %v", h.addr, err)
			continue
		}
		if cfg.ServerName != h.want {
			t.Errorf("PeerClientTLSFor(%q).ServerName = %q, want %q", h.addr, cfg.ServerName, h.want)
		}
	}
	for _, bad := range []string{"", ":7947"} {
		if _, err := PeerClientTLSFor(p.node2, bad); err == nil {
			t.Errorf("PeerClientTLSFor(%q) succeeded", bad)
		}
	}

	// The server's certificate must name the address dialled.
	tests := []struct {
		addr    string
		wantErr string
	}{
		{"127.0.0.1:7947", ""},
		{"[::1]:7947", ""},
		{"192.0.2.1:7947", ""},
		{"10.9.9.9:7947", "not 10.9.9.9"},
		{"node1:7947", ""},
		{"node5:7947", "not node5"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			client := tlsTestMust(t)(PeerClientTLSFor(p.node2, tt.addr))
			res := tlsTestHandshake(t, tlsTestMust(t)(PeerServerTLS(p.node1)), client)
			if tt.wantErr == "" {
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("handshake failed; %v", res)
				}
				return
			}
			if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), tt.wantErr) {
				t.Fatalf("want a client error containing %q; %v", tt.wantErr, res)
			}
		})
	}
}

func TestTLSNodeClientRefusesNonNodeServer(t *testing.T) {
	// A server whose certificate chains to the CA and allows server auth but
	// is not a node's.
	p := tlsTestNewPKI(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := p.ca.pkiIssue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "impostor", Organization: []string{"someone"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, &key.PublicKey, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pkiEncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	impostor := NodeCredentials{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  keyPEM,
		CAPEM:   p.ca.CertPEM,
	}
	for name, client := range map[string]*tls.Config{
		"NodeClientTLS": tlsTestMust(t)(NodeClientTLS(p.node2)),
		"PeerClientTLS": tlsTestMust(t)(PeerClientTLS(p.node2)),
	} {
		t.Run(name, func(t *testing.T) {
			res := tlsTestHandshake(t, tlsTestMust(t)(APIServerTLS(impostor)), client)
			if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), "is not a node certificate") {
				t.Fatalf("want the client to refuse a non-node server; %v", res)
			}
		})
	}
}

func TestTLSJoinClient(t *testing.T) {
	p := tlsTestNewPKI(t)
	fp := Fingerprint(p.ca.Cert.Raw)

	leafOnly := func(creds NodeCredentials) *tls.Config {
		pair, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}}
	}
	// A server of another cluster that copies our CA certificate into its
	// chain: the CA matches the fingerprint but did not sign the leaf.
	forged := leafOnly(p.otherNode)
	forged.Certificates[0].Certificate = append(forged.Certificates[0].Certificate, p.ca.Cert.Raw)
	// A server of our CA whose certificate has expired.
	expired := leafOnly(p.expiredNode)
	expired.Certificates[0].Certificate = append(expired.Certificates[0].Certificate, p.ca.Cert.Raw)

	tests := []struct {
		name        string
		server      *tls.Config
		fingerprint string
		mismatch    bool   // want ErrCAMismatch
		wantErr     string // want another error containing this
	}{
		{"right fingerprint", tlsTestMust(t)(APIServerTLS(p.node1)), fp, false, ""},
		{"upper-case fingerprint", tlsTestMust(t)(APIServerTLS(p.node1)), strings.ToUpper(fp), false, ""},
		{"fingerprint of another cluster", tlsTestMust(t)(APIServerTLS(p.node1)), Fingerprint(p.otherCA.Cert.Raw), true, ""},
		{"server of another cluster", tlsTestMust(t)(APIServerTLS(p.otherNode)), fp, true, ""},
		{"server without CA in its chain", leafOnly(p.node1), fp, true, ""},
		{"fingerprint of the leaf", leafOnly(p.node1), Fingerprint(pkiTestParseCert(t, p.node1.CertPEM).Raw), true, ""},
		{"leaf not signed by the pinned CA", forged, fp, false, "does not verify against the CA named by the join token"},
		{"expired server certificate", expired, fp, false, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tlsTestHandshake(t, tt.server, JoinClientTLS(tt.fingerprint))
			switch {
			case tt.mismatch:
				if !errors.Is(res.clientErr, ErrCAMismatch) {
					t.Fatalf("want ErrCAMismatch; %v", res)
				}
				if !strings.Contains(res.clientErr.Error(), ErrCAMismatch.Error()) {
					t.Fatalf("error %q does not carry the mismatch message", res.clientErr)
				}
			case tt.wantErr != "":
				if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), tt.wantErr) {
					t.Fatalf("want a client error containing %q; %v", tt.wantErr, res)
				}
				if errors.Is(res.clientErr, ErrCAMismatch) {
					t.Fatalf("error %q is reported as a CA mismatch", res.clientErr)
				}
			default:
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("handshake failed; %v", res)
				}
				// The joiner finds the CA in the chain (to keep it after joining),
				// and presented no certificate.
				chain := res.client.PeerCertificates
				if len(chain) != 2 || Fingerprint(chain[1].Raw) != fp {
					t.Fatalf("joiner did not receive the CA in the chain")
				}
				if len(res.server.PeerCertificates) != 0 {
					t.Fatal("joiner presented a certificate")
				}
				if res.client.NegotiatedProtocol != "h2" {
					t.Errorf("negotiated %q, want h2", res.client.NegotiatedProtocol)
				}
			}
		})
	}
}

func TestTLSRevocationHook(t *testing.T) {
	p := tlsTestNewPKI(t)
	pool, err := p.node1.CAPool()
	if err != nil {
		t.Fatal(err)
	}
	revoked := pkiTestParseCert(t, p.node2.CertPEM).SerialNumber
	errRevoked := errors.New("revoked")
	check := func(cert *x509.Certificate) error {
		if cert.SerialNumber.Cmp(revoked) == 0 {
			return errRevoked
		}
		return nil
	}
	apiServer := func() *tls.Config {
		cfg := tlsTestMust(t)(APIServerTLS(p.node1))
		WithRevocationCheck(cfg, check)
		return cfg
	}
	peerServer := func() *tls.Config {
		cfg := tlsTestMust(t)(PeerServerTLS(p.node1))
		WithRevocationCheck(cfg, check)
		return cfg
	}
	tests := []struct {
		name    string
		server  *tls.Config
		client  *tls.Config
		wantErr string // in the server's error
	}{
		{"API: revoked node", apiServer(), tlsTestMust(t)(NodeClientTLS(p.node2)), "certificate of \"node2\" (serial"},
		{"API: admin", apiServer(), tlsTestMust(t)(NodeClientTLS(p.admin)), ""},
		{"API: no certificate", apiServer(), &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}, ""},
		{"peer: revoked node", peerServer(), tlsTestMust(t)(PeerClientTLS(p.node2)), "is refused: revoked"},
		{"peer: other node", peerServer(), tlsTestMust(t)(PeerClientTLS(p.node1)), ""},
		{"peer: admin still refused", peerServer(), tlsTestMust(t)(PeerClientTLS(p.admin)), "not a node certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tlsTestHandshake(t, tt.server, tt.client)
			if tt.wantErr == "" {
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("handshake failed; %v", res)
				}
				return
			}
			if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), tt.wantErr) {
				t.Fatalf("want a server error containing %q; %v", tt.wantErr, res)
			}
			if res.clientErr == nil {
				t.Fatalf("client did not see the refusal; %v", res)
			}
		})
	}

	t.Run("client refuses a revoked server", func(t *testing.T) {
		client := tlsTestMust(t)(PeerClientTLS(p.node1))
		WithRevocationCheck(client, check)
		res := tlsTestHandshake(t, tlsTestMust(t)(PeerServerTLS(p.node2)), client)
		if !errors.Is(res.clientErr, errRevoked) {
			t.Fatalf("want the client to refuse with errRevoked; %v", res)
		}
	})

	t.Run("nil check changes nothing", func(t *testing.T) {
		cfg := tlsTestMust(t)(PeerServerTLS(p.node1))
		WithRevocationCheck(cfg, nil)
		WithRevocationCheck(nil, check)
		res := tlsTestHandshake(t, cfg, tlsTestMust(t)(PeerClientTLS(p.admin)))
		if res.serverErr == nil {
			t.Fatal("admin accepted as a peer after WithRevocationCheck(cfg, nil)")
		}
	})

	// A session resumed after the certificate was revoked is refused too.
	t.Run("resumed session", func(t *testing.T) {
		isRevoked := false
		server := tlsTestMust(t)(APIServerTLS(p.node1))
		WithRevocationCheck(server, func(cert *x509.Certificate) error {
			if isRevoked {
				return errRevoked
			}
			return nil
		})
		client := tlsTestMust(t)(NodeClientTLS(p.node2))
		client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

		if res := tlsTestHandshake(t, server, client); res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("first handshake failed; %v", res)
		}
		res := tlsTestHandshake(t, server, client)
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("second handshake failed; %v", res)
		}
		if !res.server.DidResume {
			t.Fatal("second handshake did not resume the session; the test proves nothing")
		}
		isRevoked = true
		res = tlsTestHandshake(t, server, client)
		if !errors.Is(res.serverErr, errRevoked) {
			t.Fatalf("resumed session of a revoked certificate accepted; %v", res)
		}
	})
}

func TestTLSNodeCredentials(t *testing.T) {
	p := tlsTestNewPKI(t)
	both := NodeCredentials{CertPEM: p.node1.CertPEM, KeyPEM: p.node1.KeyPEM, CAPEM: append(append([]byte{}, p.otherCA.CertPEM...), p.ca.CertPEM...)}
	withChain := p.node1
	withChain.CertPEM = append(append([]byte{}, p.node1.CertPEM...), p.ca.CertPEM...)

	tests := []struct {
		name    string
		creds   NodeCredentials
		wantErr string
	}{
		{"node", p.node1, ""},
		{"certificate file already holds the chain", withChain, ""},
		{"two CAs in the CA file", both, ""},
		{"key of another node", NodeCredentials{CertPEM: p.node1.CertPEM, KeyPEM: p.node2.KeyPEM, CAPEM: p.ca.CertPEM}, "node certificate and key"},
		{"certificate of another CA", p.foreignNode, "not signed by the cluster CA"},
		{"no CA", NodeCredentials{CertPEM: p.node1.CertPEM, KeyPEM: p.node1.KeyPEM}, "cluster CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := tt.creds.Certificate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Certificate error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Certificate: %v", err)
			}
			if len(cert.Certificate) != 2 {
				t.Fatalf("chain has %d certificates, want 2", len(cert.Certificate))
			}
			if !bytes.Equal(cert.Certificate[1], p.ca.Cert.Raw) {
				t.Error("second certificate of the chain is not the cluster CA")
			}
			if cert.Leaf == nil || cert.Leaf.Subject.CommonName != "node1" {
				t.Error("Leaf is not node1's certificate")
			}
			pool, err := tt.creds.CAPool()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
				t.Errorf("leaf does not verify against CAPool: %v", err)
			}
		})
	}
	if _, err := (NodeCredentials{CAPEM: []byte("nothing")}).CAPool(); err == nil {
		t.Error("CAPool of garbage succeeded")
	}
	for name, f := range map[string]func(NodeCredentials) (*tls.Config, error){
		"APIServerTLS": APIServerTLS, "PeerServerTLS": PeerServerTLS,
		"PeerClientTLS": PeerClientTLS, "NodeClientTLS": NodeClientTLS,
	} {
		if _, err := f(p.foreignNode); err == nil {
			t.Errorf("%s accepted a certificate of another CA", name)
		}
		cfg, err := f(p.node1)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.MinVersion != tls.VersionTLS13 {
			t.Errorf("%s: MinVersion %x, want TLS 1.3", name, cfg.MinVersion)
		}
	}
}
