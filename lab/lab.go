// Package lab builds a multi-host shoal cluster on one Linux machine: each
// host is a network namespace joined to a bridge in the root namespace by
// a veth pair, with its own address on a private subnet, running its own
// `shoal agent` process (which starts its own containerd under the host's
// data directory). The e2e tests use it through e2e/lab; `shoal lab up`
// and `shoal lab down` use it for people. Everything a lab makes is named
// in a record written before it is made, so that teardown can remove all
// of it from the record alone, also after the process that made it died.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options describe a lab.
type Options struct {
	// Bin is the shoal binary every host runs.
	Bin string
	// Hosts is how many hosts to make.
	Hosts int
	// Dir holds the hosts' data directories and logs; it is made, and
	// removed by teardown.
	Dir string
	// ID is a short name every namespace and link of the lab contains.
	ID string
	// Bridge is the root namespace's bridge; NetNS, Veth and Node name
	// host i (1-based): its namespace, the root end of its veth pair and
	// its node.
	Bridge string
	NetNS  func(i int) string
	Veth   func(i int) string
	Node   func(i int) string
	// SubnetOctet picks the lab subnet 10.77.X.0/24; a negative value picks
	// a free one at random (1-250).
	SubnetOctet int
	// RecordPath is where the lab's record is kept. Owned labs (Owned set)
	// are recorded with the calling process as owner: a later lab sweeps
	// the owned labs whose owner died.
	RecordPath string
	Owned      bool
	// ClientConf is where host 1's --init writes the admin client config.
	ClientConf string
	// AgentArgs are added to every agent's start; InitArgs to host 1's
	// --init start only.
	AgentArgs, InitArgs []string
	// HostArgs are added to host i's starts (1-based), e.g. another
	// --lb-mode on one host.
	HostArgs map[int][]string
	// Detach makes the agents outlive this process (own session, not
	// waited for), as `shoal lab up` needs.
	Detach bool
	// Logf reports progress; nil discards it.
	Logf func(string, ...any)
}

// Lab is a set of hosts on one bridge.
type Lab struct {
	opts    Options
	rec     *record
	Subnet  string // e.g. 10.77.42.0/24
	Gateway string // the bridge's address
	Hosts   []*Host

	cleanOnce sync.Once
	cleanErrs []error
}

// Host is one lab host.
type Host struct {
	Index   int // 1-based
	NetNS   string
	Veth    string
	IP      string
	Node    string
	DataDir string
	LogPath string

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{} // nil for a detached agent
}

// TestRecordPath is the record of an owned lab with this id.
func TestRecordPath(id string) string { return filepath.Join(recordDir, id+".json") }

