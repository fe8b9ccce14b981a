package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// writer is one client: its own connection to one endpoint of a system.
type writer interface {
	// write stores one small object under key; seq changes the content, so
	// that rewriting a key is a real change.
	write(ctx context.Context, key string, seq uint64) error
	close()
}

// dialFunc connects client i.
type dialFunc func(ctx context.Context, i int) (writer, error)

// system is one thing measured: a cluster and how its clients pick
// endpoints.
type system struct {
	key   string // as -systems names it
	label string
	// prepare is called before each slice (the leader may have moved) and
	// returns how to connect each client.
	prepare func(ctx context.Context) (dialFunc, error)
	// procs are the server processes, whose CPU time is counted.
	procs []*proc
	// leaderStats, when set, reads the leader's raft counters before and
	// after each slice.
	leaderStats func(ctx context.Context) (raftStats, error)
	// onMeasure, when set, runs while a slice is measured (after its
	// warm-up), for as long as the slice lasts.
	onMeasure func(ctx context.Context, tag string, d time.Duration)
}

// sample is the outcome of measuring one system under one load: writes
// completed inside the measured window, their latencies, and failures.
type sample struct {
	n        int64
	errs     int64
	elapsed  time.Duration
	lats     []time.Duration
	firstErr error
	raft     raftStats     // shoal: what the leader's raft did meanwhile
	cpu      time.Duration // CPU time of the system's processes while measured
}

func (s *sample) add(o sample) {
	s.n += o.n
	s.errs += o.errs
	s.elapsed += o.elapsed
	s.lats = append(s.lats, o.lats...)
	s.raft.add(o.raft)
	s.cpu += o.cpu
	if s.firstErr == nil {
		s.firstErr = o.firstErr
	}
}

// cpuPerWrite is the servers' CPU time per measured write.
func (s *sample) cpuPerWrite() time.Duration {
	if s.n == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.n)
}

func (s *sample) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.n) / s.elapsed.Seconds()
}

// pct returns the p-th percentile (0 < p <= 100) of the latencies.
func (s *sample) pct(p float64) time.Duration {
	if len(s.lats) == 0 {
		return 0
	}
	if !sort.SliceIsSorted(s.lats, func(i, j int) bool { return s.lats[i] < s.lats[j] }) {
		sort.Slice(s.lats, func(i, j int) bool { return s.lats[i] < s.lats[j] })
	}
	i := int(float64(len(s.lats))*p/100+0.999999) - 1
	i = max(0, min(i, len(s.lats)-1))
	return s.lats[i]
}

// keyFunc names the key client i writes on its seq-th write.
type keyFunc func(client int, seq uint64) string

// sliceSpec is one turn of one system under one load.
type sliceSpec struct {
	clients  int
	warmup   time.Duration
	duration time.Duration
	budget   int64 // most writes to measure
	timeout  time.Duration
	key      keyFunc
	tag      string // for profiles
}

// dialAll connects n clients in parallel.
func dialAll(ctx context.Context, dial dialFunc, n int) ([]writer, error) {
	ws := make([]writer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i], errs[i] = dial(ctx, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll(ws)
		return nil, err
	}
	return ws, nil
}

func closeAll(ws []writer) {
	for _, w := range ws {
		if w != nil {
			w.close()
		}
	}
}

