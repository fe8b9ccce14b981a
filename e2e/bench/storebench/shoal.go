package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/cluster"
)

// pprofPort is where agents run by -profile serve net/http/pprof, on their
// own address.
const pprofPort = 6060

// shoalNode is one agent of the benchmark cluster.
type shoalNode struct {
	name    string
	ip      string
	dataDir string
	proc    *proc
}

func (n *shoalNode) apiAddr() string {
	return net.JoinHostPort(n.ip, strconv.Itoa(cluster.DefaultAPIPort))
}

// shoalCluster is the 3-node loopback cluster.
type shoalCluster struct {
	nodes     []*shoalNode
	cfgPath   string
	tls       *tls.Config
	status    []*grpc.ClientConn // one per node, for queries
	profiling bool
	padKey    string
	padLen    int // bytes of padding that make an object valueSize bytes
}

// shoalPorts lists what the cluster will listen on, to check it is free.
func shoalPorts(ips []string, profiling bool) (tcp, udp []string) {
	for _, ip := range ips {
		for _, p := range []int{cluster.DefaultAPIPort, cluster.DefaultGossipPort, cluster.DefaultRaftPort} {
			tcp = append(tcp, net.JoinHostPort(ip, strconv.Itoa(p)))
		}
		if profiling {
			tcp = append(tcp, net.JoinHostPort(ip, strconv.Itoa(pprofPort)))
		}
		udp = append(udp, net.JoinHostPort(ip, strconv.Itoa(cluster.DefaultGossipPort)))
	}
	return tcp, udp
}

var tokenRE = regexp.MustCompile(`--token\s+(SHOAL-\S+)`)

// startShoal creates the cluster on the first address and joins the other
// two, then waits for three Ready voters.
func startShoal(ctx context.Context, ps *procs, o *options) (*shoalCluster, error) {
	sc := &shoalCluster{cfgPath: filepath.Join(ps.root, "shoal-client.yaml"), profiling: o.profileDir != ""}
	for i, ip := range o.shoalAddrs {
		sc.nodes = append(sc.nodes, &shoalNode{
			name:    fmt.Sprintf("bench-%d", i+1),
			ip:      ip,
			dataDir: filepath.Join(ps.root, fmt.Sprintf("shoal-%d", i+1)),
		})
	}
	env := []string{"SHOAL_CONFIG=" + sc.cfgPath}
	argv := func(n *shoalNode, extra ...string) []string {
		var a []string
		if sc.profiling {
			self, _ := os.Executable()
			a = []string{self, agentSubcommand, "--pprof-addr", net.JoinHostPort(n.ip, strconv.Itoa(pprofPort))}
		} else {
			a = []string{o.shoalBin, "agent"}
		}
		a = append(a, "--lb-mode", "none", "--advertise-addr", n.ip, "--data-dir", n.dataDir, "--node-name", n.name,
			"--api-port", strconv.Itoa(cluster.DefaultAPIPort),
			"--gossip-port", strconv.Itoa(cluster.DefaultGossipPort),
			"--raft-port", strconv.Itoa(cluster.DefaultRaftPort))
		return append(a, extra...)
	}
	deadline, cancel := context.WithTimeout(ctx, o.readyTimeout)
	defer cancel()

	// The first node: --init prints the join line.
	tokens := make(chan string, 1)
	watch := &lineWatcher{line: func(l string) {
		if m := tokenRE.FindStringSubmatch(l); m != nil {
			select {
			case tokens <- m[1]:
			default:
			}
		}
	}}
	first := sc.nodes[0]
	var err error
	if first.proc, err = ps.start("shoal-"+first.name, env, watch, argv(first, "--init")...); err != nil {
		return nil, err
	}
	var token string
	select {
	case token = <-tokens:
	case <-first.proc.done:
		return nil, fmt.Errorf("shoal %s exited during --init: %v", first.name, first.proc.err)
	case <-deadline.Done():
		return nil, fmt.Errorf("shoal %s printed no join line within %v", first.name, o.readyTimeout)
	}
	cfg, err := client.LoadConfig(sc.cfgPath)
	if err != nil {
		return nil, err
	}
	if sc.tls, err = cfg.TLSConfig(); err != nil {
		return nil, err
	}
	for _, n := range sc.nodes[1:] {
		if n.proc, err = ps.start("shoal-"+n.name, env, nil, argv(n, "--join", first.apiAddr(), "--token", token)...); err != nil {
			return nil, err
		}
	}
	for _, n := range sc.nodes {
		cc, err := sc.dial(n.apiAddr())
		if err != nil {
			return nil, err
		}
		sc.status = append(sc.status, cc)
	}
	if err := sc.waitReady(deadline, o.readyTimeout); err != nil {
		return nil, err
	}
	sc.sizeObjects(o.valueSize)
	return sc, nil
}

