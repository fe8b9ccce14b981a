package chaos

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// maxListed bounds how many instances of one finding a report lists.
const maxListed = 8

// finish runs every check over what the run recorded and fills the report.
func (r *run) finish(rep *Report, finals map[string]finalState, rp *replayResult, watchers []*watcher) *Report {
	ops := r.hist.Ops()
	for _, o := range ops {
		rep.Ops++
		switch o.Class() {
		case ClassOK:
			rep.OK++
			switch o.Input.Kind {
			case OpGet:
				rep.Reads++
			case OpLocalGet:
				rep.LocalReads++
			}
		case ClassFailed:
			rep.Failed++
			rep.FailedBy[failureReason(o)]++
		case ClassUnknown:
			rep.Unknown++
		}
	}

	rep.Latency = latencies(ops)

	// Linearizability of the whole history, key by key.
	model := Model()
	history := Porcupine(ops, r.cfg.Clients+1+r.n)
	rep.Checked = len(history)
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, history, r.cfg.CheckTimeout)
	rep.CheckTime = time.Since(start)
	rep.Linearizable = res
	switch res {
	case porcupine.Illegal:
		path := r.visualize(model, info)
		var bad []string
		for _, part := range partitionByKey(history) {
			if len(bad) < maxListed && porcupine.CheckOperationsTimeout(model, part, 10*time.Second) == porcupine.Illegal {
				bad = append(bad, fmt.Sprintf("%s (%d operations)", part[0].Input.(Input).Key, len(part)))
			}
		}
		r.problemf("the history is not linearizable (seed %d); keys: %s; visualization: %s", r.cfg.Seed, strings.Join(bad, ", "), path)
	case porcupine.Unknown:
		r.problemf("porcupine did not finish within %v: the history is not checked", r.cfg.CheckTimeout)
	}
	for _, p := range rvOrder(ops) {
		r.problemf("%s", p)
	}

	// The change log: the replay of a node, else what the watchers saw.
	var log []Change
	if rp != nil {
		rep.ReplayNode, rep.ReplayServed, rep.ReplayRefused = rp.Node, rp.Served, rp.Refused
		if rp.Node != 0 {
			log = upTo(rp.Changes, rep.FenceRV)
			rep.ReplayEvents = len(log)
		}
	}
	for _, w := range watchers {
		items := w.Items()
		ws := WatchStats{ID: w.id, Reconnects: w.reconnects, Relists: w.relists, Errors: w.errors}
		for _, it := range items {
			if !it.Relist {
				ws.Events++
			}
		}
		if rep.FenceRV != 0 {
			for _, p := range checkWatch(items, log, rep.StartRV, rep.FenceRV) {
				r.problemf("watcher %d: %s", w.id, p)
			}
		}
		rep.Watchers = append(rep.Watchers, ws)
	}
	if log != nil {
		for _, p := range checkChangeLog(log, ops) {
			r.problemf("change log (host %d): %s", rp.Node, p)
		}
		if finals != nil {
			for _, p := range compareFinal(stateAt(log, ^uint64(0)), finals) {
				r.problemf("change log (host %d) against the final reads: %s", rp.Node, p)
			}
		}
	} else if rep.FenceRV != 0 {
		r.logf("no node could replay the change log from resourceVersion %d (%v): the watchers are checked against the acknowledged writes only", rep.StartRV, rep.ReplayRefused)
	}
	st := checkLocalReads(ops, log)
	rep.Stale = st
	for _, p := range st.problems {
		r.problemf("default read: %s", p)
	}
	lost, detail := lostWrites(ops, log, finals)
	rep.AckedLost = lost
	for _, d := range detail {
		r.problemf("acknowledged then lost: %s", d)
	}
	r.mu.Lock()
	rep.Problems = append([]string(nil), r.problems...)
	r.mu.Unlock()
	return rep
}

