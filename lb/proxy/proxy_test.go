package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/lb"
)

// The tests below run the proxy without a link, on loopback addresses:
// each test takes 127.x.y.z addresses of its own at random and ports the
// kernel says are free, so parallel runs do not meet. Backends answer
// with their own name.

const (
	ioTimeout   = 5 * time.Second
	waitTimeout = 10 * time.Second
)

// testIP is a loopback address for one test.
func testIP() netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
}

// freePort is a port nothing listens on at ip for proto.
func freePort(t testing.TB, proto lb.Protocol, ip netip.Addr) uint16 {
	t.Helper()
	return freePorts(t, proto, ip, 1)[0]
}

// freePorts are n different ports nothing listens on at ip for proto:
// the kernel's choices, all held until all are chosen.
func freePorts(t testing.TB, proto lb.Protocol, ip netip.Addr, n int) []uint16 {
	t.Helper()
	var ports []uint16
	for range n {
		var c io.Closer
		var port uint16
		if proto == lb.UDP {
			u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
			if err != nil {
				t.Fatalf("find a free UDP port on %s: %v", ip, err)
			}
			c, port = u, u.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		} else {
			l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
			if err != nil {
				t.Fatalf("find a free TCP port on %s: %v", ip, err)
			}
			c, port = l, l.Addr().(*net.TCPAddr).AddrPort().Port()
		}
		defer c.Close()
		ports = append(ports, port)
	}
	return ports
}

