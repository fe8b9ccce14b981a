package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/e2e/bench/benchenv"
)

// bench is one run: the clusters, the systems measured on them, and the
// figures.
type bench struct {
	o   *options
	ps  *procs
	sc  *shoalCluster
	e1  *etcdCluster
	e3  *etcdCluster
	log *os.File // progress goes to stderr; the table to stdout

	systems []*system
	ref     *system // what the ratios compare with: etcd, 3 members, spread
	rows    []row
	fails   []failoverResult
	info    []string
	slice   int // numbers slices, so that every slice writes keys of its own
}

// row is one load on one system, all its slices merged.
type row struct {
	clients int
	sys     *system
	s       sample
}

func newBench(o *options) (*bench, error) {
	ps, err := newProcs(o.dir)
	if err != nil {
		return nil, err
	}
	return &bench{o: o, ps: ps, log: os.Stderr}, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "storebench: "+format+"\n", args...)
}

// cleanup stops every process and removes the temporary directory (unless
// -keep). After a failure it first shows the end of every process's log.
func (b *bench) cleanup(failed bool) {
	if b.sc != nil {
		b.sc.close()
	}
	b.ps.killAll()
	if failed {
		b.ps.dumpLogs(os.Stderr, 25)
	}
	if b.o.keep {
		b.logf("kept %s (data and logs)", b.ps.root)
		return
	}
	b.ps.removeRoot()
}

func (b *bench) run(ctx context.Context) error {
	o := b.o
	tcp, udp := shoalPorts(o.shoalAddrs, o.profileDir != "")
	tcp = append(tcp, etcdPorts(append([]string{o.etcd1Addr}, o.etcd3Addrs...))...)
	if err := checkFree(tcp, udp); err != nil {
		return err
	}
	b.logf("temporary directory %s", b.ps.root)

	t0 := time.Now()
	var err error
	if b.sc, err = startShoal(ctx, b.ps, o); err != nil {
		return err
	}
	b.logf("shoal: 3 Ready voters on %s after %v", strings.Join(o.shoalAddrs, ", "), time.Since(t0).Round(time.Millisecond))
	var pki *etcdPKI
	if o.etcdTLS {
		if pki, err = newEtcdPKI(filepath.Join(b.ps.root, "etcd-pki"), append([]string{o.etcd1Addr}, o.etcd3Addrs...)); err != nil {
			return fmt.Errorf("etcd certificates: %w", err)
		}
	}
	t0 = time.Now()
	if b.e1, err = startEtcd(ctx, b.ps, o, "etcd1", []string{o.etcd1Addr}, pki, o.valueSize); err != nil {
		return err
	}
	if b.e3, err = startEtcd(ctx, b.ps, o, "etcd3", o.etcd3Addrs, pki, o.valueSize); err != nil {
		return err
	}
	b.logf("etcd: 1 member on %s and 3 members on %s ready after %v", o.etcd1Addr, strings.Join(o.etcd3Addrs, ", "), time.Since(t0).Round(time.Millisecond))
	b.defineSystems()
	b.describe(ctx)
	if err := b.idle(ctx, 3*time.Second); err != nil {
		return err
	}

	if err := b.measure(ctx); err != nil {
		return err
	}
	if o.failover {
		if err := b.failovers(ctx); err != nil {
			return err
		}
	}
	report := b.report()
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
		b.logf("table written to %s", o.out)
	}
	return nil
}

