package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

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
	// Each node leases its own pod subnet.
	waitFor(t, 10*time.Second, "a distinct pod subnet on every node", func() (bool, string) {
		list, err := cl.List(ctx, &api.ListRequest{Kind: "Node"})
		if err != nil {
			return false, err.Error()
		}
		seen := map[string]bool{}
		var b strings.Builder
		for _, o := range list.Items {
			cidr := o.GetNode().GetSpec().GetPodCidr()
			fmt.Fprintf(&b, "%s=%s ", o.GetNode().Metadata.Name, cidr)
			if cidr == "" || seen[cidr] {
				return false, b.String()
			}
			seen[cidr] = true
		}
		return len(seen) == 3, b.String()
	})
	for _, n := range nodes {
		if st := n.c.State().Settings(); st.GetPodCidr() != DefaultPodCIDR || st.GetServiceCidr() != DefaultServiceCIDR {
			t.Fatalf("node %s has cluster settings %v", n.cfg.NodeName, st)
		}
	}
	// A write through a follower is forwarded to the leader.
	// Bound already, so that the leader's scheduler leaves it as it is.
	pod := &api.Pod{Metadata: &api.ObjectMeta{Name: "p1"}, Spec: &api.PodSpec{NodeName: "elsewhere", Containers: []*api.Container{{Name: "c", Image: "busybox"}}}}
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

func TestFiveNodesHaveFiveVoters(t *testing.T) {
	nodes, res := testCluster(t, 5, "127.0.2.")
	cl := adminClient(t, res, nodes[4].c.APIAddress())
	waitFor(t, 30*time.Second, "5 ready nodes, 5 voters", func() (bool, string) {
		roles, seen := nodeTable(context.Background(), cl)
		l, v, _, r := countRoles(roles)
		return len(roles) == 5 && l == 1 && v == 5 && r == 5, seen
	})
}

func TestFourNodesPromoteNonvoterWhenVoterDies(t *testing.T) {
	nodes, res := testCluster(t, 4, "127.0.3.")
	ctx := context.Background()
	cl := adminClient(t, res, nodes[0].c.APIAddress())
	waitFor(t, 30*time.Second, "4 ready nodes, 3 voters, 1 non-voter", func() (bool, string) {
		roles, seen := nodeTable(ctx, cl)
		l, v, nv, r := countRoles(roles)
		return len(roles) == 4 && l == 1 && v == 3 && nv == 1 && r == 4, seen
	})
	roles, _ := nodeTable(ctx, cl)
	// Stop a voter that is not the leader; the non-voter must take its place.
	var victim, spare *testNode
	for _, n := range nodes {
		switch {
		case strings.HasPrefix(roles[n.cfg.NodeName], RoleVoter) && victim == nil:
			victim = n
		case strings.HasPrefix(roles[n.cfg.NodeName], RoleNonvoter):
			spare = n
		}
	}
	victim.stop()
	waitFor(t, 30*time.Second, "non-voter "+spare.cfg.NodeName+" promoted after "+victim.cfg.NodeName+" died", func() (bool, string) {
		roles, seen := nodeTable(ctx, cl)
		_, v, _, _ := countRoles(roles)
		return strings.HasPrefix(roles[spare.cfg.NodeName], RoleVoter) && v == 3 &&
			strings.HasPrefix(roles[victim.cfg.NodeName], RoleNone+"/False"), seen
	})
}

