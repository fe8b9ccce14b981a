package podnet

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/internal/netnsrun"
)

// pollTimeout bounds the wait for a condition polled in these tests.
const pollTimeout = 10 * time.Second

// eventually calls try until it succeeds or pollTimeout passes, then fails
// the test with what the last try saw.
func eventually(t *testing.T, what string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last seen: %v", what, pollTimeout, err)
		}
		<-tick.C
	}
}

// wire connects namespaces a and b with a veth pair (aName in a, bName in
// b), each end with its address and the MTU (0: the default), up.
func (l *lab) wire(a netns.NsHandle, aName, aAddr string, b netns.NsHandle, bName, bAddr string, mtu int) {
	l.t.Helper()
	ha, hb := l.handle(a), l.handle(b)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName, MTU: mtu}, PeerName: bName, PeerNamespace: netlink.NsFd(int(b))}
	if err := ha.LinkAdd(veth); err != nil {
		l.t.Fatalf("veth %s-%s: %v", aName, bName, err)
	}
	for _, end := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{ha, aName, aAddr}, {hb, bName, bAddr}} {
		link, err := end.h.LinkByName(end.name)
		if err != nil {
			l.t.Fatal(err)
		}
		if mtu != 0 {
			if err := end.h.LinkSetMTU(link, mtu); err != nil {
				l.t.Fatal(err)
			}
		}
		addr, err := netlink.ParseAddr(end.addr)
		if err != nil {
			l.t.Fatal(err)
		}
		if err := end.h.AddrAdd(link, addr); err != nil {
			l.t.Fatalf("address %s on %s: %v", end.addr, end.name, err)
		}
		if err := end.h.LinkSetUp(link); err != nil {
			l.t.Fatal(err)
		}
	}
}

func (l *lab) linkUp(ns netns.NsHandle, name string) {
	l.t.Helper()
	h := l.handle(ns)
	link, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(link)
	}
	if err != nil {
		l.t.Fatalf("bring %s up: %v", name, err)
	}
}

func (l *lab) defaultRoute(ns netns.NsHandle, via string) {
	l.t.Helper()
	if err := l.handle(ns).RouteAdd(&netlink.Route{Gw: net.ParseIP(via)}); err != nil {
		l.t.Fatalf("default route via %s: %v", via, err)
	}
}

func (l *lab) sysctl(ns netns.NsHandle, key, value string) {
	l.t.Helper()
	err := netnsrun.Run(ns, func() error { return os.WriteFile("/proc/sys/"+key, []byte(value+"\n"), 0o644) })
	if err != nil {
		l.t.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

// hasLink says whether ns has a link called name.
func (l *lab) hasLink(ns netns.NsHandle, name string) bool {
	l.t.Helper()
	_, err := l.handle(ns).LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &notFound) {
		l.t.Fatalf("look up %s: %v", name, err)
	}
	return err == nil
}

// peerEntries lists, straight from the kernel, what SyncRoutes manages in
// ns: shoal's routes, and the neighbor and FDB entries of the overlay's
// device, each as a line, sorted.
func (l *lab) peerEntries(ns netns.NsHandle) []string {
	l.t.Helper()
	h := l.handle(ns)
	var out []string
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, r := range routes {
		line := fmt.Sprintf("route %s via %s", r.Dst, r.Gw)
		if link, err := h.LinkByIndex(r.LinkIndex); err == nil {
			line += " dev " + link.Attrs().Name
		}
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			line += " onlink"
		}
		out = append(out, line)
	}
	if link, err := h.LinkByName(VXLANDevice); err == nil {
		idx := link.Attrs().Index
		neighs, err := h.NeighList(idx, netlink.FAMILY_V4)
		if err != nil {
			l.t.Fatal(err)
		}
		for _, n := range neighs {
			state := fmt.Sprintf("state %#x", n.State)
			if n.State == netlink.NUD_PERMANENT {
				state = "permanent"
			}
			out = append(out, fmt.Sprintf("neigh %s lladdr %s %s", n.IP, n.HardwareAddr, state))
		}
		fdb, err := h.NeighList(idx, unix.AF_BRIDGE)
		if err != nil {
			l.t.Fatal(err)
		}
		for _, n := range fdb {
			if n.IP == nil {
				continue
			}
			state := fmt.Sprintf("state %#x", n.State)
			if n.State == netlink.NUD_PERMANENT {
				state = "permanent"
			}
			out = append(out, fmt.Sprintf("fdb %s dst %s %s", n.HardwareAddr, n.IP, state))
		}
	}
	sort.Strings(out)
	return out
}

