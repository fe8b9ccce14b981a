package nft

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/lb"

	"github.com/shoalproj/shoal/internal/netnsrun"
)

// The integration tests never touch the machine's own network namespace:
// every namespace is made by the test (unshare on a locked thread), kept
// alive by a handle and never mounted, so closing the handles at cleanup
// removes them with their links, routes and tables. The test goroutine
// never changes namespace; work inside one runs on a thread of its own
// (inNetNS).
//
// Topology of a lab: a "node" namespace holds the dataplane; each pod
// namespace is connected to it by a veth pair and routed (/32 per pod,
// the node side of every pair has 10.244.1.1), so that every pod to pod
// packet crosses the node's netfilter hooks without a bridge; a "client"
// namespace plays a host outside the cluster, on 192.168.50.0/24.

const (
	ioTimeout = 5 * time.Second
	opTimeout = 60 * time.Second

	nodePodIP    = "10.244.1.1"
	nodeClientIP = "192.168.50.1"
	clientIP     = "192.168.50.2"
	tcpPort      = 8080
	udpPort      = 5353
)

var (
	testClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	testServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
)

// needRoot skips a test that needs root, or fails it when CI is set.
func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const why = "needs root to create network namespaces, links and nftables tables"
	if os.Getenv("CI") != "" {
		tb.Fatalf("nft: this test %s; CI is set, so it fails instead of skipping", why)
	}
	tb.Skipf("nft: skipped: this test %s", why)
}

// newNS creates an unmounted network namespace with lo up; it lives until
// the handle is closed at cleanup (and the sockets in it are closed).
func newNS(tb testing.TB) netns.NsHandle {
	tb.Helper()
	errc := make(chan error, 1)
	var ns netns.NsHandle
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		ns, err = netns.Get()
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, serr) // the thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		tb.Fatalf("create a network namespace: %v", err)
	}
	tb.Cleanup(func() { ns.Close() })
	h := handleAt(tb, ns)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		tb.Fatalf("bring lo up: %v", err)
	}
	return ns
}

func handleAt(tb testing.TB, ns netns.NsHandle) *netlink.Handle {
	tb.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatalf("netlink handle: %v", err)
	}
	tb.Cleanup(h.Close)
	return h
}

func writeSysctl(ns netns.NsHandle, key, value string) error {
	return netnsrun.Run(ns, func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	})
}

// nftList returns `nft list table` of the namespace, for failure
// messages; empty when the nft binary is missing.
func nftList(ns netns.NsHandle, table string) string {
	if _, err := exec.LookPath("nft"); err != nil {
		return "(nft binary not installed)"
	}
	path := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns))
	out, err := exec.Command("nsenter", "--net="+path, "nft", "list", "table", "ip", table).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("nft list table ip %s: %v: %s", table, err, out)
	}
	return string(out)
}

type pod struct {
	name string
	ns   netns.NsHandle
	ip   netip.Addr
}

func (p *pod) ep(port uint16) netip.AddrPort { return netip.AddrPortFrom(p.ip, port) }

type lab struct {
	t      *testing.T
	node   netns.NsHandle
	nodeH  *netlink.Handle
	client netns.NsHandle
	pods   []*pod
}

// newLab builds a node, a client and n pods, each pod serving TCP on
// tcpPort and UDP on udpPort.
func newLab(t *testing.T, n int) *lab {
	needRoot(t)
	l := &lab{t: t, node: newNS(t)}
	l.nodeH = handleAt(t, l.node)
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding"} {
		if err := writeSysctl(l.node, k, "1"); err != nil {
			t.Fatalf("node: %s: %v", k, err)
		}
	}
	l.client = newNS(t)
	l.veth("client", l.client, netip.MustParsePrefix(nodeClientIP+"/24"), netip.MustParsePrefix(clientIP+"/24"))
	ch := handleAt(t, l.client)
	eth0, err := ch.LinkByName("eth0")
	if err != nil {
		t.Fatalf("client eth0: %v", err)
	}
	// The client reaches VIPs through the node, like a host whose
	// gateway is a node; node ports it reaches on the node's address.
	if err := ch.RouteAdd(&netlink.Route{Dst: ipnet(testServiceCIDR), Gw: net.ParseIP(nodeClientIP), LinkIndex: eth0.Attrs().Index}); err != nil {
		t.Fatalf("client route to the service CIDR: %v", err)
	}
	for i := range n {
		l.addPod(fmt.Sprintf("pod%d", i), netip.AddrFrom4([4]byte{10, 244, 1, byte(10 + i)}))
	}
	return l
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// veth connects the node to ns: nodeAddr on the node's end (named name),
// peerAddr on eth0 in ns.
func (l *lab) veth(name string, ns netns.NsHandle, nodeAddr, peerAddr netip.Prefix) {
	t := l.t
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := l.nodeH.LinkAdd(v); err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	nl, err := l.nodeH.LinkByName(name)
	if err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	if err := l.nodeH.AddrAdd(nl, &netlink.Addr{IPNet: ipnet(nodeAddr)}); err != nil {
		t.Fatalf("veth %s address: %v", name, err)
	}
	if err := l.nodeH.LinkSetUp(nl); err != nil {
		t.Fatalf("veth %s up: %v", name, err)
	}
	ph := handleAt(t, ns)
	pl, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatalf("veth %s peer: %v", name, err)
	}
	if err := ph.AddrAdd(pl, &netlink.Addr{IPNet: ipnet(peerAddr)}); err != nil {
		t.Fatalf("veth %s peer address: %v", name, err)
	}
	if err := ph.LinkSetUp(pl); err != nil {
		t.Fatalf("veth %s peer up: %v", name, err)
	}
}

