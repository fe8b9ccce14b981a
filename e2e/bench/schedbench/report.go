package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/shoalproj/shoal/e2e/bench/benchenv"
)

// report renders the results as markdown tables.
func report(o *options, root string, results []*result) string {
	var b strings.Builder
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	voters := "its only raft voter"
	if o.voters > 1 {
		voters = fmt.Sprintf("with %d followers that joined it, each an agent in its own process on %s: every write replicated and applied on each", o.voters-1, strings.Join(o.followerAddrs, ", "))
	}
	fmt.Fprintf(&b, "\n%s; %d CPUs; kernel %s; %s. Leader: one shoal agent (--init, no pods) in its own process, %s; raft log in bbolt with fsync under %s (%s); controllers as they ship; API over mutual TLS on %s. Hollow nodes: %s cpu, %s memory, %s pods each; one hollow kubelet in this program reports bound pods Running+Ready in Apply calls of up to 1,000 statuses. %s pods in %s Deployments applied at once, each pod requesting %s cpu and %s memory.\n\n",
		time.Now().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version(), voters,
		o.dir, benchenv.FSType(root), o.addr, o.nodeCPU, o.nodeMemory, o.nodePods, thousands(o.pods), thousands(o.deployments), o.podCPU, o.podMemory)

	b.WriteString("| nodes | pods | bound + committed pods/s | creation → bound p50 | p99 | max | first pod created | all created | all bound | all Running+Ready | Deployments all available |\n")
	b.WriteString("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			thousands(r.nodes), thousands(r.pods), thousands(int(r.podsPerSecond())),
			dur(pct(r.bindLatency, 50)), dur(pct(r.bindLatency, 99)), dur(pct(r.bindLatency, 100)),
			dur(r.firstCreated), milestone(r.allCreated, r.created, r.pods), milestone(r.allBound, r.bound, r.pods),
			milestone(r.allRunning, r.running, r.pods), milestone(r.available, -1, 0))
	}
	b.WriteString("\n| nodes | voters | leader CPU | leader CPU per pod | of which GC | leader peak RSS | leader peak Go heap | raft entries | writes per entry | bound → Running+Ready p50 / p99 | kubelet status writes (calls) | followers' CPU | this program's CPU |\n")
	b.WriteString("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		perPod := time.Duration(0)
		if r.bound > 0 {
			perPod = r.leaderCPU / time.Duration(r.bound)
		}
		perEntry := 0.0
		if r.raftEntries > 0 {
			perEntry = r.raftWrites / r.raftEntries
		}
		followers := "–"
		if r.voters > 1 {
			followers = fmt.Sprintf("%.1f s", r.followersCPU.Seconds())
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f s | %s | %.1f s | %s | %s | %s | %.0f | %s / %s | %s (%s) | %s | %.1f s |\n",
			thousands(r.nodes), r.voters, r.leaderCPU.Seconds(), dur(perPod), r.gcCPU, bytes(r.rssPeak), bytes(r.heapPeak),
			thousands(int(r.raftEntries)), perEntry, dur(pct(r.runLatency, 50)), dur(pct(r.runLatency, 99)),
			thousands(int(r.kubelet.Written)), thousands(int(r.kubelet.Calls)), followers, r.benchCPU.Seconds())
	}
	b.WriteString("\n")
	for _, r := range results {
		var notes []string
		if r.timedOut != "" {
			notes = append(notes, fmt.Sprintf("gave up after -timeout %v waiting for %s", o.timeout, r.timedOut))
		}
		if r.nodesExist != r.nodes || r.nodesReady != r.nodes {
			notes = append(notes, fmt.Sprintf("hollow Node objects after the run: %d of %d exist, %d Ready", r.nodesExist, r.nodes, r.nodesReady))
		}
		if r.inferred > 0 || r.relists > 0 {
			notes = append(notes, fmt.Sprintf("the watch fell behind the store's event log and listed again %d times; %d pods first seen in a list are left out of the percentiles", r.relists, r.inferred))
		}
		if r.kubelet.Failed > 0 {
			notes = append(notes, fmt.Sprintf("%d hollow status writes failed and were retried", r.kubelet.Failed))
		}
		if r.profile != "" {
			notes = append(notes, fmt.Sprintf("profiles: `go tool pprof -top %s`, heap %s", r.profile, r.heapProfile))
		}
		notes = append(notes, fmt.Sprintf("setup (leader start, %d hollow nodes Ready) %v", r.nodes, r.setup.Round(time.Millisecond)))
		fmt.Fprintf(&b, "- %s nodes: %s.\n", thousands(r.nodes), strings.Join(notes, "; "))
	}
	b.WriteString("\nTimes are from the Apply of the Deployments, as one watch of the leader's API saw them (a pod is bound once the watch sees spec.nodeName: committed and applied). Leader CPU is user+system of its process over the same window; peak RSS is the process's VmHWM; the Go heap is sampled every 100 ms.\n")
	return b.String()
}

// pct is the p-th percentile of sorted durations (0 when empty).
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// milestone is the time a milestone was reached, or how far it got.
func milestone(d time.Duration, got, want int) string {
	if d > 0 {
		return dur(d)
	}
	if got < 0 {
		return "not reached"
	}
	return fmt.Sprintf("not reached (%s of %s)", thousands(got), thousands(want))
}

func bytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
