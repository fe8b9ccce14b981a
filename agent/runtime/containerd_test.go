package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
)

// testImage is the busybox image every test container runs, imported
// once per containerd.
const testImage = "docker.io/library/busybox:shoal-test"

// harness is one private containerd with the test image and a Runtime on
// it, shared by the subtests of TestContainerd.
type harness struct {
	addr string
	rt   *runtime.Containerd
}

func newRuntime(t testing.TB, addr string, reg runtime.RegistryConfig) *runtime.Containerd {
	t.Helper()
	return newRuntimeIn(t, addr, "", reg)
}

// newRuntimeIn is newRuntime in containerd namespace ns.
func newRuntimeIn(t testing.TB, addr, ns string, reg runtime.RegistryConfig) *runtime.Containerd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := runtime.New(ctx, runtime.Options{Address: addr, Namespace: ns, Registry: reg})
	if err != nil {
		t.Fatalf("runtime: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func tctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// events subscribes to the runtime's events for the rest of the test.
func events(t testing.TB, rt runtime.Runtime) <-chan runtime.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := rt.Events(ctx)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	return ch
}

// waitExit waits for the exit event of container id.
func waitExit(t testing.TB, rt runtime.Runtime, ch <-chan runtime.Event, id string, timeout time.Duration) runtime.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed while waiting for the exit of %s", id)
			}
			if ev.ContainerID == id {
				return ev
			}
		case <-deadline.C:
			st, err := rt.Status(context.Background(), id)
			t.Fatalf("container %s: no exit event within %v; last status %+v (err %v)", id, timeout, st, err)
		}
	}
}

// waitFor polls cond until it holds; on timeout the test fails with what
// cond last saw.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last seen: %s", what, timeout, seen)
		}
		<-tick.C
	}
}

func waitLog(t testing.TB, path, want string, timeout time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%q in %s", want, path), timeout, func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		return bytes.Contains(b, []byte(want)), fmt.Sprintf("%q", b)
	})
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readLog reads a container's log file once it holds every piece of want:
// the shim copies output to the file on its own, and may finish after the
// exit event. It gives up after a deadline and returns what it last read.
func readLog(t testing.TB, path string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := readFile(t, path)
		complete := true
		for _, w := range want {
			complete = complete && strings.Contains(got, w)
		}
		if complete || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// spec is a container spec for the test image logging to a new file.
func spec(t testing.TB, args ...string) runtime.ContainerSpec {
	return runtime.ContainerSpec{
		PodUID: "uid-" + strings.ReplaceAll(t.Name(), "/", "-"), PodName: "pod", PodNamespace: "default", Name: "c",
		Image:   testImage,
		Command: args,
		LogPath: filepath.Join(t.TempDir(), "c", "0.log"),
		Labels:  map[string]string{"test": t.Name()},
	}
}

func mustCreateStart(t testing.TB, rt runtime.Runtime, s runtime.ContainerSpec) string {
	t.Helper()
	ctx := tctx(t, 30*time.Second)
	id, err := rt.Create(ctx, s)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := rt.Start(ctx, id); err != nil {
		t.Fatalf("start: %v", err)
	}
	return id
}

// run creates and starts a container and waits for its exit.
func run(t testing.TB, rt runtime.Runtime, s runtime.ContainerSpec) (string, runtime.Event) {
	t.Helper()
	ch := events(t, rt)
	id := mustCreateStart(t, rt, s)
	return id, waitExit(t, rt, ch, id, 30*time.Second)
}

func TestContainerd(t *testing.T) {
	addr := runtimetest.StartContainerd(t)
	reg := runtimetest.StartRegistry(t)
	rt := newRuntime(t, addr, runtime.RegistryConfig{Insecure: []string{reg}})
	f, err := os.Open(runtimetest.BuildBusyboxImage(t, testImage))
	if err != nil {
		t.Fatal(err)
	}
	names, err := rt.ImportImages(tctx(t, 30*time.Second), f)
	f.Close()
	if err != nil || !slices.Equal(names, []string{testImage}) {
		t.Fatalf("import: %v %v", names, err)
	}
	h := &harness{addr: addr, rt: rt}

	// The subtests run in parallel within this group, which returns when
	// all are done.
	t.Run("group", func(t *testing.T) {
		t.Run("ImportImages", h.testImport)
		t.Run("PullPolicies", func(t *testing.T) { h.testPullPolicies(t, reg) })
		t.Run("PullErrors", func(t *testing.T) { h.testPullErrors(t, reg) })
		t.Run("PullMirrorAndAuth", h.testPullMirrorAndAuth)
		t.Run("CommandArgs", h.testCommandArgs)
		t.Run("EnvWorkingDirLog", h.testEnvWorkingDirLog)
		t.Run("ExitCode", h.testExitCode)
		t.Run("Resources", h.testResources)
		t.Run("OOMKilled", h.testOOM)
		t.Run("Stop", h.testStop)
		t.Run("ListAndRemove", h.testListAndRemove)
		t.Run("Exec", h.testExec)
		t.Run("MountsHostnameResolvConf", h.testMounts)
		t.Run("SharedNetNS", h.testSharedNetNS)
		t.Run("Adoption", h.testAdoption)
		t.Run("ExitWhileAgentDown", h.testExitWhileDown)
	})

	// Nothing may be left by the subtests.
	left, err := rt.List(tctx(t, 10*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("containers left behind: %+v", left)
	}
}

// cleanupContainer removes id at the end of the test.
func cleanupContainer(t testing.TB, rt runtime.Runtime, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rt.Remove(ctx, id); err != nil && !runtime.IsNotFound(err) {
			t.Errorf("remove %s: %v", id, err)
		}
	})
}

