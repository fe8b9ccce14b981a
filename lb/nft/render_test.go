package nft

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalproj/shoal/lb"
)

// owners lists the service ports (PortIDs) the operation touches; the
// table's own chains and sets have none.
func (o op) owners() []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if o.chain != nil {
		add(o.chain.owner)
	}
	if o.set != nil && o.kind != opAddElems && o.kind != opDelElems {
		add(o.set.owner)
	}
	for _, e := range o.elems {
		add(e.owner)
	}
	return out
}

var testRender = renderConfig{clusterCIDR: testClusterCIDR, fullyRandom: true}

func eps(port uint16, last ...byte) []netip.AddrPort {
	out := make([]netip.AddrPort, len(last))
	for i, b := range last {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, 1, b}), port)
	}
	return out
}

func webService() lb.Service {
	return lb.Service{
		Namespace: "default", Name: "web",
		ClusterIP: netip.MustParseAddr("10.96.0.10"),
		Ports:     []lb.Port{{Name: "http", Protocol: lb.TCP, Port: 80, NodePort: 30080, Endpoints: eps(8080, 12, 10, 11)}},
	}
}

func mustRender(t *testing.T, cfg renderConfig, services ...lb.Service) *desc {
	t.Helper()
	d, _, err := render(cfg, services)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return d
}

// chainByPrefix returns the one chain whose name starts with prefix.
func chainByPrefix(t *testing.T, d *desc, prefix string) *chain {
	t.Helper()
	var found []*chain
	for name, c := range d.chains {
		if strings.HasPrefix(name, prefix) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d chains named %s*, want 1", len(found), prefix)
	}
	return found[0]
}

func setsOfKind(d *desc, k setKind) []*set {
	var out []*set
	for _, s := range d.sets {
		if s.kind == k {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *set) int { return strings.Compare(a.name, b.name) })
	return out
}

