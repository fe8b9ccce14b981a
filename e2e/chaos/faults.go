package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Cluster is what the fault injector does to the hosts (1-based). The lab
// implements it; every method returns once the change is made.
type Cluster interface {
	Hosts() int
	Kill(i int) error    // SIGKILL the agent
	Restart(i int) error // start the agent again from its data directory
	Pause(i int) error   // SIGSTOP the agent
	Resume(i int) error  // SIGCONT the agent
	LinkDown(i int) error
	LinkUp(i int) error
	CutPair(i, j int) error   // drop traffic between i and j
	CutOneWay(i, j int) error // drop what i sends to j
	HealCuts(i int) error     // remove the cuts host i holds
}

// FaultKind names a kind of fault.
type FaultKind string

// The faults. Partitions made with CutPair/CutOneWay leave every host
// reachable by the clients, so both sides of a partition take requests;
// LinkDown takes a host off the network for the clients too.
const (
	FaultKill          FaultKind = "kill"           // kill -9 an agent, restart it
	FaultKillLeader    FaultKind = "kill-leader"    // the same, to the leader
	FaultKillAll       FaultKind = "kill-all"       // every agent at once, all restarted
	FaultPause         FaultKind = "pause"          // SIGSTOP an agent, then SIGCONT
	FaultPauseLeader   FaultKind = "pause-leader"   // the same, to the leader
	FaultPartition     FaultKind = "partition"      // a minority cut from the majority
	FaultIsolateLeader FaultKind = "isolate-leader" // the leader cut from everyone
	FaultOneWay        FaultKind = "one-way"        // packets one way only are dropped
	FaultLinkDown      FaultKind = "link-down"      // a host's link down
)

// AllFaults lists the kinds a schedule draws from.
var AllFaults = []FaultKind{FaultKill, FaultKillLeader, FaultKillAll, FaultPause, FaultPauseLeader,
	FaultPartition, FaultIsolateLeader, FaultOneWay, FaultLinkDown}

// Fault is one planned fault. Targets drawn from the seed are host
// numbers; the leader is found when the fault starts.
type Fault struct {
	Kind  FaultKind
	Hosts []int         // the minority, or the target host
	Peer  int           // one-way: the other host of a single pair; 0 for all
	Out   bool          // one-way: the target's packets out are dropped (else in)
	Hold  time.Duration // how long the fault lasts
	Quiet time.Duration // the pause after it healed and the cluster recovered
}

// Schedule draws the faults of a run from its seed: the same seed always
// gives the same schedule (targets, kinds, holds), whatever the timing.
// The kinds drawn from are kinds, or AllFaults when it is empty.
func Schedule(seed uint64, hosts int, d time.Duration, kinds []FaultKind) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0xfa17))
	if len(kinds) == 0 {
		kinds = AllFaults
	}
	var out []Fault
	var total time.Duration
	for total < d && len(out) < 1000 {
		kind := kinds[rng.IntN(len(kinds))]
		if kind == FaultKillAll && len(kinds) > 1 && rng.IntN(2) == 0 {
			kind = FaultKill // half as often as the others
		}
		f := Fault{
			Kind:  kind,
			Hold:  time.Duration(1000+rng.IntN(4000)) * time.Millisecond,
			Quiet: time.Duration(300+rng.IntN(1500)) * time.Millisecond,
		}
		switch f.Kind {
		case FaultKill, FaultPause, FaultLinkDown:
			f.Hosts = []int{1 + rng.IntN(hosts)}
		case FaultKillAll:
			for h := 1; h <= hosts; h++ {
				f.Hosts = append(f.Hosts, h)
			}
		case FaultPartition:
			// A random minority: at most (n-1)/2 hosts.
			size := 1 + rng.IntN(max((hosts-1)/2, 1))
			perm := rng.Perm(hosts)
			for _, p := range perm[:size] {
				f.Hosts = append(f.Hosts, p+1)
			}
			sort.Ints(f.Hosts)
		case FaultOneWay:
			f.Hosts = []int{1 + rng.IntN(hosts)}
			f.Out = rng.IntN(2) == 0
			if rng.IntN(3) == 0 { // a single pair; otherwise against everyone
				f.Peer = 1 + (f.Hosts[0]+rng.IntN(hosts-1))%hosts
			}
			if rng.IntN(2) == 0 {
				f.Hosts = nil // the leader, found when it starts
			}
		}
		if f.Kind == FaultPause || f.Kind == FaultPauseLeader {
			f.Hold = time.Duration(500+rng.IntN(3500)) * time.Millisecond
		}
		out = append(out, f)
		total += f.Hold + f.Quiet + time.Second
	}
	return out
}

