// Package lab runs a multi-host shoal cluster on one Linux machine for
// end-to-end tests: each host is a network namespace joined to a bridge in
// the root namespace by a veth pair, with its own address, and runs its own
// `shoal agent` process (which starts its own containerd under the host's
// data directory). Everything a lab makes is removed when the test ends,
// also when it fails; a lab left by a test process that died (go test
// timeout, SIGKILL) is removed by the next lab that starts.
package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configure a lab.
type Options struct {
	// Bin is the shoal binary; default $SHOAL_BIN.
	Bin string
	// AgentArgs are added to every agent's first start (e.g. --log-level).
	AgentArgs []string
	// InitArgs are added to host 1's --init start only.
	InitArgs []string
}

// Lab is a running multi-host cluster.
type Lab struct {
	t          testing.TB
	bin        string
	rec        *record
	Subnet     string // e.g. 10.77.42.0/24
	Gateway    string // the bridge's address
	ClientConf string // the admin client config written by host 1's --init
	Hosts      []*Host
	agentArgs  []string

	cleanOnce sync.Once
}

// Host is one lab host (1-based in the Lab's methods).
type Host struct {
	Index   int
	NetNS   string // name under /run/netns
	Veth    string // the root namespace's end of its veth pair
	IP      string
	Node    string // its node name
	DataDir string
	LogPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	stdout *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RequireRoot skips the test when not run as root, or fails it when CI is
// set; also when nsenter or containerd is missing.
func RequireRoot(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (network namespaces, bridges, containerd)"
	} else {
		for _, b := range []string{"nsenter", "containerd", "containerd-shim-runc-v2", "runc"} {
			if _, err := exec.LookPath(b); err != nil {
				why = fmt.Sprintf("needs %s in PATH (apt-get install util-linux containerd runc)", b)
				break
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("lab: this test %s; CI is set, so it fails instead of skipping", why)
	}
	t.Skipf("lab: this test %s; skipped (set CI to make it fail)", why)
}

var (
	liveMu sync.Mutex
	live   = map[*Lab]bool{}
	sigOne sync.Once
)

// handleSignals tears down every live lab on SIGINT/SIGTERM, then exits.
func handleSignals() {
	sigOne.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		go func() {
			s := <-ch
			fmt.Fprintf(os.Stderr, "lab: %v: tearing down the labs\n", s)
			liveMu.Lock()
			labs := make([]*Lab, 0, len(live))
			for l := range live {
				labs = append(labs, l)
			}
			liveMu.Unlock()
			stderr := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
			for _, l := range labs {
				l.cleanup(stderr, stderr)
			}
			os.Exit(130)
		}()
	})
}