// addPod makes a pod namespace routed from the node and starts its
// servers.
func (l *lab) addPod(name string, ip netip.Addr) *pod {
	t := l.t
	t.Helper()
	p := &pod{name: name, ns: newNS(t), ip: ip}
	l.veth("v"+name, p.ns, netip.PrefixFrom(netip.MustParseAddr(nodePodIP), 32), netip.PrefixFrom(ip, 32))
	nl, err := l.nodeH.LinkByName("v" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.nodeH.RouteAdd(&netlink.Route{Dst: ipnet(netip.PrefixFrom(ip, 32)), LinkIndex: nl.Attrs().Index, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatalf("node route to %s: %v", name, err)
	}
	ph := handleAt(t, p.ns)
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	gw := netip.MustParseAddr(nodePodIP)
	if err := ph.RouteAdd(&netlink.Route{Dst: ipnet(netip.PrefixFrom(gw, 32)), LinkIndex: eth0.Attrs().Index, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatalf("%s: route to the node: %v", name, err)
	}
	if err := ph.RouteAdd(&netlink.Route{Gw: gw.AsSlice(), LinkIndex: eth0.Attrs().Index}); err != nil {
		t.Fatalf("%s: default route: %v", name, err)
	}
	serveTCP(t, p.ns, name, tcpPort)
	serveUDP(t, p.ns, name, udpPort)
	l.pods = append(l.pods, p)
	return p
}

// serveTCP answers each connection with "<name> <client address>\n".
func serveTCP(t *testing.T, ns netns.NsHandle, name string, port int) {
	t.Helper()
	var ln net.Listener
	if err := netnsrun.Run(ns, func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("%s: listen tcp: %v", name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(ioTimeout))
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// serveUDP answers each datagram with "<name> <client address>".
func serveUDP(t *testing.T, ns netns.NsHandle, name string, port int) {
	t.Helper()
	var pc net.PacketConn
	if err := netnsrun.Run(ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("%s: listen udp: %v", name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(fmt.Appendf(nil, "%s %s", name, from.(*net.UDPAddr).IP), from)
		}
	})
	t.Cleanup(func() { pc.Close(); wg.Wait() })
}

// dataplane starts a Dataplane in the node namespace, closed at cleanup.
func (l *lab) dataplane(cfg Config) *Dataplane {
	l.t.Helper()
	return newDataplane(l.t, l.node, cfg)
}

func newDataplane(tb testing.TB, ns netns.NsHandle, cfg Config) *Dataplane {
	tb.Helper()
	if !cfg.ClusterCIDR.IsValid() {
		cfg.ClusterCIDR = testClusterCIDR
	}
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = testServiceCIDR
	}
	cfg.NetNS = ns
	d, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return d
}

func (l *lab) sync(d *Dataplane, services ...lb.Service) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := d.Sync(ctx, services); err != nil {
		l.t.Fatalf("Sync: %v\n%s", err, nftList(l.node, DefaultTable))
	}
}

// reply is what a server answered: its name and the client address it saw.
type reply struct{ name, from string }

func parseReply(s string) reply {
	name, from, _ := strings.Cut(strings.TrimSpace(s), " ")
	return reply{name, from}
}

// dialTCP connects from inside ns to addr n times, one after the other,
// and returns the replies; it stops at the first error.
func dialTCP(ns netns.NsHandle, addr string, n int) ([]reply, error) {
	var out []reply
	err := netnsrun.Run(ns, func() error {
		for range n {
			r, err := dialOnce(addr, ioTimeout)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

func dialOnce(addr string, timeout time.Duration) (reply, error) {
	c, err := net.DialTimeout("tcp4", addr, timeout)
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return reply{}, fmt.Errorf("read from %s: %w", addr, err)
	}
	return parseReply(line), nil
}

// udpFlow is a UDP socket in a namespace with a fixed source port,
// connected to a service: each exchange is one packet of the same flow.
type udpFlow struct {
	c *net.UDPConn
}

func newUDPFlow(tb testing.TB, ns netns.NsHandle, local, remote string) *udpFlow {
	tb.Helper()
	var c *net.UDPConn
	err := netnsrun.Run(ns, func() error {
		var laddr *net.UDPAddr
		if local != "" {
			laddr = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local))
		}
		var err error
		c, err = net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(remote)))
		return err
	})
	if err != nil {
		tb.Fatalf("udp socket to %s: %v", remote, err)
	}
	tb.Cleanup(func() { c.Close() })
	return &udpFlow{c}
}

// exchange sends one datagram and waits for the answer.
func (f *udpFlow) exchange(timeout time.Duration) (reply, error) {
	if _, err := f.c.Write([]byte("hello")); err != nil {
		return reply{}, err
	}
	f.c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	n, err := f.c.Read(buf)
	if err != nil {
		return reply{}, err
	}
	return parseReply(string(buf[:n])), nil
}

func isRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }
