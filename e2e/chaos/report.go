package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// WatchStats is one watcher's part of a report.
type WatchStats struct {
	ID         int
	Events     int
	Reconnects int
	Relists    int // told OutOfRange, listed again
	Errors     map[string]int
}

// Report is what a run found.
type Report struct {
	Seed      uint64
	Hosts     int
	Duration  time.Duration
	LoadTime  time.Duration
	Namespace string
	StartRV   uint64
	FenceRV   uint64

	Ops, OK, Failed, Unknown int
	Latency                  Latency
	Reads                    int // consistent reads that answered
	LocalReads               int // default reads that answered
	Stale                    Staleness
	FailedBy                 map[string]int
	Checked                  int // operations given to porcupine
	Linearizable             porcupine.CheckResult
	CheckTime                time.Duration

	Faults        map[FaultKind]int
	FaultsSkipped int
	FaultLog      []string

	AckedLost int

	Watchers      []WatchStats
	ReplayNode    int
	ReplayEvents  int
	ReplayServed  []int
	ReplayRefused map[int]string

	Problems []string
}

// Passed reports whether the run found nothing wrong.
func (r *Report) Passed() bool {
	return len(r.Problems) == 0 && r.Linearizable == porcupine.Ok && r.AckedLost == 0
}

func sortedCounts[K ~string](m map[K]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[K(k)]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func total(m map[FaultKind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// String is the report's summary, a few lines.
func (r *Report) String() string {
	var b strings.Builder
	result := "PASS"
	if !r.Passed() {
		result = fmt.Sprintf("FAIL (%d problems)", len(r.Problems))
	}
	fmt.Fprintf(&b, "chaos seed %d: %d hosts, %v of load and faults (namespace %s): %s\n", r.Seed, r.Hosts, r.LoadTime.Round(100*time.Millisecond), r.Namespace, result)
	fmt.Fprintf(&b, "  operations: %d (ok %d, of which %d consistent and %d default reads; failed %d: %s; unknown %d); %d checked by porcupine: %s in %v\n",
		r.Ops, r.OK, r.Reads, r.LocalReads, r.Failed, sortedCounts(r.FailedBy), r.Unknown, r.Checked, r.Linearizable, r.CheckTime.Round(time.Millisecond))
	fmt.Fprintf(&b, "  latency of the acknowledged operations: p50 %v, p99 %v, max %v\n", r.Latency.P50.Round(100*time.Microsecond), r.Latency.P99.Round(time.Millisecond), r.Latency.Max.Round(time.Millisecond))
	fmt.Fprintf(&b, "  default reads (local replica, not linearizable): %d, %d of them stale, longest %v (host %d)",
		r.Stale.Reads, r.Stale.Stale, r.Stale.Max.Round(time.Millisecond), r.Stale.MaxNode)
	if r.Stale.Verified {
		b.WriteString("; each checked to be a committed version")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  faults: %d (%s)", total(r.Faults), sortedCounts(r.Faults))
	if r.FaultsSkipped > 0 {
		fmt.Fprintf(&b, ", %d skipped for want of a leader", r.FaultsSkipped)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  acknowledged then lost: %d\n", r.AckedLost)
	var ws []string
	for _, w := range r.Watchers {
		s := fmt.Sprintf("watcher %d: %d events, %d reconnects, %d re-lists", w.ID, w.Events, w.Reconnects, w.Relists)
		if len(w.Errors) > 0 {
			s += " (stream errors: " + sortedCounts(w.Errors) + ")"
		}
		ws = append(ws, s)
	}
	fmt.Fprintf(&b, "  watches: %s\n", strings.Join(ws, "; "))
	switch {
	case r.ReplayNode != 0:
		fmt.Fprintf(&b, "  change log: %d events from resourceVersion %d to the fence at %d, replayed identically by hosts %v", r.ReplayEvents, r.StartRV, r.FenceRV, r.ReplayServed)
		if len(r.ReplayRefused) > 0 {
			fmt.Fprintf(&b, " (refused by %v)", r.ReplayRefused)
		}
		b.WriteString("\n")
	case r.FenceRV != 0:
		fmt.Fprintf(&b, "  change log: no host could replay it (%v); watches checked for order and repeats only\n", r.ReplayRefused)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  PROBLEM: %s\n", p)
	}
	return strings.TrimRight(b.String(), "\n")
}