// New brings up n hosts, inits the cluster on host 1 and joins the others,
// and waits until `node ls` shows them all Ready.
func New(t testing.TB, n int, opts Options) *Lab {
	t.Helper()
	RequireRoot(t)
	if n < 1 {
		t.Fatal("lab: need at least one host")
	}
	bin := opts.Bin
	if bin == "" {
		bin = os.Getenv("SHOAL_BIN")
	}
	if bin == "" {
		t.Fatal("lab: no shoal binary (Options.Bin or $SHOAL_BIN)")
	}
	handleSignals()
	sweepStale(t.Logf)

	id := randomID(6)
	// A short directory: containerd's socket path must stay under 104 bytes.
	dir, err := os.MkdirTemp("", "shoal-lab-"+id+"-")
	if err != nil {
		t.Fatal(err)
	}
	x, err := pickSubnet()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	l := &Lab{
		t:       t,
		bin:     bin,
		Subnet:  fmt.Sprintf("10.77.%d.0/24", x),
		Gateway: fmt.Sprintf("10.77.%d.1", x),
		rec: &record{ID: id, OwnerPID: os.Getpid(), OwnerStart: procStart(os.Getpid()), Dir: dir,
			Bridge: "shlab" + id + "br"},
		ClientConf: filepath.Join(dir, "client.config"),
		agentArgs:  opts.AgentArgs,
	}
	for i := 1; i <= n; i++ {
		h := &Host{
			Index:   i,
			NetNS:   fmt.Sprintf("shlab-%s-%d", id, i),
			Veth:    fmt.Sprintf("shl%s-%d", id, i),
			IP:      fmt.Sprintf("10.77.%d.%d", x, 10+i),
			Node:    fmt.Sprintf("lab-%d", i),
			DataDir: filepath.Join(dir, fmt.Sprintf("h%d", i)),
		}
		h.LogPath = h.DataDir + ".log"
		l.Hosts = append(l.Hosts, h)
		l.rec.Hosts = append(l.rec.Hosts, hostRecord{NetNS: h.NetNS, Veth: h.Veth, DataDir: h.DataDir})
	}
	if err := l.rec.save(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("lab: record: %v", err)
	}
	liveMu.Lock()
	live[l] = true
	liveMu.Unlock()
	t.Cleanup(func() {
		if t.Failed() {
			l.dumpLogs()
		}
		l.cleanup(t.Logf, t.Errorf)
	})

	start := time.Now()
	if err := createBridge(l.rec.Bridge, net.ParseIP(l.Gateway)); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts {
		if err := createNamedNetNS(h.NetNS); err != nil {
			t.Fatal(err)
		}
		if err := wireHost(l.rec.Bridge, h.NetNS, h.Veth, net.ParseIP(h.IP), net.ParseIP(l.Gateway)); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(h.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("lab %s: bridge %s %s, %d hosts wired in %v", id, l.rec.Bridge, l.Subnet, n, time.Since(start).Round(time.Millisecond))

	// Host 1 creates the cluster; its stdout has the join command.
	h1 := l.Hosts[0]
	l.startAgent(h1, append(append([]string{"--init"}, opts.InitArgs...), opts.AgentArgs...))
	var join []string
	l.WaitFor(60*time.Second, "the join line from host 1's --init", func() (bool, string) {
		out := h1.stdout.String()
		i := strings.Index(out, "--join ")
		if i < 0 {
			return false, out
		}
		join = strings.Fields(strings.SplitN(out[i:], "\n", 2)[0])
		return len(join) == 4, out
	})
	for _, h := range l.Hosts[1:] {
		l.startAgent(h, append(append([]string{}, join...), opts.AgentArgs...))
	}
	l.WaitFor(90*time.Second, fmt.Sprintf("%d nodes Ready in node ls", n), func() (bool, string) {
		out, err := l.Shoal("node", "ls")
		if err != nil {
			return false, out + err.Error()
		}
		ready := 0
		for _, h := range l.Hosts {
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == h.Node && f[1] == "Ready" {
					ready++
				}
			}
		}
		return ready == n, out
	})
	t.Logf("lab %s: %d-node cluster up in %v", id, n, time.Since(start).Round(time.Millisecond))
	return l
}

// Host returns host i (1-based).
func (l *Lab) Host(i int) *Host {
	if i < 1 || i > len(l.Hosts) {
		l.t.Fatalf("lab: no host %d", i)
	}
	return l.Hosts[i-1]
}

// startAgent runs `shoal agent` in the host's namespace with the lab's
// fixed flags plus extra.
func (l *Lab) startAgent(h *Host, extra []string) {
	l.t.Helper()
	args := []string{"--net=" + filepath.Join("/run/netns", h.NetNS), "--", l.bin, "agent",
		"--data-dir", h.DataDir, "--advertise-addr", h.IP, "--node-name", h.Node,
		// Nothing answers there, so the agent starts its own containerd
		// under its data directory.
		"--containerd-socket", filepath.Join(h.DataDir, "no-system-containerd.sock")}
	args = append(args, extra...)
	cmd := exec.Command("nsenter", args...)
	cmd.Env = append(os.Environ(), "SHOAL_CONFIG="+l.ClientConf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncBuffer{}
	cmd.Stdout = out
	logf, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== lab: %s start: nsenter %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("lab: start agent on host %d: %v", h.Index, err)
	}
	// nsenter execs the agent: the PID is the agent's.
	if err := os.WriteFile(agentPIDFile(h.DataDir), []byte(fmt.Sprint(cmd.Process.Pid)), 0o600); err != nil {
		l.t.Logf("lab: agent pid file: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		if lf, e := os.OpenFile(h.LogPath, os.O_WRONLY|os.O_APPEND, 0); e == nil {
			fmt.Fprintf(lf, "=== lab: %s agent exited: %v\n", time.Now().Format(time.RFC3339Nano), err)
			lf.Close()
		}
		close(exited)
	}()
	h.mu.Lock()
	h.cmd, h.exited, h.stdout = cmd, exited, out
	h.mu.Unlock()
}

// Kill sends SIGKILL to host i's agent and waits for it to exit; its
// containerd and containers keep running, as after an agent crash.
func (l *Lab) Kill(i int) {
	h := l.Host(i)
	h.mu.Lock()
	cmd, exited := h.cmd, h.exited
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		l.t.Fatalf("lab: agent of host %d did not exit after SIGKILL", i)
	}
}

// KillHost kills host i's agent and its containerd with SIGKILL (the
// containers, kept by their shims, stay).
func (l *Lab) KillHost(i int) {
	l.Kill(i)
	killContainerd(l.Host(i).DataDir)
}

// Restart kills host i's agent if it runs and starts it again from its
// data directory alone.
func (l *Lab) Restart(i int) {
	l.t.Helper()
	h := l.Host(i)
	l.Kill(i)
	l.startAgent(h, l.agentArgs)
}

