package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/e2e/chaos"
	nslab "github.com/shoalproj/shoal/e2e/lab"
)

// The chaos suite's knobs; each flag has an environment variable that
// `make chaos` sets.
var (
	chaosSeed     = flag.Uint64("chaos.seed", 0, "first seed of the chaos runs (default: random, printed); env CHAOS_SEED")
	chaosSeeds    = flag.Int("chaos.seeds", 0, "number of seeds (runs) of the chaos suite; env CHAOS_SEEDS; TestChaos runs only when set")
	chaosDuration = flag.Duration("chaos.duration", 0, "load and faults per seed; env CHAOS_DURATION")
	chaosHosts    = flag.Int("chaos.hosts", 0, "hosts of the chaos lab (3 or 5); env CHAOS_HOSTS")
	chaosFaults   = flag.String("chaos.faults", "", "comma-separated fault kinds to inject (default all: "+faultNames()+"); env CHAOS_FAULTS")
)

func faultNames() string {
	var out []string
	for _, k := range chaos.AllFaults {
		out = append(out, string(k))
	}
	return strings.Join(out, ",")
}

// chaosSettings is what the flags and the environment ask for, with
// defaults for unset values.
type chaosSettings struct {
	seeds    []uint64
	duration time.Duration
	hosts    int
	faults   []chaos.FaultKind
}

func chaosEnvInt(t *testing.T, name string, flagVal int) int {
	if flagVal != 0 {
		return flagVal
	}
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want a number", name, s)
		}
		return n
	}
	return 0
}

func readChaosSettings(t *testing.T, seeds int, duration time.Duration) chaosSettings {
	t.Helper()
	if n := chaosEnvInt(t, "CHAOS_SEEDS", *chaosSeeds); n > 0 {
		seeds = n
	}
	if *chaosDuration != 0 {
		duration = *chaosDuration
	} else if s := os.Getenv("CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CHAOS_DURATION=%q: %v", s, err)
		}
		duration = d
	}
	hosts := 3
	if n := chaosEnvInt(t, "CHAOS_HOSTS", *chaosHosts); n > 0 {
		hosts = n
	}
	first := *chaosSeed
	if first == 0 {
		if s := os.Getenv("CHAOS_SEED"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("CHAOS_SEED=%q: %v", s, err)
			}
			first = v
		}
	}
	if first == 0 {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		// Small enough to type.
		first = binary.LittleEndian.Uint64(b[:])%1_000_000_000 + 1
	}
	st := chaosSettings{duration: duration, hosts: hosts}
	names := *chaosFaults
	if names == "" {
		names = os.Getenv("CHAOS_FAULTS")
	}
	for _, n := range strings.Split(names, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !strings.Contains(","+faultNames()+",", ","+n+",") {
			t.Fatalf("fault %q: want one of %s", n, faultNames())
		}
		st.faults = append(st.faults, chaos.FaultKind(n))
	}
	for i := range seeds {
		st.seeds = append(st.seeds, first+uint64(i))
	}
	return st
}

// labFaults is the lab as the fault injector drives it: the lab package's
// own methods, which return errors (the injector runs in a goroutine of
// its own, where t.Fatal must not be called).
type labFaults struct{ l *nslab.Lab }

func (f labFaults) Hosts() int               { return len(f.l.Hosts) }
func (f labFaults) Kill(i int) error         { return f.l.Lab.Kill(i) }
func (f labFaults) Restart(i int) error      { return f.l.Lab.Restart(i) }
func (f labFaults) Pause(i int) error        { return f.l.Lab.Pause(i) }
func (f labFaults) Resume(i int) error       { return f.l.Lab.Resume(i) }
func (f labFaults) LinkDown(i int) error     { return f.l.Lab.Cut(i) }
func (f labFaults) LinkUp(i int) error       { return f.l.Lab.Heal(i) }
func (f labFaults) HealCuts(i int) error     { return f.l.Lab.HealCuts(context.Background(), i) }
func (f labFaults) CutPair(i, j int) error   { return f.l.Lab.CutPair(context.Background(), i, j) }
func (f labFaults) CutOneWay(i, j int) error { return f.l.Lab.CutOneWay(context.Background(), i, j) }
func (f labFaults) endpoint(i int) string    { return net.JoinHostPort(f.l.Host(i).IP, "7443") }
func (f labFaults) nodeName(i int) string    { return f.l.Host(i).Node }
func (f labFaults) clientConfig() string     { return f.l.ClientConf }
func (f labFaults) replayHint(run string, st chaosSettings) string {
	faults := ""
	if len(st.faults) > 0 {
		var names []string
		for _, k := range st.faults {
			names = append(names, string(k))
		}
		faults = " -chaos.faults=" + strings.Join(names, ",")
	}
	return fmt.Sprintf("go test -count=1 -v -run '%s$' ./e2e/ -chaos.seeds=1 -chaos.hosts=%d -chaos.duration=%v%s -chaos.seed=", run, len(f.l.Hosts), st.duration, faults)
}

