package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
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

// formCluster starts n agents on 127.0.0.11.. with the default ports: the
// first with --init, the others with the --join line it printed; it waits
// until `shoal node ls` shows all of them Ready with the expected voters.
func formCluster(t *testing.T, n, wantVoters int) *lab {
	t.Helper()
	l := newLab(t)
	_, join := l.initCluster("node1", "127.0.0.11")
	for i := 2; i <= n; i++ {
		l.start(fmt.Sprintf("node%d", i), fmt.Sprintf("127.0.0.%d", 10+i), join...)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d Ready nodes, one leader, %d voters", n, wantVoters), func() (bool, string) {
		out, err := l.shoal("node", "ls")
		if err != nil {
			return false, out
		}
		ready, leaders, voters, _ := countNodes(parseNodeLs(out))
		return ready == n && leaders == 1 && voters == wantVoters, out
	})
	return l
}

func TestThreeAgentsFormOneCluster(t *testing.T) {
	l := formCluster(t, 3, 3)
	// Every node answers the API and sees the same cluster (reads come
	// from each node's replica: it may trail the leader by an instant).
	for _, a := range l.agents {
		waitFor(t, 5*time.Second, "node ls on "+a.name+": 3 Ready, 1 leader, 3 voters", func() (bool, string) {
			out, err := l.shoal("--server", a.apiAddr(), "node", "ls")
			if err != nil {
				return false, out
			}
			ready, leaders, voters, _ := countNodes(parseNodeLs(out))
			return ready == 3 && leaders == 1 && voters == 3, out
		})
	}
	out, err := l.shoal("node", "ls", "-o", "json")
	if err != nil {
		t.Fatalf("node ls -o json: %v\n%s", err, out)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				RaftRole   string
				Addresses  []struct{ Type, Address string }
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Items) != 3 {
		t.Fatalf("node ls -o json: %v\n%s", err, out)
	}
	for _, n := range list.Items {
		if n.Status.RaftRole == "" || len(n.Status.Addresses) == 0 || len(n.Status.Conditions) == 0 {
			t.Fatalf("node %s lacks status fields: %+v", n.Metadata.Name, n.Status)
		}
	}
}

func TestJoinWithBadTokenIsRefused(t *testing.T) {
	l := formCluster(t, 1, 1)
	first := l.agents[0]
	good := l.agentsJoinToken(t)
	parts := strings.Split(good, "-")
	fingerprint, secret := parts[2], parts[3]
	wrongCA := strings.Repeat("ab", 32)
	rotatedOut, err := l.shoal("token", "--rotate")
	if err != nil {
		t.Fatalf("token --rotate: %v\n%s", err, rotatedOut)
	}
	rotated := strings.TrimSpace(strings.SplitN(rotatedOut, "\n", 2)[0])
	if rotated == good || !strings.HasPrefix(rotated, "SHOAL-1-") {
		t.Fatalf("rotation printed %q", rotatedOut)
	}
	for _, tc := range []struct{ name, token, want string }{
		{"malformed", "SHOAL-1-nothex-short", "invalid join token"},
		{"wrong secret", "SHOAL-1-" + fingerprint + "-" + strings.Repeat("z", len(secret)), "secret"},
		{"rotated", good, "secret"},
		{"other cluster's CA", "SHOAL-1-" + wrongCA + "-" + secret, "fingerprint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := l.start("intruder", "127.0.0.19", "--join", first.apiAddr(), "--token", tc.token)
			select {
			case <-a.exited:
			case <-time.After(40 * time.Second):
				t.Fatalf("agent with a %s token did not exit", tc.name)
			}
			if a.err == nil {
				t.Fatalf("agent with a %s token exited 0", tc.name)
			}
			log := a.logTail(5)
			if !strings.Contains(log, tc.want) {
				t.Fatalf("agent with a %s token: want a message about %q, got:\n%s", tc.name, tc.want, log)
			}
			os.RemoveAll(a.dataDir)
			os.Remove(a.logPath)
		})
	}
	out, _ := l.shoal("node", "ls")
	if strings.Contains(out, "intruder") {
		t.Fatalf("a refused node appears:\n%s", out)
	}
	// The rotated token admits.
	l.start("node2", "127.0.0.12", "--join", first.apiAddr(), "--token", rotated)
	waitFor(t, 30*time.Second, "node2 joined with the rotated token", func() (bool, string) {
		out, _ := l.shoal("node", "ls")
		return parseNodeLs(out)["node2"][0] == "Ready", out
	})
}

