package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/api"
)

// ---------------------------------------------------------------- inputs

// eptSvc is the service "web" of namespace "default" selecting app=web.
func eptSvc(ports ...*api.ServicePort) *api.Service {
	return &api.Service{
		ApiVersion: "v1",
		Kind:       "Service",
		Metadata: &api.ObjectMeta{Name: "web", Namespace: "default", Uid: "svc-uid", ResourceVersion: "7",
			Labels: map[string]string{"tier": "front"}},
		Spec: &api.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: ports, ClusterIp: "10.96.0.10"},
	}
}

func eptSvcWith(f func(*api.Service), ports ...*api.ServicePort) *api.Service {
	s := eptSvc(ports...)
	f(s)
	return s
}

// eptPort is a service port; target nil leaves targetPort unset.
func eptPort(name, protocol string, port int32, target *structpb.Value) *api.ServicePort {
	return &api.ServicePort{Name: name, Protocol: protocol, Port: port, TargetPort: target}
}

func eptNum(n float64) *structpb.Value { return structpb.NewNumberValue(n) }

func eptStr(s string) *structpb.Value { return structpb.NewStringValue(s) }

// eptPod is a running, ready pod labelled app=web with an IP, bound to a
// node, with one container and no ports.
func eptPod(name, ip, node string, opts ...func(*api.Pod)) *api.Pod {
	p := &api.Pod{
		Metadata: &api.ObjectMeta{Name: name, Namespace: "default", Uid: "uid-" + name, Labels: map[string]string{"app": "web"}},
		Spec:     &api.PodSpec{NodeName: node, Containers: []*api.Container{{Name: "c", Image: "busybox"}}},
		Status: &api.PodStatus{Phase: "Running", PodIp: ip, Conditions: []*api.PodCondition{
			{Type: "PodScheduled", Status: "True"}, {Type: "Ready", Status: "True"}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// eptCPort adds a container port (protocol "" means TCP) to the first
// container.
func eptCPort(name string, port int32, protocol string) func(*api.Pod) {
	return func(p *api.Pod) {
		c := p.Spec.Containers[0]
		c.Ports = append(c.Ports, &api.ContainerPort{Name: name, ContainerPort: port, Protocol: protocol})
	}
}

// eptSidecarPort adds a second container with one port.
func eptSidecarPort(name string, port int32, protocol string) func(*api.Pod) {
	return func(p *api.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, &api.Container{Name: "sidecar", Image: "busybox",
			Ports: []*api.ContainerPort{{Name: name, ContainerPort: port, Protocol: protocol}}})
	}
}

func eptUnready(p *api.Pod) { p.Status.Conditions[1].Status = "False" }

func eptNoConditions(p *api.Pod) { p.Status.Phase, p.Status.Conditions = "Pending", nil }

func eptTerminating(p *api.Pod) { p.Metadata.DeletionTimestamp = "2026-01-02T03:04:05Z" }

func eptPhase(ph string) func(*api.Pod) { return func(p *api.Pod) { p.Status.Phase = ph } }

func eptNamespace(ns string) func(*api.Pod) { return func(p *api.Pod) { p.Metadata.Namespace = ns } }

func eptLabels(l map[string]string) func(*api.Pod) { return func(p *api.Pod) { p.Metadata.Labels = l } }

// ---------------------------------------------------------------- outputs

func eptAddr(ip, node, pod string) *api.EndpointAddress {
	return eptAddrNS(ip, node, "default", pod)
}

func eptAddrNS(ip, node, ns, pod string) *api.EndpointAddress {
	return &api.EndpointAddress{Ip: ip, NodeName: proto.String(node),
		TargetRef: &api.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod, Uid: "uid-" + pod}}
}

func eptEPort(name string, port int32, protocol string) *api.EndpointPort {
	return &api.EndpointPort{Name: name, Port: port, Protocol: protocol}
}

func eptSubset(ready, notReady []*api.EndpointAddress, ports ...*api.EndpointPort) *api.EndpointSubset {
	return &api.EndpointSubset{Addresses: ready, NotReadyAddresses: notReady, Ports: ports}
}

func eptAddrs(a ...*api.EndpointAddress) []*api.EndpointAddress { return a }

// eptWant is the Endpoints of eptSvc with these subsets.
func eptWant(subsets ...*api.EndpointSubset) *api.Endpoints {
	return &api.Endpoints{
		ApiVersion: "v1",
		Kind:       "Endpoints",
		Metadata:   &api.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"tier": "front"}},
		Subsets:    subsets,
	}
}