// dial opens a gRPC connection to one node's API with the admin
// credentials.
func (sc *shoalCluster) dial(addr string) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	t := sc.tls.Clone()
	t.ServerName = host
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(t)))
}

// waitReady waits for a leader and two voters, all Ready, as the Node
// objects say, and every node's API answering.
func (sc *shoalCluster) waitReady(ctx context.Context, limit time.Duration) error {
	last := "nothing yet"
	for {
		ok, seen := sc.readyOnce(ctx)
		if ok {
			return nil
		}
		last = seen
		for _, n := range sc.nodes {
			if n.proc.exited() {
				return fmt.Errorf("shoal %s exited: %v; last seen: %s", n.name, n.proc.err, last)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shoal cluster: no 3 Ready voters within %v; last seen: %s", limit, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (sc *shoalCluster) readyOnce(ctx context.Context) (bool, string) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	list, err := api.NewShoalClient(sc.status[0]).List(qctx, &api.ListRequest{Kind: "Node"})
	if err != nil {
		return false, "list nodes: " + err.Error()
	}
	var parts []string
	leaders, voters := 0, 0
	for _, o := range list.Items {
		n := o.GetNode()
		ready := "Unknown"
		for _, c := range n.GetStatus().GetConditions() {
			if c.GetType() == "Ready" {
				ready = c.GetStatus()
			}
		}
		role := n.GetStatus().GetRaftRole()
		parts = append(parts, fmt.Sprintf("%s=%s/Ready=%s", n.GetMetadata().GetName(), role, ready))
		if ready == "True" {
			switch role {
			case cluster.RoleLeader:
				leaders++
			case cluster.RoleVoter:
				voters++
			}
		}
	}
	sort.Strings(parts)
	seen := strings.Join(parts, " ")
	if seen == "" {
		seen = "no Node objects"
	}
	if leaders != 1 || voters != 2 {
		return false, seen
	}
	for i, cc := range sc.status {
		if _, err := api.NewShoalClient(cc).Version(qctx, &api.VersionRequest{}); err != nil {
			return false, fmt.Sprintf("%s; API of %s: %v", seen, sc.nodes[i].name, err)
		}
	}
	return true, seen
}

// leader returns the index of the node raft says leads, asking each live
// node until one knows.
func (sc *shoalCluster) leader(ctx context.Context) (int, error) {
	var errs []error
	for i, cc := range sc.status {
		if sc.nodes[i].proc.exited() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := api.NewShoalClient(cc).Version(qctx, &api.VersionRequest{})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for j, n := range sc.nodes {
			if n.name == v.GetLeader() {
				return j, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s knows no leader (%q)", sc.nodes[i].name, v.GetLeader()))
	}
	return -1, fmt.Errorf("shoal leader: %w", errors.Join(errs...))
}

// sizeObjects chooses the padding that makes one written Service
// valueSize bytes on the wire (in its Object envelope).
func (sc *shoalCluster) sizeObjects(valueSize int) {
	sc.padKey = "bench.shoal.dev/pad"
	sc.padLen = 0
	base := proto.Size(api.Wrap(benchService("bench-0-00-0000000", sc.padKey, "")))
	// An annotation entry costs its length plus a few bytes of framing;
	// grow the padding until the size is reached.
	for n := max(0, valueSize-base-8); n < valueSize; n++ {
		if proto.Size(api.Wrap(benchService("bench-0-00-0000000", sc.padKey, strings.Repeat("x", n)))) >= valueSize {
			sc.padLen = n
			return
		}
	}
}

// benchService is the object each write stores: a Service of one port,
// padded by an annotation.
func benchService(name, padKey, pad string) *api.Service {
	return &api.Service{
		Metadata: &api.ObjectMeta{Name: name, Annotations: map[string]string{padKey: pad}},
		Spec:     &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}},
	}
}

// padding is pad bytes whose first ones change with seq.
func padding(n int, seq uint64) string {
	s := strconv.FormatUint(seq, 36)
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat("x", n-len(s))
}

func (sc *shoalCluster) close() {
	for _, cc := range sc.status {
		cc.Close()
	}
}

// shoalWriter is one client with its own connection to one node.
type shoalWriter struct {
	sc   *shoalCluster
	conn *grpc.ClientConn
	cl   api.ShoalClient
}

func (sc *shoalCluster) newWriter(ctx context.Context, node int) (writer, error) {
	conn, err := sc.dial(sc.nodes[node].apiAddr())
	if err != nil {
		return nil, err
	}
	conn.Connect()
	w := &shoalWriter{sc: sc, conn: conn, cl: api.NewShoalClient(conn)}
	// Make the connection (TCP and TLS) before the clock runs.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := w.cl.Version(qctx, &api.VersionRequest{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", sc.nodes[node].name, err)
	}
	return w, nil
}

func (w *shoalWriter) write(ctx context.Context, key string, seq uint64) error {
	obj := benchService(key, w.sc.padKey, padding(w.sc.padLen, seq))
	_, err := w.cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(obj)}})
	return err
}

