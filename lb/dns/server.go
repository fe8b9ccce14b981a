// Package dns is the DNS server every node runs for service names, the
// way Kubernetes' cluster DNS answers them: NAME.NS.svc.DOMAIN is the
// service's ClusterIP, _PORT._PROTO.NAME.NS.svc.DOMAIN its named ports
// (SRV), the ClusterIP's reverse name points back (PTR), and any other
// name is forwarded to the node's own resolvers. Pods get it as their
// nameserver through ResolvConf.
//
// Not served: headless services (a service without a ClusterIP has a
// name with no address: NODATA), pod names, and the zone's NS record.
// A namespace's name (NS.svc.DOMAIN) exists only while it holds a
// service, as the server knows nothing else about namespaces.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoalproj/shoal/lb"
)

const (
	// DefaultDomain is the cluster domain when Config.Domain is empty.
	DefaultDomain = "cluster.local"
	// DefaultTTL is the records' TTL when Config.TTL is 0: short, since
	// a service's address can change at any Set and nothing flushes the
	// clients' caches.
	DefaultTTL = 5
	// DefaultForwardTimeout bounds one try of one upstream. Below the 5 s
	// after which glibc and musl resend, so that a dead first upstream
	// still leaves time to ask the next.
	DefaultForwardTimeout = 2 * time.Second
	// maxUDPReply caps a reply over UDP whatever buffer the client
	// offers: 1232 bytes fit in any path's MTU without IP fragmentation
	// (DNS Flag Day 2020); larger answers go over TCP.
	maxUDPReply = 1232
	// shutdownTimeout bounds how long Serve waits, once its context has
	// ended, for queries in progress to be answered.
	shutdownTimeout = 5 * time.Second
)

// Config configures a Server. The zero value serves cluster.local and
// forwards to the resolvers of /etc/resolv.conf.
type Config struct {
	// Domain is the cluster domain, DefaultDomain when empty.
	Domain string
	// Upstreams answer the names outside the domain: host:port, or an
	// address alone for port 53. Nil means the nameservers of
	// /etc/resolv.conf, loopback ones included (the agent runs in the
	// host's network namespace, where a local stub such as
	// systemd-resolved's 127.0.0.53 answers). A non-nil empty list means
	// none: those names get REFUSED.
	Upstreams []string
	// TTL of every record and of negative answers, DefaultTTL when 0.
	TTL uint32
	// ForwardTimeout bounds one try of one upstream,
	// DefaultForwardTimeout when 0.
	ForwardTimeout time.Duration
	// Logger receives the server's logs; slog.Default() when nil.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Server answers for the services last given to Set. It is safe for
// concurrent use.
type Server struct {
	origin         string
	ttl            uint32
	upstreams      []string
	forwardTimeout time.Duration
	log            *slog.Logger
	metrics        metrics

	// zone is swapped whole by Set and read by every query without a lock.
	zone atomic.Pointer[zone]
	// setMu orders concurrent Sets, so that the last one called is the
	// one stored and serials only grow.
	setMu  sync.Mutex
	serial uint32
}

type metrics struct {
	queries        *prometheus.CounterVec
	forwardSeconds *prometheus.HistogramVec
	forwardErrors  *prometheus.CounterVec
}

// New checks cfg and returns a Server with no services yet.
func New(cfg Config) (*Server, error) {
	origin, err := normaliseDomain(cfg.Domain)
	if err != nil {
		return nil, err
	}
	s := &Server{
		origin:         origin,
		ttl:            cfg.TTL,
		forwardTimeout: cfg.ForwardTimeout,
		log:            cfg.Logger,
	}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.forwardTimeout <= 0 {
		s.forwardTimeout = DefaultForwardTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if cfg.Upstreams == nil {
		ups, err := upstreamsFromResolvConf(resolvConfPath)
		if err != nil {
			// The service names still work; say why the others do not.
			s.log.Warn("dns: no upstream resolvers, names outside the cluster domain will be refused", "domain", origin, "err", err)
		}
		s.upstreams = ups
	} else {
		for _, u := range cfg.Upstreams {
			hp, err := normaliseUpstream(u)
			if err != nil {
				return nil, err
			}
			s.upstreams = append(s.upstreams, hp)
		}
	}
	s.metrics = metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_dns_queries_total",
			Help: "DNS queries answered, by where the answer came from (local: the service records; forward: an upstream resolver) and response code.",
		}, []string{"source", "rcode"}),
		forwardSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_dns_forward_seconds",
			Help:    "Time of one forwarded query to one upstream resolver, failed tries included, by transport (udp, tcp).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"transport"}),
		forwardErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_dns_forward_errors_total",
			Help: "Forwarded queries an upstream resolver did not answer (timeout, connection error, or SERVFAIL/REFUSED), by upstream.",
		}, []string{"upstream"}),
	}
	if reg := cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{s.metrics.queries, s.metrics.forwardSeconds, s.metrics.forwardErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("dns: register metrics: %w", err)
			}
		}
	}
	s.serial = 1
	z, _ := buildZone(origin, s.ttl, s.serial, nil)
	s.zone.Store(z)
	return s, nil
}

