package cluster

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// DefaultNodePortRange is where NodePort services get their published
// ports when --init names no other range (Kubernetes' default).
const DefaultNodePortRange = "30000-32767"

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi int32 }

func (r portRange) String() string { return fmt.Sprintf("%d-%d", r.lo, r.hi) }

// parsePortRange reads "LO-HI".
func parsePortRange(s string) (portRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, errA := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b, errB := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if !ok || errA != nil || errB != nil || a == 0 || a > b {
		return portRange{}, fmt.Errorf("%q: want LOW-HIGH such as %s", s, DefaultNodePortRange)
	}
	return portRange{int32(a), int32(b)}, nil
}

// serviceAddressing is where services get virtual IPs and node ports.
type serviceAddressing struct {
	cidr      netip.Prefix
	nodePorts portRange
}

func addressingOf(st *storepb.ClusterSettings) serviceAddressing {
	a := serviceAddressing{
		cidr:      netip.MustParsePrefix(DefaultServiceCIDR),
		nodePorts: portRange{30000, 32767},
	}
	if p, err := netip.ParsePrefix(st.GetServiceCidr()); err == nil && p.Addr().Is4() {
		a.cidr = p.Masked()
	}
	if r, err := parsePortRange(st.GetNodePortRange()); err == nil {
		a.nodePorts = r
	}
	return a
}

// allocateServiceAddresses gives a Service being written its virtual IP
// and node ports. It runs inside the raft apply, so it must decide the
// same on every replica: it reads only the transaction and starts its
// search at a hash of the service's name. What the user asked for is kept
// when it is free; what the stored service already has is kept when the
// write leaves it out (the same manifest applied again), so an address
// never changes under the clients that use it.
func allocateServiceAddresses(txn *memdb.Txn, settings *storepb.ClusterSettings, in, cur *api.Service) (*api.Service, error) {
	next := proto.Clone(in).(*api.Service)
	if next.Spec == nil {
		next.Spec = &api.ServiceSpec{}
	}
	spec := next.Spec
	addr := addressingOf(settings)
	key := api.KeyOf(next)
	usedIPs, usedPorts, err := serviceAllocations(txn, key)
	if err != nil {
		return nil, err
	}
	curIP := cur.GetSpec().GetClusterIp()
	switch {
	case spec.ClusterIp == "" && curIP != "":
		spec.ClusterIp = curIP
	case cur != nil && spec.ClusterIp != curIP:
		return nil, status.Errorf(codes.InvalidArgument, "spec.clusterIP: may not change (it is %q; delete the service to give it another)", curIP)
	case spec.ClusterIp == "None" || (cur != nil && spec.ClusterIp == curIP):
	case spec.ClusterIp == "":
		ip, ok := freeAddress(addr.cidr, usedIPs, key)
		if !ok {
			return nil, status.Errorf(codes.ResourceExhausted, "spec.clusterIP: the service CIDR %s has no free address", addr.cidr)
		}
		spec.ClusterIp = ip.String()
	default:
		ip, err := netip.ParseAddr(spec.ClusterIp)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "spec.clusterIP: %q is not an IPv4 address", spec.ClusterIp)
		}
		if !usableAddress(addr.cidr, ip) {
			return nil, status.Errorf(codes.InvalidArgument, "spec.clusterIP: %s is not a usable address of the service CIDR %s", ip, addr.cidr)
		}
		if owner, taken := usedIPs[ip]; taken {
			return nil, status.Errorf(codes.AlreadyExists, "spec.clusterIP: %s is already allocated to service %s", ip, owner)
		}
	}

	if spec.Type != "NodePort" {
		for _, p := range spec.Ports {
			if p.GetNodePort() != 0 {
				return nil, status.Errorf(codes.InvalidArgument, "spec.ports: nodePort may only be set when the type is NodePort")
			}
		}
		return next, nil
	}
	// Node ports the stored service has, by port and protocol, so that a
	// write that leaves them out keeps them.
	kept := map[string]int32{}
	for _, p := range cur.GetSpec().GetPorts() {
		if p.GetNodePort() != 0 {
			kept[portKey(p)] = p.GetNodePort()
		}
	}
	mine := map[int32]bool{}
	for i, p := range spec.Ports {
		if p == nil {
			continue
		}
		if p.NodePort == 0 {
			continue
		}
		if p.NodePort < addr.nodePorts.lo || p.NodePort > addr.nodePorts.hi {
			return nil, status.Errorf(codes.InvalidArgument, "spec.ports[%d].nodePort: %d is outside the node port range %s", i, p.NodePort, addr.nodePorts)
		}
		if owner, taken := usedPorts[p.NodePort]; taken {
			return nil, status.Errorf(codes.AlreadyExists, "spec.ports[%d].nodePort: %d is already allocated to service %s", i, p.NodePort, owner)
		}
		mine[p.NodePort] = true
	}
	for i, p := range spec.Ports {
		if p == nil || p.NodePort != 0 {
			continue
		}
		if k, ok := kept[portKey(p)]; ok && !mine[k] {
			if _, taken := usedPorts[k]; !taken {
				p.NodePort = k
				mine[k] = true
				continue
			}
		}
		np, ok := freePort(addr.nodePorts, usedPorts, mine, fmt.Sprintf("%s/%d", key, i))
		if !ok {
			return nil, status.Errorf(codes.ResourceExhausted, "spec.ports[%d].nodePort: the node port range %s has no free port", i, addr.nodePorts)
		}
		p.NodePort = np
		mine[np] = true
	}
	return next, nil
}

