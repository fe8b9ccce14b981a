package runtime_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/agent/runtime/runtimetest"
)

// BenchmarkCreateStart times a container through the Runtime: Create,
// Start and the exit event of its `true` (ns/op), then Remove (timed apart).
// Beside it, the same image run by `ctr run --rm --net-host` (Debian's ctr,
// a new process each time, as an operator would run it) against the same
// containerd, which also removes what it ran. Metrics:
//
//	ns/op          Create + Start + exit event
//	rm-ns/op       the same plus Remove: the work ctr run --rm does
//	ctr-ns/op      ctr run --rm
//	ratio          ns/op / ctr-ns/op
//	ratio-rm       rm-ns/op / ctr-ns/op
//	p50-ns, ctr-p50-ns  medians of ns/op and ctr-ns/op
func BenchmarkCreateStart(b *testing.B) {
	addr := runtimetest.StartContainerd(b)
	rt := newRuntime(b, addr, runtime.RegistryConfig{})
	archive := runtimetest.BuildBusyboxImage(b, testImage)
	f, err := os.Open(archive)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := rt.ImportImages(context.Background(), f); err != nil {
		b.Fatal(err)
	}
	f.Close()
	ch := events(b, rt)
	logs := b.TempDir()
	one := func(i int) (run, remove time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		id, err := rt.Create(ctx, runtime.ContainerSpec{
			PodUID: "bench", Name: "c", Image: testImage, Command: []string{"true"},
			LogPath: filepath.Join(logs, fmt.Sprintf("%d.log", i)),
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := rt.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
		if ev := waitExit(b, rt, ch, id, 30*time.Second); ev.ExitCode != 0 {
			b.Fatalf("exit %d", ev.ExitCode)
		}
		run = time.Since(start)
		b.StopTimer()
		if err := rt.Remove(ctx, id); err != nil {
			b.Fatal(err)
		}
		remove = time.Since(start) - run
		b.StartTimer()
		return run, remove
	}
	one(-1) // warm up

	var ours, withRm []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		run, rm := one(i)
		ours = append(ours, run)
		withRm = append(withRm, run+rm)
	}
	b.StopTimer()
	b.ReportMetric(mean(withRm), "rm-ns/op")
	b.ReportMetric(median(ours), "p50-ns")

	ctr, err := exec.LookPath("ctr")
	if err != nil {
		b.Logf("ctr not installed: no comparison")
		return
	}
	const ns = "shoal-bench"
	if out, err := exec.Command(ctr, "--address", addr, "-n", ns, "images", "import", archive).CombinedOutput(); err != nil {
		b.Fatalf("ctr images import: %v: %s", err, out)
	}
	ctrRun := func(i int) time.Duration {
		start := time.Now()
		cmd := exec.Command(ctr, "--address", addr, "-n", ns, "run", "--rm", "--net-host", testImage, fmt.Sprintf("bench-%d-%d", os.Getpid(), i), "true")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("ctr run: %v: %s", err, out)
		}
		return time.Since(start)
	}
	ctrRun(1000)
	n := min(max(len(ours), 10), 100)
	var theirs []time.Duration
	for i := range n {
		theirs = append(theirs, ctrRun(i))
	}
	b.ReportMetric(mean(theirs), "ctr-ns/op")
	b.ReportMetric(mean(ours)/mean(theirs), "ratio")
	b.ReportMetric(mean(withRm)/mean(theirs), "ratio-rm")
	b.ReportMetric(median(theirs), "ctr-p50-ns")
}

func mean(d []time.Duration) float64 {
	var s time.Duration
	for _, x := range d {
		s += x
	}
	return float64(s) / float64(len(d))
}

func median(d []time.Duration) float64 {
	d = slices.Clone(d)
	slices.Sort(d)
	return float64(d[len(d)/2])
}
