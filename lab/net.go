package lab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// subnetInUse reports whether a link of the root namespace has an address
// in 10.77.x.0/24.
func subnetInUse(x byte) bool {
	addrs, _ := netlink.AddrList(nil, netlink.FAMILY_V4)
	for _, a := range addrs {
		if ip := a.IP.To4(); ip != nil && ip[0] == 10 && ip[1] == 77 && ip[2] == x {
			return true
		}
	}
	return false
}

// pickSubnet chooses a 10.77.X.0/24 that no link of the root namespace
// has an address in, so that two labs at once do not share a subnet.
func pickSubnet() (byte, error) {
	used := map[byte]bool{}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("lab: list addresses: %w", err)
	}
	for _, a := range addrs {
		ip := a.IP.To4()
		if ip != nil && ip[0] == 10 && ip[1] == 77 {
			used[ip[2]] = true
		}
	}
	b := make([]byte, 1)
	for range 64 {
		if _, err := rand.Read(b); err != nil {
			return 0, err
		}
		x := 1 + b[0]%250
		if !used[x] {
			return x, nil
		}
	}
	return 0, errors.New("lab: no free 10.77.X.0/24 subnet")
}

// createBridge adds the lab's bridge in the root namespace with gw/24.
func createBridge(name string, gw net.IP) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("lab: add bridge %s: %w", name, err)
	}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: gw, Mask: net.CIDRMask(24, 32)}}); err != nil {
		return fmt.Errorf("lab: address of bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("lab: bridge %s up: %w", name, err)
	}
	return nil
}

// createNamedNetNS makes a network namespace bound at /run/netns/name
// (as `ip netns add` does) without moving the caller into it.
func createNamedNetNS(name string) (err error) {
	done := make(chan error, 1)
	go func() {
		// The thread enters the new namespace; it is given back only if
		// it could be returned to the original one, otherwise it ends
		// with the goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if err != nil {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			done <- err
			return
		}
		h.Close()
		if err := netns.Set(orig); err != nil {
			done <- fmt.Errorf("back to the original namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("lab: create netns %s: %w", name, err)
	}
	return nil
}

// wireHost joins namespace nsName to the bridge by a veth pair (hostVeth in
// the root namespace, eth0 in the host) and gives eth0 ip/24, lo up and a
// default route via gw.
func wireHost(bridge, nsName, hostVeth string, ip, gw net.IP) error {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("lab: bridge %s: %w", bridge, err)
	}
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return fmt.Errorf("lab: netns %s: %w", nsName, err)
	}
	defer ns.Close()
	peerTmp := hostVeth + "p"
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostVeth, MasterIndex: br.Attrs().Index},
		PeerName:      peerTmp,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("lab: add veth %s: %w", hostVeth, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("lab: veth %s up: %w", hostVeth, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("lab: netlink in %s: %w", nsName, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lab: lo in %s: %w", nsName, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lab: lo up in %s: %w", nsName, err)
	}
	peer, err := h.LinkByName(peerTmp)
	if err != nil {
		return fmt.Errorf("lab: veth peer in %s: %w", nsName, err)
	}
	if err := h.LinkSetName(peer, "eth0"); err != nil {
		return fmt.Errorf("lab: rename veth peer in %s: %w", nsName, err)
	}
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}}); err != nil {
		return fmt.Errorf("lab: address in %s: %w", nsName, err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("lab: eth0 up in %s: %w", nsName, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("lab: default route in %s: %w", nsName, err)
	}
	return nil
}

// setLink sets a root-namespace link up or down.
func setLink(name string, up bool) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	if up {
		err = netlink.LinkSetUp(l)
	} else {
		err = netlink.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("lab: link %s up=%v: %w", name, up, err)
	}
	return nil
}

// deleteLink removes a root-namespace link if it exists.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("lab: delete link %s: %w", name, err)
	}
	return nil
}

// removeNetNSMount unmounts and removes a namespace bound under /run/netns.
func removeNetNSMount(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("lab: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: remove %s: %w", path, err)
	}
	return nil
}

// netnsInode returns the inode identifying the namespace bound at path.
func netnsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// dialIn opens a TCP connection from inside the namespace at nsPath: the
// socket is made on a locked thread that has entered the namespace (a
// socket keeps the namespace it was made in), then the thread goes back.
func dialIn(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		// The socket is made by this goroutine, on this thread; a
		// numeric address needs no resolver.
		d := net.Dialer{Timeout: 3 * time.Second}
		if dl, ok := ctx.Deadline(); ok {
			d.Deadline = dl
		}
		c, err := d.Dial("tcp", addr)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the thread ends with this goroutine
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// forwardRule is the iptables rule that lets the lab's bridged traffic
// through the root namespace's FORWARD chain. Bridged packets pass that
// chain when br_netfilter is loaded with bridge-nf-call-iptables on, and a
// Docker engine on the machine sets its policy to DROP: without the rule,
// the hosts cannot reach each other there.
func forwardRule(bridge string) []string {
	return []string{"FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", "shoal lab " + bridge, "-j", "ACCEPT"}
}

// allowForward inserts forwardRule when iptables' FORWARD chain has rules
// or a policy other than ACCEPT. Otherwise nothing is added: inserting a
// rule would create iptables' filter table on a machine that had none.
func allowForward(bridge string) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	cur, err := exec.Command("iptables", "-w", "-S", "FORWARD").Output()
	if err != nil {
		return fmt.Errorf("lab: iptables -S FORWARD: %w", err)
	}
	if strings.TrimSpace(string(cur)) == "-P FORWARD ACCEPT" {
		return nil
	}
	if out, err := exec.Command("iptables", append([]string{"-w", "-I"}, forwardRule(bridge)...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("lab: iptables -I %v: %w: %s", forwardRule(bridge), err, out)
	}
	return nil
}

// removeForward deletes every copy of forwardRule; none is no error.
func removeForward(bridge string) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	for range 10 {
		if exec.Command("iptables", append([]string{"-w", "-C"}, forwardRule(bridge)...)...).Run() != nil {
			return nil
		}
		if out, err := exec.Command("iptables", append([]string{"-w", "-D"}, forwardRule(bridge)...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("lab: iptables -D %v: %w: %s", forwardRule(bridge), err, out)
		}
	}
	return fmt.Errorf("lab: iptables rule %v keeps coming back", forwardRule(bridge))
}

// AddRootRoutes routes each CIDR (a node's pod subnet) through its host's
// address from the root namespace. The routes go through the lab's
// bridge, so the kernel removes them with it.
func (l *Lab) AddRootRoutes(viaHost map[string]string) error {
	for cidr, via := range viaHost {
		_, dst, err := net.ParseCIDR(cidr)
		if err != nil {
			return fmt.Errorf("lab: route %s: %w", cidr, err)
		}
		if err := netlink.RouteReplace(&netlink.Route{Dst: dst, Gw: net.ParseIP(via)}); err != nil {
			return fmt.Errorf("lab: route %s via %s: %w", cidr, via, err)
		}
	}
	return nil
}
