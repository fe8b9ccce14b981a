// Package cluster is one node's membership in a shoal cluster: gossip, the
// raft group and its replicated store, joining, the cluster CA, forwarding
// of writes to the leader, and the API that answers on every node.
package cluster

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoalproj/shoal/cluster/storepb"
	"github.com/shoalproj/shoal/scheduler"
)

// Default ports, as DESIGN.md lists them.
const (
	DefaultAPIPort    = 7443
	DefaultGossipPort = 7946
	DefaultRaftPort   = 7947

	DefaultPodCIDR     = "10.244.0.0/16"
	DefaultServiceCIDR = "10.96.0.0/16"
)

// Config says how to start this node.
type Config struct {
	DataDir string
	// NodeName defaults to the host name; a joining node whose default name
	// is taken gets a suffix.
	NodeName string
	// AdvertiseAddr is the IP other nodes reach this one at; when empty the
	// first private address of this host.
	AdvertiseAddr string
	// BindAddr is the IP the listeners bind; defaults to AdvertiseAddr.
	BindAddr   string
	APIPort    int
	GossipPort int
	RaftPort   int

	// Init creates a new cluster; Join (host:port of any node's API) with
	// Token joins one. Neither: restart from the data directory.
	Init  bool
	Join  string
	Token string

	// ForceNewCluster makes a node restarting from its data directory the
	// only voter of its cluster, keeping all the data its raft log and
	// snapshots hold: for a survivor of a lost majority. One-shot: see
	// forceNewCluster in recovery.go.
	ForceNewCluster bool

	// MaxReplicas bounds the nodes that hold the raft log (voters and
	// non-voters); default 9.
	MaxReplicas int
	// Stabilization is how long a voter must be gone before it is
	// replaced; default 10 s.
	Stabilization time.Duration

	// PodCIDR and ServiceCIDR are chosen at --init for the whole cluster
	// (defaults 10.244.0.0/16 and 10.96.0.0/16); later starts ignore them.
	PodCIDR     string
	ServiceCIDR string
	// NodePortRange is where NodePort services get their ports, chosen at
	// --init (default 30000-32767).
	NodePortRange string

	// MaxReadStaleness bounds how long a replica answers default reads
	// without hearing from the leader (DefaultMaxReadStaleness when 0;
	// negative: no bound).
	MaxReadStaleness time.Duration

	// TrailingLogs is how many raft entries stay after a snapshot compacts
	// the log (default 10240); a follower further behind gets the snapshot.
	TrailingLogs uint64

	// NodeCertValidity is the lifetime of the node certificates this node
	// signs while it leads (default 365 days). CertRenewFraction is the
	// share of its own certificate's lifetime after which this node renews
	// it (default 2/3). Tests use seconds.
	NodeCertValidity  time.Duration
	CertRenewFraction float64

	// Controllers tunes the scheduler and the controllers this node runs
	// while it leads.
	Controllers scheduler.Config

	Version  string
	Logger   *slog.Logger
	Registry *prometheus.Registry
}

