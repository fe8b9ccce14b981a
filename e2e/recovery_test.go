package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// serviceVersions lists the services through one node's API as
// name -> resourceVersion.
func serviceVersions(l *lab, server string) (map[string]string, string) {
	out, err := l.shoal("--server", server, "get", "svc", "-o", "json")
	if err != nil {
		return nil, fmt.Sprintf("get svc through %s: %v\n%s", server, err, out)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name, ResourceVersion string }
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Sprintf("get svc through %s: %v\n%s", server, err, out)
	}
	got := map[string]string{}
	for _, it := range list.Items {
		got[it.Metadata.Name] = it.Metadata.ResourceVersion
	}
	return got, ""
}

// hasServices reports whether got holds every service of want at the same
// resourceVersion (and, with exact, nothing else), and says what differs.
func hasServices(got, want map[string]string, exact bool) (bool, string) {
	var diffs []string
	for name, rv := range want {
		if got[name] != rv {
			diffs = append(diffs, fmt.Sprintf("%s: want rv %s, got %q", name, rv, got[name]))
		}
	}
	if exact {
		for name := range got {
			if _, ok := want[name]; !ok {
				diffs = append(diffs, name+": not expected")
			}
		}
	}
	sort.Strings(diffs)
	if len(diffs) == 0 {
		return true, ""
	}
	return false, fmt.Sprintf("%d services, %d differ: %s", len(got), len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; "))
}

// Disaster recovery through the CLI with real agents: a backup, the loss of
// two of three voters, --force-new-cluster on the survivor, a node joining
// again, and a restore of the backup into a new data directory.
func TestRecoveryThroughTheCLI(t *testing.T) {
	l := newLab(t)
	_, join := l.initCluster("rec1", "127.0.0.71")
	token := join[3]
	l.start("rec2", "127.0.0.72", join...)
	l.start("rec3", "127.0.0.73", join...)
	waitFor(t, 60*time.Second, "3 Ready nodes, one leader, 3 voters", func() (bool, string) {
		out, err := l.shoal("node", "ls")
		if err != nil {
			return false, out
		}
		ready, leaders, voters, _ := countNodes(parseNodeLs(out))
		return ready == 3 && leaders == 1 && voters == 3, out
	})

	var docs []string
	for i := 0; i < 50; i++ {
		docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%03d\nspec:\n  selector: {app: a%d}\n  ports:\n  - port: %d\n", i, i, 1000+i))
	}
	manifest := filepath.Join(t.TempDir(), "fifty.yaml")
	if err := os.WriteFile(manifest, []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := l.shoal("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// The services as the cluster acknowledged them (nothing changes a
	// service after its creation).
	var want map[string]string
	waitFor(t, 10*time.Second, "50 services listed", func() (bool, string) {
		got, seen := serviceVersions(l, l.agents[0].apiAddr())
		want = got
		return len(got) == 50, fmt.Sprintf("%d services %s", len(got), seen)
	})

	backup := filepath.Join(t.TempDir(), "backup.snap")
	out, err := l.shoal("snapshot", "save", backup)
	if err != nil {
		t.Fatalf("snapshot save: %v\n%s", err, out)
	}
	t.Logf("snapshot save: %s", strings.TrimSpace(out))
	m := regexp.MustCompile(`at index (\d+), (\d+) objects, (\d+) bytes`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("snapshot save printed no index, objects and bytes:\n%s", out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if out, err := l.shoal("snapshot", "inspect", backup); err != nil || !strings.Contains(out, "Index:      "+m[1]) {
		t.Fatalf("snapshot inspect: %v\n%s", err, out)
	}

	// Keep a follower: it must have applied every write before the others
	// die (an acknowledged write is on a majority, not on every node).
	out, _ = l.shoal("node", "ls")
	rows := parseNodeLs(out)
	var survivor *agentProc
	for _, a := range l.agents {
		if rows[a.name][1] == "voter" && survivor == nil {
			survivor = a
		}
	}
	if survivor == nil {
		t.Fatalf("no follower voter in:\n%s", out)
	}
	waitFor(t, 10*time.Second, survivor.name+" holds every service", func() (bool, string) {
		got, seen := serviceVersions(l, survivor.apiAddr())
		ok, diff := hasServices(got, want, true)
		return ok, diff + seen
	})
	var lost []*agentProc
	for _, a := range l.agents {
		if a != survivor {
			a.kill()
			if err := os.RemoveAll(a.dataDir); err != nil {
				t.Fatal(err)
			}
			lost = append(lost, a)
		}
	}
	t.Logf("kill -9 %s and %s, their data deleted; %s survives", lost[0].name, lost[1].name, survivor.name)

	survivor.kill()
	survivor.args = []string{"--force-new-cluster"}
	survivor.run(l.clientConf)
	waitFor(t, 60*time.Second, survivor.name+" leads with every service", func() (bool, string) {
		out, err := l.shoal("--server", survivor.apiAddr(), "node", "ls")
		if err != nil || parseNodeLs(out)[survivor.name][1] != "leader" {
			return false, out
		}
		got, seen := serviceVersions(l, survivor.apiAddr())
		ok, diff := hasServices(got, want, true)
		return ok, diff + seen
	})
	if logs, _ := os.ReadFile(survivor.logPath); !strings.Contains(string(logs), "FORCE-NEW-CLUSTER") {
		t.Fatalf("the survivor's log does not say what --force-new-cluster did:\n%s", survivor.logTail(20))
	}
	extra := filepath.Join(t.TempDir(), "extra.yaml")
	if err := os.WriteFile(extra, []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: after-force\nspec:\n  ports:\n  - port: 80\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := l.shoal("--server", survivor.apiAddr(), "apply", "-f", extra); err != nil {
		t.Fatalf("write after --force-new-cluster: %v\n%s", err, out)
	}

	// A lost node, wiped, joins again with the same token.
	back := lost[0]
	back.args = []string{"--join", survivor.apiAddr(), "--token", token}
	back.run(l.clientConf)
	waitFor(t, 60*time.Second, back.name+" joined again; "+lost[1].name+" NotReady", func() (bool, string) {
		out, err := l.shoal("--server", survivor.apiAddr(), "node", "ls")
		rows := parseNodeLs(out)
		return err == nil && rows[survivor.name][0] == "Ready" && rows[back.name][0] == "Ready" && rows[lost[1].name][0] == "NotReady", out
	})
	waitFor(t, 30*time.Second, back.name+" holds every service", func() (bool, string) {
		got, seen := serviceVersions(l, back.apiAddr())
		ok, diff := hasServices(got, want, false)
		return ok && got["after-force"] != "", diff + seen
	})

	// A damaged copy of the backup is refused and creates nothing.
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-20] ^= 1
	damaged := filepath.Join(t.TempDir(), "damaged.snap")
	if err := os.WriteFile(damaged, data, 0o600); err != nil {
		t.Fatal(err)
	}
	refusedDir := filepath.Join(l.dir, "refused")
	if out, err := l.shoal("snapshot", "restore", damaged, "--data-dir", refusedDir, "--advertise-addr", "127.0.0.74"); err == nil || !strings.Contains(out, "corrupt") {
		t.Fatalf("restore of a damaged file: want a refusal, got %v\n%s", err, out)
	}
	if _, err := os.Stat(refusedDir); !os.IsNotExist(err) {
		t.Fatalf("a refused restore created %s: %v", refusedDir, err)
	}

	// The whole cluster is gone; the backup brings it back elsewhere.
	for _, a := range l.agents {
		a.kill()
	}
	restoredDir := filepath.Join(l.dir, "restored")
	out, err = l.shoal("snapshot", "restore", backup, "--data-dir", restoredDir, "--node-name", "restored", "--advertise-addr", "127.0.0.74")
	if err != nil {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	t.Logf("snapshot restore: %s", strings.TrimSpace(out))
	restored := l.start("restored", "127.0.0.74")
	waitFor(t, 60*time.Second, "the restored node leads with every service of the backup", func() (bool, string) {
		out, err := l.shoal("--server", restored.apiAddr(), "node", "ls")
		if err != nil || parseNodeLs(out)["restored"][1] != "leader" {
			return false, out
		}
		got, seen := serviceVersions(l, restored.apiAddr())
		ok, diff := hasServices(got, want, true)
		return ok, diff + seen
	})
	if out, err := l.shoal("--server", restored.apiAddr(), "apply", "-f", extra); err != nil {
		t.Fatalf("write after restore: %v\n%s", err, out)
	}
}