// describe records what the figures were taken on.
func (b *bench) describe(ctx context.Context) {
	o := b.o
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	shoalVersion := "?"
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if v, err := api.NewShoalClient(b.sc.status[0]).Version(qctx, &api.VersionRequest{}); err == nil {
		shoalVersion = v.GetVersion()
	}
	cancel()
	keys := "a new key per write"
	if o.keys > 0 {
		keys = fmt.Sprintf("updates of %d keys per client", o.keys)
	}
	tlsNote := "plain HTTP"
	if o.etcdTLS {
		tlsNote = "mutual TLS on client and peer URLs"
	}
	agents := o.shoalBin
	if o.profileDir != "" {
		agents = "agents in-process in storebench with net/http/pprof (-profile)"
	}
	b.info = []string{
		fmt.Sprintf("%s; %d CPUs; kernel %s; %s", time.Now().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version()),
		fmt.Sprintf("shoal %s (%s): 3 nodes on %s, gRPC Apply of one Service per write (%d bytes encoded), bbolt raft log with fsync", shoalVersion, agents, strings.Join(o.shoalAddrs, ", "), o.valueSize),
		fmt.Sprintf("etcd %s: 1 member on %s, 3 members on %s, %s, default fsync; Put of a %d-byte value", etcdVersion(o.etcdBin), o.etcd1Addr, strings.Join(o.etcd3Addrs, ", "), tlsNote, o.valueSize),
		fmt.Sprintf("each client: its own connection, one write at a time; %s; %v measured per row in %d slices taken in turns (order rotating), %v warm-up per slice", keys, o.duration, o.rounds, o.warmup),
		fmt.Sprintf("data directories of both under %s (%s)", o.dir, benchenv.FSType(b.ps.root)),
		"server CPU per write: CPU time (user+system) of all the system's server processes over the measured window, divided by the writes measured; the clients' is not counted",
	}
}

// idle records the CPU each cluster uses with no load (heartbeats, gossip,
// housekeeping), all measured over the same seconds.
func (b *bench) idle(ctx context.Context, d time.Duration) error {
	groups := []struct {
		label string
		procs []*proc
	}{
		{"shoal, 3 nodes", nil}, {"etcd, 3 members", nil}, {"etcd, 1 member", []*proc{b.e1.members[0].proc}},
	}
	for _, n := range b.sc.nodes {
		groups[0].procs = append(groups[0].procs, n.proc)
	}
	for _, m := range b.e3.members {
		groups[1].procs = append(groups[1].procs, m.proc)
	}
	before := make([]time.Duration, len(groups))
	for i, g := range groups {
		before[i] = cpuTimeOf(g.procs)
	}
	var prof sync.WaitGroup
	if b.o.profileDir != "" {
		prof.Add(1)
		go func() {
			defer prof.Done()
			b.profileHook(true)(ctx, "idle", d)
		}()
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		prof.Wait()
		return ctx.Err()
	}
	var parts []string
	for i, g := range groups {
		used := cpuTimeOf(g.procs) - before[i]
		parts = append(parts, fmt.Sprintf("%s %.0f%%", g.label, 100*used.Seconds()/d.Seconds()))
	}
	prof.Wait()
	line := "idle CPU (no load, of one CPU, over " + d.String() + "): " + strings.Join(parts, ", ")
	b.info = append(b.info, line)
	b.logf("%s", line)
	return nil
}