// needsLeader reports whether the fault aims at the leader.
func needsLeader(f Fault) bool {
	switch f.Kind {
	case FaultKillLeader, FaultPauseLeader, FaultIsolateLeader:
		return true
	case FaultOneWay:
		return len(f.Hosts) == 0
	}
	return false
}

// describe says what the fault did, for the log.
func (f Fault) describe(targets []int) string {
	hs := make([]string, len(targets))
	for i, h := range targets {
		hs[i] = fmt.Sprint(h)
	}
	who := "host " + strings.Join(hs, ",")
	switch f.Kind {
	case FaultOneWay:
		dir := "in"
		if f.Out {
			dir = "out"
		}
		peer := "every other host"
		if f.Peer != 0 {
			peer = fmt.Sprintf("host %d", f.Peer)
		}
		return fmt.Sprintf("%s: %s's packets %s from/to %s dropped for %v", f.Kind, who, dir, peer, f.Hold.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s: %s for %v", f.Kind, who, f.Hold.Round(time.Millisecond))
}

// injector applies a schedule, one fault at a time, each healed and the
// cluster recovered before the next.
type injector struct {
	c       Cluster
	r       *run
	counts  map[FaultKind]int
	active  func() error // heals the fault in progress
	skipped int
	applied []string
}

// apply makes fault f, with leader the current leader's host (0 when
// none is known), and returns the hosts it hit.
func (in *injector) apply(f Fault, leader int) ([]int, error) {
	n := in.c.Hosts()
	targets := append([]int(nil), f.Hosts...)
	switch f.Kind {
	case FaultKillLeader, FaultPauseLeader, FaultIsolateLeader:
		targets = []int{leader}
	case FaultOneWay:
		if len(targets) == 0 {
			targets = []int{leader}
		}
	}
	for _, t := range targets {
		if t < 1 || t > n {
			return nil, fmt.Errorf("%s: no leader known to aim at", f.Kind)
		}
	}
	t := targets[0]
	switch f.Kind {
	case FaultKill, FaultKillLeader:
		in.active = func() error { return in.c.Restart(t) }
		return targets, in.c.Kill(t)
	case FaultKillAll:
		in.active = func() error {
			var errs []string
			for _, h := range targets {
				if err := in.c.Restart(h); err != nil {
					errs = append(errs, err.Error())
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("restart: %s", strings.Join(errs, "; "))
			}
			return nil
		}
		for _, h := range targets {
			if err := in.c.Kill(h); err != nil {
				return targets, err
			}
		}
		return targets, nil
	case FaultPause, FaultPauseLeader:
		in.active = func() error { return in.c.Resume(t) }
		return targets, in.c.Pause(t)
	case FaultLinkDown:
		in.active = func() error { return in.c.LinkUp(t) }
		return targets, in.c.LinkDown(t)
	case FaultPartition, FaultIsolateLeader:
		in.active = in.healCuts
		minority := map[int]bool{}
		for _, h := range targets {
			minority[h] = true
		}
		for _, h := range targets {
			for j := 1; j <= n; j++ {
				if !minority[j] {
					if err := in.c.CutPair(h, j); err != nil {
						return targets, err
					}
				}
			}
		}
		return targets, nil
	case FaultOneWay:
		in.active = in.healCuts
		for j := 1; j <= n; j++ {
			if j == t || (f.Peer != 0 && j != f.Peer) {
				continue
			}
			var err error
			if f.Out {
				err = in.c.CutOneWay(t, j)
			} else {
				err = in.c.CutOneWay(j, t)
			}
			if err != nil {
				return targets, err
			}
		}
		return targets, nil
	}
	return nil, fmt.Errorf("unknown fault %q", f.Kind)
}

func (in *injector) healCuts() error {
	var errs []string
	for i := 1; i <= in.c.Hosts(); i++ {
		if err := in.c.HealCuts(i); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal cuts: %s", strings.Join(errs, "; "))
	}
	return nil
}

// heal undoes the fault in progress, if any.
func (in *injector) heal() error {
	if in.active == nil {
		return nil
	}
	err := in.active()
	in.active = nil
	return err
}

// healAll undoes every kind of fault on every host, whatever is in
// progress: the end of a run, or a failure.
func (in *injector) healAll() error {
	var errs []string
	if err := in.heal(); err != nil {
		errs = append(errs, err.Error())
	}
	for i := 1; i <= in.c.Hosts(); i++ {
		for _, f := range []func(int) error{in.c.LinkUp, in.c.Resume, in.c.HealCuts} {
			if err := f(i); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal: %s", strings.Join(errs, "; "))
	}
	return nil
}

// runSchedule applies the faults until ctx ends or the next would not
// heal before deadline; it returns with every fault healed.
func (in *injector) runSchedule(ctx context.Context, faults []Fault, deadline time.Time) {
	r := in.r
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	// Some load before the first fault.
	if !wait(time.Second) {
		return
	}
	for _, f := range faults {
		if time.Until(deadline) < f.Hold+500*time.Millisecond || ctx.Err() != nil {
			return
		}
		var leader int
		var seen string
		if _, err := poll(ctx, 10*time.Second, func() (bool, string) {
			leader, seen = r.leader(ctx)
			return leader != 0, seen
		}); err != nil && needsLeader(f) {
			in.skipped++
			r.logf("t=%v fault %s skipped: no leader agreed on by a majority (%v)", r.hist.Since(time.Now()).Round(100*time.Millisecond), f.Kind, err)
			continue
		}
		start := time.Now()
		targets, err := in.apply(f, leader)
		if err != nil {
			r.problemf("fault %s: %v", f.describe(targets), err)
			if herr := in.heal(); herr != nil {
				r.problemf("heal after failed fault: %v", herr)
			}
			return
		}
		in.counts[f.Kind]++
		desc := f.describe(targets)
		if leader != 0 {
			desc += fmt.Sprintf(" (leader was host %d)", leader)
		}
		r.logf("t=%v fault %s", r.hist.Since(start).Round(100*time.Millisecond), desc)
		held := wait(f.Hold)
		if err := in.heal(); err != nil {
			r.problemf("heal %s: %v", desc, err)
			return
		}
		if !held {
			return
		}
		d, last, err := r.waitHealthy(ctx, recoverTimeout)
		if err != nil {
			if ctx.Err() == nil {
				r.problemf("after healing %s the cluster did not recover within %v: %v (last seen: %s)", desc, recoverTimeout, err, last)
			}
			return
		}
		r.logf("t=%v recovered: every node serves consistent reads again, %v after the heal", r.hist.Since(time.Now()).Round(100*time.Millisecond), d.Round(100*time.Millisecond))
		in.applied = append(in.applied, fmt.Sprintf("%s; recovered in %v", desc, d.Round(100*time.Millisecond)))
		if !wait(f.Quiet) {
			return
		}
	}
}

// recoverTimeout bounds how long a healed cluster may take to serve
// consistent reads on every node again.
const recoverTimeout = 45 * time.Second
