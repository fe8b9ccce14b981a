package podnet

import (
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
)

// routeProtocol marks the routes to other nodes' pod subnets as shoal's
// (the rtm_protocol of each), so that a sync changes those and no other.
const routeProtocol netlink.RouteProtocol = 0x53

// PlanRoutes compares the routes wanted (pod subnet → the node's address)
// with those in place and returns the subnets to set (added or pointed
// elsewhere) and to delete, each sorted.
func PlanRoutes(want, have map[string]string) (set, del []string) {
	for subnet, via := range want {
		if have[subnet] != via {
			set = append(set, subnet)
		}
	}
	for subnet := range have {
		if _, ok := want[subnet]; !ok {
			del = append(del, subnet)
		}
	}
	sort.Strings(set)
	sort.Strings(del)
	return set, del
}

// SyncRoutes makes the host's routes to other nodes' pod subnets those of
// want (subnet → the node's address, reached directly on a shared link:
// host-gw). Routes it did not make are left alone. A subnet whose node is
// not on a directly connected network cannot be routed so: its error is
// returned with the others, and the rest are still set.
func (n *CNI) SyncRoutes(want map[string]string) error {
	h, err := netlink.NewHandleAt(n.hostNS)
	if err != nil {
		return fmt.Errorf("podnet: netlink: %w", err)
	}
	defer h.Close()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("podnet: list routes: %w", err)
	}
	have := map[string]string{}
	byDst := map[string]netlink.Route{}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		have[r.Dst.String()] = r.Gw.String()
		byDst[r.Dst.String()] = r
	}
	set, del := PlanRoutes(want, have)
	var errs []error
	for _, subnet := range del {
		r := byDst[subnet]
		if err := h.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("delete route to %s: %w", subnet, err))
		}
	}
	for _, subnet := range set {
		_, dst, err := net.ParseCIDR(subnet)
		if err != nil {
			errs = append(errs, fmt.Errorf("route to %q: %w", subnet, err))
			continue
		}
		gw := net.ParseIP(want[subnet])
		if gw == nil {
			errs = append(errs, fmt.Errorf("route to %s: %q is not an address", subnet, want[subnet]))
			continue
		}
		if err := h.RouteReplace(&netlink.Route{Dst: dst, Gw: gw, Protocol: routeProtocol}); err != nil {
			errs = append(errs, fmt.Errorf("route to %s via %s: %w", subnet, gw, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("podnet: routes: %v", errs)
	}
	return nil
}