func (l *lab) agentsJoinToken(t *testing.T) string {
	t.Helper()
	out, err := l.shoal("token")
	if err != nil {
		t.Fatalf("shoal token: %v\n%s", err, out)
	}
	return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
}

func TestAPIRefusesCallersWithoutCertificate(t *testing.T) {
	l := formCluster(t, 1, 1)
	addr := l.agents[0].apiAddr()
	// HTTP without a client certificate.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	resp, err := hc.Get("https://" + addr + "/v1/nodes")
	if err != nil {
		t.Fatalf("GET without certificate: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without certificate: status %d, body %s", resp.StatusCode, body)
	}
	// gRPC without a client certificate.
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = api.NewShoalClient(cc).List(ctx, &api.ListRequest{Kind: "Node"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC List without certificate: want Unauthenticated, got %v", err)
	}
	// /healthz answers anyone.
	resp, err = hc.Get("https://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestBadManifestsChangeNothing(t *testing.T) {
	l := formCluster(t, 1, 1)
	dir := t.TempDir()
	good := `apiVersion: v1
kind: Service
metadata:
  name: keep
spec:
  ports:
  - port: 80
`
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if out, err := l.shoal("apply", "-f", write("good.yaml", good)); err != nil {
		t.Fatalf("apply good: %v\n%s", err, out)
	}
	// The objects, not the list's resourceVersion: other writes (node
	// status) move that on.
	services := func() string {
		out, err := l.shoal("get", "svc", "-o", "json")
		if err != nil {
			t.Fatalf("get svc: %v\n%s", err, out)
		}
		var list struct{ Items []json.RawMessage }
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("get svc -o json: %v\n%s", err, out)
		}
		b, _ := json.Marshal(list.Items)
		return string(b)
	}
	before := services()
	for _, tc := range []struct{ name, manifest, want string }{
		{"unknown field", good + "---\n" + `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox
        imagePolicy: Always
`, "spec.template.spec.containers[0].imagePolicy"},
		{"missing required field", `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: c
`, "spec.containers[0].image"},
		{"bad yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x\n", "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := l.shoal("apply", "-f", write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.manifest))
			if err == nil {
				t.Fatalf("apply of a manifest with a %s succeeded:\n%s", tc.name, out)
			}
			if !strings.Contains(strings.ToLower(out), strings.ToLower(tc.want)) {
				t.Fatalf("apply of a manifest with a %s: want the error to name %q, got:\n%s", tc.name, tc.want, out)
			}
		})
	}
	if after := services(); before != after {
		t.Fatalf("store changed by refused manifests:\nbefore %s\nafter %s", before, after)
	}
	if out, _ := l.shoal("get", "deploy"); strings.Contains(out, "web") {
		t.Fatalf("a refused Deployment was stored:\n%s", out)
	}
}

