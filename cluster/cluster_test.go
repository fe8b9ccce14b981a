package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/shoalproj/shoal/api"
)

// testNode is one in-process node on its own loopback address.
type testNode struct {
	cfg    Config
	c      *Cluster
	cancel context.CancelFunc
	done   chan error
}

// startTestNode starts a node and serves its API; t.Cleanup stops it.
func startTestNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("SHOAL_TEST_LOG") != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", cfg.AdvertiseAddr)
		}
	}
	if cfg.Stabilization == 0 {
		cfg.Stabilization = 3 * time.Second
	}
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start node %s: %v", cfg.AdvertiseAddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{cfg: cfg, c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- c.ServeAPI(ctx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) stop() {
	if n.c == nil {
		return
	}
	n.cancel()
	<-n.done
	n.c.Close()
	n.c = nil
}

// adminClient is a gRPC client with the admin credentials of --init.
func adminClient(t *testing.T, res *InitResult, addr string) api.ShoalClient {
	t.Helper()
	cert, err := tls.X509KeyPair(res.AdminCert, res.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(res.CACert)
	host := strings.Split(addr, ":")[0]
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS13,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api.NewShoalClient(cc)
}

// waitFor polls cond until it holds or the deadline passes, then fails
// with what it last saw.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v; last seen: %s", what, timeout, last)
}

func nodeTable(ctx context.Context, cl api.ShoalClient) (map[string]string, string) {
	list, err := cl.List(ctx, &api.ListRequest{Kind: "Node"})
	if err != nil {
		return nil, err.Error()
	}
	roles := map[string]string{}
	var b strings.Builder
	for _, o := range list.Items {
		n := o.GetNode()
		ready := ""
		for _, c := range n.GetStatus().GetConditions() {
			if c.Type == "Ready" {
				ready = c.Status
			}
		}
		roles[n.Metadata.Name] = n.Status.RaftRole + "/" + ready
		fmt.Fprintf(&b, "%s=%s/%s ", n.Metadata.Name, n.Status.RaftRole, ready)
	}
	return roles, b.String()
}

func countRoles(roles map[string]string) (leaders, voters, nonvoters, ready int) {
	for _, r := range roles {
		switch {
		case strings.HasPrefix(r, RoleLeader):
			leaders++
			voters++
		case strings.HasPrefix(r, RoleVoter):
			voters++
		case strings.HasPrefix(r, RoleNonvoter):
			nonvoters++
		}
		if strings.HasSuffix(r, "/True") {
			ready++
		}
	}
	return
}

func testCluster(t *testing.T, n int, base string) ([]*testNode, *InitResult) {
	t.Helper()
	dir := t.TempDir()
	var nodes []*testNode
	first := startTestNode(t, Config{DataDir: filepath.Join(dir, "n1"), NodeName: "n1", AdvertiseAddr: base + "1", Init: true})
	res := first.c.InitResult()
	if res == nil {
		t.Fatal("no init result")
	}
	nodes = append(nodes, first)
	for i := 2; i <= n; i++ {
		nodes = append(nodes, startTestNode(t, Config{
			DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i)), NodeName: fmt.Sprintf("n%d", i),
			AdvertiseAddr: fmt.Sprintf("%s%d", base, i), Join: first.c.APIAddress(), Token: res.Token,
		}))
	}
	return nodes, res
}

func TestClusterFormsAndReplicates(t *testing.T) {
	nodes, res := testCluster(t, 3, "127.0.1.")
	ctx := context.Background()
	cl := adminClient(t, res, nodes[2].c.APIAddress())
	waitFor(t, 20*time.Second, "3 ready nodes, 1 leader, 3 voters", func() (bool, string) {
		roles, seen := nodeTable(ctx, cl)
		l, v, _, r := countRoles(roles)
		return len(roles) == 3 && l == 1 && v == 3 && r == 3, seen
	})
	// A write through a follower is forwarded to the leader.
	pod := &api.Pod{Metadata: &api.ObjectMeta{Name: "p1"}, Spec: &api.PodSpec{Containers: []*api.Container{{Name: "c", Image: "busybox"}}}}
	out, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(pod)}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	rv := out.Objects[0].GetPod().Metadata.ResourceVersion
	// Every replica has it.
	for _, n := range nodes {
		c := adminClient(t, res, n.c.APIAddress())
		waitFor(t, 5*time.Second, "pod on "+n.cfg.NodeName, func() (bool, string) {
			o, err := c.Get(ctx, &api.GetRequest{Kind: "pod", Name: "p1"})
			if err != nil {
				return false, err.Error()
			}
			return o.GetPod().Metadata.ResourceVersion == rv, o.GetPod().Metadata.ResourceVersion
		})
	}
	// A stale resourceVersion is a conflict.
	pod.Metadata.ResourceVersion = "1"
	pod.Spec.Containers[0].Image = "busybox:2"
	if _, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(pod)}}); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("stale write: want conflict, got %v", err)
	}
	// A consistent read through a follower.
	if _, err := cl.Get(ctx, &api.GetRequest{Kind: "pods", Name: "p1", Consistent: true}); err != nil {
		t.Fatalf("consistent read: %v", err)
	}
}
