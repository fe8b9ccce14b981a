package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"
)

// EnsureContainerd returns the address of a containerd to use.
//
// When something answers at socket (the system's containerd), that is used
// and stop does nothing. Otherwise the agent runs a containerd of its own,
// the way k3s does: from PATH, with a configuration written under
// dataDir/containerd (root dataDir/containerd/root, state
// dataDir/containerd/state, socket dataDir/containerd/containerd.sock, its
// output appended to dataDir/containerd/containerd.log, the CRI plugin
// disabled since shoal does its own networking). socket "" skips the first
// check.
//
// The containerd started here is supervised: if it dies it is started again
// with a growing back-off. It runs in a process group of its own, so a signal
// to the agent's process group (Ctrl-C in a terminal, kill -- -PGID) does not
// take it down, and the agent never asks the kernel to kill it when the agent
// dies: after a crash or kill -9 of the agent, containerd and the containers
// (kept by their shims anyway) keep running, and the next agent finds the
// same containerd at its socket and adopts it (its PID is kept in
// dataDir/containerd/containerd.pid). stop() terminates it (SIGTERM, then
// SIGKILL after 10 s): the agent calls it on a graceful shutdown only.
// Stopping containerd does not stop the containers either.
func EnsureContainerd(ctx context.Context, socket, dataDir string, log *slog.Logger) (addr string, stop func(), err error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if socket != "" && containerdAnswers(ctx, socket) {
		log.Info("using the running containerd", "socket", socket)
		return socket, func() {}, nil
	}
	s, err := newSupervisor(dataDir, log)
	if err != nil {
		return "", nil, err
	}
	if err := s.begin(ctx); err != nil {
		return "", nil, err
	}
	return s.sock, s.stop, nil
}

// containerdAnswers reports whether a containerd serves its API at socket.
func containerdAnswers(ctx context.Context, socket string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return false
	}
	conn.Close()
	c, err := client.New(socket, client.WithTimeout(2*time.Second))
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.Version(ctx)
	return err == nil
}

type supervisor struct {
	log                                  *slog.Logger
	dir, root, state, sock, cfg, logPath string
	pidPath                              string

	stopOnce sync.Once
	stopping chan struct{} // closed by stop
	done     chan struct{} // closed when the supervising goroutine ends

	mu   sync.Mutex
	proc *ctrdProc // the containerd process being supervised, nil when none
}

// ctrdProc is one containerd process, started here or adopted from an
// earlier agent.
type ctrdProc struct {
	pid     int
	started time.Time
	exited  chan struct{} // closed when the process has exited
	err     error         // why, once exited is closed
}

func newSupervisor(dataDir string, log *slog.Logger) (*supervisor, error) {
	if dataDir == "" {
		return nil, errors.New("containerd: no data directory")
	}
	dir, err := filepath.Abs(filepath.Join(dataDir, "containerd"))
	if err != nil {
		return nil, err
	}
	s := &supervisor{
		log:      log.With("component", "containerd"),
		dir:      dir,
		root:     filepath.Join(dir, "root"),
		state:    filepath.Join(dir, "state"),
		sock:     filepath.Join(dir, "containerd.sock"),
		cfg:      filepath.Join(dir, "config.toml"),
		logPath:  filepath.Join(dir, "containerd.log"),
		pidPath:  filepath.Join(dir, "containerd.pid"),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if len(s.sock) >= 104 {
		return nil, fmt.Errorf("containerd: socket path %s is too long for a unix socket; use a shorter data directory", s.sock)
	}
	for _, d := range []string{s.dir, s.root, s.state} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("containerd: %w", err)
		}
	}
	return s, nil
}

// config is containerd's configuration (1.6 reads version 2 files).
func (s *supervisor) config() string {
	q := strconv.Quote
	return fmt.Sprintf(`# written by shoal agent: the containerd it runs when none answers at its socket
version = 2
root = %s
state = %s
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %s

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %s
`, q(s.root), q(s.state), q(s.sock), q(filepath.Join(s.dir, "opt")))
}

// begin adopts the containerd of an earlier agent or starts one, waits until
// it answers and starts supervising it.
func (s *supervisor) begin(ctx context.Context) error {
	if containerdAnswers(ctx, s.sock) {
		p, err := s.adopt()
		if err != nil {
			// Something answers at our own socket but is not the
			// process we recorded: use it, but it is not ours to stop.
			s.log.Warn("containerd answers at the agent's socket but its process is unknown; using it unsupervised", "socket", s.sock, "err", err)
			close(s.done)
			return nil
		}
		s.log.Info("adopted the containerd of an earlier agent", "pid", p.pid, "socket", s.sock)
		s.proc = p
		go s.supervise()
		return nil
	}
	if err := os.WriteFile(s.cfg, []byte(s.config()), 0o600); err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	p, err := s.startAndWait(ctx)
	if err != nil {
		return err
	}
	s.proc = p
	go s.supervise()
	return nil
}