func eptJSON(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// eptNodes is a nodeReady that says every node but those listed is Ready.
func eptNodes(notReady ...string) func(string) bool {
	return func(n string) bool { return !slices.Contains(notReady, n) }
}

// ---------------------------------------------------------------- tests

func TestDesiredEndpoints(t *testing.T) {
	tcp80 := eptPort("", "TCP", 80, nil)
	cases := []struct {
		name     string
		svc      *api.Service
		pods     []*api.Pod
		notReady []string       // nodes NotReady
		want     *api.Endpoints // nil: DesiredEndpoints must return nil
	}{
		{
			name: "numeric targetPort",
			svc:  eptSvc(eptPort("", "TCP", 80, eptNum(8080))),
			pods: []*api.Pod{eptPod("b", "10.0.0.2", "n2"), eptPod("a", "10.0.0.1", "n1")},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a"), eptAddr("10.0.0.2", "n2", "b")), nil,
				eptEPort("", 8080, "TCP"))),
		},
		{
			name: "named targetPort resolved per pod: two numbers, two subsets; pods without the name or with it on UDP left out",
			svc:  eptSvc(eptPort("http", "TCP", 80, eptStr("http"))),
			pods: []*api.Pod{
				eptPod("a", "10.0.0.1", "n1", eptCPort("http", 9090, "")),
				eptPod("b", "10.0.0.2", "n1", eptCPort("metrics", 9100, ""), eptSidecarPort("http", 8080, "TCP")),
				eptPod("c", "10.0.0.3", "n2", eptCPort("http", 9090, "TCP")),
				eptPod("d", "10.0.0.4", "n2", eptCPort("other", 8080, "")),
				eptPod("e", "10.0.0.5", "n2", eptCPort("http", 8080, "UDP")),
				eptPod("f", "10.0.0.6", "n2"),
			},
			want: eptWant(
				eptSubset(eptAddrs(eptAddr("10.0.0.2", "n1", "b")), nil, eptEPort("http", 8080, "TCP")),
				eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a"), eptAddr("10.0.0.3", "n2", "c")), nil, eptEPort("http", 9090, "TCP")),
			),
		},
		{
			name: "unset targetPort is the port; protocol defaults to TCP",
			svc:  eptSvc(eptPort("", "", 80, nil)),
			pods: []*api.Pod{eptPod("a", "10.0.0.1", "n1")},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), nil, eptEPort("", 80, "TCP"))),
		},
		{
			name: "targetPort 0 and empty string are unset",
			svc:  eptSvc(eptPort("a", "TCP", 80, eptNum(0)), eptPort("b", "TCP", 81, eptStr(""))),
			pods: []*api.Pod{eptPod("a", "10.0.0.1", "n1")},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), nil,
				eptEPort("a", 80, "TCP"), eptEPort("b", 81, "TCP"))),
		},
		{
			name: "string-number targetPort",
			svc:  eptSvc(eptPort("", "TCP", 80, eptStr("8080"))),
			pods: []*api.Pod{eptPod("a", "10.0.0.1", "n1", eptCPort("8080", 1, ""))},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), nil, eptEPort("", 8080, "TCP"))),
		},
		{
			name: "invalid targetPorts leave the pods out",
			svc: eptSvc(eptPort("frac", "TCP", 80, eptNum(80.5)), eptPort("big", "TCP", 81, eptNum(70000)),
				eptPort("bool", "TCP", 82, structpb.NewBoolValue(true)), eptPort("zero", "TCP", 83, eptStr("x"))),
			pods: []*api.Pod{eptPod("a", "10.0.0.1", "n1", eptCPort("x", 0, ""))},
			want: eptWant(),
		},
		{
			name: "pod not ready, or without conditions, goes to notReadyAddresses",
			svc:  eptSvc(tcp80),
			pods: []*api.Pod{
				eptPod("a", "10.0.0.1", "n1"),
				eptPod("b", "10.0.0.2", "n1", eptUnready),
				eptPod("c", "10.0.0.3", "n1", eptNoConditions),
			},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")),
				eptAddrs(eptAddr("10.0.0.2", "n1", "b"), eptAddr("10.0.0.3", "n1", "c")), eptEPort("", 80, "TCP"))),
		},
		{
			name:     "ready pod on a NotReady node goes to notReadyAddresses",
			svc:      eptSvc(tcp80),
			pods:     []*api.Pod{eptPod("a", "10.0.0.1", "n1"), eptPod("b", "10.0.0.2", "n2")},
			notReady: []string{"n2"},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), eptAddrs(eptAddr("10.0.0.2", "n2", "b")),
				eptEPort("", 80, "TCP"))),
		},
		{
			name: "terminating, no IP, unbound, Failed and Succeeded pods left out; Pending kept",
			svc:  eptSvc(tcp80),
			pods: []*api.Pod{
				eptPod("ok", "10.0.0.1", "n1"),
				eptPod("terminating", "10.0.0.2", "n1", eptTerminating),
				eptPod("noip", "", "n1"),
				eptPod("unbound", "10.0.0.4", ""),
				eptPod("failed", "10.0.0.5", "n1", eptPhase("Failed")),
				eptPod("succeeded", "10.0.0.6", "n1", eptPhase("Succeeded")),
				eptPod("pending", "10.0.0.7", "n1", eptPhase("Pending"), eptUnready),
			},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "ok")), eptAddrs(eptAddr("10.0.0.7", "n1", "pending")),
				eptEPort("", 80, "TCP"))),
		},
		{
			name: "other namespace left out",
			svc:  eptSvc(tcp80),
			pods: []*api.Pod{eptPod("a", "10.0.0.1", "n1"), eptPod("b", "10.0.0.2", "n1", eptNamespace("other"))},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), nil, eptEPort("", 80, "TCP"))),
		},
		{
			name: "empty namespace is default",
			svc:  eptSvcWith(func(s *api.Service) { s.Metadata.Namespace = "" }, tcp80),
			pods: []*api.Pod{eptPod("a", "10.0.0.1", "n1", eptNamespace("")), eptPod("b", "10.0.0.2", "n1")},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a"), eptAddr("10.0.0.2", "n1", "b")), nil,
				eptEPort("", 80, "TCP"))),
		},
		{
			name: "selector mismatch left out; extra labels do not matter",
			svc: eptSvcWith(func(s *api.Service) { s.Spec.Selector = map[string]string{"app": "web", "track": ""} },
				tcp80),
			pods: []*api.Pod{
				eptPod("match", "10.0.0.1", "n1", eptLabels(map[string]string{"app": "web", "track": "", "x": "y"})),
				eptPod("wrongvalue", "10.0.0.2", "n1", eptLabels(map[string]string{"app": "db", "track": ""})),
				eptPod("missingkey", "10.0.0.3", "n1", eptLabels(map[string]string{"app": "web"})),
				eptPod("nolabels", "10.0.0.4", "n1", eptLabels(nil)),
			},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "match")), nil, eptEPort("", 80, "TCP"))),
		},
		{
			name: "no selector: nil",
			svc:  eptSvcWith(func(s *api.Service) { s.Spec.Selector = nil }, tcp80),
			pods: []*api.Pod{eptPod("a", "10.0.0.1", "n1")},
			want: nil,
		},
		{
			name: "no pods: no subsets, not nil",
			svc:  eptSvc(tcp80),
			want: eptWant(),
		},
		{
			name: "multiple service ports, sorted by name; a pod missing a named port gets a subset of the others",
			svc: eptSvc(eptPort("web", "TCP", 80, eptStr("http")), eptPort("metrics", "TCP", 9100, nil),
				eptPort("admin", "TCP", 8443, eptNum(443))),
			pods: []*api.Pod{
				eptPod("a", "10.0.0.1", "n1", eptCPort("http", 8080, "")),
				eptPod("b", "10.0.0.2", "n1"),
				eptPod("c", "10.0.0.3", "n2", eptCPort("http", 8080, "TCP"), eptUnready),
			},
			want: eptWant(
				eptSubset(eptAddrs(eptAddr("10.0.0.2", "n1", "b")), nil,
					eptEPort("admin", 443, "TCP"), eptEPort("metrics", 9100, "TCP")),
				eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), eptAddrs(eptAddr("10.0.0.3", "n2", "c")),
					eptEPort("admin", 443, "TCP"), eptEPort("metrics", 9100, "TCP"), eptEPort("web", 8080, "TCP")),
			),
		},
		{
			name: "UDP: protocol kept, named port resolved on UDP only",
			svc:  eptSvc(eptPort("dns", "UDP", 53, eptStr("dns")), eptPort("dns-tcp", "TCP", 53, nil)),
			pods: []*api.Pod{
				eptPod("a", "10.0.0.1", "n1", eptCPort("dns", 5353, "UDP")),
				eptPod("b", "10.0.0.2", "n1", eptCPort("dns", 5353, "")),
			},
			want: eptWant(
				eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), nil, eptEPort("dns", 5353, "UDP"), eptEPort("dns-tcp", 53, "TCP")),
				eptSubset(eptAddrs(eptAddr("10.0.0.2", "n1", "b")), nil, eptEPort("dns-tcp", 53, "TCP")),
			),
		},
		{
			name: "addresses sorted numerically by IP",
			svc:  eptSvc(tcp80),
			pods: []*api.Pod{
				eptPod("a", "10.0.0.10", "n1"), eptPod("b", "10.0.0.9", "n1"), eptPod("c", "9.0.0.1", "n1"),
				eptPod("d", "10.0.0.100", "n1", eptUnready), eptPod("e", "10.0.0.20", "n1", eptUnready),
			},
			want: eptWant(eptSubset(
				eptAddrs(eptAddr("9.0.0.1", "n1", "c"), eptAddr("10.0.0.9", "n1", "b"), eptAddr("10.0.0.10", "n1", "a")),
				eptAddrs(eptAddr("10.0.0.20", "n1", "e"), eptAddr("10.0.0.100", "n1", "d")),
				eptEPort("", 80, "TCP"))),
		},
		{
			name: "headless without ports: one subset without ports",
			svc:  eptSvcWith(func(s *api.Service) { s.Spec.ClusterIp = "None" }),
			pods: []*api.Pod{eptPod("b", "10.0.0.2", "n1", eptUnready), eptPod("a", "10.0.0.1", "n1")},
			want: eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), eptAddrs(eptAddr("10.0.0.2", "n1", "b")))),
		},
		{
			name: "not headless without ports: no subsets",
			svc:  eptSvc(),
			pods: []*api.Pod{eptPod("a", "10.0.0.1", "n1")},
			want: eptWant(),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svcBefore := proto.Clone(tc.svc)
			got := DesiredEndpoints(tc.svc, tc.pods, eptNodes(tc.notReady...))
			if tc.want == nil {
				if got != nil {
					t.Fatalf("got %s, want nil", eptJSON(got))
				}
				return
			}
			if got == nil {
				t.Fatalf("got nil, want %s", eptJSON(tc.want))
			}
			if !proto.Equal(got, tc.want) {
				t.Errorf("got %s\nwant %s", eptJSON(got), eptJSON(tc.want))
			}
			if len(got.GetSubsets()) != len(tc.want.GetSubsets()) {
				t.Errorf("%d subsets, want %d", len(got.GetSubsets()), len(tc.want.GetSubsets()))
			}
			if !proto.Equal(tc.svc, svcBefore) {
				t.Errorf("service changed: %s", eptJSON(tc.svc))
			}
		})
	}
}

