package cluster

import (
	"fmt"
	"net/netip"
)

// nodeSubnetBits is the size of each node's pod subnet: a /24, 254 pods.
const nodeSubnetBits = 24

// checkPodCIDR refuses a pod CIDR that cannot be split into node subnets.
func checkPodCIDR(cidr string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("pod CIDR %q: %w", cidr, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("pod CIDR %q: only IPv4 is supported", cidr)
	}
	if p.Bits() > nodeSubnetBits-1 {
		return netip.Prefix{}, fmt.Errorf("pod CIDR %q: must be /%d or larger, to hold several /%d node subnets", cidr, nodeSubnetBits-1, nodeSubnetBits)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("pod CIDR %q: host bits set (did you mean %s?)", cidr, p.Masked())
	}
	return p, nil
}

// allocateNodeSubnet returns the first /24 of cluster that no node uses.
func allocateNodeSubnet(cluster string, used []string) (string, error) {
	p, err := checkPodCIDR(cluster)
	if err != nil {
		return "", err
	}
	taken := map[netip.Prefix]bool{}
	for _, u := range used {
		if s, err := netip.ParsePrefix(u); err == nil {
			taken[s.Masked()] = true
		}
	}
	count := 1 << (nodeSubnetBits - p.Bits())
	base := p.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := 0; i < count; i++ {
		a := start + uint32(i)<<(32-nodeSubnetBits)
		s := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), nodeSubnetBits)
		if !taken[s] {
			return s.String(), nil
		}
	}
	return "", fmt.Errorf("pod CIDR %s is full: all %d node subnets are leased", cluster, count)
}
