package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// Change is one event of the change stream of the run's namespace.
type Change struct {
	Type  string // ADDED, MODIFIED, DELETED
	Key   string
	RV    uint64
	Value int64 // the object's value (its last for DELETED)
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s=%d@%d", c.Type, c.Key, c.Value, c.RV)
}

// WatchItem is what a watcher got: an event, or a re-list after it was
// told its resourceVersion was too old (OutOfRange).
type WatchItem struct {
	Change
	Relist bool
	// A re-list: the resourceVersion the watch had reached, the list's
	// resourceVersion and the objects listed.
	FromRV, ListRV uint64
	Items          map[string]finalState
	Node           int   // the host that sent it
	At             int64 // when it arrived, on the history's clock
}

// watcher follows the change stream of the run's namespace through one
// node at a time. When the stream breaks it resumes from the last
// resourceVersion it got through another node; it also moves on its own
// every few seconds (a stream through a node cut off from the cluster
// stays open and silent). Told OutOfRange, it lists and resumes from the
// list's resourceVersion, as a Kubernetes informer does.
type watcher struct {
	r   *run
	id  int
	rng *rand.Rand

	lastRV atomic.Uint64

	mu         sync.Mutex
	items      []WatchItem
	reconnects int
	relists    int
	errors     map[string]int
}

func (w *watcher) add(it WatchItem) {
	w.mu.Lock()
	w.items = append(w.items, it)
	w.mu.Unlock()
}

// Items returns what the watcher got, in order.
func (w *watcher) Items() []WatchItem {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WatchItem(nil), w.items...)
}

// parseEvent reads a watch event of the suite's kind.
func parseEvent(ev *api.WatchEvent) (Change, error) {
	v, rv, name, err := revisionOf(ev.GetObject())
	if err != nil {
		return Change{}, err
	}
	// The event's resourceVersion is the stream's position: the object's
	// (its raft index), with ".N" when more changes of that entry follow.
	idx, _, _ := strings.Cut(ev.GetResourceVersion(), ".")
	if erv, err := strconv.ParseUint(idx, 10, 64); err != nil || erv != rv {
		return Change{}, fmt.Errorf("event resourceVersion %q, its object's %d", ev.GetResourceVersion(), rv)
	}
	switch ev.GetType() {
	case "ADDED", "MODIFIED", "DELETED":
	default:
		return Change{}, fmt.Errorf("event type %q", ev.GetType())
	}
	return Change{Type: ev.GetType(), Key: name, RV: rv, Value: v}, nil
}

// run follows the stream from the position from: where a resumed watch
// starts is the last event's resourceVersion, taken as it is.
func (w *watcher) run(ctx context.Context, from string) {
	r := w.r
	w.errors = map[string]int{}
	node := w.id % r.n
	for streams := 0; streams < maxStreams && ctx.Err() == nil; streams++ {
		life := time.Duration(1500+w.rng.IntN(4000)) * time.Millisecond
		sctx, cancel := context.WithTimeout(ctx, life)
		stream, err := r.cls[node].Watch(sctx, &api.WatchRequest{Kind: Kind, Namespace: r.cfg.Namespace, ResourceVersion: from})
		for err == nil {
			var ev *api.WatchEvent
			ev, err = stream.Recv()
			if err != nil {
				break
			}
			ch, perr := parseEvent(ev)
			if perr != nil {
				r.problemf("watcher %d via host %d: %v", w.id, node+1, perr)
				continue
			}
			w.add(WatchItem{Change: ch, Node: node + 1, At: r.hist.Now()})
			from = ev.GetResourceVersion()
			if ch.RV > w.lastRV.Load() {
				w.lastRV.Store(ch.RV)
			}
		}
		voluntary := sctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case status.Code(err) == codes.OutOfRange:
			w.relist(ctx, &node, &from)
		case voluntary:
			node = (node + 1 + w.rng.IntN(max(r.n-1, 1))) % r.n
		default:
			w.mu.Lock()
			w.errors[status.Code(err).String()]++
			w.mu.Unlock()
			node = (node + 1) % r.n
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		w.mu.Lock()
		w.reconnects++
		w.mu.Unlock()
	}
}

// relist lists the namespace with a consistent read, records what it
// found and moves the watch to the list's resourceVersion.
func (w *watcher) relist(ctx context.Context, node *int, from *string) {
	r := w.r
	for ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		list, err := r.cls[*node].List(qctx, &api.ListRequest{Kind: Kind, Namespace: r.cfg.Namespace, Consistent: true})
		cancel()
		if err == nil {
			rv, perr := strconv.ParseUint(list.ResourceVersion, 10, 64)
			items := map[string]finalState{}
			for _, o := range list.Items {
				v, orv, name, err := revisionOf(o)
				if err != nil {
					perr = err
					break
				}
				items[name] = finalState{Exists: true, Value: v, RV: orv}
			}
			if perr != nil {
				r.problemf("watcher %d: re-list through host %d: %v", w.id, *node+1, perr)
				return
			}
			// The re-list stands in for every change after the watch's
			// position: with the position inside an entry, for the rest of
			// that entry too.
			reached := w.lastRV.Load()
			if strings.Contains(*from, ".") && reached > 0 {
				reached--
			}
			w.add(WatchItem{Relist: true, FromRV: reached, ListRV: rv, Items: items, Node: *node + 1, At: r.hist.Now()})
			w.mu.Lock()
			w.relists++
			w.mu.Unlock()
			r.logf("watcher %d: resourceVersion %s too old on host %d: re-listed at %d", w.id, *from, *node+1, rv)
			*from = list.ResourceVersion
			if rv > w.lastRV.Load() {
				w.lastRV.Store(rv)
			}
			return
		}
		*node = (*node + 1) % r.n
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// maxStreams bounds the watches one watcher opens in a run.
const maxStreams = 100000

// replayResult is the change log of the run as one node replays it: one
// watch from the run's start to the fence, on every node that still keeps
// the events.
type replayResult struct {
	Node    int // the first node that served it; 0: none could
	Changes []Change
	Served  []int          // nodes whose replay matched
	Refused map[int]string // nodes that could not replay, and why
}

// replay watches from startRV to the fence through each node in turn.
func (r *run) replay(ctx context.Context, startRV, fenceRV uint64) replayResult {
	res := replayResult{Refused: map[int]string{}}
	for node, cl := range r.cls {
		var got []Change
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		stream, err := cl.Watch(sctx, &api.WatchRequest{Kind: Kind, Namespace: r.cfg.Namespace, ResourceVersion: strconv.FormatUint(startRV, 10)})
		for err == nil {
			var ev *api.WatchEvent
			ev, err = stream.Recv()
			if err != nil {
				break
			}
			ch, perr := parseEvent(ev)
			if perr != nil {
				err = perr
				break
			}
			got = append(got, ch)
			if ch.RV >= fenceRV {
				break
			}
		}
		cancel()
		if err != nil {
			res.Refused[node+1] = ShortError(err)
			continue
		}
		if res.Node == 0 {
			res.Node = node + 1
			res.Changes = got
			res.Served = append(res.Served, node+1)
			continue
		}
		if d := firstDifference(res.Changes, got); d != "" {
			r.problemf("the change logs of host %d and host %d differ: %s", res.Node, node+1, d)
			continue
		}
		res.Served = append(res.Served, node+1)
	}
	return res
}

func firstDifference(a, b []Change) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("event %d: %v against %v", i+1, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d events against %d", len(a), len(b))
	}
	return ""
}
