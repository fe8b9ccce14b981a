// Package lab runs a multi-host shoal cluster on one Linux machine for
// end-to-end tests: the hosts of package github.com/shoalproj/shoal/lab
// (network namespaces on a bridge, each with its own agent and containerd),
// with helpers that fail the test instead of returning errors. Everything a
// lab makes is removed when the test ends, also when it fails or is
// interrupted; a lab left by a test process that died (go test timeout,
// SIGKILL) is removed by the next lab that starts.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	corelab "github.com/shoalproj/shoal/lab"
)

// Options configure a lab.
type Options struct {
	// Bin is the shoal binary; default $SHOAL_BIN.
	Bin string
	// AgentArgs are added to every agent's start (e.g. --log-level).
	AgentArgs []string
	// InitArgs are added to host 1's --init start only.
	InitArgs []string
	// HostArgs are added to host i's starts (1-based).
	HostArgs map[int][]string
}

// Lab is a running multi-host cluster.
type Lab struct {
	*corelab.Lab
	t          testing.TB
	ClientConf string // the admin client config written by host 1's --init
}

// Host is one lab host.
type Host = corelab.Host

// RequireRoot skips the test when not run as root, or fails it when CI is
// set; also when nsenter, nft or containerd is missing.
func RequireRoot(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (network namespaces, bridges, containerd)"
	} else {
		for _, b := range []string{"nsenter", "nft", "containerd", "containerd-shim-runc-v2", "runc"} {
			if _, err := exec.LookPath(b); err != nil {
				why = fmt.Sprintf("needs %s in PATH (apt-get install util-linux nftables containerd runc)", b)
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
	live   = map[*corelab.Lab]bool{}
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
			labs := make([]*corelab.Lab, 0, len(live))
			for l := range live {
				labs = append(labs, l)
			}
			liveMu.Unlock()
			for _, l := range labs {
				for _, err := range l.Teardown() {
					fmt.Fprintf(os.Stderr, "lab: cleanup: %v\n", err)
				}
			}
			os.Exit(130)
		}()
	})
}

// New brings up n hosts, inits the cluster on host 1 and joins the others,
// and waits until `node ls` shows them all Ready. Host i's node is lab-i.
func New(t testing.TB, n int, opts Options) *Lab {
	t.Helper()
	RequireRoot(t)
	bin := opts.Bin
	if bin == "" {
		bin = os.Getenv("SHOAL_BIN")
	}
	if bin == "" {
		t.Fatal("lab: no shoal binary (Options.Bin or $SHOAL_BIN)")
	}
	handleSignals()
	id := randomID(6)
	// A short directory: containerd's socket path must stay under 104 bytes.
	dir := filepath.Join(os.TempDir(), "shoal-lab-"+id)
	clientConf := filepath.Join(dir, "client.config")
	core, err := corelab.Create(corelab.Options{
		Bin:         bin,
		Hosts:       n,
		Dir:         dir,
		ID:          id,
		Bridge:      "shlab" + id + "br",
		NetNS:       func(i int) string { return fmt.Sprintf("shlab-%s-%d", id, i) },
		Veth:        func(i int) string { return fmt.Sprintf("shl%s-%d", id, i) },
		Node:        func(i int) string { return fmt.Sprintf("lab-%d", i) },
		SubnetOctet: -1,
		RecordPath:  corelab.TestRecordPath(id),
		Owned:       true,
		ClientConf:  clientConf,
		AgentArgs:   opts.AgentArgs,
		InitArgs:    opts.InitArgs,
		HostArgs:    opts.HostArgs,
		Logf:        t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	liveMu.Lock()
	live[core] = true
	liveMu.Unlock()
	l := &Lab{Lab: core, t: t, ClientConf: clientConf}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", l.LogTails(40))
			t.Logf("%s", l.ContainerdLogTails(10))
		}
		for _, err := range core.Teardown() {
			t.Errorf("lab: cleanup: %v", err)
		}
		liveMu.Lock()
		delete(live, core)
		liveMu.Unlock()
	})
	if err := core.Form(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

// randomID returns n random hex characters.
func randomID(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

// Host returns host i (1-based).
func (l *Lab) Host(i int) *Host {
	h := l.Lab.Host(i)
	if h == nil {
		l.t.Fatalf("lab: no host %d", i)
	}
	return h
}

func (l *Lab) check(err error) {
	l.t.Helper()
	if err != nil {
		l.t.Fatal(err)
	}
}

// Kill sends SIGKILL to host i's agent and waits for it to exit; its
// containerd and containers keep running, as after an agent crash.
func (l *Lab) Kill(i int) { l.t.Helper(); l.check(l.Lab.Kill(i)) }

// KillHost kills host i's agent and its containerd with SIGKILL.
func (l *Lab) KillHost(i int) { l.t.Helper(); l.check(l.Lab.KillHost(i)) }

// PowerOff kills host i's agent and containerd and takes its link down.
func (l *Lab) PowerOff(i int) { l.t.Helper(); l.check(l.Lab.PowerOff(i)) }

// Restart kills host i's agent if it runs and starts it again from its
// data directory alone.
func (l *Lab) Restart(i int) { l.t.Helper(); l.check(l.Lab.Restart(i)) }

// Pause stops host i's agent with SIGSTOP; Resume continues it (SIGCONT).
func (l *Lab) Pause(i int) { l.t.Helper(); l.check(l.Lab.Pause(i)) }

// Resume undoes Pause.
func (l *Lab) Resume(i int) { l.t.Helper(); l.check(l.Lab.Resume(i)) }

// Cut takes host i off the lab network (its veth down).
func (l *Lab) Cut(i int) { l.t.Helper(); l.check(l.Lab.Cut(i)) }

// Heal undoes Cut.
func (l *Lab) Heal(i int) { l.t.Helper(); l.check(l.Lab.Heal(i)) }

// CutPair drops all traffic between hosts i and j.
func (l *Lab) CutPair(i, j int) { l.t.Helper(); l.check(l.Lab.CutPair(context.Background(), i, j)) }

// CutOneWay drops the packets host from sends to host to.
func (l *Lab) CutOneWay(from, to int) {
	l.t.Helper()
	l.check(l.Lab.CutOneWay(context.Background(), from, to))
}

// HealCuts removes the pair and one-way cuts host i holds.
func (l *Lab) HealCuts(i int) { l.t.Helper(); l.check(l.Lab.HealCuts(context.Background(), i)) }

// Run runs a command in host i's network namespace and returns its
// combined output.
func (l *Lab) Run(i int, cmd ...string) (string, error) {
	return l.Lab.Run(context.Background(), i, cmd...)
}

// Shoal runs the CLI from the root namespace against host 1's API.
func (l *Lab) Shoal(args ...string) (string, error) {
	return l.Lab.Shoal(context.Background(), args...)
}

// WaitFor polls cond every 100 ms until it holds and returns how long
// that took; after timeout the test fails with what cond last saw and the
// tails of the agents' logs.
func (l *Lab) WaitFor(timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	l.t.Helper()
	d, err := l.Wait(context.Background(), timeout, what, cond)
	l.check(err)
	return d
}

// HTTPGet fetches url from inside host i's network namespace.
func (l *Lab) HTTPGet(i int, url string) (string, error) {
	return l.Lab.HTTPGet(context.Background(), i, url)
}

// Dial opens a TCP connection to addr from inside host i's namespace.
func (l *Lab) Dial(ctx context.Context, i int, addr string) (net.Conn, error) {
	return l.Lab.Dial(ctx, i, addr)
}