func TestLeaderLossAndFullRestartKeepEverything(t *testing.T) {
	nodes, res := testCluster(t, 3, "127.0.4.")
	ctx := context.Background()
	clients := make([]api.ShoalClient, len(nodes))
	for i, n := range nodes {
		clients[i] = adminClient(t, res, n.c.APIAddress())
	}
	waitFor(t, 20*time.Second, "3 voters", func() (bool, string) {
		roles, seen := nodeTable(ctx, clients[0])
		_, v, _, r := countRoles(roles)
		return v == 3 && r == 3, seen
	})
	var objs []*api.Object
	for i := 0; i < 100; i++ {
		objs = append(objs, api.Wrap(&api.Service{
			Metadata: &api.ObjectMeta{Name: fmt.Sprintf("svc-%03d", i)},
			Spec:     &api.ServiceSpec{Selector: map[string]string{"app": "x"}, Ports: []*api.ServicePort{{Port: int32(1000 + i)}}},
		}))
	}
	// Several writes at once: one object per call, concurrently.
	errs := make(chan error, len(objs))
	for i, o := range objs {
		go func() {
			_, err := clients[i%3].Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{o}})
			errs <- err
		}()
	}
	for range objs {
		if err := <-errs; err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	// Kill the leader; a write through a survivor succeeds soon after.
	leader := -1
	for i, n := range nodes {
		if n.c.isLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	nodes[leader].stop()
	killed := time.Now()
	survivor := clients[(leader+1)%3]
	extra := api.Wrap(&api.Service{Metadata: &api.ObjectMeta{Name: "after-kill"},
		Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := survivor.Apply(wctx, &api.ApplyRequest{Objects: []*api.Object{extra}})
		cancel()
		if err == nil {
			break
		}
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("no write accepted within 5 s of killing the leader: %v", err)
		}
	}
	t.Logf("write accepted %v after the leader was killed", time.Since(killed).Round(time.Millisecond))

	// Restart everything from the data directories alone.
	for _, n := range nodes {
		n.stop()
	}
	for i, n := range nodes {
		nodes[i] = startTestNode(t, Config{DataDir: n.cfg.DataDir, AdvertiseAddr: n.cfg.AdvertiseAddr})
	}
	for i, n := range nodes {
		cl := adminClient(t, res, n.c.APIAddress())
		waitFor(t, 20*time.Second, fmt.Sprintf("101 services on node %d after restart", i+1), func() (bool, string) {
			list, err := cl.List(ctx, &api.ListRequest{Kind: "Service", Consistent: i == 0})
			if err != nil {
				return false, err.Error()
			}
			// The API may answer through another replica while this
			// node's own store catches up: both must have them all.
			local, _ := n.c.State().List("Service", "", "")
			return len(list.Items) == 101 && len(local) == 101, fmt.Sprintf("%d services through the API, %d in the node's store", len(list.Items), len(local))
		})
	}
	// Identical on every node.
	var want []string
	for i, n := range nodes {
		list, idx := n.c.State().List("Service", "", "")
		var got []string
		for _, r := range list {
			j, _ := api.MarshalJSON(r)
			got = append(got, string(j))
		}
		if i == 0 {
			want = got
			continue
		}
		for k := range max(len(got), len(want)) {
			if k >= len(got) || k >= len(want) || got[k] != want[k] {
				t.Fatalf("node %d's services (index %d) differ from node 1's at %d:\n%v\n%v", i+1, idx, k, got[min(k, len(got)-1)], want[min(k, len(want)-1)])
			}
		}
	}
}

func TestJoinRefusesBadTokens(t *testing.T) {
	nodes, res := testCluster(t, 1, "127.0.5.")
	ctx := context.Background()
	cl := adminClient(t, res, nodes[0].c.APIAddress())
	waitFor(t, 10*time.Second, "1 node", func() (bool, string) {
		roles, seen := nodeTable(ctx, cl)
		return len(roles) == 1, seen
	})
	tok, _ := ParseJoinToken(res.Token)
	otherCA, _ := NewCA("other")
	rotated, err := cl.Token(ctx, &api.TokenRequest{Rotate: true})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if rotated.Token == res.Token {
		t.Fatal("rotation kept the token")
	}
	for _, tc := range []struct{ name, token, want string }{
		{"malformed", "SHOAL-1-abc", "invalid join token"},
		{"wrong secret", JoinToken{Fingerprint: tok.Fingerprint, Secret: strings.Repeat("a", 32)}.String(), "secret"},
		{"rotated", res.Token, "secret"},
		{"other CA", JoinToken{Fingerprint: Fingerprint(otherCA.Cert.Raw), Secret: tok.Secret}.String(), "fingerprint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(ctx, Config{DataDir: t.TempDir(), NodeName: "intruder", AdvertiseAddr: "127.0.5.9",
				Join: nodes[0].c.APIAddress(), Token: tc.token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error about %q, got %v", tc.want, err)
			}
			t.Logf("refused: %v", err)
		})
	}
	// The current token works.
	n2 := startTestNode(t, Config{DataDir: t.TempDir(), NodeName: "n2", AdvertiseAddr: "127.0.5.2",
		Join: nodes[0].c.APIAddress(), Token: rotated.Token})
	_ = n2
	waitFor(t, 10*time.Second, "2 nodes, no intruder", func() (bool, string) {
		roles, seen := nodeTable(ctx, cl)
		_, ok := roles["intruder"]
		return len(roles) == 2 && !ok, seen
	})
}

// A node beyond the bounded replicas holds no log, yet its API answers
// reads, watches and writes through a replica.
func TestNodeBeyondReplicasServesThroughReplica(t *testing.T) {
	dir := t.TempDir()
	first := startTestNode(t, Config{DataDir: filepath.Join(dir, "n1"), NodeName: "n1", AdvertiseAddr: "127.0.6.1", Init: true, MaxReplicas: 1})
	res := first.c.InitResult()
	second := startTestNode(t, Config{DataDir: filepath.Join(dir, "n2"), NodeName: "n2", AdvertiseAddr: "127.0.6.2",
		Join: first.c.APIAddress(), Token: res.Token, MaxReplicas: 1})
	ctx := context.Background()
	cl := adminClient(t, res, second.c.APIAddress())
	waitFor(t, 20*time.Second, "n2 with role none, both Ready, read through n2", func() (bool, string) {
		roles, seen := nodeTable(ctx, cl)
		return roles["n1"] == RoleLeader+"/True" && roles["n2"] == RoleNone+"/True", seen
	})
	if idx := second.c.State().Index(); idx != 0 {
		t.Fatalf("n2 holds a log up to %d; want none", idx)
	}
	svc := &api.Service{Metadata: &api.ObjectMeta{Name: "via-n2"}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := cl.Watch(wctx, &api.WatchRequest{Kind: "Service"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(svc)}}); err != nil {
		t.Fatalf("write through n2: %v", err)
	}
	ev, err := w.Recv()
	if err != nil || ev.Type != "ADDED" || ev.Object.GetService().GetMetadata().GetName() != "via-n2" {
		t.Fatalf("watch through n2: %v %v", ev, err)
	}
	if _, err := cl.Get(ctx, &api.GetRequest{Kind: "svc", Name: "via-n2"}); err != nil {
		t.Fatalf("read through n2: %v", err)
	}
}

// Snapshots on real raft: a restarted node restores from its snapshot, a
// node joining after the log was compacted receives the snapshot, and a
// watch resumes from a resourceVersion without missing or repeating.
func TestSnapshotRestoreAndInstall(t *testing.T) {
	dir := t.TempDir()
	first := startTestNode(t, Config{DataDir: filepath.Join(dir, "n1"), NodeName: "n1", AdvertiseAddr: "127.0.7.1", Init: true, TrailingLogs: 5})
	res := first.c.InitResult()
	ctx := context.Background()
	cl := adminClient(t, res, first.c.APIAddress())
	put := func(name string) string {
		out, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
			Metadata: &api.ObjectMeta{Name: name}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})}})
		if err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
		return out.Objects[0].GetService().Metadata.ResourceVersion
	}
	for i := 0; i < 40; i++ {
		put(fmt.Sprintf("a-%02d", i))
	}
	if err := first.c.raft.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	mark := put("after-snapshot")
	w, err := cl.Watch(ctx, &api.WatchRequest{Kind: "Service", ResourceVersion: mark})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		put(fmt.Sprintf("b-%02d", i))
	}
	for i := 0; i < 10; i++ {
		ev, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ev.Object.GetService().Metadata.Name, fmt.Sprintf("b-%02d", i); got != want || ev.Type != "ADDED" {
			t.Fatalf("watch from %s: event %d is %s %s, want ADDED %s", mark, i, ev.Type, got, want)
		}
	}
	// A node joining now starts from the compacted log: it needs the snapshot.
	second := startTestNode(t, Config{DataDir: filepath.Join(dir, "n2"), NodeName: "n2", AdvertiseAddr: "127.0.7.2",
		Join: first.c.APIAddress(), Token: res.Token})
	waitFor(t, 20*time.Second, "n2 holds all 51 services", func() (bool, string) {
		objs, _ := second.c.State().List("Service", "", "")
		return len(objs) == 51, fmt.Sprintf("%d services", len(objs))
	})
	// Restart n1 from its data directory: snapshot plus the log after it.
	first.stop()
	first = startTestNode(t, Config{DataDir: filepath.Join(dir, "n1"), AdvertiseAddr: "127.0.7.1"})
	waitFor(t, 20*time.Second, "n1 restored 51 services", func() (bool, string) {
		objs, _ := first.c.State().List("Service", "", "")
		return len(objs) == 51, fmt.Sprintf("%d services", len(objs))
	})
	if first.c.State().Secrets() == nil {
		t.Fatal("cluster secrets lost across snapshot and restart")
	}
	// A watch from before the restart's snapshot must re-list.
	cl = adminClient(t, res, first.c.APIAddress())
	w, err = cl.Watch(ctx, &api.WatchRequest{Kind: "Service", ResourceVersion: "3"})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("watch from a compacted resourceVersion: want OutOfRange, got %v", err)
	}
}