// checkEntries checks peerEntries against want (in any order).
func (l *lab) checkEntries(ns netns.NsHandle, what string, want ...string) {
	l.t.Helper()
	got := l.peerEntries(ns)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		l.t.Fatalf("%s:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// checkVXLAN checks the overlay's device in ns: shoal's settings, the
// VTEP MAC of nodeIP, the MTU, up, and the VTEP address as its only IPv4
// address.
func (l *lab) checkVXLAN(ns netns.NsHandle, nodeIP, vtep string, mtu int) {
	l.t.Helper()
	h := l.handle(ns)
	link, err := h.LinkByName(VXLANDevice)
	if err != nil {
		l.t.Fatalf("no %s: %v", VXLANDevice, err)
	}
	v, ok := link.(*netlink.Vxlan)
	if !ok {
		l.t.Fatalf("%s is a %s", VXLANDevice, link.Type())
	}
	if v.VxlanId != 1 || v.Port != 4789 || v.Learning || !v.SrcAddr.Equal(net.ParseIP(nodeIP)) {
		l.t.Errorf("%s: VNI %d port %d learning %v local %v; want VNI 1 port 4789 learning off local %s", VXLANDevice, v.VxlanId, v.Port, v.Learning, v.SrcAddr, nodeIP)
	}
	if want := vtepMAC(net.ParseIP(nodeIP)).String(); v.HardwareAddr.String() != want {
		l.t.Errorf("%s: MAC %s, want %s", VXLANDevice, v.HardwareAddr, want)
	}
	if v.MTU != mtu {
		l.t.Errorf("%s: MTU %d, want %d", VXLANDevice, v.MTU, mtu)
	}
	if v.Flags&net.FlagUp == 0 {
		l.t.Errorf("%s is down", VXLANDevice)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		l.t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != vtep+"/32" {
		l.t.Errorf("%s: addresses %v, want only %s/32", VXLANDevice, addrs, vtep)
	}
}

func (l *lab) checkMTU(ns netns.NsHandle, name string, mtu int) {
	l.t.Helper()
	link, err := l.handle(ns).LinkByName(name)
	if err != nil {
		l.t.Fatalf("no %s: %v", name, err)
	}
	if link.Attrs().MTU != mtu {
		l.t.Errorf("%s: MTU %d, want %d", name, link.Attrs().MTU, mtu)
	}
}

// echo answers each TCP connection to addr inside ns with what it sends,
// until the test ends.
func (l *lab) echo(ns netns.NsHandle, addr string) {
	l.t.Helper()
	var ln net.Listener
	err := netnsrun.Run(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		l.t.Fatalf("listen on %s: %v", addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(pollTimeout))
				io.Copy(c, c)
			}()
		}
	}()
	l.t.Cleanup(func() {
		ln.Close()
		select {
		case <-done:
		case <-time.After(ioTimeout):
			l.t.Error("echo listener did not stop")
		}
	})
}

// roundTrip sends size random bytes from ns to the echo server at addr and
// checks that the same come back: full-sized segments both ways.
func roundTrip(ns netns.NsHandle, addr string, size int) error {
	payload := make([]byte, size)
	rand.Read(payload)
	return netnsrun.Run(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, ioTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(pollTimeout))
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			werr <- err
		}()
		back, err := io.ReadAll(c)
		if err != nil {
			return fmt.Errorf("read back (%d of %d bytes): %w", len(back), size, err)
		}
		if err := <-werr; err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if !bytes.Equal(back, payload) {
			return fmt.Errorf("%d bytes came back, not the %d sent", len(back), size)
		}
		return nil
	})
}

