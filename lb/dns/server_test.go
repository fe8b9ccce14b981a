package dns_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoalproj/shoal/lb"
	shoaldns "github.com/shoalproj/shoal/lb/dns"
)

const (
	ioTimeout = 5 * time.Second
	// pollEvery paces the readiness polls: Serve gives no signal that it
	// has bound, so the tests ask until it answers.
	pollEvery = 10 * time.Millisecond
)

var webService = lb.Service{
	Namespace: "default", Name: "web",
	ClusterIP: netip.MustParseAddr("10.96.0.10"),
	Ports:     []lb.Port{{Name: "http", Protocol: lb.TCP, Port: 80}},
}

// freeAddr returns ip:port with a port free for both UDP and TCP.
func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("find a free port on %s: %v", ip, err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatalf("no port on %s free for both UDP and TCP", ip)
	return ""
}

func newServer(t *testing.T, cfg shoaldns.Config) *shoaldns.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := shoaldns.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// serve runs s.Serve on addrs until the test ends and returns once every
// address answers over UDP and TCP.
func serve(t *testing.T, s *shoaldns.Server, addrs ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, addrs...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(ioTimeout):
			t.Error("Serve did not return after its context ended")
		}
	})
	for _, addr := range addrs {
		for _, network := range []string{"udp", "tcp"} {
			waitServing(t, network, addr, done)
		}
	}
}

// waitServing polls addr until it answers the SOA of cluster.local, Serve
// returns, or the deadline passes.
func waitServing(t *testing.T, network, addr string, done chan error) {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 200 * time.Millisecond}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	deadline := time.After(ioTimeout)
	for {
		m := new(dns.Msg).SetQuestion("cluster.local.", dns.TypeSOA)
		r, _, err := c.Exchange(m, addr)
		if err == nil && r.Rcode == dns.RcodeSuccess {
			return
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("Serve returned before answering on %s/%s: %v", addr, network, err)
		case <-deadline:
			t.Fatalf("%s/%s: no answer within %v: last error %v", addr, network, ioTimeout, err)
		case <-tick.C:
		}
	}
}

// ask sends one query; edns, when not 0, is the buffer size advertised
// in an OPT record.
func ask(t *testing.T, network, addr, name string, qtype, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	if edns != 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: ioTimeout}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s to %s: %v", name, dns.TypeToString[qtype], network, addr, err)
	}
	return r
}

// fakeUpstream is a resolver the tests forward to: it answers
// example.com. with one address, big.example. with 40 (more than 512
// bytes, sent whole even over UDP), fail.example. with SERVFAIL, and
// anything else with NXDOMAIN. It remembers the transport of each query.
type fakeUpstream struct {
	addr string
	mu   sync.Mutex
	seen []string // "udp example.com."
}

func newFakeUpstream(t *testing.T, ip string) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{addr: freeAddr(t, ip)}
	pc, err := net.ListenPacket("udp", u.addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", u.addr)
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	// Bound already, so queries queue until the servers read them: no
	// need to wait for them to start.
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			srv.ActivateAndServe()
		}()
		t.Cleanup(func() {
			select {
			case <-started:
				srv.Shutdown()
			case <-stopped:
			}
			<-stopped
		})
	}
	return u
}

func (u *fakeUpstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	u.mu.Lock()
	u.seen = append(u.seen, w.LocalAddr().Network()+" "+q.Name)
	u.mu.Unlock()
	m := new(dns.Msg).SetReply(req)
	m.RecursionAvailable = true
	a := func(i int) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: net.IPv4(192, 0, 2, byte(i))}
	}
	switch strings.ToLower(q.Name) {
	case "example.com.":
		m.Answer = []dns.RR{a(1)}
	case "big.example.":
		for i := 1; i <= 40; i++ {
			m.Answer = append(m.Answer, a(i))
		}
		m.Compress = true
	case "fail.example.":
		m.Rcode = dns.RcodeServerFailure
	default:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

func (u *fakeUpstream) queries() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// metric returns the value of the counter name with labels in reg, 0
// when there is none.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
		}
	}
	return 0
}