// Create wires the hosts (bridge, namespaces, veths, addresses) without
// starting anything in them. On error, what was made is torn down.
func Create(o Options) (*Lab, error) {
	if o.Hosts < 1 {
		return nil, errors.New("lab: need at least one host")
	}
	if o.Bin == "" {
		return nil, errors.New("lab: no shoal binary")
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Owned {
		sweepStale(o.Logf)
	}
	x := o.SubnetOctet
	if x < 0 {
		b, err := pickSubnet()
		if err != nil {
			return nil, err
		}
		x = int(b)
	} else if subnetInUse(byte(x)) {
		return nil, fmt.Errorf("lab: 10.77.%d.0/24 is already on a link of this machine (is a lab up already?)", x)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l := &Lab{
		opts:    o,
		Subnet:  fmt.Sprintf("10.77.%d.0/24", x),
		Gateway: fmt.Sprintf("10.77.%d.1", x),
		rec: &record{ID: o.ID, Dir: o.Dir, Bridge: o.Bridge, ClientConf: o.ClientConf,
			path: o.RecordPath},
	}
	l.rec.Subnet = l.Subnet
	if o.Owned {
		l.rec.OwnerPID, l.rec.OwnerStart = os.Getpid(), procStart(os.Getpid())
	}
	for i := 1; i <= o.Hosts; i++ {
		h := &Host{
			Index:   i,
			NetNS:   o.NetNS(i),
			Veth:    o.Veth(i),
			IP:      fmt.Sprintf("10.77.%d.%d", x, 10+i),
			Node:    o.Node(i),
			DataDir: filepath.Join(o.Dir, fmt.Sprintf("h%d", i)),
		}
		h.LogPath = h.DataDir + ".log"
		l.Hosts = append(l.Hosts, h)
		l.rec.Hosts = append(l.rec.Hosts, hostRecord{NetNS: h.NetNS, Veth: h.Veth, DataDir: h.DataDir})
	}
	if err := l.rec.save(); err != nil {
		os.RemoveAll(o.Dir)
		return nil, fmt.Errorf("lab: record: %w", err)
	}
	if err := l.wire(); err != nil {
		l.Teardown()
		return nil, err
	}
	return l, nil
}

func (l *Lab) wire() error {
	start := time.Now()
	if err := createBridge(l.rec.Bridge, net.ParseIP(l.Gateway)); err != nil {
		return err
	}
	if err := allowForward(l.rec.Bridge); err != nil {
		return err
	}
	for _, h := range l.Hosts {
		if err := createNamedNetNS(h.NetNS); err != nil {
			return err
		}
		if err := wireHost(l.rec.Bridge, h.NetNS, h.Veth, net.ParseIP(h.IP), net.ParseIP(l.Gateway)); err != nil {
			return err
		}
		if err := os.MkdirAll(h.DataDir, 0o700); err != nil {
			return err
		}
	}
	l.opts.Logf("lab %s: bridge %s %s, %d hosts wired in %v", l.rec.ID, l.rec.Bridge, l.Subnet, len(l.Hosts), time.Since(start).Round(time.Millisecond))
	return nil
}

// Form inits the cluster on host 1, joins the others and waits until
// `node ls` shows every host Ready.
func (l *Lab) Form(ctx context.Context) error {
	start := time.Now()
	h1 := l.Hosts[0]
	if err := l.StartAgent(h1, append(append([]string{"--init"}, l.opts.InitArgs...), l.opts.AgentArgs...)); err != nil {
		return err
	}
	var join []string
	if _, err := l.Wait(ctx, 60*time.Second, "the join line from host 1's --init", func() (bool, string) {
		out := l.CurrentLog(1)
		i := strings.Index(out, "--join ")
		if i < 0 {
			return false, ""
		}
		join = strings.Fields(strings.SplitN(out[i:], "\n", 2)[0])
		return len(join) == 4, out
	}); err != nil {
		return err
	}
	for _, h := range l.Hosts[1:] {
		if err := l.StartAgent(h, append(append([]string{}, join...), l.opts.AgentArgs...)); err != nil {
			return err
		}
	}
	n := len(l.Hosts)
	if _, err := l.Wait(ctx, 90*time.Second, fmt.Sprintf("%d nodes Ready in node ls", n), func() (bool, string) {
		out, err := l.Shoal(ctx, "node", "ls")
		if err != nil {
			return false, out + err.Error()
		}
		ready := ReadyNodes(out)
		c := 0
		for _, h := range l.Hosts {
			if ready[h.Node] {
				c++
			}
		}
		return c == n, out
	}); err != nil {
		return err
	}
	l.opts.Logf("lab %s: %d-node cluster up in %v", l.rec.ID, n, time.Since(start).Round(time.Millisecond))
	return nil
}

// ReadyNodes reads the output of `shoal node ls`: the names of the nodes
// whose STATUS is Ready.
func ReadyNodes(nodeLs string) map[string]bool {
	ready := map[string]bool{}
	for _, line := range strings.Split(nodeLs, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[1] == "Ready" {
			ready[f[0]] = true
		}
	}
	return ready
}

// Host returns host i (1-based), or nil.
func (l *Lab) Host(i int) *Host {
	if i < 1 || i > len(l.Hosts) {
		return nil
	}
	return l.Hosts[i-1]
}

// StartAgent runs `shoal agent` in the host's namespace with the lab's
// fixed flags plus extra; its output goes to the host's log.
func (l *Lab) StartAgent(h *Host, extra []string) error {
	args := []string{"--net=" + filepath.Join("/run/netns", h.NetNS), "--", l.opts.Bin, "agent",
		"--data-dir", h.DataDir, "--advertise-addr", h.IP, "--node-name", h.Node,
		// Nothing answers there, so the agent starts its own containerd
		// under its data directory.
		"--containerd-socket", filepath.Join(h.DataDir, "no-system-containerd.sock")}
	args = append(args, extra...)
	args = append(args, l.opts.HostArgs[h.Index]...)
	cmd := exec.Command("nsenter", args...)
	cmd.Env = append(os.Environ(), "SHOAL_CONFIG="+l.opts.ClientConf)
	// Its own session: signals to this process's group (a ^C, a hang-up)
	// do not reach it; the lab kills it by its group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logf, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== lab: %s start: nsenter %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: start agent on host %d: %w", h.Index, err)
	}
	// nsenter execs the agent: the PID is the agent's.
	if err := os.WriteFile(agentPIDFile(h.DataDir), []byte(fmt.Sprint(cmd.Process.Pid)), 0o600); err != nil {
		l.opts.Logf("lab: agent pid file: %v", err)
	}
	var exited chan struct{}
	if l.opts.Detach {
		_ = cmd.Process.Release()
	} else {
		exited = make(chan struct{})
		go func() {
			err := cmd.Wait()
			if lf, e := os.OpenFile(h.LogPath, os.O_WRONLY|os.O_APPEND, 0); e == nil {
				fmt.Fprintf(lf, "=== lab: %s agent exited: %v\n", time.Now().Format(time.RFC3339Nano), err)
				lf.Close()
			}
			close(exited)
		}()
	}
	h.mu.Lock()
	h.proc, h.exited = cmd.Process, exited
	h.mu.Unlock()
	return nil
}

// Kill sends SIGKILL to host i's agent and waits for it to exit; its
// containerd and containers keep running, as after an agent crash.
func (l *Lab) Kill(i int) error {
	h := l.Host(i)
	h.mu.Lock()
	proc, exited := h.proc, h.exited
	h.mu.Unlock()
	if proc == nil {
		return nil
	}
	_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
	if exited == nil {
		waitGone(proc.Pid, 10*time.Second)
		return nil
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("lab: agent of host %d did not exit after SIGKILL", i)
	}
}

// KillHost kills host i's agent and its containerd with SIGKILL (the
// containers, kept by their shims, stay), as when a machine's shoal and
// containerd die at once.
func (l *Lab) KillHost(i int) error {
	if err := l.Kill(i); err != nil {
		return err
	}
	killContainerd(l.Host(i).DataDir)
	return nil
}

// PowerOff is a machine dying: host i's agent and containerd are killed
// (KillHost) and its link goes down (Cut), so its pods, which keep running
// in their namespaces, are out of reach as well.
func (l *Lab) PowerOff(i int) error {
	if err := l.KillHost(i); err != nil {
		return err
	}
	return l.Cut(i)
}

// Restart kills host i's agent if it runs and starts it again from its
// data directory alone.
func (l *Lab) Restart(i int) error {
	if err := l.Kill(i); err != nil {
		return err
	}
	return l.StartAgent(l.Host(i), l.opts.AgentArgs)
}

// Running reports whether host i's agent process runs.
func (l *Lab) Running(i int) bool {
	h := l.Host(i)
	h.mu.Lock()
	proc, exited := h.proc, h.exited
	h.mu.Unlock()
	if proc == nil {
		return false
	}
	if exited == nil {
		return syscall.Kill(proc.Pid, 0) == nil
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Pause stops host i's agent with SIGSTOP, as a process that hangs (a long
// GC pause, a VM frozen): its connections stay open and nothing answers.
// Resume continues it with SIGCONT. Only the agent is signalled, not its
// containerd.
func (l *Lab) Pause(i int) error { return l.signalAgent(i, syscall.SIGSTOP) }

// Resume undoes Pause.
func (l *Lab) Resume(i int) error { return l.signalAgent(i, syscall.SIGCONT) }

func (l *Lab) signalAgent(i int, sig syscall.Signal) error {
	h := l.Host(i)
	h.mu.Lock()
	proc := h.proc
	h.mu.Unlock()
	if proc == nil {
		return fmt.Errorf("lab: host %d runs no agent to send %v", i, sig)
	}
	if err := syscall.Kill(proc.Pid, sig); err != nil {
		return fmt.Errorf("lab: %v to the agent of host %d: %w", sig, i, err)
	}
	return nil
}

// Cut takes host i off the lab network (its veth down in the root
// namespace); Heal brings it back.
func (l *Lab) Cut(i int) error { return setLink(l.Host(i).Veth, false) }

// Heal undoes Cut.
func (l *Lab) Heal(i int) error { return setLink(l.Host(i).Veth, true) }

// cutTable is the nftables table in a host's namespace that holds the
// drop rules of CutPair and CutOneWay.
const cutTable = "shoal_lab_cut"

// CutPair drops all traffic between hosts i and j, both ways, while both
// keep talking to everyone else.
func (l *Lab) CutPair(ctx context.Context, i, j int) error {
	if err := l.nftDrop(ctx, i, "output", "daddr", l.Host(j).IP); err != nil {
		return err
	}
	return l.nftDrop(ctx, i, "input", "saddr", l.Host(j).IP)
}

// CutOneWay drops the packets host from sends to host to; packets from
// to reach from. (TCP between them stalls both ways, as replies are lost;
// UDP, such as gossip probes, is cut in one direction only.)
func (l *Lab) CutOneWay(ctx context.Context, from, to int) error {
	return l.nftDrop(ctx, from, "output", "daddr", l.Host(to).IP)
}

// HealCuts removes host i's CutPair and CutOneWay rules (those it holds:
// a pair cut is held by its first host, a one-way cut by its sender).
func (l *Lab) HealCuts(ctx context.Context, i int) error {
	// Adding first makes the delete succeed when no cut was made.
	_, err := l.nft(ctx, i, fmt.Sprintf("add table inet %s\ndelete table inet %s\n", cutTable, cutTable))
	return err
}

func (l *Lab) nftDrop(ctx context.Context, i int, chain, field, ip string) error {
	hook := map[string]string{"input": "input", "output": "output"}[chain]
	script := fmt.Sprintf("add table inet %[1]s\nadd chain inet %[1]s %[2]s { type filter hook %[3]s priority -10; }\nadd rule inet %[1]s %[2]s ip %[4]s %[5]s drop\n",
		cutTable, chain, hook, field, ip)
	_, err := l.nft(ctx, i, script)
	return err
}

func (l *Lab) nft(ctx context.Context, i int, script string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "nsenter", "--net="+filepath.Join("/run/netns", l.Host(i).NetNS), "--", "nft", "-f", "-")
	c.Stdin = strings.NewReader(script)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: nft in host %d: %w: %s", i, err, out)
	}
	return string(out), nil
}

// Run runs a command in host i's network namespace (through nsenter, which
// keeps the cgroup mounts, unlike `ip netns exec`) and returns its combined
// output. It has a 60 s limit of its own.
func (l *Lab) Run(ctx context.Context, i int, cmd ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	args := append([]string{"--net=" + filepath.Join("/run/netns", l.Host(i).NetNS), "--"}, cmd...)
	c := exec.CommandContext(ctx, "nsenter", args...)
	c.Env = append(os.Environ(), "SHOAL_CONFIG="+l.opts.ClientConf)
	out, err := c.CombinedOutput()
	return string(out), err
}

// Shoal runs the CLI from the root namespace against host 1's API (the
// client config --init wrote) and returns its combined output. It has a
// 60 s limit of its own.
func (l *Lab) Shoal(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := l.ShoalCmd(ctx, args...).CombinedOutput()
	return string(out), err
}

// ShoalCmd returns the command of Shoal, not started, for streaming.
func (l *Lab) ShoalCmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, l.opts.Bin, args...)
	c.Env = append(os.Environ(), "SHOAL_CONFIG="+l.opts.ClientConf)
	return c
}