// runSlice runs the clients of one slice: each writes back to back, one
// write at a time; writes that complete after the warm-up and before the
// end (or before the budget is used up) are measured.
func runSlice(ctx context.Context, sys *system, sp sliceSpec) (sample, error) {
	dial, err := sys.prepare(ctx)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", sys.label, err)
	}
	ws, err := dialAll(ctx, dial, sp.clients)
	if err != nil {
		return sample{}, fmt.Errorf("%s: connect: %w", sys.label, err)
	}
	defer closeAll(ws)
	var before raftStats
	if sys.leaderStats != nil {
		if before, err = sys.leaderStats(ctx); err != nil {
			return sample{}, fmt.Errorf("%s: %w", sys.label, err)
		}
	}

	start := time.Now()
	from := start.Add(sp.warmup)
	end := from.Add(sp.duration)
	var measured atomic.Int64
	var stopNano atomic.Int64 // when the budget ran out; 0 until then
	lctx, cancel := context.WithDeadline(ctx, end.Add(sp.timeout))
	defer cancel()

	per := make([]sample, sp.clients)
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &per[i]
			s.lats = make([]time.Duration, 0, 1024)
			for seq := uint64(0); ; seq++ {
				t0 := time.Now()
				if !t0.Before(end) || stopNano.Load() != 0 || lctx.Err() != nil {
					return
				}
				wctx, wcancel := context.WithTimeout(lctx, sp.timeout)
				err := w.write(wctx, sp.key(i, seq), seq)
				wcancel()
				t1 := time.Now()
				inWindow := !t1.Before(from) && t1.Before(end)
				if err != nil {
					if inWindow {
						s.errs++
					}
					if s.firstErr == nil && lctx.Err() == nil {
						s.firstErr = err
					}
					// Back off a little, so that a refusing endpoint
					// is not hammered in a tight loop.
					select {
					case <-lctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				if !inWindow {
					continue
				}
				if measured.Add(1) > sp.budget {
					stopNano.CompareAndSwap(0, t1.UnixNano())
					return
				}
				s.n++
				s.lats = append(s.lats, t1.Sub(t0))
			}
		}()
	}
	// The servers' CPU time over the measured window: from its start to its
	// end, or to the moment the budget ran out (the clients are done and
	// lctx is cancelled).
	var cpuFrom, cpuTo time.Duration
	var hook sync.WaitGroup
	hook.Add(1)
	go func() {
		defer hook.Done()
		select {
		case <-time.After(time.Until(from)):
		case <-lctx.Done():
			return
		}
		cpuFrom = cpuTimeOf(sys.procs)
		select {
		case <-time.After(time.Until(end)):
		case <-lctx.Done():
		}
		cpuTo = cpuTimeOf(sys.procs)
	}()
	if sys.onMeasure != nil {
		// On ctx, not lctx: a profile runs its full time even when the
		// clients end before it.
		hook.Add(1)
		go func() {
			defer hook.Done()
			select {
			case <-time.After(time.Until(from)):
				sys.onMeasure(ctx, sp.tag, sp.duration)
			case <-ctx.Done():
			}
		}()
	}
	wg.Wait()
	cancel()
	hook.Wait()
	if ctx.Err() != nil {
		return sample{}, ctx.Err()
	}
	stop := end
	if ns := stopNano.Load(); ns != 0 && time.Unix(0, ns).Before(end) {
		stop = time.Unix(0, ns)
	}
	var out sample
	for _, s := range per {
		out.add(s)
	}
	out.elapsed = stop.Sub(from)
	if cpuTo > cpuFrom {
		out.cpu = cpuTo - cpuFrom
	}
	if sys.leaderStats != nil {
		// Includes the warm-up: the counters cannot be cut at its end.
		after, err := sys.leaderStats(ctx)
		if err != nil {
			return sample{}, fmt.Errorf("%s: %w", sys.label, err)
		}
		out.raft = after.sub(before)
	}
	if out.n == 0 && out.firstErr != nil {
		return out, fmt.Errorf("%s: no write succeeded: %w", sys.label, out.firstErr)
	}
	return out, nil
}

// failoverResult is how long writes stopped when a leader was killed.
type failoverResult struct {
	label string
	// recovery: from the kill to the first write accepted among those sent
	// after it.
	recovery time.Duration
	// failed: the clients' writes sent before the recovery and answered
	// after the kill that failed (refused, or unanswered at their deadline).
	failed int64
	// longestWait: the longest any such write kept its client waiting.
	longestWait time.Duration
	leader      string
	err         error
}

// probeInterval is how often, after the kill, a new write is sent besides
// the clients' own: a client whose write hangs on the dead leader until
// its deadline must not hide that the cluster already accepts writes.
const probeInterval = 10 * time.Millisecond