// Through the API, a watch event's resourceVersion is where the watch
// resumes after it: changes that share a raft entry (one apply of several
// objects) carry index.seq until the last, so a watch broken between them
// neither misses nor repeats one; the current state a watch starts with
// carries a resourceVersion only on its last object.
func TestWatchResumesInsideEntry(t *testing.T) {
	n := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "n1"), NodeName: "n1", AdvertiseAddr: "127.0.7.9", Init: true})
	res := n.c.InitResult()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := adminClient(t, res, n.c.APIAddress())
	svc := func(name string) *api.Object {
		return api.Wrap(&api.Service{Metadata: &api.ObjectMeta{Name: name}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})
	}
	first, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{svc("s0")}})
	if err != nil {
		t.Fatal(err)
	}
	from := first.Objects[0].GetService().Metadata.ResourceVersion
	out, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{svc("s1"), svc("s2"), svc("s3")}})
	if err != nil {
		t.Fatal(err)
	}
	idx := out.Objects[0].GetService().Metadata.ResourceVersion
	// recv reads n events of a watch from rv, as "name@eventRV".
	recv := func(rv string, n int) []string {
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		w, err := cl.Watch(wctx, &api.WatchRequest{Kind: "Service", Namespace: "default", ResourceVersion: rv})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for range n {
			ev, err := w.Recv()
			if err != nil {
				t.Fatalf("watch from %q: after %q: %v", rv, got, err)
			}
			got = append(got, ev.Object.GetService().Metadata.Name+"@"+ev.ResourceVersion)
		}
		return got
	}
	all := recv(from, 3)
	want := []string{"s1@" + idx + ".1", "s2@" + idx + ".2", "s3@" + idx}
	if fmt.Sprint(all) != fmt.Sprint(want) {
		t.Fatalf("watch from %s: %q, want %q", from, all, want)
	}
	// Resume after each event, then write s4: the watch must go on with
	// exactly the rest.
	out4, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{svc("s4")}})
	if err != nil {
		t.Fatal(err)
	}
	s4 := "s4@" + out4.Objects[0].GetService().Metadata.ResourceVersion
	for i, ev := range all {
		rv := ev[strings.Index(ev, "@")+1:]
		rest := append(append([]string{}, all[i+1:]...), s4)
		if got := recv(rv, len(rest)); fmt.Sprint(got) != fmt.Sprint(rest) {
			t.Errorf("resumed from %s: %q, want %q", rv, got, rest)
		}
	}
	// A watch without a resourceVersion starts with the current state.
	initial := recv("", 5)
	for i, ev := range initial {
		rv := ev[strings.Index(ev, "@")+1:]
		if last := i == len(initial)-1; (rv == "") == last {
			t.Errorf("initial event %d of %d: %s (only the last one carries a resourceVersion)", i+1, len(initial), ev)
		}
	}
}

// A watch that asks for bookmarks gets, while quiet, a BOOKMARK with the
// position the stream has reached (writes elsewhere move it), and a watch
// resumed from it gets exactly what came after; one that did not ask gets
// none.
func TestWatchBookmarks(t *testing.T) {
	n := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "n1"), NodeName: "n1", AdvertiseAddr: "127.0.7.10", Init: true})
	res := n.c.InitResult()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := adminClient(t, res, n.c.APIAddress())
	svc := func(ns, name string) *api.Object {
		return api.Wrap(&api.Service{Metadata: &api.ObjectMeta{Namespace: ns, Name: name}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})
	}
	list, err := cl.List(ctx, &api.ListRequest{Kind: "Service", Namespace: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	watch := func(rv string, bookmarks bool) api.Shoal_WatchClient {
		w, err := cl.Watch(ctx, &api.WatchRequest{Kind: "Service", Namespace: "quiet", ResourceVersion: rv, AllowBookmarks: bookmarks})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	withMarks, without := watch(list.ResourceVersion, true), watch(list.ResourceVersion, false)
	var last string
	for i := range 3 {
		out, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{svc("default", fmt.Sprintf("busy-%d", i))}})
		if err != nil {
			t.Fatal(err)
		}
		last = out.Objects[0].GetService().Metadata.ResourceVersion
	}
	start := time.Now()
	ev, err := withMarks.Recv()
	// At the last write or later: the node writes too (its own status).
	mark, perr := ParseWatchPosition(ev.GetResourceVersion())
	lastPos, _ := ParseWatchPosition(last)
	if err != nil || ev.Type != "BOOKMARK" || ev.Object != nil || perr != nil || mark.Index < lastPos.Index {
		t.Fatalf("the quiet watch's first event: %v, %v; want a BOOKMARK at %s or later, without an object", ev, err, last)
	}
	if waited := time.Since(start); waited > watchBookmarkEvery+2*time.Second {
		t.Errorf("the bookmark came after %v (every %v)", waited, watchBookmarkEvery)
	}
	out, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{svc("quiet", "q")}})
	if err != nil {
		t.Fatal(err)
	}
	qrv := out.Objects[0].GetService().Metadata.ResourceVersion
	for name, w := range map[string]api.Shoal_WatchClient{"without bookmarks": without, "resumed from the bookmark": watch(ev.ResourceVersion, false)} {
		ev, err := w.Recv()
		if err != nil || ev.Type != "ADDED" || ev.Object.GetService().GetMetadata().GetName() != "q" || ev.ResourceVersion != qrv {
			t.Errorf("%s: first event %v, %v; want ADDED q at %s", name, ev, err, qrv)
		}
	}
}

