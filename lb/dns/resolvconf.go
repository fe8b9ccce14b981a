package dns

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// resolvConfPath is where New reads the node's resolvers.
const resolvConfPath = "/etc/resolv.conf"

// ResolvConf returns a pod's /etc/resolv.conf: this server as its only
// nameserver, and Kubernetes' search path, so that a pod finds a service
// of its own namespace by its bare name and another namespace's as
// NAME.NS. ndots:5 makes a name with fewer than 5 dots try the search
// path first (web.other.svc has 2), as Kubernetes does. domain ""
// means DefaultDomain.
func ResolvConf(nameserver netip.Addr, namespace, domain string) []byte {
	if domain == "" {
		domain = DefaultDomain
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	ns := strings.ToLower(namespace)
	var b bytes.Buffer
	fmt.Fprintf(&b, "search %s.svc.%s svc.%s %s\n", ns, domain, domain, domain)
	fmt.Fprintf(&b, "nameserver %s\n", nameserver.Unmap())
	b.WriteString("options ndots:5\n")
	return b.Bytes()
}

// upstreamsFromResolvConf returns the nameservers of the resolv.conf at
// path as host:port.
func upstreamsFromResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read nameservers: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("%s names no nameserver", path)
	}
	ups := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		ups = append(ups, net.JoinHostPort(s, cc.Port))
	}
	return ups, nil
}

// normaliseUpstream turns an upstream of Config into host:port.
func normaliseUpstream(u string) (string, error) {
	if a, err := netip.ParseAddr(u); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	host, port, err := net.SplitHostPort(u)
	if err != nil {
		return "", fmt.Errorf("dns: upstream %q: want host:port or an address: %w", u, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("dns: upstream %q: bad port %q", u, port)
	}
	if host == "" {
		return "", fmt.Errorf("dns: upstream %q: no host", u)
	}
	return u, nil
}
