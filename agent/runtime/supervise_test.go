package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
)

func answers(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := client.New(addr, client.WithTimeout(time.Second))
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.Version(ctx)
	return err == nil
}

func pidOf(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "containerd", "containerd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// A zombie is dead.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// TestEnsureContainerd: the agent's own containerd starts, is found by a
// second agent, restarts when it dies (its containers go on, and an exit
// while it was down still reaches the agent), and stops on stop().
func TestEnsureContainerd(t *testing.T) {
	runtimetest.Require(t)
	dir, err := os.MkdirTemp("", "shoal-sup-")
	if err != nil {
		t.Fatal(err)
	}
	ctx := tctx(t, 90*time.Second)
	sock := filepath.Join(dir, "containerd", "containerd.sock")
	var stops []func()
	t.Cleanup(func() {
		runtimetest.Teardown(t, sock, dir, func() {
			for _, s := range stops {
				s()
			}
		})
	})

	// Nothing answers at the given socket: the agent starts its own.
	addr, stop1, err := runtime.EnsureContainerd(ctx, filepath.Join(dir, "nothing.sock"), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	stops = append(stops, stop1)
	pid1 := pidOf(dir)
	if addr != sock || !answers(addr) || !alive(pid1) {
		t.Fatalf("own containerd: addr %s (want %s), pid %d", addr, sock, pid1)
	}
	if pgid, err := syscall.Getpgid(pid1); err != nil || pgid != pid1 {
		t.Fatalf("containerd %d is in process group %d (%v), want a group of its own", pid1, pgid, err)
	}

	// Something answers at the given socket: it is used as it is.
	other := t.TempDir()
	got, stopNoop, err := runtime.EnsureContainerd(ctx, addr, other, nil)
	if err != nil || got != addr {
		t.Fatalf("with a running containerd: %s %v", got, err)
	}
	stopNoop()
	if !answers(addr) {
		t.Fatal("stop of a containerd the agent did not start stopped it")
	}
	if _, err := os.Stat(filepath.Join(other, "containerd")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a state directory was made although containerd was running: %v", err)
	}

	// A container that outlives its containerd.
	rt := newRuntime(t, addr, runtime.RegistryConfig{})
	f, err := os.Open(runtimetest.BuildBusyboxImage(t, testImage))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := rt.ImportImages(ctx, f); err != nil {
		t.Fatal(err)
	}
	ch := events(t, rt)
	s := spec(t, "sh", "-c", `echo ready; while [ ! -e /tmp/go ]; do sleep 0.02; done; exit 4`)
	id := mustCreateStart(t, rt, s)
	waitLog(t, s.LogPath, "ready", 10*time.Second)

	// containerd dies; the container exits while it is down; the
	// supervisor starts containerd again and the exit reaches the agent.
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", runtime.DefaultNamespace, id, "rootfs")
	if err := os.WriteFile(filepath.Join(rootfs, "tmp", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var pid2 int
	waitFor(t, "containerd started again", 20*time.Second, func() (bool, string) {
		pid2 = pidOf(dir)
		return pid2 != pid1 && alive(pid2) && answers(addr), "pid " + strconv.Itoa(pid2)
	})
	if ev := waitExit(t, rt, ch, id, 20*time.Second); ev.ExitCode != 4 {
		t.Fatalf("exit event %+v, want code 4", ev)
	}
	if st, err := rt.Status(ctx, id); err != nil || st.State != runtime.StateExited || st.ExitCode != 4 {
		t.Fatalf("status %+v %v", st, err)
	}
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	rt.Close()

	// A second agent on the same data directory adopts that containerd,
	// and can stop it.
	addr2, stop2, err := runtime.EnsureContainerd(ctx, "", dir, nil)
	if err != nil || addr2 != addr || pidOf(dir) != pid2 {
		t.Fatalf("adopt: %s pid %d (want %d) %v", addr2, pidOf(dir), pid2, err)
	}
	stops = append(stops, stop2)
	stop2()
	waitFor(t, "adopted containerd stopped", 15*time.Second, func() (bool, string) {
		return !alive(pid2), "alive"
	})
	// The first supervisor sees it gone and starts it again.
	var pid3 int
	waitFor(t, "containerd started again after the second stop", 20*time.Second, func() (bool, string) {
		pid3 = pidOf(dir)
		return pid3 != pid2 && alive(pid3) && answers(addr), "pid " + strconv.Itoa(pid3)
	})
	stop1()
	if alive(pid3) || answers(addr) {
		t.Fatalf("containerd %d still there after stop", pid3)
	}
}

// TestEnsureContainerdStartFailure: a containerd that cannot start is
// reported with the end of its log.
func TestEnsureContainerdStartFailure(t *testing.T) {
	bin := t.TempDir()
	fake := "#!/bin/sh\necho 'level=fatal msg=\"fake containerd: cannot serve\"' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(bin, "containerd"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	dir := t.TempDir()
	_, _, err := runtime.EnsureContainerd(tctx(t, 30*time.Second), filepath.Join(dir, "none.sock"), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "fake containerd: cannot serve") {
		t.Fatalf("error %v, want one with the log's last lines", err)
	}
	t.Log(err)
}
