package dns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/shoalproj/shoal/lb"
)

// testServices is the cluster the answer tests ask about.
func testServices() []lb.Service {
	return []lb.Service{
		{
			Namespace: "default", Name: "web",
			ClusterIP: netip.MustParseAddr("10.96.0.10"),
			Ports: []lb.Port{
				{Name: "http", Protocol: lb.TCP, Port: 80},
				{Name: "metrics", Protocol: lb.TCP, Port: 9100},
			},
		},
		{
			Namespace: "kube-system", Name: "dns",
			ClusterIP: netip.MustParseAddr("10.96.0.53"),
			Ports: []lb.Port{
				{Name: "dns", Protocol: lb.UDP, Port: 53},
				{Name: "dns-tcp", Protocol: lb.TCP, Port: 53},
			},
		},
		// One unnamed port: no SRV record.
		{Namespace: "default", Name: "single", ClusterIP: netip.MustParseAddr("10.96.0.11"),
			Ports: []lb.Port{{Protocol: lb.TCP, Port: 8080}}},
		// No ClusterIP: the name exists without records.
		{Namespace: "default", Name: "headless", Ports: []lb.Port{{Name: "http", Protocol: lb.TCP, Port: 80}}},
		{Namespace: "v6", Name: "api", ClusterIP: netip.MustParseAddr("fd00:96::1"),
			Ports: []lb.Port{{Name: "https", Protocol: lb.TCP, Port: 443}}},
		// Upper case in the model is served in lower case.
		{Namespace: "Default", Name: "Mixed", ClusterIP: netip.MustParseAddr("10.96.0.12")},
	}
}

func mustZone(t *testing.T, origin string, services []lb.Service) *zone {
	t.Helper()
	o, err := normaliseDomain(origin)
	if err != nil {
		t.Fatal(err)
	}
	z, err := buildZone(o, 5, 42, services)
	if err != nil {
		t.Fatalf("buildZone: %v", err)
	}
	return z
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.Id = 1234
	m.RecursionDesired = true
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	return m
}

