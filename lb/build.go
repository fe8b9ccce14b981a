package lb

import (
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/shoalproj/shoal/api"
)

// Build turns the API's Services and their Endpoints (by namespace/name
// key, api.Key) into what the dataplanes program: per service port, the
// ready addresses with the port the endpoints controller (or the user, for
// a service without a selector) resolved for it. Endpoint ports are
// matched to service ports by name and protocol, as in Kubernetes.
func Build(services []*api.Service, endpoints map[string]*api.Endpoints) []Service {
	out := make([]Service, 0, len(services))
	for _, svc := range services {
		spec := svc.GetSpec()
		s := Service{Namespace: svc.GetMetadata().GetNamespace(), Name: svc.GetMetadata().GetName()}
		if ip, err := netip.ParseAddr(spec.GetClusterIp()); err == nil && ip.Is4() {
			s.ClusterIP = ip
		}
		if spec.GetSessionAffinity() == "ClientIP" {
			secs := spec.GetSessionAffinityConfig().GetClientIp().GetTimeoutSeconds()
			if secs <= 0 {
				secs = api.DefaultClientIPTimeoutSeconds
			}
			s.Affinity = time.Duration(secs) * time.Second
		}
		eps := endpoints[api.Key(s.Namespace, s.Name)]
		for _, sp := range spec.GetPorts() {
			p := Port{Name: sp.GetName(), Protocol: Protocol(sp.GetProtocol()), Port: uint16(sp.GetPort())}
			if p.Protocol == "" {
				p.Protocol = TCP
			}
			if spec.GetType() == "NodePort" {
				p.NodePort = uint16(sp.GetNodePort())
			}
			p.Endpoints = readyEndpoints(eps, p)
			s.Ports = append(s.Ports, p)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// readyEndpoints is the ready addresses of eps that serve p, sorted and
// without duplicates.
func readyEndpoints(eps *api.Endpoints, p Port) []netip.AddrPort {
	var out []netip.AddrPort
	for _, sub := range eps.GetSubsets() {
		var port uint16
		for _, ep := range sub.GetPorts() {
			proto := Protocol(ep.GetProtocol())
			if proto == "" {
				proto = TCP
			}
			if ep.GetName() == p.Name && proto == p.Protocol && ep.GetPort() > 0 && ep.GetPort() <= 65535 {
				port = uint16(ep.GetPort())
				break
			}
		}
		if port == 0 {
			continue
		}
		for _, a := range sub.GetAddresses() {
			ip, err := netip.ParseAddr(a.GetIp())
			if err != nil || !ip.Is4() {
				continue
			}
			out = append(out, netip.AddrPortFrom(ip, port))
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return slices.Compact(out)
}