func (c *Config) setDefaults() {
	if c.APIPort == 0 {
		c.APIPort = DefaultAPIPort
	}
	if c.GossipPort == 0 {
		c.GossipPort = DefaultGossipPort
	}
	if c.RaftPort == 0 {
		c.RaftPort = DefaultRaftPort
	}
	if c.MaxReplicas == 0 {
		c.MaxReplicas = 9
	}
	if c.Stabilization == 0 {
		c.Stabilization = 10 * time.Second
	}
	if c.PodCIDR == "" {
		c.PodCIDR = DefaultPodCIDR
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = DefaultServiceCIDR
	}
	if c.NodePortRange == "" {
		c.NodePortRange = DefaultNodePortRange
	}
	if c.MaxReadStaleness == 0 {
		c.MaxReadStaleness = DefaultMaxReadStaleness
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.NodeCertValidity == 0 {
		c.NodeCertValidity = DefaultNodeCertValidity
	}
	if c.CertRenewFraction == 0 {
		c.CertRenewFraction = DefaultCertRenewFraction
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// identity is what a node keeps in its data directory to restart as itself.
type identity struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	ClusterID     string `json:"clusterID"`
	AdvertiseAddr string `json:"advertiseAddr"`
	BindAddr      string `json:"bindAddr"`
	APIPort       int    `json:"apiPort"`
	GossipPort    int    `json:"gossipPort"`
	RaftPort      int    `json:"raftPort"`
}

func (id identity) apiAddr() string {
	return net.JoinHostPort(id.AdvertiseAddr, strconv.Itoa(id.APIPort))
}
func (id identity) raftAddr() string {
	return net.JoinHostPort(id.AdvertiseAddr, strconv.Itoa(id.RaftPort))
}

// InitResult is what --init hands to the operator.
type InitResult struct {
	Token      string
	AdminCert  []byte
	AdminKey   []byte
	CACert     []byte
	APIAddress string
}

// Cluster is this node's part in the cluster.
type Cluster struct {
	cfg     Config
	log     *slog.Logger
	id      identity
	creds   NodeCredentials
	state   *State
	raft    *raftNode
	members *membership
	metrics *metrics
	// controllerMetrics are the leader controllers' series, registered once
	// and shared by every leadership term.
	controllerMetrics *scheduler.Metrics
	// unreachable are the servers this leader's raft fails to heartbeat
	// (guarded by mu): never promoted, whatever gossip says.
	unreachable map[string]bool

	proposals chan *proposal
	peers     *peerClients
	localAPI  *apiServer
	replica   readReplica

	apiListener net.Listener

	mu          sync.Mutex
	leaderReady bool // this node leads and has committed an entry of its term
	leaderSince time.Time

	podIO PodIO // this node's agent, for Logs and Exec

	sec   security   // live certificate and revocation list (rotate.go, revoke.go)
	fence fenceState // set once the cluster removed this node (fence.go)

	initResult     *InitResult
	pendingSecrets *storepb.ClusterSecrets // --init: written once this node leads

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start brings this node into its cluster: it creates one (--init), joins
// one (--join), or restarts from the data directory.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg.setDefaults()
	if cfg.DataDir == "" {
		return nil, errors.New("data directory required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, state: NewState(), proposals: make(chan *proposal, 4096)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.metrics = newMetrics(cfg.Registry, c)
	c.controllerMetrics = scheduler.NewMetrics(cfg.Registry)
	c.localAPI = &apiServer{c: c}

	id, existing, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	bootstrap := false
	switch {
	case existing:
		if cfg.Init || cfg.Join != "" {
			c.log.Warn("data directory already holds a node; --init/--join ignored, restarting as that node", "dir", cfg.DataDir, "node", id.Name)
		}
		c.id = id
		if c.creds, err = loadCredentials(cfg.DataDir); err != nil {
			return nil, err
		}
		if cfg.ForceNewCluster {
			if err := c.forceNewCluster(); err != nil {
				return nil, err
			}
		}
	case cfg.ForceNewCluster:
		return nil, fmt.Errorf("--force-new-cluster: %s holds no node to recover: run it with the data directory of a surviving node", cfg.DataDir)
	case cfg.Init:
		if _, err := checkPodCIDR(cfg.PodCIDR); err != nil {
			return nil, fmt.Errorf("--pod-cidr: %w", err)
		}
		if p, err := netip.ParsePrefix(cfg.ServiceCIDR); err != nil || !p.Addr().Is4() || p.Masked() != p {
			return nil, fmt.Errorf("--service-cidr %q: want an IPv4 CIDR such as %s", cfg.ServiceCIDR, DefaultServiceCIDR)
		}
		if _, err := parsePortRange(cfg.NodePortRange); err != nil {
			return nil, fmt.Errorf("--node-port-range %w", err)
		}
		// No node.json: anything else here is a start of --init that did
		// not finish. Begin again.
		for _, name := range []string{"raft", "tls", "gossip.key", "peers.json"} {
			if err := os.RemoveAll(filepath.Join(cfg.DataDir, name)); err != nil {
				return nil, fmt.Errorf("clear unfinished init: %w", err)
			}
		}
		if err := c.initCluster(); err != nil {
			return nil, err
		}
		bootstrap = true
	case cfg.Join != "":
		if err := c.joinCluster(ctx); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s holds no node: start with --init to create a cluster or --join HOST:PORT --token TOKEN to join one", cfg.DataDir)
	}

	fail := func(err error) (*Cluster, error) {
		c.Close()
		return nil, err
	}
	if err := c.setupSecurity(); err != nil {
		return fail(err)
	}
	c.refuseDroppedPeers()
	c.peers = newPeerClients(c.creds)
	if err := c.listenAPI(); err != nil {
		return fail(err)
	}
	gossipKey, err := os.ReadFile(filepath.Join(cfg.DataDir, "gossip.key"))
	if err != nil {
		return fail(fmt.Errorf("gossip key: %w", err))
	}

	f := &fsm{state: c.state}
	raftAdv, err := net.ResolveTCPAddr("tcp", c.id.raftAddr())
	if err != nil {
		return fail(fmt.Errorf("raft address: %w", err))
	}
	c.raft, err = openRaft(filepath.Join(cfg.DataDir, "raft"), c.id.ID,
		net.JoinHostPort(c.id.BindAddr, strconv.Itoa(c.id.RaftPort)), raftAdv, c.creds, f, bootstrap, cfg.TrailingLogs, c.log)
	if err != nil {
		c.raft = nil
		return fail(err)
	}
	c.members, err = startMembership(membershipConfig{
		NodeID:        c.id.ID,
		Meta:          memberMeta{Name: c.id.Name, API: c.id.apiAddr(), Raft: c.id.raftAddr()},
		BindAddr:      c.id.BindAddr,
		BindPort:      c.id.GossipPort,
		AdvertiseAddr: c.id.AdvertiseAddr,
		AdvertisePort: c.id.GossipPort,
		Key:           gossipKey,
		Revoked:       c.sec.live.nodeRevoked,
	}, c.log)
	if err != nil {
		c.members = nil
		return fail(err)
	}

	c.wg.Add(6)
	go func() { defer c.wg.Done(); c.fenceLoop(c.ctx) }()
	go func() { defer c.wg.Done(); c.heartbeatLoop(c.ctx) }()
	go func() { defer c.wg.Done(); c.batchLoop(c.ctx) }()
	go func() { defer c.wg.Done(); c.roleLoop(c.ctx) }()
	go func() { defer c.wg.Done(); c.leadershipLoop(c.ctx) }()
	go func() { defer c.wg.Done(); c.gossipJoinLoop(c.ctx) }()
	c.startSecurityLoops()

	if cfg.Init && !existing {
		if err := c.finishInit(ctx); err != nil {
			return fail(err)
		}
	}
	c.log.Info("node started", "node", c.id.Name, "id", c.id.ID, "api", c.id.apiAddr())
	return c, nil
}

// NodeName is this node's name.
func (c *Cluster) NodeName() string { return c.id.Name }

// APIAddress is host:port of this node's API as others reach it.
func (c *Cluster) APIAddress() string { return c.id.apiAddr() }

// State is this node's replica of the store.
func (c *Cluster) State() *State { return c.state }

// InitResult is set on the node that created the cluster, on its first start.
func (c *Cluster) InitResult() *InitResult { return c.initResult }

// Close stops this node's part in the cluster (it stays a member: a
// restart with the same data directory brings it back).
func (c *Cluster) Close() error {
	c.cancel()
	c.wg.Wait()
	var errs []error
	if c.members != nil {
		errs = append(errs, c.members.shutdown())
	}
	if c.raft != nil {
		errs = append(errs, c.raft.close())
	}
	c.peers.close()
	if c.apiListener != nil {
		c.apiListener.Close() // already closed when ServeAPI ran
	}
	return errors.Join(errs...)
}

// ---------------------------------------------------------------- identity

func loadIdentity(dir string) (identity, bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "node.json"))
	if errors.Is(err, os.ErrNotExist) {
		return identity{}, false, nil
	}
	if err != nil {
		return identity{}, false, fmt.Errorf("node identity: %w", err)
	}
	var id identity
	if err := json.Unmarshal(data, &id); err != nil {
		return identity{}, false, fmt.Errorf("node identity %s: %w", filepath.Join(dir, "node.json"), err)
	}
	return id, true, nil
}

func saveIdentity(dir string, id identity) error {
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	return WriteSecretFile(filepath.Join(dir, "node.json"), data)
}

func loadCredentials(dir string) (NodeCredentials, error) {
	var c NodeCredentials
	if err := finishCertRenewal(dir); err != nil {
		return c, err
	}
	var err error
	read := func(name string) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		b, err = os.ReadFile(filepath.Join(dir, "tls", name))
		return b
	}
	c.CertPEM, c.KeyPEM, c.CAPEM = read("node.crt"), read("node.key"), read("ca.crt")
	if err != nil {
		return c, fmt.Errorf("node credentials: %w", err)
	}
	return c, nil
}

func saveCredentials(dir string, c NodeCredentials, gossipKey []byte) error {
	for name, data := range map[string][]byte{
		"tls/node.crt": c.CertPEM, "tls/node.key": c.KeyPEM, "tls/ca.crt": c.CAPEM, "gossip.key": gossipKey,
	} {
		if err := WriteSecretFile(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// resolveAddresses fills the advertise and bind addresses and the node name.
func (c *Cluster) newIdentity() (identity, error) {
	adv := c.cfg.AdvertiseAddr
	if adv == "" {
		var err error
		if adv, err = defaultAdvertiseAddr(); err != nil {
			return identity{}, err
		}
	}
	if net.ParseIP(adv) == nil {
		return identity{}, fmt.Errorf("--advertise-addr %q is not an IP address", adv)
	}
	bind := c.cfg.BindAddr
	if bind == "" {
		bind = adv
	}
	if net.ParseIP(bind) == nil {
		return identity{}, fmt.Errorf("--bind-addr %q is not an IP address", bind)
	}
	name := c.cfg.NodeName
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return identity{}, fmt.Errorf("node name: %w", err)
		}
		// Node names are DNS names: host names are case-insensitive.
		name = strings.ToLower(h)
	}
	return identity{
		ID: uuid.NewString(), Name: name, AdvertiseAddr: adv, BindAddr: bind,
		APIPort: c.cfg.APIPort, GossipPort: c.cfg.GossipPort, RaftPort: c.cfg.RaftPort,
	}, nil
}

func (c *Cluster) certIPs() []net.IP {
	ips := []net.IP{net.ParseIP(c.id.AdvertiseAddr)}
	if c.id.BindAddr != c.id.AdvertiseAddr {
		ips = append(ips, net.ParseIP(c.id.BindAddr))
	}
	return ips
}

// initCluster creates the cluster's CA, secrets and this node's credentials.
func (c *Cluster) initCluster() error {
	id, err := c.newIdentity()
	if err != nil {
		return err
	}
	id.ClusterID = uuid.NewString()
	c.id = id
	ca, err := NewCA(id.ClusterID)
	if err != nil {
		return err
	}
	keyPEM, csrPEM, err := NewNodeKey(id.Name, c.certIPs())
	if err != nil {
		return err
	}
	certPEM, err := ca.SignNodeID(csrPEM, id.ID, id.Name, c.certIPs(), c.cfg.NodeCertValidity)
	if err != nil {
		return err
	}
	gossipKey, err := NewGossipKey()
	if err != nil {
		return err
	}
	secret, err := NewJoinSecret()
	if err != nil {
		return err
	}
	c.creds = NodeCredentials{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
	if err := saveCredentials(c.cfg.DataDir, c.creds, gossipKey); err != nil {
		return err
	}
	adminCert, adminKey, err := ca.IssueAdmin("admin", adminCertValidity)
	if err != nil {
		return err
	}
	c.initResult = &InitResult{
		Token:      JoinToken{Fingerprint: Fingerprint(ca.Cert.Raw), Secret: secret}.String(),
		AdminCert:  adminCert,
		AdminKey:   adminKey,
		CACert:     ca.CertPEM,
		APIAddress: id.apiAddr(),
	}
	c.pendingSecrets = &storepb.ClusterSecrets{
		ClusterId: id.ClusterID, CaCert: ca.CertPEM, CaKey: ca.KeyPEM, JoinSecret: secret, GossipKey: gossipKey,
	}
	// node.json is written by finishInit, once the secrets are committed:
	// a data directory with node.json is a complete node.
	return nil
}

// finishInit waits for this node to lead its new one-node cluster and
// writes the cluster secrets as the first entry.
func (c *Cluster) finishInit(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !c.isLeaderReady() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("new cluster: this node did not become leader: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	res, err := c.propose(ctx, &storepb.Txn{
		SetSecrets: c.pendingSecrets,
		SetSettings: &storepb.ClusterSettings{PodCidr: c.cfg.PodCIDR, ServiceCidr: c.cfg.ServiceCIDR, NodePortRange: c.cfg.NodePortRange,
			SchedulingStrategy: string(c.cfg.Controllers.Strategy)},
		TimeUnixNano: time.Now().UnixNano(),
	})
	if err != nil {
		return fmt.Errorf("new cluster: store secrets: %w", err)
	}
	if res.Code != 0 {
		return fmt.Errorf("new cluster: store secrets: %s", res.Message)
	}
	c.pendingSecrets = nil
	return saveIdentity(c.cfg.DataDir, c.id)
}

// promoteAfter is how long a non-voter must have been up before it is made
// a voter: long enough that a node flapping at start is not promoted.
const promoteAfter = 2 * time.Second

// adminCertValidity is the lifetime of the admin certificate --init issues
// (node certificates: Config.NodeCertValidity, renewed by rotate.go).
const adminCertValidity = 365 * 24 * time.Hour

// caFromState loads the CA from the replicated secrets (only replicas have
// them).
func (c *Cluster) caFromState() (*CA, *storepb.ClusterSecrets, error) {
	sec := c.state.Secrets()
	if sec == nil {
		return nil, nil, errors.New("this node holds no cluster secrets yet")
	}
	ca, err := LoadCA(sec.CaCert, sec.CaKey)
	if err != nil {
		return nil, nil, err
	}
	return ca, sec, nil
}

// tokenFrom builds the join token from the current secrets.
func tokenFrom(sec *storepb.ClusterSecrets) (string, error) {
	block, _ := pem.Decode(sec.CaCert)
	if block == nil {
		return "", errors.New("cluster CA certificate is not PEM")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return "", fmt.Errorf("cluster CA certificate: %w", err)
	}
	return JoinToken{Fingerprint: Fingerprint(block.Bytes), Secret: sec.JoinSecret}.String(), nil
}

// ---------------------------------------------------------------- gossip

type peersFile struct {
	Gossip []string `json:"gossip"`
}

func (c *Cluster) savePeers(addrs []string) {
	data, _ := json.Marshal(peersFile{Gossip: addrs})
	if err := WriteSecretFile(filepath.Join(c.cfg.DataDir, "peers.json"), data); err != nil {
		c.log.Warn("save gossip peers", "err", err)
	}
}

func (c *Cluster) loadPeers() []string {
	data, err := os.ReadFile(filepath.Join(c.cfg.DataDir, "peers.json"))
	if err != nil {
		return nil
	}
	var p peersFile
	_ = json.Unmarshal(data, &p)
	return p.Gossip
}

// gossipJoinLoop joins the known peers until one answers, then keeps the
// list of peers on disk for the next start.
func (c *Cluster) gossipJoinLoop(ctx context.Context) {
	self := net.JoinHostPort(c.id.AdvertiseAddr, strconv.Itoa(c.id.GossipPort))
	joined := false
	saved := ""
	backoff := 200 * time.Millisecond
	for {
		if !joined {
			var peers []string
			for _, p := range c.loadPeers() {
				if p != self {
					peers = append(peers, p)
				}
			}
			if len(peers) == 0 {
				joined = true
			} else if n, err := c.members.join(peers); err == nil && n > 0 {
				joined = true
			} else {
				c.log.Debug("gossip join", "peers", peers, "err", err)
			}
		}
		var addrs []string
		for _, m := range c.members.Members() {
			if m.Alive {
				addrs = append(addrs, m.Gossip)
			}
		}
		if len(addrs) > 1 && strings.Join(addrs, ",") != saved {
			c.savePeers(addrs)
			saved = strings.Join(addrs, ",")
		}
		wait := 5 * time.Second
		if !joined {
			wait = backoff
			backoff = min(backoff*2, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.members.Changed():
		case <-time.After(wait):
		}
	}
}

// ---------------------------------------------------------------- leadership

func (c *Cluster) isLeader() bool {
	return c.raft.raft.State() == raft.Leader
}

func (c *Cluster) isLeaderReady() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leaderReady && c.isLeader()
}

// leaderAPI returns the API address of the current leader, or "".
func (c *Cluster) leaderAPI() string {
	// A node outside the replicas has no current raft view of its own.
	if addr := c.replica.leaderAPI(); addr != "" {
		return addr
	}
	_, id := c.raft.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	if string(id) == c.id.ID {
		return c.id.apiAddr()
	}
	if m, ok := c.members.Member(string(id)); ok {
		return m.Meta.API
	}
	return ""
}

// leadershipLoop runs the leader's duties while this node leads, and stops
// them the moment it does not.
func (c *Cluster) leadershipLoop(ctx context.Context) {
	var duties *leaderDuties
	stopDuties := func() {
		if duties != nil {
			duties.stop()
			duties = nil
		}
		c.mu.Lock()
		c.leaderReady = false
		c.mu.Unlock()
	}
	defer stopDuties()
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-c.raft.raft.LeaderCh():
			stopDuties()
			if leader {
				duties = c.startLeaderDuties(ctx)
			}
		}
	}
}

// leaderDuties is the running leader work of one term.
type leaderDuties struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *leaderDuties) stop() {
	d.cancel()
	<-d.done
}

func (c *Cluster) startLeaderDuties(ctx context.Context) *leaderDuties {
	lctx, cancel := context.WithCancel(ctx)
	d := &leaderDuties{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		c.runLeader(lctx)
	}()
	return d
}

// runLeader is the leader's work: make sure the log of the previous terms
// is applied, then keep raft membership and Node objects in line with
// gossip.
func (c *Cluster) runLeader(ctx context.Context) {
	c.log.Info("this node is the leader", "node", c.id.Name)
	for {
		if err := c.raft.raft.Barrier(5 * time.Second).Error(); err == nil {
			break
		} else if !c.isLeader() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.mu.Lock()
	c.leaderReady = true
	c.leaderSince = time.Now()
	c.unreachable = map[string]bool{} // this term's replication reports afresh
	c.mu.Unlock()
	if c.state.Settings() == nil && c.state.Secrets() != nil {
		// A cluster created before settings existed: the defaults.
		_, _ = c.propose(ctx, &storepb.Txn{TimeUnixNano: time.Now().UnixNano(),
			SetSettings: &storepb.ClusterSettings{PodCidr: DefaultPodCIDR, ServiceCidr: DefaultServiceCIDR}})
	}
	c.revokeDroppedPeers(ctx)
	// The controllers stop with this term: runLeader returns only once
	// they have.
	var controllers sync.WaitGroup
	controllers.Add(1)
	go func() {
		defer controllers.Done()
		cfg := c.cfg.Controllers
		cfg.Metrics = c.controllerMetrics
		// The strategy is the cluster's, chosen at --init.
		cfg.StrategyOf = func() scheduler.Strategy {
			return scheduler.Strategy(c.state.Settings().GetSchedulingStrategy())
		}
		scheduler.Run(ctx, controllerStore{c}, cfg, c.log.With("component", "controllers"))
	}()
	defer controllers.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		c.reconcileRaftMembership()
		c.reconcileNodes(ctx)
		c.markVanishedNodes(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.members.Changed():
		}
	}
}

// raftServers returns the current raft configuration.
func (c *Cluster) raftServers() ([]raftServer, error) {
	f := c.raft.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []raftServer
	for _, s := range f.Configuration().Servers {
		out = append(out, raftServer{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// heartbeatLoop follows raft's heartbeats to each peer while this node
// leads. Gossip takes a few seconds to call a node dead; a non-voter that
// died in that window must not be promoted: from one voter to two, a dead
// second voter leaves no majority, and no leader to undo it.
func (c *Cluster) heartbeatLoop(ctx context.Context) {
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	c.raft.raft.RegisterObserver(obs)
	defer c.raft.raft.DeregisterObserver(obs)
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			c.mu.Lock()
			if c.unreachable == nil {
				c.unreachable = map[string]bool{}
			}
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				c.unreachable[string(d.PeerID)] = true
			case raft.ResumedHeartbeatObservation:
				delete(c.unreachable, string(d.PeerID))
			}
			c.mu.Unlock()
		}
	}
}

func (c *Cluster) reconcileRaftMembership() {
	servers, err := c.raftServers()
	if err != nil {
		c.log.Warn("raft configuration", "err", err)
		return
	}
	c.mu.Lock()
	since := c.leaderSince
	unreachable := make(map[string]bool, len(c.unreachable))
	for id := range c.unreachable {
		unreachable[id] = true
	}
	c.mu.Unlock()
	changes := planRaftMembership(autopilotInput{
		Servers:       servers,
		Members:       c.members.Members(),
		LeaderID:      c.id.ID,
		LeaderSince:   since,
		Unreachable:   unreachable,
		Now:           time.Now(),
		Stabilization: c.cfg.Stabilization,
		PromoteAfter:  promoteAfter,
		MaxReplicas:   c.cfg.MaxReplicas,
	})
	r := c.raft.raft
	for _, ch := range changes {
		var f raft.IndexFuture
		switch ch.Op {
		case "add-nonvoter":
			f = r.AddNonvoter(raft.ServerID(ch.ID), raft.ServerAddress(ch.Address), 0, 5*time.Second)
		case "demote":
			f = r.DemoteVoter(raft.ServerID(ch.ID), 0, 5*time.Second)
		case "promote":
			f = r.AddVoter(raft.ServerID(ch.ID), raft.ServerAddress(ch.Address), 0, 5*time.Second)
		case "remove":
			f = r.RemoveServer(raft.ServerID(ch.ID), 0, 5*time.Second)
		}
		if err := f.Error(); err != nil {
			c.log.Warn("raft membership change failed", "op", ch.Op, "node", ch.ID, "err", err)
			return
		}
		if ch.Op == "add-nonvoter" || ch.Op == "remove" {
			// A new replication to it reports failures afresh (and a
			// resumption only after a failure of its own).
			c.mu.Lock()
			delete(c.unreachable, ch.ID)
			c.mu.Unlock()
		}
		c.log.Info("raft membership changed", "op", ch.Op, "node", ch.ID)
		c.metrics.membershipChanges.WithLabelValues(ch.Op).Inc()
	}
}