// rrStrings renders records the way zone files write them, TTL included,
// for comparing with the want of a table row.
func rrStrings(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

func TestAnswer(t *testing.T) {
	z := mustZone(t, "cluster.local", testServices())
	const soa = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5"
	tests := []struct {
		name    string
		q       string
		qtype   uint16
		rcode   int
		answer  []string
		ns      []string
		extra   []string
		forward bool // answer returns nil: not ours
	}{
		{name: "A", q: "web.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "A without trailing dot", q: "web.default.svc.cluster.local", qtype: dns.TypeA,
			answer: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "A in upper case keeps the asked spelling", q: "WEB.Default.SVC.cluster.LOCAL.", qtype: dns.TypeA,
			answer: []string{"WEB.Default.SVC.cluster.LOCAL. 5 IN A 10.96.0.10"}},
		{name: "A of a service named in upper case", q: "mixed.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{"mixed.default.svc.cluster.local. 5 IN A 10.96.0.12"}},
		{name: "AAAA of an IPv4 service is NODATA", q: "web.default.svc.cluster.local.", qtype: dns.TypeAAAA,
			ns: []string{soa}},
		{name: "AAAA of an IPv6 service", q: "api.v6.svc.cluster.local.", qtype: dns.TypeAAAA,
			answer: []string{"api.v6.svc.cluster.local. 5 IN AAAA fd00:96::1"}},
		{name: "A of an IPv6 service is NODATA", q: "api.v6.svc.cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "ANY", q: "web.default.svc.cluster.local.", qtype: dns.TypeANY,
			answer: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "SRV with the address in additional", q: "_http._tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "SRV of a UDP port", q: "_dns._udp.dns.kube-system.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"_dns._udp.dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 dns.kube-system.svc.cluster.local."},
			extra:  []string{"dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.53"}},
		{name: "SRV in mixed case", q: "_HTTP._Tcp.Web.default.svc.cluster.local", qtype: dns.TypeSRV,
			answer: []string{"_HTTP._Tcp.Web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{name: "SRV of an IPv6 service carries the AAAA", q: "_https._tcp.api.v6.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"_https._tcp.api.v6.svc.cluster.local. 5 IN SRV 0 100 443 api.v6.svc.cluster.local."},
			extra:  []string{"api.v6.svc.cluster.local. 5 IN AAAA fd00:96::1"}},
		{name: "SRV of the wrong protocol", q: "_http._udp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "SRV of an unknown port", q: "_nope._tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "A at an SRV name is NODATA", q: "_http._tcp.web.default.svc.cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "protocol level of the SRV tree exists", q: "_tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			ns: []string{soa}},
		{name: "unnamed port has no SRV", q: "_tcp.single.default.svc.cluster.local.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "service without ClusterIP exists without address", q: "headless.default.svc.cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "service without ClusterIP has no SRV", q: "_http._tcp.headless.default.svc.cluster.local.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "unknown service", q: "nope.default.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "service in another namespace", q: "web.kube-system.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "namespace exists", q: "default.svc.cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "namespace in upper case", q: "KUBE-SYSTEM.svc.cluster.local", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "namespace without services", q: "empty.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "svc exists", q: "svc.cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "apex SOA", q: "cluster.local.", qtype: dns.TypeSOA,
			answer: []string{soa}},
		{name: "apex SOA in upper case", q: "CLUSTER.LOCAL.", qtype: dns.TypeSOA,
			answer: []string{strings.Replace(soa, "cluster.local.", "CLUSTER.LOCAL.", 1)}},
		{name: "apex A is NODATA", q: "cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "other tree under the domain", q: "web.default.pod.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "bare service name is not a name of the domain", q: "web.", qtype: dns.TypeA,
			forward: true},
		{name: "PTR of a ClusterIP", q: "10.0.96.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."}},
		{name: "PTR in upper case", q: "10.0.96.10.IN-ADDR.ARPA", qtype: dns.TypePTR,
			answer: []string{"10.0.96.10.IN-ADDR.ARPA. 5 IN PTR web.default.svc.cluster.local."}},
		{name: "PTR of an IPv6 ClusterIP", q: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.", qtype: dns.TypePTR,
			answer: []string{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa. 5 IN PTR api.v6.svc.cluster.local."}},
		{name: "other type at a ClusterIP's reverse name", q: "10.0.96.10.in-addr.arpa.", qtype: dns.TypeA},
		{name: "PTR of another address is forwarded", q: "8.8.8.8.in-addr.arpa.", qtype: dns.TypePTR,
			forward: true},
		{name: "outside the domain is forwarded", q: "example.com.", qtype: dns.TypeA,
			forward: true},
		{name: "a domain that only ends like ours is forwarded", q: "notcluster.local.", qtype: dns.TypeA,
			forward: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := query(tt.q, tt.qtype)
			resp := z.answer(req)
			if tt.forward {
				if resp != nil {
					t.Fatalf("answered locally, want forwarded:\n%v", resp)
				}
				return
			}
			if resp == nil {
				t.Fatal("forwarded, want a local answer")
			}
			if resp.Id != req.Id || !resp.Response || !resp.Authoritative || !resp.RecursionDesired {
				t.Errorf("header: id %d response %v aa %v rd %v, want id %d, response, aa, rd copied",
					resp.Id, resp.Response, resp.Authoritative, resp.RecursionDesired, req.Id)
			}
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			for _, sec := range []struct {
				what      string
				got, want []string
			}{
				{"answer", rrStrings(resp.Answer), tt.answer},
				{"authority", rrStrings(resp.Ns), tt.ns},
				{"additional", rrStrings(resp.Extra), tt.extra},
			} {
				if !slices.Equal(sec.got, append([]string{}, sec.want...)) {
					t.Errorf("%s section:\n got %q\nwant %q", sec.what, sec.got, sec.want)
				}
			}
			// The reply must pack: it goes on the wire as is.
			if _, err := resp.Pack(); err != nil {
				t.Errorf("pack: %v", err)
			}
		})
	}
}

func TestAnswerOtherDomain(t *testing.T) {
	// The domain is given with a trailing dot and in upper case.
	z := mustZone(t, "Corp.Example.", testServices())
	resp := z.answer(query("web.default.svc.corp.example.", dns.TypeA))
	if resp == nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "10.96.0.10" {
		t.Fatalf("A under corp.example: %v", resp)
	}
	if z.answer(query("web.default.svc.cluster.local.", dns.TypeA)) != nil {
		t.Error("cluster.local answered locally with another domain configured, want forwarded")
	}
}

func TestAnswerMalformed(t *testing.T) {
	z := mustZone(t, "", testServices())
	two := query("web.default.svc.cluster.local.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	notify := query("cluster.local.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	chaos := query("web.default.svc.cluster.local.", dns.TypeA)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	for _, tt := range []struct {
		name  string
		req   *dns.Msg
		rcode int
	}{
		{"two questions", two, dns.RcodeFormatError},
		{"no question", &dns.Msg{}, dns.RcodeFormatError},
		{"notify", notify, dns.RcodeNotImplemented},
		{"class CHAOS in the domain", chaos, dns.RcodeRefused},
	} {
		resp := z.answer(tt.req)
		if resp == nil || resp.Rcode != tt.rcode || len(resp.Answer) != 0 {
			t.Errorf("%s: got %v, want rcode %s and no answer", tt.name, resp, dns.RcodeToString[tt.rcode])
		}
	}
}

func TestBuildZoneReportsBadNames(t *testing.T) {
	services := []lb.Service{
		{Namespace: "default", Name: "web", ClusterIP: netip.MustParseAddr("10.96.0.10"),
			Ports: []lb.Port{{Name: "bad_port", Protocol: lb.TCP, Port: 80}, {Name: "ok", Protocol: lb.TCP, Port: 81}}},
		{Namespace: "default", Name: "has.dot", ClusterIP: netip.MustParseAddr("10.96.0.11")},
		{Namespace: "-bad", Name: "x", ClusterIP: netip.MustParseAddr("10.96.0.12")},
	}
	z, err := buildZone("cluster.local.", 5, 1, services)
	if err == nil {
		t.Fatal("no error for bad names")
	}
	for _, want := range []string{`"bad_port"`, `"has.dot"`, `"-bad"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	// The good records are still there.
	if r := z.answer(query("_ok._tcp.web.default.svc.cluster.local.", dns.TypeSRV)); r == nil || len(r.Answer) != 1 {
		t.Errorf("good port lost: %v", r)
	}
	if r := z.answer(query("has.dot.default.svc.cluster.local.", dns.TypeA)); r == nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("bad service name answered: %v", r)
	}
}

func TestNormaliseDomain(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "cluster.local."},
		{"cluster.local", "cluster.local."},
		{"Cluster.Local.", "cluster.local."},
		{"k8s", "k8s."},
	} {
		got, err := normaliseDomain(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("normaliseDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{".", "a..b", "under_score.local", "sp ace.local"} {
		if got, err := normaliseDomain(bad); err == nil {
			t.Errorf("normaliseDomain(%q) = %q, want an error", bad, got)
		}
	}
}
