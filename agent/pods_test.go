package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster"
)

// hostNS is a throwaway network namespace standing in for the node's own:
// the pod network lives there, so the test changes nothing on the machine.
type hostNS struct {
	ns netns.NsHandle
}

func newHostNS(t testing.TB) *hostNS {
	t.Helper()
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // also enters it
	if err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up: %v", err)
	}
	h := &hostNS{ns: ns}
	t.Cleanup(func() { ns.Close() })
	return h
}

// do runs f with the calling thread in the namespace.
func (h *hostNS) do(f func() error) error {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(h.ns); err != nil {
		return err
	}
	defer netns.Set(orig)
	return f()
}

func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v; last seen: %s", what, timeout, last)
}

// podEnv is one node of a real cluster with a pod manager on a private
// containerd, a pod network in a throwaway namespace, and a registry.
type podEnv struct {
	t        testing.TB
	c        *cluster.Cluster
	client   api.ShoalClient
	rtAddr   string
	registry string
	image    string // a busybox image in the registry
	host     *hostNS
	network  *podnet.CNI
	dataDir  string
	cancel   context.CancelFunc
	done     chan error
	rt       *runtime.Containerd
	m        *podManager
}

func newPodEnv(t testing.TB) *podEnv {
	t.Helper()
	runtimetest.Require(t)
	e := &podEnv{t: t, dataDir: t.TempDir()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SHOAL_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := cluster.Start(ctx, cluster.Config{DataDir: filepath.Join(e.dataDir, "node"), NodeName: "n1", AdvertiseAddr: "127.0.10.1", Init: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- c.ServeAPI(ctx) }()
	t.Cleanup(func() { cancel(); <-served; c.Close() })
	e.c = c
	if e.client, err = c.SelfClient(); err != nil {
		t.Fatal(err)
	}
	e.registry = runtimetest.StartRegistry(t)
	e.image = e.registry + "/shoal/busybox:1"
	runtimetest.PushImage(t, e.registry, "shoal/busybox:1", runtimetest.BuildBusyboxImage(t, "shoal/busybox:1"))
	e.rtAddr = runtimetest.StartContainerd(t)
	e.host = newHostNS(t)
	var podCIDR string
	waitUntil(t, 20*time.Second, "the node's pod subnet", func() (bool, string) {
		obj, err := e.client.Get(ctx, &api.GetRequest{Kind: "Node", Name: "n1"})
		podCIDR = obj.GetNode().GetSpec().GetPodCidr()
		return err == nil && podCIDR != "", fmt.Sprint(obj, err)
	})
	if err := e.host.do(func() error {
		var err error
		e.network, err = podnet.New(ctx, podnet.Config{PodCIDR: podCIDR, ClusterCIDR: c.PodCIDR(), StateDir: filepath.Join(e.dataDir, "node")})
		return err
	}); err != nil {
		t.Fatalf("pod network: %v", err)
	}
	t.Cleanup(func() { e.network.Close() })
	t.Cleanup(func() {
		// Also after a failure: no pod namespace outlives the test.
		refs, _ := e.network.List(context.Background())
		for _, ref := range refs {
			if err := e.network.Teardown(context.Background(), ref); err != nil {
				t.Errorf("teardown pod network %s: %v", ref.UID, err)
			}
		}
	})
	e.startManager()
	return e
}

// startManager starts a pod manager with a runtime of its own, as an agent
// process would.
func (e *podEnv) startManager() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := runtime.New(ctx, runtime.Options{Address: e.rtAddr,
		Registry: runtime.RegistryConfig{Insecure: []string{e.registry}}})
	if err != nil {
		e.t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SHOAL_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m := newPodManager("n1", "127.0.10.1", filepath.Join(e.dataDir, "node"), rt, e.network, e.client, log)
	e.rt, e.cancel, e.done, e.m = rt, cancel, make(chan error, 1), m
	e.c.SetPodIO(m)
	go func() { e.done <- m.run(ctx) }()
	e.t.Cleanup(e.stopManager)
}

// stopManager stops the manager as a killed agent would stop: containers
// keep running.
func (e *podEnv) stopManager() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	e.rt.Close()
	e.cancel = nil
}

func (e *podEnv) apply(pod *api.Pod) {
	e.t.Helper()
	pod.Spec.NodeName = "n1"
	if _, err := e.client.Apply(context.Background(), &api.ApplyRequest{Objects: []*api.Object{api.Wrap(pod)}}); err != nil {
		e.t.Fatalf("apply pod %s: %v", pod.Metadata.Name, err)
	}
}

func (e *podEnv) pod(name string) *api.Pod {
	obj, err := e.client.Get(context.Background(), &api.GetRequest{Kind: "Pod", Name: name})
	if err != nil {
		return nil
	}
	return obj.GetPod()
}

func describe(p *api.Pod) string {
	if p == nil {
		return "no pod"
	}
	b, _ := api.MarshalJSON(p.GetStatus())
	return string(b)
}

func containerStatus(p *api.Pod, name string) *api.ContainerStatus {
	for _, cs := range p.GetStatus().GetContainerStatuses() {
		if cs.Name == name {
			return cs
		}
	}
	return nil
}

func TestPodsOnContainerd(t *testing.T) {
	e := newPodEnv(t)
	grace := int32(2)
	// Two containers sharing a network namespace and an emptyDir: an HTTP
	// server, and a sidecar that writes its page and fetches it over
	// localhost.
	e.apply(&api.Pod{
		Metadata: &api.ObjectMeta{Name: "web"},
		Spec: &api.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Volumes:                       []*api.Volume{{Name: "www", EmptyDir: &api.EmptyDirVolumeSource{}}},
			Containers: []*api.Container{
				{Name: "httpd", Image: e.image, Command: []string{"httpd", "-f", "-p", "8080", "-h", "/www"},
					VolumeMounts: []*api.VolumeMount{{Name: "www", MountPath: "/www"}}},
				{Name: "fetch", Image: e.image, Command: []string{"sh", "-c",
					"echo hello from $POD > /www/index.html; while :; do wget -q -O - http://127.0.0.1:8080/ >/tmp/seen 2>&1 && cat /tmp/seen; sleep 1; done"},
					Env:          []*api.EnvVar{{Name: "POD", Value: "web"}},
					VolumeMounts: []*api.VolumeMount{{Name: "www", MountPath: "/www"}}},
			},
		},
	})
	var ip string
	waitUntil(t, 60*time.Second, "pod web Running with both containers ready", func() (bool, string) {
		p := e.pod("web")
		ok := p.GetStatus().GetPhase() == "Running" && len(p.GetStatus().GetContainerStatuses()) == 2
		for _, cs := range p.GetStatus().GetContainerStatuses() {
			ok = ok && cs.Ready
		}
		ip = p.GetStatus().GetPodIp()
		return ok && ip != "", describe(p)
	})
	// The pod's IP answers HTTP from the node.
	waitUntil(t, 20*time.Second, "HTTP from the node to the pod's IP", func() (bool, string) {
		var body string
		err := e.host.do(func() error {
			// Dial on this thread: it is the one in the node's namespace
			// (an http.Client would dial from another thread).
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 2*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
				return err
			}
			b, err := io.ReadAll(conn)
			body = string(b)
			return err
		})
		return err == nil && strings.Contains(body, "hello from web"), fmt.Sprint(body, err)
	})

	// Logs through the API, followed; exec with streams and exit code.
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	logs, err := e.client.Logs(lctx, &api.LogsRequest{Name: "web", Container: "fetch", Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	for strings.Count(seen.String(), "hello from web") < 3 {
		chunk, err := logs.Recv()
		if err != nil {
			t.Fatalf("logs -f: %v after %q", err, seen.String())
		}
		seen.Write(chunk.Data)
	}
	lcancel()
	ex, err := e.client.Exec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ex.Send(&api.ExecRequest{Name: "web", Container: "httpd", Command: []string{"sh", "-c", "cat; echo out; echo err >&2; exit 7"}, Stdin: true, StdinData: []byte("in\n"), StdinClose: true})
	ex.CloseSend()
	var stdout, stderr string
	code := int32(-1)
	for {
		resp, err := ex.Recv()
		if err != nil {
			t.Fatalf("exec: %v (stdout %q stderr %q)", err, stdout, stderr)
		}
		stdout += string(resp.Stdout)
		stderr += string(resp.Stderr)
		if resp.Exited {
			code = resp.ExitCode
			break
		}
	}
	if code != 7 || stdout != "in\nout\n" || stderr != "err\n" {
		t.Fatalf("exec: code %d stdout %q stderr %q", code, stdout, stderr)
	}

	// An image archive loaded through the API runs without any registry.
	archive, err := os.ReadFile(runtimetest.BuildBusyboxImage(t, "shoal/loaded:1"))
	if err != nil {
		t.Fatal(err)
	}
	load, err := e.client.LoadImage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(archive); i += 64 << 10 {
		if err := load.Send(&api.ImageChunk{Data: archive[i:min(i+64<<10, len(archive))]}); err != nil {
			t.Fatal(err)
		}
	}
	loaded, err := load.CloseAndRecv()
	if err != nil || len(loaded.Images) != 1 || !strings.Contains(loaded.Images[0], "shoal/loaded:1") {
		t.Fatalf("load image: %v %v", loaded, err)
	}
	e.apply(&api.Pod{Metadata: &api.ObjectMeta{Name: "loaded"}, Spec: &api.PodSpec{TerminationGracePeriodSeconds: &grace,
		Containers: []*api.Container{{Name: "c", Image: "shoal/loaded:1", ImagePullPolicy: "Never", Command: []string{"sleep", "3600"}}}}})
	waitUntil(t, 30*time.Second, "a pod of the loaded image runs", func() (bool, string) {
		p := e.pod("loaded")
		return p.GetStatus().GetPhase() == "Running", describe(p)
	})

	// A crash-looping container restarts with back-off.
	e.apply(&api.Pod{Metadata: &api.ObjectMeta{Name: "crash"}, Spec: &api.PodSpec{
		Containers: []*api.Container{{Name: "c", Image: e.image, Command: []string{"sh", "-c", "exit 1"}}}}})
	waitUntil(t, 60*time.Second, "crash in CrashLoopBackOff after a restart", func() (bool, string) {
		cs := containerStatus(e.pod("crash"), "c")
		return cs.GetRestartCount() >= 1 && cs.GetState().GetWaiting().GetReason() == "CrashLoopBackOff" &&
			cs.GetLastState().GetTerminated().GetExitCode() == 1, describe(e.pod("crash"))
	})
	// Over its memory limit: OOMKilled.
	e.apply(&api.Pod{Metadata: &api.ObjectMeta{Name: "oom"}, Spec: &api.PodSpec{RestartPolicy: "Never",
		Containers: []*api.Container{{Name: "c", Image: e.image, Command: []string{"sh", "-c", `a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done`},
			Resources: &api.ResourceRequirements{Limits: map[string]string{"memory": "16Mi"}}}}}})
	waitUntil(t, 60*time.Second, "oom OOMKilled", func() (bool, string) {
		p := e.pod("oom")
		cs := containerStatus(p, "c")
		return cs.GetState().GetTerminated().GetReason() == "OOMKilled" && p.GetStatus().GetPhase() == "Failed", describe(p)
	})
	// An image that does not exist: the pull error shows, nothing else waits.
	e.apply(&api.Pod{Metadata: &api.ObjectMeta{Name: "noimage"}, Spec: &api.PodSpec{
		Containers: []*api.Container{{Name: "c", Image: e.registry + "/shoal/nothing:1"}}}})
	waitUntil(t, 60*time.Second, "noimage waiting with the pull error", func() (bool, string) {
		w := containerStatus(e.pod("noimage"), "c").GetState().GetWaiting()
		return (w.GetReason() == "ErrImagePull" || w.GetReason() == "ImagePullBackOff") && strings.Contains(w.GetMessage(), "nothing"), describe(e.pod("noimage"))
	})
	e.apply(&api.Pod{Metadata: &api.ObjectMeta{Name: "after"}, Spec: &api.PodSpec{TerminationGracePeriodSeconds: &grace,
		Containers: []*api.Container{{Name: "c", Image: e.image, Command: []string{"sleep", "3600"}}}}})
	waitUntil(t, 30*time.Second, "a pod applied after the failing one runs", func() (bool, string) {
		p := e.pod("after")
		return p.GetStatus().GetPhase() == "Running", describe(p)
	})

	// Probes: a readiness probe that fails keeps the pod unready; a
	// liveness probe that fails restarts the container.
	e.apply(&api.Pod{Metadata: &api.ObjectMeta{Name: "probed"}, Spec: &api.PodSpec{TerminationGracePeriodSeconds: &grace,
		Containers: []*api.Container{{Name: "c", Image: e.image,
			Command:        []string{"sh", "-c", "touch /tmp/alive; sleep 3; rm /tmp/alive; sleep 3600"},
			ReadinessProbe: &api.Probe{HttpGet: &api.HTTPGetAction{Path: "/", Port: structpb.NewNumberValue(9999)}, PeriodSeconds: 1},
			LivenessProbe:  &api.Probe{Exec: &api.ExecAction{Command: []string{"test", "-f", "/tmp/alive"}}, PeriodSeconds: 1, FailureThreshold: 2},
		}}}})
	waitUntil(t, 60*time.Second, "probed restarted by its liveness probe, never ready", func() (bool, string) {
		p := e.pod("probed")
		cs := containerStatus(p, "c")
		var ready string
		for _, c := range p.GetStatus().GetConditions() {
			if c.Type == "Ready" {
				ready = c.Status
			}
		}
		return cs.GetRestartCount() >= 1 && !cs.GetReady() && ready == "False", describe(p)
	})

	// The agent dies and comes back: the same containers run, none added.
	ctx := context.Background()
	before, err := e.rt.List(ctx, map[string]string{runtime.LabelPodUID: e.pod("web").Metadata.Uid})
	if err != nil || len(before) != 2 {
		t.Fatalf("web's containers: %v %v", before, err)
	}
	e.stopManager()
	e.startManager()
	// Let the new manager reconcile a few times, its workers done.
	waitUntil(t, 20*time.Second, "the new manager has reconciled three times", func() (bool, string) {
		return e.m.idleAfter(3), "busy"
	})
	after, err := e.rt.List(ctx, map[string]string{runtime.LabelPodUID: e.pod("web").Metadata.Uid})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(cs []runtime.ContainerStatus) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID+"="+c.State)
		}
		return strings.Join(out, ",")
	}
	if ids(before) != ids(after) {
		t.Fatalf("containers changed across an agent restart:\nbefore %s\nafter  %s", ids(before), ids(after))
	}

	// Deleting the pod removes its containers and frees its IP.
	uid := e.pod("web").Metadata.Uid
	if _, err := e.client.Delete(ctx, &api.DeleteRequest{Kind: "Pod", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "web's containers and network gone", func() (bool, string) {
		cs, _ := e.rt.List(ctx, map[string]string{runtime.LabelPodUID: uid})
		_, has, _ := e.network.Status(ctx, podnet.PodRef{UID: uid})
		return len(cs) == 0 && !has, fmt.Sprintf("%d containers, network %v", len(cs), has)
	})
	// Clean up the rest through the manager too.
	for _, name := range []string{"crash", "oom", "noimage", "after", "probed", "loaded"} {
		e.client.Delete(ctx, &api.DeleteRequest{Kind: "Pod", Name: name})
	}
	waitUntil(t, 30*time.Second, "every container gone", func() (bool, string) {
		cs, _ := e.rt.List(ctx, nil)
		refs, _ := e.network.List(ctx)
		return len(cs) == 0 && len(refs) == 0, fmt.Sprintf("%d containers, %d networks", len(cs), len(refs))
	})
}
