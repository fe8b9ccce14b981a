// Package e2e tests whole clusters made of real shoal processes.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shoalBin is the binary under test: $SHOAL_BIN, or built once by TestMain.
var shoalBin string

func TestMain(m *testing.M) {
	shoalBin = os.Getenv("SHOAL_BIN")
	var tmp string
	if shoalBin == "" {
		var err error
		tmp, err = os.MkdirTemp("", "shoal-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		shoalBin = filepath.Join(tmp, "shoal")
		build := exec.Command("go", "build", "-o", shoalBin, "../cmd/shoal")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build shoal:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if tmp != "" {
		os.RemoveAll(tmp)
	}
	os.Exit(code)
}

// agentProc is one `shoal agent` process.
type agentProc struct {
	t       *testing.T
	name    string
	addr    string // advertise IP
	dataDir string
	args    []string
	cmd     *exec.Cmd
	stdout  *lockedBuffer
	logPath string
	exited  chan struct{}
	err     error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lab is a set of agents on loopback addresses with a client config.
type lab struct {
	t          *testing.T
	dir        string
	clientConf string
	agents     []*agentProc
}

func newLab(t *testing.T) *lab {
	t.Helper()
	dir := t.TempDir()
	l := &lab{t: t, dir: dir, clientConf: filepath.Join(dir, "client.config")}
	t.Cleanup(func() {
		for _, a := range l.agents {
			a.kill()
		}
		if t.Failed() {
			for _, a := range l.agents {
				t.Logf("--- log of %s (last lines)\n%s", a.name, a.logTail(30))
			}
		}
	})
	return l
}

// start runs `shoal agent` with the given flags (plus --data-dir,
// --advertise-addr, --node-name) and returns without waiting.
func (l *lab) start(name, addr string, flags ...string) *agentProc {
	l.t.Helper()
	a := &agentProc{t: l.t, name: name, addr: addr, dataDir: filepath.Join(l.dir, name), args: flags}
	a.run(l.clientConf)
	l.agents = append(l.agents, a)
	return a
}

func (a *agentProc) run(clientConf string) {
	a.t.Helper()
	// These agents share the machine's own network namespace on loopback
	// addresses: no service dataplane there (the lab tests have one).
	args := append([]string{"agent", "--lb-mode", "none", "--data-dir", a.dataDir, "--advertise-addr", a.addr, "--node-name", a.name}, a.args...)
	a.cmd = exec.Command(shoalBin, args...)
	a.cmd.Env = append(os.Environ(), "SHOAL_CONFIG="+clientConf)
	a.stdout = &lockedBuffer{}
	a.cmd.Stdout = a.stdout
	a.logPath = a.dataDir + ".log"
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	a.cmd.Stderr = logf
	if err := a.cmd.Start(); err != nil {
		a.t.Fatalf("start agent %s: %v", a.name, err)
	}
	logf.Close()
	a.exited = make(chan struct{})
	go func() {
		a.err = a.cmd.Wait()
		close(a.exited)
	}()
}

// restart starts the agent again from its data directory alone.
func (a *agentProc) restart(clientConf string) {
	a.kill()
	a.args = nil
	a.run(clientConf)
}

// kill stops the agent with SIGKILL and waits for it.
func (a *agentProc) kill() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
}

func (a *agentProc) apiAddr() string { return a.addr + ":7443" }

func (a *agentProc) logTail(n int) string {
	data, _ := os.ReadFile(a.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// shoal runs a client command against the lab and returns its output and
// exit error.
func (l *lab) shoal(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, shoalBin, args...)
	cmd.Env = append(os.Environ(), "SHOAL_CONFIG="+l.clientConf)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitFor polls cond until it holds, failing after timeout with what it
// last saw.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last seen:\n%s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// initCluster starts the first agent with --init and returns the join
// flags it printed.
func (l *lab) initCluster(name, addr string) (*agentProc, []string) {
	l.t.Helper()
	a := l.start(name, addr, "--init")
	var join []string
	waitFor(l.t, 30*time.Second, "the join line from --init", func() (bool, string) {
		out := a.stdout.String()
		i := strings.Index(out, "--join ")
		if i < 0 {
			return false, out + a.logTail(5)
		}
		join = strings.Fields(strings.SplitN(out[i:], "\n", 2)[0])
		return len(join) == 4, out
	})
	return a, join
}

// nodeRows parses `shoal node ls` into name -> [status, role].
func parseNodeLs(out string) map[string][2]string {
	rows := map[string][2]string{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 3 {
			continue
		}
		rows[f[0]] = [2]string{f[1], f[2]}
	}
	return rows
}

func countNodes(rows map[string][2]string) (ready, leaders, voters, nonvoters int) {
	for _, r := range rows {
		if r[0] == "Ready" {
			ready++
		}
		switch r[1] {
		case "leader":
			leaders++
			voters++
		case "voter":
			voters++
		case "nonvoter":
			nonvoters++
		}
	}
	return
}
