package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/cluster"
)

// A hollow agent (`shoal agent --hollow`) is the real agent with the real
// pod manager, over a runtime that runs nothing and a pod network that
// only hands out addresses: containers "run" from Start to Stop, exec
// probes pass, a pod gets an IP of the node's subnet that nothing answers
// on (so httpGet and tcpSocket probes fail). No containerd, no CNI, no
// root: many hollow agents fit on one machine for scale tests.

// runHollowPods is runPods over the hollow runtime and network.
func runHollowPods(ctx context.Context, c *cluster.Cluster, svc *podsService, dataDir string, log *slog.Logger) error {
	client, err := c.SelfClient()
	if err != nil {
		return err
	}
	node := c.NodeName()
	podCIDR := waitPodCIDR(ctx, client, node)
	if podCIDR == "" {
		return nil // ctx ended
	}
	subnet, err := netip.ParsePrefix(podCIDR)
	if err != nil || !subnet.Addr().Is4() {
		return fmt.Errorf("pod subnet %q: want an IPv4 CIDR", podCIDR)
	}
	rt := newHollowRuntime()
	defer rt.Close()
	host, _, _ := net.SplitHostPort(c.APIAddress())
	m := newPodManager(node, host, dataDir, rt, &hollowNetwork{subnet: subnet.Masked(), pods: map[string]hollowPod{}},
		client, log.With("component", "pods", "hollow", true))
	svc.set(m)
	defer svc.set(nil)
	log.Info("running pods hollow: no containers, no pod network", "podCIDR", podCIDR)
	return m.run(ctx)
}

// hollowRuntime keeps containers as records in memory.
type hollowRuntime struct {
	mu         sync.Mutex
	seq        int
	containers map[string]*runtime.ContainerStatus
	subs       []*hollowSub
	closed     chan struct{}
	closeOnce  sync.Once
}

type hollowSub struct {
	in   chan runtime.Event
	done chan struct{}
}

func newHollowRuntime() *hollowRuntime {
	return &hollowRuntime{containers: map[string]*runtime.ContainerStatus{}, closed: make(chan struct{})}
}

func (r *hollowRuntime) PullImage(_ context.Context, ref string, _ runtime.PullPolicy) (string, error) {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(ref))), nil
}

func (r *hollowRuntime) ImportImages(_ context.Context, rd io.Reader) ([]string, error) {
	_, err := io.Copy(io.Discard, rd)
	return nil, err
}