func TestDesiredEndpointsNilNodeReadyMeansReady(t *testing.T) {
	got := DesiredEndpoints(eptSvc(eptPort("", "TCP", 80, nil)), []*api.Pod{eptPod("a", "10.0.0.1", "n1")}, nil)
	want := eptWant(eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a")), nil, eptEPort("", 80, "TCP")))
	if !proto.Equal(got, want) {
		t.Errorf("got %s\nwant %s", eptJSON(got), eptJSON(want))
	}
}

func TestDesiredEndpointsLabelsAreACopy(t *testing.T) {
	svc := eptSvc(eptPort("", "TCP", 80, nil))
	got := DesiredEndpoints(svc, nil, nil)
	if got.GetMetadata().GetLabels()["tier"] != "front" {
		t.Fatalf("labels %v, want the service's", got.GetMetadata().GetLabels())
	}
	if m := got.GetMetadata(); m.GetUid() != "" || m.GetResourceVersion() != "" {
		t.Errorf("uid %q resourceVersion %q, want none", m.GetUid(), m.GetResourceVersion())
	}
	got.Metadata.Labels["managed-by"] = "x"
	if _, ok := svc.Metadata.Labels["managed-by"]; ok {
		t.Error("the Endpoints' labels are the service's map")
	}
}

func TestDesiredEndpointsDeterministic(t *testing.T) {
	ports := []*api.ServicePort{
		eptPort("web", "TCP", 80, eptStr("http")), eptPort("metrics", "TCP", 9100, nil),
		eptPort("dns", "UDP", 53, eptNum(5353)),
	}
	var pods []*api.Pod
	for i := range 40 {
		var opts []func(*api.Pod)
		switch i % 4 {
		case 0:
			opts = append(opts, eptCPort("http", 8080, ""))
		case 1:
			opts = append(opts, eptCPort("http", 8081, ""))
		case 2:
			opts = append(opts, eptCPort("http", 8080, ""), eptUnready)
		}
		if i%5 == 0 {
			opts = append(opts, eptTerminating)
		}
		node := []string{"n1", "n2", "n3"}[i%3]
		pods = append(pods, eptPod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.0.%d.%d", i%3, i), node, opts...))
	}
	nodeReady := eptNodes("n3")
	first := DesiredEndpoints(eptSvc(ports...), pods, nodeReady)
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetSubsets()) != 3 {
		t.Fatalf("%d subsets, want 3: %s", len(first.GetSubsets()), eptJSON(first))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		shuffled := slices.Clone(pods)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		sp := slices.Clone(ports)
		r.Shuffle(len(sp), func(i, j int) { sp[i], sp[j] = sp[j], sp[i] })
		got := DesiredEndpoints(eptSvc(sp...), shuffled, nodeReady)
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != string(want) || !EndpointsEqual(got, first) {
			t.Fatalf("round %d: got %s\nwant %s", round, eptJSON(got), eptJSON(first))
		}
	}
}

func TestEndpointsEqual(t *testing.T) {
	base := func() *api.Endpoints {
		return eptWant(
			eptSubset(eptAddrs(eptAddr("10.0.0.1", "n1", "a"), eptAddr("10.0.0.2", "n1", "b")),
				eptAddrs(eptAddr("10.0.0.3", "n2", "c")), eptEPort("http", 8080, "TCP")),
			eptSubset(eptAddrs(eptAddr("10.0.0.4", "n1", "d")), nil, eptEPort("http", 9090, "TCP")),
		)
	}
	change := func(f func(*api.Endpoints)) *api.Endpoints {
		e := base()
		f(e)
		return e
	}
	cases := []struct {
		name string
		a, b *api.Endpoints
		want bool
	}{
		{"same", base(), base(), true},
		{"metadata ignored", base(), change(func(e *api.Endpoints) {
			e.Metadata = &api.ObjectMeta{Name: "web", Namespace: "default", Uid: "u", ResourceVersion: "42",
				Labels: map[string]string{"managed-by": "shoal"}}
			e.ApiVersion, e.Kind = "", ""
		}), true},
		{"both nil", nil, nil, true},
		{"nil and empty", nil, eptWant(), false},
		{"empty and empty", eptWant(), eptWant(), true},
		{"changed IP", base(), change(func(e *api.Endpoints) { e.Subsets[0].Addresses[1].Ip = "10.0.0.9" }), false},
		{"ready to not ready", base(), change(func(e *api.Endpoints) {
			s := e.Subsets[0]
			s.NotReadyAddresses = append([]*api.EndpointAddress{s.Addresses[0]}, s.NotReadyAddresses...)
			s.Addresses = s.Addresses[1:]
		}), false},
		{"not ready to ready", base(), change(func(e *api.Endpoints) {
			s := e.Subsets[0]
			s.Addresses = append(s.Addresses, s.NotReadyAddresses...)
			s.NotReadyAddresses = nil
		}), false},
		{"changed port", base(), change(func(e *api.Endpoints) { e.Subsets[1].Ports[0].Port = 9091 }), false},
		{"changed node", base(), change(func(e *api.Endpoints) { e.Subsets[1].Addresses[0].NodeName = proto.String("n9") }), false},
		{"subset removed", base(), change(func(e *api.Endpoints) { e.Subsets = e.Subsets[:1] }), false},
		{"no subsets", base(), eptWant(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			if got := EndpointsEqual(tc.a, b); got != tc.want {
				t.Errorf("EndpointsEqual(a, b) = %v, want %v\na %s\nb %s", got, tc.want, eptJSON(tc.a), eptJSON(b))
			}
			if got := EndpointsEqual(b, tc.a); got != tc.want {
				t.Errorf("EndpointsEqual(b, a) = %v, want %v", got, tc.want)
			}
		})
	}
	if e := base(); !EndpointsEqual(e, e) {
		t.Error("an Endpoints is not equal to itself")
	}
}