func TestServeAnswersOverUDPAndTCP(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newServer(t, shoaldns.Config{Upstreams: []string{}, Registerer: reg})
	s.Set([]lb.Service{webService})
	addr := freeAddr(t, "127.0.53.1")
	serve(t, s, addr)

	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, network, addr, "web.default.svc.cluster.local.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
			t.Fatalf("%s: A: %v", network, r)
		}
		if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != "10.96.0.10" || a.Hdr.Ttl != shoaldns.DefaultTTL {
			t.Errorf("%s: A answer %v, want 10.96.0.10 with TTL %d", network, r.Answer[0], shoaldns.DefaultTTL)
		}
		if r.RecursionAvailable {
			t.Errorf("%s: RA set without upstreams", network)
		}

		r = ask(t, network, addr, "_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, 0)
		if len(r.Answer) != 1 || len(r.Extra) != 1 || r.Answer[0].(*dns.SRV).Port != 80 {
			t.Errorf("%s: SRV: %v", network, r)
		}

		r = ask(t, network, addr, "10.0.96.10.in-addr.arpa.", dns.TypePTR, 0)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "web.default.svc.cluster.local." {
			t.Errorf("%s: PTR: %v", network, r)
		}

		r = ask(t, network, addr, "nope.default.svc.cluster.local.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
			t.Errorf("%s: NXDOMAIN: %v", network, r)
		}

		// An EDNS query gets an EDNS reply.
		r = ask(t, network, addr, "web.default.svc.cluster.local.", dns.TypeA, 1232)
		if r.IsEdns0() == nil || len(r.Answer) != 1 {
			t.Errorf("%s: EDNS query: %v", network, r)
		}

		// Without upstreams, the rest of the world is refused.
		r = ask(t, network, addr, "example.com.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeRefused {
			t.Errorf("%s: example.com without upstreams: rcode %s, want REFUSED", network, dns.RcodeToString[r.Rcode])
		}
	}
	if got := metric(t, reg, "shoal_dns_queries_total", map[string]string{"source": "local", "rcode": "NOERROR"}); got < 8 {
		t.Errorf("local NOERROR queries counted %v, want at least 8", got)
	}
	if got := metric(t, reg, "shoal_dns_queries_total", map[string]string{"source": "local", "rcode": "REFUSED"}); got != 2 {
		t.Errorf("REFUSED queries counted %v, want 2", got)
	}

	// Set swaps the records for the next queries.
	s.Set([]lb.Service{{Namespace: "default", Name: "web", ClusterIP: netip.MustParseAddr("10.96.0.99")}})
	r := ask(t, "udp", addr, "web.default.svc.cluster.local.", dns.TypeA, 0)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.0.99" {
		t.Errorf("after Set: %v", r)
	}
	s.Set(nil)
	r = ask(t, "udp", addr, "web.default.svc.cluster.local.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("after Set(nil): %v", r)
	}
}

func TestServeSeveralAddresses(t *testing.T) {
	s := newServer(t, shoaldns.Config{Upstreams: []string{}})
	s.Set([]lb.Service{webService})
	a1, a2 := freeAddr(t, "127.0.53.2"), freeAddr(t, "127.0.53.3")
	serve(t, s, a1, a2)
	for _, addr := range []string{a1, a2} {
		if r := ask(t, "udp", addr, "web.default.svc.cluster.local.", dns.TypeA, 0); len(r.Answer) != 1 {
			t.Errorf("%s: %v", addr, r)
		}
	}
}