func (r *hollowRuntime) Create(ctx context.Context, spec runtime.ContainerSpec) (string, error) {
	imageID, _ := r.PullImage(ctx, spec.Image, runtime.PullIfNotPresent)
	labels := map[string]string{runtime.LabelPodUID: spec.PodUID, runtime.LabelPodName: spec.PodName,
		runtime.LabelPodNamespace: spec.PodNamespace, runtime.LabelContainerName: spec.Name}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	if spec.LogPath != "" { // an empty log, so that `shoal logs` answers
		if err := os.WriteFile(spec.LogPath, nil, 0o600); err != nil {
			return "", err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	id := "hollow-" + strconv.Itoa(r.seq)
	r.containers[id] = &runtime.ContainerStatus{ID: id, PodUID: spec.PodUID, PodName: spec.PodName, PodNamespace: spec.PodNamespace,
		Name: spec.Name, Labels: labels, State: runtime.StateCreated, CreatedAt: time.Now(), Image: spec.Image, ImageID: imageID,
		LogPath: spec.LogPath}
	return id, nil
}

// get returns the container id; r.mu is held.
func (r *hollowRuntime) get(id string) (*runtime.ContainerStatus, error) {
	c := r.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	return c, nil
}

func (r *hollowRuntime) Start(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err == nil {
		c.State, c.StartedAt, c.PID = runtime.StateRunning, time.Now(), uint32(100000+r.seq)
	}
	return err
}

// Stop ends a running container as SIGTERM would (exit code 143).
func (r *hollowRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
	r.mu.Lock()
	c, err := r.get(id)
	if err != nil || c.State != runtime.StateRunning {
		r.mu.Unlock()
		return err
	}
	c.State, c.ExitCode, c.FinishedAt = runtime.StateExited, 143, time.Now()
	ev := runtime.Event{Type: runtime.EventExit, ContainerID: id, Labels: c.Labels, ExitCode: 143, FinishedAt: c.FinishedAt}
	subs := append([]*hollowSub(nil), r.subs...)
	r.mu.Unlock()
	for _, s := range subs {
		select {
		case s.in <- ev:
		case <-s.done:
		}
	}
	return nil
}

func (r *hollowRuntime) Remove(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.get(id)
	delete(r.containers, id)
	return err
}

func (r *hollowRuntime) Status(_ context.Context, id string) (runtime.ContainerStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return runtime.ContainerStatus{}, err
	}
	return *c, nil
}

func (r *hollowRuntime) List(_ context.Context, filter map[string]string) ([]runtime.ContainerStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runtime.ContainerStatus
next:
	for _, c := range r.containers {
		for k, v := range filter {
			if c.Labels[k] != v {
				continue next
			}
		}
		out = append(out, *c)
	}
	return out, nil
}

// Exec runs nothing and succeeds: exec probes pass.
func (r *hollowRuntime) Exec(context.Context, string, []string, io.Reader, io.Writer, io.Writer, bool) (int, error) {
	return 0, nil
}

// Events delivers the exits Stop makes, in order, never dropped: a queue
// between Stop and the reader.
func (r *hollowRuntime) Events(ctx context.Context) (<-chan runtime.Event, error) {
	s := &hollowSub{in: make(chan runtime.Event), done: make(chan struct{})}
	r.mu.Lock()
	r.subs = append(r.subs, s)
	r.mu.Unlock()
	out := make(chan runtime.Event)
	go func() {
		defer close(out)
		defer close(s.done)
		var queue []runtime.Event
		for {
			var send chan runtime.Event
			var next runtime.Event
			if len(queue) > 0 {
				send, next = out, queue[0]
			}
			select {
			case <-ctx.Done():
				return
			case <-r.closed:
				return
			case e := <-s.in:
				queue = append(queue, e)
			case send <- next:
				queue = queue[1:]
			}
		}
	}()
	return out, nil
}

func (r *hollowRuntime) Version(context.Context) (string, error) { return "hollow", nil }

func (r *hollowRuntime) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	return nil
}

// hollowNetwork hands out the addresses of the node's subnet (the first
// is the gateway's) and sets nothing up.
type hollowNetwork struct {
	subnet netip.Prefix
	mu     sync.Mutex
	pods   map[string]hollowPod // by pod UID
}

type hollowPod struct {
	ref podnet.PodRef
	att podnet.Attachment
}

func (n *hollowNetwork) Setup(_ context.Context, pod podnet.PodRef, _ []podnet.PortMapping) (podnet.Attachment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.pods[pod.UID]; ok {
		return p.att, nil
	}
	used := map[string]bool{}
	for _, p := range n.pods {
		used[p.att.IP.String()] = true
	}
	gw := n.subnet.Addr().Next()
	for ip := gw.Next(); n.subnet.Contains(ip.Next()); ip = ip.Next() { // the last is the broadcast
		if !used[ip.String()] {
			att := podnet.Attachment{IP: net.IP(ip.AsSlice()), Gateway: net.IP(gw.AsSlice())}
			n.pods[pod.UID] = hollowPod{pod, att}
			return att, nil
		}
	}
	return podnet.Attachment{}, fmt.Errorf("pod subnet %s: no address left", n.subnet)
}

func (n *hollowNetwork) Teardown(_ context.Context, pod podnet.PodRef) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pods, pod.UID)
	return nil
}

func (n *hollowNetwork) Status(_ context.Context, pod podnet.PodRef) (podnet.Attachment, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pods[pod.UID]
	return p.att, ok, nil
}

func (n *hollowNetwork) List(context.Context) ([]podnet.PodRef, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []podnet.PodRef
	for _, p := range n.pods {
		out = append(out, p.ref)
	}
	return out, nil
}
