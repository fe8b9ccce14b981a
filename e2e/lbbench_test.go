package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
)

// wrkResult is what one wrk run printed.
type wrkResult struct {
	reqPerSec     float64
	p50, p99      time.Duration
	errors        string // wrk's error line, if any
	non2xx        int
	requestsTotal int
}

var (
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal    = regexp.MustCompile(`(\d+) requests in`)
	wrkLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkErrors   = regexp.MustCompile(`Socket errors:[^\n]*`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkDuration = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}
)

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	r.reqPerSec, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkTotal.FindStringSubmatch(out); m != nil {
		r.requestsTotal, _ = strconv.Atoi(m[1])
	}
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		d := time.Duration(v * float64(wrkDuration[m[3]]))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	r.errors = wrkErrors.FindString(out)
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	return r, nil
}

// BenchmarkLabLB prints requests/s and p50/p99 latency measured with wrk
// from a lab host to one pod on another host: directly, through the
// Service's virtual IP on a host whose agent programs nftables, through
// the virtual IP on a host whose agent runs the userspace proxy, and
// through HAProxy (TCP mode) in front of the same pod; each as a ratio to
// the direct figure, with keep-alive connections and with a new
// connection per request. Figures, not pass/fail: `make bench-lb` runs it.
func BenchmarkLabLB(b *testing.B) {
	for _, tool := range []string{"wrk", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("bench-lb needs %s (apt-get install %s; hack/deps.sh installs it)", tool, tool)
		}
	}
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("BENCH_LB_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	duration := "4s"
	if v := os.Getenv("BENCH_LB_DURATION"); v != "" {
		duration = v
	}
	l := newSchedLabOpts(b, runtimetest.ImageOptions{Files: map[string]string{"/bin/netprobe": string(netprobeBinary(b))}},
		// Host 3 balances in userspace; hosts 1 and 2 with nftables.
		map[int][]string{3: {"--lb-mode", "userspace"}})
	l.apply(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: lbbench
spec:
  replicas: 1
  selector:
    matchLabels: {app: lbbench}
  template:
    metadata:
      labels: {app: lbbench}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: {kubernetes.io/hostname: lab-2}
      containers:
        - name: web
          image: ` + schedImage + `
          imagePullPolicy: IfNotPresent
          # One port per path: a server's TIME_WAIT sockets from one
          # path's connections would refuse the next path's SYNs from the
          # same client ports (other timestamps), which is no property
          # of either path.
          command: ["netprobe", "http-serve", "8080", "8081", "8082"]
          ports: [{name: http, containerPort: 8081}]
          readinessProbe:
            tcpSocket: {port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: lbbench
spec:
  selector: {app: lbbench}
  ports: [{port: 80, targetPort: http}]
`)
	pods := l.waitPods(60*time.Second, "lbbench", "the lbbench pod ready", func(ps []schedPod) bool { return countReady(ps) == 1 })
	podAddr := net.JoinHostPort(pods[0].Status.PodIP, "8080")   // direct
	haBackend := net.JoinHostPort(pods[0].Status.PodIP, "8082") // HAProxy
	// The Service's targetPort is 8081 (http).
	l.WaitFor(20*time.Second, "1 ready endpoint of lbbench", func() (bool, string) {
		ips, out := l.readyEndpointIPs("lbbench")
		return len(ips) == 1, out
	})
	vip := net.JoinHostPort(l.service("lbbench").Spec.ClusterIP, "80")
	for _, i := range []int{1, 3} {
		l.WaitFor(20*time.Second, fmt.Sprintf("lab-%d reaches %s", i, vip), func() (bool, string) {
			body, err := l.httpVia(context.Background(), i, vip)
			return err == nil, fmt.Sprint(body, err)
		})
	}

	// HAProxy in lab-1's namespace, TCP mode, in front of the same pod.
	haAddr := net.JoinHostPort(l.Host(1).IP, "18080")
	cfg := filepath.Join(b.TempDir(), "haproxy.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend bench
    bind %s
    default_backend pod
backend pod
    server pod %s
`, haAddr, haBackend)), 0o644)
	ha := exec.Command("nsenter", "--net=/run/netns/"+l.Host(1).NetNS, "haproxy", "-db", "-f", cfg)
	ha.Stdout, ha.Stderr = os.Stderr, os.Stderr
	if err := ha.Start(); err != nil {
		b.Fatalf("haproxy: %v", err)
	}
	b.Cleanup(func() { ha.Process.Kill(); ha.Wait() })
	l.WaitFor(10*time.Second, "haproxy answers", func() (bool, string) {
		body, err := l.httpVia(context.Background(), 1, haAddr)
		return err == nil, fmt.Sprint(body, err)
	})

	type path struct{ name, host, addr string }
	paths := []path{
		{"direct to the pod (from lab-1)", "1", podAddr},
		{"virtual IP, nftables (lab-1)", "1", vip},
		{"virtual IP, userspace proxy (lab-3)", "3", vip},
		{"HAProxy TCP mode (lab-1)", "1", haAddr},
	}
	type mode struct {
		name string
		args []string
	}
	modes := []mode{
		{"keep-alive", nil},
		{"new connection per request", []string{"-H", "Connection: close"}},
	}
	results := map[string][]wrkResult{}
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		for _, m := range modes {
			for _, p := range paths {
				args := append([]string{"--net=/run/netns/" + l.Host(hostIndex("lab-"+p.host)).NetNS,
					"wrk", "-t", "1", "-c", "16", "-d", duration, "--latency"}, m.args...)
				args = append(args, "http://"+p.addr+"/")
				out, err := exec.Command("nsenter", args...).CombinedOutput()
				if err != nil {
					b.Fatalf("wrk %v: %v\n%s", args, err, out)
				}
				res, err := parseWrk(string(out))
				if err != nil {
					b.Fatal(err)
				}
				if res.errors != "" || res.non2xx > 0 {
					b.Logf("%s, %s: %s non-2xx %d", p.name, m.name, res.errors, res.non2xx)
				}
				key := m.name + "|" + p.name
				results[key] = append(results[key], res)
			}
		}
	}
	b.StopTimer()
	// The median round of each, by requests/s.
	median := func(rs []wrkResult) wrkResult {
		s := append([]wrkResult(nil), rs...)
		sort.Slice(s, func(i, j int) bool { return s[i].reqPerSec < s[j].reqPerSec })
		return s[len(s)/2]
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nbench-lb: wrk -t1 -c16 -d%s, %d rounds (median by requests/s), one pod (netprobe http-serve, a port per path) on lab-2, %s\n", duration, rounds, time.Now().Format("2006-01-02"))
	fmt.Fprintf(&sb, "| connections | path | requests/s | ratio to direct | p50 | p99 |\n|---|---|---:|---:|---:|---:|\n")
	for _, m := range modes {
		direct := median(results[m.name+"|"+paths[0].name])
		for _, p := range paths {
			res := median(results[m.name+"|"+p.name])
			fmt.Fprintf(&sb, "| %s | %s | %.0f | %.2f | %v | %v |\n", m.name, p.name, res.reqPerSec, res.reqPerSec/direct.reqPerSec,
				res.p50.Round(time.Microsecond), res.p99.Round(time.Microsecond))
		}
	}
	fmt.Print(sb.String())
	if out := os.Getenv("BENCH_LB_OUT"); out != "" {
		os.WriteFile(out, []byte(sb.String()), 0o644)
	}
}