func TestServeForwards(t *testing.T) {
	up := newFakeUpstream(t, "127.0.53.11")
	// Nothing listens on dead: the forwarder must move on to up.
	dead := freeAddr(t, "127.0.53.12")
	reg := prometheus.NewRegistry()
	s := newServer(t, shoaldns.Config{Upstreams: []string{dead, up.addr}, Registerer: reg})
	s.Set([]lb.Service{webService})
	addr := freeAddr(t, "127.0.53.10")
	serve(t, s, addr)

	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, network, addr, "example.com.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Fatalf("%s: forwarded example.com: %v", network, r)
		}
		if r.Authoritative {
			t.Errorf("%s: forwarded answer claims authority", network)
		}
		r = ask(t, network, addr, "missing.example.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: upstream NXDOMAIN came back as %s", network, dns.RcodeToString[r.Rcode])
		}
		r = ask(t, network, addr, "fail.example.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: upstream SERVFAIL came back as %s", network, dns.RcodeToString[r.Rcode])
		}
		// Local answers say recursion is available.
		if r := ask(t, network, addr, "web.default.svc.cluster.local.", dns.TypeA, 0); !r.RecursionAvailable {
			t.Errorf("%s: RA not set with upstreams", network)
		}
	}
	// The cluster's names never go upstream; the rest went over the
	// transport it came on.
	want := []string{"udp example.com.", "udp missing.example.", "udp fail.example.",
		"tcp example.com.", "tcp missing.example.", "tcp fail.example."}
	if got := up.queries(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("upstream saw %q, want %q", got, want)
	}
	if got := metric(t, reg, "shoal_dns_queries_total", map[string]string{"source": "forward", "rcode": "NOERROR"}); got != 2 {
		t.Errorf("forwarded NOERROR counted %v, want 2", got)
	}
	if got := metric(t, reg, "shoal_dns_forward_errors_total", map[string]string{"upstream": dead}); got != 6 {
		t.Errorf("errors of the dead upstream counted %v, want 6", got)
	}
	if got := metric(t, reg, "shoal_dns_forward_seconds", map[string]string{"transport": "tcp"}); got == 0 {
		t.Error("no forward latency observed over tcp")
	}
}

func TestServeForwardTimesOut(t *testing.T) {
	up := newFakeUpstream(t, "127.0.53.21")
	// A black hole: bound, never answers (UDP: nobody reads; TCP: the
	// kernel accepts, nobody reads).
	hole := freeAddr(t, "127.0.53.22")
	pc, err := net.ListenPacket("udp", hole)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ln, err := net.Listen("tcp", hole)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })

	s := newServer(t, shoaldns.Config{Upstreams: []string{hole, up.addr}, ForwardTimeout: 200 * time.Millisecond})
	addr := freeAddr(t, "127.0.53.20")
	serve(t, s, addr)
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		r := ask(t, network, addr, "example.com.", dns.TypeA, 0)
		if len(r.Answer) != 1 {
			t.Errorf("%s: %v", network, r)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: answered after %v: the timeout of the first upstream was not applied", network, d)
		}
	}
}

func TestServeTruncatesOverUDP(t *testing.T) {
	up := newFakeUpstream(t, "127.0.53.31")
	s := newServer(t, shoaldns.Config{Upstreams: []string{up.addr}})
	// 40 services on one ClusterIP make a big local answer: 40 PTRs.
	var services []lb.Service
	for i := range 40 {
		services = append(services, lb.Service{Namespace: "default", Name: fmt.Sprintf("alias-%02d", i),
			ClusterIP: netip.MustParseAddr("10.96.7.7")})
	}
	s.Set(services)
	addr := freeAddr(t, "127.0.53.30")
	serve(t, s, addr)

	for _, tt := range []struct{ what, name string }{
		{"forwarded", "big.example."},
		{"local", "7.7.96.10.in-addr.arpa."},
	} {
		qtype := dns.TypeA
		if tt.what == "local" {
			qtype = dns.TypePTR
		}
		r := ask(t, "udp", addr, tt.name, qtype, 0)
		if !r.Truncated || len(r.Answer) >= 40 {
			t.Errorf("%s over UDP without EDNS: TC %v with %d answers, want TC and fewer than 40", tt.what, r.Truncated, len(r.Answer))
		}
		r.Compress = true // as it came on the wire
		if n := r.Len(); n > dns.MinMsgSize {
			t.Errorf("%s over UDP without EDNS: %d bytes, want at most 512", tt.what, n)
		}
		r = ask(t, "tcp", addr, tt.name, qtype, 0)
		if r.Truncated || len(r.Answer) != 40 {
			t.Errorf("%s over TCP: TC %v with %d answers, want all 40", tt.what, r.Truncated, len(r.Answer))
		}
		r = ask(t, "udp", addr, tt.name, qtype, 4096)
		if r.Truncated || len(r.Answer) != 40 {
			t.Errorf("%s over UDP with a 4096-byte EDNS buffer: TC %v with %d answers, want all 40", tt.what, r.Truncated, len(r.Answer))
		}
	}
}

