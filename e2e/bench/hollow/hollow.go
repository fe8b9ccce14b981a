// Package hollow simulates nodes for scale tests of the control plane:
// Node objects that are Ready with a given capacity, and one hollow
// kubelet for all of them that reports the pods bound to them as
// Running+Ready with a pod IP, as fast as the API takes it, in large
// batches. Nothing runs: no process per node, no containers, no network.
// Thousands of hollow nodes join a cluster from one process.
//
// The Node objects are written through the API; they are not gossip
// members, so the leader's node reconciler (cluster/nodes.go, which writes
// only the Node objects of members) leaves them as they are: Ready until
// someone changes them. The node lifecycle controller reads readiness from
// the Ready condition alone, so they stay schedulable.
//
// For a real agent process without containerd or a pod network, see
// `shoal agent --hollow`.
package hollow

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// LabelHollow marks the Node objects this package makes.
const LabelHollow = "shoal.dev/hollow"

// maxObjectsPerApply is the API's bound on one Apply.
const maxObjectsPerApply = 1000

// Config describes the hollow nodes.
type Config struct {
	// Nodes is how many (names Prefix00000, Prefix00001, ...).
	Nodes  int
	Prefix string
	// Capacity of each node (also its allocatable): cpu, memory, pods.
	CPU, Memory, Pods string
	// Labels are added to every node, with LabelHollow.
	Labels map[string]string
	// FlushEvery is the least time between two rounds of status writes
	// of the kubelet (default 50 ms, the real agent's spacing per node).
	FlushEvery time.Duration
	// InFlight bounds the concurrent Apply calls of one round (default 4).
	InFlight int
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "hollow-"
	}
	if c.CPU == "" {
		c.CPU = "32"
	}
	if c.Memory == "" {
		c.Memory = "128Gi"
	}
	if c.Pods == "" {
		c.Pods = "250"
	}
	if c.FlushEvery == 0 {
		c.FlushEvery = 50 * time.Millisecond
	}
	if c.InFlight == 0 {
		c.InFlight = 4
	}
}

// Cluster is a set of hollow nodes and their kubelet.
type Cluster struct {
	cfg   Config
	api   api.ShoalClient
	index map[string]int // node name → its number
	now   func() time.Time

	mu      sync.Mutex
	pending map[string]*api.Pod // namespace/name → the status to write
	seen    map[string]bool     // pods already reported or queued, by UID
	wake    chan struct{}

	// Counters, read with Stats.
	written, failed, calls atomic.Int64
	flushing               atomic.Bool // a round of writes runs
}

// Stats are the kubelet's counters.
type Stats struct {
	Written int64 // pod statuses written
	Failed  int64 // status writes that failed (retried unless the pod is gone)
	Calls   int64 // Apply calls
}

// New describes cfg.Nodes hollow nodes that talk to the cluster through
// client (a connection to any node's API, with admin credentials).
func New(client api.ShoalClient, cfg Config) *Cluster {
	cfg.defaults()
	h := &Cluster{cfg: cfg, api: client, index: make(map[string]int, cfg.Nodes), now: time.Now,
		pending: map[string]*api.Pod{}, seen: map[string]bool{}, wake: make(chan struct{}, 1)}
	for i := range cfg.Nodes {
		h.index[h.Name(i)] = i
	}
	return h
}

// Name is the name of node i.
func (h *Cluster) Name(i int) string { return fmt.Sprintf("%s%05d", h.cfg.Prefix, i) }

// Owns reports whether node is one of these hollow nodes.
func (h *Cluster) Owns(node string) bool {
	_, ok := h.index[node]
	return ok
}

// nodeIP is node i's address: 100.64.0.0/10 (shared address space), one
// address per node.
func nodeIP(i int) string { return fmt.Sprintf("100.%d.%d.%d", 64+(i>>16)&63, (i>>8)&255, i&255) }

// podIP is the k-th address of node i's pod subnet: 10.A.B.0/24 with
// A.B = i, so up to 65,536 nodes of 254 addresses (reused after that).
func podIP(i, k int) string {
	return fmt.Sprintf("10.%d.%d.%d", (i>>8)&255, i&255, 1+k%254)
}

