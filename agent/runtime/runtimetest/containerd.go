package runtimetest

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shoalproj/shoal/lab"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/agent/runtime"
)

// Require skips the test, or fails it when the environment variable CI is
// set, unless it runs as root with containerd, its runc shim and runc in
// PATH and busybox-static installed.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "containers need root")
		return
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(t, "%s is not installed (apt-get install containerd runc)", bin)
			return
		}
	}
	RequireBusybox(t)
}

// StartContainerd runs a private containerd for the test (through
// runtime.EnsureContainerd, with root, state and socket in a new temporary
// directory) and returns its socket. At the end of the test every container
// and task of every namespace is removed, containerd is stopped, any shim
// left is killed, every mount under the directory is unmounted and the
// directory removed.
func StartContainerd(t testing.TB) string {
	t.Helper()
	Require(t)
	// Short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "shoal-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	tw := &testWriter{t: t}
	log := slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, stop, err := runtime.EnsureContainerd(ctx, "", dir, log)
	if err != nil {
		cleanupDir(t, dir)
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		Teardown(t, addr, dir, stop)
		tw.mu.Lock()
		tw.done = true
		tw.mu.Unlock()
	})
	return addr
}

// Teardown removes what a containerd with socket addr and data directory
// dir (as given to runtime.EnsureContainerd) leaves: every container and
// task of every namespace (while it still answers), then the process (stop,
// which may be nil), any shim still running for it, the mounts under dir
// and dir itself.
func Teardown(t testing.TB, addr, dir string, stop func()) {
	t.Helper()
	removeAll(t, addr)
	if stop != nil {
		stop()
	}
	killShims(t, dir)
	cleanupDir(t, dir)
}

// testWriter sends a logger's lines to the test's log while the test runs.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// removeAll removes every container and task in every namespace.
func removeAll(t testing.TB, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := os.Stat(addr); err != nil {
		return
	}
	c, err := client.New(addr, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Logf("cleanup: containerd: %v", err)
		return
	}
	defer c.Close()
	if _, err := c.Version(ctx); err != nil {
		return // not running
	}
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		t.Logf("cleanup: namespaces: %v", err)
		return
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		cs, err := c.Containers(nctx)
		if err != nil {
			t.Logf("cleanup: containers of %s: %v", ns, err)
			continue
		}
		for _, ctr := range cs {
			if task, err := ctr.Task(nctx, nil); err == nil {
				if _, err := task.Delete(nctx, client.WithProcessKill); err != nil {
					t.Logf("cleanup: task %s: %v", ctr.ID(), err)
				}
			}
			if err := ctr.Delete(nctx, client.WithSnapshotCleanup); err != nil {
				t.Logf("cleanup: container %s: %v", ctr.ID(), err)
			}
		}
	}
}

// killShims kills the shims still serving the containerd of dir, and the
// processes of their containers.
func killShims(t testing.TB, dir string) { lab.KillShims(dir, t.Logf) }

// cleanupDir unmounts everything under dir and removes it.
func cleanupDir(t testing.TB, dir string) {
	for _, m := range lab.Mounts(dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	if left := lab.Mounts(dir); len(left) > 0 {
		t.Errorf("cleanup: still mounted under %s: %v", dir, left)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}
