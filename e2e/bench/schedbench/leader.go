package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // profiles of the leader (-profile)
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/shoalproj/shoal/agent"
	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/cluster"
)

// leaderSubcommand makes this program run the leader: one shoal agent
// (agent.Run, as `shoal agent --init --run-pods=false` does) in a process
// of its own, so that its CPU time and memory are its own, with a small
// HTTP server on a loopback port for its Go heap, its raft counters and
// its CPU profile. With --join it runs a follower (-voters 3).
const leaderSubcommand = "__leader"

// leaderName is the leader's node name.
const leaderName = "schedbench-leader"

// leaderStats is what the leader's stats endpoint answers.
type leaderStats struct {
	HeapBytes     uint64  `json:"heapBytes"`     // heap objects now (live and not yet swept)
	HeapPeakBytes uint64  `json:"heapPeakBytes"` // the most HeapBytes seen, sampled every 100 ms
	GoTotalBytes  uint64  `json:"goTotalBytes"`  // all memory the Go runtime mapped
	GCCPUSeconds  float64 `json:"gcCpuSeconds"`  // CPU the garbage collector used (estimate of the runtime)
	RaftEntries   float64 `json:"raftEntries"`   // raft entries of writes proposed
	RaftWrites    float64 `json:"raftWrites"`    // writes they carried
	ApplySeconds  float64 `json:"applySeconds"`  // sum over entries of propose → applied
	Goroutines    int     `json:"goroutines"`
}