// CreateNodes writes the Node objects (spec and labels, then Ready status
// with capacity) in batches of the API's size, and returns once all are
// stored. Nodes that already exist are updated.
func (h *Cluster) CreateNodes(ctx context.Context) error {
	now := h.now().UTC().Format(time.RFC3339)
	capacity := map[string]string{"cpu": h.cfg.CPU, "memory": h.cfg.Memory, "pods": h.cfg.Pods}
	for from := 0; from < h.cfg.Nodes; from += maxObjectsPerApply {
		to := min(from+maxObjectsPerApply, h.cfg.Nodes)
		var specs, statuses []*api.Object
		for i := from; i < to; i++ {
			labels := map[string]string{LabelHollow: "true"}
			for k, v := range h.cfg.Labels {
				labels[k] = v
			}
			meta := &api.ObjectMeta{Name: h.Name(i), Labels: labels}
			specs = append(specs, api.Wrap(&api.Node{Metadata: meta, Spec: &api.NodeSpec{}}))
			statuses = append(statuses, api.Wrap(&api.Node{
				Metadata: &api.ObjectMeta{Name: h.Name(i)},
				Status: &api.NodeStatus{
					Addresses: []*api.NodeAddress{{Type: "InternalIP", Address: nodeIP(i)}, {Type: "Hostname", Address: h.Name(i)}},
					Conditions: []*api.NodeCondition{{Type: "Ready", Status: "True", Reason: "HollowNode",
						Message: "a hollow node: nothing runs here", LastHeartbeatTime: now, LastTransitionTime: now}},
					Capacity:    capacity,
					Allocatable: capacity,
					NodeInfo: &api.NodeSystemInfo{OperatingSystem: "linux", Architecture: runtime.GOARCH,
						ShoalVersion: "hollow", ContainerRuntimeVersion: "hollow://0"},
				},
			}))
		}
		if _, err := h.api.Apply(ctx, &api.ApplyRequest{Objects: specs}); err != nil {
			return fmt.Errorf("hollow nodes %s..%s: %w", h.Name(from), h.Name(to-1), err)
		}
		resp, err := h.api.Apply(ctx, &api.ApplyRequest{Status: true, Objects: statuses})
		if err != nil {
			return fmt.Errorf("hollow node status %s..%s: %w", h.Name(from), h.Name(to-1), err)
		}
		if f := resp.GetFailures(); len(f) > 0 {
			return fmt.Errorf("hollow node status: %d failed, first: %s", len(f), f[0].GetMessage())
		}
	}
	return nil
}

// CheckNodes lists the Node objects and returns how many of these hollow
// nodes exist and how many of them are Ready.
func (h *Cluster) CheckNodes(ctx context.Context) (exist, ready int, err error) {
	list, err := h.api.List(ctx, &api.ListRequest{Kind: "Node", LabelSelector: LabelHollow + "=true"})
	if err != nil {
		return 0, 0, err
	}
	for _, o := range list.Items {
		n := o.GetNode()
		if !h.Owns(n.GetMetadata().GetName()) {
			continue
		}
		exist++
		for _, c := range n.GetStatus().GetConditions() {
			if c.Type == "Ready" && c.Status == "True" {
				ready++
			}
		}
	}
	return exist, ready, nil
}

// Observe feeds the kubelet one pod as a watch saw it: a pod newly bound
// to a hollow node, and not yet reported, is queued to be reported
// Running+Ready.
func (h *Cluster) Observe(p *api.Pod) {
	i, ok := h.index[p.GetSpec().GetNodeName()]
	if !ok || p.GetMetadata().GetDeletionTimestamp() != "" {
		return
	}
	uid := p.GetMetadata().GetUid()
	h.mu.Lock()
	if h.seen[uid] {
		h.mu.Unlock()
		return
	}
	h.seen[uid] = true
	h.pending[api.KeyOf(p)] = h.runningStatus(p, i, len(h.seen))
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Forget drops what the kubelet remembers of a deleted pod.
func (h *Cluster) Forget(p *api.Pod) {
	h.mu.Lock()
	delete(h.seen, p.GetMetadata().GetUid())
	delete(h.pending, api.KeyOf(p))
	h.mu.Unlock()
}

// runningStatus is what the real agent reports once every container runs
// and no probe says otherwise.
func (h *Cluster) runningStatus(p *api.Pod, node, k int) *api.Pod {
	now := h.now().UTC().Format(time.RFC3339)
	st := &api.PodStatus{Phase: "Running", HostIp: nodeIP(node), PodIp: podIP(node, k), StartTime: now}
	for _, typ := range []string{"PodScheduled", "Initialized", "ContainersReady", "Ready"} {
		st.Conditions = append(st.Conditions, &api.PodCondition{Type: typ, Status: "True", LastTransitionTime: now})
	}
	for _, c := range p.GetSpec().GetContainers() {
		st.ContainerStatuses = append(st.ContainerStatuses, &api.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageId: "hollow://" + c.Image, Ready: true, Started: true,
			ContainerId: "hollow://" + p.GetMetadata().GetUid() + "/" + c.Name,
			State:       &api.ContainerState{Running: &api.ContainerStateRunning{StartedAt: now}},
		})
	}
	m := p.GetMetadata()
	return &api.Pod{Metadata: &api.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace()}, Status: st}
}

// Run writes the queued statuses until ctx ends: whenever some are queued,
// at most once per FlushEvery, all of them, in Apply calls of up to 1,000
// (InFlight at a time). A status whose write fails is queued again unless
// the pod is gone.
func (h *Cluster) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		}
		h.flush(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.cfg.FlushEvery):
		}
	}
}

func (h *Cluster) flush(ctx context.Context) {
	h.flushing.Store(true)
	defer h.flushing.Store(false)
	h.mu.Lock()
	batch := h.pending
	h.pending = map[string]*api.Pod{}
	h.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	var chunks [][]*api.Pod
	var cur []*api.Pod
	for _, p := range batch {
		cur = append(cur, p)
		if len(cur) == maxObjectsPerApply {
			chunks = append(chunks, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	sem := make(chan struct{}, h.cfg.InFlight)
	var wg sync.WaitGroup
	for _, chunk := range chunks {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h.write(ctx, chunk)
		}()
	}
	wg.Wait()
}

func (h *Cluster) write(ctx context.Context, pods []*api.Pod) {
	objs := make([]*api.Object, len(pods))
	for i, p := range pods {
		objs[i] = api.Wrap(p)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h.calls.Add(1)
	resp, err := h.api.Apply(wctx, &api.ApplyRequest{Status: true, Objects: objs})
	var retry []*api.Pod
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		h.failed.Add(int64(len(pods)))
		retry = pods
	} else {
		h.written.Add(int64(len(resp.GetObjects())))
		for _, f := range resp.GetFailures() {
			h.failed.Add(1)
			if codes.Code(f.GetCode()) != codes.NotFound && int(f.GetIndex()) < len(pods) {
				retry = append(retry, pods[f.GetIndex()])
			}
		}
	}
	if len(retry) == 0 {
		return
	}
	h.mu.Lock()
	for _, p := range retry {
		if _, newer := h.pending[api.KeyOf(p)]; !newer {
			h.pending[api.KeyOf(p)] = p
		}
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Idle waits until no status is queued and no write runs, or ctx ends.
func (h *Cluster) Idle(ctx context.Context) error {
	for {
		h.mu.Lock()
		n := len(h.pending)
		h.mu.Unlock()
		if n == 0 && !h.flushing.Load() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stats returns the kubelet's counters.
func (h *Cluster) Stats() Stats {
	return Stats{Written: h.written.Load(), Failed: h.failed.Load(), Calls: h.calls.Load()}
}

// Watch runs the kubelet's own watch of every pod, feeding Observe and
// Forget, until ctx ends. A caller that already watches pods calls
// Observe itself instead, so the leader serves one watch, not two.
func (h *Cluster) Watch(ctx context.Context) error {
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			list, err := h.api.List(ctx, &api.ListRequest{Kind: "Pod"})
			if err != nil {
				return err
			}
			for _, o := range list.Items {
				h.Observe(o.GetPod())
			}
			rv = list.GetResourceVersion()
		}
		w, err := h.api.Watch(ctx, &api.WatchRequest{Kind: "Pod", ResourceVersion: rv})
		if err != nil {
			return err
		}
		for {
			ev, err := w.Recv()
			if err != nil {
				if status.Code(err) == codes.OutOfRange {
					rv = "" // fell behind the event log: list again
				}
				break
			}
			rv = ev.GetResourceVersion()
			if ev.GetType() == "DELETED" {
				h.Forget(ev.GetObject().GetPod())
			} else {
				h.Observe(ev.GetObject().GetPod())
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return ctx.Err()
}