// Wait polls cond every 100 ms until it holds and returns how long that
// took; after timeout it returns an error with what cond last saw and the
// tails of the agents' logs.
func (l *Lab) Wait(ctx context.Context, timeout time.Duration, what string, cond func() (bool, string)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Since(start), fmt.Errorf("lab: %s: not within %v; last seen:\n%s\n%s", what, timeout, seen, l.LogTails(20))
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
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

// ContainerdLogTails returns the last n lines of every host's containerd log.
func (l *Lab) ContainerdLogTails(n int) string {
	var b strings.Builder
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "--- containerd log of host %d, last %d lines:\n%s\n", h.Index, n, tailFile(filepath.Join(h.DataDir, "containerd", "containerd.log"), n))
	}
	return b.String()
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

// CurrentLog returns host i's agent log since its latest start.
func (l *Lab) CurrentLog(i int) string {
	b, _ := os.ReadFile(l.Host(i).LogPath)
	s := string(b)
	if j := strings.LastIndex(s, "=== lab: "); j >= 0 && strings.Contains(s[j:min(len(s), j+80)], " start: ") {
		return s[j:]
	}
	return s
}

// Teardown removes everything the lab made (once) and returns what it
// could not remove.
func (l *Lab) Teardown() []error {
	l.cleanOnce.Do(func() {
		start := time.Now()
		for _, h := range l.Hosts {
			h.mu.Lock()
			proc, exited := h.proc, h.exited
			h.mu.Unlock()
			if proc == nil {
				continue
			}
			_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
			if exited != nil {
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
				}
			}
		}
		l.cleanErrs = teardown(l.rec, l.opts.Logf)
		l.opts.Logf("lab %s: torn down in %v", l.rec.ID, time.Since(start).Round(time.Millisecond))
	})
	return l.cleanErrs
}

// TeardownRecord removes the lab recorded at path (as `shoal lab down`
// does for a lab another process made). A missing record is no error.
func TeardownRecord(path string, logf func(string, ...any)) (found bool, errs []error) {
	r, err := loadRecord(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, []error{err}
	}
	return true, teardown(r, logf)
}

// Dial opens a TCP connection to addr (HOST:PORT, numeric) from inside host
// i's network namespace.
func (l *Lab) Dial(ctx context.Context, i int, addr string) (net.Conn, error) {
	return dialIn(ctx, filepath.Join("/run/netns", l.Host(i).NetNS), addr)
}

// HTTPGet fetches url from inside host i's network namespace and returns
// the body.
func (l *Lab) HTTPGet(ctx context.Context, i int, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
