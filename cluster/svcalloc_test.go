package cluster

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

func stGetService(t *testing.T, s *State, name string) *api.Service {
	t.Helper()
	r := s.Get("Service", "default", name)
	if r == nil {
		t.Fatalf("service %s not stored", name)
	}
	return r.(*api.Service)
}

func stNodePortService(name string, ports ...int32) *api.Service {
	svc := stService("default", name, 80)
	svc.Spec.Type = "NodePort"
	svc.Spec.Ports = nil
	for i, np := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, &api.ServicePort{Name: string(rune('a' + i)), Protocol: "TCP", Port: int32(80 + i), NodePort: np})
	}
	return svc
}

// stSmallCIDR is a state whose services share a /29: six usable addresses.
func stSmallCIDR(t *testing.T) *State {
	s := NewState()
	s.applyTxns(1, []*storepb.Txn{{SetSettings: &storepb.ClusterSettings{ServiceCidr: "10.96.7.0/29", NodePortRange: "30000-30002"}}})
	return s
}

func TestServiceClusterIPAllocation(t *testing.T) {
	s := stSmallCIDR(t)
	cidr := netip.MustParsePrefix("10.96.7.0/29")
	seen := map[string]string{}
	for i := 0; i < 6; i++ {
		name := "svc" + string(rune('a'+i))
		stMustApply(t, s, uint64(2+i), stPut(stService("default", name, 80)))
		ip := stGetService(t, s, name).Spec.ClusterIp
		a, err := netip.ParseAddr(ip)
		if err != nil || !cidr.Contains(a) || ip == "10.96.7.0" || ip == "10.96.7.7" {
			t.Fatalf("%s got clusterIP %q; want a usable address of %s", name, ip, cidr)
		}
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s and %s both got %s", name, other, ip)
		}
		seen[ip] = name
	}
	// The CIDR is full: the 7th is refused with the reason, nothing stored.
	res := stApply(s, 20, []*storepb.Op{stPut(stService("default", "full", 80))})[0]
	if res.Code == 0 || !strings.Contains(res.Message, "no free address") {
		t.Fatalf("7th service in a /29: code %d %q; want refused, no free address", res.Code, res.Message)
	}
	if s.Get("Service", "default", "full") != nil {
		t.Fatal("refused service was stored")
	}
	// The same manifest again keeps the address; deleting frees it.
	ipA := stGetService(t, s, "svca").Spec.ClusterIp
	stMustApply(t, s, 21, stPut(stService("default", "svca", 8080)))
	if got := stGetService(t, s, "svca"); got.Spec.ClusterIp != ipA || got.Spec.Ports[0].Port != 8080 {
		t.Fatalf("re-applied svca: clusterIP %q port %d; want %s kept, port 8080", got.Spec.ClusterIp, got.Spec.Ports[0].Port, ipA)
	}
	stMustApply(t, s, 22, stDel("Service", "default", "svca", ""))
	stMustApply(t, s, 23, stPut(stService("default", "full", 80)))
	if got := stGetService(t, s, "full").Spec.ClusterIp; got != ipA {
		t.Fatalf("after a delete the freed %s should be the only one left, got %s", ipA, got)
	}
}

func TestServiceClusterIPRequested(t *testing.T) {
	for _, tc := range []struct {
		name, ip, want string
	}{
		{"free", "10.96.7.3", ""},
		{"taken", "10.96.7.2", "10.96.7.2 is already allocated to service default/first"},
		{"outside", "10.97.0.1", "not a usable address of the service CIDR 10.96.7.0/29"},
		{"network", "10.96.7.0", "not a usable address"},
		{"broadcast", "10.96.7.7", "not a usable address"},
		{"none", "None", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := stSmallCIDR(t)
			first := stService("default", "first", 80)
			first.Spec.ClusterIp = "10.96.7.2"
			stMustApply(t, s, 2, stPut(first))
			svc := stService("default", "second", 80)
			svc.Spec.ClusterIp = tc.ip
			res := stApply(s, 3, []*storepb.Op{stPut(svc)})[0]
			if tc.want == "" {
				if res.Code != 0 {
					t.Fatalf("refused: %s", res.Message)
				}
				if got := stGetService(t, s, "second").Spec.ClusterIp; got != tc.ip {
					t.Fatalf("clusterIP %q, want %q", got, tc.ip)
				}
				return
			}
			if res.Code == 0 || !strings.Contains(res.Message, tc.want) || !strings.Contains(res.Message, "spec.clusterIP") {
				t.Fatalf("got code %d %q; want refused with %q", res.Code, res.Message, tc.want)
			}
		})
	}
}