// Upstreams returns the resolvers names outside the domain are forwarded
// to, in the order they are tried.
func (s *Server) Upstreams() []string { return append([]string(nil), s.upstreams...) }

// Set replaces the records with those of services. The queries in
// progress finish with the previous records; the next ones see these.
func (s *Server) Set(services []lb.Service) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.serial++
	z, err := buildZone(s.origin, s.ttl, s.serial, services)
	if err != nil {
		s.log.Warn("dns: some services have no records", "err", err)
	}
	s.zone.Store(z)
}

// Serve answers over UDP and TCP on each host:port until ctx ends, then
// returns nil. It binds every socket before serving and returns a bind
// error at once. The sockets are bound with IP_FREEBIND, so an address
// not assigned yet (the pod bridge's gateway, before the first pod) can be
// given: the server answers once the address appears. A port of 0 picks
// one port for both transports.
func (s *Server) Serve(ctx context.Context, addrs ...string) error {
	if len(addrs) == 0 {
		return errors.New("dns: serve: no address to listen on")
	}
	h := &handler{s: s, ctx: ctx}
	var servers []*dns.Server
	closeAll := func() {
		for _, srv := range servers {
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				srv.Listener.Close()
			}
		}
	}
	for _, addr := range addrs {
		pc, ln, err := listen(ctx, addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("dns: serve on %s: %w", addr, err)
		}
		servers = append(servers,
			&dns.Server{PacketConn: pc, Handler: h, UDPSize: dns.DefaultMsgSize},
			&dns.Server{Listener: ln, Handler: h})
	}
	for _, srv := range servers {
		s.log.Info("dns: serving", "addr", serverAddr(srv), "domain", s.origin)
	}

	// A dns.Server refuses to shut down before it has marked itself
	// started, so each one's start is awaited before stopping it.
	errc := make(chan error, len(servers))
	started := make([]chan struct{}, len(servers))
	stopped := make([]chan struct{}, len(servers))
	for i, srv := range servers {
		started[i], stopped[i] = make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started[i]) }
		go func() {
			defer close(stopped[i])
			if err := srv.ActivateAndServe(); err != nil {
				errc <- fmt.Errorf("dns: serve on %s: %w", serverAddr(srv), err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for i, srv := range servers {
		select {
		case <-started[i]:
			if serr := srv.ShutdownContext(sctx); serr != nil {
				s.log.Warn("dns: shut down", "addr", serverAddr(srv), "err", serr)
			}
		case <-stopped[i]:
		}
		<-stopped[i]
	}
	return err
}

// serverAddr names the address srv listens on, for messages.
func serverAddr(srv *dns.Server) string {
	if srv.PacketConn != nil {
		return srv.PacketConn.LocalAddr().String() + "/udp"
	}
	return srv.Listener.Addr().String() + "/tcp"
}

// handler answers one query: from the records when the name is ours,
// from an upstream otherwise. ctx is Serve's, so that forwards in progress
// stop with it.
type handler struct {
	s   *Server
	ctx context.Context
}

func (h *handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s := h.s
	transport := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		transport = "tcp"
	}
	source := "local"
	resp := s.zone.Load().answer(req)
	if resp != nil {
		resp.RecursionAvailable = len(s.upstreams) > 0
		if req.IsEdns0() != nil {
			// RFC 6891: an EDNS query gets an EDNS reply; advertise
			// what the server itself accepts over UDP.
			resp.SetEdns0(dns.DefaultMsgSize, false)
		}
	} else if len(s.upstreams) == 0 {
		resp = new(dns.Msg).SetRcode(req, dns.RcodeRefused)
	} else {
		source = "forward"
		resp = s.forward(h.ctx, req, transport, w.LocalAddr())
	}
	if transport == "udp" {
		// Sets TC when records had to be left out, so that the client
		// asks again over TCP.
		resp.Truncate(udpReplySize(req))
	} else {
		resp.Compress = true
	}
	// Counted before the reply leaves, so that a client that has its
	// answer finds it counted.
	s.metrics.queries.WithLabelValues(source, dns.RcodeToString[resp.Rcode]).Inc()
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns: write reply", "client", w.RemoteAddr().String(), "transport", transport, "err", err)
	}
}