// tcpBackend serves TCP on 127.0.0.1 until the test ends: to each
// connection it writes its name and a newline, reads until the client
// half-closes, then writes "got N" (the bytes it read) and closes.
func tcpBackend(t testing.TB, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				if _, err := fmt.Fprintf(c, "%s\n", name); err != nil {
					return
				}
				n, err := io.Copy(io.Discard, c)
				if err != nil {
					return
				}
				fmt.Fprintf(c, "got %d\n", n)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// deadEndpoint is an address where nothing listens: dials are refused.
func deadEndpoint(t testing.TB) netip.AddrPort {
	ip := netip.MustParseAddr("127.0.0.1")
	return netip.AddrPortFrom(ip, freePort(t, lb.TCP, ip))
}

// udpBackend answers each datagram with "name:" and the datagram, until
// the test ends.
func udpBackend(t testing.TB, name string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, udpBufSize)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(append([]byte(name+":"), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// newProxy makes a proxy closed at the end of the test, with its metrics
// in a registry of its own.
func newProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		// Shown with -v or when the test fails.
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func mustSync(t testing.TB, p *Proxy, services ...lb.Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := p.Sync(ctx, services); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func service(name string, vip netip.Addr, ports ...lb.Port) lb.Service {
	return lb.Service{Namespace: "default", Name: name, ClusterIP: vip, Ports: ports}
}

func tcpPort(port uint16, eps ...netip.AddrPort) lb.Port {
	return lb.Port{Protocol: lb.TCP, Port: port, Endpoints: eps}
}

// conn is a client connection through the proxy.
type conn struct {
	*net.TCPConn
	r *bufio.Reader
}

// dial connects to addr, from the address from when valid.
func dial(addr netip.AddrPort, from netip.Addr) (*conn, error) {
	d := net.Dialer{Timeout: ioTimeout}
	if from.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
	}
	c, err := d.Dial("tcp4", addr.String())
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	return &conn{TCPConn: c.(*net.TCPConn), r: bufio.NewReader(c)}, nil
}

func (c *conn) line() (string, error) {
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

// hold dials addr and reads the backend's name, leaving the connection
// open until the test ends.
func hold(t testing.TB, addr netip.AddrPort) (*conn, string) {
	t.Helper()
	c, err := dial(addr, netip.Addr{})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	name, err := c.line()
	if err != nil {
		t.Fatalf("read the backend's name through %s: %v", addr, err)
	}
	c.SetDeadline(time.Time{})
	return c, name
}

// ask connects to addr from from (when valid) and returns the name of the
// backend that answered.
func ask(addr netip.AddrPort, from netip.Addr) (string, error) {
	c, err := dial(addr, from)
	if err != nil {
		return "", err
	}
	defer c.Close()
	name, err := c.line()
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return name, nil
}

func mustAsk(t testing.TB, addr netip.AddrPort) string {
	t.Helper()
	name, err := ask(addr, netip.Addr{})
	if err != nil {
		t.Fatalf("ask %s: %v", addr, err)
	}
	return name
}

// waitFor polls cond until it holds, failing with what it last saw when
// the deadline passes.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last seen: %s", what, waitTimeout, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// portOf is the running service port id.
func portOf(t *testing.T, p *Proxy, id string) *servicePort {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	sp := p.ports[id]
	if sp == nil {
		t.Fatalf("service port %s is not running", id)
	}
	return sp
}

// idle waits until the proxy forwards no TCP connection any more.
func idle(t *testing.T, p *Proxy) {
	t.Helper()
	waitFor(t, "no active TCP connection", func() (bool, string) {
		n := testutil.ToFloat64(p.env.metrics.tcp.active)
		return n == 0, fmt.Sprintf("%v active", n)
	})
}

func TestTCPRoundRobin(t *testing.T) {
	t.Parallel()
	const backends, conns, workers = 6, 600, 8
	var eps []netip.AddrPort
	for i := range backends {
		eps = append(eps, tcpBackend(t, fmt.Sprintf("be%d", i)))
	}
	vip := testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	p := newProxy(t, Config{})
	mustSync(t, p, service("web", vip, tcpPort(addr.Port(), eps...)))

	var mu sync.Mutex
	got := map[string]int{}
	var errs []error
	jobs := make(chan int, conns)
	for i := range conns {
		jobs <- i
	}
	close(jobs)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range jobs {
				name, err := ask(addr, netip.Addr{})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					got[name]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d connections failed, the first: %v", len(errs), conns, errs[0])
	}
	for i := range backends {
		if name := fmt.Sprintf("be%d", i); got[name] != conns/backends {
			t.Errorf("%s took %d connections, want %d; all: %v", name, got[name], conns/backends, got)
		}
	}
	idle(t, p)
	m := &p.env.metrics.tcp
	if n := testutil.ToFloat64(m.proxied); n != conns {
		t.Errorf("connections proxied: %v, want %d", n, conns)
	}
	if n, min := testutil.ToFloat64(m.toClient), float64(conns*len("be0\n")); n < min {
		t.Errorf("bytes to clients: %v, want at least %v", n, min)
	}
	if n := testutil.ToFloat64(m.dialErrors); n != 0 {
		t.Errorf("dial errors: %v, want 0", n)
	}
}

func TestNodePortSharesTheRoundRobin(t *testing.T) {
	t.Parallel()
	eps := []netip.AddrPort{tcpBackend(t, "a"), tcpBackend(t, "b")}
	vip, nodeIP := testIP(), testIP()
	vipAddr := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	nodeAddr := netip.AddrPortFrom(nodeIP, freePort(t, lb.TCP, nodeIP))
	p := newProxy(t, Config{NodePortAddrs: []netip.Addr{nodeIP}})
	port := tcpPort(vipAddr.Port(), eps...)
	port.NodePort = nodeAddr.Port()
	mustSync(t, p, service("web", vip, port))

	var got []string
	for _, a := range []netip.AddrPort{vipAddr, nodeAddr, vipAddr, nodeAddr} {
		got = append(got, mustAsk(t, a))
	}
	if want := []string{"a", "b", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("virtual IP, node port, virtual IP, node port went to %v, want %v", got, want)
	}
}

func TestUDP(t *testing.T) {
	t.Parallel()
	eps := []netip.AddrPort{udpBackend(t, "a"), udpBackend(t, "b")}
	vip := testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.UDP, vip))
	p := newProxy(t, Config{})
	mustSync(t, p, service("dns", vip, lb.Port{Protocol: lb.UDP, Port: addr.Port(), Endpoints: eps}))

	// Each client socket is connected to the virtual IP, so a reply from
	// any other address would not reach it.
	var clients []*net.UDPConn
	for range 4 {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	var got []string
	for round := range 3 {
		for i, c := range clients {
			reply, err := udpAsk(c, fmt.Sprintf("ping %d.%d", i, round))
			if err != nil {
				t.Fatalf("client %d, round %d: %v", i, round, err)
			}
			got = append(got, reply)
		}
	}
	want := []string{
		"a:ping 0.0", "b:ping 1.0", "a:ping 2.0", "b:ping 3.0", // a session each, in turn
		"a:ping 0.1", "b:ping 1.1", "a:ping 2.1", "b:ping 3.1", // and each stays on it
		"a:ping 0.2", "b:ping 1.2", "a:ping 2.2", "b:ping 3.2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("replies %q, want %q", got, want)
	}
	l := portOf(t, p, "default/dns:"+fmt.Sprint(addr.Port())+"/UDP").listeners[addr].(*udpListener)
	if n := l.sessionCount(); n != len(clients) {
		t.Errorf("%d sessions, want %d", n, len(clients))
	}
	m := &p.env.metrics.udp
	if n := testutil.ToFloat64(m.proxied); n != float64(len(clients)) {
		t.Errorf("UDP flows proxied: %v, want %d", n, len(clients))
	}
	if n := testutil.ToFloat64(m.toClient); n == 0 {
		t.Error("no bytes to UDP clients counted")
	}
}

// udpAsk sends msg on c and returns the reply.
func udpAsk(c *net.UDPConn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("no reply to %q: %w", msg, err)
	}
	return string(buf[:n]), nil
}

func TestUDPSessionsExpireAndAreBounded(t *testing.T) {
	t.Parallel()
	ep := udpBackend(t, "a")
	vip := testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.UDP, vip))
	p := newProxy(t, Config{UDPIdleTimeout: 200 * time.Millisecond, Balance: lb.LeastConn})
	p.env.maxSessions = 3 // before Sync: the listener reads it at each new session
	id := fmt.Sprintf("default/dns:%d/UDP", addr.Port())
	mustSync(t, p, service("dns", vip, lb.Port{Protocol: lb.UDP, Port: addr.Port(), Endpoints: []netip.AddrPort{ep}}))
	sp := portOf(t, p, id)
	l := sp.listeners[addr].(*udpListener)

	for i := range 5 {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		if reply, err := udpAsk(c, "x"); err != nil || reply != "a:x" {
			t.Fatalf("client %d: reply %q, %v", i, reply, err)
		}
		if n := l.sessionCount(); n > 3 {
			t.Fatalf("after client %d: %d sessions, more than the 3 allowed", i, n)
		}
	}
	if n := testutil.ToFloat64(p.env.metrics.evicted); n != 2 {
		t.Errorf("sessions evicted: %v, want 2", n)
	}
	waitFor(t, "idle sessions expire", func() (bool, string) {
		n, open := l.sessionCount(), sp.picker.open(ep)
		active := testutil.ToFloat64(p.env.metrics.udp.active)
		return n == 0 && open == 0 && active == 0, fmt.Sprintf("%d sessions, %d counted on the endpoint, gauge %v", n, open, active)
	})
}

func TestAffinity(t *testing.T) {
	t.Parallel()
	eps := []netip.AddrPort{tcpBackend(t, "a"), tcpBackend(t, "b"), tcpBackend(t, "c")}
	vip, client1, client2 := testIP(), testIP(), testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	p := newProxy(t, Config{})
	svc := service("web", vip, tcpPort(addr.Port(), eps...))
	svc.Affinity = time.Hour
	mustSync(t, p, svc)

	served := map[netip.Addr]map[string]int{}
	for i := range 200 {
		from := client1
		if i%2 == 1 {
			from = client2
		}
		name, err := ask(addr, from)
		if err != nil {
			t.Fatalf("request %d from %s: %v", i, from, err)
		}
		if served[from] == nil {
			served[from] = map[string]int{}
		}
		served[from][name]++
	}
	for _, from := range []netip.Addr{client1, client2} {
		if len(served[from]) != 1 {
			t.Errorf("client %s was served by %v, want one backend", from, served[from])
		}
	}
	if fmt.Sprint(served[client1]) == fmt.Sprint(served[client2]) {
		t.Errorf("both clients went to %v: the second should have had the next backend", served[client1])
	}
}

func TestLeastConnPrefersIdleBackend(t *testing.T) {
	t.Parallel()
	busy, idle1, idle2 := tcpBackend(t, "busy"), tcpBackend(t, "idle1"), tcpBackend(t, "idle2")
	vip := testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	p := newProxy(t, Config{Balance: lb.LeastConn})
	id := fmt.Sprintf("default/web:%d/TCP", addr.Port())
	// Only busy is ready while the long connections are made.
	mustSync(t, p, service("web", vip, tcpPort(addr.Port(), busy)))
	for range 3 {
		if _, name := hold(t, addr); name != "busy" {
			t.Fatalf("long connection went to %s, want busy", name)
		}
	}
	mustSync(t, p, service("web", vip, tcpPort(addr.Port(), busy, idle1, idle2)))
	pk := portOf(t, p, id).picker

	got := map[string]int{}
	for i := range 20 {
		got[mustAsk(t, addr)]++
		// Wait until the short connection is released, so each pick
		// sees the three long ones only.
		waitFor(t, fmt.Sprintf("short connection %d released", i), func() (bool, string) {
			b, i1, i2 := pk.open(busy), pk.open(idle1), pk.open(idle2)
			return b == 3 && i1 == 0 && i2 == 0, fmt.Sprintf("busy %d, idle1 %d, idle2 %d", b, i1, i2)
		})
	}
	if got["busy"] != 0 || got["idle1"] != 10 || got["idle2"] != 10 {
		t.Errorf("short connections went to %v, want 10 to each idle backend (in turn) and none to busy", got)
	}
}

