package podnet

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeProtocol marks the routes to other nodes' pod subnets as shoal's
// (the rtm_protocol of each), so that a sync changes those and no other.
const routeProtocol netlink.RouteProtocol = 0x53

// Peer is another node of the cluster, whose pods this node's pods reach.
type Peer struct {
	// Name is the node's name, for messages.
	Name string
	// PodCIDR is the node's pod subnet (its spec.podCIDR).
	PodCIDR string
	// Address is the node's address (its InternalIP): the next hop of a
	// host-gw route, the far end of the overlay.
	Address string
}

// peerRoute is how this node reaches one other node's pod subnet.
type peerRoute struct {
	// Via is the next hop: the node's own address (host-gw), or its VTEP
	// address (the overlay).
	Via string
	// Overlay routes through the vxlan device, onlink.
	Overlay bool
}

func (r peerRoute) String() string {
	if r.Overlay {
		return "via " + r.Via + " dev " + VXLANDevice + " onlink"
	}
	return "via " + r.Via
}

// netState is the part of the host's network that SyncRoutes manages.
type netState struct {
	// Routes are shoal's routes to other nodes' pod subnets, by subnet.
	Routes map[string]peerRoute
	// Neighs are the overlay device's neighbor entries: VTEP address →
	// VTEP MAC.
	Neighs map[string]string
	// FDB are the overlay device's forwarding entries: VTEP MAC → the
	// node's address.
	FDB map[string]string
}

func newNetState() netState {
	return netState{Routes: map[string]peerRoute{}, Neighs: map[string]string{}, FDB: map[string]string{}}
}

// overlay says whether any route of s goes through the overlay.
func (s netState) overlay() bool {
	for _, r := range s.Routes {
		if r.Overlay {
			return true
		}
	}
	return false
}

// withoutOverlay is s less everything of the overlay.
func (s netState) withoutOverlay() netState {
	out := newNetState()
	for dst, r := range s.Routes {
		if !r.Overlay {
			out.Routes[dst] = r
		}
	}
	return out
}

// wantState decides how this node (s) reaches each peer's pod subnet, by
// s.Mode and whether the peer's address is on one of the host's directly
// connected networks (connected), and returns the routes, neighbor and FDB
// entries that takes. A peer that cannot be reached (a bad subnet or
// address, or host-gw to a node on no shared network) is left out, with
// an error naming it; the others are in.
func wantState(s *settings, peers []Peer, connected []*net.IPNet) (netState, []error) {
	want := newNetState()
	var errs []error
	sorted := append([]Peer(nil), peers...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Name != sorted[j].Name {
			return sorted[i].Name < sorted[j].Name
		}
		return sorted[i].PodCIDR < sorted[j].PodCIDR
	})
	type taken struct {
		name   string
		subnet *net.IPNet
	}
	var subnets []taken
	clusterOnes, _ := s.clusterNet.Mask.Size()
	for _, p := range sorted {
		name := p.Name
		if name == "" {
			name = "with pod CIDR " + p.PodCIDR
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("node %s: "+format, append([]any{name}, args...)...))
		}
		ip, subnet, err := net.ParseCIDR(strings.TrimSpace(p.PodCIDR))
		if err != nil || ip.To4() == nil || !ip.Equal(subnet.IP) {
			fail("pod CIDR %q is not an IPv4 network address/prefix", p.PodCIDR)
			continue
		}
		subnet.IP = subnet.IP.To4()
		if ones, _ := subnet.Mask.Size(); !s.clusterNet.Contains(subnet.IP) || ones < clusterOnes {
			fail("pod CIDR %s is outside the cluster CIDR %s", subnet, s.clusterNet)
			continue
		}
		if overlaps(subnet, s.podNet) {
			fail("pod CIDR %s overlaps this node's %s", subnet, s.podNet)
			continue
		}
		clash := ""
		for _, t := range subnets {
			if overlaps(subnet, t.subnet) {
				clash = t.name
				break
			}
		}
		if clash != "" {
			fail("pod CIDR %s overlaps that of node %s", subnet, clash)
			continue
		}
		addr := net.ParseIP(strings.TrimSpace(p.Address)).To4()
		if addr == nil || addr.IsUnspecified() {
			fail("address %q is not an IPv4 address", p.Address)
			continue
		}
		if s.nodeIP != nil && addr.Equal(s.nodeIP) {
			fail("has this node's own address %s", addr)
			continue
		}
		direct := false
		for _, n := range connected {
			if n.Contains(addr) {
				direct = true
				break
			}
		}
		overlay := false
		switch s.Mode {
		case ModeHostGW:
			if !direct {
				fail("address %s is on none of this host's directly connected networks, so host-gw cannot route to it (mode %s or %s can)", addr, ModeAuto, ModeVXLAN)
				continue
			}
		case ModeVXLAN:
			overlay = true
		default: // ModeAuto
			overlay = !direct
		}
		if overlay && s.nodeIP == nil {
			fail("address %s is on none of this host's directly connected networks, and the VXLAN overlay needs this node's address (NodeIP), which is not set", addr)
			continue
		}
		subnets = append(subnets, taken{name, subnet})
		dst := subnet.String()
		if !overlay {
			want.Routes[dst] = peerRoute{Via: addr.String()}
			continue
		}
		vtep, mac := vtepAddr(subnet).String(), vtepMAC(addr).String()
		want.Routes[dst] = peerRoute{Via: vtep, Overlay: true}
		want.Neighs[vtep] = mac
		want.FDB[mac] = addr.String()
	}
	return want, errs
}

