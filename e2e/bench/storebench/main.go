// Command storebench measures the control plane's write path: small object
// writes through shoal's API on a 3-node loopback cluster, and the same load
// against etcd 3.4 (Debian's etcd-server) with one member and with three, in
// the same run, interleaved, with the same durability (fsync on every
// commit). It prints writes/s and latency percentiles for each load and
// system, with the ratio to etcd's three members, then the time from killing
// each leader to the first write accepted after it.
//
// It is a figure, not a test: it never fails because shoal is slow.
//
//	go run ./e2e/bench/storebench -shoal bin/shoal
//	go run ./e2e/bench/storebench -shoal bin/shoal -duration 20s -clients 1,4,16 -out store.md
//	go run ./e2e/bench/storebench -profile /tmp/prof   # agents in-process with pprof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	duration        time.Duration
	clients         []int
	shoalBin        string
	out             string
	rounds          int
	warmup          time.Duration
	maxWrites       int64
	writeTimeout    time.Duration
	valueSize       int
	keys            int
	failover        bool
	failoverClients int
	failoverWait    time.Duration
	shoalAddrs      []string
	etcd1Addr       string
	etcd3Addrs      []string
	etcdTLS         bool
	etcdBin         string
	profileDir      string
	keep            bool
	readyTimeout    time.Duration
	systems         map[string]bool // nil: all
	dir             string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == agentSubcommand {
		os.Exit(agentMain(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "storebench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	b, err := newBench(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "storebench:", err)
		return 1
	}
	// Cleanup runs on every way out: success, error, Ctrl-C (ctx ends and
	// the measurements return), and a panic (re-raised after cleanup).
	defer func() {
		if p := recover(); p != nil {
			b.cleanup(true)
			panic(p)
		}
	}()
	err = b.run(ctx)
	failed := err != nil
	if failed {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "storebench: interrupted; cleaning up")
		} else {
			fmt.Fprintln(os.Stderr, "storebench:", err)
		}
	}
	b.cleanup(failed && ctx.Err() == nil)
	if failed {
		return 1
	}
	return 0
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("storebench", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per load and system (split over -rounds)")
	clients := fs.String("clients", "1,16", "comma-separated numbers of concurrent clients")
	fs.StringVar(&o.shoalBin, "shoal", "bin/shoal", "path of the shoal binary")
	fs.StringVar(&o.out, "out", "", "also write the table as markdown to this file")
	fs.IntVar(&o.rounds, "rounds", 2, "slices each measurement is split into; systems take turns, order rotating, so drift of a shared machine hits all alike")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured writes before each slice")
	fs.Int64Var(&o.maxWrites, "max-writes", 2_000_000, "most writes measured per load and system")
	fs.DurationVar(&o.writeTimeout, "write-timeout", 5*time.Second, "deadline of one write")
	fs.IntVar(&o.valueSize, "value-size", 200, "bytes of one written object (shoal: the encoded Service; etcd: the value)")
	fs.IntVar(&o.keys, "keys", 0, "0: every write creates a new key; N: writes update a fixed set of N keys per client")
	fs.BoolVar(&o.failover, "failover", true, "measure the time from killing each leader to the next accepted write")
	fs.IntVar(&o.failoverClients, "failover-clients", 4, "clients writing to the followers while the leader is killed")
	fs.DurationVar(&o.failoverWait, "failover-wait", 20*time.Second, "give up waiting for a write after the leader is killed")
	shoalAddrs := fs.String("shoal-addrs", "127.0.0.21,127.0.0.22,127.0.0.23", "loopback addresses of the 3 shoal nodes (default ports)")
	fs.StringVar(&o.etcd1Addr, "etcd1-addr", "127.0.0.31", "loopback address of the single etcd member")
	etcd3Addrs := fs.String("etcd3-addrs", "127.0.0.41,127.0.0.42,127.0.0.43", "loopback addresses of the 3 etcd members")
	fs.BoolVar(&o.etcdTLS, "etcd-tls", true, "etcd with mutual TLS on client and peer URLs, as shoal (and kind's etcd) run")
	fs.StringVar(&o.etcdBin, "etcd", "/usr/bin/etcd", "path of the etcd 3.4 binary")
	fs.StringVar(&o.profileDir, "profile", "", "run the shoal agents in this program with net/http/pprof and write CPU profiles of the leader here")
	fs.StringVar(&o.dir, "dir", os.TempDir(), "parent of the temporary directory holding every data directory (put it on the disk to measure)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data and logs) after the run")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 90*time.Second, "deadline for each cluster to come up")
	systems := fs.String("systems", "", "measure only these (comma-separated): shoal-spread, shoal-leader, etcd3-spread, etcd3-leader, etcd1; default all")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, f := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("-clients: %q is not a number of clients", f)
		}
		o.clients = append(o.clients, n)
	}
	if *systems != "" {
		o.systems = map[string]bool{}
		for _, k := range splitList(*systems) {
			switch k {
			case "shoal-spread", "shoal-leader", "etcd3-spread", "etcd3-leader", "etcd1":
				o.systems[k] = true
			default:
				return nil, fmt.Errorf("-systems: unknown %q", k)
			}
		}
	}
	o.shoalAddrs = splitList(*shoalAddrs)
	o.etcd3Addrs = splitList(*etcd3Addrs)
	switch {
	case len(o.shoalAddrs) != 3:
		return nil, errors.New("-shoal-addrs: give 3 addresses")
	case len(o.etcd3Addrs) != 3:
		return nil, errors.New("-etcd3-addrs: give 3 addresses")
	case o.duration <= 0 || o.rounds < 1 || o.maxWrites < 1 || o.valueSize < 64:
		return nil, errors.New("-duration, -rounds, -max-writes must be positive and -value-size at least 64")
	case o.failoverClients < 2:
		return nil, errors.New("-failover-clients: at least 2 (one per follower)")
	}
	if o.profileDir == "" {
		if _, err := os.Stat(o.shoalBin); err != nil {
			return nil, fmt.Errorf("-shoal: %w (build it with `go build -o bin/shoal ./cmd/shoal`)", err)
		}
	}
	if _, err := os.Stat(o.etcdBin); err != nil {
		return nil, fmt.Errorf("-etcd: %w (apt-get install etcd-server)", err)
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