func TestNoEndpointsResets(t *testing.T) {
	t.Parallel()
	vip := testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	p := newProxy(t, Config{})
	mustSync(t, p, service("web", vip, tcpPort(addr.Port())))

	start := time.Now()
	c, err := dial(addr, netip.Addr{})
	if err == nil {
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = c.line()
	}
	if !errors.Is(err, unix.ECONNRESET) && !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("a connection to a port without endpoints ended with %v after %v, want a reset or refusal", err, time.Since(start))
	}
	if n := testutil.ToFloat64(p.env.metrics.tcp.noEndpoints); n != 1 {
		t.Errorf("connections without endpoints: %v, want 1", n)
	}
}

func TestEndpointRemoved(t *testing.T) {
	t.Parallel()
	a, b := tcpBackend(t, "a"), tcpBackend(t, "b")
	vip := testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	p := newProxy(t, Config{})
	mustSync(t, p, service("web", vip, tcpPort(addr.Port(), a, b)))
	old, name := hold(t, addr)
	if name != "a" {
		t.Fatalf("first connection went to %s, want a", name)
	}

	mustSync(t, p, service("web", vip, tcpPort(addr.Port(), b)))
	for i := range 20 {
		if name := mustAsk(t, addr); name != "b" {
			t.Fatalf("connection %d after a was removed went to %s", i, name)
		}
	}
	// The connection made before goes on.
	old.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := old.Write([]byte("abc")); err != nil {
		t.Fatalf("write on the connection to the removed endpoint: %v", err)
	}
	old.CloseWrite()
	if got, err := old.line(); err != nil || got != "got 3" {
		t.Fatalf("the connection to the removed endpoint answered %q, %v; want \"got 3\"", got, err)
	}
}

func TestPortRemoved(t *testing.T) {
	t.Parallel()
	a := tcpBackend(t, "a")
	vip := testIP()
	ports := freePorts(t, lb.TCP, vip, 2)
	gone, kept := netip.AddrPortFrom(vip, ports[0]), netip.AddrPortFrom(vip, ports[1])
	p := newProxy(t, Config{})
	mustSync(t, p, service("web", vip, tcpPort(gone.Port(), a), tcpPort(kept.Port(), a)))
	open, _ := hold(t, gone)

	mustSync(t, p, service("web", vip, tcpPort(kept.Port(), a)))
	if _, err := dial(gone, netip.Addr{}); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("dial the removed port: %v, want connection refused", err)
	}
	open.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := open.line(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a connection of the removed port: read gave %v, want it closed", err)
	}
	if name := mustAsk(t, kept); name != "a" {
		t.Errorf("the kept port answered %q", name)
	}
	p.mu.Lock()
	_, running := p.ports[fmt.Sprintf("default/web:%d/TCP", gone.Port())]
	p.mu.Unlock()
	if running {
		t.Error("the removed port is still in the proxy's table")
	}
}

