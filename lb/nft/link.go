package nft

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A packet the node itself sends to a VIP is routed before the output
// hook's DNAT sees it, and a lab host or a node without a default route
// has no route to the service CIDR: connect() would fail with "network
// unreachable" before nftables could help. A dummy link with a route for
// the service CIDR gives those packets a route; DNAT then changes their
// destination and the kernel routes them again, to the endpoint. A VIP
// without endpoints is rejected by the filter chains before the dummy
// would swallow the packet.

// LinkName is the dummy link New creates for the service CIDR route.
const LinkName = "shoal-lb0"

// The link types tried, in order. Kernels built without CONFIG_DUMMY
// (this project's lab kernel among them) get a bridge without ports
// instead: like a dummy it needs no address and forwards nothing, which
// is all the route needs (a route through a link without carrier is still
// used). Not ifb: loading its module makes ifb0 and ifb1 in the host's
// first namespace, whatever namespace asked.
const (
	kindDummy  = "dummy"
	kindBridge = "bridge"
)

func ourKind(kind string) bool { return kind == kindDummy || kind == kindBridge }

// RouteProtocol marks the service CIDR route as the load balancer's
// (rtm_protocol): not 0x53, which the pod network's route sync owns and
// would delete.
const RouteProtocol netlink.RouteProtocol = 0x54

// ensureLink makes the dummy link exist and be up, and the route for
// cidr go through it. Cheap when all is in place, so Sync calls it each
// time to repair what an administrator or another program removed.
func ensureLink(h *netlink.Handle, cidr netip.Prefix, src netip.Addr) error {
	link, err := h.LinkByName(LinkName)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		if link, err = addLink(h); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("find link %s: %w", LinkName, err)
	case !ourKind(link.Type()):
		return fmt.Errorf("link %s exists and is a %s, not the dummy shoal makes", LinkName, link.Type())
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring up link %s: %w", LinkName, err)
		}
	}
	p := cidr.Masked()
	dst := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
	r := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       dst,
		Scope:     netlink.SCOPE_LINK,
		Protocol:  RouteProtocol,
	}
	if src.Is4() {
		r.Src = src.AsSlice()
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %s: %w", p, LinkName, err)
	}
	return nil
}

// addLink creates the link with the first kind the kernel has.
func addLink(h *netlink.Handle) (netlink.Link, error) {
	attrs := netlink.LinkAttrs{Name: LinkName}
	var errs []error
	for _, kind := range []string{kindDummy, kindBridge} {
		var l netlink.Link = &netlink.Dummy{LinkAttrs: attrs}
		if kind == kindBridge {
			l = &netlink.Bridge{LinkAttrs: attrs}
		}
		err := h.LinkAdd(l)
		if err == nil {
			link, err := h.LinkByName(LinkName)
			if err != nil {
				return nil, fmt.Errorf("find link %s: %w", LinkName, err)
			}
			return link, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", kind, err))
		if !errors.Is(err, unix.EOPNOTSUPP) {
			break // not a missing driver: trying another kind will not help
		}
	}
	return nil, fmt.Errorf("create link %s: %w", LinkName, errors.Join(errs...))
}

// removeLink deletes the dummy link, and with it its route. A missing
// link is not an error.
func removeLink(h *netlink.Handle) error {
	link, err := h.LinkByName(LinkName)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find link %s: %w", LinkName, err)
	}
	if !ourKind(link.Type()) {
		return nil // not ours
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("delete link %s: %w", LinkName, err)
	}
	return nil
}
