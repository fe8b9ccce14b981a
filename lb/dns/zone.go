package dns

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/shoalproj/shoal/lb"
)

// SOA timers of the cluster zone. Nothing transfers the zone, so only the
// minimum matters: it is the TTL of negative answers (RFC 2308), kept
// equal to the records' TTL so that a name created a moment after a miss
// resolves as soon as a new one would.
const (
	soaRefresh = 7200
	soaRetry   = 1800
	soaExpire  = 86400
	// srvWeight is every SRV record's weight: one record per port name,
	// so any value works; 100 is what Kubernetes' DNS gives.
	srvWeight = 100
)

// zone is one immutable snapshot of the records: Set builds a new one and
// swaps it in whole, so a query reads one consistent version without a
// lock.
type zone struct {
	origin string // the cluster domain: lower case, fully qualified
	soa    *dns.SOA
	// names holds every name that exists under origin (lower case) with
	// its records. The names that have none — origin, svc.ORIGIN,
	// NS.svc.ORIGIN, _PROTO.NAME.NS.svc.ORIGIN, a service without a
	// ClusterIP — are present with an empty list, so that they answer
	// NODATA instead of NXDOMAIN (RFC 8020: NXDOMAIN denies everything
	// below the name too).
	names map[string][]dns.RR
	// reverse maps the in-addr.arpa / ip6.arpa name of each ClusterIP to
	// its PTR records. The rest of those trees is not ours: a reverse name
	// not found here is forwarded.
	reverse map[string][]dns.RR
}

// buildZone makes the records of services under origin (already
// normalised by normaliseDomain). A service or port whose name cannot be
// a DNS label is left out and reported in the returned error; the others
// are still served.
func buildZone(origin string, ttl, serial uint32, services []lb.Service) (*zone, error) {
	z := &zone{
		origin: origin,
		soa: &dns.SOA{
			Hdr:     dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:      "ns.dns." + origin,
			Mbox:    "hostmaster." + origin,
			Serial:  serial,
			Refresh: soaRefresh,
			Retry:   soaRetry,
			Expire:  soaExpire,
			Minttl:  ttl,
		},
		names:   map[string][]dns.RR{origin: nil},
		reverse: map[string][]dns.RR{},
	}
	var errs []error
	for i := range services {
		svc := &services[i]
		ns, name := strings.ToLower(svc.Namespace), strings.ToLower(svc.Name)
		if !isLabel(ns) || !isLabel(name) {
			errs = append(errs, fmt.Errorf("service %q in namespace %q: not a DNS label, no records", svc.Name, svc.Namespace))
			continue
		}
		owner := name + "." + ns + ".svc." + origin
		z.add(owner, nil) // exists even with no address
		addr := svc.ClusterIP.Unmap()
		if !addr.IsValid() || addr.IsUnspecified() {
			// No virtual IP (headless, or not allocated yet): the name
			// exists but has no address, and SRV records would point at
			// nothing, so there are none.
			continue
		}
		hdr := dns.RR_Header{Name: owner, Class: dns.ClassINET, Ttl: ttl}
		if addr.Is4() {
			hdr.Rrtype = dns.TypeA
			z.add(owner, &dns.A{Hdr: hdr, A: addr.AsSlice()})
		} else {
			hdr.Rrtype = dns.TypeAAAA
			z.add(owner, &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()})
		}
		rev, err := dns.ReverseAddr(addr.String())
		if err == nil {
			z.reverse[rev] = append(z.reverse[rev], &dns.PTR{
				Hdr: dns.RR_Header{Name: rev, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl},
				Ptr: owner,
			})
		}
		for _, p := range svc.Ports {
			if p.Name == "" {
				continue // Kubernetes gives SRV records to named ports only
			}
			pn := strings.ToLower(p.Name)
			if !isLabel(pn) {
				errs = append(errs, fmt.Errorf("service %s/%s port %q: not a DNS label, no SRV record", svc.Namespace, svc.Name, p.Name))
				continue
			}
			srvName := "_" + pn + "._" + strings.ToLower(string(p.Protocol)) + "." + owner
			z.add(srvName, &dns.SRV{
				Hdr:      dns.RR_Header{Name: srvName, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
				Priority: 0,
				Weight:   srvWeight,
				Port:     p.Port,
				Target:   owner,
			})
		}
	}
	return z, errors.Join(errs...)
}

