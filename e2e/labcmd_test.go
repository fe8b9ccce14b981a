package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nslab "github.com/shoalproj/shoal/e2e/lab"
)

// endpointsJSON is the part of `shoal get endpoints NAME -o json` tests read.
type endpointsJSON struct {
	Subsets []struct {
		Addresses []struct {
			IP       string `json:"ip"`
			NodeName string `json:"nodeName"`
		} `json:"addresses"`
		NotReadyAddresses []struct {
			IP string `json:"ip"`
		} `json:"notReadyAddresses"`
		Ports []struct {
			Port int `json:"port"`
		} `json:"ports"`
	} `json:"subsets"`
}

// readyEndpoints returns IP:port of every ready address.
func (e *endpointsJSON) readyEndpoints() []string {
	var out []string
	for _, s := range e.Subsets {
		for _, a := range s.Addresses {
			for _, p := range s.Ports {
				out = append(out, net.JoinHostPort(a.IP, fmt.Sprint(p.Port)))
			}
		}
	}
	return out
}

// TestLabCommand is `shoal lab up --nodes 3`, the example Deployment and
// Service answering from this machine's namespace, then `shoal lab down`
// leaving nothing behind.
func TestLabCommand(t *testing.T) {
	nslab.RequireRoot(t)
	if _, err := os.Stat("/var/lib/shoal-lab.json"); err == nil {
		t.Fatal("a lab made by `shoal lab up` is up on this machine; `shoal lab down` first")
	}
	home := t.TempDir() // the lab writes HOME/.shoal/lab.config
	conf := filepath.Join(home, ".shoal", "lab.config")
	run := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c := exec.CommandContext(ctx, shoalBin, args...)
		c.Env = append(os.Environ(), "HOME="+home, "SHOAL_CONFIG="+conf)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			if out, err := run(2*time.Minute, "lab", "down"); err != nil {
				t.Errorf("lab down: %v\n%s", err, out)
			}
		}
	})
	start := time.Now()
	out, err := run(3*time.Minute, "lab", "up", "--nodes", "3")
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	t.Logf("lab up in %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	if !strings.Contains(out, "export SHOAL_CONFIG=~/.shoal/lab.config") && !strings.Contains(out, "export SHOAL_CONFIG="+conf) {
		t.Fatalf("lab up did not print the export line:\n%s", out)
	}
	logs := func() string {
		var b strings.Builder
		for i := 1; i <= 3; i++ {
			data, _ := os.ReadFile(fmt.Sprintf("/var/lib/shoal-lab/h%d.log", i))
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			fmt.Fprintf(&b, "--- host %d log, last 15 lines:\n%s\n", i, strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
		return b.String()
	}
	out, err = run(time.Minute, "node", "ls")
	rows := parseNodeLs(out)
	for i := 1; i <= 3; i++ {
		if rows[fmt.Sprintf("shoal-lab-%d", i)][0] != "Ready" {
			t.Fatalf("node ls from the root namespace (%v):\n%s", err, out)
		}
	}
	for i := 1; i <= 3; i++ {
		if _, err := os.Stat(fmt.Sprintf("/run/netns/shoal-lab-%d", i)); err != nil {
			t.Fatalf("namespace shoal-lab-%d: %v", i, err)
		}
	}

	if out, err := run(time.Minute, "apply", "-f", "../examples/web.yaml"); err != nil {
		t.Fatalf("apply the example: %v\n%s", err, out)
	}
	if out, err := run(2*time.Minute, "rollout", "status", "deploy/web", "--timeout", "90s"); err != nil {
		t.Fatalf("rollout status: %v\n%s\n%s", err, out, logs())
	}
	// The Service's endpoints: three ready pods, one per host; each answers.
	var eps []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := run(time.Minute, "get", "endpoints", "web", "-o", "json")
		var e endpointsJSON
		if err == nil && json.Unmarshal([]byte(out), &e) == nil {
			eps = e.readyEndpoints()
			nodes := map[string]bool{}
			for _, s := range e.Subsets {
				for _, a := range s.Addresses {
					nodes[a.NodeName] = true
				}
			}
			if len(eps) == 3 && len(nodes) == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			pods, _ := run(time.Minute, "get", "pods", "-o", "wide")
			t.Fatalf("endpoints of web: want 3 ready on 3 nodes; last seen (%v):\n%s\npods:\n%s\n%s", err, out, pods, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	httpc := &http.Client{Timeout: 5 * time.Second}
	for _, ep := range eps {
		resp, err := httpc.Get("http://" + ep + "/")
		if err != nil {
			t.Fatalf("GET %s from the root namespace: %v", ep, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "hello from web-") {
			t.Fatalf("GET %s: %q", ep, body)
		}
		t.Logf("%s: %s", ep, strings.TrimSpace(string(body)))
	}

	// Pod to pod across hosts: from inside one pod, every other pod's IP
	// answers (routes between the hosts' pod subnets).
	out, err = run(time.Minute, "get", "pods", "-l", "app=web", "-o", "json")
	if err != nil {
		t.Fatalf("get pods: %v\n%s", err, out)
	}
	var pods struct {
		Items []podJSON `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &pods); err != nil || len(pods.Items) != 3 {
		t.Fatalf("pods of web: %v\n%s", err, out)
	}
	from := pods.Items[0]
	for _, to := range pods.Items[1:] {
		if to.Spec.NodeName == from.Spec.NodeName {
			continue
		}
		// busybox's nc: its wget crashes in a busybox-only image (static
		// glibc without NSS), even on an address.
		addr := to.Status.PodIP + " 8080"
		out, err := run(time.Minute, "exec", from.Metadata.Name, "--", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 `+addr)
		if err != nil || !strings.Contains(out, "hello from "+to.Metadata.Name) {
			t.Fatalf("from pod %s on %s to %s on %s (%s): %v\n%s\n%s", from.Metadata.Name, from.Spec.NodeName, to.Metadata.Name, to.Spec.NodeName, addr, err, out, logs())
		}
		t.Logf("pod %s on %s → pod %s on %s: answered", from.Metadata.Name, from.Spec.NodeName, to.Metadata.Name, to.Spec.NodeName)
	}

	downDone = true
	out, err = run(2*time.Minute, "lab", "down")
	if err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	// Nothing is left: namespaces, links, data, config, processes, routes.
	var left []string
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "shoal-lab") {
			left = append(left, "netns "+e.Name())
		}
	}
	if links, err := exec.Command("ip", "-br", "link").CombinedOutput(); err == nil && strings.Contains(string(links), "shoal-lab") {
		left = append(left, "links:\n"+string(links))
	}
	if routes, err := exec.Command("ip", "route").CombinedOutput(); err == nil && strings.Contains(string(routes), "10.77.0.") {
		left = append(left, "routes:\n"+string(routes))
	}
	for _, p := range []string{"/var/lib/shoal-lab", "/var/lib/shoal-lab.json", conf} {
		if _, err := os.Stat(p); err == nil {
			left = append(left, p)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "/var/lib/shoal-lab/") {
			left = append(left, "process "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if len(left) > 0 {
		t.Fatalf("lab down left:\n%s", strings.Join(left, "\n"))
	}
}
