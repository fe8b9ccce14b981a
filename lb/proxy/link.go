package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// vipLink is the dummy link whose addresses are the virtual IPs (a
// bridge without ports where the kernel has no dummy driver): a
// listener can bind a virtual IP only once it is a local address, and the
// kernel then delivers the node's and its pods' packets for it locally.
type vipLink struct {
	name string
	// h's sockets were made by New, so the link is managed in New's
	// network namespace whichever thread later runs Sync or Close.
	h *netlink.Handle
}

// openLink creates the link, or adopts the one a previous run left.
func openLink(name string) (*vipLink, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("proxy: link %s: netlink: %w", name, err)
	}
	v := &vipLink{name: name, h: h}
	if _, err := v.ensure(); err != nil {
		h.Close()
		return nil, err
	}
	return v, nil
}

// ensure returns the link, up, creating it when missing (someone may
// have deleted it since New).
func (v *vipLink) ensure() (netlink.Link, error) {
	link, err := v.h.LinkByName(v.name)
	if _, missing := errors.AsType[netlink.LinkNotFoundError](err); missing {
		attrs := netlink.LinkAttrs{Name: v.name}
		err = v.h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		if errors.Is(err, unix.EOPNOTSUPP) {
			// A kernel built without the dummy driver (this project's
			// test machines are): a bridge without ports holds local
			// addresses just as well, and bridges are always there.
			err = v.h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		}
		if err != nil {
			return nil, fmt.Errorf("proxy: create link %s: %w", v.name, err)
		}
		link, err = v.h.LinkByName(v.name)
	}
	if err != nil {
		return nil, fmt.Errorf("proxy: link %s: %w", v.name, err)
	}
	if t := link.Type(); t != "dummy" && t != "bridge" {
		return nil, fmt.Errorf("proxy: link %s is a %s link, not the dummy (or bridge) link the proxy manages", v.name, t)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := v.h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("proxy: set link %s up: %w", v.name, err)
		}
	}
	return link, nil
}

// add puts the virtual IPs missing from the link on it.
func (v *vipLink) add(vips map[netip.Addr]bool) error {
	link, err := v.ensure()
	if err != nil {
		return err
	}
	have, err := v.addrs(link)
	if err != nil {
		return err
	}
	var errs []error
	for _, vip := range sortedAddrs(vips) {
		if have[vip] {
			continue
		}
		if err := v.h.AddrReplace(link, hostAddr(vip)); err != nil {
			errs = append(errs, fmt.Errorf("proxy: add %s to link %s: %w", vip, v.name, err))
		}
	}
	return errors.Join(errs...)
}

// prune takes the addresses that are not virtual IPs any more off the
// link.
func (v *vipLink) prune(vips map[netip.Addr]bool) error {
	link, err := v.h.LinkByName(v.name)
	if err != nil {
		return fmt.Errorf("proxy: link %s: %w", v.name, err)
	}
	have, err := v.addrs(link)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range sortedAddrs(have) {
		if vips[a] {
			continue
		}
		if err := v.h.AddrDel(link, hostAddr(a)); err != nil {
			errs = append(errs, fmt.Errorf("proxy: remove %s from link %s: %w", a, v.name, err))
		}
	}
	return errors.Join(errs...)
}

// addrs are the link's addresses but its IPv6 link-local one, which the
// kernel gives it and is no virtual IP.
func (v *vipLink) addrs(link netlink.Link) (map[netip.Addr]bool, error) {
	list, err := v.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("proxy: addresses of link %s: %w", v.name, err)
	}
	have := map[netip.Addr]bool{}
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && !ip.Unmap().IsLinkLocalUnicast() {
			have[ip.Unmap()] = true
		}
	}
	return have, nil
}

// remove deletes the link, and with it its addresses.
func (v *vipLink) remove() error {
	defer v.h.Close()
	link, err := v.h.LinkByName(v.name)
	if _, missing := errors.AsType[netlink.LinkNotFoundError](err); missing {
		return nil
	}
	if err == nil {
		err = v.h.LinkDel(link)
	}
	if err != nil {
		return fmt.Errorf("proxy: remove link %s: %w", v.name, err)
	}
	return nil
}

// hostAddr is a as a /32 (or /128). IPv6 duplicate address detection is
// off, or the address could not be bound until it ends.
func hostAddr(a netip.Addr) *netlink.Addr {
	bits := a.BitLen()
	na := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
	if a.Is6() {
		na.Flags = unix.IFA_F_NODAD
	}
	return na
}

func sortedAddrs(set map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