// runFailover keeps clients writing (through the followers), kills the
// leader, and measures the time from the kill to the first write sent after
// it that is accepted. Besides the clients, which go on writing back to
// back, a probe write starts every probeInterval over the same connections.
func runFailover(ctx context.Context, label string, ws []writer, kill func() time.Time, steady, giveUp, timeout time.Duration, key keyFunc) failoverResult {
	res := failoverResult{label: label}
	var mu sync.Mutex
	var killAt time.Time // zero until the kill
	var before, failed int64
	var longest time.Duration
	var recovered time.Time
	done := make(chan struct{})
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The start times of the writes in flight, to wait, after the
	// recovery, for those sent before it.
	inflight := map[uint64]time.Time{}
	var nextID uint64

	// start notes a write about to be sent; record notes its outcome.
	start := func() (uint64, time.Time) {
		mu.Lock()
		defer mu.Unlock()
		nextID++
		t0 := time.Now()
		inflight[nextID] = t0
		return nextID, t0
	}
	record := func(id uint64, t0 time.Time, err error, probe bool) {
		t1 := time.Now()
		mu.Lock()
		defer mu.Unlock()
		delete(inflight, id)
		switch {
		case killAt.IsZero():
			if err == nil {
				before++
			}
			return
		case !t1.After(killAt) || (!recovered.IsZero() && !t0.Before(recovered)):
			return // answered before the kill, or sent after the recovery
		}
		if !probe { // the clients' experience
			longest = max(longest, t1.Sub(t0))
			if err != nil && lctx.Err() == nil {
				failed++
			}
		}
		if err == nil && t0.After(killAt) && recovered.IsZero() {
			recovered = t1
			close(done)
		}
	}
	// pendingBefore reports whether a write sent before t is unanswered.
	pendingBefore := func(t time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, t0 := range inflight {
			if t0.Before(t) {
				return true
			}
		}
		return false
	}
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(0); lctx.Err() == nil; seq++ {
				id, t0 := start()
				wctx, wcancel := context.WithTimeout(lctx, timeout)
				err := w.write(wctx, key(i, seq), seq)
				wcancel()
				record(id, t0, err, false)
				if err != nil {
					select {
					case <-lctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		}()
	}
	finish := func() {
		cancel()
		wg.Wait()
	}
	select {
	case <-time.After(steady):
	case <-ctx.Done():
		finish()
		res.err = ctx.Err()
		return res
	}
	mu.Lock()
	ok := before > 0
	mu.Unlock()
	if !ok {
		finish()
		res.err = errors.New("no write succeeded before the kill")
		return res
	}
	k := kill()
	mu.Lock()
	killAt = k
	mu.Unlock()
	// Probes: writes of their own keys, one every probeInterval, each on
	// the next client's connection.
	probe := time.NewTicker(probeInterval)
	defer probe.Stop()
	limit := time.After(giveUp)
	probeKey := func(n uint64) string { return key(len(ws)+int(n%1000), n) }
wait:
	for n := uint64(0); ; n++ {
		select {
		case <-done:
			break wait
		case <-limit:
			break wait
		case <-ctx.Done():
			break wait
		case <-probe.C:
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, t0 := start()
				wctx, wcancel := context.WithTimeout(lctx, timeout)
				err := ws[int(n)%len(ws)].write(wctx, probeKey(n), n)
				wcancel()
				record(id, t0, err, true)
			}()
		}
	}
	// Let the writes sent before the recovery end (at the latest at their
	// deadline), so that their failures and waits are counted.
	mu.Lock()
	rec := recovered
	mu.Unlock()
	if !rec.IsZero() {
		for deadline := time.Now().Add(timeout + time.Second); pendingBefore(rec) && time.Now().Before(deadline) && ctx.Err() == nil; {
			time.Sleep(10 * time.Millisecond)
		}
	}
	finish()
	if ctx.Err() != nil {
		res.err = ctx.Err()
		return res
	}
	mu.Lock()
	defer mu.Unlock()
	if recovered.IsZero() {
		res.err = fmt.Errorf("no write accepted within %v of the kill", giveUp)
		return res
	}
	res.recovery = recovered.Sub(killAt)
	res.failed = failed
	res.longestWait = longest
	return res
}