// One port answers gRPC, HTTP/2 and HTTP/1.1: the mux hands each
// connection to the server of its protocol, with the caller's certificate.
func TestAPIPortServesEveryProtocol(t *testing.T) {
	n := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "n1"), NodeName: "n1", AdvertiseAddr: "127.0.8.1", Init: true})
	res := n.c.InitResult()
	ctx := context.Background()
	if _, err := adminClient(t, res, n.c.APIAddress()).Version(ctx, &api.VersionRequest{}); err != nil {
		t.Fatalf("gRPC: %v", err)
	}
	cert, _ := tls.X509KeyPair(res.AdminCert, res.AdminKey)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(res.CACert)
	for _, proto := range []string{"h2", "http/1.1"} {
		for _, withCert := range []bool{true, false} {
			cfg := &tls.Config{RootCAs: pool, NextProtos: []string{proto}}
			if withCert {
				cfg.Certificates = []tls.Certificate{cert}
			}
			tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: proto == "h2"}
			if proto != "h2" {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := 0; i < 2; i++ { // a second request on the same connection
				resp, err := hc.Get("https://" + n.c.APIAddress() + "/v1/version")
				if err != nil {
					t.Fatalf("%s: %v", proto, err)
				}
				resp.Body.Close()
				want := http.StatusOK
				if !withCert {
					want = http.StatusUnauthorized
				}
				if resp.StatusCode != want || (proto == "h2") != (resp.ProtoMajor == 2) {
					t.Fatalf("%s (certificate %v): %s %s", proto, withCert, resp.Proto, resp.Status)
				}
			}
			tr.CloseIdleConnections()
		}
	}
}

// Status writes are independent: a missing object fails alone.
func TestStatusWritesAreIndependent(t *testing.T) {
	n := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "n1"), NodeName: "n1", AdvertiseAddr: "127.0.8.2", Init: true})
	cl := adminClient(t, n.c.InitResult(), n.c.APIAddress())
	ctx := context.Background()
	pod := &api.Pod{Metadata: &api.ObjectMeta{Name: "p1"}, Spec: &api.PodSpec{Containers: []*api.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(pod)}}); err != nil {
		t.Fatal(err)
	}
	out, err := cl.Apply(ctx, &api.ApplyRequest{Status: true, Objects: []*api.Object{
		api.Wrap(&api.Pod{Metadata: &api.ObjectMeta{Name: "gone"}, Status: &api.PodStatus{Phase: "Running"}}),
		api.Wrap(&api.Pod{Metadata: &api.ObjectMeta{Name: "p1"}, Status: &api.PodStatus{Phase: "Running", PodIp: "10.244.0.9"}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Failures) != 1 || out.Failures[0].Index != 0 || codes.Code(out.Failures[0].Code) != codes.NotFound {
		t.Fatalf("failures %v, want one NotFound at 0", out.Failures)
	}
	got, err := cl.Get(ctx, &api.GetRequest{Kind: "Pod", Name: "p1"})
	if err != nil || got.GetPod().GetStatus().GetPodIp() != "10.244.0.9" || got.GetPod().GetSpec().GetContainers()[0].GetImage() != "busybox" {
		t.Fatalf("p1 after a status write: %v %v", got, err)
	}
}

// An --init that cannot finish (its port is taken) leaves nothing that
// stops the next --init on the same data directory.
func TestInitAfterFailedInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	ln, err := net.Listen("tcp", "127.0.8.3:7443")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), Config{DataDir: dir, NodeName: "n1", AdvertiseAddr: "127.0.8.3", Init: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln.Close()
	if err == nil || !strings.Contains(err.Error(), "7443") {
		t.Fatalf("init on a taken port: want an error naming it, got %v", err)
	}
	n := startTestNode(t, Config{DataDir: dir, NodeName: "n1", AdvertiseAddr: "127.0.8.3", Init: true})
	if n.c.InitResult() == nil || n.c.State().Secrets() == nil {
		t.Fatal("second --init did not create the cluster")
	}
}