// TestChaosShort is the chaos suite's CI run (issue 7): a few seeds of
// load and faults on one 3-host lab, about a minute and a half in all.
// Each seed's history must be linearizable, no acknowledged write lost and
// every watcher complete; the seeds are printed to replay a failure.
func TestChaosShort(t *testing.T) {
	nslab.RequireRoot(t)
	runChaos(t, "TestChaosShort", readChaosSettings(t, 3, 15*time.Second))
}

// TestChaos is the long run: `make chaos SEEDS=50` (CHAOS_SEEDS=50), 30 s
// of load and faults per seed unless CHAOS_DURATION says otherwise.
func TestChaos(t *testing.T) {
	if *chaosSeeds == 0 && os.Getenv("CHAOS_SEEDS") == "" {
		t.Skip("set CHAOS_SEEDS (or -chaos.seeds) to run the long chaos suite: make chaos SEEDS=50")
	}
	nslab.RequireRoot(t)
	runChaos(t, "TestChaos", readChaosSettings(t, 1, 30*time.Second))
}

func runChaos(t *testing.T, name string, st chaosSettings) {
	seeds := make([]string, len(st.seeds))
	for i, s := range st.seeds {
		seeds[i] = fmt.Sprint(s)
	}
	faults := "all faults"
	if len(st.faults) > 0 {
		faults = fmt.Sprint(st.faults)
	}
	t.Logf("chaos: seeds %s, %v each, %d hosts, %s", strings.Join(seeds, " "), st.duration, st.hosts, faults)
	l := nslab.New(t, st.hosts, nslab.Options{Bin: shoalBin, AgentArgs: []string{"--lb-mode", "none"}})
	lf := labFaults{l}
	cfg, err := client.LoadConfig(lf.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	var endpoints, names []string
	for i := 1; i <= st.hosts; i++ {
		endpoints = append(endpoints, lf.endpoint(i))
		names = append(names, lf.nodeName(i))
	}
	var reports []*chaos.Report
	start := time.Now()
	for _, seed := range st.seeds {
		var rep *chaos.Report
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), st.duration+8*time.Minute)
			defer cancel()
			var err error
			rep, err = chaos.Run(ctx, chaos.Config{
				Seed:      seed,
				Duration:  st.duration,
				Endpoints: endpoints,
				NodeNames: names,
				Client:    cfg,
				Cluster:   lf,
				Faults:    st.faults,
				Namespace: "chaos-" + strconv.FormatUint(seed, 36),
				Logf:      t.Logf,
			})
			if err != nil {
				t.Fatalf("seed %d: %v\nreplay: %s%d", seed, err, lf.replayHint(name, st), seed)
			}
			t.Logf("\n%s", rep)
			if !rep.Passed() {
				t.Errorf("seed %d failed; replay: %s%d", seed, lf.replayHint(name, st), seed)
			}
		})
		if rep != nil {
			reports = append(reports, rep)
		}
		if !ok {
			break
		}
	}
	t.Logf("\n%s", chaosSummary(reports, len(st.seeds), time.Since(start)))
}

// chaosSummary adds up the seeds' reports.
func chaosSummary(reps []*chaos.Report, planned int, took time.Duration) string {
	var ops, okN, failed, unknown, checked, lost, events, relists, reconnects, problems int
	faults := map[chaos.FaultKind]int{}
	var seeds []string
	var load time.Duration
	result := "PASS"
	for _, r := range reps {
		seeds = append(seeds, fmt.Sprint(r.Seed))
		ops += r.Ops
		okN += r.OK
		failed += r.Failed
		unknown += r.Unknown
		checked += r.Checked
		lost += r.AckedLost
		load += r.LoadTime
		problems += len(r.Problems)
		for k, v := range r.Faults {
			faults[k] += v
		}
		for _, w := range r.Watchers {
			events += w.Events
			relists += w.Relists
			reconnects += w.Reconnects
		}
		if !r.Passed() {
			result = "FAIL"
		}
	}
	if len(reps) < planned {
		result = "FAIL"
	}
	nFaults := 0
	var fk []string
	for _, k := range chaos.AllFaults {
		if faults[k] > 0 {
			fk = append(fk, fmt.Sprintf("%s %d", k, faults[k]))
			nFaults += faults[k]
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chaos summary: %d of %d seeds run (%s), %v of load and faults, %v in all\n", len(reps), planned, strings.Join(seeds, " "), load.Round(time.Second), took.Round(time.Second))
	fmt.Fprintf(&b, "  operations: %d (ok %d, failed %d, unknown %d), %d checked for linearizability\n", ops, okN, failed, unknown, checked)
	fmt.Fprintf(&b, "  faults injected: %d (%s)\n", nFaults, strings.Join(fk, ", "))
	fmt.Fprintf(&b, "  acknowledged then lost: %d\n", lost)
	fmt.Fprintf(&b, "  watch events: %d (%d reconnects, %d re-lists after OutOfRange)\n", events, reconnects, relists)
	fmt.Fprintf(&b, "  problems: %d\n", problems)
	fmt.Fprintf(&b, "  result: %s", result)
	return b.String()
}
