package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
	nslab "github.com/shoalproj/shoal/e2e/lab"
)

// podJSON is the part of `shoal get pod NAME -o json` these tests read.
type podJSON struct {
	Metadata struct {
		Name   string            `json:"name"`
		UID    string            `json:"uid"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase             string `json:"phase"`
		PodIP             string `json:"podIP"`
		ContainerStatuses []struct {
			Name        string `json:"name"`
			Ready       bool   `json:"ready"`
			ContainerID string `json:"containerID"`
		} `json:"containerStatuses"`
	} `json:"status"`
	Items []json.RawMessage `json:"items"`
}

func getPod(l *nslab.Lab, name string) (*podJSON, string, error) {
	out, err := l.Shoal("get", "pod", name, "-o", "json")
	if err != nil {
		return nil, out, err
	}
	var p podJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return nil, out, err
	}
	if len(p.Items) > 0 {
		var one podJSON
		if err := json.Unmarshal(p.Items[0], &one); err != nil {
			return nil, out, err
		}
		return &one, out, nil
	}
	return &p, out, nil
}

func (p *podJSON) containerIDs() []string {
	var ids []string
	for _, cs := range p.Status.ContainerStatuses {
		ids = append(ids, cs.ContainerID)
	}
	slices.Sort(ids)
	return ids
}

func (p *podJSON) runningReady(n int) bool {
	if p.Status.Phase != "Running" || p.Status.PodIP == "" || len(p.Status.ContainerStatuses) != n {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if !cs.Ready || cs.ContainerID == "" {
			return false
		}
	}
	return true
}

// ctrIDs lists the containers labelled with the pod's UID in host i's
// containerd (namespace shoal), asked with ctr inside the host.
func ctrIDs(l *nslab.Lab, i int, uid string) ([]string, string, error) {
	sock := filepath.Join(l.Host(i).DataDir, "containerd", "containerd.sock")
	out, err := l.Run(i, "ctr", "--address", sock, "-n", "shoal", "containers", "ls", "-q")
	if err != nil {
		return nil, out, err
	}
	var ids []string
	for _, id := range strings.Fields(out) {
		info, err := l.Run(i, "ctr", "--address", sock, "-n", "shoal", "containers", "info", id)
		if err != nil {
			return nil, info, err
		}
		if strings.Contains(info, uid) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, out, nil
}

// trimID drops a "containerd://" style prefix.
func trimID(id string) string {
	if i := strings.Index(id, "://"); i >= 0 {
		return id[i+3:]
	}
	return id
}

const webPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 2
  volumes:
  - name: www
    emptyDir: {}
  containers:
  - name: httpd
    image: %s
    imagePullPolicy: Never
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    volumeMounts:
    - name: www
      mountPath: /www
  - name: fetch
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello from $POD > /www/index.html; while :; do wget -q -O - http://127.0.0.1:8080/ >/tmp/seen 2>&1 && cat /tmp/seen; sleep 1; done"]
    env:
    - name: POD
      value: web
    volumeMounts:
    - name: www
      mountPath: /www
`

// TestPodsLab runs a two-container pod on host 2 of a two-host lab, through
// the CLI against host 1: Running and Ready, HTTP from host 2, logs -f,
// exec's exit code, adoption after kill -9 of the agent, and deletion.
func TestPodsLab(t *testing.T) {
	nslab.RequireRoot(t)
	runtimetest.RequireBusybox(t)
	begin := time.Now()
	l := nslab.New(t, 2, nslab.Options{Bin: shoalBin})
	h2 := l.Host(2)
	t.Logf("lab up: %v", time.Since(begin).Round(time.Millisecond))

	const image = "docker.io/shoal/busybox:e2e"
	archive := runtimetest.BuildBusyboxImage(t, image)
	step := time.Now()
	if out, err := l.Shoal("image", "load", archive); err != nil {
		t.Fatalf("image load: %v\n%s\n%s", err, out, l.LogTails(20))
	}
	t.Logf("image load: %v", time.Since(step).Round(time.Millisecond))

	manifest := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(webPod, h2.Node, image, image)), 0o644); err != nil {
		t.Fatal(err)
	}
	step = time.Now()
	if out, err := l.Shoal("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	var pod *podJSON
	took := l.WaitFor(60*time.Second, "pod web Running on host 2 with both containers ready", func() (bool, string) {
		p, out, err := getPod(l, "web")
		if err != nil {
			return false, fmt.Sprint(err, "\n", out)
		}
		pod = p
		return p.runningReady(2) && p.Spec.NodeName == h2.Node, out
	})
	t.Logf("apply to Running+Ready: %v (pod IP %s)", took.Round(time.Millisecond), pod.Status.PodIP)

	// The pod's IP answers HTTP from its node.
	l.WaitFor(20*time.Second, "HTTP from host 2 to the pod's IP", func() (bool, string) {
		out, err := l.HTTPGet(2, "http://"+pod.Status.PodIP+":8080/")
		return err == nil && strings.Contains(out, "hello from web"), fmt.Sprint(out, err)
	})

	// logs -f streams: several fetches arrive while it runs.
	step = time.Now()
	lctx, lcancel := context.WithTimeout(context.Background(), 20*time.Second)
	cmd := l.ShoalCmd(lctx, "logs", "-f", "web", "-c", "fetch")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	seen := 0
	var firstAt, lastAt time.Time
	for seen < 4 && sc.Scan() {
		if strings.Contains(sc.Text(), "hello from web") {
			seen++
			if seen == 1 {
				firstAt = time.Now()
			}
			lastAt = time.Now()
		}
	}
	lcancel()
	_ = cmd.Wait()
	if seen < 4 {
		t.Fatalf("logs -f: %d lines of the page before the end (%v); stderr: %s", seen, sc.Err(), stderr.String())
	}
	// Streaming, not one dump: the lines came over time (the sidecar
	// prints once a second).
	if lastAt.Sub(firstAt) < time.Second {
		t.Fatalf("logs -f: 4 lines within %v: not streamed", lastAt.Sub(firstAt))
	}
	t.Logf("logs -f streamed 4 lines over %v", lastAt.Sub(firstAt).Round(time.Millisecond))

	// exec returns the command's exit code.
	out, err := l.Shoal("exec", "web", "-c", "httpd", "--", "sh", "-c", "echo in-pod; exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exec exit 3: got %v, output %q", err, out)
	}
	if !strings.Contains(out, "in-pod") {
		t.Fatalf("exec output: %q", out)
	}
	t.Logf("logs and exec: %v", time.Since(step).Round(time.Millisecond))

	// kill -9 of host 2's agent (its containerd and the containers keep
	// running), then a restart: the same containers, none added.
	uid := pod.Metadata.UID
	before := pod.containerIDs()
	ctrBefore, raw, err := ctrIDs(l, 2, uid)
	if err != nil || len(ctrBefore) != 2 {
		t.Fatalf("containers of web in host 2's containerd: %v %v\n%s", ctrBefore, err, raw)
	}
	step = time.Now()
	l.Kill(2)
	l.Restart(2)
	took = l.WaitFor(60*time.Second, "host 2 Ready again after kill -9 and restart", func() (bool, string) {
		out, err := l.Shoal("node", "ls")
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if err == nil && len(f) >= 2 && f[0] == h2.Node && f[1] == "Ready" {
				return true, out
			}
		}
		return false, fmt.Sprint(out, err)
	})
	t.Logf("agent restart to node Ready: %v", took.Round(time.Millisecond))
	// The new agent logs "pods in sync" once it has gone over everything it
	// found running (adopted, or acted on), then compare.
	l.WaitFor(30*time.Second, "host 2's restarted agent in sync with its pods", func() (bool, string) {
		log := l.CurrentLog(2)
		return strings.Contains(log, "pods in sync"), log
	})
	l.WaitFor(30*time.Second, "web Running+Ready after the restart", func() (bool, string) {
		p, out, err := getPod(l, "web")
		return err == nil && p.runningReady(2), fmt.Sprint(out, err)
	})
	p, out, err := getPod(l, "web")
	if err != nil {
		t.Fatalf("get pod: %v\n%s", err, out)
	}
	after := p.containerIDs()
	if !slices.Equal(before, after) || !p.runningReady(2) {
		t.Fatalf("after kill -9 and restart: container IDs %v, before %v\n%s", after, before, out)
	}
	ctrAfter, raw, err := ctrIDs(l, 2, uid)
	if err != nil || !slices.Equal(ctrBefore, ctrAfter) {
		t.Fatalf("containerd's containers of web: after %v, before %v (%v)\n%s", ctrAfter, ctrBefore, err, raw)
	}
	for _, id := range before {
		if !slices.Contains(ctrAfter, trimID(id)) {
			t.Fatalf("status container ID %s is not among containerd's %v", id, ctrAfter)
		}
	}
	if out, err := l.HTTPGet(2, "http://"+pod.Status.PodIP+":8080/"); err != nil || !strings.Contains(out, "hello from web") {
		t.Fatalf("HTTP after restart: %v %s", err, out)
	}
	t.Logf("adopted after kill -9: same containers %v (%v)", ctrAfter, time.Since(step).Round(time.Millisecond))

	// Deleting the pod removes its containers and its namespace within the
	// grace period (2 s; its processes ignore SIGTERM, so they take all of
	// it) plus a margin of 2 s for the watch and the network teardown; the
	// times are reported.
	netnsPath := ""
	if recs, _ := filepath.Glob(filepath.Join(h2.DataDir, "podnet", "pods", uid+".json")); len(recs) == 1 {
		var rec struct {
			NetNS string `json:"netns"`
		}
		if b, err := os.ReadFile(recs[0]); err == nil && json.Unmarshal(b, &rec) == nil {
			netnsPath = rec.NetNS
		}
	}
	if netnsPath == "" {
		t.Fatalf("no podnet record for pod %s on host 2", uid)
	}
	if _, err := os.Stat(netnsPath); err != nil {
		t.Fatalf("pod netns %s: %v", netnsPath, err)
	}
	const grace = 2 // the manifest's terminationGracePeriodSeconds
	step = time.Now()
	if out, err := l.Shoal("delete", "pod", "web"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	sock := filepath.Join(h2.DataDir, "containerd", "containerd.sock")
	var apiGone, ctrGone, nsGone time.Duration
	took = l.WaitFor(time.Duration(grace+2)*time.Second, "web's containers and netns gone from host 2", func() (bool, string) {
		if apiGone == 0 {
			if _, _, err := getPod(l, "web"); err != nil {
				apiGone = time.Since(step)
			}
		}
		out, err := l.Run(2, "ctr", "--address", sock, "-n", "shoal", "containers", "ls", "-q")
		left := 0
		for _, id := range ctrBefore {
			if strings.Contains(out, id) {
				left++
			}
		}
		if err == nil && left == 0 && ctrGone == 0 {
			ctrGone = time.Since(step)
		}
		if _, err := os.Stat(netnsPath); errors.Is(err, os.ErrNotExist) && nsGone == 0 {
			nsGone = time.Since(step)
		}
		return ctrGone != 0 && nsGone != 0, fmt.Sprintf("containers left %d of %v (%v) netns %s gone=%v\n%s", left, ctrBefore, err, netnsPath, nsGone != 0, out)
	})
	t.Logf("delete: pod gone from the API after %v, containers after %v, netns after %v", apiGone.Round(time.Millisecond), ctrGone.Round(time.Millisecond), nsGone.Round(time.Millisecond))
	t.Logf("delete to containers and netns gone: %v (grace period %d s)", took.Round(time.Millisecond), grace)
	if out, err := l.Shoal("get", "pod", "web"); err == nil {
		t.Fatalf("pod web still listed after delete: %s", out)
	}
	t.Logf("total: %v", time.Since(begin).Round(time.Millisecond))
}
