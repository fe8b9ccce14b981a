package podnet

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The VXLAN overlay. Every node that needs it has one vxlan device,
// shoal.vxlan, with learning off: nothing is flooded or learnt, each entry
// is written by SyncRoutes from the Node objects. For each other node P
// reached through the overlay (P's pod subnet 10.244.5.0/24, address
// 192.168.20.2):
//
//	route  10.244.5.0/24 via 10.244.5.0 dev shoal.vxlan onlink   (proto 0x53)
//	neigh  10.244.5.0 lladdr 02:53:c0:a8:14:02 PERMANENT         (P's VTEP)
//	fdb    02:53:c0:a8:14:02 dst 192.168.20.2 self permanent     (where it is)
//
// and the device itself carries this node's VTEP address, the network
// address of its own pod subnet as a /32 (the source of the host's own
// packets to other nodes' pods, and what the others' neighbor entries
// name). A node's VTEP MAC is derived from its address, so no MAC has to
// be published anywhere.
const (
	// VXLANDevice is the name of the overlay's device.
	VXLANDevice = "shoal.vxlan"
	// VXLANID is the overlay's VNI.
	VXLANID = 1
	// VXLANPort is the overlay's UDP port (IANA's).
	VXLANPort = 4789
	// vxlanOverhead is what encapsulation adds to each packet: outer IPv4
	// (20) + UDP (8) + VXLAN (8) headers and the inner Ethernet header (14).
	vxlanOverhead = 50
)

// vtepMAC is the MAC address of the VTEP of the node with address ip
// (IPv4): locally administered, unicast, 02:53 then the four bytes of the
// address (192.168.20.2 → 02:53:c0:a8:14:02).
func vtepMAC(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	return net.HardwareAddr{0x02, 0x53, v4[0], v4[1], v4[2], v4[3]}
}

// vtepAddr is the VTEP address of the node with pod subnet n: the
// subnet's network address (10.244.5.0/24 → 10.244.5.0), never given to a
// pod (host-local hands out from .2, the bridge holds .1).
func vtepAddr(n *net.IPNet) net.IP { return append(net.IP(nil), n.IP.To4()...) }

// vxlanMismatch says what of an existing vxlan device differs from what
// this node's overlay needs in a way that takes a new device (the MAC
// address and the MTU are set in place); "" when nothing.
func vxlanMismatch(v *netlink.Vxlan, nodeIP net.IP) string {
	switch {
	case v.VxlanId != VXLANID:
		return fmt.Sprintf("VNI %d, want %d", v.VxlanId, VXLANID)
	case v.Port != VXLANPort:
		return fmt.Sprintf("port %d, want %d", v.Port, VXLANPort)
	case !v.SrcAddr.Equal(nodeIP):
		return fmt.Sprintf("local address %v, want %s", v.SrcAddr, nodeIP)
	case v.Learning:
		return "learning on"
	case v.FlowBased:
		return "external (flow-based)"
	case v.Group != nil && !v.Group.IsUnspecified():
		return fmt.Sprintf("remote/group %s", v.Group)
	}
	return ""
}

// ensureVXLAN makes the overlay's device what s needs, creating it when
// there is none (or replacing one set up differently, by an earlier
// configuration), and returns it: up, with this node's VTEP MAC, the MTU
// of the host less the overlay's cost, and this node's VTEP address as its
// only IPv4 address.
func ensureVXLAN(h *netlink.Handle, s *settings) (netlink.Link, error) {
	if s.nodeIP == nil {
		return nil, errors.New("the VXLAN overlay needs this node's address (NodeIP), which is not set")
	}
	if err := checkLocalAddr(h, s.nodeIP); err != nil {
		return nil, err
	}
	mac := vtepMAC(s.nodeIP)
	mtu := s.hostMTU - vxlanOverhead
	link, err := h.LinkByName(VXLANDevice)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		link = nil
	case err != nil:
		return nil, fmt.Errorf("look up %s: %w", VXLANDevice, err)
	default:
		v, ok := link.(*netlink.Vxlan)
		if !ok {
			return nil, fmt.Errorf("a %s link named %s is in the way of the overlay's device", link.Type(), VXLANDevice)
		}
		if why := vxlanMismatch(v, s.nodeIP); why != "" {
			if err := h.LinkDel(link); err != nil {
				return nil, fmt.Errorf("replace %s (%s): delete: %w", VXLANDevice, why, err)
			}
			link = nil
		}
	}
	if link == nil {
		v := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: VXLANDevice, MTU: mtu, HardwareAddr: mac},
			VxlanId:   VXLANID,
			SrcAddr:   s.nodeIP,
			Port:      VXLANPort,
			Learning:  false,
		}
		if err := h.LinkAdd(v); err != nil {
			return nil, fmt.Errorf("create %s (VNI %d, local %s, port %d): %w", VXLANDevice, VXLANID, s.nodeIP, VXLANPort, err)
		}
		if link, err = h.LinkByName(VXLANDevice); err != nil {
			return nil, fmt.Errorf("look up %s after creating it: %w", VXLANDevice, err)
		}
	}
	a := link.Attrs()
	if a.MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("set the MTU of %s to %d: %w", VXLANDevice, mtu, err)
		}
	}
	if a.HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(link, mac); err != nil {
			return nil, fmt.Errorf("set the MAC address of %s to %s: %w", VXLANDevice, mac, err)
		}
	}
	if err := setOnlyAddr(h, link, &net.IPNet{IP: vtepAddr(s.podNet), Mask: net.CIDRMask(32, 32)}); err != nil {
		return nil, err
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bring %s up: %w", VXLANDevice, err)
		}
	}
	return link, nil
}

