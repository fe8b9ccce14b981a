package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoalproj/shoal/lb"
)

// needRoot skips a test that needs root, or fails it when CI is set.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const why = "needs root to create a network namespace and links"
	if os.Getenv("CI") != "" {
		t.Fatalf("proxy: this test %s; CI is set, so it fails instead of skipping", why)
	}
	t.Skipf("proxy: skipped: this test %s", why)
}

// enterThrowawayNetNS locks the test goroutine to its thread and moves it
// into a new network namespace with lo up, undone by the test's cleanup.
// The machine's own namespace is never touched.
func enterThrowawayNetNS(t *testing.T) {
	needRoot(t)
	runtime.LockOSThread()
	root, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open the test's network namespace: %v", err)
	}
	ns, err := netns.New() // unshare: the thread is now in ns
	if err != nil {
		root.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create a throwaway network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(root); err != nil {
			t.Errorf("cleanup: return to the test's network namespace: %v", err)
			return // the thread stays locked and is discarded with the goroutine
		}
		ns.Close()
		root.Close()
		runtime.UnlockOSThread()
	})
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo in the throwaway namespace: %v", err)
	}
}

// linkAddrs are the addresses on the link but IPv6 link-local ones.
func linkAddrs(t *testing.T, link netlink.Link) []string {
	t.Helper()
	list, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("addresses of %s: %v", link.Attrs().Name, err)
	}
	var out []string
	for _, a := range list {
		if !a.IP.IsLinkLocalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	slices.Sort(out)
	return out
}

// TestLink runs a proxy with a link in a throwaway namespace: the link is
// made, the virtual IP answers on it, node ports answer on every address,
// and Close removes the link. The backends listen in the test's own
// namespace, made before entering the throwaway one, because the proxy
// dials from threads other than the test's locked one (see the package
// comment); the link, the listeners and the clients are all in the
// throwaway namespace.
func TestLink(t *testing.T) {
	needRoot(t)
	tcpEP, udpEP := tcpBackend(t, "a"), udpBackend(t, "u")
	enterThrowawayNetNS(t)

	const name = "shoal-lb0"
	p := newProxy(t, Config{Link: name})
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("the link after New: %v", err)
	}
	if typ := link.Type(); (typ != "dummy" && typ != "bridge") || link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("link %s: type %s, flags %v; want an up dummy (or bridge where the kernel has no dummy driver)", name, typ, link.Attrs().Flags)
	}
	t.Logf("link %s is a %s", name, link.Type())

	vip := netip.MustParseAddr("10.96.0.10")
	svc := lb.Service{
		Namespace: "default", Name: "web", ClusterIP: vip,
		Ports: []lb.Port{
			{Name: "http", Protocol: lb.TCP, Port: 80, NodePort: 30080, Endpoints: []netip.AddrPort{tcpEP}},
			{Name: "dns", Protocol: lb.UDP, Port: 53, NodePort: 30053, Endpoints: []netip.AddrPort{udpEP}},
		},
	}
	mustSync(t, p, svc)
	if got := linkAddrs(t, link); !slices.Equal(got, []string{"10.96.0.10/32"}) {
		t.Fatalf("addresses on %s: %v, want the virtual IP as a /32", name, got)
	}
	for _, addr := range []string{"10.96.0.10:80", "127.0.0.5:30080"} {
		if got := mustAsk(t, netip.MustParseAddrPort(addr)); got != "a" {
			t.Errorf("%s answered %q, want a", addr, got)
		}
	}
	// The UDP node port listens on 0.0.0.0: a reply must come from the
	// address the client sent to (127.0.0.5), not the one the routes
	// prefer (127.0.0.1), or the connected client socket drops it.
	for _, addr := range []string{"10.96.0.10:53", "127.0.0.5:30053"} {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		if got, err := udpAsk(c, "ping"); err != nil || got != "u:ping" {
			t.Errorf("UDP %s answered %q, %v; want u:ping", addr, got, err)
		}
	}

	// A service gone takes its virtual IP off the link.
	mustSync(t, p)
	if got := linkAddrs(t, link); len(got) != 0 {
		t.Errorf("addresses on %s with no service: %v, want none", name, got)
	}
	// The link deleted behind the proxy's back comes back at the next Sync.
	if err := netlink.LinkDel(link); err != nil {
		t.Fatalf("delete %s: %v", name, err)
	}
	mustSync(t, p, svc)
	if got := mustAsk(t, netip.MustParseAddrPort("10.96.0.10:80")); got != "a" {
		t.Errorf("after the link was made again, the virtual IP answered %q", got)
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = netlink.LinkByName(name)
	if _, missing := errors.AsType[netlink.LinkNotFoundError](err); !missing {
		t.Errorf("after Close, looking up %s gave %v, want it not found", name, err)
	}
	if _, err := ask(netip.MustParseAddrPort("127.0.0.5:30080"), netip.Addr{}); err == nil {
		t.Error("the node port still answers after Close")
	}
	fmt.Fprintln(t.Output(), "link made, virtual IP and node ports answered, link removed by Close")
}
