package main

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/e2e/bench/hollow"
)

// podTimes is when the watch first saw a pod: created, bound to a node,
// and reported Running+Ready.
type podTimes struct {
	created, bound, running time.Time
	inferred                bool // seen first in a re-list: its times are those of the list
}

// podWatch is one watch of every pod on the leader's API: it records when
// each pod is first seen, first seen bound (the binding is committed and
// applied: the watch serves the leader's store) and first seen Running
// and Ready, and hands bound pods to the hollow kubelet.
type podWatch struct {
	api     api.ShoalClient
	kubelet *hollow.Cluster

	mu       sync.Mutex
	pods     map[string]*podTimes // by UID
	created  int
	bound    int
	running  int
	relists  int
	lastErr  error
	progress chan struct{} // closed and replaced whenever a count grows
}

func newPodWatch(client api.ShoalClient, kubelet *hollow.Cluster) *podWatch {
	return &podWatch{api: client, kubelet: kubelet, pods: map[string]*podTimes{}, progress: make(chan struct{})}
}

// run watches until ctx ends, listing again whenever the watch breaks
// (falling behind the store's event log ends a watch with OutOfRange).
func (w *podWatch) run(ctx context.Context, fromRV string) {
	rv := fromRV
	for ctx.Err() == nil {
		if rv == "" {
			list, err := w.api.List(ctx, &api.ListRequest{Kind: "Pod"})
			if err != nil {
				w.fail(err)
				sleepCtx(ctx, 200*time.Millisecond)
				continue
			}
			w.mu.Lock()
			w.relists++
			w.mu.Unlock()
			now := time.Now()
			for _, o := range list.Items {
				w.observe(o.GetPod(), now, true)
			}
			rv = list.GetResourceVersion()
		}
		stream, err := w.api.Watch(ctx, &api.WatchRequest{Kind: "Pod", ResourceVersion: rv})
		if err != nil {
			w.fail(err)
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					w.fail(err)
				}
				if status.Code(err) == codes.OutOfRange {
					rv = ""
				}
				break
			}
			if ev.GetType() == "DELETED" {
				continue
			}
			w.observe(ev.GetObject().GetPod(), time.Now(), false)
			// The event's resourceVersion is exactly where to resume.
			rv = ev.GetResourceVersion()
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

func (w *podWatch) fail(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

func (w *podWatch) observe(p *api.Pod, now time.Time, listed bool) {
	uid := p.GetMetadata().GetUid()
	grew := false
	w.mu.Lock()
	t := w.pods[uid]
	if t == nil {
		t = &podTimes{created: now, inferred: listed}
		w.pods[uid] = t
		w.created++
		grew = true
	}
	bound := p.GetSpec().GetNodeName() != ""
	if bound && t.bound.IsZero() {
		t.bound = now
		w.bound++
		grew = true
	}
	if t.running.IsZero() && runningReady(p) {
		t.running = now
		w.running++
		grew = true
	}
	if grew {
		close(w.progress)
		w.progress = make(chan struct{})
	}
	w.mu.Unlock()
	if bound {
		w.kubelet.Observe(p)
	}
}

func runningReady(p *api.Pod) bool {
	if p.GetStatus().GetPhase() != "Running" {
		return false
	}
	for _, c := range p.GetStatus().GetConditions() {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// counts returns the counts and a channel closed when one grows.
func (w *podWatch) counts() (created, bound, running int, progress <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.created, w.bound, w.running, w.progress
}

// snapshot copies the recorded times.
func (w *podWatch) snapshot() ([]podTimes, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]podTimes, 0, len(w.pods))
	for _, t := range w.pods {
		out = append(out, *t)
	}
	return out, w.relists, w.lastErr
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