// Running reports whether host i's agent process runs.
func (l *Lab) Running(i int) bool {
	h := l.Host(i)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exited == nil {
		return false
	}
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// Cut takes host i off the lab network (its veth down in the root
// namespace); Heal brings it back.
func (l *Lab) Cut(i int) {
	l.t.Helper()
	if err := setLink(l.Host(i).Veth, false); err != nil {
		l.t.Fatal(err)
	}
}

// Heal undoes Cut.
func (l *Lab) Heal(i int) {
	l.t.Helper()
	if err := setLink(l.Host(i).Veth, true); err != nil {
		l.t.Fatal(err)
	}
}

// Run runs a command in host i's network namespace (through nsenter, which
// keeps the cgroup mounts, unlike `ip netns exec`) and returns its combined
// output.
func (l *Lab) Run(i int, cmd ...string) (string, error) {
	return l.RunContext(context.Background(), i, cmd...)
}

// RunContext is Run with a context; it has a 60 s limit of its own.
func (l *Lab) RunContext(ctx context.Context, i int, cmd ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	args := append([]string{"--net=" + filepath.Join("/run/netns", l.Host(i).NetNS), "--"}, cmd...)
	c := exec.CommandContext(ctx, "nsenter", args...)
	c.Env = append(os.Environ(), "SHOAL_CONFIG="+l.ClientConf)
	out, err := c.CombinedOutput()
	return string(out), err
}

// Shoal runs the CLI from the root namespace against host 1's API (the
// client config --init wrote) and returns its combined output.
func (l *Lab) Shoal(args ...string) (string, error) {
	return l.ShoalContext(context.Background(), args...)
}

// ShoalContext is Shoal with a context; it has a 60 s limit of its own.
func (l *Lab) ShoalContext(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c := l.ShoalCmd(ctx, args...)
	out, err := c.CombinedOutput()
	return string(out), err
}

// ShoalCmd returns the command of Shoal, not started, for streaming.
func (l *Lab) ShoalCmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, l.bin, args...)
	c.Env = append(os.Environ(), "SHOAL_CONFIG="+l.ClientConf)
	return c
}

// WaitFor polls cond every 100 ms until it holds; after timeout the test
// fails with what cond last saw and the tails of the agents' logs.
func (l *Lab) WaitFor(timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	l.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("lab: %s: not within %v; last seen:\n%s\n%s", what, timeout, seen, l.LogTails(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// LogTails returns the last n lines of every agent's log.
func (l *Lab) LogTails(n int) string {
	var b strings.Builder
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "--- agent log of host %d (%s, %s), last %d lines:\n%s\n", h.Index, h.Node, h.IP, n, tailFile(h.LogPath, n))
	}
	return b.String()
}

func (l *Lab) dumpLogs() {
	l.t.Logf("%s", l.LogTails(40))
	for _, h := range l.Hosts {
		l.t.Logf("--- containerd log of host %d, last 10 lines:\n%s", h.Index, tailFile(filepath.Join(h.DataDir, "containerd", "containerd.log"), 10))
	}
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanup removes everything the lab made (once).
func (l *Lab) cleanup(logf, errf func(string, ...any)) {
	l.cleanOnce.Do(func() {
		start := time.Now()
		for _, h := range l.Hosts {
			h.mu.Lock()
			cmd, exited := h.cmd, h.exited
			h.mu.Unlock()
			if cmd != nil {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
				}
			}
		}
		for _, err := range teardown(l.rec, logf) {
			errf("lab: cleanup: %v", err)
		}
		liveMu.Lock()
		delete(live, l)
		liveMu.Unlock()
		logf("lab %s: torn down in %v", l.rec.ID, time.Since(start).Round(time.Millisecond))
	})
}

// Dial opens a TCP connection to addr (HOST:PORT, numeric) from inside host
// i's network namespace.
func (l *Lab) Dial(ctx context.Context, i int, addr string) (net.Conn, error) {
	return dialIn(ctx, filepath.Join("/run/netns", l.Host(i).NetNS), addr)
}

// HTTPGet fetches url from inside host i's network namespace and returns
// the body.
func (l *Lab) HTTPGet(i int, url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return l.Dial(ctx, i, addr)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %s", resp.Status)
	}
	return string(b), err
}

// CurrentLog returns host i's agent log since its latest start.
func (l *Lab) CurrentLog(i int) string {
	b, _ := os.ReadFile(l.Host(i).LogPath)
	s := string(b)
	if j := strings.LastIndex(s, "=== lab: "); j >= 0 && strings.Contains(s[j:min(len(s), j+80)], " start: ") {
		return s[j:]
	}
	return s
}