func (h *harness) testImport(t *testing.T) {
	t.Parallel()
	const name = "example.org/imported/busybox:1"
	ctx := tctx(t, 30*time.Second)
	if _, err := h.rt.PullImage(ctx, name, runtime.PullNever); !errors.Is(err, runtime.ErrImageNeverPull) {
		t.Fatalf("before import, PullNever: %v, want ErrImageNeverPull", err)
	}
	f, err := os.Open(runtimetest.BuildImage(t, name, runtimetest.ImageOptions{Cmd: []string{"echo", "imported"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := h.rt.ImportImages(ctx, f)
	if err != nil || !slices.Equal(names, []string{name}) {
		t.Fatalf("import: %v %v", names, err)
	}
	id, err := h.rt.PullImage(ctx, name, runtime.PullNever)
	if err != nil || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("after import, PullNever: %q %v", id, err)
	}
	s := spec(t)
	s.Image = name
	cid, ev := run(t, h.rt, s)
	cleanupContainer(t, h.rt, cid)
	if ev.ExitCode != 0 || readLog(t, s.LogPath, "imported\n") != "imported\n" {
		t.Fatalf("exit %d, log %q", ev.ExitCode, readFile(t, s.LogPath))
	}
	st, err := h.rt.Status(ctx, cid)
	if err != nil || st.ImageID != id || st.Image != name {
		t.Fatalf("status image %q %q, want %q %q (err %v)", st.Image, st.ImageID, name, id, err)
	}

	// A `docker save` archive, named by its RepoTags.
	df, err := os.Open(runtimetest.BuildDockerArchive(t, "saved/app:v2", runtimetest.ImageOptions{Cmd: []string{"echo", "from-docker"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	const dname = "docker.io/saved/app:v2"
	names, err = h.rt.ImportImages(ctx, df)
	if err != nil || !slices.Equal(names, []string{dname}) {
		t.Fatalf("import docker archive: %v %v", names, err)
	}
	s = spec(t)
	s.Image = dname
	cid, ev = run(t, h.rt, s)
	cleanupContainer(t, h.rt, cid)
	if ev.ExitCode != 0 || readLog(t, s.LogPath, "from-docker\n") != "from-docker\n" {
		t.Fatalf("docker archive image: exit %d, log %q", ev.ExitCode, readFile(t, s.LogPath))
	}
}

func (h *harness) testPullPolicies(t *testing.T, reg string) {
	t.Parallel()
	ref := reg + "/test/policy:v1"
	runtimetest.PushImage(t, reg, "test/policy:v1", runtimetest.BuildImage(t, ref, runtimetest.ImageOptions{Cmd: []string{"echo", "one"}}))
	ctx := tctx(t, 60*time.Second)

	if _, err := h.rt.PullImage(ctx, ref, runtime.PullNever); !errors.Is(err, runtime.ErrImageNeverPull) {
		t.Fatalf("Never, absent: %v, want ErrImageNeverPull", err)
	}
	id1, err := h.rt.PullImage(ctx, ref, runtime.PullIfNotPresent)
	if err != nil {
		t.Fatalf("IfNotPresent, absent: %v", err)
	}
	// The tag moves to other content at the registry.
	runtimetest.PushImage(t, reg, "test/policy:v1", runtimetest.BuildImage(t, ref, runtimetest.ImageOptions{Cmd: []string{"echo", "two"}}))
	for _, tc := range []struct {
		policy runtime.PullPolicy
		same   bool // the ID stays that of the first pull
	}{
		{runtime.PullIfNotPresent, true},
		{runtime.PullNever, true},
		{runtime.PullAlways, false},
		{runtime.PullNever, false},
		{runtime.PullIfNotPresent, false},
	} {
		id, err := h.rt.PullImage(ctx, ref, tc.policy)
		if err != nil {
			t.Fatalf("%s: %v", tc.policy, err)
		}
		if (id == id1) != tc.same {
			t.Fatalf("%s: id %s, first pull %s, want same=%v", tc.policy, id, id1, tc.same)
		}
	}
	// The pulled image runs, with its new content.
	s := spec(t)
	s.Image = ref
	cid, ev := run(t, h.rt, s)
	cleanupContainer(t, h.rt, cid)
	if got := readLog(t, s.LogPath, "two\n"); ev.ExitCode != 0 || got != "two\n" {
		t.Fatalf("exit %d, log %q", ev.ExitCode, got)
	}
}

func (h *harness) testPullErrors(t *testing.T, reg string) {
	t.Parallel()
	runtimetest.PushImage(t, reg, "test/errs:v1", runtimetest.BuildBusyboxImage(t, reg+"/test/errs:v1"))
	unreachable := newRuntime(t, h.addr, runtime.RegistryConfig{Insecure: []string{"127.0.0.1:1"}})
	for _, tc := range []struct {
		name string
		rt   runtime.Runtime
		ref  string
		want []string // in the PullError's message
	}{
		{"no such repository", h.rt, reg + "/test/nothing:v1", []string{"NAME_UNKNOWN", "not found"}},
		{"no such tag", h.rt, reg + "/test/errs:v9", []string{"MANIFEST_UNKNOWN", "not found"}},
		{"registry down", unreachable, "127.0.0.1:1/test/errs:v1", []string{"connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.rt.PullImage(tctx(t, 30*time.Second), tc.ref, runtime.PullIfNotPresent)
			var pe *runtime.PullError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T), want *PullError", err, err)
			}
			t.Logf("%v", pe)
			for _, w := range tc.want {
				if !strings.Contains(pe.Message, w) {
					t.Errorf("message %q does not say %q", pe.Message, w)
				}
			}
		})
	}
	if _, err := h.rt.PullImage(tctx(t, 5*time.Second), "Busybox", runtime.PullAlways); !errors.Is(err, runtime.ErrInvalidImageName) {
		t.Errorf("invalid name: %v, want ErrInvalidImageName", err)
	}
}

func (h *harness) testPullMirrorAndAuth(t *testing.T) {
	t.Parallel()
	mirror := runtimetest.StartRegistry(t)
	archive := runtimetest.BuildImage(t, "docker.io/library/mirrored:v1", runtimetest.ImageOptions{Cmd: []string{"echo", "mirrored"}})
	runtimetest.PushImage(t, mirror, "library/mirrored:v1", archive)
	private := runtimetest.StartRegistryWithAuth(t, "alice", "s3cret")
	runtimetest.PushImage(t, private, "team/app:v1", archive)

	// docker.io is served by the mirror; the Docker Hub is never
	// contacted (the test machine cannot reach it).
	viaMirror := newRuntime(t, h.addr, runtime.RegistryConfig{
		Mirrors:  map[string][]string{"docker.io": {"http://" + mirror}},
		Insecure: []string{"127.0.0.1"},
		Auth:     map[string]runtime.BasicAuth{private: {Username: "alice", Password: "s3cret"}},
	})
	ctx := tctx(t, 60*time.Second)
	if _, err := viaMirror.PullImage(ctx, "mirrored:v1", runtime.PullAlways); err != nil {
		t.Fatalf("pull through the mirror: %v", err)
	}
	if _, err := viaMirror.PullImage(ctx, private+"/team/app:v1", runtime.PullAlways); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	noAuth := newRuntime(t, h.addr, runtime.RegistryConfig{Insecure: []string{private}})
	_, err := noAuth.PullImage(ctx, private+"/team/app:v1", runtime.PullAlways)
	var pe *runtime.PullError
	if !errors.As(err, &pe) || !strings.Contains(pe.Message, "UNAUTHORIZED") {
		t.Fatalf("pull without credentials: %v, want a PullError saying UNAUTHORIZED", err)
	}
	t.Logf("%v", pe)
	s := spec(t)
	s.Image = "mirrored:v1"
	cid, ev := run(t, viaMirror, s)
	cleanupContainer(t, viaMirror, cid)
	if got := readLog(t, s.LogPath, "mirrored\n"); ev.ExitCode != 0 || got != "mirrored\n" {
		t.Fatalf("exit %d, log %q", ev.ExitCode, got)
	}
}

func (h *harness) testCommandArgs(t *testing.T) {
	t.Parallel()
	const name = "example.org/entrypoint:1"
	f, err := os.Open(runtimetest.BuildImage(t, name, runtimetest.ImageOptions{Entrypoint: []string{"echo", "ep"}, Cmd: []string{"cmd"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := h.rt.ImportImages(tctx(t, 30*time.Second), f); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          string
	}{
		{"image defaults", nil, nil, "ep cmd\n"},
		{"args replace CMD", nil, []string{"a", "b"}, "ep a b\n"},
		{"command replaces both", []string{"echo", "c"}, nil, "c\n"},
		{"command and args", []string{"echo", "c"}, []string{"a"}, "c a\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := spec(t, tc.command...)
			s.Image = name
			s.Args = tc.args
			id, ev := run(t, h.rt, s)
			cleanupContainer(t, h.rt, id)
			if got := readLog(t, s.LogPath, tc.want); ev.ExitCode != 0 || got != tc.want {
				t.Fatalf("exit %d, log %q, want %q", ev.ExitCode, got, tc.want)
			}
		})
	}
}

func (h *harness) testEnvWorkingDirLog(t *testing.T) {
	t.Parallel()
	s := spec(t, "sh", "-c", `echo "$GREETING $WHO"; pwd; echo to-stderr >&2; case "$PATH" in */bin*) echo path-kept;; esac`)
	s.Env = []string{"GREETING=hello", "WHO=shoal"}
	s.WorkingDir = "/tmp"
	id, ev := run(t, h.rt, s)
	cleanupContainer(t, h.rt, id)
	wants := []string{"hello shoal\n", "/tmp\n", "to-stderr\n", "path-kept\n"}
	got := readLog(t, s.LogPath, wants...)
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("log %q lacks %q", got, w)
		}
	}
	if ev.ExitCode != 0 {
		t.Errorf("exit code %d", ev.ExitCode)
	}
}

func (h *harness) testExitCode(t *testing.T) {
	t.Parallel()
	s := spec(t, "sh", "-c", "exit 3")
	before := time.Now()
	id, ev := run(t, h.rt, s)
	cleanupContainer(t, h.rt, id)
	if ev.ExitCode != 3 || ev.OOMKilled || ev.Labels["test"] != t.Name() {
		t.Fatalf("event %+v, want exit code 3 with the container's labels", ev)
	}
	st, err := h.rt.Status(tctx(t, 10*time.Second), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.StateExited || st.ExitCode != 3 || st.OOMKilled {
		t.Fatalf("status %+v", st)
	}
	if st.StartedAt.Before(before.Add(-time.Second)) || st.FinishedAt.Before(st.StartedAt) || st.CreatedAt.IsZero() {
		t.Fatalf("times: created %v started %v finished %v", st.CreatedAt, st.StartedAt, st.FinishedAt)
	}
	if st.PodUID != s.PodUID || st.Name != "c" || st.LogPath != s.LogPath || st.Labels[runtime.LabelPodUID] != s.PodUID {
		t.Fatalf("identity: %+v", st)
	}
	for k := range st.Labels {
		if strings.HasPrefix(k, "io.shoal.runtime.") {
			t.Errorf("internal label %s shown", k)
		}
	}
	// A container runs once.
	if err := h.rt.Start(tctx(t, 10*time.Second), id); err == nil {
		t.Errorf("second start of an exited container succeeded")
	}
	// A command that does not exist: Start fails saying so, the
	// container stays created.
	bad := spec(t, "/no/such/binary")
	bid, err := h.rt.Create(tctx(t, 10*time.Second), bad)
	if err != nil {
		t.Fatal(err)
	}
	cleanupContainer(t, h.rt, bid)
	if err := h.rt.Start(tctx(t, 10*time.Second), bid); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("start of a missing binary: %v", err)
	}
	if st, err := h.rt.Status(tctx(t, 10*time.Second), bid); err != nil || st.State != runtime.StateCreated {
		t.Errorf("after a failed start: %+v %v", st, err)
	}
}

func (h *harness) testResources(t *testing.T) {
	t.Parallel()
	s := spec(t, "sh", "-c", `cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max`)
	s.CPUMillis = 250
	s.MemoryBytes = 64 << 20
	id, ev := run(t, h.rt, s)
	cleanupContainer(t, h.rt, id)
	got := readLog(t, s.LogPath, "25000", fmt.Sprint(64<<20))
	if ev.ExitCode != 0 || !strings.Contains(got, "25000") || !strings.Contains(got, fmt.Sprint(64<<20)) {
		t.Fatalf("exit %d, cgroup limits seen inside: %q, want quota 25000 and memory %d", ev.ExitCode, got, 64<<20)
	}
}

func (h *harness) testOOM(t *testing.T) {
	t.Parallel()
	s := spec(t, "sh", "-c", `a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done`)
	s.MemoryBytes = 16 << 20
	id, ev := run(t, h.rt, s)
	cleanupContainer(t, h.rt, id)
	if !ev.OOMKilled || ev.ExitCode != 137 {
		t.Fatalf("event %+v, want OOMKilled with exit code 137", ev)
	}
	st, err := h.rt.Status(tctx(t, 10*time.Second), id)
	if err != nil || !st.OOMKilled || st.State != runtime.StateExited {
		t.Fatalf("status %+v (err %v), want exited and OOMKilled", st, err)
	}
}

func (h *harness) testStop(t *testing.T) {
	t.Parallel()
	// An image whose STOPSIGNAL is SIGUSR1.
	const usr1Image = "example.org/stopsignal:1"
	f, err := os.Open(runtimetest.BuildImage(t, usr1Image, runtimetest.ImageOptions{StopSignal: "SIGUSR1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := h.rt.ImportImages(tctx(t, 30*time.Second), f); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		image    string
		script   string
		grace    time.Duration
		wantCode int32
		fast     bool // stops well before the grace period ends
	}{
		{"exits on TERM", testImage, `trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.05; done`, 20 * time.Second, 0, true},
		{"ignores TERM", testImage, `trap "" TERM; echo ready; while :; do sleep 0.05; done`, 700 * time.Millisecond, 137, false},
		{"image stop signal", usr1Image, `trap "exit 0" TERM; trap "exit 10" USR1; echo ready; while :; do sleep 0.05; done`, 20 * time.Second, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ch := events(t, h.rt)
			s := spec(t, "sh", "-c", tc.script)
			s.Image = tc.image
			id := mustCreateStart(t, h.rt, s)
			cleanupContainer(t, h.rt, id)
			waitLog(t, s.LogPath, "ready", 10*time.Second)
			start := time.Now()
			if err := h.rt.Stop(tctx(t, 60*time.Second), id, tc.grace); err != nil {
				t.Fatalf("stop: %v", err)
			}
			took := time.Since(start)
			st, err := h.rt.Status(tctx(t, 10*time.Second), id)
			if err != nil || st.State != runtime.StateExited || st.ExitCode != tc.wantCode {
				t.Fatalf("after Stop: %+v (err %v), want exited with %d", st, err, tc.wantCode)
			}
			if tc.fast && took > 5*time.Second {
				t.Errorf("stop took %v although the process exits on TERM", took)
			}
			if !tc.fast && took < tc.grace {
				t.Errorf("stop took %v, less than the grace period %v", took, tc.grace)
			}
			ev := waitExit(t, h.rt, ch, id, 10*time.Second)
			if ev.ExitCode != tc.wantCode {
				t.Errorf("exit event %+v, want code %d", ev, tc.wantCode)
			}
			// Stopping again is a no-op.
			if err := h.rt.Stop(tctx(t, 10*time.Second), id, time.Second); err != nil {
				t.Errorf("second stop: %v", err)
			}
		})
	}
}

func (h *harness) testListAndRemove(t *testing.T) {
	t.Parallel()
	ctx := tctx(t, 60*time.Second)
	var ids []string
	for i, pod := range []string{"a", "a", "b"} {
		s := spec(t, "sleep", "1000")
		s.Name = fmt.Sprintf("c%d", i)
		s.Labels = map[string]string{"list-test": t.Name(), "pod": pod, "odd value": "with spaces/and \"quotes\""}
		id, err := h.rt.Create(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		cleanupContainer(t, h.rt, id)
		ids = append(ids, id)
	}
	if err := h.rt.Start(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filter map[string]string
		want   []string
	}{
		{map[string]string{"list-test": t.Name()}, ids},
		{map[string]string{"list-test": t.Name(), "pod": "a"}, ids[:2]},
		{map[string]string{"list-test": t.Name(), "pod": "b"}, ids[2:]},
		{map[string]string{"list-test": t.Name(), "odd value": "with spaces/and \"quotes\""}, ids},
		{map[string]string{"list-test": t.Name(), "pod": "c"}, nil},
		{map[string]string{"list-test": t.Name(), runtime.LabelContainerName: "c2"}, ids[2:]},
	} {
		got, err := h.rt.List(ctx, tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, st := range got {
			gotIDs = append(gotIDs, st.ID)
			want := runtime.StateCreated
			if st.ID == ids[0] {
				want = runtime.StateRunning
			}
			if st.State != want {
				t.Errorf("%s: state %s, want %s", st.ID, st.State, want)
			}
		}
		slices.Sort(gotIDs)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(gotIDs, want) {
			t.Errorf("List(%v) = %v, want %v", tc.filter, gotIDs, want)
		}
	}
	// Remove kills a running container.
	for _, id := range ids {
		if err := h.rt.Remove(ctx, id); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	if got, _ := h.rt.List(ctx, map[string]string{"list-test": t.Name()}); len(got) != 0 {
		t.Fatalf("after Remove, List = %+v", got)
	}
	for name, err := range map[string]error{
		"Status": func() error { _, err := h.rt.Status(ctx, ids[0]); return err }(),
		"Start":  h.rt.Start(ctx, ids[0]),
		"Stop":   h.rt.Stop(ctx, ids[0], time.Second),
		"Remove": h.rt.Remove(ctx, ids[0]),
		"Exec":   func() error { _, err := h.rt.Exec(ctx, ids[0], []string{"true"}, nil, nil, nil, false); return err }(),
	} {
		if !runtime.IsNotFound(err) {
			t.Errorf("%s of a removed container: %v, want not found", name, err)
		}
	}
	if _, err := h.rt.Create(ctx, runtime.ContainerSpec{Name: "x", Image: "example.org/never/pulled:1"}); !errors.Is(err, runtime.ErrImageNotPresent) {
		t.Errorf("create from an absent image: %v, want ErrImageNotPresent", err)
	}
}

func (h *harness) testExec(t *testing.T) {
	t.Parallel()
	s := spec(t, "sh", "-c", "echo ready; exec sleep 1000")
	id := mustCreateStart(t, h.rt, s)
	cleanupContainer(t, h.rt, id)
	waitLog(t, s.LogPath, "ready", 10*time.Second)
	for _, tc := range []struct {
		name             string
		cmd              []string
		stdin            string
		tty              bool
		code             int
		stdout, stderr   string
		stdoutContaining string
	}{
		{"streams and code", []string{"sh", "-c", "echo out; echo err >&2; exit 5"}, "", false, 5, "out\n", "err\n", ""},
		{"stdin", []string{"sh", "-c", "cat; echo done"}, "hello\nworld\n", false, 0, "hello\nworld\ndone\n", "", ""},
		{"tty", []string{"tty"}, "", true, 0, "", "", "/dev/pts/"},
		{"no such command", []string{"/no/such/command"}, "", false, -1, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			var stdin *strings.Reader
			if tc.stdin != "" {
				stdin = strings.NewReader(tc.stdin)
			}
			var code int
			var err error
			if stdin != nil {
				code, err = h.rt.Exec(tctx(t, 30*time.Second), id, tc.cmd, stdin, &stdout, &stderr, tc.tty)
			} else {
				code, err = h.rt.Exec(tctx(t, 30*time.Second), id, tc.cmd, nil, &stdout, &stderr, tc.tty)
			}
			if tc.code == -1 {
				if err == nil {
					t.Fatalf("exec of a missing command: code %d, no error", code)
				}
				return
			}
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			if code != tc.code {
				t.Errorf("code %d, want %d", code, tc.code)
			}
			if tc.stdoutContaining != "" {
				if !strings.Contains(stdout.String(), tc.stdoutContaining) {
					t.Errorf("stdout %q lacks %q", stdout.String(), tc.stdoutContaining)
				}
				return
			}
			if stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("stdout %q stderr %q, want %q %q", stdout.String(), stderr.String(), tc.stdout, tc.stderr)
			}
		})
	}
	// A context that ends kills the exec'd process.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := h.rt.Exec(ctx, id, []string{"sleep", "100"}, nil, nil, nil, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("exec past its deadline: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("exec past its deadline returned after %v", took)
	}
}

func (h *harness) testMounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte("from-the-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.96.0.10\nsearch default.svc.cluster.local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := spec(t, "sh", "-c", `cat /data/data.txt; if touch /data/x 2>/dev/null; then echo ro-writable; fi; echo written > /out/file; hostname; cat /etc/resolv.conf`)
	s.Mounts = []runtime.Mount{{Source: dir, Target: "/data", ReadOnly: true}, {Source: rw, Target: "/out"}}
	s.Hostname = "web-0"
	s.ResolvConfPath = resolv
	id, ev := run(t, h.rt, s)
	cleanupContainer(t, h.rt, id)
	wants := []string{"from-the-host\n", "web-0\n", "nameserver 10.96.0.10\n"}
	got := readLog(t, s.LogPath, wants...)
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("log %q lacks %q", got, w)
		}
	}
	if strings.Contains(got, "ro-writable") {
		t.Errorf("a read-only mount was writable")
	}
	if b, err := os.ReadFile(filepath.Join(rw, "file")); err != nil || string(b) != "written\n" {
		t.Errorf("read-write mount: %q %v", b, err)
	}
	if ev.ExitCode != 0 {
		t.Errorf("exit code %d; log %q", ev.ExitCode, got)
	}
	if _, err := h.rt.Create(tctx(t, 10*time.Second), runtime.ContainerSpec{Name: "x", Image: testImage, Mounts: []runtime.Mount{{Source: "/no/such/dir", Target: "/x"}}}); err == nil {
		t.Errorf("create with a missing mount source succeeded")
	}
}

func (h *harness) testSharedNetNS(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) is not installed")
	}
	name := fmt.Sprintf("shoaltest-%d", time.Now().UnixNano()%1e9)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	nsPath := "/run/netns/" + name
	ch := events(t, h.rt)

	server := spec(t, "sh", "-c", "mkdir -p /tmp/www && echo hello-from-the-pod > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:48123 -h /tmp/www")
	server.Name = "server"
	server.NetNSPath = nsPath
	sid := mustCreateStart(t, h.rt, server)
	cleanupContainer(t, h.rt, sid)

	// The client retries inside the container until the server listens.
	client := spec(t, "sh", "-c", "for i in $(seq 200); do wget -q -O - http://127.0.0.1:48123/ && exit 0; sleep 0.05; done; exit 1")
	client.Name = "client"
	client.NetNSPath = nsPath
	cid := mustCreateStart(t, h.rt, client)
	cleanupContainer(t, h.rt, cid)
	ev := waitExit(t, h.rt, ch, cid, 30*time.Second)
	if got := readLog(t, client.LogPath, "hello-from-the-pod"); ev.ExitCode != 0 || !strings.Contains(got, "hello-from-the-pod") {
		t.Fatalf("client exit %d, log %q; server log %q", ev.ExitCode, got, readFile(t, server.LogPath))
	}
	// The host's loopback is another namespace: nothing listens there.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:48123", time.Second); err == nil {
		c.Close()
		t.Errorf("the pod's server answers on the host's loopback")
	}
	if err := h.rt.Stop(tctx(t, 30*time.Second), sid, 0); err != nil {
		t.Fatal(err)
	}
}

// testAdoption: a second Runtime, as a restarted agent makes, finds the
// running container with its ID, state and PID, and drives it.
func (h *harness) testAdoption(t *testing.T) {
	t.Parallel()
	first := newRuntime(t, h.addr, runtime.RegistryConfig{})
	s := spec(t, "sh", "-c", `trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done`)
	s.Labels["adoption"] = t.Name()
	id := mustCreateStart(t, first, s)
	cleanupContainer(t, h.rt, id)
	waitLog(t, s.LogPath, "ready", 10*time.Second)
	before, err := first.Status(tctx(t, 10*time.Second), id)
	if err != nil || before.State != runtime.StateRunning || before.PID == 0 {
		t.Fatalf("status before: %+v %v", before, err)
	}
	first.Close()

	second := newRuntime(t, h.addr, runtime.RegistryConfig{})
	got, err := second.List(tctx(t, 10*time.Second), map[string]string{"adoption": t.Name()})
	if err != nil || len(got) != 1 {
		t.Fatalf("List after restart: %+v %v", got, err)
	}
	if g := got[0]; g.ID != id || g.State != runtime.StateRunning || g.PID != before.PID || !g.StartedAt.Equal(before.StartedAt) || g.LogPath != s.LogPath {
		t.Fatalf("after restart: %+v, before: %+v", g, before)
	}
	var out bytes.Buffer
	if code, err := second.Exec(tctx(t, 10*time.Second), id, []string{"echo", "still-here"}, nil, &out, nil, false); err != nil || code != 0 || out.String() != "still-here\n" {
		t.Fatalf("exec after restart: %d %q %v", code, out.String(), err)
	}
	ch := events(t, second)
	if err := second.Stop(tctx(t, 30*time.Second), id, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if ev := waitExit(t, second, ch, id, 10*time.Second); ev.ExitCode != 0 {
		t.Fatalf("exit after restart: %+v", ev)
	}
}

// testExitWhileDown: a container that exits (OOM-killed) while no Runtime
// runs is reported exited and OOM-killed by the next one.
func (h *harness) testExitWhileDown(t *testing.T) {
	t.Parallel()
	// A namespace of its own: the harness's runtime, which follows the
	// events of its namespace, must not see this OOM kill either.
	const ns = "shoaltest-down"
	first := newRuntimeIn(t, h.addr, ns, runtime.RegistryConfig{})
	f, err := os.Open(runtimetest.BuildBusyboxImage(t, testImage))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := first.ImportImages(tctx(t, 30*time.Second), f); err != nil {
		t.Fatal(err)
	}
	// It waits for /tmp/go, then allocates beyond its limit.
	s := spec(t, "sh", "-c", `echo ready; while [ ! -e /tmp/go ]; do sleep 0.02; done; a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done`)
	s.MemoryBytes = 16 << 20
	id := mustCreateStart(t, first, s)
	waitLog(t, s.LogPath, "ready", 10*time.Second)
	first.Close()

	// No Runtime now: wait for the exit with containerd's own client.
	c, err := client.New(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(tctx(t, 30*time.Second), ns)
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The container's root file system is mounted in containerd's state
	// directory: the host can create the file the container waits for.
	rootfs := filepath.Join(filepath.Dir(h.addr), "state", "io.containerd.runtime.v2.task", ns, id, "rootfs")
	if err := os.WriteFile(filepath.Join(rootfs, "tmp", "go"), nil, 0o644); err != nil {
		t.Fatalf("signal the container: %v", err)
	}
	select {
	case st := <-exited:
		if st.ExitCode() != 137 {
			t.Fatalf("exit code %d, want 137", st.ExitCode())
		}
	case <-ctx.Done():
		t.Fatal("the container did not exit")
	}

	second := newRuntimeIn(t, h.addr, ns, runtime.RegistryConfig{})
	cleanupContainer(t, second, id)
	st, err := second.Status(tctx(t, 10*time.Second), id)
	if err != nil || st.State != runtime.StateExited || !st.OOMKilled || st.ExitCode != 137 || st.FinishedAt.IsZero() {
		t.Fatalf("status after restart: %+v (err %v), want exited, OOMKilled, 137", st, err)
	}
}

// Compile-time check that the implementation satisfies the interface.
var _ runtime.Runtime = (*runtime.Containerd)(nil)