func portKey(p *api.ServicePort) string {
	return fmt.Sprintf("%d/%s", p.GetPort(), p.GetProtocol())
}

// serviceAllocations is the virtual IPs and node ports of every service
// but the one named skip, each with its owner's key.
func serviceAllocations(txn *memdb.Txn, skip string) (map[netip.Addr]string, map[int32]string, error) {
	it, err := txn.Get("Service", "id")
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "list services: %v", err)
	}
	ips := map[netip.Addr]string{}
	ports := map[int32]string{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*record)
		if r.Key == skip {
			continue
		}
		s, ok := r.Obj.(*api.Service)
		if !ok {
			continue
		}
		if ip, err := netip.ParseAddr(s.GetSpec().GetClusterIp()); err == nil {
			ips[ip] = r.Key
		}
		for _, p := range s.GetSpec().GetPorts() {
			if p.GetNodePort() != 0 {
				ports[p.GetNodePort()] = r.Key
			}
		}
	}
	return ips, ports, nil
}

// usableAddress: inside the CIDR and neither its network nor its
// broadcast address.
func usableAddress(cidr netip.Prefix, ip netip.Addr) bool {
	if !ip.Is4() || !cidr.Contains(ip) {
		return false
	}
	off := addrOffset(cidr, ip)
	return off != 0 && off != cidrSize(cidr)-1
}

func cidrSize(cidr netip.Prefix) uint32 { return uint32(1) << (32 - cidr.Bits()) }

func addrOffset(cidr netip.Prefix, ip netip.Addr) uint32 {
	b, a := cidr.Addr().As4(), ip.As4()
	return be32(a) - be32(b)
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// freeAddress is the first address not in used, searching from a point
// that the name decides (so that services created together do not all
// probe the same addresses) and wrapping around.
func freeAddress(cidr netip.Prefix, used map[netip.Addr]string, name string) (netip.Addr, bool) {
	size := cidrSize(cidr)
	if size < 4 {
		return netip.Addr{}, false
	}
	usable := size - 2 // no network, no broadcast address
	start := hashOf(name) % usable
	base := be32(cidr.Addr().As4())
	for i := uint32(0); i < usable; i++ {
		off := 1 + (start+i)%usable
		v := base + off
		ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		if _, taken := used[ip]; !taken {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// freePort is like freeAddress for node ports; mine are the ports this
// service already took in the same write.
func freePort(r portRange, used map[int32]string, mine map[int32]bool, name string) (int32, bool) {
	n := uint32(r.hi-r.lo) + 1
	start := hashOf(name) % n
	for i := uint32(0); i < n; i++ {
		p := r.lo + int32((start+i)%n)
		if _, taken := used[p]; !taken && !mine[p] {
			return p, true
		}
	}
	return 0, false
}

func hashOf(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}