func failureReason(o Op) string {
	switch o.Output.Result {
	case ResNotFound:
		return "not-found"
	case ResExists:
		return "exists"
	case ResConflict:
		return "conflict"
	}
	switch {
	case strings.Contains(o.Why, "no leader reachable"):
		return "no-leader"
	case !o.Input.Kind.IsWrite():
		return "read-error"
	case o.Why != "":
		return "not-sent"
	}
	return "other"
}

// visualize writes porcupine's visualization of a failed check and
// returns its path.
func (r *run) visualize(model porcupine.Model, info porcupine.LinearizationInfo) string {
	f, err := os.CreateTemp(r.cfg.ReportDir, fmt.Sprintf("chaos-seed-%d-*.html", r.cfg.Seed))
	if err != nil {
		return "(cannot write: " + err.Error() + ")"
	}
	defer f.Close()
	if err := porcupine.Visualize(model, info, f); err != nil {
		return "(cannot write: " + err.Error() + ")"
	}
	return f.Name()
}

// rvOrder checks what partitioning by key cannot: resourceVersions are raft
// indexes, one order for all keys, so a write acknowledged before another
// write began carries a smaller resourceVersion, whatever their keys.
func rvOrder(ops []Op) []string {
	var writes []Op
	for _, o := range ops {
		if o.Acked() {
			writes = append(writes, o)
		}
	}
	byReturn := append([]Op(nil), writes...)
	sort.Slice(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	sort.Slice(writes, func(i, j int) bool { return writes[i].Call < writes[j].Call })
	var out []string
	var maxOp *Op
	j := 0
	for _, b := range writes {
		for j < len(byReturn) && byReturn[j].Return < b.Call {
			if maxOp == nil || byReturn[j].Output.RV > maxOp.Output.RV {
				maxOp = &byReturn[j]
			}
			j++
		}
		if maxOp != nil && maxOp.Output.RV >= b.Output.RV && len(out) < maxListed {
			out = append(out, fmt.Sprintf("resourceVersions out of real-time order: %s (client %d) was acknowledged at %d before %s (client %d) began at %d",
				describeOp(maxOp.Input, maxOp.Output), maxOp.Client, maxOp.Return, describeOp(b.Input, b.Output), b.Client, b.Call))
		}
	}
	return out
}

// upTo is the log cut after resourceVersion rv.
func upTo(log []Change, rv uint64) []Change {
	for i, c := range log {
		if c.RV > rv {
			return log[:i]
		}
	}
	return log
}

// stateAt applies the log up to resourceVersion rv.
func stateAt(log []Change, rv uint64) map[string]finalState {
	st := map[string]finalState{}
	for _, c := range log {
		if c.RV > rv {
			break
		}
		if c.Type == "DELETED" {
			delete(st, c.Key)
		} else {
			st[c.Key] = finalState{Exists: true, Value: c.Value, RV: c.RV}
		}
	}
	return st
}

func compareFinal(st, finals map[string]finalState) []string {
	var out []string
	set := map[string]bool{}
	for k := range finals {
		set[k] = true
	}
	for k := range st {
		set[k] = true
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if st[k] != finals[k] && len(out) < maxListed {
			out = append(out, fmt.Sprintf("%s: %v in the log, %v read", k, st[k], finals[k]))
		}
	}
	return out
}

// checkChangeLog checks a node's change log against itself and against
// the writes: resourceVersions never go down, each key's changes follow
// one another (added when absent, modified or deleted when present, each
// with a greater resourceVersion), every value comes from a write that
// was not refused, and no write is applied twice.
func checkChangeLog(log []Change, ops []Op) []string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < maxListed {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	writes := map[int64]Op{} // by value
	for _, o := range ops {
		switch o.Input.Kind {
		case OpCreate, OpPut, OpCAS:
			writes[o.Input.Value] = o
		}
	}
	cur := map[string]Change{}
	seen := map[int64]Change{}
	var last uint64
	for _, c := range log {
		if c.RV < last {
			add("resourceVersion goes down: %v after %d", c, last)
		}
		last = max(last, c.RV)
		prev, exists := cur[c.Key]
		switch {
		case c.Type == "ADDED" && exists:
			add("%v while %s exists (%v)", c, c.Key, prev)
		case c.Type != "ADDED" && !exists:
			add("%v while %s is absent", c, c.Key)
		case exists && c.RV <= prev.RV:
			add("%v does not follow %v: resourceVersion not greater", c, prev)
		}
		if c.Type == "DELETED" {
			if exists && c.Value != prev.Value {
				add("%v deletes another value than the current %v", c, prev)
			}
			delete(cur, c.Key)
			continue
		}
		cur[c.Key] = c
		if p, dup := seen[c.Value]; dup {
			add("value %d applied twice: %v and %v", c.Value, p, c)
		}
		seen[c.Value] = c
		w, ok := writes[c.Value]
		switch {
		case !ok:
			add("%v: no client wrote this value", c)
		case w.Input.Key != c.Key:
			add("%v: the value was written to %s", c, w.Input.Key)
		case w.Class() == ClassFailed:
			add("%v: the write was reported failed (%s) but took effect", c, w.Why)
		case w.Acked() && w.Output.RV != c.RV:
			add("%v: the write was acknowledged with resourceVersion %d", c, w.Output.RV)
		}
	}
	return out
}

// lostWrites counts the acknowledged writes whose change the log does not
// hold (when there is a log) or that the final state contradicts (the
// key's final resourceVersion is older than the acknowledgement).
func lostWrites(ops []Op, log []Change, finals map[string]finalState) (int, []string) {
	type ev struct {
		key string
		rv  uint64
	}
	inLog := map[ev][]Change{}
	for _, c := range log {
		inLog[ev{c.Key, c.RV}] = append(inLog[ev{c.Key, c.RV}], c)
	}
	lost := 0
	var out []string
	for _, o := range ops {
		if !o.Acked() {
			continue
		}
		why := ""
		if log != nil {
			found := false
			for _, c := range inLog[ev{o.Input.Key, o.Output.RV}] {
				if o.Input.Kind == OpDelete && c.Type == "DELETED" || o.Input.Kind != OpDelete && c.Type != "DELETED" && c.Value == o.Input.Value {
					found = true
				}
			}
			if !found {
				why = "not in the change log"
			}
		}
		if f, ok := finals[o.Input.Key]; ok && f.Exists && f.RV < o.Output.RV {
			why = fmt.Sprintf("the final state %v is older", f)
		}
		if why != "" {
			lost++
			if len(out) < maxListed {
				out = append(out, fmt.Sprintf("%s (client %d via host %d): %s", describeOp(o.Input, o.Output), o.Client, o.Node, why))
			}
		}
	}
	return lost, out
}

// checkWatch checks a watcher's stream: its events come in resourceVersion
// order, none twice, each one in the change log and in the log's order;
// every change of the log up to the fence reached the watcher, except those
// a re-list skipped, and each re-list matches the log's state at its
// resourceVersion. Without a log, the events are checked for order and
// repeats only.
func checkWatch(items []WatchItem, log []Change, startRV, fenceRV uint64) []string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < maxListed {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	var events []Change
	type gap struct{ from, to uint64 }
	var gaps []gap
	seen := map[Change]int{}
	last := startRV
	for i, it := range items {
		if it.Relist {
			gaps = append(gaps, gap{it.FromRV, it.ListRV})
			if log != nil {
				if d := compareFinal(stateAt(log, it.ListRV), it.Items); len(d) > 0 {
					add("re-list at resourceVersion %d (host %d) differs from the log: %s", it.ListRV, it.Node, strings.Join(d, "; "))
				}
			}
			last = max(last, it.ListRV)
			continue
		}
		if it.RV > fenceRV {
			continue
		}
		if it.RV < last {
			add("event %d %v (host %d) goes back: the watch had reached %d", i+1, it.Change, it.Node, last)
		}
		if n, dup := seen[it.Change]; dup {
			add("event %d %v (host %d) repeats event %d", i+1, it.Change, it.Node, n)
		}
		seen[it.Change] = i + 1
		last = max(last, it.RV)
		events = append(events, it.Change)
	}
	if log == nil {
		return out
	}
	skipped := func(rv uint64) bool {
		for _, g := range gaps {
			if rv > g.from && rv <= g.to {
				return true
			}
		}
		return false
	}
	// Every event is a change of the log...
	inLog := map[Change]bool{}
	for _, c := range log {
		inLog[c] = true
	}
	kept := events[:0:0]
	for _, e := range events {
		if !inLog[e] {
			add("%v is not in the change log", e)
			continue
		}
		kept = append(kept, e)
	}
	events = kept
	// ... and the events are the log minus the skipped changes, in order.
	j := 0
	for _, c := range log {
		if c.RV <= startRV || c.RV > fenceRV {
			continue
		}
		if j < len(events) && events[j] == c {
			j++
			continue
		}
		if !skipped(c.RV) {
			got := "nothing"
			if j < len(events) {
				got = events[j].String()
			}
			add("missed %v (next event received: %s)", c, got)
		}
	}
	if j < len(events) {
		add("%d events out of the log's order, from %v", len(events)-j, events[j])
	}
	return out
}

// Staleness sums up the default (local) reads: how many returned a version
// that an acknowledged write had replaced before the read began, and by
// how much at most.
type Staleness struct {
	Reads    int           // default reads that answered
	Stale    int           // of which returned a replaced version
	Max      time.Duration // the longest a returned version had been replaced
	MaxNode  int           // the host that served that read
	Verified bool          // checked against the change log
	problems []string
}

// checkLocalReads checks that every default read returned a version the
// change log holds (stale perhaps, never invented), and measures
// staleness against the acknowledged writes.
func checkLocalReads(ops []Op, log []Change) Staleness {
	st := Staleness{Verified: log != nil}
	type version struct {
		key   string
		rv    uint64
		value int64
	}
	committed := map[version]bool{}
	for _, c := range log {
		if c.Type != "DELETED" {
			committed[version{c.Key, c.RV, c.Value}] = true
		}
	}
	acked := map[string][]Op{}
	for _, o := range ops {
		if o.Acked() {
			acked[o.Input.Key] = append(acked[o.Input.Key], o)
		}
	}
	for _, o := range ops {
		if o.Input.Kind != OpLocalGet || o.Dropped || o.Output.Result != ResOK {
			continue
		}
		st.Reads++
		v := version{o.Input.Key, o.Output.RV, o.Output.Value}
		if log != nil && !committed[v] && len(st.problems) < maxListed {
			st.problems = append(st.problems, fmt.Sprintf("%s (client %d via host %d) returned a version the change log does not hold",
				describeOp(o.Input, o.Output), o.Client, o.Node))
		}
		// When was the version read replaced, for certain?
		replaced := int64(-1)
		for _, w := range acked[o.Input.Key] {
			if w.Output.RV > o.Output.RV && (replaced < 0 || w.Return < replaced) {
				replaced = w.Return
			}
		}
		if replaced >= 0 && replaced < o.Call {
			st.Stale++
			if d := time.Duration(o.Call - replaced); d > st.Max {
				st.Max, st.MaxNode = d, o.Node
			}
		}
	}
	return st
}

// Latency is the spread of the acknowledged operations' durations.
type Latency struct {
	P50, P99, Max time.Duration
}

func latencies(ops []Op) Latency {
	var ds []time.Duration
	for _, o := range ops {
		if o.Class() == ClassOK {
			ds = append(ds, time.Duration(o.Return-o.Call))
		}
	}
	if len(ds) == 0 {
		return Latency{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return Latency{P50: at(0.5), P99: at(0.99), Max: ds[len(ds)-1]}
}