func TestServeBindError(t *testing.T) {
	for _, tt := range []struct {
		name string
		take func(addr string) (func() error, error)
	}{
		{"udp taken", func(addr string) (func() error, error) {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return nil, err
			}
			return pc.Close, nil
		}},
		{"tcp taken", func(addr string) (func() error, error) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return nil, err
			}
			return ln.Close, nil
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			free, taken := freeAddr(t, "127.0.53.40"), freeAddr(t, "127.0.53.41")
			release, err := tt.take(taken)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { release() })
			s := newServer(t, shoaldns.Config{Upstreams: []string{}})
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			err = s.Serve(ctx, free, taken)
			if err == nil {
				t.Fatal("Serve on a taken port returned nil")
			}
			if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), taken) {
				t.Errorf("error %q: want EADDRINUSE naming %s", err, taken)
			}
			if ctx.Err() != nil {
				t.Error("Serve waited for its context instead of returning the bind error")
			}
			// What Serve bound before failing is released.
			pc, err := net.ListenPacket("udp", free)
			if err != nil {
				t.Fatalf("the first address stayed bound: %v", err)
			}
			pc.Close()
			ln, err := net.Listen("tcp", free)
			if err != nil {
				t.Fatalf("the first address stayed bound: %v", err)
			}
			ln.Close()
		})
	}
}

func TestServeNoAddress(t *testing.T) {
	s := newServer(t, shoaldns.Config{Upstreams: []string{}})
	if err := s.Serve(context.Background()); err == nil {
		t.Error("Serve with no address returned nil")
	}
	if err := s.Serve(context.Background(), "no-port"); err == nil {
		t.Error("Serve on an address without a port returned nil")
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, cfg := range []shoaldns.Config{
		{Domain: "bad_domain.local", Upstreams: []string{}},
		{Upstreams: []string{"1.1.1.1:notaport"}},
		{Upstreams: []string{"1.1.1.1:0"}},
		{Upstreams: []string{":53"}},
	} {
		if _, err := shoaldns.New(cfg); err == nil {
			t.Errorf("New(%+v) returned no error", cfg)
		}
	}
	s := newServer(t, shoaldns.Config{Upstreams: []string{"192.0.2.53", "[2001:db8::53]:5353", "dns.example:53"}})
	want := "192.0.2.53:53,[2001:db8::53]:5353,dns.example:53"
	if got := strings.Join(s.Upstreams(), ","); got != want {
		t.Errorf("Upstreams() = %s, want %s", got, want)
	}
	// Registering twice on one registry is an error, not a panic.
	reg := prometheus.NewRegistry()
	newServer(t, shoaldns.Config{Upstreams: []string{}, Registerer: reg})
	if _, err := shoaldns.New(shoaldns.Config{Upstreams: []string{}, Registerer: reg}); err == nil {
		t.Error("second New on one registry returned no error")
	}
}

func TestResolvConf(t *testing.T) {
	got := string(shoaldns.ResolvConf(netip.MustParseAddr("10.244.7.1"), "shop", ""))
	want := "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.7.1\noptions ndots:5\n"
	if got != want {
		t.Errorf("ResolvConf:\n%s\nwant:\n%s", got, want)
	}
	got = string(shoaldns.ResolvConf(netip.MustParseAddr("::ffff:10.0.0.1"), "default", "Corp.Example."))
	want = "search default.svc.corp.example svc.corp.example corp.example\nnameserver 10.0.0.1\noptions ndots:5\n"
	if got != want {
		t.Errorf("ResolvConf with a domain:\n%s\nwant:\n%s", got, want)
	}
}
