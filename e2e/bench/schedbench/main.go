// Command schedbench measures the scheduler at scale: a real leader (one
// shoal agent in a process of its own, real raft with its bbolt log and
// fsync on a temporary data directory, the real controllers, the API over
// mutual TLS on loopback) with thousands of hollow nodes (package
// e2e/bench/hollow: Ready Node objects, and one hollow kubelet that
// reports the pods bound to them Running+Ready), and Deployments
// totalling many pods applied at once. One watch of the leader's API
// records when each pod is first seen, first seen bound (committed and
// applied) and first seen Running+Ready.
//
// It prints, per node count, pods/s bound and committed (from the first
// pod's creation to the last binding), p50/p99 of creation → bound per
// pod, when the last pod was created, bound and Running, when the
// Deployments counted every replica available, and the leader's CPU time,
// peak RSS and peak Go heap. It is a figure, not a test: it never fails
// because shoal is slow, and gives up on a scenario after -timeout,
// reporting how far it got.
//
//	go run ./e2e/bench/schedbench
//	go run ./e2e/bench/schedbench -nodes 5000 -pods 100000 -deployments 100
//	go run ./e2e/bench/schedbench -nodes 500 -pods 10000 -profile /tmp/prof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoalproj/shoal/cluster"
)

// options are the command line.
type options struct {
	nodes         []int
	pods          int
	deployments   int
	podCPU        string
	podMemory     string
	nodeCPU       string
	nodeMemory    string
	nodePods      string
	addr          string
	statsAddr     string
	voters        int
	followerAddrs []string
	timeout       time.Duration
	readyTimeout  time.Duration
	dir           string
	keep          bool
	out           string
	profileDir    string
	logLevel      string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == leaderSubcommand {
		os.Exit(leaderMain(os.Args[2:]))
	}
	os.Exit(run())
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "schedbench: "+format+"\n", args...)
}

func run() int {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "schedbench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := checkFree(o); err != nil {
		fmt.Fprintln(os.Stderr, "schedbench:", err)
		return 1
	}
	root, err := os.MkdirTemp(o.dir, "schedbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "schedbench:", err)
		return 1
	}
	defer func() {
		if o.keep {
			logf("kept %s (data and the leader's logs)", root)
			return
		}
		if err := os.RemoveAll(root); err != nil {
			logf("remove %s: %v", root, err)
		}
	}()
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "schedbench: -profile:", err)
			return 1
		}
	}
	var results []*result
	failed := false
	for _, n := range o.nodes {
		r, err := runScenario(ctx, o, root, n)
		if err != nil {
			if ctx.Err() != nil {
				logf("interrupted; cleaning up")
				failed = true
				break
			}
			logf("%d nodes: %v", n, err)
			failed = true
			continue
		}
		results = append(results, r)
	}
	if len(results) > 0 {
		report := report(o, root, results)
		fmt.Print(report)
		if o.out != "" {
			if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
				logf("-out: %v", err)
				failed = true
			}
		}
	}
	if failed {
		return 1
	}
	return 0
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("schedbench", flag.ContinueOnError)
	nodes := fs.String("nodes", "500,5000", "comma-separated hollow node counts, one scenario (a fresh leader) each")
	fs.IntVar(&o.pods, "pods", 100_000, "pods per scenario, in -deployments Deployments")
	fs.IntVar(&o.deployments, "deployments", 100, "Deployments per scenario (the pods are shared out among them)")
	fs.StringVar(&o.podCPU, "pod-cpu", "100m", "cpu each pod requests")
	fs.StringVar(&o.podMemory, "pod-memory", "128Mi", "memory each pod requests")
	fs.StringVar(&o.nodeCPU, "node-cpu", "32", "cpu capacity of each hollow node")
	fs.StringVar(&o.nodeMemory, "node-memory", "128Gi", "memory capacity of each hollow node")
	fs.StringVar(&o.nodePods, "node-pods", "250", "pods capacity each hollow node reports")
	fs.StringVar(&o.addr, "addr", "127.0.0.61", "loopback address of the leader (default ports, and 6061 for its stats); followers take the next ones")
	fs.IntVar(&o.voters, "voters", 1, "raft voters: 1 (the leader alone) or 3 (two followers on the next loopback addresses, every write replicated and applied three times on this machine)")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Second, "per scenario: give up waiting for the pods (and the Deployments' status) after this")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 60*time.Second, "per scenario: deadline for the leader and the hollow nodes to be Ready")
	fs.StringVar(&o.dir, "dir", os.TempDir(), "parent of the temporary directory holding the leader's data directory (put it on the disk to measure)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data and the leader's logs)")
	fs.StringVar(&o.out, "out", "", "also write the tables as markdown to this file")
	fs.StringVar(&o.profileDir, "profile", "", "write the leader's CPU profile (over each measured window) and heap profile (at its end) here")
	fs.StringVar(&o.logLevel, "log-level", "warn", "the leader's log level (its log is in the temporary directory)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, f := range strings.Split(*nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 65536 {
			return nil, fmt.Errorf("-nodes: %q is not a number of nodes (1-65536)", f)
		}
		o.nodes = append(o.nodes, n)
	}
	switch {
	case o.pods < 1 || o.pods > 10_000_000:
		return nil, errors.New("-pods: 1 to 10,000,000")
	case o.deployments < 1 || o.deployments > o.pods:
		return nil, errors.New("-deployments: at least 1, at most -pods")
	case o.timeout <= 0 || o.readyTimeout <= 0:
		return nil, errors.New("-timeout and -ready-timeout must be positive")
	case net.ParseIP(o.addr) == nil || !net.ParseIP(o.addr).IsLoopback():
		return nil, fmt.Errorf("-addr %q: a loopback address (traffic stays on this machine)", o.addr)
	}
	if o.voters != 1 && o.voters != 3 {
		return nil, errors.New("-voters: 1 or 3")
	}
	o.statsAddr = net.JoinHostPort(o.addr, statsPort)
	ip := net.ParseIP(o.addr).To4()
	for i := 1; i < o.voters; i++ {
		if ip == nil || int(ip[3])+i > 254 {
			return nil, fmt.Errorf("-addr %s: the followers need the next %d addresses", o.addr, o.voters-1)
		}
		o.followerAddrs = append(o.followerAddrs, net.IPv4(ip[0], ip[1], ip[2], ip[3]+byte(i)).String())
	}
	return o, nil
}

// checkFree fails when something listens where the leader will.
func checkFree(o *options) error {
	var busy []string
	for _, ip := range append([]string{o.addr}, o.followerAddrs...) {
		for _, p := range []string{strconv.Itoa(cluster.DefaultAPIPort), strconv.Itoa(cluster.DefaultGossipPort), strconv.Itoa(cluster.DefaultRaftPort), statsPort} {
			a := net.JoinHostPort(ip, p)
			ln, err := net.Listen("tcp", a)
			if err != nil {
				busy = append(busy, "tcp "+a)
				continue
			}
			ln.Close()
		}
		a := net.JoinHostPort(ip, strconv.Itoa(cluster.DefaultGossipPort))
		if pc, err := net.ListenPacket("udp", a); err != nil {
			busy = append(busy, "udp "+a)
		} else {
			pc.Close()
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("addresses in use (another run? or choose another with -addr): %s", strings.Join(busy, ", "))
	}
	return nil
}