func (w *shoalWriter) close() { w.conn.Close() }

// raftStats are the leader's counters of raft entries proposed and their
// latency, from its /metrics.
type raftStats struct {
	entries    float64 // raft entries of writes
	writes     float64 // writes they carried
	applySum   float64 // seconds from proposing an entry to its being applied
	applyCount float64
}

func (a raftStats) sub(b raftStats) raftStats {
	return raftStats{a.entries - b.entries, a.writes - b.writes, a.applySum - b.applySum, a.applyCount - b.applyCount}
}

func (a *raftStats) add(b raftStats) {
	a.entries += b.entries
	a.writes += b.writes
	a.applySum += b.applySum
	a.applyCount += b.applyCount
}

// scrape reads the raft counters of one node's /metrics (HTTPS, admin
// certificate).
func (sc *shoalCluster) scrape(ctx context.Context, node int) (raftStats, error) {
	var st raftStats
	host := sc.nodes[node].ip
	t := sc.tls.Clone()
	t.ServerName = host
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: t}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+sc.nodes[node].apiAddr()+"/metrics", nil)
	if err != nil {
		return st, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("metrics of %s: %s", sc.nodes[node].name, resp.Status)
	}
	sc2 := bufio.NewScanner(resp.Body)
	sc2.Buffer(make([]byte, 64<<10), 1<<20)
	for sc2.Scan() {
		name, val, ok := strings.Cut(sc2.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "shoal_raft_entry_writes_count":
			st.entries = v
		case "shoal_raft_entry_writes_sum":
			st.writes = v
		case "shoal_raft_apply_seconds_sum":
			st.applySum = v
		case "shoal_raft_apply_seconds_count":
			st.applyCount = v
		}
	}
	return st, sc2.Err()
}
