package cluster

// Tests of the claims in SECURITY.md. Each test names the claim it shows;
// SECURITY.md names the test.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// secLog collects the log lines of in-process nodes.
type secLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *secLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *secLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logger logs everything, debug included, as the node name.
func (l *secLog) logger(node string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", node)
}

// lines returns the log lines that contain every one of words.
func (l *secLog) lines(words ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok && line != "" {
			out = append(out, line)
		}
	}
	return out
}

// secCluster starts n nodes on base+"1".. (n1 with --init), logging to log;
// mod adjusts every node's configuration.
func secCluster(t *testing.T, n int, base string, log *secLog, mod func(*Config)) ([]*testNode, *InitResult) {
	t.Helper()
	dir := t.TempDir()
	cfg := func(i int) Config {
		c := Config{DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i)), NodeName: fmt.Sprintf("n%d", i),
			AdvertiseAddr: fmt.Sprintf("%s%d", base, i), Logger: log.logger(fmt.Sprintf("n%d", i))}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	first := cfg(1)
	first.Init = true
	nodes := []*testNode{startTestNode(t, first)}
	res := nodes[0].c.InitResult()
	if res == nil {
		t.Fatal("no init result")
	}
	for i := 2; i <= n; i++ {
		c := cfg(i)
		c.Join, c.Token = nodes[0].c.APIAddress(), res.Token
		nodes = append(nodes, startTestNode(t, c))
	}
	cl := adminClient(t, res, nodes[0].c.APIAddress())
	waitFor(t, 30*time.Second, fmt.Sprintf("%d Ready nodes, one leader", n), func() (bool, string) {
		roles, seen := nodeTable(context.Background(), cl)
		l, _, _, r := countRoles(roles)
		return len(roles) == n && r == n && l == 1, seen
	})
	return nodes, res
}

// secTLS is a client configuration presenting certPEM/keyPEM (if given) and
// trusting caPEM, for servers on host.
func secTLS(t *testing.T, certPEM, keyPEM, caPEM []byte, host string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: host}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		// Presented whatever the server asks for, as a hostile client would.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg
}

// secGRPC is a gRPC client of addr with cfg; the connection is closed when
// the test ends.
func secGRPC(t *testing.T, addr string, cfg *tls.Config) (api.ShoalClient, api.JoinClient) {
	t.Helper()
	c := cfg.Clone()
	c.NextProtos = []string{"h2"}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(c)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api.NewShoalClient(cc), api.NewJoinClient(cc)
}

// secHTTP is an HTTP client of the API with cfg (HTTP/2 when h2).
func secHTTP(t *testing.T, cfg *tls.Config, h2 bool) *http.Client {
	t.Helper()
	c := cfg.Clone()
	tr := &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: h2}
	if h2 {
		c.NextProtos = []string{"h2"}
	} else {
		c.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// secGet does GET https://addr/v1/nodes and reports the status, the body,
// and whether the request went over a connection used before.
func secGet(hc *http.Client, addr string) (code int, body string, reused bool, err error) {
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/nodes", nil)
	if err != nil {
		return 0, "", false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", reused, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), reused, nil
}

// secRaftClient is a raft transport that reaches other nodes' raft ports
// through dial; it serves nothing.
type secRaftClient struct {
	dial   func(addr string, timeout time.Duration) (net.Conn, error)
	dials  atomic.Int32
	closed chan struct{}
	once   sync.Once
}

func (s *secRaftClient) Accept() (net.Conn, error) { <-s.closed; return nil, net.ErrClosed }
func (s *secRaftClient) Close() error              { s.once.Do(func() { close(s.closed) }); return nil }
func (s *secRaftClient) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (s *secRaftClient) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.dials.Add(1)
	return s.dial(string(addr), timeout)
}

// secRaft returns a raft transport whose connections dial makes.
func secRaft(t *testing.T, dial func(addr string, timeout time.Duration) (net.Conn, error)) (*raft.NetworkTransport, *secRaftClient) {
	t.Helper()
	layer := &secRaftClient{dial: dial, closed: make(chan struct{})}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 1, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger(),
	})
	t.Cleanup(func() { tr.Close() })
	return tr, layer
}

// secVote sends a raft RequestVote of term 0 (which every node refuses, and
// answers) to n's raft port.
func secVote(tr *raft.NetworkTransport, n *testNode) error {
	var resp raft.RequestVoteResponse
	return tr.RequestVote(raft.ServerID(n.c.id.ID), raft.ServerAddress(n.c.id.raftAddr()), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("tester"), Addr: []byte("127.0.0.1:1")},
	}, &resp)
}

// secTLSDial dials raft with cfg (nil: plain TCP).
func secTLSDial(cfg *tls.Config) func(addr string, timeout time.Duration) (net.Conn, error) {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout}
		if cfg == nil {
			return d.Dial("tcp", addr)
		}
		return (&tls.Dialer{NetDialer: d, Config: cfg}).Dial("tcp", addr)
	}
}

