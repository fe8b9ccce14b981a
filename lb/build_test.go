package lb

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
)

func TestBuild(t *testing.T) {
	web := &api.Service{
		Metadata: &api.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: &api.ServiceSpec{
			ClusterIp: "10.96.0.10", Type: "NodePort", SessionAffinity: "ClientIP",
			SessionAffinityConfig: &api.SessionAffinityConfig{ClientIp: &api.ClientIPConfig{TimeoutSeconds: proto.Int32(30)}},
			Ports: []*api.ServicePort{
				{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080},
				{Name: "dns", Protocol: "UDP", Port: 53, NodePort: 30053},
			},
		},
	}
	plain := &api.Service{ // ClusterIP type: a stale nodePort is not published
		Metadata: &api.ObjectMeta{Namespace: "apps", Name: "db"},
		Spec:     &api.ServiceSpec{ClusterIp: "10.96.0.11", Ports: []*api.ServicePort{{Port: 5432, NodePort: 31000}}},
	}
	headless := &api.Service{
		Metadata: &api.ObjectMeta{Namespace: "default", Name: "h"},
		Spec:     &api.ServiceSpec{ClusterIp: "None", Ports: []*api.ServicePort{{Port: 1}}},
	}
	eps := map[string]*api.Endpoints{
		"default/web": {Subsets: []*api.EndpointSubset{
			{ // resolved per subset: these pods listen on 8080
				Addresses:         []*api.EndpointAddress{{Ip: "10.244.1.5"}, {Ip: "10.244.0.3"}, {Ip: "10.244.1.5"}},
				NotReadyAddresses: []*api.EndpointAddress{{Ip: "10.244.2.9"}},
				Ports:             []*api.EndpointPort{{Name: "http", Port: 8080, Protocol: "TCP"}, {Name: "dns", Port: 5353, Protocol: "UDP"}},
			},
			{ // these on 9090, and the UDP port under a TCP name is not used
				Addresses: []*api.EndpointAddress{{Ip: "10.244.2.4"}, {Ip: "not-an-ip"}},
				Ports:     []*api.EndpointPort{{Name: "http", Port: 9090}, {Name: "dns", Port: 53, Protocol: "TCP"}},
			},
		}},
		"apps/db": {Subsets: []*api.EndpointSubset{{Addresses: []*api.EndpointAddress{{Ip: "192.168.1.20"}}, Ports: []*api.EndpointPort{{Port: 5432}}}}},
	}
	got := Build([]*api.Service{web, headless, plain}, eps)
	ap := netip.MustParseAddrPort
	want := []Service{
		{Namespace: "apps", Name: "db", ClusterIP: netip.MustParseAddr("10.96.0.11"),
			Ports: []Port{{Protocol: TCP, Port: 5432, Endpoints: []netip.AddrPort{ap("192.168.1.20:5432")}}}},
		{Namespace: "default", Name: "h", Ports: []Port{{Protocol: TCP, Port: 1}}},
		{Namespace: "default", Name: "web", ClusterIP: netip.MustParseAddr("10.96.0.10"), Affinity: 30 * time.Second,
			Ports: []Port{
				{Name: "http", Protocol: TCP, Port: 80, NodePort: 30080, Endpoints: []netip.AddrPort{ap("10.244.0.3:8080"), ap("10.244.1.5:8080"), ap("10.244.2.4:9090")}},
				{Name: "dns", Protocol: UDP, Port: 53, NodePort: 30053, Endpoints: []netip.AddrPort{ap("10.244.0.3:5353"), ap("10.244.1.5:5353")}},
			}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Build:\n got %+v\nwant %+v", got, want)
	}
	if id := want[2].PortID(want[2].Ports[1]); id != "default/web:53/UDP" {
		t.Fatalf("PortID = %q", id)
	}
}