func TestNothingLostWhenLeaderDiesAndAllRestart(t *testing.T) {
	l := formCluster(t, 3, 3)
	var docs []string
	for i := 0; i < 100; i++ {
		docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%03d\nspec:\n  selector: {app: a%d}\n  ports:\n  - port: %d\n", i, i, 1000+i))
	}
	manifest := filepath.Join(t.TempDir(), "hundred.yaml")
	os.WriteFile(manifest, []byte(strings.Join(docs, "---\n")), 0o600)
	if out, err := l.shoal("apply", "-f", manifest); err != nil {
		t.Fatalf("apply 100: %v\n%s", err, out)
	}
	// Kill -9 the leader.
	out, _ := l.shoal("node", "ls")
	var leader *agentProc
	for name, r := range parseNodeLs(out) {
		if r[1] == "leader" {
			for _, a := range l.agents {
				if a.name == name {
					leader = a
				}
			}
		}
	}
	if leader == nil {
		t.Fatalf("no leader in:\n%s", out)
	}
	leader.kill()
	killed := time.Now()
	var survivor *agentProc
	for _, a := range l.agents {
		if a != leader {
			survivor = a
			break
		}
	}
	extra := filepath.Join(t.TempDir(), "extra.yaml")
	os.WriteFile(extra, []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: after-kill\nspec:\n  ports:\n  - port: 80\n"), 0o600)
	for {
		out, err := l.shoal("--server", survivor.apiAddr(), "apply", "-f", extra)
		if err == nil {
			break
		}
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("no write accepted through %s within 5 s of killing leader %s: %v\n%s", survivor.name, leader.name, err, out)
		}
	}
	t.Logf("a write was accepted %v after kill -9 of the leader", time.Since(killed).Round(time.Millisecond))

	// Restart every agent from its data directory alone.
	for _, a := range l.agents {
		a.kill()
	}
	for _, a := range l.agents {
		a.restart(l.clientConf)
	}
	var reference string
	for i, a := range l.agents {
		waitFor(t, 60*time.Second, "101 services, identical, on "+a.name, func() (bool, string) {
			out, err := l.shoal("--server", a.apiAddr(), "get", "svc", "-o", "json")
			if err != nil {
				return false, out
			}
			var list struct{ Items []json.RawMessage }
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				return false, out
			}
			if len(list.Items) != 101 {
				return false, fmt.Sprintf("%d services", len(list.Items))
			}
			items, _ := json.Marshal(list.Items)
			if i == 0 {
				reference = string(items)
				return true, ""
			}
			return string(items) == reference, "differs from " + l.agents[0].name
		})
	}
}

func TestFourAgentsReplaceDeadVoter(t *testing.T) {
	l := formCluster(t, 4, 3)
	out, _ := l.shoal("node", "ls")
	rows := parseNodeLs(out)
	_, _, voters, nonvoters := countNodes(rows)
	if voters != 3 || nonvoters != 1 {
		t.Fatalf("4 nodes: want 3 voters and 1 non-voter:\n%s", out)
	}
	var victim *agentProc
	var spare string
	for _, a := range l.agents {
		switch rows[a.name][1] {
		case "voter":
			victim = a
		case "nonvoter":
			spare = a.name
		}
	}
	victim.kill()
	killed := time.Now()
	survivor := l.agents[0]
	if survivor == victim {
		survivor = l.agents[1]
	}
	waitFor(t, 30*time.Second, "non-voter "+spare+" promoted after kill -9 of voter "+victim.name, func() (bool, string) {
		out, err := l.shoal("--server", survivor.apiAddr(), "node", "ls")
		if err != nil {
			return false, out
		}
		rows := parseNodeLs(out)
		return rows[spare][1] == "voter" || rows[spare][1] == "leader", out
	})
	t.Logf("promoted %v after the kill", time.Since(killed).Round(time.Millisecond))

	// node rm refuses a live node and removes the dead one.
	if out, err := l.shoal("--server", survivor.apiAddr(), "node", "rm", survivor.name); err == nil {
		t.Fatalf("node rm of live node %s succeeded:\n%s", survivor.name, out)
	}
	if out, err := l.shoal("--server", survivor.apiAddr(), "node", "rm", victim.name); err != nil {
		t.Fatalf("node rm %s: %v\n%s", victim.name, err, out)
	}
	waitFor(t, 10*time.Second, victim.name+" gone from node ls", func() (bool, string) {
		out, err := l.shoal("--server", survivor.apiAddr(), "node", "ls")
		rows := parseNodeLs(out)
		_, present := rows[victim.name]
		return err == nil && !present && len(rows) == 3, out
	})
}

func TestFiveAgentsFiveVoters(t *testing.T) {
	formCluster(t, 5, 5)
}
