package e2e

// Issue 6's "Must show" on a three-host lab: a Service's virtual IP and
// NodePort balance over ready pods on every node (from every host, from a
// pod, from outside through a host without pods), UDP, ClientIP affinity,
// an unready pod and a killed host leave the rotation, a Service without
// a selector forwards outside the cluster, and pods resolve service names.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
)

var (
	netprobeOnce sync.Once
	netprobePath string
	netprobeErr  error
)

// netprobeBinary builds e2e/netprobe statically, once per test binary.
func netprobeBinary(t testing.TB) []byte {
	t.Helper()
	netprobeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shoal-netprobe")
		if err != nil {
			netprobeErr = err
			return
		}
		netprobePath = filepath.Join(dir, "netprobe")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", netprobePath, "./netprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			netprobeErr = fmt.Errorf("build netprobe: %v\n%s", err, out)
		}
	})
	if netprobeErr != nil {
		t.Fatal(netprobeErr)
	}
	b, err := os.ReadFile(netprobePath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// svcJSON is the part of a Service's JSON the tests read.
type svcJSON struct {
	Spec struct {
		ClusterIP string `json:"clusterIP"`
		Ports     []struct {
			Name     string `json:"name"`
			Port     int    `json:"port"`
			NodePort int    `json:"nodePort"`
		} `json:"ports"`
	} `json:"spec"`
}

func (l *schedLab) service(name string) svcJSON {
	l.t.Helper()
	out, errOut, err := l.shOn(int(l.api.Load()), 15*time.Second, "get", "svc", name, "-o", "json")
	if err != nil {
		l.fatalf("get svc %s: %v\n%s%s", name, err, out, errOut)
	}
	var s svcJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Spec.ClusterIP == "" {
		l.fatalf("get svc %s: %v: %s", name, err, out)
	}
	return s
}

// readyEndpointIPs is the ready addresses of a Service's Endpoints.
func (l *schedLab) readyEndpointIPs(name string) ([]string, string) {
	out, _, err := l.shOn(int(l.api.Load()), 15*time.Second, "get", "endpoints", name, "-o", "json")
	if err != nil {
		return nil, out
	}
	var e endpointsJSON
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		return nil, out
	}
	return e.readyEndpoints(), out
}

// httpVia sends one HTTP/1.0 GET to addr from host i's namespace (0: the
// root namespace, outside every lab host) and returns the body.
func (l *schedLab) httpVia(ctx context.Context, i int, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var c net.Conn
	var err error
	if i == 0 {
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = l.Dial(ctx, i, addr)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: shoal\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %s", resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// countHTTP sends n requests to addr from host i (0: root namespace), each
// on a new connection, and counts the answers (errors under "error: ...").
func (l *schedLab) countHTTP(i int, addr string, n int) map[string]int {
	counts := map[string]int{}
	for k := 0; k < n; k++ {
		body, err := l.httpVia(context.Background(), i, addr)
		if err != nil {
			body = "error: " + err.Error()
		}
		counts[body]++
	}
	return counts
}

// checkSpread fails unless counts has exactly the pods, each answering
// between lo and hi times, and no errors.
func (l *schedLab) checkSpread(what string, counts map[string]int, pods []string, lo, hi int) {
	l.t.Helper()
	ok := len(counts) == len(pods)
	for _, p := range pods {
		if c := counts[p]; c < lo || c > hi {
			ok = false
		}
	}
	if !ok {
		l.fatalf("%s: answers %v; want each of the %d pods %v between %d and %d times, nothing else", what, counts, len(pods), pods, lo, hi)
	}
	l.t.Logf("%s: %s", what, formatCounts(counts))
}

func formatCounts(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, counts[k])
	}
	return strings.TrimSpace(b.String())
}

// execIn runs a command in a pod's container and returns stdout.
func (l *schedLab) execIn(pod string, cmd ...string) (string, error) {
	out, errOut, err := l.shOn(int(l.api.Load()), 60*time.Second, append([]string{"exec", pod, "--"}, cmd...)...)
	if err != nil {
		return out, fmt.Errorf("exec %s %v: %w: %s", pod, cmd, err, errOut)
	}
	return out, nil
}

const svcWebManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 6
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: ` + schedImage + `
          imagePullPolicy: IfNotPresent
          command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && touch /www/ready && exec httpd -f -p 8080 -h /www"]
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet: {path: /ready, port: http}
            periodSeconds: 1
            failureThreshold: 1
          resources:
            requests: {cpu: 10m, memory: 16Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
    - name: http
      port: 80
      targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: web-sticky
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP: {timeoutSeconds: 60}
  ports:
    - port: 80
      targetPort: 8080
`

const svcEchoManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 3
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: echo
          image: ` + schedImage + `
          imagePullPolicy: IfNotPresent
          command: ["netprobe", "udp-echo", "5353"]
          ports:
            - name: echo
              containerPort: 5353
              protocol: UDP
          resources:
            requests: {cpu: 10m, memory: 16Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports:
    - name: echo
      protocol: UDP
      port: 53
      targetPort: echo
`

// TestServicesNFTables runs the services checks with the kernel dataplane
// and the pod network's defaults (host-gw on the lab's one link);
// TestServicesUserspace with the userspace proxy on every host and the
// pods' traffic between hosts over the VXLAN overlay.
func TestServicesNFTables(t *testing.T) { testServices(t, "--lb-mode", "nftables") }

func TestServicesUserspace(t *testing.T) {
	testServices(t, "--lb-mode", "userspace", "--pod-network", "vxlan")
}

func testServices(t *testing.T, agentArgs ...string) {
	args := map[int][]string{}
	for i := 1; i <= 3; i++ {
		args[i] = agentArgs
	}
	l := newSchedLabOpts(t, runtimetest.ImageOptions{Files: map[string]string{"/bin/netprobe": string(netprobeBinary(t))}}, args)

	// lab-3 runs none of web's pods: its NodePort must still answer.
	if out, err := l.sh("node", "cordon", "lab-3"); err != nil {
		l.fatalf("cordon: %v\n%s", err, out)
	}
	l.apply(svcWebManifest)
	pods := l.waitPods(60*time.Second, "web", "6 web pods ready on lab-1 and lab-2", func(ps []schedPod) bool {
		return countReady(ps) == 6 && perNode(ps)["lab-3"] == 0
	})
	var names []string
	podIPs := map[string]string{}
	for _, p := range pods {
		names = append(names, p.Metadata.Name)
		podIPs[p.Metadata.Name] = p.Status.PodIP
	}
	sort.Strings(names)
	l.WaitFor(20*time.Second, "6 ready endpoints of web", func() (bool, string) {
		ips, out := l.readyEndpointIPs("web")
		return len(ips) == 6, out
	})
	web := l.service("web")
	vip := net.JoinHostPort(web.Spec.ClusterIP, "80")
	nodePort := web.Spec.Ports[0].NodePort
	t.Logf("web: virtual IP %s, node port %d, pods %v", web.Spec.ClusterIP, nodePort, names)

	t.Run("VirtualIPFromEveryHost", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			// The dataplane of a host may trail the endpoints by a sync.
			l.WaitFor(10*time.Second, fmt.Sprintf("lab-%d reaches %s", i, vip), func() (bool, string) {
				body, err := l.httpVia(context.Background(), i, vip)
				return err == nil, fmt.Sprint(body, err)
			})
			l.checkSpread(fmt.Sprintf("600 requests to %s from lab-%d", vip, i), l.countHTTP(i, vip, 600), names, 50, 150)
		}
	})

	t.Run("VirtualIPFromAPod", func(t *testing.T) {
		// A web pod itself: some requests come back to it (hairpin).
		out, err := l.execIn(names[0], "netprobe", "http-count", "600", "http://"+vip+"/")
		if err != nil {
			l.fatalf("%v", err)
		}
		counts := map[string]int{}
		if err := json.Unmarshal([]byte(out), &counts); err != nil {
			l.fatalf("netprobe output %q: %v", out, err)
		}
		l.checkSpread("600 requests to "+vip+" from pod "+names[0], counts, names, 50, 150)
	})

	t.Run("NodePortOnEveryHost", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			addr := net.JoinHostPort(l.Host(i).IP, fmt.Sprint(nodePort))
			l.checkSpread(fmt.Sprintf("600 requests from outside to lab-%d's node port %s", i, addr), l.countHTTP(0, addr, 600), names, 50, 150)
		}
	})
	if out, err := l.sh("node", "uncordon", "lab-3"); err != nil {
		l.fatalf("uncordon: %v\n%s", err, out)
	}

	t.Run("ClientIPAffinity", func(t *testing.T) {
		sticky := net.JoinHostPort(l.service("web-sticky").Spec.ClusterIP, "80")
		for i := 1; i <= 3; i++ {
			l.WaitFor(10*time.Second, fmt.Sprintf("lab-%d reaches %s", i, sticky), func() (bool, string) {
				body, err := l.httpVia(context.Background(), i, sticky)
				return err == nil, fmt.Sprint(body, err)
			})
			counts := l.countHTTP(i, sticky, 100)
			if len(counts) != 1 {
				l.fatalf("100 requests from lab-%d to %s (ClientIP affinity): %v; want one pod", i, sticky, counts)
			}
			t.Logf("100 requests from lab-%d to %s: %s", i, sticky, formatCounts(counts))
		}
	})

	t.Run("UDP", func(t *testing.T) {
		l.apply(svcEchoManifest)
		l.waitPods(60*time.Second, "echo", "3 echo pods running", func(ps []schedPod) bool { return countReady(ps) == 3 })
		l.WaitFor(20*time.Second, "3 ready endpoints of echo", func() (bool, string) {
			ips, out := l.readyEndpointIPs("echo")
			return len(ips) == 3, out
		})
		echo := net.JoinHostPort(l.service("echo").Spec.ClusterIP, "53")
		out, err := l.execIn(names[0], "netprobe", "udp-count", "90", echo)
		if err != nil {
			l.fatalf("%v", err)
		}
		counts := map[string]int{}
		if err := json.Unmarshal([]byte(out), &counts); err != nil {
			l.fatalf("netprobe output %q: %v", out, err)
		}
		for k, c := range counts {
			if !strings.HasPrefix(k, "echo-") || c < 15 {
				l.fatalf("90 UDP requests to %s from a pod: %v; want only echo pods, each at least 15", echo, counts)
			}
		}
		if len(counts) != 3 {
			l.fatalf("90 UDP requests to %s from a pod: %v; want all 3 echo pods", echo, counts)
		}
		t.Logf("90 UDP requests to %s from pod %s: %s", echo, names[0], formatCounts(counts))
	})

	t.Run("ServiceNames", func(t *testing.T) {
		out, err := l.execIn(names[1], "netprobe", "lookup", "web", "web.default.svc.cluster.local", "web.default")
		if err != nil {
			l.fatalf("%v", err)
		}
		for _, name := range []string{"web", "web.default.svc.cluster.local", "web.default"} {
			if !strings.Contains(out, name+" "+web.Spec.ClusterIP+"\n") {
				l.fatalf("lookup in a pod:\n%s\nwant %s → %s", out, name, web.Spec.ClusterIP)
			}
		}
		// busybox's own resolver with the pod's resolv.conf: it asks every
		// search domain at once and exits 1 when any says NXDOMAIN, so the
		// answer is checked, not the exit status.
		for _, name := range []string{"web", "web.default.svc.cluster.local"} {
			bb, err := l.execIn(names[1], "nslookup", name)
			if !strings.Contains(bb, "Name:\tweb.default.svc.cluster.local\nAddress: "+web.Spec.ClusterIP) {
				l.fatalf("busybox nslookup %s in a pod (%v):\n%s\nwant web.default.svc.cluster.local → %s", name, err, bb, web.Spec.ClusterIP)
			}
		}
		conf, _ := l.execIn(names[1], "cat", "/etc/resolv.conf")
		t.Logf("pod resolv.conf:\n%s\nnetprobe lookup:\n%s", conf, out)
	})

	t.Run("WithoutSelector", func(t *testing.T) {
		// A server in the root namespace, outside the cluster, on the lab
		// bridge's address.
		ln, err := net.Listen("tcp", net.JoinHostPort(l.Gateway, "0"))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "outside\n") })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		port := ln.Addr().(*net.TCPAddr).Port
		l.apply(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: outside
spec:
  ports:
    - port: 8000
---
apiVersion: v1
kind: Endpoints
metadata:
  name: outside
subsets:
  - addresses: [{ip: %s}]
    ports: [{port: %d}]
`, l.Gateway, port))
		addr := net.JoinHostPort(l.service("outside").Spec.ClusterIP, "8000")
		for i := 1; i <= 3; i++ {
			l.WaitFor(10*time.Second, fmt.Sprintf("lab-%d reaches the outside server through %s", i, addr), func() (bool, string) {
				body, err := l.httpVia(context.Background(), i, addr)
				return err == nil && body == "outside", fmt.Sprint(body, err)
			})
		}
		out, err := l.execIn(names[0], "netprobe", "http-count", "5", "http://"+addr+"/")
		if err != nil || !strings.Contains(out, `"outside":5`) {
			l.fatalf("from a pod through %s: %v %s", addr, err, out)
		}
	})

	t.Run("UnreadyPodLeaves", func(t *testing.T) {
		victim := names[2]
		// Requests from lab-3 until the victim has been out for 3 s.
		start := time.Now()
		if _, err := l.execIn(victim, "rm", "/www/ready"); err != nil {
			l.fatalf("%v", err)
		}
		unready := time.Since(start)
		var lastSeen time.Duration
		var n, errs int
		for end := time.Now().Add(6 * time.Second); time.Now().Before(end); n++ {
			body, err := l.httpVia(context.Background(), 3, vip)
			if err != nil {
				errs++
				continue
			}
			if body == victim {
				lastSeen = time.Since(start)
			}
		}
		t.Logf("pod %s made unready (exec took %v): last answer %v after; %d requests, %d failed", victim, unready.Round(time.Millisecond), lastSeen.Round(time.Millisecond), n, errs)
		if lastSeen > 2*time.Second+unready || errs > 0 {
			l.fatalf("unready pod %s still answered %v after the exec (want within 2 s), %d requests failed", victim, lastSeen, errs)
		}
	})

	t.Run("RollingUpdateUnderLoad", func(t *testing.T) {
		// Requests through the VIP from two hosts, a new connection each,
		// while every pod is replaced: none may fail (new pods get traffic
		// once ready; old ones leave the endpoints everywhere before their
		// SIGTERM).
		type result struct {
			n     int
			fails []string
		}
		stop := make(chan struct{})
		results := make(chan result, 2)
		for _, host := range []int{1, 3} {
			go func() {
				var r result
				deadline := time.Now().Add(3 * time.Minute)
				for time.Now().Before(deadline) {
					select {
					case <-stop:
						results <- r
						return
					default:
					}
					r.n++
					if _, err := l.httpVia(context.Background(), host, vip); err != nil {
						r.fails = append(r.fails, fmt.Sprintf("%s from lab-%d: %v", time.Now().Format("15:04:05.000"), host, err))
					}
				}
				results <- r
			}()
		}
		begin := time.Now()
		l.apply(strings.Replace(svcWebManifest, "          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          env: [{name: VERSION, value: \"2\"}]\n", 1))
		out, err, took := l.rolloutStatus("web", 3*time.Minute)
		// Keep the load on until the last old pod is gone from the store.
		l.waitPods(60*time.Second, "web", "only new web pods, 6 ready", func(ps []schedPod) bool {
			for _, p := range ps {
				if p.env("VERSION") != "2" {
					return false
				}
			}
			return countReady(ps) == 6 && len(ps) == 6
		})
		close(stop)
		total, fails := 0, []string{}
		for range 2 {
			r := <-results
			total += r.n
			fails = append(fails, r.fails...)
		}
		if err != nil {
			l.fatalf("rollout status: %v\n%s", err, out)
		}
		t.Logf("rolling update of 6 pods under load: rollout %v, all old pods gone after %v; %d requests through %s, %d failed",
			took.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond), total, vip, len(fails))
		if len(fails) > 0 {
			l.fatalf("%d of %d requests failed during the rolling update: %v", len(fails), total, fails)
		}
	})

	t.Run("DeadHostLeaves", func(t *testing.T) {
		var onLab2 []string
		for _, p := range l.waitPods(30*time.Second, "web", "web pods", func(ps []schedPod) bool { return true }) {
			if p.Spec.NodeName == "lab-2" {
				onLab2 = append(onLab2, p.Metadata.Name)
			}
		}
		begin := time.Now()
		l.PowerOff(2)
		type failure struct {
			at  time.Duration
			err string
		}
		var fails []failure
		var lastDead time.Duration
		okStreak := 0
		n := 0
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && okStreak < 200; n++ {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			body, err := l.httpVia(ctx, 1, vip)
			cancel()
			at := time.Since(begin)
			switch {
			case err != nil:
				fails = append(fails, failure{at, err.Error()})
				okStreak = 0
			case slices.Contains(onLab2, body):
				lastDead = at
				okStreak = 0
			default:
				okStreak++
			}
		}
		var lastFail time.Duration
		if len(fails) > 0 {
			lastFail = fails[len(fails)-1].at
		}
		t.Logf("lab-2 powered off (its pods %v): %d requests from lab-1, %d failed, the last failure %v after the kill, the last answer from a lab-2 pod %v after",
			onLab2, n, len(fails), lastFail.Round(time.Millisecond), lastDead.Round(time.Millisecond))
		if okStreak < 200 {
			l.fatalf("requests still failing 30 s after the kill: %v", fails[max(0, len(fails)-5):])
		}
		// Node-loss detection (memberlist) is ~3 s; the endpoints and every
		// host's dataplane follow within a sync.
		if lastFail > 6*time.Second {
			l.fatalf("requests failed until %v after the kill (want only during detection, ~3 s): %v", lastFail, fails)
		}
	})
}