// secCA is the cluster CA, from a replica's store.
func secCA(t *testing.T, n *testNode) *CA {
	t.Helper()
	ca, _, err := n.c.caFromState()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Claim 1: the API refuses a caller without a client certificate, with a
// certificate of another CA, and with an expired certificate, over gRPC
// and HTTP (HTTP/2 and HTTP/1.1).
func TestSecurityAPIRefusesBadClientCertificates(t *testing.T) {
	log := &secLog{}
	nodes, res := secCluster(t, 1, "127.0.40.", log, nil)
	n := nodes[0]
	addr, host := n.c.APIAddress(), n.c.id.AdvertiseAddr
	ca := secCA(t, n)
	other, err := NewCA("another-cluster")
	if err != nil {
		t.Fatal(err)
	}
	otherAdmin, otherAdminKey, err := other.IssueAdmin("admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	expiredAdmin, expiredAdminKey, err := ca.issueAdminWindow("admin", past, past.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, csr, err := NewNodeKey("n9", nil)
	if err != nil {
		t.Fatal(err)
	}
	expiredNode, err := ca.signNodeWindow(csr, "n9-id", "n9", []net.IP{net.ParseIP(host)}, past, past.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		cert, key []byte
		// A certificate the handshake refuses fails the connection; without
		// one, the call is answered Unauthenticated / 401.
		handshake string // in the server's log
	}{
		{"admin of this cluster (control)", res.AdminCert, res.AdminKey, ""},
		{"no certificate", nil, nil, ""},
		{"certificate of another CA", otherAdmin, otherAdminKey, "unknown authority"},
		{"expired admin certificate", expiredAdmin, expiredAdminKey, "expired"},
		{"expired node certificate", expiredNode, nodeKey, "expired"},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := secTLS(t, tc.cert, tc.key, res.CACert, host)
			control := strings.HasPrefix(tc.name, "admin")
			cl, _ := secGRPC(t, addr, cfg)
			_, err := cl.List(ctx, &api.ListRequest{Kind: "Node"})
			switch {
			case control && err != nil:
				t.Fatalf("gRPC with the admin certificate: %v", err)
			case tc.cert == nil && status.Code(err) != codes.Unauthenticated:
				t.Fatalf("gRPC without a certificate: want Unauthenticated, got %v", err)
			case !control && err == nil:
				t.Fatal("gRPC call succeeded")
			}
			for _, h2 := range []bool{true, false} {
				code, body, _, err := secGet(secHTTP(t, cfg, h2), addr)
				switch {
				case control && (err != nil || code != http.StatusOK):
					t.Fatalf("HTTP (h2 %v) with the admin certificate: %d %s %v", h2, code, body, err)
				case tc.cert == nil && (err != nil || code != http.StatusUnauthorized):
					t.Fatalf("HTTP (h2 %v) without a certificate: want 401, got %d %s %v", h2, code, body, err)
				case tc.handshake != "" && err == nil:
					t.Fatalf("HTTP (h2 %v) answered %d %s; want the handshake refused", h2, code, body)
				}
				t.Logf("HTTP (h2 %v): %d %v", h2, code, err)
			}
			if tc.handshake != "" {
				waitFor(t, 5*time.Second, "the server logs why it refused the handshake", func() (bool, string) {
					lines := log.lines("API handshake", tc.handshake)
					return len(lines) > 0, strings.Join(log.lines("API handshake"), "\n")
				})
			}
		})
	}
}

