package e2e

// Issue 5's "Must show" on three-host labs: spread, Pending with reasons,
// cordon/drain/uncordon, node loss, rolling updates without loss of
// readiness, rollout history/undo, a failed rollout that leaves the old pods
// serving, and a rollout that survives the death of the raft leader.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
	nslab "github.com/shoalproj/shoal/e2e/lab"
)

// schedImage is the busybox image the sched tests load onto every node.
const schedImage = "docker.io/library/busybox:1.36"

// schedPod is the part of a pod's JSON the sched tests read.
type schedPod struct {
	Metadata struct {
		Name              string            `json:"name"`
		UID               string            `json:"uid"`
		Labels            map[string]string `json:"labels"`
		DeletionTimestamp string            `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName   string `json:"nodeName"`
		Containers []struct {
			Name  string `json:"name"`
			Image string `json:"image"`
			Env   []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"env"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase      string `json:"phase"`
		PodIP      string `json:"podIP"`
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
}

// ready is Running, Ready=True and not terminating.
func (p *schedPod) ready() bool {
	if p.Metadata.DeletionTimestamp != "" || p.Status.Phase != "Running" || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

func (p *schedPod) env(name string) string {
	for _, c := range p.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}

func (p *schedPod) hash() string { return p.Metadata.Labels["pod-template-hash"] }

// schedDeploy is the part of a Deployment's JSON the sched tests read.
type schedDeploy struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Image string `json:"image"`
					Env   []struct {
						Name  string `json:"name"`
						Value string `json:"value"`
					} `json:"env"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
	Status struct {
		Replicas          int `json:"replicas"`
		UpdatedReplicas   int `json:"updatedReplicas"`
		ReadyReplicas     int `json:"readyReplicas"`
		AvailableReplicas int `json:"availableReplicas"`
	} `json:"status"`
}

func (d *schedDeploy) templateEnv(name string) string {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}

// schedLab is a lab with the host whose API the tests talk to.
type schedLab struct {
	*nslab.Lab
	t   testing.TB
	api atomic.Int32 // the host index the CLI talks to
}

func newSchedLab(t *testing.T) *schedLab {
	return newSchedLabImage(t, runtimetest.ImageOptions{})
}

// newSchedLabImage is newSchedLab with schedImage made with opts.
func newSchedLabImage(t *testing.T, opts runtimetest.ImageOptions) *schedLab {
	return newSchedLabOpts(t, opts, nil)
}

// newSchedLabOpts is newSchedLabImage with extra agent flags per host.
func newSchedLabOpts(t testing.TB, opts runtimetest.ImageOptions, hostArgs map[int][]string) *schedLab {
	nslab.RequireRoot(t)
	runtimetest.RequireBusybox(t)
	begin := time.Now()
	l := &schedLab{Lab: nslab.New(t, 3, nslab.Options{Bin: shoalBin, HostArgs: hostArgs}), t: t}
	l.api.Store(1)
	t.Logf("lab up: %v", time.Since(begin).Round(time.Millisecond))
	archive := runtimetest.BuildImage(t, schedImage, opts)
	step := time.Now()
	out, err := l.sh("image", "load", archive)
	if err != nil {
		t.Fatalf("image load: %v\n%s\n%s", err, out, l.LogTails(20))
	}
	for i := 1; i <= 3; i++ {
		if !strings.Contains(out, fmt.Sprintf("lab-%d: loaded", i)) {
			t.Fatalf("image load did not load onto lab-%d:\n%s", i, out)
		}
	}
	t.Logf("image load onto 3 nodes: %v", time.Since(step).Round(time.Millisecond))
	return l
}

// server is host i's API address.
func (l *schedLab) server(i int) string { return net.JoinHostPort(l.Host(i).IP, "7443") }

// shOn runs the CLI from the root namespace against host i's API, with a
// timeout, and returns stdout and stderr apart.
func (l *schedLab) shOn(i int, timeout time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := l.ShoalCmd(ctx, append([]string{"--server", l.server(i)}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// sh runs the CLI against the current API host with a 30 s limit and
// returns its combined output.
func (l *schedLab) sh(args ...string) (string, error) {
	o, e, err := l.shOn(int(l.api.Load()), 30*time.Second, args...)
	return o + e, err
}

// shLong is sh with a longer limit, for commands that wait.
func (l *schedLab) shLong(timeout time.Duration, args ...string) (string, error) {
	o, e, err := l.shOn(int(l.api.Load()), timeout, args...)
	return o + e, err
}

// pods lists the pods matching selector (as JSON, stdout only) through
// host i's API.
func (l *schedLab) podsOn(i int, selector string) ([]schedPod, string, error) {
	args := []string{"get", "pods", "-o", "json"}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	out, errOut, err := l.shOn(i, 15*time.Second, args...)
	if err != nil {
		return nil, out + errOut, fmt.Errorf("get pods -l %s via host %d: %w", selector, i, err)
	}
	var list struct {
		Items []schedPod `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, out + errOut, err
	}
	return list.Items, out, nil
}

func (l *schedLab) pods(selector string) ([]schedPod, string, error) {
	return l.podsOn(int(l.api.Load()), selector)
}

func (l *schedLab) pod(name string) (*schedPod, string, error) {
	out, errOut, err := l.shOn(int(l.api.Load()), 15*time.Second, "get", "pod", name, "-o", "json")
	if err != nil {
		return nil, out + errOut, err
	}
	var p schedPod
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return nil, out, err
	}
	return &p, out, nil
}

func (l *schedLab) deploy(name string) (*schedDeploy, string, error) {
	out, errOut, err := l.shOn(int(l.api.Load()), 15*time.Second, "get", "deploy", name, "-o", "json")
	if err != nil {
		return nil, out + errOut, err
	}
	var d schedDeploy
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		return nil, out, err
	}
	return &d, out, nil
}

// wide is `get pods -o wide` for failure messages.
func (l *schedLab) wide() string {
	out, err := l.sh("get", "pods", "-o", "wide")
	if err != nil {
		return fmt.Sprintf("get pods -o wide: %v\n%s", err, out)
	}
	return "get pods -o wide:\n" + out
}

// fatalf fails with the pods and the agents' logs.
func (l *schedLab) fatalf(format string, args ...any) {
	l.t.Helper()
	l.t.Fatalf("%s\n%s\n%s", fmt.Sprintf(format, args...), l.wide(), l.LogTails(30))
}

func (l *schedLab) apply(manifest string) {
	l.t.Helper()
	path := filepath.Join(l.t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if out, err := l.sh("apply", "-f", path); err != nil {
		l.fatalf("apply: %v\n%s\nmanifest:\n%s", err, out, manifest)
	}
}

// nodeLs returns node ls parsed (name → [status, role]) and raw.
func (l *schedLab) nodeLs() (map[string][2]string, string, error) {
	out, err := l.sh("node", "ls")
	if err != nil {
		return nil, out, err
	}
	return parseNodeLs(out), out, nil
}

// leader is the host index of the node whose ROLES is leader.
func (l *schedLab) leader() (int, string) {
	l.t.Helper()
	var idx int
	var raw string
	l.WaitFor(20*time.Second, "one leader in node ls", func() (bool, string) {
		rows, out, err := l.nodeLs()
		raw = out
		if err != nil {
			return false, fmt.Sprint(err, out)
		}
		for name, r := range rows {
			if r[1] == "leader" {
				idx = hostIndex(name)
				return idx > 0, out
			}
		}
		return false, out
	})
	return idx, raw
}

// hostIndex is i for node lab-i, 0 otherwise.
func hostIndex(node string) int {
	i, err := strconv.Atoi(strings.TrimPrefix(node, "lab-"))
	if err != nil || !strings.HasPrefix(node, "lab-") {
		return 0
	}
	return i
}

// perNode counts the ready pods per node.
func perNode(pods []schedPod) map[string]int {
	m := map[string]int{}
	for i := range pods {
		if pods[i].ready() {
			m[pods[i].Spec.NodeName]++
		}
	}
	return m
}

func countReady(pods []schedPod) int {
	n := 0
	for i := range pods {
		if pods[i].ready() {
			n++
		}
	}
	return n
}

// deployment is the options of schedDeployment.
type deployment struct {
	name             string
	replicas         int
	image            string
	version          string
	maxUnavailable   int
	maxSurge         int
	minReadySeconds  int
	progressDeadline int // 0: unset
}

// manifest is a Deployment of httpd answering "ok" on 8080 with a
// readiness probe, plus a Service of the same name.
func (d deployment) manifest() string {
	if d.image == "" {
		d.image = schedImage
	}
	extra := ""
	if d.minReadySeconds > 0 {
		extra += fmt.Sprintf("  minReadySeconds: %d\n", d.minReadySeconds)
	}
	if d.progressDeadline > 0 {
		extra += fmt.Sprintf("  progressDeadlineSeconds: %d\n", d.progressDeadline)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  labels:
    app: %[1]s
spec:
  replicas: %[2]d
%[3]s  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: %[4]d
      maxSurge: %[5]d
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: %[6]s
          imagePullPolicy: IfNotPresent
          command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
          env:
            - name: VERSION
              value: "%[7]s"
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: 8080
            periodSeconds: 1
          resources:
            requests:
              cpu: 10m
              memory: 16Mi
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  selector:
    app: %[1]s
  ports:
    - name: http
      port: 80
      targetPort: 8080
`, d.name, d.replicas, extra, d.maxUnavailable, d.maxSurge, d.image, d.version)
}

// waitPods waits until the pods of app satisfy cond and returns them.
func (l *schedLab) waitPods(timeout time.Duration, app, what string, cond func([]schedPod) bool) []schedPod {
	l.t.Helper()
	var last []schedPod
	l.WaitFor(timeout, what, func() (bool, string) {
		pods, out, err := l.pods("app=" + app)
		if err != nil {
			return false, fmt.Sprint(err, "\n", out, "\n", l.wide())
		}
		last = pods
		if cond(pods) {
			return true, ""
		}
		return false, l.wide()
	})
	return last
}

// rolloutStatus runs `rollout status deploy/NAME --timeout T` and returns
// its output, its error and how long it took.
func (l *schedLab) rolloutStatus(name string, timeout time.Duration) (string, error, time.Duration) {
	start := time.Now()
	out, err := l.shLong(timeout+30*time.Second, "rollout", "status", "deploy/"+name, "--timeout", timeout.String())
	return out, err, time.Since(start)
}

// poller lists the pods of a selector every ~100 ms in the background,
// through the first live host, until stopped (or for 5 minutes at most),
// and hands every observation to observe.
type poller struct {
	stop    chan struct{}
	done    chan struct{}
	obs     atomic.Int64
	errs    atomic.Int64
	lastErr atomic.Value
}

func (l *schedLab) startPoller(selector string, dead *atomic.Int32, observe func([]schedPod)) *poller {
	p := &poller{stop: make(chan struct{}), done: make(chan struct{})}
	l.t.Cleanup(p.halt)
	go func() {
		defer close(p.done)
		end := time.Now().Add(5 * time.Minute)
		for time.Now().Before(end) {
			got := false
			for i := 1; i <= len(l.Hosts) && !got; i++ {
				if dead != nil && int(dead.Load()) == i {
					continue
				}
				pods, out, err := l.podsOn(i, selector)
				if err != nil {
					p.errs.Add(1)
					p.lastErr.Store(fmt.Sprint(err, ": ", out))
					continue
				}
				got = true
				p.obs.Add(1)
				observe(pods)
			}
			select {
			case <-p.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return p
}

// errors says how many lists failed and the last failure.
func (p *poller) errors() string {
	if p.errs.Load() == 0 {
		return "0 list errors"
	}
	return fmt.Sprintf("%d list errors, the last: %v", p.errs.Load(), p.lastErr.Load())
}

func (p *poller) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// ctrTask is one task in a host's containerd: its status and the pod it
// belongs to, from its container's labels.
type ctrTask struct{ id, status, podUID, podName string }

// ctrTasks lists the tasks in host i's containerd (namespace shoal), asked
// with ctr inside the host.
func ctrTasks(l *schedLab, i int) ([]ctrTask, string, error) {
	sock := filepath.Join(l.Host(i).DataDir, "containerd", "containerd.sock")
	out, err := l.Run(i, "ctr", "--address", sock, "-n", "shoal", "tasks", "ls")
	if err != nil {
		return nil, out, err
	}
	var tasks []ctrTask
	for n, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if n == 0 || len(f) < 3 {
			continue
		}
		info, err := l.Run(i, "ctr", "--address", sock, "-n", "shoal", "containers", "info", f[0])
		if err != nil {
			// Removed in between.
			continue
		}
		var c struct {
			Labels map[string]string `json:"Labels"`
		}
		_ = json.Unmarshal([]byte(info), &c)
		tasks = append(tasks, ctrTask{id: f[0], status: f[2], podUID: c.Labels["io.shoal.pod.uid"], podName: c.Labels["io.shoal.pod.name"]})
	}
	return tasks, out, nil
}

// TestSchedSpreadPendingDrainNodeLoss: 6 replicas spread 2 per node, a pod
// no node can take stays Pending with the reasons, drain moves the pods off
// a node within maxUnavailable, a cordoned node takes nothing new, and a
// killed host's pods are replaced within 15 s and not duplicated when it
// returns.
func TestSchedSpreadPendingDrainNodeLoss(t *testing.T) {
	l := newSchedLab(t)
	begin := time.Now()

	// 6 replicas, 2 per node, all Ready, 6 ready endpoints.
	web := deployment{name: "web", replicas: 6, version: "1", maxUnavailable: 1, maxSurge: 1}
	l.apply(web.manifest())
	took := l.WaitFor(90*time.Second, "web: 6 pods Running+Ready, 2 on each of lab-1, lab-2, lab-3", func() (bool, string) {
		pods, out, err := l.pods("app=web")
		if err != nil {
			return false, fmt.Sprint(err, out)
		}
		per := perNode(pods)
		return len(pods) == 6 && countReady(pods) == 6 && per["lab-1"] == 2 && per["lab-2"] == 2 && per["lab-3"] == 2,
			fmt.Sprintf("ready per node %v\n%s", per, l.wide())
	})
	t.Logf("figure: apply to 6 Ready pods spread 2/2/2: %v", took.Round(time.Millisecond))
	l.WaitFor(30*time.Second, "endpoints web: 6 ready addresses", func() (bool, string) {
		out, err := l.sh("get", "endpoints", "web", "-o", "json")
		var e endpointsJSON
		if err != nil || json.Unmarshal([]byte(out), &e) != nil {
			return false, fmt.Sprint(err, out)
		}
		return len(e.readyEndpoints()) == 6, out
	})

	// A pod no node can take: Pending, PodScheduled=False Unschedulable
	// with the reasons, in get -o json and in describe.
	l.apply(`apiVersion: v1
kind: Pod
metadata:
  name: huge
spec:
  containers:
    - name: c
      image: ` + schedImage + `
      imagePullPolicy: IfNotPresent
      command: ["sleep", "3600"]
      resources:
        requests:
          memory: 10000Gi
`)
	var msg string
	l.WaitFor(20*time.Second, "pod huge: PodScheduled=False Unschedulable, \"0/3 nodes are available: ... Insufficient memory\"", func() (bool, string) {
		p, out, err := l.pod("huge")
		if err != nil {
			return false, fmt.Sprint(err, out)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "PodScheduled" && c.Status == "False" && c.Reason == "Unschedulable" &&
				strings.HasPrefix(c.Message, "0/3 nodes are available:") && strings.Contains(c.Message, "Insufficient memory") {
				msg = c.Message
				return p.Status.Phase == "Pending" && p.Spec.NodeName == "", out
			}
		}
		return false, out
	})
	t.Logf("huge: %s", msg)
	if out, err := l.sh("describe", "pod", "huge"); err != nil || !strings.Contains(out, msg) {
		t.Errorf("describe pod huge does not show the scheduling message %q (%v):\n%s", msg, err, out)
	}

	var (
		pods []schedPod
		raw  string
		err  error
	)
	// Drain lab-3: cordoned (Ready,SchedulingDisabled), web's pods move to
	// lab-1 and lab-2 with never more than maxUnavailable (1) of 6 unready.
	minReady := atomic.Int64{}
	minReady.Store(99)
	pl := l.startPoller("app=web", nil, func(pods []schedPod) {
		if n := int64(countReady(pods)); n < minReady.Load() {
			minReady.Store(n)
		}
	})
	step := time.Now()
	out, err := l.shLong(150*time.Second, "node", "drain", "lab-3", "--timeout", "120s")
	drainTook := time.Since(step)
	pl.halt()
	if err != nil {
		l.fatalf("node drain lab-3: %v\n%s", err, out)
	}
	t.Logf("node drain lab-3 (%v):\n%s", drainTook.Round(time.Millisecond), out)
	t.Logf("figure: drain of lab-3 (2 pods) took %v; fewest Ready web pods seen during it: %d of 6 (%d observations, %s)",
		drainTook.Round(time.Millisecond), minReady.Load(), pl.obs.Load(), pl.errors())
	if minReady.Load() < 5 {
		l.fatalf("during the drain only %d web pods were Ready at one observation; maxUnavailable 1 allows no fewer than 5", minReady.Load())
	}
	// The command returned: no web pod remains on lab-3.
	pods, raw, err = l.pods("app=web")
	if err != nil {
		l.fatalf("get pods after drain: %v\n%s", err, raw)
	}
	for _, p := range pods {
		if p.Spec.NodeName == "lab-3" {
			l.fatalf("drain returned with web pod %s still on lab-3 (phase %s, deletionTimestamp %q)", p.Metadata.Name, p.Status.Phase, p.Metadata.DeletionTimestamp)
		}
	}
	if rows, out, err := l.nodeLs(); err != nil || rows["lab-3"][0] != "Ready,SchedulingDisabled" {
		l.fatalf("node ls after drain: lab-3 STATUS want Ready,SchedulingDisabled (%v):\n%s", err, out)
	}
	l.waitPods(30*time.Second, "web", "web: 6 Ready pods, 3 on lab-1 and 3 on lab-2, none on lab-3", func(pods []schedPod) bool {
		per := perNode(pods)
		return len(pods) == 6 && countReady(pods) == 6 && per["lab-1"] == 3 && per["lab-2"] == 3
	})

	// Scale to 8: nothing lands on the cordoned lab-3.
	if out, err := l.sh("scale", "deploy/web", "--replicas", "8"); err != nil {
		l.fatalf("scale: %v\n%s", err, out)
	}
	pods = l.waitPods(60*time.Second, "web", "web: 8 Ready pods", func(pods []schedPod) bool {
		return len(pods) == 8 && countReady(pods) == 8
	})
	for _, p := range pods {
		if p.Spec.NodeName == "lab-3" {
			l.fatalf("scaled up while lab-3 is cordoned: pod %s placed on lab-3", p.Metadata.Name)
		}
	}
	t.Logf("scaled to 8 with lab-3 cordoned: per node %v", perNode(pods))
	if out, err := l.sh("node", "uncordon", "lab-3"); err != nil {
		l.fatalf("node uncordon lab-3: %v\n%s", err, out)
	}
	l.WaitFor(10*time.Second, "lab-3 Ready (schedulable) in node ls after uncordon", func() (bool, string) {
		rows, out, err := l.nodeLs()
		return err == nil && rows["lab-3"][0] == "Ready", out
	})
	if p, out, err := l.pod("huge"); err != nil || p.Status.Phase != "Pending" || p.Spec.NodeName != "" {
		l.fatalf("pod huge is no longer Pending and unbound (%v):\n%s", err, out)
	}

	// Kill a host that has web pods and is not the leader (agent and
	// containerd, -9): web has all 8 replicas Ready on the others within 15 s.
	lead, nodes := l.leader()
	victim := 2
	if lead == 2 {
		victim = 1
	}
	survivor := 3
	l.api.Store(int32(survivor))
	var lost []schedPod
	pods, raw, err = l.pods("app=web")
	if err != nil {
		l.fatalf("get pods: %v\n%s", err, raw)
	}
	for _, p := range pods {
		if hostIndex(p.Spec.NodeName) == victim {
			lost = append(lost, p)
		}
	}
	if len(lost) == 0 {
		l.fatalf("no web pod on lab-%d to lose", victim)
	}
	// What the victim's containerd runs for them now (the check after its
	// return must see them stopped).
	tasks, rawTasks, err := ctrTasks(l, victim)
	if err != nil {
		l.fatalf("ctr tasks ls on host %d: %v\n%s", victim, err, rawTasks)
	}
	for _, p := range lost {
		found := false
		for _, tk := range tasks {
			found = found || (tk.podUID == p.Metadata.UID && tk.status == "RUNNING")
		}
		if !found {
			l.fatalf("pod %s (uid %s) has no RUNNING task in host %d's containerd:\n%s", p.Metadata.Name, p.Metadata.UID, victim, rawTasks)
		}
	}
	t.Logf("leader is lab-%d; killing lab-%d with %d web pods (%d tasks running there)\n%s", lead, victim, len(lost), len(tasks), nodes)
	killed := time.Now()
	l.KillHost(victim)
	victimNode := fmt.Sprintf("lab-%d", victim)
	var notReadyAt time.Duration
	took, err = l.Wait(context.Background(), 60*time.Second, fmt.Sprintf("web: 8 Running+Ready pods off %s", victimNode), func() (bool, string) {
		if notReadyAt == 0 {
			if rows, _, err := l.nodeLs(); err == nil && rows[victimNode][0] == "NotReady" {
				notReadyAt = time.Since(killed)
			}
		}
		pods, out, err := l.pods("app=web")
		if err != nil {
			return false, fmt.Sprint(err, out)
		}
		n := 0
		for _, p := range pods {
			if p.ready() && p.Spec.NodeName != victimNode {
				n++
			}
		}
		return n == 8, fmt.Sprintf("%d Ready off %s\n%s", n, victimNode, l.wide())
	})
	if err != nil {
		l.fatalf("%v", err)
	}
	took = time.Since(killed)
	t.Logf("figure: host %d killed (-9) → %s NotReady after %v, web's 8 replicas Running+Ready on the other hosts after %v",
		victim, victimNode, notReadyAt.Round(10*time.Millisecond), took.Round(10*time.Millisecond))
	if took > 15*time.Second {
		l.fatalf("web's pods took %v to be replaced after host %d died: over 15 s", took.Round(10*time.Millisecond), victim)
	}

	// The host returns: no duplicates, the replaced pods' containers stopped.
	restarted := time.Now()
	l.Restart(victim)
	l.WaitFor(60*time.Second, victimNode+" Ready again", func() (bool, string) {
		rows, out, err := l.nodeLs()
		return err == nil && rows[victimNode][0] == "Ready", out
	})
	t.Logf("figure: host %d restarted → Ready after %v", victim, time.Since(restarted).Round(10*time.Millisecond))
	l.WaitFor(30*time.Second, fmt.Sprintf("host %d's restarted agent in sync with its pods", victim), func() (bool, string) {
		log := l.CurrentLog(victim)
		return strings.Contains(log, "pods in sync"), log
	})
	var lastTasks []ctrTask
	l.WaitFor(30*time.Second, fmt.Sprintf("8 web pods, all Ready, and host %d's containerd running only tasks of existing pods", victim), func() (bool, string) {
		pods, out, err := l.pods("app=web")
		if err != nil {
			return false, fmt.Sprint(err, out)
		}
		all, out2, err := l.pods("")
		if err != nil {
			return false, fmt.Sprint(err, out2)
		}
		exists := map[string]bool{}
		for _, p := range all {
			exists[p.Metadata.UID] = true
		}
		names := map[string]bool{}
		for _, p := range pods {
			names[p.Metadata.Name] = true
		}
		var bad []string
		if len(pods) != 8 || len(names) != 8 || countReady(pods) != 8 {
			bad = append(bad, fmt.Sprintf("%d web pods (%d names), %d Ready", len(pods), len(names), countReady(pods)))
		}
		for _, p := range pods {
			if p.Spec.NodeName == victimNode && !p.ready() {
				bad = append(bad, "pod "+p.Metadata.Name+" on "+victimNode+" not Running+Ready")
			}
		}
		tasks, raw, err := ctrTasks(l, victim)
		if err != nil {
			return false, fmt.Sprint(err, raw)
		}
		lastTasks = tasks
		for _, tk := range tasks {
			if tk.status != "RUNNING" {
				continue
			}
			if !exists[tk.podUID] {
				bad = append(bad, fmt.Sprintf("task %s RUNNING for pod %s (uid %q) which no longer exists", tk.id, tk.podName, tk.podUID))
			}
		}
		if len(bad) > 0 {
			return false, strings.Join(bad, "\n") + "\nctr tasks ls:\n" + raw + "\n" + l.wide()
		}
		return true, ""
	})
	running := 0
	for _, tk := range lastTasks {
		if tk.status == "RUNNING" {
			running++
		}
	}
	for _, p := range lost {
		for _, tk := range lastTasks {
			if tk.podUID == p.Metadata.UID && tk.status == "RUNNING" {
				l.fatalf("replaced pod %s still has a RUNNING task %s on host %d", p.Metadata.Name, tk.id, victim)
			}
		}
	}
	t.Logf("host %d back: 8 web pods, no duplicate; its containerd has %d tasks (%d running), none of the %d replaced pods'", victim, len(lastTasks), running, len(lost))
	t.Logf("total (after lab up and image load): %v", time.Since(begin).Round(time.Millisecond))
}

// readyWatch records, at every observation, the number of Ready pods.
type readyWatch struct {
	mu   sync.Mutex
	min  int
	n    int
	hist map[int]int // ready count → observations
}

func newReadyWatch() *readyWatch { return &readyWatch{min: 1 << 30, hist: map[int]int{}} }

func (w *readyWatch) observe(pods []schedPod) {
	n := countReady(pods)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	w.hist[n]++
	w.min = min(w.min, n)
}

func (w *readyWatch) observations() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *readyWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]int, 0, len(w.hist))
	for k := range w.hist {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d ready ×%d", k, w.hist[k]))
	}
	return fmt.Sprintf("min %d over %d observations (%s)", w.min, w.n, strings.Join(parts, ", "))
}

// TestSchedRollingUpdate: a rolling update with maxUnavailable 0 never
// has fewer than 6 Ready pods; history lists the revisions; undo restores
// the previous template; a rollout to an image that does not exist fails
// on its progress deadline while the old pods keep serving.
func TestSchedRollingUpdate(t *testing.T) {
	l := newSchedLab(t)
	begin := time.Now()
	d := deployment{name: "roll", replicas: 6, version: "1", maxUnavailable: 0, maxSurge: 1}
	l.apply(d.manifest())
	if out, err, took := l.rolloutStatus("roll", 120*time.Second); err != nil {
		l.fatalf("first rollout: %v\n%s", err, out)
	} else {
		t.Logf("figure: first rollout of 6 replicas: %v", took.Round(time.Millisecond))
	}
	l.waitPods(30*time.Second, "roll", "roll: 6 Ready pods", func(pods []schedPod) bool {
		return len(pods) == 6 && countReady(pods) == 6
	})

	// VERSION=2 rolls out with at least 6 Ready pods at every observation.
	w := newReadyWatch()
	pl := l.startPoller("app=roll", nil, w.observe)
	// A few observations before the change.
	l.WaitFor(10*time.Second, "3 observations of the pods before the update", func() (bool, string) {
		return w.observations() >= 3, w.String()
	})
	d.version = "2"
	start := time.Now()
	l.apply(d.manifest())
	out, err, _ := l.rolloutStatus("roll", 120*time.Second)
	took := time.Since(start)
	// Until the old pods are gone.
	final := l.waitPods(30*time.Second, "roll", "roll: exactly 6 pods, all Ready with VERSION=2", func(pods []schedPod) bool {
		if len(pods) != 6 || countReady(pods) != 6 {
			return false
		}
		for i := range pods {
			if pods[i].env("VERSION") != "2" {
				return false
			}
		}
		return true
	})
	pl.halt()
	if err != nil {
		l.fatalf("rollout status after VERSION=2: %v\n%s", err, out)
	}
	t.Logf("figure: rolling update of 6 replicas (maxSurge 1, maxUnavailable 0): %v; Ready pods seen: %s; %s", took.Round(time.Millisecond), w, pl.errors())
	if w.n < 5 {
		t.Errorf("only %d observations during the rollout", w.n)
	}
	if w.min < 6 {
		l.fatalf("during the rolling update with maxUnavailable 0 an observation saw fewer than 6 Ready pods: %s", w)
	}
	v2hash := final[0].hash()

	// History: revisions 1 and 2.
	out, err = l.sh("rollout", "history", "deploy/roll")
	if err != nil {
		l.fatalf("rollout history: %v\n%s", err, out)
	}
	revs := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			revs[f[0]] = true
		}
	}
	if !revs["1"] || !revs["2"] {
		l.fatalf("rollout history deploy/roll does not list revisions 1 and 2:\n%s", out)
	}
	t.Logf("rollout history:\n%s", out)

	// Undo: back to VERSION=1, in the Deployment and in the pods.
	if out, err := l.sh("rollout", "undo", "deploy/roll"); err != nil {
		l.fatalf("rollout undo: %v\n%s", err, out)
	} else {
		t.Logf("rollout undo: %s", strings.TrimSpace(out))
	}
	start = time.Now()
	if out, err, _ := l.rolloutStatus("roll", 120*time.Second); err != nil {
		l.fatalf("rollout status after undo: %v\n%s", err, out)
	}
	t.Logf("figure: rollout undo to Ready: %v", time.Since(start).Round(time.Millisecond))
	dep, raw, err := l.deploy("roll")
	if err != nil || dep.templateEnv("VERSION") != "1" {
		l.fatalf("after undo the Deployment's template has VERSION=%q, want 1 (%v):\n%s", dep.templateEnv("VERSION"), err, raw)
	}
	v1 := l.waitPods(30*time.Second, "roll", "roll: exactly 6 pods, all Ready with VERSION=1 after undo", func(pods []schedPod) bool {
		if len(pods) != 6 || countReady(pods) != 6 {
			return false
		}
		for i := range pods {
			if pods[i].env("VERSION") != "1" {
				return false
			}
		}
		return true
	})
	v1hash := v1[0].hash()
	if v1hash == v2hash {
		t.Fatalf("revision 1 and 2 pods have the same pod-template-hash %q", v1hash)
	}
	if out, err := l.sh("rollout", "history", "deploy/roll"); err == nil {
		t.Logf("rollout history after undo:\n%s", out)
	}

	// An image that does not exist: rollout status fails on the progress
	// deadline; the 6 VERSION=1 pods stay Ready and answer.
	bad := d
	bad.version = "1"
	bad.image = "docker.io/library/nope:404"
	bad.progressDeadline = 15
	start = time.Now()
	l.apply(bad.manifest())
	out, err, _ = l.rolloutStatus("roll", 90*time.Second)
	took = time.Since(start)
	t.Logf("rollout status to a missing image (%v, %v):\n%s", took.Round(time.Millisecond), err, out)
	if err == nil {
		l.fatalf("rollout status to a missing image exited 0:\n%s", out)
	}
	if !strings.Contains(out, "progress deadline") {
		l.fatalf("rollout status to a missing image: the output does not say the progress deadline was exceeded (%v):\n%s", err, out)
	}
	t.Logf("figure: rollout to a missing image reported failed (progressDeadlineSeconds 15) after %v", took.Round(time.Millisecond))
	pods, raw, err := l.pods("app=roll")
	if err != nil {
		l.fatalf("get pods: %v\n%s", err, raw)
	}
	var old []schedPod
	newPods := 0
	for _, p := range pods {
		if p.hash() == v1hash && p.ready() {
			old = append(old, p)
		} else if p.Spec.Containers[0].Image == bad.image {
			newPods++
		}
	}
	if len(old) != 6 {
		l.fatalf("after the failed rollout: %d Ready pods of the previous template (hash %s), want 6", len(old), v1hash)
	}
	for _, p := range old[:2] {
		i := hostIndex(p.Spec.NodeName)
		if body, err := l.HTTPGet(i, "http://"+p.Status.PodIP+":8080/"); err != nil || strings.TrimSpace(body) != "ok" {
			l.fatalf("GET old pod %s (%s on %s): %v %q", p.Metadata.Name, p.Status.PodIP, p.Spec.NodeName, err, body)
		}
	}
	t.Logf("after the failed rollout: 6 old pods Ready and answering, %d pods of the missing image", newPods)
	t.Logf("total (after lab up and image load): %v", time.Since(begin).Round(time.Millisecond))
}

// TestSchedLeaderMoves: the raft leader dies in the middle of a rolling
// update; the new leader finishes it without creating any pod twice.
func TestSchedLeaderMoves(t *testing.T) {
	l := newSchedLab(t)
	begin := time.Now()
	d := deployment{name: "lm", replicas: 6, version: "1", maxUnavailable: 0, maxSurge: 1, minReadySeconds: 2}
	l.apply(d.manifest())
	if out, err, took := l.rolloutStatus("lm", 120*time.Second); err != nil {
		l.fatalf("first rollout: %v\n%s", err, out)
	} else {
		t.Logf("first rollout of 6 replicas (minReadySeconds 2): %v", took.Round(time.Millisecond))
	}
	old := l.waitPods(30*time.Second, "lm", "lm: 6 Ready pods", func(pods []schedPod) bool {
		return len(pods) == 6 && countReady(pods) == 6
	})
	oldHash := old[0].hash()

	// Record every pod ever seen: uid → name, template hash, the nodes it
	// was seen bound to.
	type seenPod struct {
		name, hash string
		nodes      map[string]bool
	}
	var mu sync.Mutex
	seen := map[string]*seenPod{}
	var dead atomic.Int32
	pl := l.startPoller("app=lm", &dead, func(pods []schedPod) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pods {
			s := seen[p.Metadata.UID]
			if s == nil {
				s = &seenPod{name: p.Metadata.Name, hash: p.hash(), nodes: map[string]bool{}}
				seen[p.Metadata.UID] = s
			}
			if p.Spec.NodeName != "" {
				s.nodes[p.Spec.NodeName] = true
			}
		}
	})
	defer pl.halt()

	d.version = "2"
	start := time.Now()
	l.apply(d.manifest())
	var updated int
	l.WaitFor(60*time.Second, "lm's rollout in progress: 2 to 4 updated replicas", func() (bool, string) {
		dep, out, err := l.deploy("lm")
		if err != nil {
			return false, fmt.Sprint(err, out)
		}
		updated = dep.Status.UpdatedReplicas
		return updated >= 2 && updated <= 4, out
	})
	lead, nodes := l.leader()
	leaderNode := fmt.Sprintf("lab-%d", lead)
	survivor := 1
	if lead == 1 {
		survivor = 2
	}
	l.api.Store(int32(survivor))
	dead.Store(int32(lead))
	t.Logf("rollout in progress (%d updated after %v); killing the leader, host %d\n%s", updated, time.Since(start).Round(time.Millisecond), lead, nodes)
	mu.Lock()
	newOnLeaderBefore := 0
	for _, s := range seen {
		if s.hash != oldHash && s.nodes[leaderNode] {
			newOnLeaderBefore++
		}
	}
	mu.Unlock()
	killed := time.Now()
	l.KillHost(lead)
	newLead := 0
	l.WaitFor(30*time.Second, "a new leader among the survivors", func() (bool, string) {
		rows, out, err := l.nodeLs()
		if err != nil {
			return false, fmt.Sprint(err, out)
		}
		for name, r := range rows {
			if r[1] == "leader" && name != leaderNode {
				newLead = hostIndex(name)
				return true, out
			}
		}
		return false, out
	})
	t.Logf("figure: leader host %d killed → lab-%d leads after %v", lead, newLead, time.Since(killed).Round(10*time.Millisecond))

	out, err, _ := l.rolloutStatus("lm", 180*time.Second)
	if err != nil {
		l.fatalf("rollout status through host %d after the leader died: %v\n%s", survivor, err, out)
	}
	t.Logf("figure: rollout of 6 replicas (minReadySeconds 2) with the leader killed in the middle: %v (%v after the kill)",
		time.Since(start).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	final := l.waitPods(60*time.Second, "lm", "lm: exactly 6 pods, all of the new template, Ready, none on the dead node", func(pods []schedPod) bool {
		if len(pods) != 6 || countReady(pods) != 6 {
			return false
		}
		for i := range pods {
			if pods[i].env("VERSION") != "2" || pods[i].hash() == oldHash || pods[i].Spec.NodeName == leaderNode {
				return false
			}
		}
		return true
	})
	pl.halt()
	newHash := final[0].hash()

	// Accounting. Every pod of the new template is created once, except
	// when the pod it stands for is lost: a new-template pod bound to the
	// killed node is deleted by the node lifecycle controller once that
	// node has been NotReady for the grace, and the rollout makes a
	// replacement. Such a pod may have been bound before the kill (seen
	// there before it) or, by the new leader, to the dead node before it
	// was marked NotReady (seen there only after): both are counted, as
	// "seen bound to the killed node at any time". So the distinct UIDs
	// of new-template pods ever seen must be 6 + that number; one more is
	// a pod created twice (e.g. by both leaders for the same replica).
	mu.Lock()
	var newUIDs, onDead []string
	names := map[string]bool{}
	for uid, s := range seen {
		if s.hash != newHash {
			continue
		}
		newUIDs = append(newUIDs, uid+" "+s.name+" "+strings.Join(slices.Sorted(maps.Keys(s.nodes)), ","))
		names[s.name] = true
		if s.nodes[leaderNode] {
			onDead = append(onDead, s.name)
		}
	}
	mu.Unlock()
	sort.Strings(newUIDs)
	t.Logf("figure: new-template pods ever seen: %d (%d observations, %s); on the killed node: %d before the kill, %d in all (%v)",
		len(newUIDs), pl.obs.Load(), pl.errors(), newOnLeaderBefore, len(onDead), onDead)
	if len(names) != len(newUIDs) {
		t.Errorf("a pod name was used by two UIDs:\n%s", strings.Join(newUIDs, "\n"))
	}
	if want := 6 + len(onDead); len(newUIDs) != want {
		l.fatalf("new-template pods ever seen: %d, want 6 + %d replaced from the dead node = %d:\n%s", len(newUIDs), len(onDead), want, strings.Join(newUIDs, "\n"))
	}
	t.Logf("total (after lab up and image load): %v", time.Since(begin).Round(time.Millisecond))
}