// checkLocalAddr fails unless ip is an address of one of the host's
// interfaces: the overlay's packets leave from it, and the other nodes
// send theirs to it.
func checkLocalAddr(h *netlink.Handle, ip net.IP) error {
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return nil
		}
	}
	return fmt.Errorf("this node's address %s (NodeIP) is on none of the host's interfaces; the overlay cannot use it", ip)
}

// setOnlyAddr makes want the only IPv4 address of link.
func setOnlyAddr(h *netlink.Handle, link netlink.Link, want *net.IPNet) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list the addresses of %s: %w", link.Attrs().Name, err)
	}
	found := false
	for _, a := range addrs {
		if a.IPNet != nil && a.IPNet.String() == want.String() {
			found = true
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove %s from %s: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	if !found {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: want}); err != nil {
			return fmt.Errorf("give %s the address %s: %w", link.Attrs().Name, want, err)
		}
	}
	return nil
}

// vxlanLink returns the overlay's device, or nil when there is none (or
// the link of that name is not a vxlan device, so not one of ours).
func vxlanLink(h *netlink.Handle) (netlink.Link, error) {
	link, err := h.LinkByName(VXLANDevice)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", VXLANDevice, err)
	}
	if _, ok := link.(*netlink.Vxlan); !ok {
		return nil, nil
	}
	return link, nil
}

// removeVXLAN deletes the overlay's device if there is one; its routes,
// neighbor and FDB entries go with it.
func removeVXLAN(h *netlink.Handle) error {
	link, err := vxlanLink(h)
	if err != nil || link == nil {
		return err
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("delete %s: %w", VXLANDevice, err)
	}
	return nil
}

// overlayNeighs reads the neighbor entries (VTEP address → MAC) and the
// FDB entries (MAC → node address) of the overlay's device. A neighbor
// entry that is not permanent is marked so, and never matches one wanted.
func overlayNeighs(h *netlink.Handle, link netlink.Link) (neighs, fdb map[string]string, err error) {
	idx := link.Attrs().Index
	neighs, fdb = map[string]string{}, map[string]string{}
	var list []netlink.Neigh
	err = retryDump(func() (err error) { list, err = h.NeighList(idx, netlink.FAMILY_V4); return err })
	if err != nil {
		return nil, nil, fmt.Errorf("list the neighbors of %s: %w", VXLANDevice, err)
	}
	for _, n := range list {
		if n.LinkIndex != idx || n.IP == nil {
			continue
		}
		v := n.HardwareAddr.String()
		if n.State&netlink.NUD_PERMANENT == 0 {
			v += " (not permanent)" // so that it is set again, permanent
		}
		neighs[n.IP.String()] = v
	}
	err = retryDump(func() (err error) { list, err = h.NeighList(idx, unix.AF_BRIDGE); return err })
	if err != nil {
		return nil, nil, fmt.Errorf("list the FDB of %s: %w", VXLANDevice, err)
	}
	for _, n := range list {
		if n.LinkIndex != idx || n.IP == nil || len(n.HardwareAddr) != 6 || n.HardwareAddr[0]&1 != 0 {
			continue // not a unicast entry with a remote
		}
		fdb[n.HardwareAddr.String()] = n.IP.String()
	}
	return neighs, fdb, nil
}

// neighEntry is the permanent neighbor entry on the overlay's device that
// resolves a VTEP address to its MAC (none, to name an entry to delete
// that has none).
func neighEntry(idx int, vtep, mac string) (*netlink.Neigh, error) {
	ip := net.ParseIP(vtep)
	var hw net.HardwareAddr
	var err error
	if mac != "" {
		hw, err = net.ParseMAC(mac)
	}
	if ip == nil || err != nil {
		return nil, fmt.Errorf("neighbor %s → %s: not an address and a MAC", vtep, mac)
	}
	return &netlink.Neigh{
		LinkIndex:    idx,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           ip,
		HardwareAddr: hw,
	}, nil
}

// fdbEntry is the permanent FDB entry on the overlay's device that sends
// frames for a VTEP MAC to its node's address.
func fdbEntry(idx int, mac, dst string) (*netlink.Neigh, error) {
	ip := net.ParseIP(dst)
	hw, err := net.ParseMAC(mac)
	if ip == nil || err != nil {
		return nil, fmt.Errorf("FDB entry %s → %s: not a MAC and an address", mac, dst)
	}
	return &netlink.Neigh{
		LinkIndex:    idx,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           ip,
		HardwareAddr: hw,
	}, nil
}

// retryDump runs a netlink dump again, a few times, while the kernel
// reports it interrupted by a concurrent change (its result may then be
// inconsistent).
func retryDump(dump func() error) error {
	var err error
	for range 3 {
		if err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}