// adopt finds the process recorded in the pid file, checking that it is a
// containerd run with this configuration.
func (s *supervisor) adopt() (*ctrdProc, error) {
	b, err := os.ReadFile(s.pidPath)
	if err != nil {
		return nil, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("bad pid file %s", s.pidPath)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	if !bytes.Contains(cmdline, []byte(s.cfg)) {
		return nil, fmt.Errorf("process %d is not the containerd of %s", pid, s.cfg)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	p := &ctrdProc{pid: pid, started: time.Now(), exited: make(chan struct{})}
	go func() {
		// A pidfd becomes readable when its process exits; the process is
		// not our child, so it cannot be waited for.
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n > 0 {
				break
			}
		}
		p.err = errors.New("exited")
		close(p.exited)
	}()
	return p, nil
}

// start starts containerd in a process group of its own.
func (s *supervisor) start() (*ctrdProc, error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not found in PATH (install the containerd and runc packages): %w", err)
	}
	// Keep the log bounded across restarts.
	if fi, err := os.Stat(s.logPath); err == nil && fi.Size() > 8<<20 {
		_ = os.Rename(s.logPath, s.logPath+".1")
	}
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	defer logf.Close()
	// A socket left by a containerd that died would make the new one fail.
	_ = os.Remove(s.sock)
	cmd := exec.Command(bin, "--config", s.cfg)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	p := &ctrdProc{pid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if p.err == nil {
			p.err = errors.New("exited with status 0")
		}
		close(p.exited)
	}()
	if err := os.WriteFile(s.pidPath, []byte(strconv.Itoa(p.pid)+"\n"), 0o600); err != nil {
		s.log.Warn("pid file not written", "err", err)
	}
	s.log.Info("started containerd", "pid", p.pid, "socket", s.sock, "log", s.logPath)
	return p, nil
}

// startAndWait starts containerd and waits until it answers.
func (s *supervisor) startAndWait(ctx context.Context) (*ctrdProc, error) {
	p, err := s.start()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if fi, err := os.Stat(s.sock); err == nil && fi.Mode()&os.ModeSocket != 0 && containerdAnswers(ctx, s.sock) {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("containerd exited at start (%v); end of %s:\n%s", p.err, s.logPath, tail(s.logPath, 20))
		case <-ctx.Done():
			s.kill(p)
			return nil, fmt.Errorf("containerd did not answer at %s: %v; end of %s:\n%s", s.sock, ctx.Err(), s.logPath, tail(s.logPath, 20))
		case <-tick.C:
		}
	}
}

// supervise restarts containerd when it dies, until stop.
func (s *supervisor) supervise() {
	defer close(s.done)
	backoff := time.Second
	for {
		s.mu.Lock()
		p := s.proc
		s.mu.Unlock()
		select {
		case <-s.stopping:
			return
		case <-p.exited:
		}
		select {
		case <-s.stopping:
			return
		default:
		}
		if time.Since(p.started) > time.Minute {
			backoff = time.Second
		}
		s.log.Warn("containerd exited; starting it again", "pid", p.pid, "err", p.err, "after", backoff, "log_tail", tail(s.logPath, 5))
		for {
			select {
			case <-s.stopping:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-s.stopping:
				case <-ctx.Done():
				}
				cancel()
			}()
			np, err := s.startAndWait(ctx)
			cancel()
			if err != nil {
				s.log.Error("containerd did not start again", "err", err)
				continue
			}
			s.mu.Lock()
			s.proc = np
			s.mu.Unlock()
			break
		}
	}
}

// stop terminates the supervised containerd: SIGTERM, SIGKILL after 10 s.
func (s *supervisor) stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		<-s.done
		s.mu.Lock()
		p := s.proc
		s.mu.Unlock()
		if p == nil {
			return
		}
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			s.log.Warn("containerd did not stop on SIGTERM; killing it", "pid", p.pid)
			s.kill(p)
		}
		_ = os.Remove(s.pidPath)
		s.log.Info("stopped containerd", "pid", p.pid)
	})
}

func (s *supervisor) kill(p *ctrdProc) {
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
