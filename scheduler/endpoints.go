package scheduler

// The endpoints computation, as Kubernetes' endpoints controller does it:
// a Service with a selector gets an Endpoints object of the same name that
// lists its pods' IPs, ready or not, grouped by the ports they resolve the
// service's ports to. Pure functions: the controller reads, calls them and
// writes on change.

import (
	"cmp"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/api"
)

// DesiredEndpoints returns the Endpoints object a Service with a selector
// should have, given the pods of the service's namespace and which nodes
// are Ready. It returns nil when the service has no selector (the user's
// own Endpoints are kept as they are).
//
// The pods selected are those of the service's namespace whose labels
// match the selector, that are bound, have an IP, are not terminating and
// have not ended (Succeeded, Failed). A pod is ready when its Ready
// condition is True and its node is Ready; the others are listed as
// notReadyAddresses. A nil nodeReady counts every node Ready.
//
// Each service port is resolved per pod (targetPort as a number, a numeric
// string, a container port name of the same protocol, or unset: the port
// itself); a pod that cannot resolve a port is left out for that port, and
// one that resolves none is left out. Pods that resolve the same ports
// share a subset. A headless service (clusterIP None) without ports lists
// its pods in one subset without ports. Everything is sorted, so equal
// inputs give equal outputs in any order: subsets by their ports, then by
// their first address; addresses by IP; ports by name.
func DesiredEndpoints(svc *api.Service, pods []*api.Pod, nodeReady func(node string) bool) *api.Endpoints {
	selector := svc.GetSpec().GetSelector()
	if len(selector) == 0 {
		return nil
	}
	ns := endpointsNamespace(svc.GetMetadata().GetNamespace())
	out := &api.Endpoints{
		ApiVersion: "v1",
		Kind:       "Endpoints",
		Metadata: &api.ObjectMeta{
			Name:      svc.GetMetadata().GetName(),
			Namespace: ns,
			// A copy: the caller may add its own labels.
			Labels: maps.Clone(svc.GetMetadata().GetLabels()),
		},
	}
	svcPorts := svc.GetSpec().GetPorts()
	portless := len(svcPorts) == 0 && svc.GetSpec().GetClusterIp() == "None"

	byPorts := map[string]*api.EndpointSubset{}
	for _, p := range pods {
		if !endpointsSelects(p, ns, selector) {
			continue
		}
		var ports []*api.EndpointPort
		for _, sp := range svcPorts {
			if sp == nil {
				continue
			}
			n, ok := endpointsTargetPort(sp, p)
			if !ok {
				continue
			}
			ports = append(ports, &api.EndpointPort{Name: sp.GetName(), Port: n, Protocol: endpointsProtocol(sp.GetProtocol())})
		}
		if len(ports) == 0 && !portless {
			continue
		}
		slices.SortFunc(ports, endpointsComparePort)
		key := endpointsPortsKey(ports)
		s := byPorts[key]
		if s == nil {
			s = &api.EndpointSubset{Ports: ports}
			byPorts[key] = s
		}
		addr := endpointsAddress(p)
		node := p.GetSpec().GetNodeName()
		if endpointsPodReady(p) && (nodeReady == nil || nodeReady(node)) {
			s.Addresses = append(s.Addresses, addr)
		} else {
			s.NotReadyAddresses = append(s.NotReadyAddresses, addr)
		}
	}

	for _, s := range byPorts {
		slices.SortFunc(s.Addresses, endpointsCompareAddress)
		slices.SortFunc(s.NotReadyAddresses, endpointsCompareAddress)
		out.Subsets = append(out.Subsets, s)
	}
	slices.SortFunc(out.Subsets, endpointsCompareSubset)
	return out
}

// EndpointsEqual reports whether two Endpoints have the same subsets
// (ignoring metadata), so the controller writes only on change. Order
// matters, as DesiredEndpoints always sorts; a nil Endpoints equals only
// nil (a missing object is not an empty one).
func EndpointsEqual(a, b *api.Endpoints) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.EqualFunc(a.GetSubsets(), b.GetSubsets(), func(x, y *api.EndpointSubset) bool {
		return proto.Equal(x, y)
	})
}

func endpointsNamespace(ns string) string {
	if ns == "" {
		return api.DefaultNamespace
	}
	return ns
}

func endpointsProtocol(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

// endpointsSelects reports whether the pod belongs in the Endpoints of a
// service of namespace ns with selector.
func endpointsSelects(p *api.Pod, ns string, selector map[string]string) bool {
	m := p.GetMetadata()
	if endpointsNamespace(m.GetNamespace()) != ns || m.GetDeletionTimestamp() != "" {
		return false
	}
	if p.GetStatus().GetPodIp() == "" || p.GetSpec().GetNodeName() == "" {
		return false
	}
	if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
		return false
	}
	labels := m.GetLabels()
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// endpointsPodReady reports whether the pod's Ready condition is True.
func endpointsPodReady(p *api.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

func endpointsAddress(p *api.Pod) *api.EndpointAddress {
	m := p.GetMetadata()
	return &api.EndpointAddress{
		Ip:       p.GetStatus().GetPodIp(),
		NodeName: proto.String(p.GetSpec().GetNodeName()),
		TargetRef: &api.ObjectReference{
			Kind:      "Pod",
			Namespace: endpointsNamespace(m.GetNamespace()),
			Name:      m.GetName(),
			Uid:       m.GetUid(),
		},
	}
}

// endpointsTargetPort resolves a service port's targetPort for one pod.
func endpointsTargetPort(sp *api.ServicePort, p *api.Pod) (int32, bool) {
	switch k := sp.GetTargetPort().GetKind().(type) {
	case nil, *structpb.Value_NullValue:
	case *structpb.Value_NumberValue:
		if k.NumberValue != 0 {
			return endpointsPortNumber(k.NumberValue)
		}
	case *structpb.Value_StringValue:
		name := k.StringValue
		if name == "" {
			break
		}
		if n, err := strconv.Atoi(name); err == nil {
			if n != 0 {
				return endpointsPortNumber(float64(n))
			}
			break
		}
		protocol := endpointsProtocol(sp.GetProtocol())
		for _, c := range p.GetSpec().GetContainers() {
			for _, cp := range c.GetPorts() {
				if cp.GetName() == name && endpointsProtocol(cp.GetProtocol()) == protocol {
					return endpointsPortNumber(float64(cp.GetContainerPort()))
				}
			}
		}
		return 0, false
	default:
		return 0, false
	}
	// Unset: the service port itself.
	return endpointsPortNumber(float64(sp.GetPort()))
}

// endpointsPortNumber checks that n is a port number, 1 to 65535.
func endpointsPortNumber(n float64) (int32, bool) {
	if n != math.Trunc(n) || n < 1 || n > 65535 {
		return 0, false
	}
	return int32(n), true
}

// endpointsPortsKey is a sorted port list as a map key.
func endpointsPortsKey(ports []*api.EndpointPort) string {
	var b []byte
	for _, p := range ports {
		b = strconv.AppendQuote(b, p.GetName())
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(p.GetPort()), 10)
		b = append(b, '/')
		b = strconv.AppendQuote(b, p.GetProtocol())
		b = append(b, ';')
	}
	return string(b)
}

func endpointsComparePort(a, b *api.EndpointPort) int {
	return cmp.Or(
		cmp.Compare(a.GetName(), b.GetName()),
		cmp.Compare(a.GetPort(), b.GetPort()),
		cmp.Compare(a.GetProtocol(), b.GetProtocol()),
	)
}

// endpointsCompareIP orders IPs numerically (IPv4 before IPv6); strings
// that are not IPs come after, in string order.
func endpointsCompareIP(a, b string) int {
	x, errX := netip.ParseAddr(a)
	y, errY := netip.ParseAddr(b)
	switch {
	case errX == nil && errY == nil:
		if c := x.Compare(y); c != 0 {
			return c
		}
	case errX == nil:
		return -1
	case errY == nil:
		return 1
	}
	return cmp.Compare(a, b)
}

func endpointsCompareAddress(a, b *api.EndpointAddress) int {
	return cmp.Or(
		endpointsCompareIP(a.GetIp(), b.GetIp()),
		cmp.Compare(a.GetTargetRef().GetNamespace(), b.GetTargetRef().GetNamespace()),
		cmp.Compare(a.GetTargetRef().GetName(), b.GetTargetRef().GetName()),
		cmp.Compare(a.GetTargetRef().GetUid(), b.GetTargetRef().GetUid()),
		cmp.Compare(a.GetNodeName(), b.GetNodeName()),
	)
}

// endpointsFirstAddress is a subset's lowest address, ready or not.
func endpointsFirstAddress(s *api.EndpointSubset) *api.EndpointAddress {
	switch {
	case len(s.GetAddresses()) == 0 && len(s.GetNotReadyAddresses()) == 0:
		return nil
	case len(s.GetAddresses()) == 0:
		return s.GetNotReadyAddresses()[0]
	case len(s.GetNotReadyAddresses()) == 0:
		return s.GetAddresses()[0]
	}
	return slices.MinFunc([]*api.EndpointAddress{s.GetAddresses()[0], s.GetNotReadyAddresses()[0]}, endpointsCompareAddress)
}

// endpointsCompareSubset orders subsets by their ports, then by their
// first address.
func endpointsCompareSubset(a, b *api.EndpointSubset) int {
	if c := slices.CompareFunc(a.GetPorts(), b.GetPorts(), endpointsComparePort); c != 0 {
		return c
	}
	return endpointsCompareAddress(endpointsFirstAddress(a), endpointsFirstAddress(b))
}
