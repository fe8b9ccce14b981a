package cluster

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberMeta is all a node gossips about itself: who it is and where to
// reach it. Everything else about a node lives in the store. memberlist
// refuses metadata over 512 bytes; this stays far below.
type memberMeta struct {
	Name string `json:"n"`
	API  string `json:"a"` // host:port of the API
	Raft string `json:"r"` // host:port of raft
}

// Member is one node as gossip sees it.
type Member struct {
	ID     string
	Meta   memberMeta
	Gossip string // host:port
	Alive  bool
	// Since is when Alive last changed (or when the member was first seen).
	Since time.Time
}

// membership runs memberlist and keeps the last known state of every node
// it has seen, dead ones included, so the leader can tell how long a node
// has been gone.
type membership struct {
	ml      *memberlist.Memberlist
	log     *slog.Logger
	self    string
	revoked func(id string) bool // nodes removed from the cluster
	mu      sync.Mutex
	members map[string]*Member
	changed chan struct{} // signalled (never blocks) on every change
	// ignoredLogged is when ignoring each removed node was last logged.
	ignoredLogged map[string]time.Time

	stop     chan struct{} // closed by shutdown: ends reconnectLoop
	loopDone chan struct{}
}

type membershipConfig struct {
	NodeID        string
	Meta          memberMeta
	BindAddr      string
	BindPort      int
	AdvertiseAddr string
	AdvertisePort int
	Key           []byte // AES-256 gossip key
	// Revoked tells which node IDs were removed from the cluster: gossip
	// about them being alive is ignored, so they cannot come back.
	Revoked func(id string) bool
}

func startMembership(cfg membershipConfig, log *slog.Logger) (*membership, error) {
	m := &membership{log: log, self: cfg.NodeID, revoked: cfg.Revoked, members: map[string]*Member{}, changed: make(chan struct{}, 1)}
	if m.revoked == nil {
		m.revoked = func(string) bool { return false }
	}
	meta, err := json.Marshal(cfg.Meta)
	if err != nil {
		return nil, err
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip metadata is %d bytes, over memberlist's limit of %d", len(meta), memberlist.MetaMaxSize)
	}
	c := memberlist.DefaultLANConfig()
	c.Name = cfg.NodeID
	c.BindAddr = cfg.BindAddr
	c.BindPort = cfg.BindPort
	c.AdvertiseAddr = cfg.AdvertiseAddr
	c.AdvertisePort = cfg.AdvertisePort
	c.SecretKey = cfg.Key
	c.GossipVerifyIncoming = true
	c.GossipVerifyOutgoing = true
	c.Delegate = &metaDelegate{meta: meta}
	c.Events = &memberEvents{m: m}
	c.Alive = &aliveFilter{m: m}
	c.LogOutput = memberlistLogWriter{log: log}
	// Notice a dead node within a few seconds on a LAN.
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 250 * time.Millisecond
	c.SuspicionMult = 3
	c.GossipInterval = 100 * time.Millisecond
	// A push-pull or fallback probe to a node that does not answer gives
	// up after this; also bounds each reconnect attempt.
	c.TCPTimeout = 3 * time.Second
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("gossip on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	m.ml = ml
	m.stop = make(chan struct{})
	m.loopDone = make(chan struct{})
	go m.reconnectLoop()
	return m, nil
}

// Reconnect back-off: a dead member is contacted again after
// reconnectMin, doubling up to reconnectMax while it stays away.
const (
	reconnectMin = time.Second
	reconnectMax = 30 * time.Second
)

// reconnectLoop heals partitions. memberlist stops talking to a member it
// declared dead, so two sides of a healed partition that each think the
// other dead would never meet again; like Serf, each node keeps trying
// to join the dead members it knows, with back-off, until they are alive
// or removed (node rm forgets them).
func (m *membership) reconnectLoop() {
	defer close(m.loopDone)
	next := map[string]time.Time{}
	backoff := map[string]time.Duration{}
	tick := time.NewTicker(reconnectMin / 2)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		for _, mem := range m.Members() {
			if mem.Alive {
				delete(next, mem.ID)
				delete(backoff, mem.ID)
				continue
			}
			if t, ok := next[mem.ID]; ok && now.Before(t) {
				continue
			}
			d := backoff[mem.ID]
			d = min(max(2*d, reconnectMin), reconnectMax)
			backoff[mem.ID], next[mem.ID] = d, now.Add(d)
			if _, err := m.ml.Join([]string{mem.Gossip}); err == nil {
				m.log.Info("gossip: reconnected to a node seen dead", "node", mem.Meta.Name, "addr", mem.Gossip)
			}
			select {
			case <-m.stop:
				return
			default:
			}
		}
		// Forget the back-off of members no longer known.
		for id := range next {
			if _, ok := m.Member(id); !ok {
				delete(next, id)
				delete(backoff, id)
			}
		}
	}
}

// join contacts the given gossip addresses; it succeeds when one answers.
func (m *membership) join(peers []string) (int, error) {
	if len(peers) == 0 {
		return 0, nil
	}
	return m.ml.Join(peers)
}

// Members returns every node seen, dead ones included, sorted by ID.
func (m *membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, *mem)
	}
	sortMembers(out)
	return out
}

// Member returns one node's state.
func (m *membership) Member(id string) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[id]
	if !ok {
		return Member{}, false
	}
	return *mem, true
}

// forget drops a node removed from the cluster.
func (m *membership) forget(id string) {
	m.mu.Lock()
	delete(m.members, id)
	m.mu.Unlock()
}

// Changed is signalled whenever a member joins, leaves, dies or changes.
func (m *membership) Changed() <-chan struct{} { return m.changed }

func (m *membership) update(n *memberlist.Node, alive bool) {
	if n.Name != m.self && m.revoked(n.Name) {
		m.forget(n.Name)
		return
	}
	var meta memberMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		m.log.Warn("gossip metadata unreadable", "node", n.Name, "err", err)
		return
	}
	now := time.Now()
	m.mu.Lock()
	cur, ok := m.members[n.Name]
	if !ok {
		cur = &Member{ID: n.Name, Since: now}
		m.members[n.Name] = cur
	} else if cur.Alive != alive {
		cur.Since = now
	}
	cur.Meta = meta
	cur.Alive = alive
	cur.Gossip = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	m.mu.Unlock()
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

func (m *membership) shutdown() error {
	close(m.stop)
	err := m.ml.Shutdown()
	<-m.loopDone
	return err
}

type metaDelegate struct{ meta []byte }

func (d *metaDelegate) NodeMeta(limit int) []byte                  { return d.meta }
func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

// aliveFilter makes memberlist ignore a removed node's claims to be alive,
// whether it sends them itself (it still holds the gossip key) or another
// member passes them on.
type aliveFilter struct{ m *membership }

// revokedGossipLogEvery bounds how often ignoring one removed node is logged.
const revokedGossipLogEvery = 30 * time.Second

func (a *aliveFilter) NotifyAlive(n *memberlist.Node) error {
	if n.Name == a.m.self || !a.m.revoked(n.Name) {
		return nil
	}
	now := time.Now()
	a.m.mu.Lock()
	if a.m.ignoredLogged == nil {
		a.m.ignoredLogged = map[string]time.Time{}
	}
	last, seen := a.m.ignoredLogged[n.Name]
	logIt := !seen || now.Sub(last) >= revokedGossipLogEvery
	if logIt {
		a.m.ignoredLogged[n.Name] = now
	}
	a.m.mu.Unlock()
	if logIt {
		a.m.log.Warn("refused a revoked node", "where", "gossip", "id", n.Name, "addr", net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))))
	}
	return fmt.Errorf("node %s was %w", n.Name, ErrRevoked)
}

type memberEvents struct{ m *membership }

func (e *memberEvents) NotifyJoin(n *memberlist.Node)   { e.m.update(n, true) }
func (e *memberEvents) NotifyLeave(n *memberlist.Node)  { e.m.update(n, false) }
func (e *memberEvents) NotifyUpdate(n *memberlist.Node) { e.m.update(n, true) }

// memberlistLogWriter passes memberlist's warnings and errors to slog and
// drops its debug chatter.
type memberlistLogWriter struct{ log *slog.Logger }

func (w memberlistLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(line, "[DEBUG]"), strings.Contains(line, "[INFO]"),
		// aliveFilter logs these itself, once in a while.
		strings.Contains(line, ErrRevoked.Error()):
		w.log.Debug(line, "component", "gossip")
	case strings.Contains(line, "[ERR]"):
		w.log.Error(line, "component", "gossip")
	default:
		w.log.Warn(line, "component", "gossip")
	}
	return len(p), nil
}
