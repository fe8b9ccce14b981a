package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// putServices writes n services named prefix-NNN, one per call, spread over
// the clients, and returns name -> resourceVersion as acknowledged.
func putServices(t *testing.T, clients []api.ShoalClient, prefix string, n int) map[string]string {
	t.Helper()
	type result struct {
		name, rv string
		err      error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		cl := clients[i%len(clients)]
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req := &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
				Metadata: &api.ObjectMeta{Name: name},
				Spec:     &api.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []*api.ServicePort{{Port: 80}}},
			})}}
			for {
				out, err := cl.Apply(ctx, req)
				if err == nil {
					results <- result{name: name, rv: out.Objects[0].GetService().GetMetadata().GetResourceVersion()}
					return
				}
				// Not acknowledged (a leader change on a busy machine):
				// the same object again is the same write.
				if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
					results <- result{name: name, err: err}
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	want := map[string]string{}
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil {
			t.Fatalf("apply %s: %v", r.name, r.err)
		}
		want[r.name] = r.rv
	}
	return want
}

// maxRV is the highest resourceVersion of a name -> resourceVersion map.
func maxRV(t *testing.T, m map[string]string) uint64 {
	t.Helper()
	var top uint64
	for name, rv := range m {
		v, err := strconv.ParseUint(rv, 10, 64)
		if err != nil {
			t.Fatalf("%s: resourceVersion %q: %v", name, rv, err)
		}
		top = max(top, v)
	}
	return top
}

// sameServices reports whether the services a consistent read through cl
// returns include every one of want at the same resourceVersion, and says
// what differs.
func sameServices(ctx context.Context, cl api.ShoalClient, want map[string]string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := cl.List(ctx, &api.ListRequest{Kind: "Service", Consistent: true})
	if err != nil {
		return false, err.Error()
	}
	got := map[string]string{}
	for _, o := range list.Items {
		m := o.GetService().GetMetadata()
		got[m.GetName()] = m.GetResourceVersion()
	}
	var diffs []string
	for name, rv := range want {
		if got[name] != rv {
			diffs = append(diffs, fmt.Sprintf("%s: want rv %s, got %q", name, rv, got[name]))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		return false, fmt.Sprintf("%d services read, %d differ: %s", len(got), len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; "))
	}
	return true, ""
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitVoters waits until the node table read through cl shows n Ready
// nodes, one leader and v voters.
func waitVoters(t *testing.T, cl api.ShoalClient, n, v int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d ready nodes, 1 leader, %d voters", n, v), func() (bool, string) {
		roles, seen := nodeTable(context.Background(), cl)
		l, voters, _, r := countRoles(roles)
		return len(roles) == n && l == 1 && voters == v && r == n, seen
	})
}

// Save on a 3-node cluster, restore into a new data directory on another
// address, start it: the same objects at the same resourceVersions, with
// the old admin credentials and join token.
func TestSnapshotSaveRestoreKeepsEveryObject(t *testing.T) {
	nodes, res := testCluster(t, 3, "127.0.61.")
	ctx := context.Background()
	var clients []api.ShoalClient
	for _, n := range nodes {
		clients = append(clients, adminClient(t, res, n.c.APIAddress()))
	}
	waitVoters(t, clients[0], 3, 3)
	want := putServices(t, clients, "svc", 60)
	top := maxRV(t, want)

	// Through a follower (as far as it is one: leadership may move): it
	// relays the leader's snapshot.
	follower := 0
	for i, n := range nodes {
		if !n.c.isLeader() {
			follower = i
		}
	}
	path := filepath.Join(t.TempDir(), "backup.snap")
	hdr, err := SaveSnapshot(ctx, clients[follower], path)
	if err != nil {
		t.Fatalf("save through %s: %v", nodes[follower].cfg.NodeName, err)
	}
	t.Logf("saved through %s: index %d, %d objects, %d bytes, served by %s", nodes[follower].cfg.NodeName, hdr.Index, hdr.Objects, hdr.Size, hdr.Node)
	if hdr.Index < top || hdr.Objects < uint64(len(want)) || hdr.ClusterID != nodes[0].c.id.ClusterID || !strings.HasPrefix(hdr.Node, "n") {
		t.Fatalf("header %+v: want index >= %d, >= %d objects, cluster %s, served by a node of the cluster", hdr, top, len(want), nodes[0].c.id.ClusterID)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if _, err := VerifySnapshotFile(path); err != nil {
		t.Fatalf("verify: %v", err)
	}

	// The whole cluster is lost.
	for _, n := range nodes {
		n.stop()
	}
	dir := filepath.Join(t.TempDir(), "restored")
	rcfg := Config{DataDir: dir, NodeName: "restored", AdvertiseAddr: "127.0.61.9", Logger: discardLogger()}
	r, err := RestoreSnapshot(path, rcfg)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if r.NodeName != "restored" || r.Snapshot.Index != hdr.Index {
		t.Fatalf("restore result %+v", r)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored data directory: %v, mode %v; want 0700", err, fi.Mode())
	}
	// Not twice into the same directory; the refusal changes nothing.
	before, _ := os.ReadFile(filepath.Join(dir, "node.json"))
	if _, err := RestoreSnapshot(path, rcfg); err == nil || !strings.Contains(err.Error(), "already holds a node") {
		t.Fatalf("restore into a node's directory: want a refusal, got %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "node.json")); !bytes.Equal(before, after) {
		t.Fatal("a refused restore changed node.json")
	}

	n := startTestNode(t, Config{DataDir: dir, AdvertiseAddr: "127.0.61.9"})
	cl := adminClient(t, res, n.c.APIAddress()) // the old admin credentials
	waitFor(t, 20*time.Second, "the restored node serves every service at its resourceVersion", func() (bool, string) {
		return sameServices(ctx, cl, want)
	})
	if got := n.c.State().Secrets(); got.GetClusterId() != hdr.ClusterID || got.GetJoinSecret() == "" {
		t.Fatalf("restored secrets: cluster %q", got.GetClusterId())
	}
	out, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
		Metadata: &api.ObjectMeta{Name: "after-restore"}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})}})
	if err != nil {
		t.Fatalf("write after restore: %v", err)
	}
	if rv, _ := strconv.ParseUint(out.Objects[0].GetService().Metadata.ResourceVersion, 10, 64); rv <= hdr.Index {
		t.Fatalf("new write at resourceVersion %d, not after the snapshot's index %d", rv, hdr.Index)
	}
	want["after-restore"] = out.Objects[0].GetService().Metadata.ResourceVersion

	// Another node joins with the old token and gets everything.
	j := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "joiner"), NodeName: "joiner", AdvertiseAddr: "127.0.61.10",
		Join: n.c.APIAddress(), Token: res.Token})
	waitFor(t, 20*time.Second, "the joined node holds every service", func() (bool, string) {
		objs, _ := j.c.State().List("Service", "", "")
		return len(objs) == len(want), fmt.Sprintf("%d of %d services", len(objs), len(want))
	})
	// The nodes of the snapshot that did not come back stop being Ready.
	waitFor(t, 20*time.Second, "restored and joiner Ready, n1-n3 NotReady", func() (bool, string) {
		roles, seen := nodeTable(ctx, cl)
		ok := strings.HasSuffix(roles["restored"], "/True") && strings.HasSuffix(roles["joiner"], "/True")
		for _, old := range []string{"n1", "n2", "n3"} {
			ok = ok && roles[old] == RoleNone+"/False"
		}
		return ok, seen
	})
}