// defineSystems lists what each load runs against.
func (b *bench) defineSystems() {
	sc, e1, e3 := b.sc, b.e1, b.e3
	spread := func(n func(ctx context.Context, i int) (writer, error)) func(context.Context) (dialFunc, error) {
		return func(context.Context) (dialFunc, error) { return n, nil }
	}
	shoalSpread := &system{
		label:   "shoal, 3 nodes, clients spread",
		prepare: spread(func(ctx context.Context, i int) (writer, error) { return sc.newWriter(ctx, i%len(sc.nodes)) }),
	}
	shoalLeader := &system{
		label: "shoal, 3 nodes, all to leader",
		prepare: func(ctx context.Context) (dialFunc, error) {
			l, err := sc.leader(ctx)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, i int) (writer, error) { return sc.newWriter(ctx, l) }, nil
		},
	}
	etcd3Spread := &system{
		label:   "etcd, 3 members, clients spread",
		prepare: spread(func(ctx context.Context, i int) (writer, error) { return e3.newWriter(ctx, i%len(e3.members)) }),
	}
	etcd3Leader := &system{
		label: "etcd, 3 members, all to leader",
		prepare: func(ctx context.Context) (dialFunc, error) {
			l, err := e3.leader(ctx)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, i int) (writer, error) { return e3.newWriter(ctx, l) }, nil
		},
	}
	etcd1 := &system{
		label:   "etcd, 1 member",
		prepare: spread(func(ctx context.Context, i int) (writer, error) { return e1.newWriter(ctx, 0) }),
	}
	stats := func(ctx context.Context) (raftStats, error) {
		l, err := sc.leader(ctx)
		if err != nil {
			return raftStats{}, err
		}
		return sc.scrape(ctx, l)
	}
	shoalSpread.leaderStats = stats
	shoalLeader.leaderStats = stats
	if b.o.profileDir != "" {
		shoalSpread.onMeasure = b.profileHook(true)
		shoalLeader.onMeasure = b.profileHook(false)
	}
	var shoalProcs, e3Procs []*proc
	for _, n := range sc.nodes {
		shoalProcs = append(shoalProcs, n.proc)
	}
	for _, m := range e3.members {
		e3Procs = append(e3Procs, m.proc)
	}
	shoalSpread.procs, shoalLeader.procs = shoalProcs, shoalProcs
	etcd3Spread.procs, etcd3Leader.procs = e3Procs, e3Procs
	etcd1.procs = []*proc{e1.members[0].proc}
	shoalSpread.key, shoalLeader.key, etcd3Spread.key, etcd3Leader.key, etcd1.key = "shoal-spread", "shoal-leader", "etcd3-spread", "etcd3-leader", "etcd1"
	all := []*system{shoalSpread, shoalLeader, etcd3Spread, etcd3Leader, etcd1}
	b.ref = etcd3Spread
	for _, s := range all {
		if b.o.systems == nil || b.o.systems[s.key] {
			b.systems = append(b.systems, s)
		}
	}
}

// profileHook saves a CPU profile of the shoal leader (and, for the spread
// load, of a follower) while a slice is measured.
func (b *bench) profileHook(follower bool) func(ctx context.Context, tag string, d time.Duration) {
	return func(ctx context.Context, tag string, d time.Duration) {
		if tag == "" {
			return
		}
		l, err := b.sc.leader(ctx)
		if err != nil {
			b.logf("profile: %v", err)
			return
		}
		targets := map[string]int{"leader": l}
		if follower {
			targets["follower"] = (l + 1) % len(b.sc.nodes)
		}
		var wg sync.WaitGroup
		for role, i := range targets {
			// CPU, and the allocations made over the same seconds.
			for _, kind := range []string{"profile", "allocs"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					addr := fmt.Sprintf("%s:%d", b.sc.nodes[i].ip, pprofPort)
					name := map[string]string{"profile": "cpu", "allocs": "allocs"}[kind]
					path := filepath.Join(b.o.profileDir, fmt.Sprintf("%s-%s.%s.pprof", tag, role, name))
					if err := fetchProfile(ctx, addr, kind, d, path); err != nil {
						b.logf("profile %s: %v", path, err)
						return
					}
					b.logf("profile written: %s", path)
				}()
			}
		}
		wg.Wait()
	}
}

func loadLabel(n int) string {
	if n == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", n)
}