// Claim 2: a node removed with `shoal node rm` can no longer reach raft or
// the API of the others, over new connections and over connections it made
// before; it cannot renew its certificate; its gossip is ignored, so it
// does not come back as a member; started again with its old data, it
// learns that it was removed and stops serving; and all of this survives a
// snapshot and a restart.
func TestSecurityRemovedNodeIsLockedOut(t *testing.T) {
	log := &secLog{}
	nodes, res := secCluster(t, 4, "127.0.41.", log, nil)
	ctx := context.Background()
	admin := adminClient(t, res, nodes[0].c.APIAddress())
	n1, n2, n4 := nodes[0], nodes[1], nodes[3]
	n4ID, n4Dir, n4Addr := n4.c.id.ID, n4.cfg.DataDir, n4.cfg.AdvertiseAddr
	creds, err := loadCredentials(n4Dir)
	if err != nil {
		t.Fatal(err)
	}
	host := n1.c.id.AdvertiseAddr
	n4TLS := secTLS(t, creds.CertPEM, creds.KeyPEM, creds.CAPEM, host)

	// Connections n4's credentials make while n4 is a member work.
	oldGRPC, _ := secGRPC(t, n1.c.APIAddress(), n4TLS)
	if _, err := oldGRPC.List(ctx, &api.ListRequest{Kind: "Node"}); err != nil {
		t.Fatalf("n4's certificate before removal, gRPC: %v", err)
	}
	oldHTTP := secHTTP(t, n4TLS, true)
	if code, body, _, err := secGet(oldHTTP, n1.c.APIAddress()); err != nil || code != http.StatusOK {
		t.Fatalf("n4's certificate before removal, HTTP: %d %s %v", code, body, err)
	}
	oldRaft, oldRaftLayer := secRaft(t, secTLSDial(n4TLS))
	if err := secVote(oldRaft, n1); err != nil {
		t.Fatalf("n4's certificate before removal, raft: %v", err)
	}

	// Stop n4 and remove it.
	n4.stop()
	waitFor(t, 30*time.Second, "n4 removed (once gossip sees it gone)", func() (bool, string) {
		_, err := admin.RemoveNode(ctx, &api.RemoveNodeRequest{Name: "n4"})
		return err == nil, fmt.Sprint(err)
	})
	for _, n := range nodes[:3] {
		waitFor(t, 10*time.Second, n.cfg.NodeName+" knows n4 is revoked", func() (bool, string) {
			return n.c.sec.live.nodeRevoked(n4ID), fmt.Sprint(n.c.State().Secrets().GetRevokedNodes())
		})
	}

	// The connections made before are refused on their next call.
	_, err = oldGRPC.List(ctx, &api.ListRequest{Kind: "Node"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "removed from the cluster") {
		t.Fatalf("old gRPC connection after removal: want PermissionDenied naming the removal, got %v", err)
	}
	code, body, reused, err := secGet(oldHTTP, n1.c.APIAddress())
	if err != nil || code != http.StatusForbidden || !reused || !strings.Contains(body, "removed from the cluster") {
		t.Fatalf("old HTTP connection after removal (reused %v): want 403 naming the removal, got %d %s %v", reused, code, body, err)
	}
	if err := secVote(oldRaft, n1); err == nil {
		t.Fatal("old raft connection after removal: the vote request was answered")
	}
	if d := oldRaftLayer.dials.Load(); d != 1 {
		t.Fatalf("the refused raft call dialled anew (%d dials): it did not test the old connection", d)
	}
	// New connections are refused at the handshake, by every node.
	for _, n := range nodes[:3] {
		cfg := secTLS(t, creds.CertPEM, creds.KeyPEM, creds.CAPEM, n.c.id.AdvertiseAddr)
		cl, join := secGRPC(t, n.c.APIAddress(), cfg)
		if _, err := cl.List(ctx, &api.ListRequest{Kind: "Node"}); err == nil {
			t.Fatalf("%s: a new gRPC connection with n4's certificate was served", n.cfg.NodeName)
		}
		_, csr, err := NewNodeKey("n4", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := join.Renew(ctx, &api.RenewRequest{Csr: csr}); err == nil {
			t.Fatalf("%s renewed the certificate of the removed n4", n.cfg.NodeName)
		}
		if code, body, _, err := secGet(secHTTP(t, cfg, false), n.c.APIAddress()); err == nil {
			t.Fatalf("%s: a new HTTP connection with n4's certificate was answered %d %s", n.cfg.NodeName, code, body)
		}
		tr, _ := secRaft(t, secTLSDial(cfg))
		if err := secVote(tr, n); err == nil {
			t.Fatalf("%s: a new raft connection with n4's certificate was answered", n.cfg.NodeName)
		}
	}
	for _, where := range []string{"where=API", "where=\"raft server\""} {
		if len(log.lines("refused a revoked node", where, "peer=n4")) == 0 {
			t.Fatalf("no log line says why n4 was refused (%s):\n%s", where, log.String())
		}
	}
	t.Logf("refusals logged:\n%s", strings.Join(log.lines("refused a revoked node"), "\n"))

	// n4 comes back from its data directory: its gossip and raft are
	// refused, and it is not a member again.
	n4Log := &secLog{}
	back := startTestNode(t, Config{DataDir: n4Dir, AdvertiseAddr: n4Addr, Logger: n4Log.logger("n4")})
	waitFor(t, 30*time.Second, "n4's gossip reached the others (ignored, or taken)", func() (bool, string) {
		alive := 0
		for _, m := range back.c.members.Members() {
			if m.Alive && m.ID != n4ID {
				alive++
			}
		}
		taken := false
		for _, n := range nodes[:3] {
			_, ok := n.c.members.Member(n4ID)
			taken = taken || ok
		}
		return alive > 0 && (taken || len(log.lines("refused a revoked node", "where=gossip")) > 0),
			fmt.Sprintf("n4 sees %d others alive; gossip refusals: %q", alive, log.lines("refused a revoked node", "where=gossip"))
	})
	// n4 asks the others whether it was removed, learns it, and stops: its
	// raft shut down, its API answering every call with the reason.
	waitFor(t, 30*time.Second, "n4 learns it was removed and stops", func() (bool, string) {
		return back.c.Fenced() != "", fmt.Sprintf("n4 raft state %v; n4 log:\n%s", back.c.raft.raft.State(), strings.Join(n4Log.lines("component=raft"), "\n"))
	})
	if st := back.c.raft.raft.State(); st != raft.Shutdown {
		t.Fatalf("fenced n4's raft is %v, want Shutdown", st)
	}
	if len(n4Log.lines("FENCED", "was removed from the cluster")) == 0 {
		t.Fatalf("n4's log does not say why it stopped:\n%s", n4Log.String())
	}
	_, err = adminClient(t, res, back.c.APIAddress()).List(ctx, &api.ListRequest{Kind: "Node"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "was removed from the cluster") {
		t.Fatalf("a call to fenced n4: %v; want FailedPrecondition with the reason", err)
	}
	for _, n := range nodes[:3] {
		if m, ok := n.c.members.Member(n4ID); ok {
			t.Fatalf("%s has n4 as a member again: %+v", n.cfg.NodeName, m)
		}
	}
	roles, seen := nodeTable(ctx, admin)
	if _, ok := roles["n4"]; ok || len(roles) != 3 {
		t.Fatalf("n4 is back in the node list: %s", seen)
	}

	// The revocation survives a snapshot and a restart.
	waitFor(t, 10*time.Second, "a snapshot on n2", func() (bool, string) {
		err := n2.c.raft.raft.Snapshot().Error()
		return err == nil, fmt.Sprint(err)
	})
	n2.stop()
	n2 = startTestNode(t, Config{DataDir: n2.cfg.DataDir, AdvertiseAddr: n2.cfg.AdvertiseAddr, Logger: log.logger("n2")})
	waitFor(t, 10*time.Second, "restarted n2 knows n4 is revoked", func() (bool, string) {
		return n2.c.sec.live.nodeRevoked(n4ID), fmt.Sprint(n2.c.State().Secrets().GetRevokedNodes())
	})
	cl, _ := secGRPC(t, n2.c.APIAddress(), secTLS(t, creds.CertPEM, creds.KeyPEM, creds.CAPEM, n2.c.id.AdvertiseAddr))
	if _, err := cl.List(ctx, &api.ListRequest{Kind: "Node"}); err == nil {
		t.Fatal("restarted n2 served n4's certificate")
	}
}

// Claim 2 on a node outside the raft replicas, which holds no store: it
// learns the revocation list from its replica and refuses the removed
// node too.
func TestSecurityRemovedNodeRefusedOutsideReplicas(t *testing.T) {
	log := &secLog{}
	nodes, res := secCluster(t, 3, "127.0.47.", log, func(c *Config) { c.MaxReplicas = 1 })
	ctx := context.Background()
	admin := adminClient(t, res, nodes[0].c.APIAddress())
	n2, n3 := nodes[1], nodes[2]
	waitFor(t, 20*time.Second, "n2 and n3 outside the replicas", func() (bool, string) {
		roles, seen := nodeTable(ctx, admin)
		return roles["n2"] == RoleNone+"/True" && roles["n3"] == RoleNone+"/True", seen
	})
	creds, err := loadCredentials(n3.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	n3ID := n3.c.id.ID
	cfg := secTLS(t, creds.CertPEM, creds.KeyPEM, creds.CAPEM, n2.c.id.AdvertiseAddr)
	old, _ := secGRPC(t, n2.c.APIAddress(), cfg)
	if _, err := old.List(ctx, &api.ListRequest{Kind: "Node"}); err != nil {
		t.Fatalf("n3's certificate at n2 before removal: %v", err)
	}
	n3.stop()
	waitFor(t, 30*time.Second, "n3 removed (once gossip sees it gone)", func() (bool, string) {
		_, err := admin.RemoveNode(ctx, &api.RemoveNodeRequest{Name: "n3"})
		return err == nil, fmt.Sprint(err)
	})
	waitFor(t, 10*time.Second, "n2 learnt that n3 is revoked", func() (bool, string) {
		return n2.c.sec.live.nodeRevoked(n3ID), fmt.Sprintf("n2 holds a store up to index %d", n2.c.State().Index())
	})
	if idx := n2.c.State().Index(); idx != 0 {
		t.Fatalf("n2 holds a store (index %d): it does not test a node outside the replicas", idx)
	}
	if _, err := old.List(ctx, &api.ListRequest{Kind: "Node"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("n3's old connection to n2 after removal: want PermissionDenied, got %v", err)
	}
	fresh, _ := secGRPC(t, n2.c.APIAddress(), cfg)
	if _, err := fresh.List(ctx, &api.ListRequest{Kind: "Node"}); err == nil {
		t.Fatal("n2 served a new connection with n3's certificate")
	}
	if len(log.lines("refused a revoked node", "node=n2", "peer=n3")) == 0 {
		t.Fatalf("n2 did not log why it refused n3:\n%s", log.String())
	}
}

// Claim 3: gossip from a process without the cluster's gossip key (another
// key, or none) is ignored: it cannot join, and no member lists it.
func TestSecurityGossipWithoutKeyIsIgnored(t *testing.T) {
	log := &secLog{}
	nodes, _ := secCluster(t, 1, "127.0.42.", log, nil)
	n1 := nodes[0]
	key, err := os.ReadFile(filepath.Join(n1.cfg.DataDir, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort(n1.c.id.AdvertiseAddr, fmt.Sprint(n1.c.id.GossipPort))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(id, addr string, key []byte) *membership {
		m, err := startMembership(membershipConfig{NodeID: id, Meta: memberMeta{Name: id}, BindAddr: addr, BindPort: 7946,
			AdvertiseAddr: addr, AdvertisePort: 7946, Key: key}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.shutdown() })
		return m
	}
	// Without any key: a plain memberlist, as an attacker would run it.
	plain := memberlist.DefaultLANConfig()
	plain.Name, plain.BindAddr, plain.BindPort, plain.AdvertiseAddr, plain.AdvertisePort = "no-key", "127.0.42.8", 7946, "127.0.42.8", 7946
	plain.LogOutput = io.Discard
	noKey, err := memberlist.Create(plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noKey.Shutdown() })
	wrongKey := start("wrong-key", "127.0.42.9", otherKey)

	if n, err := noKey.Join([]string{target}); err == nil {
		t.Fatalf("a memberlist without the key joined (%d contacted)", n)
	} else {
		t.Logf("without the key: %v", err)
	}
	if n, err := wrongKey.join([]string{target}); err == nil {
		t.Fatalf("a memberlist with another key joined (%d contacted)", n)
	} else {
		t.Logf("with another key: %v", err)
	}
	// Control: the same code with the cluster's key joins, and is seen.
	rightKey := start("right-key", "127.0.42.7", key)
	if _, err := rightKey.join([]string{target}); err != nil {
		t.Fatalf("a memberlist with the cluster's key could not join: %v", err)
	}
	waitFor(t, 10*time.Second, "n1 sees the member with the key", func() (bool, string) {
		m, ok := n1.c.members.Member("right-key")
		return ok && m.Alive, fmt.Sprint(n1.c.members.Members())
	})
	for _, id := range []string{"no-key", "wrong-key"} {
		if m, ok := n1.c.members.Member(id); ok {
			t.Fatalf("n1 lists %s as a member: %+v", id, m)
		}
		if m, ok := rightKey.Member(id); ok {
			t.Fatalf("the cluster's gossip carries %s: %+v", id, m)
		}
	}
	for _, m := range noKey.Members() {
		if m.Name != "no-key" {
			t.Fatalf("the memberlist without the key learnt of %s", m.Name)
		}
	}
}

// Claim 4: raft answers only mutual TLS with a node certificate of the
// cluster: plain TCP, TLS without a client certificate, with a certificate
// of another CA, or with an admin certificate get no answer.
func TestSecurityRaftRefusesWithoutMutualTLS(t *testing.T) {
	log := &secLog{}
	nodes, res := secCluster(t, 1, "127.0.43.", log, nil)
	n1 := nodes[0]
	host := n1.c.id.AdvertiseAddr
	ca := secCA(t, n1)
	other, err := NewCA("another-cluster")
	if err != nil {
		t.Fatal(err)
	}
	otherNode := tlsTestNode(t, other, "n1")
	key, csr, err := NewNodeKey("n7", nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := ca.SignNodeID(csr, "n7-id", "n7", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	termBefore := n1.c.raft.raft.Stats()["term"]
	cases := []struct {
		name string
		dial func(addr string, timeout time.Duration) (net.Conn, error)
		ok   bool
	}{
		{"node certificate of this cluster (control)", secTLSDial(secTLS(t, nodeCert, key, res.CACert, host)), true},
		{"plain TCP", secTLSDial(nil), false},
		{"TLS without a client certificate", secTLSDial(secTLS(t, nil, nil, res.CACert, host)), false},
		{"certificate of another CA", secTLSDial(secTLS(t, otherNode.CertPEM, otherNode.KeyPEM, res.CACert, host)), false},
		{"admin certificate of this cluster", secTLSDial(secTLS(t, res.AdminCert, res.AdminKey, res.CACert, host)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, _ := secRaft(t, tc.dial)
			err := secVote(tr, n1)
			if tc.ok != (err == nil) {
				t.Fatalf("vote request answered: %v, want %v (err %v)", err == nil, tc.ok, err)
			}
			t.Logf("vote request: %v", err)
		})
	}
	// Raw bytes over plain TCP get nothing that is not TLS.
	conn, err := net.DialTimeout("tcp", n1.c.id.raftAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte{1, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87})
	got, err := io.ReadAll(conn)
	if len(got) > 0 && got[0] != 0x15 { // 0x15: a TLS alert record
		t.Fatalf("plain TCP got %d bytes that are not a TLS alert: %x (%v)", len(got), got, err)
	}
	if after := n1.c.raft.raft.Stats()["term"]; after != termBefore {
		t.Fatalf("raft term changed from %s to %s", termBefore, after)
	}
}

// Claim 5: the join secret, and the tokens carrying it, never appear in the
// logs: not at init, join, token rotation, joins refused for a rotated or
// wrong token, or at debug level.
func TestSecurityJoinSecretNotLogged(t *testing.T) {
	log := &secLog{}
	nodes, res := secCluster(t, 2, "127.0.44.", log, nil)
	ctx := context.Background()
	admin := adminClient(t, res, nodes[1].c.APIAddress())
	rotated, err := admin.Token(ctx, &api.TokenRequest{Rotate: true})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	tok0, err := ParseJoinToken(res.Token)
	if err != nil {
		t.Fatal(err)
	}
	tok1, err := ParseJoinToken(rotated.Token)
	if err != nil {
		t.Fatal(err)
	}
	// Joins refused: the rotated-out token, and a wrong secret (logged at
	// the leader as a refusal).
	wrong := JoinToken{Fingerprint: tok0.Fingerprint, Secret: strings.Repeat("x", tokenSecretN)}.String()
	for i, tok := range []string{res.Token, wrong} {
		_, err := Start(ctx, Config{DataDir: t.TempDir(), NodeName: "refused", AdvertiseAddr: fmt.Sprintf("127.0.44.%d", 8+i),
			Join: nodes[0].c.APIAddress(), Token: tok, Logger: log.logger("refused")})
		if err == nil {
			t.Fatal("a join with a bad token succeeded")
		}
		if strings.Contains(err.Error(), tok0.Secret) || strings.Contains(err.Error(), tok1.Secret) {
			t.Fatalf("the join error repeats a secret: %v", err)
		}
	}
	third := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "n3"), NodeName: "n3", AdvertiseAddr: "127.0.44.3",
		Join: nodes[1].c.APIAddress(), Token: rotated.Token, Logger: log.logger("n3")})
	waitFor(t, 20*time.Second, "n3 Ready", func() (bool, string) {
		roles, seen := nodeTable(ctx, admin)
		return strings.HasSuffix(roles["n3"], "/True"), seen
	})
	_ = third
	out := log.String()
	for _, want := range []string{"join token rotated", "node admitted", "join refused"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the log lacks %q: the capture missed something\n%s", want, out)
		}
	}
	for what, secret := range map[string]string{
		"first secret": tok0.Secret, "rotated secret": tok1.Secret, "first token": res.Token, "rotated token": rotated.Token,
	} {
		if i := strings.Index(out, secret); i >= 0 {
			t.Fatalf("the %s appears in the log: ...%s...", what, out[max(0, i-200):min(len(out), i+100)])
		}
	}
	t.Logf("%d log lines checked", strings.Count(out, "\n"))
}

// Claim 6: everything in a node's data directory is owner-only (files 0600,
// directories 0700) after init, join and a raft snapshot: keys, the gossip
// key, the node identity, raft's log and snapshots (which hold the CA key).
func TestSecurityDataDirOwnerOnly(t *testing.T) {
	log := &secLog{}
	nodes, _ := secCluster(t, 2, "127.0.45.", log, nil)
	secOwnerOnly(t, nodes, "after init and join")
	for _, n := range nodes {
		// A node that joined a moment ago may still apply its configuration.
		waitFor(t, 10*time.Second, "a snapshot on "+n.cfg.NodeName, func() (bool, string) {
			err := n.c.raft.raft.Snapshot().Error()
			return err == nil, fmt.Sprint(err)
		})
		snaps, _ := filepath.Glob(filepath.Join(n.cfg.DataDir, "raft/snapshots/*/state.bin"))
		if len(snaps) == 0 {
			t.Fatalf("%s: no raft snapshot on disk", n.cfg.NodeName)
		}
	}
	secOwnerOnly(t, nodes, "after a snapshot")
}

// secOwnerOnly checks that everything in the nodes' data directories is
// owner-only.
func secOwnerOnly(t *testing.T, nodes []*testNode, when string) {
	t.Helper()
	for _, n := range nodes {
		dir := n.cfg.DataDir
		for _, want := range []string{"tls/node.key", "tls/node.crt", "tls/ca.crt", "gossip.key", "node.json", "raft/raft.db"} {
			if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
				t.Fatalf("%s: %v", n.cfg.NodeName, err)
			}
		}
		checked := 0
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			want := fs.FileMode(0o600)
			if d.IsDir() {
				want = 0o700
			}
			if info.Mode().Perm() != want {
				t.Errorf("%s %s: mode %v, want %v", when, path, info.Mode().Perm(), want)
			}
			checked++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s, %s: %d entries owner-only", when, n.cfg.NodeName, checked)
	}
}

// Claim 7: node certificates are renewed before they expire, without a
// restart: here they live 20 s and are renewed at half their life; every
// node's served certificate changes, the cluster keeps working past the
// first certificates' expiry, the renewed certificate is on disk, and a
// node restarted after that expiry rejoins with it.
func TestSecurityCertificatesRenewedBeforeExpiry(t *testing.T) {
	log := &secLog{}
	const validity = 20 * time.Second
	nodes, res := secCluster(t, 3, "127.0.46.", log, func(c *Config) {
		c.NodeCertValidity = validity
		c.CertRenewFraction = 0.5
	})
	ctx := context.Background()
	served := func(n *testNode) (*x509.Certificate, error) {
		conn, err := tls.Dial("tcp", n.c.APIAddress(), secTLS(t, res.AdminCert, res.AdminKey, res.CACert, n.c.id.AdvertiseAddr))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	first := map[string]*x509.Certificate{}
	var firstExpiry time.Time
	for _, n := range nodes {
		cert, err := served(n)
		if err != nil {
			t.Fatal(err)
		}
		if life := cert.NotAfter.Sub(cert.NotBefore); life > validity+validity/5 {
			t.Fatalf("%s serves a certificate valid for %v, want about %v", n.cfg.NodeName, life, validity)
		}
		first[n.cfg.NodeName] = cert
		if cert.NotAfter.After(firstExpiry) {
			firstExpiry = cert.NotAfter
		}
	}
	for _, n := range nodes {
		waitFor(t, validity, n.cfg.NodeName+" serves a renewed certificate", func() (bool, string) {
			cert, err := served(n)
			if err != nil {
				return false, err.Error()
			}
			old := first[n.cfg.NodeName]
			return cert.SerialNumber.Cmp(old.SerialNumber) != 0 && cert.NotAfter.After(old.NotAfter),
				fmt.Sprintf("serial %x, expires %s", cert.SerialNumber, cert.NotAfter)
		})
	}
	// Past the first certificates' expiry, writes still go through a
	// follower to the leader and reach every replica.
	admin := adminClient(t, res, nodes[2].c.APIAddress())
	i := 0
	waitFor(t, validity+10*time.Second, "a write replicated after the first certificates expired", func() (bool, string) {
		i++
		name := fmt.Sprintf("s%d", i)
		if _, err := admin.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
			Metadata: &api.ObjectMeta{Name: name}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})}}); err != nil {
			return false, "apply: " + err.Error()
		}
		if !time.Now().After(firstExpiry.Add(time.Second)) {
			return false, "the first certificates are still valid"
		}
		for _, n := range nodes {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := n.c.State().WaitIndex(wctx, nodes[0].c.State().Index())
			cancel()
			if err != nil || n.c.State().Get("Service", "default", name) == nil {
				return false, fmt.Sprintf("%s lacks %s (%v)", n.cfg.NodeName, name, err)
			}
		}
		return true, ""
	})
	// On disk: the certificate served, with its key.
	for _, n := range nodes {
		creds, err := loadCredentials(n.cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := creds.Certificate()
		if err != nil {
			t.Fatalf("%s: renewed credentials on disk: %v", n.cfg.NodeName, err)
		}
		if pair.Leaf.SerialNumber.Cmp(first[n.cfg.NodeName].SerialNumber) == 0 {
			t.Fatalf("%s still has its first certificate on disk", n.cfg.NodeName)
		}
		if NodeIDOf(pair.Leaf) != n.c.id.ID {
			t.Fatalf("%s: renewed certificate carries node ID %q, want %q", n.cfg.NodeName, NodeIDOf(pair.Leaf), n.c.id.ID)
		}
	}
	// A restart after the first certificates expired: the node comes back
	// with its renewed certificate over new raft and API connections.
	n3 := nodes[2]
	n3.stop()
	n3 = startTestNode(t, Config{DataDir: n3.cfg.DataDir, AdvertiseAddr: n3.cfg.AdvertiseAddr, Logger: log.logger("n3"),
		NodeCertValidity: validity, CertRenewFraction: 0.5})
	if _, err := admin.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
		Metadata: &api.ObjectMeta{Name: "after-restart"}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})}}); err == nil {
		t.Log("written through the restarted n3")
	}
	leaderClient := adminClient(t, res, nodes[0].c.APIAddress())
	if _, err := leaderClient.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
		Metadata: &api.ObjectMeta{Name: "for-n3"}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})}}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	waitFor(t, 20*time.Second, "the restarted n3 replicates again", func() (bool, string) {
		return n3.c.State().Get("Service", "default", "for-n3") != nil, fmt.Sprintf("n3 at index %d", n3.c.State().Index())
	})
	if lines := log.lines("certificate renewal failed"); len(lines) > 0 {
		t.Logf("renewals that failed and were retried:\n%s", strings.Join(lines, "\n"))
	}
}