// A file that is not intact is refused, and so is a data directory that is
// not empty; nothing is created or changed.
func TestSnapshotRestoreRefusesBadInput(t *testing.T) {
	n := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "n1"), NodeName: "n1", AdvertiseAddr: "127.0.63.1", Init: true})
	res := n.c.InitResult()
	cl := adminClient(t, res, n.c.APIAddress())
	ctx := context.Background()
	putServices(t, []api.ShoalClient{cl}, "svc", 5)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.snap")
	hdr, err := SaveSnapshot(ctx, cl, good)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	// Only administrators: a node's own certificate is refused, and no
	// file is written.
	nodeClient, err := n.c.peers.client(n.c.APIAddress())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SaveSnapshot(ctx, nodeClient, filepath.Join(dir, "by-node.snap")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("snapshot with a node certificate: want PermissionDenied, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "by-node.snap")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused save left a file: %v", err)
	}

	flip := bytes.Clone(data)
	flip[snapshotHeaderSize+len(flip[snapshotHeaderSize:])/2] ^= 0x40
	other := *hdr
	other.Index++
	block, err := encodeSnapshotHeader(&other)
	if err != nil {
		t.Fatal(err)
	}
	reindexed := append(block, data[snapshotHeaderSize:]...)
	format2 := bytes.Replace(bytes.Clone(data), []byte(snapshotMagic+"1"), []byte(snapshotMagic+"2"), 1)
	for _, tc := range []struct {
		name    string
		data    []byte
		corrupt bool
		want    string
	}{
		{"flipped bit", flip, true, "SHA-256"},
		{"truncated", data[:len(data)-10], true, "truncated"},
		{"only part of the header", data[:100], true, "shorter than the header"},
		{"empty", nil, true, "shorter than the header"},
		{"trailing bytes", append(bytes.Clone(data), "more"...), true, "after the"},
		{"not a snapshot", bytes.Repeat([]byte("hello\n"), 1000), true, "not a shoal snapshot"},
		{"header disagrees with content", reindexed, true, "header says"},
		{"other format", format2, false, "format 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.snap")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, verr := VerifySnapshotFile(path)
			if verr == nil || !strings.Contains(verr.Error(), tc.want) || errors.Is(verr, ErrSnapshotCorrupt) != tc.corrupt {
				t.Fatalf("verify: want an error about %q (corrupt: %v), got %v", tc.want, tc.corrupt, verr)
			}
			parent := t.TempDir()
			target := filepath.Join(parent, "data")
			_, err := RestoreSnapshot(path, Config{DataDir: target, NodeName: "r", AdvertiseAddr: "127.0.63.9", Logger: discardLogger()})
			if err == nil || err.Error() != verr.Error() {
				t.Fatalf("restore: want %v, got %v", verr, err)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Fatalf("a refused restore left %v", entries)
			}
			t.Logf("refused: %v", err)
		})
	}

	// Data directories that are not empty.
	holdsNode := n.cfg.DataDir
	notEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(notEmpty, "something"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{{holdsNode, "already holds a node"}, {notEmpty, "not empty"}} {
		before := listTree(t, tc.dir)
		_, err := RestoreSnapshot(good, Config{DataDir: tc.dir, NodeName: "r", AdvertiseAddr: "127.0.63.9", Logger: discardLogger()})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("restore into %s: want an error about %q, got %v", tc.dir, tc.want, err)
		}
		if after := listTree(t, tc.dir); after != before {
			t.Fatalf("a refused restore changed %s:\n%s\n---\n%s", tc.dir, before, after)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(tc.dir), ".*restore*")); len(left) > 0 {
			t.Fatalf("staging directories left: %v", left)
		}
	}
	// An empty directory is fine.
	empty := t.TempDir()
	if _, err := RestoreSnapshot(good, Config{DataDir: empty, NodeName: "r", AdvertiseAddr: "127.0.63.9", Logger: discardLogger()}); err != nil {
		t.Fatalf("restore into an empty directory: %v", err)
	}

	// --force-new-cluster needs a node to recover.
	_, err = Start(ctx, Config{DataDir: t.TempDir(), AdvertiseAddr: "127.0.63.8", ForceNewCluster: true, Logger: discardLogger()})
	if err == nil || !strings.Contains(err.Error(), "holds no node") {
		t.Fatalf("--force-new-cluster on an empty directory: want a refusal, got %v", err)
	}
}

