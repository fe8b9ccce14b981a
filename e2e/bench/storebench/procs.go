package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process this program started: a shoal agent or an etcd
// member. Its stderr (and stdout, unless the caller reads it) goes to a log
// file in the run's temporary directory.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited and been reaped
	err     error         // its exit status, once done
}

// procs owns every process of the run and the temporary directory.
type procs struct {
	root string
	mu   sync.Mutex
	all  []*proc
}

func newProcs(parent string) (*procs, error) {
	root, err := os.MkdirTemp(parent, "storebench-")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "logs"), 0o700); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	return &procs{root: root}, nil
}

// start runs a command in a process group of its own (so that a kill
// reaches all of it and Ctrl-C on the terminal reaches only this program,
// which then cleans up in order), killed by the kernel should this program
// die without cleaning up. stdout, when not nil, receives the process's
// standard output (as well as the log file).
func (ps *procs) start(name string, env []string, stdout io.Writer, argv ...string) (*proc, error) {
	logPath := filepath.Join(ps.root, "logs", name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "### %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = lf
	cmd.Stdout = lf
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(lf, stdout)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, logPath: logPath, logFile: lf, done: make(chan struct{})}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ps.all = append(ps.all, p)
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process's group (its own, made at start) and
// waits until it is reaped. It returns the time the signal was sent.
func (p *proc) kill() time.Time {
	at := p.signalKill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "storebench: %s (pid %d) did not exit after SIGKILL\n", p.name, p.cmd.Process.Pid)
	}
	return at
}

// signalKill sends SIGKILL to the process's group without waiting, and
// returns when it was sent.
func (p *proc) signalKill() time.Time {
	at := time.Now()
	if !p.exited() {
		pid := p.cmd.Process.Pid
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
			_ = p.cmd.Process.Kill()
		}
	}
	return at
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// killAll kills every process still running, newest first.
func (ps *procs) killAll() {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.all...)
	ps.mu.Unlock()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].kill()
	}
}

// dumpLogs prints the end of every process's log, for a run that failed.
func (ps *procs) dumpLogs(w io.Writer, lines int) {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.all...)
	ps.mu.Unlock()
	for _, p := range all {
		fmt.Fprintf(w, "----- %s (last %d lines of %s)\n%s\n", p.name, lines, p.logPath, p.tail(lines))
	}
}

// removeRoot deletes the temporary directory.
func (ps *procs) removeRoot() {
	if err := os.RemoveAll(ps.root); err != nil {
		fmt.Fprintf(os.Stderr, "storebench: remove %s: %v\n", ps.root, err)
	}
}

// checkFree fails when something already listens on one of the addresses,
// so that the run never measures (or kills) somebody else's server.
func checkFree(tcp []string, udp []string) error {
	var busy []string
	for _, a := range tcp {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			busy = append(busy, "tcp "+a+" ("+err.Error()+")")
			continue
		}
		ln.Close()
	}
	for _, a := range udp {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			busy = append(busy, "udp "+a+" ("+err.Error()+")")
			continue
		}
		pc.Close()
	}
	if len(busy) > 0 {
		return fmt.Errorf("addresses in use (another run, or choose others with -shoal-addrs/-etcd1-addr/-etcd3-addrs): %s", strings.Join(busy, "; "))
	}
	return nil
}

// lineWatcher is an io.Writer that hands each complete line to a callback.
type lineWatcher struct {
	mu   sync.Mutex
	buf  []byte
	line func(string)
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on every
// Linux architecture Go runs on, whatever the kernel's HZ).
const clockTicks = 100

// cpuTime is the CPU time (user and system) the process has used so far,
// or 0 when it has exited.
func (p *proc) cpuTime() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after its closing one. utime and stime are fields 14
	// and 15, so the 12th and 13th after it.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	var total int64
	for _, x := range f[11:13] {
		var v int64
		fmt.Sscan(x, &v)
		total += v
	}
	return time.Duration(total) * time.Second / clockTicks
}

// cpuTimeOf sums the CPU time of processes.
func cpuTimeOf(ps []*proc) time.Duration {
	var t time.Duration
	for _, p := range ps {
		t += p.cpuTime()
	}
	return t
}