func overlaps(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

// syncPlan is what a sync changes: each list sorted.
type syncPlan struct {
	SetRoutes, DelRoutes []string // destination subnets
	SetNeighs, DelNeighs []string // VTEP addresses
	SetFDB, DelFDB       []string // VTEP MACs
}

// planSync compares the state wanted with the one in place: what to set
// (missing, or different) and what to delete (not wanted).
func planSync(want, have netState) syncPlan {
	var p syncPlan
	p.SetRoutes, p.DelRoutes = diff(want.Routes, have.Routes)
	p.SetNeighs, p.DelNeighs = diff(want.Neighs, have.Neighs)
	p.SetFDB, p.DelFDB = diff(want.FDB, have.FDB)
	return p
}

func diff[V comparable](want, have map[string]V) (set, del []string) {
	for k, v := range want {
		if h, ok := have[k]; !ok || h != v {
			set = append(set, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			del = append(del, k)
		}
	}
	sort.Strings(set)
	sort.Strings(del)
	return set, del
}

// connectedNets picks the host's directly connected IPv4 networks out of
// its main routing table: link-scope unicast routes without a gateway,
// other than shoal's own, default routes, and those on the links in skip
// (the pods' bridge and the overlay, whose networks are no way to other
// nodes).
func connectedNets(routes []netlink.Route, skip map[int]bool) []*net.IPNet {
	var out []*net.IPNet
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.To4() == nil || r.Gw != nil || len(r.MultiPath) > 0 ||
			r.Scope != netlink.SCOPE_LINK || r.Type != unix.RTN_UNICAST ||
			r.Protocol == routeProtocol || skip[r.LinkIndex] {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			continue
		}
		out = append(out, r.Dst)
	}
	return out
}

// SyncRoutes makes this host's way to the other nodes' pods that of
// peers, in the Config's Mode: per peer, a route to its pod subnet through
// its address (host-gw) or through the VXLAN overlay, with the overlay's
// neighbor and FDB entries. The overlay's device is created when a peer
// first needs it and deleted when none does. Routes it did not make are
// left alone, and entries of peers no longer in peers are removed. A peer
// that cannot be reached (host-gw to a node on no directly connected
// network, a bad subnet or address) is reported in the error returned, and
// the rest are still set.
func (n *CNI) SyncRoutes(peers []Peer) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return errClosed
	}
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	errs := n.syncRoutes(peers)
	if len(errs) > 0 {
		return fmt.Errorf("podnet: routes to other nodes' pods: %w", errors.Join(errs...))
	}
	return nil
}