// ping sends one ICMP echo of size bytes of data, not to be fragmented,
// from inside ns to addr with the system's ping.
func ping(ns netns.NsHandle, addr string, size int) error {
	return netnsrun.Run(ns, func() error {
		out, err := exec.Command("ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", fmt.Sprint(size), addr).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping -M do -s %d %s: %v: %s", size, addr, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

func TestVXLANAcrossRouter(t *testing.T) {
	l := newLab(t)
	ctx := ctxT(t)
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatalf("this test pings with the system's ping (iputils-ping): %v", err)
	}
	// Host A (the lab's host) and host B are each on a /24 of their own,
	// joined by a router: no link between them, so host-gw cannot work.
	// The underlay's MTU is 1400, to see the MTUs follow the host's.
	const underlayMTU = 1400
	hostA, hostB, router := l.host, l.anonNS(), l.anonNS()
	l.linkUp(hostB, "lo")
	l.linkUp(router, "lo")
	l.wire(hostA, "wan0", "192.168.10.2/24", router, "a0", "192.168.10.1/24", underlayMTU)
	l.wire(hostB, "wan0", "192.168.20.2/24", router, "b0", "192.168.20.1/24", underlayMTU)
	l.defaultRoute(hostA, "192.168.10.1")
	l.defaultRoute(hostB, "192.168.20.1")
	l.sysctl(router, "net/ipv4/ip_forward", "1")
	l.serve(hostB, "192.168.20.2:7001")
	eventually(t, "host A reaches host B through the router", func() error {
		_, err := dial(hostA, "192.168.20.2:7001")
		return err
	})

	nA := l.networkAt(hostA, Config{PodCIDR: "10.244.1.0/24", NodeIP: "192.168.10.2", StateDir: t.TempDir()})
	nB := l.networkAt(hostB, Config{PodCIDR: "10.244.2.0/24", NodeIP: "192.168.20.2", StateDir: t.TempDir()})
	peerA := Peer{Name: "a", PodCIDR: "10.244.1.0/24", Address: "192.168.10.2"}
	peerB := Peer{Name: "b", PodCIDR: "10.244.2.0/24", Address: "192.168.20.2"}
	if l.hasLink(hostA, VXLANDevice) {
		t.Fatalf("%s exists before any peer needs it", VXLANDevice)
	}

	attA, err := nA.Setup(ctx, l.pod("a"), nil)
	if err != nil {
		t.Fatalf("Setup on A: %v", err)
	}
	attB, err := nB.Setup(ctx, l.pod("b"), nil)
	if err != nil {
		t.Fatalf("Setup on B: %v", err)
	}
	start := time.Now()
	if err := nA.SyncRoutes([]Peer{peerB}); err != nil {
		t.Fatalf("SyncRoutes on A: %v", err)
	}
	t.Logf("first SyncRoutes (creates %s): %v", VXLANDevice, time.Since(start))
	if err := nB.SyncRoutes([]Peer{peerA}); err != nil {
		t.Fatalf("SyncRoutes on B: %v", err)
	}

	// The overlay was chosen, with the MTU of the underlay less 50, and
	// the pods' MTU fits in it.
	const overlayMTU = underlayMTU - 50
	l.checkVXLAN(hostA, "192.168.10.2", "10.244.1.0", overlayMTU)
	l.checkVXLAN(hostB, "192.168.20.2", "10.244.2.0", overlayMTU)
	macA, macB := "02:53:c0:a8:0a:02", "02:53:c0:a8:14:02"
	l.checkEntries(hostA, "A's entries for B",
		"route 10.244.2.0/24 via 10.244.2.0 dev shoal.vxlan onlink",
		"neigh 10.244.2.0 lladdr "+macB+" permanent",
		"fdb "+macB+" dst 192.168.20.2 permanent")
	l.checkEntries(hostB, "B's entries for A",
		"route 10.244.1.0/24 via 10.244.1.0 dev shoal.vxlan onlink",
		"neigh 10.244.1.0 lladdr "+macA+" permanent",
		"fdb "+macA+" dst 192.168.10.2 permanent")
	l.checkPodNS(attA, overlayMTU)
	l.checkPodNS(attB, overlayMTU)
	l.checkMTU(hostA, "shoal0", overlayMTU)
	l.checkMTU(hostB, "shoal0", overlayMTU)

	// Pod to pod both ways, unmasqueraded; the host to a pod on the other
	// node, from its VTEP address.
	podA, podB := l.open(attA.NetNSPath), l.open(attB.NetNSPath)
	l.serve(podA, ":8080")
	l.serve(podB, ":8080")
	eventually(t, "pod a reaches pod b over the overlay", func() error {
		_, err := dial(podA, attB.IP.String()+":8080")
		return err
	})
	l.mustDial(podA, "a to b", attB.IP.String()+":8080", attA.IP.String())
	l.mustDial(podB, "b to a", attA.IP.String()+":8080", attB.IP.String())
	l.mustDial(hostA, "host A to b", attB.IP.String()+":8080", "10.244.1.0")
	l.mustDial(hostB, "host B to a", attA.IP.String()+":8080", "10.244.2.0")
	// A packet of the pods' full MTU, not to be fragmented, crosses.
	if err := ping(podA, attB.IP.String(), overlayMTU-28); err != nil {
		t.Errorf("a pings b: %v", err)
	}
	if err := ping(podB, attA.IP.String(), overlayMTU-28); err != nil {
		t.Errorf("b pings a: %v", err)
	}
	// Bulk TCP, far bigger than any MTU, both ways: no blackholed packets.
	l.echo(podB, ":8090")
	l.echo(podA, ":8090")
	start = time.Now()
	if err := roundTrip(podA, attB.IP.String()+":8090", 4<<20); err != nil {
		t.Fatalf("4 MiB a → b → a: %v", err)
	}
	t.Logf("4 MiB each way over the overlay: %v", time.Since(start))
	if err := roundTrip(podB, attA.IP.String()+":8090", 1<<20); err != nil {
		t.Fatalf("1 MiB b → a → b: %v", err)
	}

	// A sync with nothing new changes nothing.
	before := l.peerEntries(hostA)
	link, _ := l.handle(hostA).LinkByName(VXLANDevice)
	if err := nA.SyncRoutes([]Peer{peerB}); err != nil {
		t.Fatalf("SyncRoutes again: %v", err)
	}
	l.checkEntries(hostA, "after the same sync", before...)
	if again, _ := l.handle(hostA).LinkByName(VXLANDevice); again == nil || again.Attrs().Index != link.Attrs().Index {
		t.Errorf("%s was made anew by a sync with nothing new", VXLANDevice)
	}

	// A third node C joins (an address nobody answers on): its entries
	// come; then B leaves: B's go, C's stay.
	peerC := Peer{Name: "c", PodCIDR: "10.244.3.0/24", Address: "192.168.30.3"}
	macC := "02:53:c0:a8:1e:03"
	if err := nA.SyncRoutes([]Peer{peerC, peerB}); err != nil {
		t.Fatalf("SyncRoutes with C: %v", err)
	}
	l.checkEntries(hostA, "A's entries for B and C",
		"route 10.244.2.0/24 via 10.244.2.0 dev shoal.vxlan onlink",
		"neigh 10.244.2.0 lladdr "+macB+" permanent",
		"fdb "+macB+" dst 192.168.20.2 permanent",
		"route 10.244.3.0/24 via 10.244.3.0 dev shoal.vxlan onlink",
		"neigh 10.244.3.0 lladdr "+macC+" permanent",
		"fdb "+macC+" dst 192.168.30.3 permanent")
	if err := nA.SyncRoutes([]Peer{peerC}); err != nil {
		t.Fatalf("SyncRoutes without B: %v", err)
	}
	l.checkEntries(hostA, "A's entries once B left",
		"route 10.244.3.0/24 via 10.244.3.0 dev shoal.vxlan onlink",
		"neigh 10.244.3.0 lladdr "+macC+" permanent",
		"fdb "+macC+" dst 192.168.30.3 permanent")
	if _, err := dialWithin(podA, attB.IP.String()+":8080", 500*time.Millisecond); err == nil {
		t.Error("pod a still reaches pod b once B left")
	}
	// Nobody left that needs the overlay: its device goes.
	if err := nA.SyncRoutes(nil); err != nil {
		t.Fatalf("SyncRoutes without peers: %v", err)
	}
	l.checkEntries(hostA, "A's entries without peers")
	if l.hasLink(hostA, VXLANDevice) {
		t.Errorf("%s still there without a peer that needs it", VXLANDevice)
	}
	// B back: the overlay comes back.
	if err := nA.SyncRoutes([]Peer{peerB}); err != nil {
		t.Fatalf("SyncRoutes with B again: %v", err)
	}
	l.checkVXLAN(hostA, "192.168.10.2", "10.244.1.0", overlayMTU)
	eventually(t, "pod a reaches pod b again", func() error {
		_, err := dial(podA, attB.IP.String()+":8080")
		return err
	})

	// Close leaves neither the device nor shoal's routes, nor the
	// masquerade table.
	for _, h := range []struct {
		name string
		ns   netns.NsHandle
		n    *CNI
	}{{"A", hostA, nA}, {"B", hostB, nB}} {
		if err := h.n.Close(); err != nil {
			t.Fatalf("Close on %s: %v", h.name, err)
		}
		if l.hasLink(h.ns, VXLANDevice) {
			t.Errorf("%s still on %s after Close", VXLANDevice, h.name)
		}
		l.checkEntries(h.ns, "entries on "+h.name+" after Close")
		conn, err := nftables.New(nftables.WithNetNSFd(int(h.ns)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ListTableOfFamily(MasqTable, nftables.TableFamilyIPv4); err == nil {
			t.Errorf("table %s still on %s after Close", MasqTable, h.name)
		}
		if err := h.n.SyncRoutes([]Peer{peerC}); !errors.Is(err, errClosed) {
			t.Errorf("SyncRoutes after Close on %s: %v, want %v", h.name, err, errClosed)
		}
	}
}

func TestAutoOnOneLink(t *testing.T) {
	l := newLab(t)
	ctx := ctxT(t)
	// Hosts A and B on one link: auto takes host-gw, and no overlay.
	hostA, hostB := l.host, l.anonNS()
	l.linkUp(hostB, "lo")
	l.wire(hostA, "lan0", "192.168.50.1/24", hostB, "lan0", "192.168.50.2/24", 0)
	nA := l.networkAt(hostA, Config{PodCIDR: "10.244.1.0/24", NodeIP: "192.168.50.1", Mode: ModeAuto, StateDir: t.TempDir()})
	nB := l.networkAt(hostB, Config{PodCIDR: "10.244.2.0/24", NodeIP: "192.168.50.2", StateDir: t.TempDir()})
	peerA := Peer{Name: "a", PodCIDR: "10.244.1.0/24", Address: "192.168.50.1"}
	peerB := Peer{Name: "b", PodCIDR: "10.244.2.0/24", Address: "192.168.50.2"}
	if err := nA.SyncRoutes([]Peer{peerB}); err != nil {
		t.Fatalf("SyncRoutes on A: %v", err)
	}
	if err := nB.SyncRoutes([]Peer{peerA}); err != nil {
		t.Fatalf("SyncRoutes on B: %v", err)
	}
	l.checkEntries(hostA, "A's route to B", "route 10.244.2.0/24 via 192.168.50.2 dev lan0")
	l.checkEntries(hostB, "B's route to A", "route 10.244.1.0/24 via 192.168.50.1 dev lan0")
	for _, h := range []struct {
		name string
		ns   netns.NsHandle
	}{{"A", hostA}, {"B", hostB}} {
		if l.hasLink(h.ns, VXLANDevice) {
			t.Errorf("host %s has %s though every peer is on its link", h.name, VXLANDevice)
		}
	}

	attA, err := nA.Setup(ctx, l.pod("a"), nil)
	if err != nil {
		t.Fatalf("Setup on A: %v", err)
	}
	attB, err := nB.Setup(ctx, l.pod("b"), nil)
	if err != nil {
		t.Fatalf("Setup on B: %v", err)
	}
	// Auto may use the overlay, so the pods' MTU leaves room for it (no
	// default route: the host's MTU is taken as 1500).
	l.checkPodNS(attA, 1450)
	l.checkPodNS(attB, 1450)
	podA, podB := l.open(attA.NetNSPath), l.open(attB.NetNSPath)
	l.serve(podA, ":8080")
	l.serve(podB, ":8080")
	eventually(t, "pod a reaches pod b by host-gw", func() error {
		_, err := dial(podA, attB.IP.String()+":8080")
		return err
	})
	l.mustDial(podA, "a to b", attB.IP.String()+":8080", attA.IP.String())
	l.mustDial(podB, "b to a", attA.IP.String()+":8080", attB.IP.String())

	// A node C beyond A's networks: the overlay for C only, B stays on
	// host-gw; C gone, the overlay's device goes too.
	peerC := Peer{Name: "c", PodCIDR: "10.244.3.0/24", Address: "10.99.0.3"}
	if err := nA.SyncRoutes([]Peer{peerB, peerC}); err != nil {
		t.Fatalf("SyncRoutes with C: %v", err)
	}
	l.checkVXLAN(hostA, "192.168.50.1", "10.244.1.0", 1450)
	l.checkEntries(hostA, "A's entries for B and C",
		"route 10.244.2.0/24 via 192.168.50.2 dev lan0",
		"route 10.244.3.0/24 via 10.244.3.0 dev shoal.vxlan onlink",
		"neigh 10.244.3.0 lladdr 02:53:0a:63:00:03 permanent",
		"fdb 02:53:0a:63:00:03 dst 10.99.0.3 permanent")
	l.mustDial(podA, "a to b with C there", attB.IP.String()+":8080", attA.IP.String())
	if err := nA.SyncRoutes([]Peer{peerB}); err != nil {
		t.Fatalf("SyncRoutes without C: %v", err)
	}
	if l.hasLink(hostA, VXLANDevice) {
		t.Errorf("%s still there once C left", VXLANDevice)
	}
	l.checkEntries(hostA, "A's route to B once C left", "route 10.244.2.0/24 via 192.168.50.2 dev lan0")
}

func TestOverlayEdges(t *testing.T) {
	l := newLab(t)
	h := l.handle(l.host)
	// The host's own network: a link to a neighbor, with the node's
	// address.
	l.wire(l.host, "lan0", "192.168.77.1/24", l.anonNS(), "lan0", "192.168.77.2/24", 0)
	onLink := Peer{Name: "b", PodCIDR: "10.244.2.0/24", Address: "192.168.77.2"}
	routed := Peer{Name: "c", PodCIDR: "10.244.3.0/24", Address: "10.99.0.3"}

	// Host-gw refuses a routed node and makes no overlay.
	{
		n := l.network(Config{Mode: ModeHostGW, NodeIP: "192.168.77.1"})
		err := n.SyncRoutes([]Peer{routed, onLink})
		if err == nil || !strings.Contains(err.Error(), "node c: address 10.99.0.3 is on none of this host's directly connected networks, so host-gw cannot route to it") {
			t.Fatalf("SyncRoutes: %v", err)
		}
		l.checkEntries(l.host, "host-gw entries", "route 10.244.2.0/24 via 192.168.77.2 dev lan0")
		if l.hasLink(l.host, VXLANDevice) {
			t.Errorf("host-gw made %s", VXLANDevice)
		}
		l.checkMTU(l.host, "lan0", 1500)
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		l.checkEntries(l.host, "after Close")
	}

	// A stale device is replaced.
	{
		// What an earlier, differently configured run might have left.
		stale := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: VXLANDevice, MTU: 1200}, VxlanId: 7, Port: 8472, SrcAddr: net.ParseIP("192.168.77.1"), Learning: true}
		if err := h.LinkAdd(stale); err != nil {
			t.Fatal(err)
		}
		old, _ := netlink.ParseAddr("10.244.99.0/32")
		if err := h.AddrAdd(stale, old); err != nil {
			t.Fatal(err)
		}
		n := l.network(Config{Mode: ModeVXLAN, NodeIP: "192.168.77.1"})
		if err := n.SyncRoutes([]Peer{onLink}); err != nil {
			t.Fatalf("SyncRoutes: %v", err)
		}
		l.checkVXLAN(l.host, "192.168.77.1", "10.244.7.0", 1450)
		l.checkEntries(l.host, "vxlan mode takes the overlay even on one link",
			"route 10.244.2.0/24 via 10.244.2.0 dev shoal.vxlan onlink",
			"neigh 10.244.2.0 lladdr 02:53:c0:a8:4d:02 permanent",
			"fdb 02:53:c0:a8:4d:02 dst 192.168.77.2 permanent")
		// Someone changes the MTU and adds an address ...
		link, _ := h.LinkByName(VXLANDevice)
		if err := h.LinkSetMTU(link, 1300); err != nil {
			t.Fatal(err)
		}
		extra, _ := netlink.ParseAddr("10.1.1.1/32")
		if err := h.AddrAdd(link, extra); err != nil {
			t.Fatal(err)
		}
		// ... and stray entries, and the peer's neighbor entry made
		// a learnt one: the sync removes and fixes them.
		idx := link.Attrs().Index
		strayMAC, _ := net.ParseMAC("02:53:0a:00:00:09")
		peerMAC, _ := net.ParseMAC("02:53:c0:a8:4d:02")
		for _, e := range []*netlink.Neigh{
			{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.244.50.0"), HardwareAddr: strayMAC},
			{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, IP: net.ParseIP("10.0.0.9"), HardwareAddr: strayMAC},
			{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_REACHABLE, IP: net.ParseIP("10.244.2.0"), HardwareAddr: peerMAC},
		} {
			if err := h.NeighSet(e); err != nil {
				t.Fatalf("add %+v: %v", e, err)
			}
		}
		l.checkEntries(l.host, "with strays",
			"route 10.244.2.0/24 via 10.244.2.0 dev shoal.vxlan onlink",
			"neigh 10.244.2.0 lladdr 02:53:c0:a8:4d:02 state 0x2",
			"neigh 10.244.50.0 lladdr 02:53:0a:00:00:09 permanent",
			"fdb 02:53:c0:a8:4d:02 dst 192.168.77.2 permanent",
			"fdb 02:53:0a:00:00:09 dst 10.0.0.9 permanent")
		if err := n.SyncRoutes([]Peer{onLink}); err != nil {
			t.Fatalf("SyncRoutes: %v", err)
		}
		l.checkVXLAN(l.host, "192.168.77.1", "10.244.7.0", 1450)
		l.checkEntries(l.host, "strays gone, the peer's entry permanent again",
			"route 10.244.2.0/24 via 10.244.2.0 dev shoal.vxlan onlink",
			"neigh 10.244.2.0 lladdr 02:53:c0:a8:4d:02 permanent",
			"fdb 02:53:c0:a8:4d:02 dst 192.168.77.2 permanent")
		if again, _ := h.LinkByName(VXLANDevice); again.Attrs().Index != link.Attrs().Index {
			t.Errorf("the device was made anew to fix its MTU")
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		if l.hasLink(l.host, VXLANDevice) {
			t.Errorf("%s still there after Close", VXLANDevice)
		}
	}

	// A node IP that is not the host's.
	{
		n := l.network(Config{Mode: ModeVXLAN, NodeIP: "192.168.77.9"})
		err := n.SyncRoutes([]Peer{onLink})
		if err == nil || !strings.Contains(err.Error(), "this node's address 192.168.77.9 (NodeIP) is on none of the host's interfaces") {
			t.Fatalf("SyncRoutes: %v", err)
		}
		if l.hasLink(l.host, VXLANDevice) {
			t.Errorf("%s made for an address the host does not have", VXLANDevice)
		}
		l.checkEntries(l.host, "nothing set")
	}

	// An MTU too big for the overlay is refused.
	{
		err := netnsrun.Run(l.host, func() error {
			n, err := New(ctxT(t), Config{PodCIDR: testPodCIDR, StateDir: t.TempDir(), MTU: 1500})
			if err == nil {
				n.Close()
			}
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "MTU 1500 does not fit the VXLAN overlay") {
			t.Fatalf("New: %v", err)
		}
	}

	// A foreign link of the device's name is left alone.
	{
		foreign := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: VXLANDevice}}
		if err := h.LinkAdd(foreign); err != nil {
			t.Fatal(err)
		}
		n := l.network(Config{NodeIP: "192.168.77.1"})
		err := n.SyncRoutes([]Peer{routed, onLink})
		if err == nil || !strings.Contains(err.Error(), "a bridge link named shoal.vxlan is in the way") {
			t.Fatalf("SyncRoutes: %v", err)
		}
		l.checkEntries(l.host, "host-gw entries still set", "route 10.244.2.0/24 via 192.168.77.2 dev lan0")
		if err := n.SyncRoutes(nil); err != nil {
			t.Fatalf("SyncRoutes without peers: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		if link, err := h.LinkByName(VXLANDevice); err != nil || link.Type() != "bridge" {
			t.Errorf("the foreign %s: %v, %v", VXLANDevice, link, err)
		}
	}
}