func TestServiceClusterIPImmutable(t *testing.T) {
	s := stSmallCIDR(t)
	stMustApply(t, s, 2, stPut(stService("default", "web", 80)))
	svc := stService("default", "web", 80)
	ip := stGetService(t, s, "web").Spec.ClusterIp
	svc.Spec.ClusterIp = "10.96.7.6"
	if ip == svc.Spec.ClusterIp {
		svc.Spec.ClusterIp = "10.96.7.5"
	}
	res := stApply(s, 3, []*storepb.Op{stPut(svc)})[0]
	if res.Code == 0 || !strings.Contains(res.Message, "may not change") {
		t.Fatalf("changing the clusterIP: code %d %q; want refused", res.Code, res.Message)
	}
	svc.Spec.ClusterIp = ip
	stMustApply(t, s, 4, stPut(svc))
}

func TestServiceNodePortAllocation(t *testing.T) {
	s := stSmallCIDR(t) // node ports 30000-30002
	stMustApply(t, s, 2, stPut(stNodePortService("one", 0, 0)))
	one := stGetService(t, s, "one").Spec.Ports
	if one[0].NodePort < 30000 || one[0].NodePort > 30002 || one[1].NodePort < 30000 || one[1].NodePort > 30002 || one[0].NodePort == one[1].NodePort {
		t.Fatalf("node ports %d, %d; want two different ports of 30000-30002", one[0].NodePort, one[1].NodePort)
	}
	// Applied again without node ports: kept.
	stMustApply(t, s, 3, stPut(stNodePortService("one", 0, 0)))
	again := stGetService(t, s, "one").Spec.Ports
	if again[0].NodePort != one[0].NodePort || again[1].NodePort != one[1].NodePort {
		t.Fatalf("re-applied: node ports %d, %d; want %d, %d kept", again[0].NodePort, again[1].NodePort, one[0].NodePort, one[1].NodePort)
	}
	// A port taken by "one" is refused with the owner's name; out of range too.
	res := stApply(s, 4, []*storepb.Op{stPut(stNodePortService("two", one[0].NodePort))})[0]
	if res.Code == 0 || !strings.Contains(res.Message, "already allocated to service default/one") || !strings.Contains(res.Message, "spec.ports[0].nodePort") {
		t.Fatalf("taken node port: code %d %q", res.Code, res.Message)
	}
	res = stApply(s, 5, []*storepb.Op{stPut(stNodePortService("two", 80))})[0]
	if res.Code == 0 || !strings.Contains(res.Message, "outside the node port range 30000-30002") {
		t.Fatalf("node port 80: code %d %q", res.Code, res.Message)
	}
	// One left: a service wanting two is refused and changes nothing.
	res = stApply(s, 6, []*storepb.Op{stPut(stNodePortService("two", 0, 0))})[0]
	if res.Code == 0 || !strings.Contains(res.Message, "no free port") {
		t.Fatalf("range exhausted: code %d %q", res.Code, res.Message)
	}
	stMustApply(t, s, 7, stPut(stNodePortService("two", 0)))
	// Type ClusterIP with a node port is refused.
	svc := stService("default", "three", 80)
	svc.Spec.Ports[0].NodePort = 30001
	res = stApply(s, 8, []*storepb.Op{stPut(svc)})[0]
	if res.Code == 0 || !strings.Contains(res.Message, "only be set when the type is NodePort") {
		t.Fatalf("node port on ClusterIP: code %d %q", res.Code, res.Message)
	}
}

// Two services created in one transaction see each other's allocations.
func TestServiceAllocationWithinOneTxn(t *testing.T) {
	s := stSmallCIDR(t)
	stMustApply(t, s, 2, stPut(stNodePortService("a", 0)), stPut(stNodePortService("b", 0)))
	a, b := stGetService(t, s, "a").Spec, stGetService(t, s, "b").Spec
	if a.ClusterIp == b.ClusterIp || a.Ports[0].NodePort == b.Ports[0].NodePort {
		t.Fatalf("one transaction gave a %s:%d and b %s:%d", a.ClusterIp, a.Ports[0].NodePort, b.ClusterIp, b.Ports[0].NodePort)
	}
}