// measure runs every load against every system. Each measurement is cut
// into slices; in each round every system takes one turn, and the order
// rotates (and reverses) from round to round, so that a change in the
// machine's load over time falls on all systems alike.
func (b *bench) measure(ctx context.Context) error {
	o := b.o
	sliceDur := o.duration / time.Duration(o.rounds)
	budget := max(1, o.maxWrites/int64(o.rounds))
	for li, clients := range o.clients {
		merged := make([]sample, len(b.systems))
		for r := range o.rounds {
			order := make([]int, len(b.systems))
			for k := range order {
				order[k] = (k + r + li) % len(b.systems)
			}
			if r%2 == 1 {
				for x, y := 0, len(order)-1; x < y; x, y = x+1, y-1 {
					order[x], order[y] = order[y], order[x]
				}
			}
			for _, si := range order {
				sys := b.systems[si]
				b.slice++
				sliceNo := b.slice
				sp := sliceSpec{
					clients: clients, warmup: o.warmup, duration: sliceDur, budget: budget, timeout: o.writeTimeout,
					key: b.keyFunc(fmt.Sprint(sliceNo)),
				}
				if r == 0 {
					sp.tag = fmt.Sprintf("c%d-%s", clients, sys.key)
				}
				s, err := runSlice(ctx, sys, sp)
				if err != nil {
					return err
				}
				b.logf("%-10s %-32s round %d/%d: %6.0f writes/s  p50 %s  p99 %s  server CPU %s/write  errors %d",
					loadLabel(clients), sys.label, r+1, o.rounds, s.rate(), fmtDur(s.pct(50)), fmtDur(s.pct(99)), fmtDur(s.cpuPerWrite()), s.errs)
				if st := s.raft; st.entries > 0 && st.applyCount > 0 {
					b.logf("  leader raft: %.0f entries, %.1f writes per entry, mean propose → applied %s",
						st.entries, st.writes/st.entries, fmtDur(time.Duration(st.applySum/st.applyCount*float64(time.Second))))
				}
				if s.firstErr != nil && s.errs > 0 {
					b.logf("  first error: %v", s.firstErr)
				}
				merged[si].add(s)
			}
		}
		for si, sys := range b.systems {
			b.rows = append(b.rows, row{clients: clients, sys: sys, s: merged[si]})
		}
	}
	return nil
}

// keyFunc returns the key naming of one slice: a new key per write (unique
// to the slice), or a fixed set per client.
func (b *bench) keyFunc(slice string) keyFunc {
	if b.o.keys > 0 {
		n := uint64(b.o.keys)
		return func(c int, seq uint64) string { return fmt.Sprintf("bench-%02d-%07d", c, seq%n) }
	}
	return func(c int, seq uint64) string { return fmt.Sprintf("bench-%s-%02d-%07d", slice, c, seq) }
}

// failovers kills the shoal leader, then the etcd (3 members) leader,
// while clients write through the followers.
func (b *bench) failovers(ctx context.Context) error {
	var shoalProcs, etcdProcs []*proc
	var shoalNames, etcdNames []string
	for _, n := range b.sc.nodes {
		shoalProcs, shoalNames = append(shoalProcs, n.proc), append(shoalNames, n.name)
	}
	for _, m := range b.e3.members {
		etcdProcs, etcdNames = append(etcdProcs, m.proc), append(etcdNames, m.name)
	}
	if err := b.failover(ctx, "shoal, 3 nodes", b.sc.leader, b.sc.newWriter, shoalProcs, shoalNames); err != nil {
		return err
	}
	return b.failover(ctx, "etcd, 3 members", b.e3.leader, b.e3.newWriter, etcdProcs, etcdNames)
}

// failover measures one cluster: clients spread over the followers, then
// SIGKILL to the leader.
func (b *bench) failover(ctx context.Context, label string, leader func(context.Context) (int, error),
	newWriter func(context.Context, int) (writer, error), procs []*proc, names []string) error {
	l, err := leader(ctx)
	if err != nil {
		return fmt.Errorf("%s failover: %w", label, err)
	}
	var followers []int
	for i := range procs {
		if i != l {
			followers = append(followers, i)
		}
	}
	ws, err := dialAll(ctx, func(ctx context.Context, i int) (writer, error) {
		return newWriter(ctx, followers[i%len(followers)])
	}, b.o.failoverClients)
	if err != nil {
		return fmt.Errorf("%s failover: %w", label, err)
	}
	defer closeAll(ws)
	res := runFailover(ctx, label, ws, procs[l].signalKill, 2*time.Second, b.o.failoverWait, b.o.writeTimeout, b.keyFunc("fo"))
	res.leader = names[l]
	b.fails = append(b.fails, res)
	b.logf("failover %s: killed leader %s; %s", res.label, res.leader, fmtFailover(res))
	return ctx.Err()
}