// udpReplySize is how large a UDP reply to req may be: what the client
// says it can take (512 without EDNS), at most maxUDPReply.
func udpReplySize(req *dns.Msg) int {
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
		size = int(opt.UDPSize())
	}
	return min(size, maxUDPReply)
}

// forward asks the upstreams in turn, over the transport the query came
// on, and returns the first real answer: an upstream that fails, times
// out or answers SERVFAIL/REFUSED (it cannot or will not resolve) makes
// way for the next. When none answers, the client gets the last
// upstream's refusal or a SERVFAIL.
func (s *Server) forward(ctx context.Context, req *dns.Msg, transport string, local net.Addr) *dns.Msg {
	q := req.Copy()
	// A fresh ID per forward: the client's is not ours to reuse upstream.
	q.Id = dns.Id()
	c := &dns.Client{
		Net:     transport,
		Timeout: s.forwardTimeout,
		// Without EDNS the client library reads 512 bytes; take whatever
		// the upstream sends and truncate it for the client ourselves.
		UDPSize: dns.MaxMsgSize,
	}
	var last *dns.Msg
	for _, up := range s.upstreams {
		if isSelf(up, local) {
			// /etc/resolv.conf may name this very server: asking it
			// would loop.
			continue
		}
		start := time.Now()
		r, _, err := c.ExchangeContext(ctx, q, up)
		s.metrics.forwardSeconds.WithLabelValues(transport).Observe(time.Since(start).Seconds())
		if err == nil && r.Rcode != dns.RcodeServerFailure && r.Rcode != dns.RcodeRefused {
			r.Id = req.Id
			return r
		}
		s.metrics.forwardErrors.WithLabelValues(up).Inc()
		if err != nil {
			s.log.Debug("dns: forward", "upstream", up, "transport", transport, "name", req.Question[0].Name, "err", err)
			continue
		}
		last = r
	}
	if ctx.Err() != nil || last == nil {
		return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	}
	last.Id = req.Id
	return last
}

// isSelf reports whether upstream is the address the query arrived on.
func isSelf(upstream string, local net.Addr) bool {
	up, err := netip.ParseAddrPort(upstream)
	if err != nil {
		return false
	}
	var l netip.AddrPort
	switch a := local.(type) {
	case *net.UDPAddr:
		l = a.AddrPort()
	case *net.TCPAddr:
		l = a.AddrPort()
	default:
		return false
	}
	return up.Addr().Unmap() == l.Addr().Unmap() && up.Port() == l.Port()
}