func TestDialFailureTriesNextEndpoint(t *testing.T) {
	t.Parallel()
	dead, alive := deadEndpoint(t), tcpBackend(t, "alive")
	vip := testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	p := newProxy(t, Config{})
	mustSync(t, p, service("web", vip, tcpPort(addr.Port(), dead, alive)))
	for i := range 10 {
		if name := mustAsk(t, addr); name != "alive" {
			t.Fatalf("connection %d: served by %q", i, name)
		}
	}
	m := &p.env.metrics.tcp
	if n := testutil.ToFloat64(m.dialErrors); n < 1 {
		t.Errorf("dial errors: %v, want some (every other pick is the dead endpoint)", n)
	}

	// With every endpoint dead, the client is reset, after one try of each.
	mustSync(t, p, service("web", vip, tcpPort(addr.Port(), dead, deadEndpoint(t))))
	before := testutil.ToFloat64(m.dialErrors)
	if name, err := ask(addr, netip.Addr{}); !errors.Is(err, unix.ECONNRESET) {
		t.Errorf("with every endpoint dead: answer %q, error %v; want a reset", name, err)
	}
	if n := testutil.ToFloat64(m.dialErrors) - before; n != 2 {
		t.Errorf("dial errors for one connection to two dead endpoints: %v, want 2", n)
	}
	if n := testutil.ToFloat64(m.dialFailed); n != 1 {
		t.Errorf("connections that found no endpoint to dial: %v, want 1", n)
	}
}

func TestHalfClose(t *testing.T) {
	t.Parallel()
	a := tcpBackend(t, "a")
	vip := testIP()
	addr := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	p := newProxy(t, Config{})
	mustSync(t, p, service("web", vip, tcpPort(addr.Port(), a)))

	c, err := dial(addr, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := strings.Repeat("x", 100_000)
	if _, err := io.WriteString(c, body); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	rest, err := io.ReadAll(c.r)
	if err != nil {
		t.Fatalf("read the answer after half-closing: %v (got %q)", err, rest)
	}
	if want := fmt.Sprintf("a\ngot %d\n", len(body)); string(rest) != want {
		t.Errorf("answer %q, want %q", rest, want)
	}
	idle(t, p)
	if n := testutil.ToFloat64(p.env.metrics.tcp.toEndpoint); n != float64(len(body)) {
		t.Errorf("bytes to the endpoint: %v, want %d", n, len(body))
	}
}

func TestListenErrorNamesThePortAndSyncsTheRest(t *testing.T) {
	t.Parallel()
	a := tcpBackend(t, "a")
	vip := testIP()
	taken, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(vip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().(*net.TCPAddr).AddrPort()
	free := netip.AddrPortFrom(vip, freePort(t, lb.TCP, vip))
	p := newProxy(t, Config{})
	services := []lb.Service{service("web", vip, tcpPort(busy.Port(), a), tcpPort(free.Port(), a))}

	err = p.Sync(context.Background(), services)
	if err == nil {
		t.Fatal("Sync with a port in use: no error")
	}
	for _, want := range []string{fmt.Sprintf("default/web:%d/TCP", busy.Port()), busy.String(), "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if name := mustAsk(t, free); name != "a" {
		t.Errorf("the other port answered %q", name)
	}
	// Sync again once the port is free: it now listens.
	taken.Close()
	mustSync(t, p, services...)
	if name := mustAsk(t, busy); name != "a" {
		t.Errorf("the port freed answered %q", name)
	}
}

func TestNewRefusesUnknownBalance(t *testing.T) {
	if _, err := New(Config{Balance: "weighted"}); err == nil || !strings.Contains(err.Error(), "weighted") {
		t.Errorf("New with an unknown balance: %v", err)
	}
}
