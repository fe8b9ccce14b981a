package podnet

import (
	"net"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lines renders a netState as sorted lines, for comparing with a table.
func (s netState) lines() []string {
	var out []string
	for dst, r := range s.Routes {
		out = append(out, dst+" "+r.String())
	}
	for ip, mac := range s.Neighs {
		out = append(out, "neigh "+ip+" "+mac)
	}
	for mac, dst := range s.FDB {
		out = append(out, "fdb "+mac+" "+dst)
	}
	sort.Strings(out)
	return out
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWantState(t *testing.T) {
	// This node: pod subnet 10.244.1.0/24, address 192.168.1.1 on
	// 192.168.1.0/24 (and 172.16.0.0/16 on a second link).
	direct := Peer{Name: "b", PodCIDR: "10.244.2.0/24", Address: "192.168.1.2"}
	direct2 := Peer{Name: "f", PodCIDR: "10.244.6.0/24", Address: "172.16.9.9"}
	routed := Peer{Name: "c", PodCIDR: "10.244.3.0/24", Address: "192.168.30.3"}
	routed2 := Peer{Name: "d", PodCIDR: "10.244.4.0/24", Address: "10.9.0.4"}
	const (
		hostgwB  = "10.244.2.0/24 via 192.168.1.2"
		hostgwF  = "10.244.6.0/24 via 172.16.9.9"
		overlayB = "10.244.2.0/24 via 10.244.2.0 dev shoal.vxlan onlink"
		overlayC = "10.244.3.0/24 via 10.244.3.0 dev shoal.vxlan onlink"
		overlayD = "10.244.4.0/24 via 10.244.4.0 dev shoal.vxlan onlink"
		neighB   = "neigh 10.244.2.0 02:53:c0:a8:01:02"
		neighC   = "neigh 10.244.3.0 02:53:c0:a8:1e:03"
		neighD   = "neigh 10.244.4.0 02:53:0a:09:00:04"
		fdbB     = "fdb 02:53:c0:a8:01:02 192.168.1.2"
		fdbC     = "fdb 02:53:c0:a8:1e:03 192.168.30.3"
		fdbD     = "fdb 02:53:0a:09:00:04 10.9.0.4"
	)
	for _, tc := range []struct {
		name   string
		mode   string
		nodeIP string // default 192.168.1.1; "-" for none
		peers  []Peer
		want   []string
		errs   []string // substrings, one per error, in order
	}{
		{name: "no peers", mode: ModeAuto},
		{name: "auto: host-gw on a shared network, the overlay beyond", mode: ModeAuto,
			peers: []Peer{routed2, direct, routed, direct2},
			want:  []string{hostgwB, overlayC, overlayD, hostgwF, fdbD, fdbC, neighC, neighD}},
		{name: "auto is the default", mode: "", peers: []Peer{direct, routed},
			want: []string{hostgwB, overlayC, fdbC, neighC}},
		{name: "auto, all on one link: no overlay", mode: ModeAuto, peers: []Peer{direct, direct2},
			want: []string{hostgwB, hostgwF}},
		{name: "auto without a node IP reaches only its own networks", mode: ModeAuto, nodeIP: "-",
			peers: []Peer{direct, routed},
			want:  []string{hostgwB},
			errs:  []string{"node c: address 192.168.30.3 is on none of this host's directly connected networks, and the VXLAN overlay needs this node's address (NodeIP)"}},
		{name: "host-gw", mode: ModeHostGW, peers: []Peer{direct, direct2}, want: []string{hostgwB, hostgwF}},
		{name: "host-gw to a routed node is an error, the rest are set", mode: ModeHostGW,
			peers: []Peer{routed, direct},
			want:  []string{hostgwB},
			errs:  []string{"node c: address 192.168.30.3 is on none of this host's directly connected networks, so host-gw cannot route to it"}},
		{name: "host-gw needs no node IP", mode: ModeHostGW, nodeIP: "-", peers: []Peer{direct}, want: []string{hostgwB}},
		{name: "vxlan: every peer through the overlay", mode: ModeVXLAN, peers: []Peer{direct, routed},
			want: []string{overlayB, overlayC, fdbB, fdbC, neighB, neighC}},
		{name: "two subnets on one node share its VTEP entry", mode: ModeVXLAN,
			peers: []Peer{routed, {Name: "c2", PodCIDR: "10.244.33.0/24", Address: "192.168.30.3"}},
			want: []string{overlayC, "10.244.33.0/24 via 10.244.33.0 dev shoal.vxlan onlink",
				fdbC, neighC, "neigh 10.244.33.0 02:53:c0:a8:1e:03"}},
		{name: "a smaller subnet's VTEP is its network address", mode: ModeVXLAN,
			peers: []Peer{{Name: "s", PodCIDR: "10.244.9.16/28", Address: "10.9.9.9"}},
			want:  []string{"10.244.9.16/28 via 10.244.9.16 dev shoal.vxlan onlink", "fdb 02:53:0a:09:09:09 10.9.9.9", "neigh 10.244.9.16 02:53:0a:09:09:09"}},
		{name: "bad peers are reported and skipped", mode: ModeAuto,
			peers: []Peer{
				{Name: "p1", PodCIDR: "10.244.5.0", Address: "192.168.1.5"},
				{Name: "p2", PodCIDR: "10.244.5.7/24", Address: "192.168.1.5"},
				{Name: "p3", PodCIDR: "10.99.0.0/24", Address: "192.168.1.5"},
				{Name: "p4", PodCIDR: "10.244.1.0/25", Address: "192.168.1.5"},
				{Name: "p5", PodCIDR: "10.244.5.0/24", Address: "node5"},
				{Name: "p6", PodCIDR: "10.244.5.0/24", Address: "192.168.1.1"},
				{Name: "p7", PodCIDR: "fd00::/64", Address: "192.168.1.5"},
				{Name: "p8", PodCIDR: "10.244.8.0/24", Address: ""},
				direct,
				{PodCIDR: "10.244.0.0/16", Address: "192.168.1.9"},
			},
			want: []string{hostgwB},
			errs: []string{
				`node with pod CIDR 10.244.0.0/16: pod CIDR 10.244.0.0/16 overlaps this node's 10.244.1.0/24`,
				`node p1: pod CIDR "10.244.5.0" is not an IPv4 network address/prefix`,
				`node p2: pod CIDR "10.244.5.7/24" is not an IPv4`,
				`node p3: pod CIDR 10.99.0.0/24 is outside the cluster CIDR 10.244.0.0/16`,
				`node p4: pod CIDR 10.244.1.0/25 overlaps this node's 10.244.1.0/24`,
				`node p5: address "node5" is not an IPv4 address`,
				`node p6: has this node's own address 192.168.1.1`,
				`node p7: pod CIDR "fd00::/64" is not an IPv4`,
				`node p8: address "" is not an IPv4 address`,
			}},
		{name: "two nodes with one subnet: the first by name keeps it", mode: ModeAuto,
			peers: []Peer{{Name: "z", PodCIDR: "10.244.2.0/24", Address: "192.168.1.26"}, direct,
				{Name: "y", PodCIDR: "10.244.2.128/25", Address: "192.168.1.25"}},
			want: []string{hostgwB},
			errs: []string{"node y: pod CIDR 10.244.2.128/25 overlaps that of node b", "node z: pod CIDR 10.244.2.0/24 overlaps that of node b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{PodCIDR: "10.244.1.0/24", Mode: tc.mode, NodeIP: "192.168.1.1"}
			if tc.nodeIP == "-" {
				cfg.NodeIP = ""
			}
			s, err := resolve(cfg)
			if err != nil {
				t.Fatal(err)
			}
			connected := []*net.IPNet{mustCIDR(t, "192.168.1.0/24"), mustCIDR(t, "172.16.0.0/16")}
			got, errs := wantState(s, tc.peers, connected)
			sort.Strings(tc.want)
			if !reflect.DeepEqual(got.lines(), tc.want) && !(len(got.lines()) == 0 && len(tc.want) == 0) {
				t.Errorf("state:\n  %s\nwant:\n  %s", strings.Join(got.lines(), "\n  "), strings.Join(tc.want, "\n  "))
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %v, want %d: %q", errs, len(tc.errs), tc.errs)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tc.errs[i]) {
					t.Errorf("error %d: %v, want one containing %q", i, e, tc.errs[i])
				}
			}
			wantOverlay := false
			for _, l := range tc.want {
				wantOverlay = wantOverlay || strings.Contains(l, VXLANDevice)
			}
			if got.overlay() != wantOverlay {
				t.Errorf("overlay() = %v, want %v", got.overlay(), wantOverlay)
			}
			if len(got.withoutOverlay().Neighs)+len(got.withoutOverlay().FDB) != 0 || got.withoutOverlay().overlay() {
				t.Errorf("withoutOverlay kept overlay entries: %v", got.withoutOverlay().lines())
			}
		})
	}
}

func TestPlanSync(t *testing.T) {
	hostgw := func(via string) peerRoute { return peerRoute{Via: via} }
	overlay := func(via string) peerRoute { return peerRoute{Via: via, Overlay: true} }
	state := func(routes map[string]peerRoute, neighs, fdb map[string]string) netState {
		s := newNetState()
		for k, v := range routes {
			s.Routes[k] = v
		}
		for k, v := range neighs {
			s.Neighs[k] = v
		}
		for k, v := range fdb {
			s.FDB[k] = v
		}
		return s
	}
	both := state(
		map[string]peerRoute{"10.244.2.0/24": hostgw("192.168.1.2"), "10.244.3.0/24": overlay("10.244.3.0")},
		map[string]string{"10.244.3.0": "02:53:c0:a8:1e:03"},
		map[string]string{"02:53:c0:a8:1e:03": "192.168.30.3"})
	for _, tc := range []struct {
		name       string
		want, have netState
		plan       syncPlan
	}{
		{name: "nothing anywhere", want: newNetState(), have: newNetState()},
		{name: "nothing yet", want: both, have: newNetState(),
			plan: syncPlan{SetRoutes: []string{"10.244.2.0/24", "10.244.3.0/24"}, SetNeighs: []string{"10.244.3.0"}, SetFDB: []string{"02:53:c0:a8:1e:03"}}},
		{name: "in place", want: both, have: both},
		{name: "everyone gone", want: newNetState(), have: both,
			plan: syncPlan{DelRoutes: []string{"10.244.2.0/24", "10.244.3.0/24"}, DelNeighs: []string{"10.244.3.0"}, DelFDB: []string{"02:53:c0:a8:1e:03"}}},
		{name: "a host-gw node moved to another address",
			want: state(map[string]peerRoute{"10.244.2.0/24": hostgw("192.168.1.9")}, nil, nil),
			have: state(map[string]peerRoute{"10.244.2.0/24": hostgw("192.168.1.2")}, nil, nil),
			plan: syncPlan{SetRoutes: []string{"10.244.2.0/24"}}},
		{name: "a node now reached through the overlay",
			want: state(map[string]peerRoute{"10.244.2.0/24": overlay("10.244.2.0")}, map[string]string{"10.244.2.0": "02:53:c0:a8:01:02"}, map[string]string{"02:53:c0:a8:01:02": "192.168.1.2"}),
			have: state(map[string]peerRoute{"10.244.2.0/24": hostgw("192.168.1.2")}, nil, nil),
			plan: syncPlan{SetRoutes: []string{"10.244.2.0/24"}, SetNeighs: []string{"10.244.2.0"}, SetFDB: []string{"02:53:c0:a8:01:02"}}},
		{name: "an overlay node moved: new MAC, new FDB entry, the old one goes",
			want: state(map[string]peerRoute{"10.244.3.0/24": overlay("10.244.3.0")}, map[string]string{"10.244.3.0": "02:53:c0:a8:1e:63"}, map[string]string{"02:53:c0:a8:1e:63": "192.168.30.99"}),
			have: both,
			plan: syncPlan{DelRoutes: []string{"10.244.2.0/24"}, SetNeighs: []string{"10.244.3.0"}, SetFDB: []string{"02:53:c0:a8:1e:63"}, DelFDB: []string{"02:53:c0:a8:1e:03"}}},
		{name: "stray overlay entries are removed, the route kept",
			want: state(map[string]peerRoute{"10.244.3.0/24": overlay("10.244.3.0")}, map[string]string{"10.244.3.0": "02:53:c0:a8:1e:03"}, map[string]string{"02:53:c0:a8:1e:03": "192.168.30.3"}),
			have: state(map[string]peerRoute{"10.244.3.0/24": overlay("10.244.3.0")},
				map[string]string{"10.244.3.0": "02:53:c0:a8:1e:03", "10.244.8.0": "02:53:0a:00:00:08"},
				map[string]string{"02:53:c0:a8:1e:03": "192.168.30.3", "02:53:0a:00:00:08": "10.0.0.8"}),
			plan: syncPlan{DelNeighs: []string{"10.244.8.0"}, DelFDB: []string{"02:53:0a:00:00:08"}}},
		{name: "an FDB entry pointing elsewhere is set again",
			want: both,
			have: state(map[string]peerRoute{"10.244.2.0/24": hostgw("192.168.1.2"), "10.244.3.0/24": overlay("10.244.3.0")},
				map[string]string{"10.244.3.0": "02:53:c0:a8:1e:03"}, map[string]string{"02:53:c0:a8:1e:03": "192.168.30.4"}),
			plan: syncPlan{SetFDB: []string{"02:53:c0:a8:1e:03"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planSync(tc.want, tc.have); !reflect.DeepEqual(got, tc.plan) {
				t.Fatalf("plan %+v\nwant %+v", got, tc.plan)
			}
		})
	}
}

func TestConnectedNets(t *testing.T) {
	const bridge, vx, eth0, eth1, ppp0 = 3, 4, 2, 5, 6
	r := func(dst string, mod func(*netlink.Route)) netlink.Route {
		route := netlink.Route{LinkIndex: eth0, Scope: netlink.SCOPE_LINK, Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_KERNEL}
		if dst != "" {
			_, route.Dst, _ = net.ParseCIDR(dst)
		}
		if mod != nil {
			mod(&route)
		}
		return route
	}
	routes := []netlink.Route{
		r("192.168.1.0/24", nil), // eth0's network: in
		r("172.16.0.0/16", func(x *netlink.Route) { x.LinkIndex = eth1; x.Protocol = unix.RTPROT_STATIC }),      // a static link route: in
		r("", func(x *netlink.Route) { x.Scope = netlink.SCOPE_UNIVERSE; x.Gw = net.ParseIP("192.168.1.254") }), // default via a gateway
		r("0.0.0.0/0", func(x *netlink.Route) { x.LinkIndex = ppp0 }),                                           // default dev ppp0: not a shared network
		r("10.8.0.0/16", func(x *netlink.Route) { x.Scope = netlink.SCOPE_UNIVERSE; x.Gw = net.ParseIP("192.168.1.253") }),
		r("10.244.1.0/24", func(x *netlink.Route) { x.LinkIndex = bridge }),                                            // the pods' bridge
		r("10.244.9.0/24", func(x *netlink.Route) { x.LinkIndex = vx; x.Protocol = routeProtocol }),                    // shoal's own
		r("10.244.8.0/24", func(x *netlink.Route) { x.LinkIndex = vx }),                                                // on the overlay
		r("127.0.0.0/8", func(x *netlink.Route) { x.Type = unix.RTN_LOCAL; x.Scope = netlink.SCOPE_HOST }),             // local
		r("198.51.100.0/24", func(x *netlink.Route) { x.Type = unix.RTN_BLACKHOLE; x.Scope = netlink.SCOPE_UNIVERSE }), // blackhole
		r("203.0.113.0/24", func(x *netlink.Route) {
			x.MultiPath = []*netlink.NexthopInfo{{LinkIndex: eth0}, {LinkIndex: eth1}}
		}),
	}
	var got []string
	for _, n := range connectedNets(routes, map[int]bool{bridge: true, vx: true}) {
		got = append(got, n.String())
	}
	if want := []string{"192.168.1.0/24", "172.16.0.0/16"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("connected %v, want %v", got, want)
	}
}

func TestVTEP(t *testing.T) {
	for _, tc := range []struct{ ip, mac string }{
		{"192.168.20.2", "02:53:c0:a8:14:02"},
		{"10.0.0.1", "02:53:0a:00:00:01"},
		{"255.255.255.254", "02:53:ff:ff:ff:fe"},
	} {
		mac := vtepMAC(net.ParseIP(tc.ip))
		if mac.String() != tc.mac {
			t.Errorf("vtepMAC(%s) = %s, want %s", tc.ip, mac, tc.mac)
		}
		if mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
			t.Errorf("vtepMAC(%s) = %s: not a locally administered unicast address", tc.ip, mac)
		}
	}
	if got := vtepAddr(mustCIDR(t, "10.244.5.0/24")).String(); got != "10.244.5.0" {
		t.Errorf("vtepAddr = %s", got)
	}
}

func TestVXLANMismatch(t *testing.T) {
	nodeIP := net.ParseIP("192.168.1.1").To4()
	good := func() *netlink.Vxlan {
		return &netlink.Vxlan{VxlanId: VXLANID, Port: VXLANPort, SrcAddr: nodeIP}
	}
	for _, tc := range []struct {
		name string
		mod  func(*netlink.Vxlan)
		want string
	}{
		{name: "as made", mod: func(*netlink.Vxlan) {}},
		{name: "unspecified group", mod: func(v *netlink.Vxlan) { v.Group = net.IPv4zero }},
		{name: "other VNI", mod: func(v *netlink.Vxlan) { v.VxlanId = 7 }, want: "VNI 7, want 1"},
		{name: "other port", mod: func(v *netlink.Vxlan) { v.Port = 8472 }, want: "port 8472, want 4789"},
		{name: "other local address", mod: func(v *netlink.Vxlan) { v.SrcAddr = net.ParseIP("192.168.1.9") }, want: "local address 192.168.1.9, want 192.168.1.1"},
		{name: "no local address", mod: func(v *netlink.Vxlan) { v.SrcAddr = nil }, want: "local address <nil>, want 192.168.1.1"},
		{name: "learning", mod: func(v *netlink.Vxlan) { v.Learning = true }, want: "learning on"},
		{name: "flow-based", mod: func(v *netlink.Vxlan) { v.FlowBased = true }, want: "external (flow-based)"},
		{name: "multicast group", mod: func(v *netlink.Vxlan) { v.Group = net.ParseIP("239.1.1.1") }, want: "remote/group 239.1.1.1"},
	} {
		v := good()
		tc.mod(v)
		if got := vxlanMismatch(v, nodeIP); got != tc.want {
			t.Errorf("%s: vxlanMismatch = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPodMTU(t *testing.T) {
	for _, tc := range []struct {
		mode             string
		configured, host int
		want             int
		wantErr          string
	}{
		{mode: ModeHostGW, host: 1500, want: 1500},
		{mode: ModeAuto, host: 1500, want: 1450},
		{mode: ModeVXLAN, host: 1500, want: 1450},
		{mode: ModeVXLAN, host: 9000, want: 8950},
		{mode: ModeAuto, host: 1400, want: 1350},
		{mode: ModeHostGW, configured: 9000, host: 1500, want: 9000}, // the operator knows
		{mode: ModeAuto, configured: 1450, host: 1500, want: 1450},
		{mode: ModeVXLAN, configured: 1400, host: 1500, want: 1400},
		{mode: ModeAuto, configured: 1500, host: 1500, wantErr: "MTU 1500 does not fit the VXLAN overlay that mode auto may use: at most 1450 (the host's 1500 less 50)"},
		{mode: ModeVXLAN, configured: 1451, host: 1500, wantErr: "at most 1450"},
	} {
		got, err := podMTU(tc.mode, tc.configured, tc.host)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("podMTU(%s, %d, %d) = %d, %v; want an error containing %q", tc.mode, tc.configured, tc.host, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("podMTU(%s, %d, %d) = %d, %v; want %d", tc.mode, tc.configured, tc.host, got, err, tc.want)
		}
	}
}
