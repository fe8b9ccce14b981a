package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
	nslab "github.com/shoalproj/shoal/e2e/lab"
)

// benchDeployment is a Deployment of n busybox pods that serve HTTP, with
// no readiness probe (Swarm has none: a task is up when it runs), updated
// 5 at a time with no surge and stopped at once (grace 0), as
// `docker service update --update-parallelism 5 --update-delay 0s
// --stop-grace-period 0s` does.
func benchDeployment(n int, version string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench
spec:
  replicas: %d
  selector:
    matchLabels: {app: bench}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 5, maxSurge: 0}
  template:
    metadata:
      labels: {app: bench}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
        - name: web
          image: docker.io/library/busybox:1.36
          command: ["httpd", "-f", "-p", "8080"]
          env: [{name: VERSION, value: "%s"}]
`, n, version)
}

// benchPods counts the bench pods that are Running with every container
// ready, per template hash, and where they run.
func benchPods(l *nslab.Lab) (ready map[string]int, perNode map[string]int, total int, err error) {
	out, err := l.Shoal("get", "pods", "-l", "app=bench", "-o", "json")
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%v: %s", err, out)
	}
	var list struct {
		Items []podJSON `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, nil, 0, err
	}
	ready, perNode = map[string]int{}, map[string]int{}
	for _, p := range list.Items {
		total++
		ok := p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) > 0
		for _, c := range p.Status.ContainerStatuses {
			ok = ok && c.Ready
		}
		if ok {
			ready[p.Metadata.Labels["pod-template-hash"]]++
			perNode[p.Spec.NodeName]++
		}
	}
	return ready, perNode, total, nil
}

// BenchmarkLabRollout prints, on a 3-host lab: the time to roll 50 pods
// to a new template 5 at a time with immediate stop (Docker Swarm's
// figure for the same on one node of this machine kind: 22.9 s), and the
// time until the pods of a killed host run Ready on the others. Figures,
// not pass/fail: `make bench-sched` runs it.
func BenchmarkLabRollout(b *testing.B) {
	const replicas = 50
	l := nslab.New(b, 3, nslab.Options{Bin: shoalBin})
	img := runtimetest.BuildBusyboxImage(b, "docker.io/library/busybox:1.36")
	if out, err := l.Shoal("image", "load", img); err != nil {
		b.Fatalf("image load: %v\n%s", err, out)
	}
	manifest := filepath.Join(b.TempDir(), "bench.yaml")
	apply := func(version string) {
		if err := os.WriteFile(manifest, []byte(benchDeployment(replicas, version)), 0o644); err != nil {
			b.Fatal(err)
		}
		if out, err := l.Shoal("apply", "-f", manifest); err != nil {
			b.Fatalf("apply: %v\n%s", err, out)
		}
	}
	waitAllReady := func(what string, timeout time.Duration) time.Duration {
		return l.WaitFor(timeout, what, func() (bool, string) {
			ready, perNode, total, err := benchPods(l)
			if err != nil {
				return false, err.Error()
			}
			n := 0
			for _, c := range ready {
				n += c
			}
			return n == replicas && len(ready) == 1 && total == replicas, fmt.Sprintf("ready per template %v, per node %v, %d pods", ready, perNode, total)
		})
	}

	start := time.Now()
	apply("1")
	first := waitAllReady("50 pods Ready", 3*time.Minute)
	b.Logf("figure: 50 pods from apply to all Running+Ready on 3 hosts: %v", first.Round(10*time.Millisecond))

	for i := 0; i < b.N; i++ {
		start = time.Now()
		apply(fmt.Sprintf("%d", i+2))
		out, err := l.Shoal("rollout", "status", "deploy/bench", "--timeout", "5m")
		if err != nil {
			b.Fatalf("rollout status: %v\n%s", err, out)
		}
		rolled := time.Since(start)
		waitAllReady("the new template Ready everywhere", time.Minute)
		b.Logf("figure: rolling update of 50 pods, 5 at a time, immediate stop: %v (rollout status done); %v all new pods Running+Ready; Docker Swarm on one node: 22.9 s (ratio %.2f)",
			rolled.Round(10*time.Millisecond), time.Since(start).Round(10*time.Millisecond), time.Since(start).Seconds()/22.9)
	}

	// Node loss: kill a host that does not lead.
	victim := 0
	out, _ := l.Shoal("node", "ls")
	for i := 2; i <= 3; i++ {
		if parseNodeLs(out)[fmt.Sprintf("lab-%d", i)][1] != "leader" {
			victim = i
			break
		}
	}
	_, perNode, _, err := benchPods(l)
	if err != nil {
		b.Fatal(err)
	}
	onVictim := perNode[fmt.Sprintf("lab-%d", victim)]
	start = time.Now()
	l.KillHost(victim)
	l.WaitFor(2*time.Minute, "all 50 Ready on the two other hosts", func() (bool, string) {
		ready, perNode, _, err := benchPods(l)
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, c := range ready {
			n += c
		}
		return n-perNode[fmt.Sprintf("lab-%d", victim)] == replicas, fmt.Sprintf("ready %v per node %v", ready, perNode)
	})
	b.Logf("figure: host %d killed (agent and containerd -9) with %d of the pods: all 50 Running+Ready on the other hosts after %v (NotReady after gossip's detection, replaced after the 5 s grace)",
		victim, onVictim, time.Since(start).Round(10*time.Millisecond))
}