func leaderMain(args []string) int {
	var dataDir, addr, statsAddr, clientConfig, logLevel, name, join, token string
	fs := flag.NewFlagSet("schedbench "+leaderSubcommand, flag.ContinueOnError)
	fs.StringVar(&dataDir, "data-dir", "", "data directory")
	fs.StringVar(&name, "node-name", leaderName, "node name")
	fs.StringVar(&join, "join", "", "join the cluster at HOST:PORT (a follower) instead of creating it")
	fs.StringVar(&token, "token", "", "join token")
	fs.StringVar(&addr, "advertise-addr", "", "loopback address of the agent")
	fs.StringVar(&statsAddr, "stats-addr", "", "serve /schedbench/stats and net/http/pprof here")
	fs.StringVar(&clientConfig, "client-config", "", "where --init writes the admin credentials")
	fs.StringVar(&logLevel, "log-level", "warn", "log level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "--log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	peak := newHeapSampler(ctx)
	var profMu sync.Mutex
	var profFile *os.File
	http.HandleFunc("/schedbench/stats", func(w http.ResponseWriter, r *http.Request) {
		st := peak.stats()
		st.Goroutines = runtime.NumGoroutine()
		if mfs, err := reg.Gather(); err == nil {
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					switch mf.GetName() {
					case "shoal_raft_entry_writes":
						st.RaftEntries = float64(m.GetHistogram().GetSampleCount())
						st.RaftWrites = m.GetHistogram().GetSampleSum()
					case "shoal_raft_apply_seconds":
						st.ApplySeconds = m.GetHistogram().GetSampleSum()
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	// POST ?start=PATH starts a CPU profile into PATH; POST ?stop=1 ends it.
	http.HandleFunc("/schedbench/cpuprofile", func(w http.ResponseWriter, r *http.Request) {
		profMu.Lock()
		defer profMu.Unlock()
		if path := r.URL.Query().Get("start"); path != "" {
			f, err := os.Create(path)
			if err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
				}
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			profFile = f
			return
		}
		if profFile != nil {
			pprof.StopCPUProfile()
			profFile.Close()
			profFile = nil
		}
	})
	srv := &http.Server{Addr: statsAddr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", statsAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stats listener:", err)
		return 1
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	err = agent.Run(ctx, agent.Config{
		Cluster: cluster.Config{
			Init: join == "", Join: join, Token: token, DataDir: dataDir, AdvertiseAddr: addr, NodeName: name,
			Version: "schedbench", Registry: reg,
		},
		ClientConfigPath: clientConfig,
		Services:         agent.ServicesConfig{Mode: agent.LBModeNone},
		Logger:           log,
		OnInit:           func(string) { fmt.Println("cluster created") },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// heapSampler keeps the most heap seen, sampled every 100 ms (without
// stopping the world: runtime/metrics).
type heapSampler struct {
	mu      sync.Mutex
	peak    uint64
	samples []metrics.Sample
}

func newHeapSampler(ctx context.Context) *heapSampler {
	h := &heapSampler{samples: []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
	}}
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			h.stats()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) stats() leaderStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	metrics.Read(h.samples)
	var st leaderStats
	if v := h.samples[0].Value; v.Kind() == metrics.KindUint64 {
		st.HeapBytes = v.Uint64()
	}
	if v := h.samples[1].Value; v.Kind() == metrics.KindUint64 {
		st.GoTotalBytes = v.Uint64()
	}
	if v := h.samples[2].Value; v.Kind() == metrics.KindFloat64 {
		st.GCCPUSeconds = v.Float64()
	}
	h.peak = max(h.peak, st.HeapBytes)
	st.HeapPeakBytes = h.peak
	return st
}

// ---------------------------------------------------------------- the parent's side

// leaderProc is a running agent (the leader, or a follower) as this
// program sees it.
type leaderProc struct {
	name      string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
	logPath   string
	statsAddr string
	conn      *grpc.ClientConn
	api       api.ShoalClient
}

// startAgent starts one agent named name on addr with its data under
// dir/name; extra are --init's or --join's flags.
func startAgent(dir, name, addr, statsAddr, logLevel string, extra ...string) (*leaderProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	l := &leaderProc{name: name, logPath: filepath.Join(dir, name+".log"), statsAddr: statsAddr, done: make(chan struct{})}
	lf, err := os.Create(l.logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{leaderSubcommand, "--data-dir", filepath.Join(dir, name), "--node-name", name, "--advertise-addr", addr,
		"--stats-addr", statsAddr, "--client-config", filepath.Join(dir, "client.yaml"), "--log-level", logLevel}, extra...)
	l.cmd = exec.Command(self, args...)
	l.cmd.Stdout, l.cmd.Stderr = lf, lf
	// A process group of its own (Ctrl-C reaches only this program, which
	// stops the agents in order), killed by the kernel should this
	// program die first.
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := l.cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	go func() {
		l.err = l.cmd.Wait()
		lf.Close()
		close(l.done)
	}()
	return l, nil
}

// startLeader starts the leader and waits until its API answers and its
// Node is Ready.
func startLeader(ctx context.Context, dir, addr, statsAddr, logLevel string, timeout time.Duration) (*leaderProc, error) {
	l, err := startAgent(dir, leaderName, addr, statsAddr, logLevel)
	if err != nil {
		return nil, err
	}
	clientConfig := filepath.Join(dir, "client.yaml")
	deadline, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "nothing yet"
	for {
		if l.exited() {
			return l, fmt.Errorf("leader exited: %v; its log:\n%s", l.err, l.tail(20))
		}
		if ok, seen := l.readyOnce(deadline, clientConfig); ok {
			return l, nil
		} else if seen != "" {
			last = seen
		}
		select {
		case <-deadline.Done():
			return l, fmt.Errorf("leader not ready within %v (last: %s); its log:\n%s", timeout, last, l.tail(20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startFollowers joins one agent per address to the leader's cluster and
// waits until all are Ready voters.
func startFollowers(ctx context.Context, l *leaderProc, dir string, addrs []string, logLevel string, timeout time.Duration) ([]*leaderProc, error) {
	deadline, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tok, err := l.api.Token(deadline, &api.TokenRequest{})
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	leaderAPI := net.JoinHostPort(addrFrom(l.statsAddr), strconv.Itoa(cluster.DefaultAPIPort))
	var out []*leaderProc
	for i, a := range addrs {
		f, err := startAgent(dir, fmt.Sprintf("schedbench-follower-%d", i+1), a, net.JoinHostPort(a, statsPort), logLevel,
			"--join", leaderAPI, "--token", tok.GetToken())
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
	last := "nothing yet"
	for {
		for _, f := range out {
			if f.exited() {
				return out, fmt.Errorf("%s exited: %v; its log:\n%s", f.name, f.err, f.tail(20))
			}
		}
		qctx, qcancel := context.WithTimeout(deadline, 2*time.Second)
		list, err := l.api.List(qctx, &api.ListRequest{Kind: "Node"})
		qcancel()
		if err == nil {
			voters, seen := 0, []string{}
			for _, o := range list.Items {
				n := o.GetNode()
				seen = append(seen, n.GetMetadata().GetName()+"="+n.GetStatus().GetRaftRole())
				for _, c := range n.GetStatus().GetConditions() {
					if c.Type == "Ready" && c.Status == "True" && n.GetStatus().GetRaftRole() == cluster.RoleVoter {
						voters++
					}
				}
			}
			if voters == len(addrs) {
				return out, nil
			}
			last = strings.Join(seen, " ")
		}
		select {
		case <-deadline.Done():
			return out, fmt.Errorf("no %d Ready voters beside the leader within %v (last: %s)", len(addrs), timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// statsPort is where each agent serves its stats and profiles.
const statsPort = "6061"

func addrFrom(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

func (l *leaderProc) readyOnce(ctx context.Context, clientConfig string) (bool, string) {
	if l.conn == nil {
		cfg, err := client.LoadConfig(clientConfig)
		if err != nil {
			return false, "no client configuration yet"
		}
		t, err := cfg.TLSConfig()
		if err != nil {
			return false, err.Error()
		}
		host, _, _ := net.SplitHostPort(cfg.Server)
		t.ServerName = host
		conn, err := grpc.NewClient(cfg.Server, grpc.WithTransportCredentials(credentials.NewTLS(t)),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return false, err.Error()
		}
		l.conn, l.api = conn, api.NewShoalClient(conn)
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	obj, err := l.api.Get(qctx, &api.GetRequest{Kind: "Node", Name: leaderName})
	if err != nil {
		return false, "node: " + err.Error()
	}
	n := obj.GetNode()
	for _, c := range n.GetStatus().GetConditions() {
		if c.Type == "Ready" && c.Status == "True" && n.GetStatus().GetRaftRole() == cluster.RoleLeader {
			return true, ""
		}
	}
	return false, "leader node not Ready yet"
}

func (l *leaderProc) exited() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// stop ends the leader: SIGTERM, then SIGKILL after 10 s.
func (l *leaderProc) stop() {
	if l.conn != nil {
		l.conn.Close()
	}
	if l.cmd.Process == nil || l.exited() {
		return
	}
	_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-l.done:
		return
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "schedbench: leader (pid %d) did not exit after SIGKILL\n", l.cmd.Process.Pid)
	}
}

// cpu is the leader process's CPU time (user and system) so far.
func (l *leaderProc) cpu() time.Duration {
	return procCPU(l.cmd.Process.Pid)
}

// procCPU reads a process's user and system time from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from the ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const ticksPerSecond = 100                  // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// rss returns the leader's resident memory now and at its peak (VmRSS,
// VmHWM), in bytes.
func (l *leaderProc) rss() (now, peak uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", l.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			now = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return now, peak
}

// stats asks the leader for its heap and raft counters.
func (l *leaderProc) stats(ctx context.Context) (leaderStats, error) {
	var st leaderStats
	err := l.httpDo(ctx, http.MethodGet, "/schedbench/stats", func(r io.Reader) error {
		return json.NewDecoder(r).Decode(&st)
	})
	return st, err
}

// profile starts (path != "") or stops (path == "") the leader's CPU
// profile.
func (l *leaderProc) profile(ctx context.Context, path string) error {
	q := "?stop=1"
	if path != "" {
		q = "?start=" + path
	}
	return l.httpDo(ctx, http.MethodPost, "/schedbench/cpuprofile"+q, nil)
}

// saveHeap writes the leader's heap profile to path.
func (l *leaderProc) saveHeap(ctx context.Context, path string) error {
	return l.httpDo(ctx, http.MethodGet, "/debug/pprof/heap", func(r io.Reader) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}

func (l *leaderProc) httpDo(ctx context.Context, method, path string, body func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+l.statsAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if body == nil {
		return nil
	}
	return body(resp.Body)
}

// tail is the end of the leader's log.
func (l *leaderProc) tail(n int) string {
	b, err := os.ReadFile(l.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