func fmtFailover(r failoverResult) string {
	if r.err != nil {
		return "no figure: " + r.err.Error()
	}
	return fmt.Sprintf("first write sent after the kill accepted %s after it; %d writes failed; longest wait of a client %s",
		fmtSec(r.recovery), r.failed, fmtSec(r.longestWait))
}

// report is the markdown the run prints (and writes to -out).
func (b *bench) report() string {
	var w strings.Builder
	fmt.Fprintf(&w, "\n## make bench-store\n\n")
	for _, l := range b.info {
		fmt.Fprintf(&w, "- %s\n", l)
	}
	fmt.Fprintf(&w, "\n| load | system | writes/s | p50 | p99 | max | errors | ratio vs etcd-3 (writes/s) | p99 vs etcd-3 | server CPU per write |\n")
	fmt.Fprintf(&w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	ref := map[int]*sample{}
	for i := range b.rows {
		r := &b.rows[i]
		if r.sys == b.ref {
			ref[r.clients] = &r.s
		}
	}
	for i := range b.rows {
		r := &b.rows[i]
		ratio, p99r := "", ""
		if e := ref[r.clients]; e != nil && e.rate() > 0 {
			ratio = fmt.Sprintf("%.2f", r.s.rate()/e.rate())
			if e.pct(99) > 0 {
				p99r = fmt.Sprintf("%.2f×", float64(r.s.pct(99))/float64(e.pct(99)))
			}
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |\n",
			loadLabel(r.clients), r.sys.label, fmtRate(r.s.rate()), fmtDur(r.s.pct(50)), fmtDur(r.s.pct(99)), fmtDur(r.s.pct(100)),
			r.s.errs, ratio, p99r, fmtDur(r.s.cpuPerWrite()))
	}
	var notes []string
	for i := range b.rows {
		r := &b.rows[i]
		if st := r.s.raft; st.entries > 0 && st.applyCount > 0 {
			notes = append(notes, fmt.Sprintf("| %s | %s | %.1f | %s |", loadLabel(r.clients), r.sys.label,
				st.writes/st.entries, fmtDur(time.Duration(st.applySum/st.applyCount*float64(time.Second)))))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(&w, "\n| shoal leader, from its /metrics (warm-up included) | system | writes per raft entry | mean propose → applied |\n|---|---|--:|--:|\n")
		for _, n := range notes {
			fmt.Fprintln(&w, n)
		}
	}
	if len(b.fails) > 0 {
		fmt.Fprintf(&w, "\n| failover: leader killed (SIGKILL) while %d clients write through the followers | kill → first write sent after it accepted (probed every %v) | clients' writes that failed | longest a client waited |\n", b.o.failoverClients, probeInterval)
		fmt.Fprintf(&w, "|---|--:|--:|--:|\n")
		for _, f := range b.fails {
			if f.err != nil {
				fmt.Fprintf(&w, "| %s (leader %s) | no figure: %v | | |\n", f.label, f.leader, f.err)
				continue
			}
			fmt.Fprintf(&w, "| %s (leader %s) | %s | %d | %s |\n", f.label, f.leader, fmtSec(f.recovery), f.failed, fmtSec(f.longestWait))
		}
		fmt.Fprintf(&w, "\nEach write has a %v deadline; the clients go on writing back to back, and a probe write is sent every %v besides.\n", b.o.writeTimeout, probeInterval)
	}
	fmt.Fprintf(&w, "\nRatios are against etcd, 3 members, clients spread, under the same load in the same run. A figure, not a test: the machine is shared and noisy, so compare the ratios rather than the absolute numbers.\n")
	return w.String()
}

func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

func fmtSec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// fmtRate prints writes/s with thousands separators.
func fmtRate(r float64) string {
	s := fmt.Sprintf("%.0f", r)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
