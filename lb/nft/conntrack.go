package nft

import (
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/lb"
)

// A UDP "connection" lives in conntrack as long as packets keep coming,
// and conntrack keeps sending it to the endpoint chosen for its first
// packet. So when a UDP endpoint goes away, its entries are deleted and
// the flow's next packet is balanced again; and when a port gets its
// first endpoint, entries made while it had none (not DNATed) go too.

// frontend is where a client sends: a VIP and port, or (vip invalid) a
// node port on any of the node's addresses.
type frontend struct {
	vip  netip.Addr
	port uint16
}

// staleUDP matches the conntrack entries to delete; it implements
// netlink.CustomConntrackFilter.
type staleUDP struct {
	// gone are removed endpoints → the frontends they served: entries
	// from one of those frontends answered by the endpoint.
	gone map[netip.AddrPort][]frontend
	// fresh are frontends of ports that had no endpoint: entries to them
	// that were not DNATed.
	fresh map[frontend]bool
}

func (s *staleUDP) empty() bool { return len(s.gone) == 0 && len(s.fresh) == 0 }

// staleConntrack compares two renderings. old nil: nothing was
// programmed, so nothing is stale.
func staleConntrack(old, new *desc) *staleUDP {
	s := &staleUDP{gone: map[netip.AddrPort][]frontend{}, fresh: map[frontend]bool{}}
	if old == nil {
		return s
	}
	for id, op := range old.ports {
		if op.proto != lb.UDP {
			continue
		}
		np := new.ports[id]
		var keep map[netip.AddrPort]bool
		if np != nil {
			keep = make(map[netip.AddrPort]bool, len(np.endpoints))
			for _, ep := range np.endpoints {
				keep[ep] = true
			}
		}
		fronts := op.frontends()
		for _, ep := range op.endpoints {
			if !keep[ep] {
				s.gone[ep] = append(s.gone[ep], fronts...)
			}
		}
	}
	for id, np := range new.ports {
		if np.proto != lb.UDP || len(np.endpoints) == 0 {
			continue
		}
		if op := old.ports[id]; op == nil || len(op.endpoints) == 0 {
			for _, f := range np.frontends() {
				s.fresh[f] = true
			}
		}
	}
	return s
}

func (p *portState) frontends() []frontend {
	var out []frontend
	if p.vip.IsValid() {
		out = append(out, frontend{p.vip, p.port})
	}
	if p.nodePort != 0 {
		out = append(out, frontend{port: p.nodePort})
	}
	return out
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (s *staleUDP) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	if f.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, ok1 := netip.AddrFromSlice(f.Forward.DstIP)
	replySrc, ok2 := netip.AddrFromSlice(f.Reverse.SrcIP)
	if !ok1 || !ok2 {
		return false
	}
	dst, replySrc = dst.Unmap(), replySrc.Unmap()
	for _, fr := range s.gone[netip.AddrPortFrom(replySrc, f.Reverse.SrcPort)] {
		if fr.matches(dst, f.Forward.DstPort) {
			return true
		}
	}
	// Not DNATed: the reply comes from where the client sent.
	if replySrc == dst && f.Reverse.SrcPort == f.Forward.DstPort {
		return s.fresh[frontend{dst, f.Forward.DstPort}] || s.fresh[frontend{port: f.Forward.DstPort}]
	}
	return false
}

func (fr frontend) matches(dst netip.Addr, port uint16) bool {
	if fr.port != port {
		return false
	}
	return !fr.vip.IsValid() || fr.vip == dst
}

// deleteStale deletes the matching entries and returns how many.
func deleteStale(h *netlink.Handle, s *staleUDP) (uint, error) {
	return h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, s)
}