// elemsOf lists a set's elements as nft would print them, sorted.
func elemsOf(d *desc, set string) []string {
	var out []string
	for k, e := range d.elems {
		if k.set == set {
			out = append(out, e.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestRenderNewService(t *testing.T) {
	d := mustRender(t, testRender, webService())
	id := "default/web:80/TCP"
	h := hashName(id)
	svc := "svc-" + h + "-default/web/tcp/80"
	ext := "ext-" + h + "-default/web/tcp/80"
	epsMap := "eps-" + h + "-default/web/tcp/80"

	c := d.chains[svc]
	if c == nil {
		t.Fatalf("no chain %s; chains: %v", svc, keys(d.chains))
	}
	wantSvc := "ip saddr != 10.244.0.0/16 fib saddr type != local meta mark set meta mark | 0x00004000\n" +
		"meta l4proto tcp dnat to numgen inc mod 3 map @" + epsMap + "\n"
	if c.text != wantSvc {
		t.Errorf("chain %s:\n%s\nwant:\n%s", svc, c.text, wantSvc)
	}
	if c.owner != id {
		t.Errorf("chain %s owned by %q, want %q", svc, c.owner, id)
	}
	wantExt := "fib saddr type != local meta mark set meta mark | 0x00004000\ngoto " + svc + "\n"
	if c := d.chains[ext]; c == nil || c.text != wantExt {
		t.Errorf("chain %s = %+v, want:\n%s", ext, c, wantExt)
	}
	for set, want := range map[string][]string{
		setServiceIPs:       {"10.96.0.10 . tcp . 80 : goto " + svc},
		setServiceNodePorts: {"tcp . 30080 : goto " + ext},
		// Sorted endpoints, whatever their order in the service.
		epsMap:                 {"0 : 10.244.1.10 . 8080", "1 : 10.244.1.11 . 8080", "2 : 10.244.1.12 . 8080"},
		setHairpin:             {"10.244.1.10 . 10.244.1.10", "10.244.1.11 . 10.244.1.11", "10.244.1.12 . 10.244.1.12"},
		setNoEndpoints:         nil,
		setNoEndpointNodePorts: nil,
	} {
		if got := elemsOf(d, set); !slices.Equal(got, want) {
			t.Errorf("@%s = %q, want %q", set, got, want)
		}
	}
	if s := d.sets[epsMap]; s == nil || s.kind != kindEndpointAddrs {
		t.Errorf("set %s = %+v, want an endpoint address map", epsMap, s)
	}
	if len(setsOfKind(d, kindAffinity)) != 0 || len(setsOfKind(d, kindEndpointChains)) != 0 {
		t.Error("affinity sets or endpoint chains without affinity")
	}
	for name := range d.chains {
		if strings.HasPrefix(name, "ep-") {
			t.Errorf("endpoint chain %s without affinity", name)
		}
	}
	if d.servicePorts != 1 || d.endpoints != 3 {
		t.Errorf("counted %d service ports, %d endpoints; want 1, 3", d.servicePorts, d.endpoints)
	}
	post := d.chains[chainPostrouting].text
	for _, want := range []string{"ip saddr . ip daddr @hairpin meta mark set meta mark | 0x00004000", "masquerade fully-random"} {
		if !strings.Contains(post, want) {
			t.Errorf("postrouting lacks %q:\n%s", want, post)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestRenderOneEndpoint(t *testing.T) {
	s := webService()
	s.Ports[0].Endpoints = eps(8080, 10)
	d := mustRender(t, testRender, s)
	c := chainByPrefix(t, d, "svc-")
	if want := "meta l4proto tcp dnat to 10.244.1.10:8080\n"; !strings.HasSuffix(c.text, want) {
		t.Errorf("single endpoint chain:\n%s\nwant it to end in %q", c.text, want)
	}
	if len(setsOfKind(d, kindEndpointAddrs)) != 0 {
		t.Error("a map for a single endpoint")
	}
}

func TestRenderBalance(t *testing.T) {
	for _, tc := range []struct {
		random bool
		want   string
	}{{false, "numgen inc mod 3"}, {true, "numgen random mod 3"}} {
		cfg := testRender
		cfg.random = tc.random
		for _, aff := range []time.Duration{0, time.Minute} {
			s := webService()
			s.Affinity = aff
			c := chainByPrefix(t, mustRender(t, cfg, s), "svc-")
			if !strings.Contains(c.text, tc.want) {
				t.Errorf("random=%v affinity=%v:\n%s\nwant %q", tc.random, aff, c.text, tc.want)
			}
		}
	}
}

func TestRenderAffinity(t *testing.T) {
	s := webService()
	s.Affinity = 3 * time.Hour
	d := mustRender(t, testRender, s)
	id := "default/web:80/TCP"
	affs := setsOfKind(d, kindAffinity)
	if len(affs) != 3 {
		t.Fatalf("%d affinity sets, want 3 (one per endpoint)", len(affs))
	}
	svc := chainByPrefix(t, d, "svc-")
	lines := strings.Split(strings.TrimSpace(svc.text), "\n")
	if len(lines) != 5 {
		t.Fatalf("svc chain:\n%s\nwant masquerade, 3 affinity checks, dispatch", svc.text)
	}
	for i, ep := range eps(8080, 10, 11, 12) {
		eh := hashName(id + "|" + ep.String())
		epName := fmt.Sprintf("ep-%s-%s/%d", eh, ep.Addr(), ep.Port())
		aff := "aff-" + eh + "-3h0m0s"
		if s := d.sets[aff]; s == nil || s.timeout != 3*time.Hour {
			t.Errorf("set %s = %+v, want a 3h timeout", aff, s)
		}
		// Affinity checks come before the dispatch.
		if want := "ip saddr @" + aff + " goto " + epName; lines[1+i] != want {
			t.Errorf("svc rule %d = %q, want %q", 1+i, lines[1+i], want)
		}
		want := "update @" + aff + " { ip saddr }\nmeta l4proto tcp dnat to " + ep.String() + "\n"
		if c := d.chains[epName]; c == nil || c.text != want {
			t.Errorf("chain %s = %+v, want:\n%s", epName, c, want)
		}
	}
	if !strings.HasPrefix(lines[4], "numgen inc mod 3 vmap @epc-") {
		t.Errorf("dispatch %q, want a numgen vmap", lines[4])
	}
	maps := setsOfKind(d, kindEndpointChains)
	if len(maps) != 1 || len(elemsOf(d, maps[0].name)) != 3 {
		t.Errorf("endpoint chain maps %v, want one with 3 elements", maps)
	}
	// A sub-second affinity is rounded up to nftables' practical minimum.
	if got := affinityTimeout(10 * time.Millisecond); got != time.Second {
		t.Errorf("affinityTimeout(10ms) = %v, want 1s", got)
	}
}

func TestRenderNoEndpoints(t *testing.T) {
	s := webService()
	s.Ports[0].Endpoints = nil
	d := mustRender(t, testRender, s)
	if got := elemsOf(d, setNoEndpoints); !slices.Equal(got, []string{"10.96.0.10 . tcp . 80"}) {
		t.Errorf("@no-endpoints = %q", got)
	}
	if got := elemsOf(d, setNoEndpointNodePorts); !slices.Equal(got, []string{"tcp . 30080"}) {
		t.Errorf("@no-endpoint-nodeports = %q", got)
	}
	if got := elemsOf(d, setServiceIPs); len(got) != 0 {
		t.Errorf("@service-ips = %q, want nothing", got)
	}
	for name := range d.chains {
		if strings.HasPrefix(name, "svc-") || strings.HasPrefix(name, "ext-") {
			t.Errorf("chain %s for a port without endpoints", name)
		}
	}
	if d.servicePorts != 1 || d.endpoints != 0 {
		t.Errorf("counted %d service ports, %d endpoints; want 1, 0", d.servicePorts, d.endpoints)
	}
	// The reject chains consult the sets.
	check := d.chains[chainRejectCheck].text
	for _, want := range []string{"@no-endpoints goto no-endpoints-reject", "fib daddr type local meta l4proto . th dport @no-endpoint-nodeports goto no-endpoints-reject"} {
		if !strings.Contains(check, want) {
			t.Errorf("no-endpoints-check lacks %q:\n%s", want, check)
		}
	}
	if want := "meta l4proto tcp reject with tcp reset\nreject\n"; d.chains[chainReject].text != want {
		t.Errorf("reject chain:\n%s\nwant:\n%s", d.chains[chainReject].text, want)
	}
}

func TestRenderNodePortOnly(t *testing.T) {
	s := webService()
	s.ClusterIP = netip.Addr{} // invalid: no VIP, still a node port
	s.Ports[0].NodePort = 30081
	d, _, err := render(testRender, []lb.Service{s})
	if err != nil {
		t.Fatal(err)
	}
	if got := elemsOf(d, setServiceIPs); len(got) != 0 {
		t.Errorf("@service-ips = %q for a service without ClusterIP", got)
	}
	if got := elemsOf(d, setServiceNodePorts); len(got) != 1 || !strings.HasPrefix(got[0], "tcp . 30081 : goto ext-") {
		t.Errorf("@service-nodeports = %q", got)
	}
	// No VIP: the svc chain has no rule for VIP clients.
	if c := chainByPrefix(t, d, "svc-"); strings.Contains(c.text, "ip saddr !=") {
		t.Errorf("svc chain masquerades VIP traffic without a VIP:\n%s", c.text)
	}

	s.ClusterIP = netip.MustParseAddr("fd00::10")
	d, warnings, err := render(testRender, []lb.Service{s})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "default/web") {
		t.Errorf("warnings %q, want one naming the service", warnings)
	}
	if got := elemsOf(d, setServiceNodePorts); len(got) != 1 {
		t.Errorf("IPv6 ClusterIP: @service-nodeports = %q, want the node port", got)
	}
}

func TestRenderInvalid(t *testing.T) {
	other := lb.Service{Namespace: "prod", Name: "api", ClusterIP: netip.MustParseAddr("10.96.0.11"),
		Ports: []lb.Port{{Protocol: lb.TCP, Port: 80, Endpoints: eps(80, 20)}}}
	for _, tc := range []struct {
		name   string
		mutate func(s *lb.Service, o *lb.Service)
		want   []string
	}{
		{"sctp", func(s, _ *lb.Service) { s.Ports[0].Protocol = "SCTP" }, []string{"default/web", "SCTP"}},
		{"port 0", func(s, _ *lb.Service) { s.Ports[0].Port = 0 }, []string{"default/web", "port 0"}},
		{"same port twice", func(s, _ *lb.Service) { s.Ports = append(s.Ports, s.Ports[0]) }, []string{"default/web", "twice"}},
		{"same VIP and port", func(_, o *lb.Service) { o.ClusterIP = netip.MustParseAddr("10.96.0.10") },
			[]string{"default/web:80/TCP", "prod/api:80/TCP", "VIP 10.96.0.10 . tcp . 80"}},
		{"same VIP, one without endpoints", func(s, o *lb.Service) { o.ClusterIP = s.ClusterIP; o.Ports[0].Endpoints = nil },
			[]string{"prod/api:80/TCP", "VIP"}},
		{"same node port", func(_, o *lb.Service) { o.Ports[0].NodePort = 30080 },
			[]string{"node port tcp . 30080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, o := webService(), other
			o.Ports = slices.Clone(other.Ports)
			tc.mutate(&s, &o)
			_, _, err := render(testRender, []lb.Service{s, o})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestRenderLeavesOutBadEndpoints(t *testing.T) {
	s := webService()
	s.Ports[0].Endpoints = append(s.Ports[0].Endpoints,
		netip.MustParseAddrPort("[fd00::1]:8080"),
		netip.MustParseAddrPort("10.244.1.13:0"),
		netip.MustParseAddrPort("10.244.1.10:8080"), // duplicate
		netip.MustParseAddrPort("[::ffff:10.244.1.14]:8080"))
	d, warnings, err := render(testRender, []lb.Service{s})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 2 {
		t.Errorf("warnings %q, want 2 (IPv6, port 0)", warnings)
	}
	if d.endpoints != 4 {
		t.Errorf("%d endpoints, want 4 (3 + the IPv4-mapped one)", d.endpoints)
	}
}

func TestRenderIsOrderIndependent(t *testing.T) {
	a := webService()
	b := webService()
	slices.Reverse(b.Ports[0].Endpoints)
	other := lb.Service{Namespace: "prod", Name: "api", ClusterIP: netip.MustParseAddr("10.96.0.11"),
		Ports: []lb.Port{{Protocol: lb.UDP, Port: 53, Endpoints: eps(53, 20, 21)}}}
	d1 := mustRender(t, testRender, a, other)
	d2 := mustRender(t, testRender, other, b)
	if ops := diff(d1, d2); len(ops) != 0 {
		t.Errorf("same services in another order: %d operations: %v", len(ops), ops)
	}
}

func TestNames(t *testing.T) {
	// Names are stable: a change here renames every chain on upgrade.
	if got := hashName("default/web:80/TCP"); got != "16580869f0a8" {
		t.Errorf("hashName = %s; if the naming changed on purpose, update this", got)
	}
	long := lb.Service{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("s", 63) + "?",
		ClusterIP: netip.MustParseAddr("10.96.0.10"), Affinity: time.Hour,
		Ports: []lb.Port{{Protocol: lb.UDP, Port: 65535, NodePort: 32767, Endpoints: eps(65535, 10, 11)}}}
	d := mustRender(t, testRender, long)
	for name := range d.chains {
		if len(name) > 255 {
			t.Errorf("chain name of %d bytes: %s", len(name), name)
		}
		if strings.ContainsAny(name, "? :") {
			t.Errorf("chain name %q has characters nft would quote", name)
		}
	}
	for name := range d.sets {
		if len(name) > 255 {
			t.Errorf("set name of %d bytes: %s", len(name), name)
		}
	}
}

// manyServices makes n services of 3 endpoints each, every other one with
// affinity and node ports, UDP and TCP mixed; endpoints are unique.
func manyServices(n int) []lb.Service {
	out := make([]lb.Service, n)
	for i := range out {
		proto := lb.TCP
		if i%3 == 0 {
			proto = lb.UDP
		}
		p := lb.Port{Protocol: proto, Port: 80}
		for j := range 3 {
			p.Endpoints = append(p.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), byte(10 + j)}), 8080))
		}
		s := lb.Service{Namespace: "ns", Name: fmt.Sprintf("s%d", i), ClusterIP: netip.AddrFrom4([4]byte{10, 96, 0, byte(i)}), Ports: []lb.Port{p}}
		if i%2 == 0 {
			s.Affinity = time.Minute
			s.Ports[0].NodePort = uint16(30000 + i)
		}
		out[i] = s
	}
	return out
}

func clone(services []lb.Service) []lb.Service {
	out := slices.Clone(services)
	for i := range out {
		out[i].Ports = slices.Clone(out[i].Ports)
		for j := range out[i].Ports {
			out[i].Ports[j].Endpoints = slices.Clone(out[i].Ports[j].Endpoints)
		}
	}
	return out
}

func TestDiffTouchesOnlyTheChangedService(t *testing.T) {
	base := manyServices(40)
	for _, tc := range []struct {
		name   string
		i      int // the service changed
		change func(p *lb.Port)
		kinds  []opKind // the kinds of operations expected, at least
	}{
		{"replace an endpoint", 17, func(p *lb.Port) { p.Endpoints[1] = netip.MustParseAddrPort("10.244.99.1:8080") },
			[]opKind{opDelElems, opAddElems}},
		{"remove an endpoint", 17, func(p *lb.Port) { p.Endpoints = p.Endpoints[:2] },
			[]opKind{opFlushChain, opAddRules, opDelElems}},
		{"add an endpoint", 17, func(p *lb.Port) { p.Endpoints = append(p.Endpoints, netip.MustParseAddrPort("10.244.99.1:8080")) },
			[]opKind{opFlushChain, opAddRules, opAddElems}},
		{"remove an endpoint with affinity", 18, func(p *lb.Port) { p.Endpoints = p.Endpoints[1:] },
			[]opKind{opFlushChain, opAddRules, opDelElems, opDelChain, opDelSet}},
		{"add an endpoint with affinity", 18, func(p *lb.Port) { p.Endpoints = append(p.Endpoints, netip.MustParseAddrPort("10.244.99.1:8080")) },
			[]opKind{opAddSet, opAddChain, opFlushChain, opAddRules, opAddElems}},
		{"no endpoints left", 17, func(p *lb.Port) { p.Endpoints = nil },
			[]opKind{opFlushChain, opDelElems, opAddElems, opDelChain, opDelSet}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := mustRender(t, testRender, base...)
			changed := clone(base)
			tc.change(&changed[tc.i].Ports[0])
			new := mustRender(t, testRender, changed...)
			ops := diff(old, new)
			if len(ops) == 0 {
				t.Fatal("no operations")
			}
			want := changed[tc.i].PortID(changed[tc.i].Ports[0])
			kinds := map[opKind]bool{}
			for _, o := range ops {
				kinds[o.kind] = true
				for _, owner := range o.owners() {
					if owner != want {
						t.Errorf("operation %q touches %s, not only %s", o, owner, want)
					}
				}
				if len(o.owners()) == 0 {
					t.Errorf("operation %q touches the table's own objects", o)
				}
			}
			for _, k := range tc.kinds {
				if !kinds[k] {
					t.Errorf("no %q operation in %v", k, ops)
				}
			}
			checkOps(t, old, new, ops)
		})
	}
}

func TestDiffRemovalOrder(t *testing.T) {
	s := webService()
	s.Affinity = time.Hour
	old := mustRender(t, testRender, s)
	new := mustRender(t, testRender)
	ops := diff(old, new)
	// Element removals and chain flushes come before chain deletions,
	// which come before set deletions.
	last := map[opKind]int{}
	first := map[opKind]int{}
	for i, o := range ops {
		if _, ok := first[o.kind]; !ok {
			first[o.kind] = i
		}
		last[o.kind] = i
	}
	for _, pair := range [][2]opKind{{opFlushChain, opDelChain}, {opDelElems, opDelChain}, {opDelChain, opDelSet}} {
		if last[pair[0]] > first[pair[1]] {
			t.Errorf("a %q after a %q: %v", pair[0], pair[1], ops)
		}
	}
	if _, ok := first[opDelSet]; !ok {
		t.Errorf("no set deleted: %v", ops)
	}
	checkOps(t, old, new, ops)
}

func TestDiffNothingToDo(t *testing.T) {
	d1 := mustRender(t, testRender, manyServices(10)...)
	d2 := mustRender(t, testRender, manyServices(10)...)
	if ops := diff(d1, d2); len(ops) != 0 {
		t.Errorf("%d operations between equal renderings: %v", len(ops), ops)
	}
}

func TestDiffFromEmpty(t *testing.T) {
	d := mustRender(t, testRender, manyServices(10)...)
	checkOps(t, nil, d, diff(nil, d))
}

// TestDiffRandomTransitions checks that the operations between random
// states are valid in their order and reach the new state.
func TestDiffRandomTransitions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	state := manyServices(12)
	old := mustRender(t, testRender, state...)
	for step := range 200 {
		next := clone(state)
		for range 1 + r.IntN(3) {
			s := &next[r.IntN(len(next))]
			p := &s.Ports[0]
			switch r.IntN(6) {
			case 0:
				p.Endpoints = nil
			case 1:
				p.Endpoints = append(p.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, 200, byte(r.IntN(250))}), 8080))
			case 2:
				if len(p.Endpoints) > 0 {
					p.Endpoints = p.Endpoints[1:]
				}
			case 3:
				if s.Affinity == 0 {
					s.Affinity = time.Duration(1+r.IntN(3)) * time.Minute
				} else {
					s.Affinity = 0
				}
			case 4:
				if p.NodePort == 0 {
					p.NodePort = uint16(31000 + r.IntN(500))
				} else {
					p.NodePort = 0
				}
			case 5:
				s.ClusterIP = netip.AddrFrom4([4]byte{10, 96, 1, byte(r.IntN(250))})
			}
		}
		new, _, err := render(testRender, next)
		if err != nil {
			continue // a random clash of VIPs or node ports: not a state to move to
		}
		ops := diff(old, new)
		if !checkOps(t, old, new, ops) {
			t.Fatalf("step %d", step)
		}
		old, state = new, next
	}
}

// model is the part of the kernel's state the ordering of a transaction
// depends on: what exists and what refers to what.
type model struct {
	chains map[string][]string          // chain → the chains and sets its rules use ("set " prefix for sets)
	sets   map[string]bool              // named sets
	elems  map[string]map[string]string // set → key → goto target
}

func modelOf(d *desc) *model {
	m := &model{chains: map[string][]string{}, sets: map[string]bool{}, elems: map[string]map[string]string{}}
	if d == nil {
		return m
	}
	for name, c := range d.chains {
		m.chains[name] = refsOf(c)
	}
	for name := range d.sets {
		m.sets[name] = true
		m.elems[name] = map[string]string{}
	}
	for k, e := range d.elems {
		m.elems[k.set][k.String()] = elemValue(e)
	}
	return m
}

// elemValue is what an element maps to: a chain (what references care
// about) or, in an endpoint address map, "to <address>".
func elemValue(e elem) string {
	if e.to.IsValid() {
		return "to " + e.to.String()
	}
	return e.target
}

func refsOf(c *chain) []string {
	var out []string
	for _, r := range c.rules {
		for _, s := range r {
			switch s := s.(type) {
			case verdict:
				if s.chain != "" {
					out = append(out, s.chain)
				}
			case lookupDest:
				out = append(out, "set "+s.set)
			case lookupNodePort:
				out = append(out, "set "+s.set)
			case lookupSaddr:
				out = append(out, "set "+s.set)
			case updateSaddr:
				out = append(out, "set "+s.set)
			case numgenVmap:
				out = append(out, "set "+s.set)
			case dnatMap:
				out = append(out, "set "+s.set)
			case matchHairpin:
				out = append(out, "set "+setHairpin)
			}
		}
	}
	return out
}

// referenced says whether anything refers to the chain or set name.
func (m *model) referenced(ref string) string {
	for c, refs := range m.chains {
		if slices.Contains(refs, ref) {
			return "chain " + c
		}
	}
	for s, els := range m.elems {
		for k, target := range els {
			if target == ref {
				return fmt.Sprintf("element %s of %s", k, s)
			}
		}
	}
	return ""
}

// checkOps applies ops to old's model as the kernel would, failing on an
// operation the kernel would refuse, and compares the end with new.
func checkOps(t *testing.T, old, new *desc, ops []op) bool {
	t.Helper()
	m := modelOf(old)
	ok := true
	fail := func(i int, format string, args ...any) {
		t.Errorf("operation %d (%s): %s", i, ops[i], fmt.Sprintf(format, args...))
		ok = false
	}
	exists := func(ref string) bool {
		if name, isSet := strings.CutPrefix(ref, "set "); isSet {
			return m.sets[name]
		}
		_, found := m.chains[ref]
		return found
	}
	for i, o := range ops {
		switch o.kind {
		case opAddSet:
			if m.sets[o.set.name] {
				fail(i, "set exists")
			}
			m.sets[o.set.name] = true
			m.elems[o.set.name] = map[string]string{}
		case opAddChain:
			if _, found := m.chains[o.chain.name]; found {
				fail(i, "chain exists")
			}
			m.chains[o.chain.name] = nil
		case opFlushChain:
			if _, found := m.chains[o.chain.name]; !found {
				fail(i, "no such chain")
			}
			m.chains[o.chain.name] = nil
		case opAddRules:
			refs, found := m.chains[o.chain.name]
			if !found || len(refs) > 0 {
				fail(i, "chain missing or not empty")
			}
			for _, ref := range refsOf(o.chain) {
				if !exists(ref) {
					fail(i, "refers to missing %s", ref)
				}
			}
			m.chains[o.chain.name] = refsOf(o.chain)
		case opAddElems, opDelElems:
			els, found := m.elems[o.set.name]
			if !found {
				fail(i, "no such set")
				continue
			}
			for _, e := range o.elems {
				k := e.elemKey.String()
				_, present := els[k]
				if o.kind == opAddElems {
					if present {
						fail(i, "element %s exists", k)
					}
					if e.target != "" && !exists(e.target) {
						fail(i, "element %s goes to missing chain %s", k, e.target)
					}
					els[k] = elemValue(e)
				} else {
					if !present {
						fail(i, "no element %s", k)
					}
					delete(els, k)
				}
			}
		case opDelChain:
			if refs := m.chains[o.chain.name]; len(refs) > 0 {
				fail(i, "chain not empty")
			}
			if by := m.referenced(o.chain.name); by != "" {
				fail(i, "chain still used by %s", by)
			}
			delete(m.chains, o.chain.name)
		case opDelSet:
			if by := m.referenced("set " + o.set.name); by != "" {
				fail(i, "set still used by %s", by)
			}
			delete(m.sets, o.set.name)
			delete(m.elems, o.set.name)
		}
	}
	want := modelOf(new)
	for name, refs := range want.chains {
		if got, found := m.chains[name]; !found || !slices.Equal(got, refs) {
			t.Errorf("after the operations chain %s uses %v, want %v", name, got, refs)
			ok = false
		}
	}
	for name := range m.chains {
		if _, found := want.chains[name]; !found {
			t.Errorf("after the operations chain %s is left", name)
			ok = false
		}
	}
	for name, els := range want.elems {
		for k, target := range els {
			if got, found := m.elems[name][k]; !found || got != target {
				t.Errorf("after the operations @%s lacks %s : %s", name, k, target)
				ok = false
			}
		}
		if len(m.elems[name]) != len(els) {
			t.Errorf("after the operations @%s has %d elements, want %d", name, len(m.elems[name]), len(els))
			ok = false
		}
	}
	for name := range m.sets {
		if !want.sets[name] {
			t.Errorf("after the operations set %s is left", name)
			ok = false
		}
	}
	return ok
}
