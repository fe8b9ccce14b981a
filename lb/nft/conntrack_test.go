package nft

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/lb"
)

func udpService(endpoints ...netip.AddrPort) lb.Service {
	return lb.Service{Namespace: "kube-system", Name: "dns", ClusterIP: netip.MustParseAddr("10.96.0.53"),
		Ports: []lb.Port{{Protocol: lb.UDP, Port: 53, NodePort: 30053, Endpoints: endpoints}}}
}

// flow is a conntrack entry: the client sent from src to dst, the reply
// came from replySrc.
func flow(proto uint8, src, dst, replySrc string) *netlink.ConntrackFlow {
	s, d, r := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), netip.MustParseAddrPort(replySrc)
	return &netlink.ConntrackFlow{
		FamilyType: unix.AF_INET,
		Forward:    netlink.IPTuple{Protocol: proto, SrcIP: net.IP(s.Addr().AsSlice()), SrcPort: s.Port(), DstIP: net.IP(d.Addr().AsSlice()), DstPort: d.Port()},
		Reverse:    netlink.IPTuple{Protocol: proto, SrcIP: net.IP(r.Addr().AsSlice()), SrcPort: r.Port(), DstIP: net.IP(s.Addr().AsSlice()), DstPort: s.Port()},
	}
}

func TestStaleConntrack(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.244.1.10:5353"), netip.MustParseAddrPort("10.244.1.11:5353")
	both := mustRender(t, testRender, udpService(a, b))
	onlyA := mustRender(t, testRender, udpService(a))
	none := mustRender(t, testRender, udpService())

	removeB := staleConntrack(both, onlyA)
	for _, tc := range []struct {
		name string
		f    *netlink.ConntrackFlow
		want bool
	}{
		{"VIP flow answered by the removed endpoint", flow(unix.IPPROTO_UDP, "10.244.2.5:4000", "10.96.0.53:53", "10.244.1.11:5353"), true},
		{"node port flow answered by the removed endpoint", flow(unix.IPPROTO_UDP, "192.168.50.2:4000", "192.168.50.1:30053", "10.244.1.11:5353"), true},
		{"VIP flow answered by the kept endpoint", flow(unix.IPPROTO_UDP, "10.244.2.5:4000", "10.96.0.53:53", "10.244.1.10:5353"), false},
		{"direct flow to the removed endpoint", flow(unix.IPPROTO_UDP, "10.244.2.5:4000", "10.244.1.11:5353", "10.244.1.11:5353"), false},
		{"TCP to the VIP", flow(unix.IPPROTO_TCP, "10.244.2.5:4000", "10.96.0.53:53", "10.244.1.11:5353"), false},
		{"other VIP", flow(unix.IPPROTO_UDP, "10.244.2.5:4000", "10.96.0.54:53", "10.244.1.11:5353"), false},
	} {
		if got := removeB.MatchConntrackFlow(tc.f); got != tc.want {
			t.Errorf("endpoint removed: %s: match = %v, want %v", tc.name, got, tc.want)
		}
	}

	if s := staleConntrack(both, both); !s.empty() {
		t.Errorf("nothing changed, yet stale: %+v", s)
	}
	if s := staleConntrack(nil, both); !s.empty() {
		t.Errorf("nothing programmed before, yet stale: %+v", s)
	}
	// The service going away entirely: its endpoints' flows go too.
	if s := staleConntrack(both, mustRender(t, testRender)); len(s.gone) != 2 {
		t.Errorf("service removed: %d endpoints gone, want 2", len(s.gone))
	}

	// First endpoints: flows to the VIP or node port that were not
	// DNATed (made while there was none) go.
	first := staleConntrack(none, onlyA)
	for _, tc := range []struct {
		name string
		f    *netlink.ConntrackFlow
		want bool
	}{
		{"undnatted VIP flow", flow(unix.IPPROTO_UDP, "10.244.2.5:4000", "10.96.0.53:53", "10.96.0.53:53"), true},
		{"undnatted node port flow", flow(unix.IPPROTO_UDP, "192.168.50.2:4000", "192.168.50.1:30053", "192.168.50.1:30053"), true},
		{"dnatted VIP flow", flow(unix.IPPROTO_UDP, "10.244.2.5:4000", "10.96.0.53:53", "10.244.1.10:5353"), false},
		{"other port", flow(unix.IPPROTO_UDP, "10.244.2.5:4000", "10.96.0.53:54", "10.96.0.53:54"), false},
	} {
		if got := first.MatchConntrackFlow(tc.f); got != tc.want {
			t.Errorf("first endpoint: %s: match = %v, want %v", tc.name, got, tc.want)
		}
	}

	// TCP ports are left alone: a TCP connection to a removed endpoint
	// fails on its own, and cutting it would not help.
	tcp := udpService(a, b)
	tcp.Ports[0].Protocol = lb.TCP
	tcpA := udpService(a)
	tcpA.Ports[0].Protocol = lb.TCP
	if s := staleConntrack(mustRender(t, testRender, tcp), mustRender(t, testRender, tcpA)); !s.empty() {
		t.Errorf("TCP endpoint removed, yet stale: %+v", s)
	}
}
