package podnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/internal/netnsrun"
)

// The tests below never touch the machine's own network namespace: each
// one moves its goroutine, locked to its OS thread, into a throwaway
// "host" namespace and does everything there. The pods' namespaces are
// mounted in /run/netns like the agent's (that directory is shared by the
// whole machine), under random names, and removed at the end.

const (
	testPodCIDR = "10.244.7.0/24"
	testGateway = "10.244.7.1"
	ioTimeout   = 5 * time.Second
	opTimeout   = 60 * time.Second
)

// needRoot skips a test that needs root, or fails it when CI is set.
func needRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create network namespaces, bridges and nftables tables"
	} else {
		for _, p := range requiredPlugins {
			found := false
			for _, d := range DefaultPluginDirs {
				if _, err := os.Stat(d + "/" + p); err == nil {
					found = true
				}
			}
			if !found {
				why = fmt.Sprintf("needs the CNI plugin %q (apt-get install containernetworking-plugins)", p)
				break
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("podnet: this test %s; CI is set, so it fails instead of skipping", why)
	}
	t.Skipf("podnet: skipped: this test %s", why)
}

type lab struct {
	t        *testing.T
	root     netns.NsHandle // the namespace the test started in: only read
	host     netns.NsHandle // the throwaway host namespace
	stateDir string
	mu       sync.Mutex
	uids     []string
}

// newLab locks the test goroutine to its thread and moves it into a new
// network namespace, undone by the test's cleanup: pod namespaces the test
// made are unmounted and the thread goes back where it was.
func newLab(t *testing.T) *lab {
	needRoot(t)
	runtime.LockOSThread()
	root, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open the test's network namespace: %v", err)
	}
	host, err := netns.New() // unshare: the thread is now in host
	if err != nil {
		root.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create the throwaway host namespace: %v", err)
	}
	l := &lab{t: t, root: root, host: host, stateDir: t.TempDir()}
	t.Cleanup(func() {
		l.mu.Lock()
		for _, uid := range l.uids {
			if err := removeNetNS(NetNSPath(uid)); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		l.mu.Unlock()
		if err := netns.Set(root); err != nil {
			t.Errorf("cleanup: return to the test's network namespace: %v", err)
			return // the thread stays locked and is discarded with the goroutine
		}
		host.Close()
		root.Close()
		runtime.UnlockOSThread()
	})
	h := l.handle(host)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo in the host namespace: %v", err)
	}
	return l
}

// pod names a new pod with a random UID, remembered for cleanup.
func (l *lab) pod(name string) PodRef {
	uid := uuid.NewString()
	l.mu.Lock()
	l.uids = append(l.uids, uid)
	l.mu.Unlock()
	return PodRef{UID: uid, Namespace: "default", Name: name}
}

// network starts a Network in the host namespace, closed at cleanup.
func (l *lab) network(cfg Config) *CNI {
	l.t.Helper()
	if cfg.PodCIDR == "" {
		cfg.PodCIDR = testPodCIDR
	}
	if cfg.StateDir == "" {
		cfg.StateDir = l.stateDir
	}
	return l.networkAt(l.host, cfg)
}

// networkAt starts a Network with cfg as it is in the namespace ns (a
// second "host"), closed at cleanup.
func (l *lab) networkAt(ns netns.NsHandle, cfg Config) *CNI {
	l.t.Helper()
	var n *CNI
	err := netnsrun.Run(ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		var err error
		n, err = New(ctx, cfg)
		return err
	})
	if err != nil {
		l.t.Fatalf("New: %v", err)
	}
	l.t.Cleanup(func() {
		if err := n.Close(); err != nil {
			l.t.Errorf("Close: %v", err)
		}
	})
	return n
}

func (l *lab) handle(ns netns.NsHandle) *netlink.Handle {
	l.t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		l.t.Fatalf("netlink handle: %v", err)
	}
	l.t.Cleanup(h.Close)
	return h
}

// open opens the namespace mounted at path.
func (l *lab) open(path string) netns.NsHandle {
	l.t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		l.t.Fatalf("open %s: %v", path, err)
	}
	l.t.Cleanup(func() { ns.Close() })
	return ns
}

// anonNS creates a network namespace that is mounted nowhere: it lives as
// long as the handle, closed at cleanup.
func (l *lab) anonNS() netns.NsHandle {
	l.t.Helper()
	var ns netns.NsHandle
	err := netnsrun.Run(l.host, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		var err error
		ns, err = netns.Get()
		return err // inNetNS puts the thread back
	})
	if err != nil {
		l.t.Fatalf("create a namespace: %v", err)
	}
	l.t.Cleanup(func() { ns.Close() })
	return ns
}

// serve answers each TCP connection to addr inside ns with the address it
// came from, until the test ends.
func (l *lab) serve(ns netns.NsHandle, addr string) {
	l.t.Helper()
	var ln net.Listener
	err := netnsrun.Run(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		l.t.Fatalf("listen on %s: %v", addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(ioTimeout))
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	l.t.Cleanup(func() {
		ln.Close()
		select {
		case <-done:
		case <-time.After(ioTimeout):
			l.t.Error("listener did not stop")
		}
	})
}

// dial connects from inside ns to addr and returns what the server says:
// the source address it saw.
func dial(ns netns.NsHandle, addr string) (string, error) {
	return dialWithin(ns, addr, ioTimeout)
}

// dialWithin is dial with a shorter bound, for checks that nothing answers.
func dialWithin(ns netns.NsHandle, addr string, timeout time.Duration) (string, error) {
	var reply string
	err := netnsrun.Run(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
		reply = strings.TrimSpace(line)
		return nil
	})
	return reply, err
}

// mustDial dials and checks the source address the server saw.
func (l *lab) mustDial(from netns.NsHandle, what, addr, wantSource string) {
	l.t.Helper()
	got, err := dial(from, addr)
	if err != nil {
		l.t.Fatalf("%s: dial %s: %v", what, addr, err)
	}
	if got != wantSource {
		l.t.Fatalf("%s: %s saw the connection come from %s, want %s", what, addr, got, wantSource)
	}
}

// readSysctl reads /proc/sys/<key> in ns.
func readSysctl(ns netns.NsHandle, key string) (string, error) {
	var v string
	err := netnsrun.Run(ns, func() error {
		b, err := os.ReadFile("/proc/sys/" + key)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

func isConnRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }
