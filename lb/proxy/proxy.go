// Package proxy is the userspace dataplane of lb: a TCP and UDP proxy that
// listens on each service port's virtual IP and node ports and forwards
// every connection (or UDP flow) to a ready endpoint. It serves hosts
// without nftables, and balancing the kernel cannot do (least connections).
//
// Endpoints see connections coming from the node, not from the client:
// the proxy opens a connection of its own to them.
//
// Sockets belong to the network namespace of the thread that makes them:
// listeners are made by Sync's caller, dials to endpoints by any thread of
// the process. The proxy is meant for the process's own namespace (the
// agent's is the host's).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoalproj/shoal/lb"
)

const (
	defaultDialTimeout    = 2 * time.Second
	defaultUDPIdleTimeout = 30 * time.Second
	// defaultMaxUDPSessions bounds the sessions (and sockets) of one UDP
	// listener, so a flood of client ports cannot exhaust descriptors.
	defaultMaxUDPSessions = 16384
	// defaultMaxAffinity bounds the clients remembered per service port.
	defaultMaxAffinity = 16384
	// udpBufSize holds the largest UDP datagram.
	udpBufSize = 65535
)

// Config configures a Proxy.
type Config struct {
	// Balance is how an endpoint is chosen: lb.RoundRobin (the default),
	// lb.Random or lb.LeastConn.
	Balance lb.Balance
	// Link, when set (the agent uses "shoal-lb0"), is a dummy link the
	// proxy creates (up) and puts each service's virtual IP on as a /32
	// (/128), so the virtual IP is a local address of the node and pods
	// reach it through their default route to the node. "": the proxy
	// only listens, on addresses that must already be local.
	Link string
	// NodePortAddrs are where node ports listen; empty: every IPv4
	// address (0.0.0.0).
	NodePortAddrs []netip.Addr
	// DialTimeout bounds each dial of an endpoint; default 2s.
	DialTimeout time.Duration
	// UDPIdleTimeout is how long a UDP flow's session lives without a
	// packet either way; default 30s.
	UDPIdleTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer, when set, registers the proxy's metrics (and Close
	// unregisters them).
	Registerer prometheus.Registerer
}

// Proxy is the userspace dataplane. It implements lb.Dataplane.
type Proxy struct {
	env       *env
	reg       prometheus.Registerer
	link      *vipLink     // nil when Config.Link is ""
	nodeAddrs []netip.Addr // where node ports listen

	mu     sync.Mutex // serialises Sync and Close
	ports  map[string]*servicePort
	closed bool
}

var _ lb.Dataplane = (*Proxy)(nil)

// env is what every listener of one proxy shares.
type env struct {
	log         *slog.Logger
	metrics     *metrics
	balance     lb.Balance
	dialTimeout time.Duration
	udpIdle     time.Duration
	maxSessions int
	maxAffinity int
	now         func() time.Time // for the pickers
	intn        func(int) int
	start       time.Time // origin of the UDP sessions' idle clocks
	bufs        sync.Pool // of *[]byte of udpBufSize, for datagrams from endpoints
}

// servicePort is one running service port: its picker and its listeners
// (the virtual IP's and the node ports'), by address.
type servicePort struct {
	id        string
	proto     lb.Protocol
	picker    *picker
	listeners map[netip.AddrPort]listener
}

// listener is a TCP or UDP listener with the connections it accepted.
type listener interface {
	// stop closes the listener and every connection it accepted, and
	// returns when none of its goroutines is left.
	stop()
}

// New makes a proxy with nothing to serve yet and, when cfg.Link is set,
// creates that link.
func New(cfg Config) (*Proxy, error) {
	switch cfg.Balance {
	case "":
		cfg.Balance = lb.RoundRobin
	case lb.RoundRobin, lb.Random, lb.LeastConn:
	default:
		return nil, fmt.Errorf("proxy: balance %q: want %s, %s or %s", cfg.Balance, lb.RoundRobin, lb.Random, lb.LeastConn)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.UDPIdleTimeout <= 0 {
		cfg.UDPIdleTimeout = defaultUDPIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for i, a := range cfg.NodePortAddrs {
		if !a.IsValid() {
			return nil, fmt.Errorf("proxy: NodePortAddrs[%d]: invalid address", i)
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	e := &env{
		log:         cfg.Logger,
		metrics:     m,
		balance:     cfg.Balance,
		dialTimeout: cfg.DialTimeout,
		udpIdle:     cfg.UDPIdleTimeout,
		maxSessions: defaultMaxUDPSessions,
		maxAffinity: defaultMaxAffinity,
		now:         time.Now,
		intn:        rand.IntN,
		start:       time.Now(),
	}
	e.bufs.New = func() any { b := make([]byte, udpBufSize); return &b }
	p := &Proxy{env: e, reg: cfg.Registerer, ports: map[string]*servicePort{}}
	for _, a := range cfg.NodePortAddrs {
		p.nodeAddrs = append(p.nodeAddrs, a.Unmap())
	}
	if len(p.nodeAddrs) == 0 {
		p.nodeAddrs = []netip.Addr{netip.IPv4Unspecified()}
	}
	if cfg.Link != "" {
		if p.link, err = openLink(cfg.Link); err != nil {
			p.unregister()
			return nil, err
		}
	}
	return p, nil
}

// wantPort is one service port as Sync is asked for it.
type wantPort struct {
	id        string
	proto     lb.Protocol
	addrs     []netip.AddrPort // where to listen
	endpoints []netip.AddrPort
	affinity  time.Duration
}

// Sync makes the running listeners those of services: new ports start
// listening, ports no longer there stop (their connections close), and
// changed endpoints or affinity apply to new connections only. A port
// that cannot listen (its address in use, say) is reported in the error
// and tried again by the next Sync; the other ports are synced anyway.
func (p *Proxy) Sync(ctx context.Context, services []lb.Service) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: sync after close")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("proxy: sync: %w", err)
	}
	want, vips, errs := p.desired(services)

	// A listener on a virtual IP needs the address to be local first.
	if p.link != nil {
		if err := p.link.add(vips); err != nil {
			errs = append(errs, err)
		}
	}
	// Stop what is no longer wanted before starting anything, so an
	// address that moves from one port to another is free to take.
	for _, id := range slices.Sorted(maps.Keys(p.ports)) {
		sp := p.ports[id]
		w, ok := want[id]
		for _, addr := range slices.SortedFunc(maps.Keys(sp.listeners), netip.AddrPort.Compare) {
			if !ok || !slices.Contains(w.addrs, addr) {
				sp.listeners[addr].stop()
				delete(sp.listeners, addr)
				p.env.log.Info("stopped listening", "port", id, "addr", addr)
			}
		}
		if !ok {
			delete(p.ports, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		w := want[id]
		sp := p.ports[id]
		if sp == nil {
			sp = &servicePort{
				id:        id,
				proto:     w.proto,
				picker:    newPicker(p.env.balance, p.env.now, p.env.intn, p.env.maxAffinity),
				listeners: map[netip.AddrPort]listener{},
			}
			p.ports[id] = sp
		}
		sp.picker.set(w.endpoints, w.affinity)
		for _, addr := range w.addrs {
			if _, ok := sp.listeners[addr]; ok {
				continue
			}
			l, err := p.listen(ctx, sp, addr)
			if err != nil {
				errs = append(errs, fmt.Errorf("proxy: listen %s %s for %s: %w", w.proto, addr, id, err))
				continue
			}
			sp.listeners[addr] = l
			p.env.log.Info("listening", "port", id, "addr", addr, "endpoints", len(w.endpoints))
		}
	}
	if p.link != nil {
		if err := p.link.prune(vips); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// desired turns services into the ports to run, by ID, and the virtual
// IPs to put on the link. A port it cannot run is an error, not a panic
// or a silent skip.
func (p *Proxy) desired(services []lb.Service) (map[string]*wantPort, map[netip.Addr]bool, []error) {
	want := map[string]*wantPort{}
	vips := map[netip.Addr]bool{}
	var errs []error
	for i := range services {
		s := &services[i]
		for _, port := range s.Ports {
			id := s.PortID(port)
			if port.Protocol != lb.TCP && port.Protocol != lb.UDP {
				errs = append(errs, fmt.Errorf("proxy: %s: protocol %q not supported", id, port.Protocol))
				continue
			}
			if _, dup := want[id]; dup {
				errs = append(errs, fmt.Errorf("proxy: %s: given twice, the first kept", id))
				continue
			}
			w := &wantPort{id: id, proto: port.Protocol, endpoints: port.Endpoints, affinity: s.Affinity}
			if s.ClusterIP.IsValid() && port.Port != 0 {
				vip := s.ClusterIP.Unmap()
				w.addrs = append(w.addrs, netip.AddrPortFrom(vip, port.Port))
				vips[vip] = true
			}
			if port.NodePort != 0 {
				for _, a := range p.nodeAddrs {
					w.addrs = append(w.addrs, netip.AddrPortFrom(a, port.NodePort))
				}
			}
			want[id] = w
		}
	}
	return want, vips, errs
}

func (p *Proxy) listen(ctx context.Context, sp *servicePort, addr netip.AddrPort) (listener, error) {
	if sp.proto == lb.UDP {
		return listenUDP(ctx, p.env, sp.id, sp.picker, addr)
	}
	return listenTCP(ctx, p.env, sp.id, sp.picker, addr)
}

// Close stops every listener and connection and removes the link. The
// proxy cannot be synced again.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	for _, sp := range p.ports {
		for _, l := range sp.listeners {
			l.stop()
		}
	}
	p.ports = nil
	var err error
	if p.link != nil {
		err = p.link.remove()
	}
	p.unregister()
	return err
}

// unregister takes the metrics back from the registerer, so a proxy made
// again registers without conflict.
func (p *Proxy) unregister() {
	if p.reg == nil {
		return
	}
	for _, c := range p.env.metrics.collectors() {
		p.reg.Unregister(c)
	}
}

// network is the Go network name for proto on addr's family, so that
// 0.0.0.0 means IPv4 only rather than Go's dual-stack wildcard.
func network(proto lb.Protocol, addr netip.Addr) string {
	n := "tcp"
	if proto == lb.UDP {
		n = "udp"
	}
	if addr.Is4() {
		return n + "4"
	}
	return n + "6"
}