// Administrator certificates can be issued beyond the one --init wrote
// (`shoal admin-cert`), by administrators only, through any node.
func TestSecurityAdminCertificateIssued(t *testing.T) {
	log := &secLog{}
	nodes, res := secCluster(t, 2, "127.0.49.", log, nil)
	ctx := context.Background()
	follower := nodes[1]
	if follower.c.isLeader() {
		follower = nodes[0]
	}
	host := follower.c.id.AdvertiseAddr
	dial := func(certPEM, keyPEM []byte) *grpc.ClientConn {
		cfg := secTLS(t, certPEM, keyPEM, res.CACert, host)
		cfg.NextProtos = []string{"h2"}
		cc, err := grpc.NewClient(follower.c.APIAddress(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	certPEM, keyPEM, caPEM, err := RequestAdminCertificate(ctx, dial(res.AdminCert, res.AdminKey), "alice", time.Hour)
	if err != nil {
		t.Fatalf("issue through a follower: %v", err)
	}
	if !bytes.Equal(caPEM, res.CACert) {
		t.Fatal("the response names another CA")
	}
	cert := pkiTestParseCert(t, certPEM)
	if name, isNode, isAdmin := PeerIdentity(cert); name != "alice" || isNode || !isAdmin {
		t.Fatalf("issued certificate: %q node %v admin %v", name, isNode, isAdmin)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life > time.Hour+10*time.Minute || life < time.Hour {
		t.Fatalf("issued certificate lives %v, want 1h", life)
	}
	if _, err := api.NewShoalClient(dial(certPEM, keyPEM)).List(ctx, &api.ListRequest{Kind: "Node"}); err != nil {
		t.Fatalf("the new certificate does not work: %v", err)
	}
	// A node's certificate is not an administrator's.
	creds, err := loadCredentials(follower.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := RequestAdminCertificate(ctx, dial(creds.CertPEM, creds.KeyPEM), "mallory", time.Hour); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a node asked for an admin certificate: want PermissionDenied, got %v", err)
	}
	if _, _, _, err := RequestAdminCertificate(ctx, dial(res.AdminCert, res.AdminKey), "bob", 100*365*24*time.Hour); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a century-long certificate: want InvalidArgument, got %v", err)
	}
	if len(log.lines("admin certificate issued", "admin=alice", "by=admin")) == 0 {
		t.Fatalf("the issue is not logged:\n%s", log.String())
	}
}

// Raft refuses a revoked peer in both directions: as a client of this
// node's raft server, and as the server this node dials.
func TestSecurityRevokedPeerRefusedBothWays(t *testing.T) {
	ca := pkiTestCA(t, "both-ways")
	node := func(id, name string) NodeCredentials {
		keyPEM, csr, err := NewNodeKey(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := ca.SignNodeID(csr, id, name, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return NodeCredentials{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
	}
	log := &secLog{}
	self, removed, other := node("id-1", "n1"), node("id-4", "n4"), node("id-2", "n2")
	live, err := newLiveTLS(self, log.logger("n1"))
	if err != nil {
		t.Fatal(err)
	}
	live.setRevoked(&storepb.ClusterSecrets{RevokedNodes: []*storepb.RevokedNode{{NodeId: "id-4", Name: "n4", RevokedUnixNano: time.Now().UnixNano()}}})
	self.live = live
	must := tlsTestMust(t)
	for _, tc := range []struct {
		name           string
		server, client *tls.Config
		refused        bool
	}{
		{"n2 dials n1 (control)", must(PeerServerTLS(self)), must(PeerClientTLS(other)), false},
		{"n4 dials n1", must(PeerServerTLS(self)), must(PeerClientTLS(removed)), true},
		{"n1 dials n2 (control)", must(PeerServerTLS(other)), must(PeerClientTLS(self)), false},
		{"n1 dials n4", must(PeerServerTLS(removed)), must(PeerClientTLS(self)), true},
		{"n4 calls n1's API", must(APIServerTLS(self)), must(NodeClientTLS(removed)), true},
		{"n1 calls n4's API", must(APIServerTLS(removed)), must(NodeClientTLS(self)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tlsTestHandshake(t, tc.server, tc.client)
			failed := res.serverErr != nil || res.clientErr != nil
			if failed != tc.refused {
				t.Fatalf("refused %v, want %v; %v", failed, tc.refused, res)
			}
			if tc.refused && !strings.Contains(res.String(), "removed from the cluster") {
				t.Fatalf("the refusal does not say why: %v", res)
			}
		})
	}
}

// The revocation list refuses certificates by node ID, and certificates
// from before IDs were written into them by name, when they were issued
// before the revocation.
func TestSecurityRevokedSetCheck(t *testing.T) {
	ca := pkiTestCA(t, "revoke-test")
	sign := func(id, name string, notBefore time.Time) *x509.Certificate {
		_, csr, err := NewNodeKey(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := ca.signNodeWindow(csr, id, name, nil, notBefore, notBefore.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return pkiTestParseCert(t, certPEM)
	}
	now := time.Now()
	set := newRevokedSet([]*storepb.RevokedNode{{NodeId: "id-4", Name: "n4", RevokedUnixNano: now.UnixNano()}})
	adminPEM, _, err := ca.IssueAdmin("n4", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cert    *x509.Certificate
		revoked bool
	}{
		{"the revoked ID", sign("id-4", "n4", now.Add(-time.Minute)), true},
		{"the revoked ID, issued after", sign("id-4", "n4", now.Add(time.Minute)), true},
		{"another ID, same name", sign("id-5", "n4", now.Add(-time.Minute)), false},
		{"no ID, the revoked name, issued before", sign("", "n4", now.Add(-time.Minute)), true},
		{"no ID, the revoked name, issued after", sign("", "n4", now.Add(time.Minute)), false},
		{"no ID, another name", sign("", "n5", now.Add(-time.Minute)), false},
		{"an admin of the revoked name", pkiTestParseCert(t, adminPEM), false},
	} {
		err := set.check(tc.cert)
		if (err != nil) != tc.revoked {
			t.Errorf("%s: check = %v, want revoked %v", tc.name, err, tc.revoked)
		}
		if err != nil && !errors.Is(err, ErrRevoked) {
			t.Errorf("%s: error %v does not wrap ErrRevoked", tc.name, err)
		}
	}
	var none *revokedSet
	if err := none.check(sign("id-4", "n4", now)); err != nil {
		t.Errorf("an empty list refuses: %v", err)
	}

	// Administrators: by name, the certificates valid from before the
	// latest revocation of the name.
	admin := func(name string, notBefore time.Time) *x509.Certificate {
		certPEM, _, err := ca.issueAdminWindow(name, notBefore, notBefore.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return pkiTestParseCert(t, certPEM)
	}
	admins := newRevokedSet(nil).withAdmins([]*storepb.RevokedAdmin{
		{Name: "alice", RevokedUnixNano: now.Add(-time.Hour).UnixNano()},
		{Name: "alice", RevokedUnixNano: now.UnixNano()},
		{Name: "carol", RevokedUnixNano: now.Add(-time.Hour).UnixNano()},
	})
	for _, tc := range []struct {
		name    string
		cert    *x509.Certificate
		revoked bool
	}{
		{"alice, from before the revocation", admin("alice", now.Add(-time.Minute)), true},
		{"alice, from between two revocations", admin("alice", now.Add(-30*time.Minute)), true},
		{"alice, from after the revocation", admin("alice", now.Add(time.Second)), false},
		{"carol, from after her revocation", admin("carol", now.Add(-30*time.Minute)), false},
		{"bob, never revoked", admin("bob", now.Add(-time.Minute)), false},
		{"a node named alice", sign("id-9", "alice", now.Add(-time.Minute)), false},
		{"a node named alice, without an ID", sign("", "alice", now.Add(-time.Minute)), false},
	} {
		err := admins.check(tc.cert)
		if (err != nil) != tc.revoked {
			t.Errorf("%s: check = %v, want revoked %v", tc.name, err, tc.revoked)
		}
		if err != nil && !errors.Is(err, ErrAdminRevoked) {
			t.Errorf("%s: error %v does not wrap ErrAdminRevoked", tc.name, err)
		}
	}
}

// Claim 1 continued: `shoal admin-cert revoke NAME` makes every node
// refuse the certificates issued to NAME so far, over open connections
// from their next call and at the handshake of new ones, also on a node
// outside the replicas; a certificate issued to NAME afterwards works;
// nobody can revoke the name they call with.
func TestSecurityAdminCertificateRevoked(t *testing.T) {
	log := &secLog{}
	nodes, res := secCluster(t, 3, "127.0.52.", log, func(c *Config) { c.MaxReplicas = 1 })
	ctx := context.Background()
	dial := func(n *testNode, certPEM, keyPEM []byte) *grpc.ClientConn {
		cfg := secTLS(t, certPEM, keyPEM, res.CACert, n.c.id.AdvertiseAddr)
		cfg.NextProtos = []string{"h2"}
		cc, err := grpc.NewClient(n.c.APIAddress(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	var replica, outside *testNode
	for _, n := range nodes {
		if n.c.isLeader() {
			replica = n
		}
	}
	admin := api.NewShoalClient(dial(replica, res.AdminCert, res.AdminKey))
	waitFor(t, 30*time.Second, "two nodes outside the replicas", func() (bool, string) {
		roles, seen := nodeTable(ctx, admin)
		l, v, nv, _ := countRoles(roles)
		return l == 1 && v == 1 && nv == 0 && len(roles) == 3, seen
	})
	for _, n := range nodes {
		if n != replica && outside == nil {
			outside = n
		}
	}
	aliceCert, aliceKey, _, err := RequestAdminCertificate(ctx, dial(outside, res.AdminCert, res.AdminKey), "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Connections alice opened before the revocation, on both nodes.
	open := map[*testNode]api.ShoalClient{}
	for _, n := range []*testNode{replica, outside} {
		open[n] = api.NewShoalClient(dial(n, aliceCert, aliceKey))
		if _, err := open[n].List(ctx, &api.ListRequest{Kind: "Node"}); err != nil {
			t.Fatalf("alice's certificate before the revocation, via %s: %v", n.cfg.NodeName, err)
		}
	}
	// Alice cannot revoke herself.
	_, err = api.NewAdminClient(dial(outside, aliceCert, aliceKey)).RevokeCertificates(ctx, &api.AdminRevokeRequest{Name: "alice"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "lock you out") {
		t.Fatalf("alice revoking her own name: %v; want FailedPrecondition", err)
	}
	// The init admin revokes alice, through the node outside the replicas.
	if _, err := api.NewAdminClient(dial(outside, res.AdminCert, res.AdminKey)).RevokeCertificates(ctx, &api.AdminRevokeRequest{Name: "alice"}); err != nil {
		t.Fatalf("revoke alice: %v", err)
	}
	for _, n := range []*testNode{replica, outside} {
		waitFor(t, 10*time.Second, "alice's open connection refused via "+n.cfg.NodeName, func() (bool, string) {
			_, err := open[n].List(ctx, &api.ListRequest{Kind: "Node"})
			return status.Code(err) == codes.PermissionDenied && strings.Contains(err.Error(), "shoal admin-cert revoke"), fmt.Sprint(err)
		})
		if _, err := api.NewShoalClient(dial(n, aliceCert, aliceKey)).List(ctx, &api.ListRequest{Kind: "Node"}); err == nil {
			t.Fatalf("a new connection with alice's revoked certificate was served by %s", n.cfg.NodeName)
		}
	}
	// A certificate issued to alice now works, everywhere.
	newCert, newKey, _, err := RequestAdminCertificate(ctx, dial(outside, res.AdminCert, res.AdminKey), "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{replica, outside} {
		if _, err := api.NewShoalClient(dial(n, newCert, newKey)).List(ctx, &api.ListRequest{Kind: "Node"}); err != nil {
			t.Fatalf("alice's certificate issued after the revocation, via %s: %v", n.cfg.NodeName, err)
		}
	}
	if len(log.lines("admin certificates revoked", "admin=alice", "by=admin")) == 0 {
		t.Fatalf("the revocation is not logged:\n%s", log.String())
	}
}

// A renewal interrupted by a crash is finished, or undone, at the next
// start: the key and certificate on disk always belong together.
func TestSecurityRenewalSurvivesCrash(t *testing.T) {
	ca := pkiTestCA(t, "crash-test")
	creds := func(name string) (certPEM, keyPEM []byte) {
		keyPEM, csr, err := NewNodeKey(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err = ca.SignNodeID(csr, "id-1", name, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return certPEM, keyPEM
	}
	oldCert, oldKey := creds("n1")
	newCert, newKey := creds("n1")
	write := func(t *testing.T, files map[string][]byte) string {
		dir := t.TempDir()
		for name, data := range files {
			if err := WriteSecretFile(filepath.Join(dir, name), data); err != nil {
				t.Fatal(err)
			}
		}
		if err := WriteSecretFile(filepath.Join(dir, "tls/ca.crt"), ca.CertPEM); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, tc := range []struct {
		name     string
		files    map[string][]byte
		wantCert []byte
	}{
		{"crash after the new key", map[string][]byte{nodeCertFile: oldCert, nodeKeyFile: oldKey, nodeKeyNextFile: newKey}, oldCert},
		{"crash after the new certificate", map[string][]byte{nodeCertFile: newCert, nodeKeyFile: oldKey, nodeKeyNextFile: newKey}, newCert},
		{"no crash", map[string][]byte{nodeCertFile: newCert, nodeKeyFile: newKey}, newCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := write(t, tc.files)
			c, err := loadCredentials(dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Certificate(); err != nil {
				t.Fatalf("credentials after the crash do not belong together: %v", err)
			}
			if !bytes.Equal(c.CertPEM, tc.wantCert) {
				t.Fatal("not the expected certificate")
			}
			if _, err := os.Stat(filepath.Join(dir, nodeKeyNextFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s left behind: %v", nodeKeyNextFile, err)
			}
		})
	}
	// A renewal writes both, owner-only.
	dir := write(t, map[string][]byte{nodeCertFile: oldCert, nodeKeyFile: oldKey})
	if err := saveRenewedCredentials(dir, newCert, newKey); err != nil {
		t.Fatal(err)
	}
	c, err := loadCredentials(dir)
	if err != nil || !bytes.Equal(c.CertPEM, newCert) || !bytes.Equal(c.KeyPEM, newKey) {
		t.Fatalf("renewed credentials not on disk: %v", err)
	}
	for _, f := range []string{nodeCertFile, nodeKeyFile} {
		if info, err := os.Stat(filepath.Join(dir, f)); err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, info.Mode(), err)
		}
	}
}

// A certificate issued to an administrator name after its revocation is
// valid only from after it, in the whole seconds certificates keep, also
// when the usual backdating would reach back to the revocation's second.
func TestSecurityAdminIssuedAfterRevocation(t *testing.T) {
	ca := pkiTestCA(t, "admin-after-revocation")
	_, csr, err := NewNodeKey("alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, revokedAt := range []time.Time{
		// Just after the start of the second the backdated NotBefore falls
		// in: written in whole seconds, it would be before the revocation.
		now.Add(-pkiBackdate).Truncate(time.Second).Add(time.Nanosecond),
		now.Add(-pkiBackdate - 500*time.Millisecond),
		now.Add(-pkiBackdate + 300*time.Millisecond),
		now.Add(-time.Minute),
		now.Add(-time.Millisecond),
	} {
		certPEM, err := ca.SignAdmin(csr, "alice", time.Hour, revokedAt)
		if err != nil {
			t.Fatal(err)
		}
		cert := pkiTestParseCert(t, certPEM)
		set := newRevokedSet(nil).withAdmins([]*storepb.RevokedAdmin{{Name: "alice", RevokedUnixNano: revokedAt.UnixNano()}})
		if err := set.check(cert); err != nil {
			t.Errorf("revoked %v before now: the certificate issued after it (valid from %v) is refused: %v", now.Sub(revokedAt), cert.NotBefore, err)
		}
	}
}