// listTree describes every file under dir with its size and time.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %v\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Two of three voters are lost: the survivor cannot write, and restarted
// with --force-new-cluster it leads alone with every object it
// acknowledged, takes writes, and admits new nodes. The flag is one-shot.
// The lost two, started again with their old data, elect a leader between
// themselves (a majority of the old configuration), but the new cluster
// has revoked them and is not disturbed.
func TestForceNewClusterOnSurvivor(t *testing.T) {
	nodes, res := testCluster(t, 3, "127.0.62.")
	ctx := context.Background()
	var clients []api.ShoalClient
	for _, n := range nodes {
		clients = append(clients, adminClient(t, res, n.c.APIAddress()))
	}
	waitVoters(t, clients[0], 3, 3)
	want := putServices(t, clients, "svc", 40)
	top := maxRV(t, want)

	si := -1
	for i, n := range nodes {
		if !n.c.isLeader() {
			si = i
		}
	}
	survivor := nodes[si]
	survivorName := survivor.cfg.NodeName
	// A write is acknowledged once a majority has it; the survivor must be
	// in that majority for this test to expect it.
	waitFor(t, 10*time.Second, "the survivor has applied every write", func() (bool, string) {
		idx := survivor.c.State().Index()
		return idx >= top, fmt.Sprintf("survivor at %d, last write at %d", idx, top)
	})
	var lost []string
	var lostCfgs []Config
	for i, n := range nodes {
		if i != si {
			lost = append(lost, n.cfg.NodeName)
			lostCfgs = append(lostCfgs, Config{DataDir: n.cfg.DataDir, AdvertiseAddr: n.cfg.AdvertiseAddr})
			n.stop()
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := clients[si].Apply(wctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
		Metadata: &api.ObjectMeta{Name: "no-quorum"}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})}})
	cancel()
	if err == nil {
		t.Fatal("the survivor of a lost majority accepted a write")
	}
	t.Logf("without a majority: %v", err)

	survivor.stop()
	cfg := Config{DataDir: survivor.cfg.DataDir, AdvertiseAddr: survivor.cfg.AdvertiseAddr, ForceNewCluster: true}
	survivor = startTestNode(t, cfg)
	nodes[si] = survivor
	cl := adminClient(t, res, survivor.c.APIAddress())
	waitFor(t, 20*time.Second, "the survivor leads alone", func() (bool, string) {
		servers, _ := survivor.c.raftServers()
		return survivor.c.isLeaderReady() && len(servers) == 1, fmt.Sprintf("leader ready %v, servers %v", survivor.c.isLeaderReady(), servers)
	})
	if ok, diff := sameServices(ctx, cl, want); !ok {
		t.Fatalf("after --force-new-cluster: %s", diff)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, forceMarkerName)); err != nil {
		t.Fatalf("no record of --force-new-cluster: %v", err)
	}
	out, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
		Metadata: &api.ObjectMeta{Name: "after-force"}, Spec: &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}}})}})
	if err != nil {
		t.Fatalf("write after --force-new-cluster: %v", err)
	}
	want["after-force"] = out.Objects[0].GetService().Metadata.ResourceVersion

	// A new node joins with the token; the leader adds it to raft.
	j := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "joiner"), NodeName: "joiner", AdvertiseAddr: "127.0.62.4",
		Join: survivor.c.APIAddress(), Token: res.Token})
	waitFor(t, 20*time.Second, "the joined node is a replica with every service", func() (bool, string) {
		servers, _ := survivor.c.raftServers()
		objs, _ := j.c.State().List("Service", "", "")
		return len(servers) == 2 && len(objs) == len(want), fmt.Sprintf("raft servers %v, %d of %d services on the joiner", servers, len(objs), len(want))
	})
	waitFor(t, 20*time.Second, "the lost nodes NotReady, survivor and joiner Ready", func() (bool, string) {
		roles, seen := nodeTable(ctx, cl)
		ok := strings.HasSuffix(roles[survivorName], "/True") && strings.HasSuffix(roles["joiner"], "/True")
		for _, name := range lost {
			ok = ok && strings.HasSuffix(roles[name], "/False")
		}
		return ok, seen
	})

	// The lost voters come back with their old data.
	waitFor(t, 10*time.Second, "the lost nodes on the replicated revocation list", func() (bool, string) {
		revoked := newRevokedSet(survivor.c.State().Secrets().GetRevokedNodes())
		n := 0
		for _, l := range lostCfgs {
			id, _, err := loadIdentity(l.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			if revoked.nodeRevoked(id.ID) {
				n++
			}
		}
		return n == len(lostCfgs), fmt.Sprintf("%d of %d revoked", n, len(lostCfgs))
	})
	var island []*testNode
	for _, l := range lostCfgs {
		island = append(island, startTestNode(t, l))
	}
	// They ask the survivor whether they were removed, learn it, and stop
	// (else they would elect a leader between themselves: a second
	// cluster). Meanwhile the survivor stays the leader of its own.
	waitFor(t, 20*time.Second, "the old nodes fence themselves, the survivor undisturbed", func() (bool, string) {
		servers, _ := survivor.c.raftServers()
		if !survivor.c.isLeaderReady() || len(servers) != 2 {
			t.Fatalf("the old nodes disturbed the new cluster: leader ready %v, servers %v", survivor.c.isLeaderReady(), servers)
		}
		fenced := 0
		for _, n := range island {
			if n.c.Fenced() != "" {
				fenced++
			}
		}
		return fenced == len(island), fmt.Sprintf("%d of %d fenced", fenced, len(island))
	})
	for i, n := range island {
		_, err := adminClient(t, res, n.c.APIAddress()).List(ctx, &api.ListRequest{Kind: "Service"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "was removed from the cluster") ||
			!strings.Contains(err.Error(), "Wipe its data directory") {
			t.Fatalf("a read from old node %s: %v; want FailedPrecondition with the reason", lost[i], err)
		}
		if n.c.isLeader() {
			t.Fatalf("fenced old node %s leads", lost[i])
		}
	}
	if ok, diff := sameServices(ctx, cl, want); !ok {
		t.Fatalf("with the old nodes back: %s", diff)
	}
	for _, n := range island {
		n.stop()
	}

	// The flag left on the command line: a restart ignores it and keeps
	// the joined node in the raft configuration.
	survivor.stop()
	survivor = startTestNode(t, cfg)
	waitFor(t, 20*time.Second, "the survivor leads again, the joiner still in raft", func() (bool, string) {
		servers, _ := survivor.c.raftServers()
		return survivor.c.isLeaderReady() && len(servers) == 2, fmt.Sprintf("leader ready %v, servers %v", survivor.c.isLeaderReady(), servers)
	})
	cl = adminClient(t, res, survivor.c.APIAddress())
	waitFor(t, 10*time.Second, "every service after the second restart", func() (bool, string) {
		return sameServices(ctx, cl, want)
	})
}