// add records rr (if not nil) at name, and makes name and every name
// between it and the origin exist.
func (z *zone) add(name string, rr dns.RR) {
	if rr != nil {
		z.names[name] = append(z.names[name], rr)
	} else if _, ok := z.names[name]; !ok {
		z.names[name] = nil
	}
	for n := name; n != z.origin; {
		i, end := dns.NextLabel(n, 0)
		if end {
			return
		}
		n = n[i:]
		if _, ok := z.names[n]; !ok {
			z.names[n] = nil
		}
	}
}

// answer is the whole answer logic, without I/O: the reply to req from
// z's records, or nil when the question is not z's to answer (a name
// outside the cluster domain that is not the reverse name of a
// ClusterIP), which the caller forwards. Names match without regard to
// case; owner names in the answer are spelled as asked.
func (z *zone) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery {
		return m.SetRcode(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return m.SetRcode(req, dns.RcodeFormatError)
	}
	q := req.Question[0]
	asked := dns.Fqdn(q.Name)
	name := strings.ToLower(asked)
	inZone := dns.IsSubDomain(z.origin, name)
	ptrs, isReverse := z.reverse[name]
	if !inZone && !isReverse {
		return nil
	}
	m.SetReply(req)
	m.Question[0].Name = asked // on the wire it is absolute already
	m.Authoritative = true
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		// Services exist in class IN only; other classes here are a
		// client's mistake, not a question for the upstreams.
		m.Rcode = dns.RcodeRefused
		return m
	}
	if isReverse {
		if q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY {
			m.Answer = renamed(ptrs, asked)
		}
		// NODATA for another type: no SOA, as the reverse zone is not
		// ours to describe.
		return m
	}
	rrs, exists := z.names[name]
	if !exists {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{dns.Copy(z.soa)}
		return m
	}
	for _, rr := range rrs {
		if q.Qtype == dns.TypeANY || rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, renamed([]dns.RR{rr}, asked)...)
		}
	}
	if name == z.origin && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY) {
		m.Answer = append(m.Answer, renamed([]dns.RR{z.soa}, asked)...)
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{dns.Copy(z.soa)} // NODATA: the SOA lets resolvers cache it (RFC 2308)
		return m
	}
	// The address of each SRV target, so that the client needs no second
	// query.
	seen := map[string]bool{}
	for _, rr := range m.Answer {
		srv, ok := rr.(*dns.SRV)
		if !ok || seen[srv.Target] {
			continue
		}
		seen[srv.Target] = true
		for _, a := range z.names[srv.Target] {
			if t := a.Header().Rrtype; t == dns.TypeA || t == dns.TypeAAAA {
				m.Extra = append(m.Extra, dns.Copy(a))
			}
		}
	}
	return m
}

// renamed copies rrs with owner name, so that an answer spells the name
// as the question did (some clients compare it). Replies only ever hold
// copies: the zone is shared by concurrent queries and must stay as built.
func renamed(rrs []dns.RR, owner string) []dns.RR {
	out := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Name = owner
		out = append(out, c)
	}
	return out
}

// isLabel reports whether s can be one label of a service's name: 1 to 63
// lower-case letters, digits and hyphens, not starting or ending with a
// hyphen (RFC 1123, as Kubernetes requires of names and port names).
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// normaliseDomain makes the cluster domain lower case and fully qualified,
// "" meaning cluster.local.
func normaliseDomain(domain string) (string, error) {
	if domain == "" {
		domain = DefaultDomain
	}
	d := strings.ToLower(dns.Fqdn(strings.TrimSpace(domain)))
	if d == "." {
		return "", fmt.Errorf("dns: domain %q: the root cannot be the cluster domain", domain)
	}
	if _, ok := dns.IsDomainName(d); !ok {
		return "", fmt.Errorf("dns: domain %q: not a domain name", domain)
	}
	for _, l := range dns.SplitDomainName(d) {
		if !isLabel(l) {
			return "", fmt.Errorf("dns: domain %q: label %q is not letters, digits and hyphens", domain, l)
		}
	}
	return d, nil
}