func (n *CNI) syncRoutes(peers []Peer) []error {
	h, err := netlink.NewHandleAt(n.hostNS)
	if err != nil {
		return []error{fmt.Errorf("netlink: %w", err)}
	}
	defer h.Close()

	skip := map[int]bool{}
	for _, name := range []string{n.s.BridgeName, VXLANDevice} {
		if l, err := h.LinkByName(name); err == nil {
			skip[l.Attrs().Index] = true
		}
	}
	var main []netlink.Route
	if err := retryDump(func() (err error) { main, err = h.RouteList(nil, netlink.FAMILY_V4); return err }); err != nil {
		return []error{fmt.Errorf("list routes: %w", err)}
	}
	want, errs := wantState(n.s, peers, connectedNets(main, skip))

	var link netlink.Link
	if want.overlay() {
		if link, err = ensureVXLAN(h, n.s); err != nil {
			errs = append(errs, fmt.Errorf("overlay: %w", err))
			want = want.withoutOverlay()
			link = nil
		}
	} else if err := removeVXLAN(h); err != nil {
		errs = append(errs, err)
	}

	have, byDst, err := readNetState(h, link)
	if err != nil {
		return append(errs, err)
	}
	plan := planSync(want, have)

	for _, dst := range plan.DelRoutes {
		r := byDst[dst]
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete the route to %s: %w", dst, err))
		}
	}
	if link != nil {
		idx := link.Attrs().Index
		for _, vtep := range plan.DelNeighs {
			e, err := neighEntry(idx, vtep, "")
			if err == nil {
				if err = h.NeighDel(e); errors.Is(err, unix.ENOENT) {
					err = nil
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("delete the neighbor entry of %s: %w", vtep, err))
			}
		}
		for _, mac := range plan.DelFDB {
			e, err := fdbEntry(idx, mac, have.FDB[mac])
			if err == nil {
				if err = h.NeighDel(e); errors.Is(err, unix.ENOENT) {
					err = nil
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("delete the FDB entry of %s: %w", mac, err))
			}
		}
		for _, mac := range plan.SetFDB {
			e, err := fdbEntry(idx, mac, want.FDB[mac])
			if err == nil {
				err = h.NeighSet(e)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("FDB entry %s dst %s: %w", mac, want.FDB[mac], err))
			}
		}
		for _, vtep := range plan.SetNeighs {
			e, err := neighEntry(idx, vtep, want.Neighs[vtep])
			if err == nil {
				err = h.NeighSet(e)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("neighbor entry %s lladdr %s: %w", vtep, want.Neighs[vtep], err))
			}
		}
	}
	for _, dst := range plan.SetRoutes {
		_, subnet, err := net.ParseCIDR(dst)
		if err != nil {
			errs = append(errs, fmt.Errorf("route to %q: %w", dst, err))
			continue
		}
		pr := want.Routes[dst]
		r := &netlink.Route{Dst: subnet, Gw: net.ParseIP(pr.Via), Protocol: routeProtocol}
		if pr.Overlay {
			r.LinkIndex = link.Attrs().Index
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := h.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route to %s %s: %w", dst, pr, err))
		}
	}
	return errs
}

// readNetState reads what SyncRoutes manages: shoal's routes (also by
// destination, to delete them), and the neighbor and FDB entries of the
// overlay's device link (nil when there is none).
func readNetState(h *netlink.Handle, link netlink.Link) (netState, map[string]netlink.Route, error) {
	have := newNetState()
	var ours []netlink.Route
	if err := retryDump(func() (err error) {
		ours, err = h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
		return err
	}); err != nil {
		return have, nil, fmt.Errorf("list routes: %w", err)
	}
	byDst := map[string]netlink.Route{}
	for _, r := range ours {
		if r.Dst == nil {
			continue
		}
		overlay := link != nil && r.LinkIndex == link.Attrs().Index && r.Flags&int(netlink.FLAG_ONLINK) != 0
		have.Routes[r.Dst.String()] = peerRoute{Via: r.Gw.String(), Overlay: overlay}
		byDst[r.Dst.String()] = r
	}
	if link != nil {
		var err error
		if have.Neighs, have.FDB, err = overlayNeighs(h, link); err != nil {
			return have, nil, err
		}
	}
	return have, byDst, nil
}

// removeRoutes deletes the overlay's device and every route of shoal's to
// other nodes' pod subnets.
func removeRoutes(h *netlink.Handle) error {
	var errs []error
	if err := removeVXLAN(h); err != nil {
		errs = append(errs, err)
	}
	var ours []netlink.Route
	err := retryDump(func() (err error) {
		ours, err = h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
		return err
	})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list routes: %w", err))...)
	}
	for _, r := range ours {
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete the route to %s: %w", r.Dst, err))
		}
	}
	return errors.Join(errs...)
}
