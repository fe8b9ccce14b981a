package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoalproj/shoal/lb"
)

// renderConfig is what of the Config the rendering depends on.
type renderConfig struct {
	clusterCIDR netip.Prefix
	random      bool // numgen random instead of inc
	fullyRandom bool // masquerade fully-random (kernel support probed by New)
}

// desc is the whole table as wanted: a pure function of the services and
// the renderConfig.
type desc struct {
	chains map[string]*chain
	sets   map[string]*set
	elems  map[elemKey]elem
	// ports are the service ports by PortID, for the conntrack cleanup.
	ports                   map[string]*portState
	servicePorts, endpoints int
}

// portState is one rendered service port as the conntrack cleanup needs it.
type portState struct {
	proto     lb.Protocol
	vip       netip.Addr // invalid: no ClusterIP
	port      uint16
	nodePort  uint16
	endpoints []netip.AddrPort
}

func newDesc() *desc { return newDescSized(0, 0) }

// newDescSized makes the maps big enough for ports service ports with
// eps endpoints in all: growing them is most of render's time otherwise.
func newDescSized(ports, eps int) *desc {
	return &desc{
		chains: make(map[string]*chain, 16+2*ports),
		sets:   make(map[string]*set, 8+ports),
		elems:  make(map[elemKey]elem, 2*(ports+eps)),
		ports:  make(map[string]*portState, ports),
	}
}

// objects is how many chains and sets the kernel should count in the
// table once d is applied (the table's "use").
func (d *desc) objects() int { return len(d.chains) + len(d.sets) }

// Priorities of the base chains. The filter chains run just before DNAT
// so that they see the destination the client used (the VIP or node
// port), whatever a DNAT rule would turn it into.
const (
	prioDstNAT = -100
	prioSrcNAT = 100
	prioFilter = prioDstNAT - 10
)

// renderBase adds the chains and sets every table has, whatever the
// services.
func renderBase(cfg renderConfig, d *desc) {
	jumpServices := rule{verdict{verdictJump, chainServices}}
	checkNew := rule{matchCtNew{}, verdict{verdictJump, chainRejectCheck}}
	for _, c := range []*chain{
		newChain(chainPrerouting, "", &hook{"nat", "prerouting", prioDstNAT}, jumpServices),
		newChain(chainOutput, "", &hook{"nat", "output", prioDstNAT}, jumpServices),
		newChain(chainPostrouting, "", &hook{"nat", "postrouting", prioSrcNAT},
			rule{matchHairpin{}, setMasqMark{}},
			rule{matchMarkUnset{}, verdict{kind: verdictReturn}},
			// Cleared so that a packet that goes through netfilter again
			// (bridged, tunnelled) is not masqueraded twice.
			rule{clearMasqMark{}},
			rule{masquerade{cfg.fullyRandom}},
		),
		newChain(chainServices, "", nil,
			rule{lookupDest{setServiceIPs, true}},
			rule{matchFibLocal{}, lookupNodePort{setServiceNodePorts, true}},
		),
		newChain(chainFilterInput, "", &hook{"filter", "input", prioFilter}, checkNew),
		newChain(chainFilterForward, "", &hook{"filter", "forward", prioFilter}, checkNew),
		newChain(chainFilterOutput, "", &hook{"filter", "output", prioFilter}, checkNew),
		newChain(chainRejectCheck, "", nil,
			rule{lookupDest{setNoEndpoints, false}, verdict{verdictGoto, chainReject}},
			rule{matchFibLocal{}, lookupNodePort{setNoEndpointNodePorts, false}, verdict{verdictGoto, chainReject}},
		),
		newChain(chainReject, "", nil,
			rule{matchL4Proto{lb.TCP}, reject{tcpReset: true}},
			rule{reject{}},
		),
	} {
		d.chains[c.name] = c
	}
	for _, s := range []*set{
		{name: setServiceIPs, kind: kindVIPMap},
		{name: setServiceNodePorts, kind: kindNodePortMap},
		{name: setNoEndpoints, kind: kindVIPSet},
		{name: setNoEndpointNodePorts, kind: kindNodePortSet},
		{name: setHairpin, kind: kindHairpin},
	} {
		d.sets[s.name] = s
	}
}

// render describes the table for services. Problems that make a service
// impossible to program as asked (a protocol other than TCP or UDP, port
// clashes) are errors naming the service; problems limited to one
// endpoint or address family are returned as warnings and the rest is
// programmed.
func render(cfg renderConfig, services []lb.Service) (*desc, []string, error) {
	nports, neps := 0, 0
	for i := range services {
		nports += len(services[i].Ports)
		for _, p := range services[i].Ports {
			neps += len(p.Endpoints)
		}
	}
	d := newDescSized(nports, neps)
	renderBase(cfg, d)
	var warnings []string
	// Chain and set names → PortID, to catch hash clashes (so unlikely
	// that an error is enough).
	owners := make(map[string]string, 2*nports)
	claim := func(name, id string) error {
		if prev, ok := owners[name]; ok && prev != id {
			return fmt.Errorf("service ports %s and %s hash to the same name %s", prev, id, name)
		}
		owners[name] = id
		return nil
	}
	// Frontends (VIP . protocol . port, or protocol . node port) → PortID:
	// two service ports cannot both have one, endpoints or not.
	frontends := make(map[elemKey]string, 2*nports)
	addFrontend := func(e elem) error {
		k := e.elemKey
		k.set = "" // the same frontend in @service-ips and @no-endpoints
		if prev, ok := frontends[k]; ok {
			a, b := min(prev, e.owner), max(prev, e.owner)
			what := "VIP"
			if !k.vip.IsValid() {
				what = "node port"
			}
			return fmt.Errorf("service ports %s and %s both claim %s %s", a, b, what, k)
		}
		frontends[k] = e.owner
		d.elems[e.elemKey] = e
		return nil
	}

	for si := range services {
		s := &services[si]
		name := s.Namespace + "/" + s.Name
		vip := s.ClusterIP.Unmap()
		hasVIP := vip.Is4() && !vip.IsUnspecified()
		if s.ClusterIP.IsValid() && !hasVIP {
			warnings = append(warnings, fmt.Sprintf("service %s: ClusterIP %s is not a usable IPv4 address: only its node ports are programmed", name, s.ClusterIP))
		}
		if !hasVIP {
			vip = netip.Addr{}
		}
		for _, p := range s.Ports {
			if p.Protocol != lb.TCP && p.Protocol != lb.UDP {
				return nil, nil, fmt.Errorf("service %s port %d: protocol %q: only TCP and UDP are supported", name, p.Port, p.Protocol)
			}
			if p.Port == 0 {
				return nil, nil, fmt.Errorf("service %s port %q (%s): port 0", name, p.Name, p.Protocol)
			}
			id := s.PortID(p)
			if _, dup := d.ports[id]; dup {
				return nil, nil, fmt.Errorf("service %s: port %d/%s listed twice", name, p.Port, p.Protocol)
			}
			eps, ws := cleanEndpoints(name, p)
			warnings = append(warnings, ws...)
			d.ports[id] = &portState{proto: p.Protocol, vip: vip, port: p.Port, nodePort: p.NodePort, endpoints: eps}
			if !hasVIP && p.NodePort == 0 {
				continue // nothing reaches this port
			}
			d.servicePorts++
			d.endpoints += len(eps)

			vipSet, nodePortSet := setServiceIPs, setServiceNodePorts
			var svcName, extName string
			if len(eps) == 0 {
				// Rejected by the filter chains.
				vipSet, nodePortSet = setNoEndpoints, setNoEndpointNodePorts
			} else {
				var err error
				if svcName, extName, err = renderPort(cfg, d, s, p, id, hasVIP, eps, claim); err != nil {
					return nil, nil, err
				}
			}
			if hasVIP {
				e := elem{elemKey: elemKey{set: vipSet, vip: vip, proto: p.Protocol, port: p.Port}, target: svcName, owner: id}
				if err := addFrontend(e); err != nil {
					return nil, nil, err
				}
			}
			if p.NodePort != 0 {
				e := elem{elemKey: elemKey{set: nodePortSet, proto: p.Protocol, port: p.NodePort}, target: extName, owner: id}
				if err := addFrontend(e); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	return d, warnings, nil
}

// renderPort adds the chains, sets and map elements of one service port
// that has endpoints:
//
//	svc-<hash>-<hint>  (from @service-ips, and from ext-… for the node port)
//	    ip saddr != <cluster CIDR> meta mark set meta mark | 0x4000
//	    meta l4proto tcp dnat to numgen inc mod N map @eps-<hash>-<hint>
//
// or, with ClientIP affinity, one chain per endpoint:
//
//	svc-<hash>-<hint>
//	    ip saddr != <cluster CIDR> meta mark set meta mark | 0x4000
//	    ip saddr @aff-<ephash>-<timeout> goto ep-<ephash>-<ip>/<port>   (per endpoint)
//	    numgen inc mod N vmap @epc-<hash>-<hint>
//	ep-<ephash>-<ip>/<port>
//	    update @aff-<ephash>-<timeout> { ip saddr }
//	    meta l4proto tcp dnat to <ip>:<port>
//
// Without affinity there is no endpoint chain: kube-proxy's per-endpoint
// chains exist for affinity and for the hairpin mark, and the hairpin
// mark is made once for all endpoints in postrouting (@hairpin). That
// makes a third of the kernel objects, and so of the transaction.
//
// It returns the names of the chains the VIP and the node port go to.
func renderPort(cfg renderConfig, d *desc, s *lb.Service, p lb.Port, id string, hasVIP bool,
	eps []netip.AddrPort, claim func(name, id string) error) (svcName, extName string, err error) {
	h := hashName(id)
	hint := portHint(s, p)
	svcName = "svc-" + h + "-" + hint
	if err := claim(svcName, id); err != nil {
		return "", "", err
	}
	var svcRules []rule
	if hasVIP {
		// From outside the pod network through this node (another host
		// routing the VIP here): the endpoint's reply must come back
		// through this node to be un-DNATed, so the source is rewritten to
		// this node's. The node's own connections come from its address
		// (the service route's source) and need not be.
		svcRules = append(svcRules, rule{matchSaddrNotIn{cfg.clusterCIDR}, matchSaddrNotLocal{}, setMasqMark{}})
	}
	for _, ep := range eps {
		// A pod reaching itself through the VIP would see a packet from
		// its own address and answer it locally: masqueraded.
		k := elemKey{set: setHairpin, vip: ep.Addr()}
		if prev, ok := d.elems[k]; !ok || id < prev.owner {
			d.elems[k] = elem{elemKey: k, owner: id}
		}
	}

	if affinity := affinityTimeout(s.Affinity); affinity > 0 {
		targets := make([]string, len(eps))
		for i, ep := range eps {
			eh := hashName(id + "|" + ep.String())
			epName := "ep-" + eh + "-" + ep.Addr().String() + "/" + strconv.Itoa(int(ep.Port()))
			affName := "aff-" + eh + "-" + affinity.String()
			if err := claim(epName, id); err != nil {
				return "", "", err
			}
			if err := claim("set "+affName, id); err != nil {
				return "", "", err
			}
			targets[i] = epName
			d.sets[affName] = &set{name: affName, kind: kindAffinity, timeout: affinity, owner: id}
			svcRules = append(svcRules, rule{lookupSaddr{affName}, verdict{verdictGoto, epName}})
			d.chains[epName] = newChain(epName, id, nil,
				rule{updateSaddr{affName}},
				rule{matchL4Proto{p.Protocol}, dnatTo{ep}})
		}
		if len(targets) == 1 {
			svcRules = append(svcRules, rule{verdict{verdictGoto, targets[0]}})
		} else {
			mapName := "epc-" + h + "-" + hint
			if err := claim("set "+mapName, id); err != nil {
				return "", "", err
			}
			d.sets[mapName] = &set{name: mapName, kind: kindEndpointChains, owner: id}
			svcRules = append(svcRules, rule{numgenVmap{random: cfg.random, count: len(targets), set: mapName}})
			for i, t := range targets {
				k := elemKey{set: mapName, idx: uint32(i)}
				d.elems[k] = elem{elemKey: k, target: t, owner: id}
			}
		}
	} else if len(eps) == 1 {
		svcRules = append(svcRules, rule{matchL4Proto{p.Protocol}, dnatTo{eps[0]}})
	} else {
		mapName := "eps-" + h + "-" + hint
		if err := claim("set "+mapName, id); err != nil {
			return "", "", err
		}
		d.sets[mapName] = &set{name: mapName, kind: kindEndpointAddrs, owner: id}
		svcRules = append(svcRules, rule{matchL4Proto{p.Protocol}, dnatMap{random: cfg.random, count: len(eps), set: mapName}})
		for i, ep := range eps {
			k := elemKey{set: mapName, idx: uint32(i)}
			d.elems[k] = elem{elemKey: k, to: ep, owner: id}
		}
	}
	d.chains[svcName] = newChain(svcName, id, nil, svcRules...)

	if p.NodePort != 0 {
		// Node port traffic from elsewhere is masqueraded
		// (externalTrafficPolicy Cluster): the endpoint may be on another
		// node, and its reply must come back through this one.
		extName = "ext-" + h + "-" + hint
		if err := claim(extName, id); err != nil {
			return "", "", err
		}
		d.chains[extName] = newChain(extName, id, nil, rule{matchSaddrNotLocal{}, setMasqMark{}}, rule{verdict{verdictGoto, svcName}})
	}
	return svcName, extName, nil
}

// cleanEndpoints returns the port's usable endpoints sorted without
// duplicates (so that the rendering does not depend on their order), and
// warnings for those left out.
func cleanEndpoints(service string, p lb.Port) ([]netip.AddrPort, []string) {
	var warnings []string
	eps := make([]netip.AddrPort, 0, len(p.Endpoints))
	for _, ep := range p.Endpoints {
		a := ep.Addr().Unmap()
		switch {
		case !a.Is4() || a.IsUnspecified():
			warnings = append(warnings, fmt.Sprintf("service %s port %d/%s: endpoint %s left out: not an IPv4 address", service, p.Port, p.Protocol, ep))
		case ep.Port() == 0:
			warnings = append(warnings, fmt.Sprintf("service %s port %d/%s: endpoint %s left out: port 0", service, p.Port, p.Protocol, ep))
		default:
			eps = append(eps, netip.AddrPortFrom(a, ep.Port()))
		}
	}
	slices.SortFunc(eps, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return slices.Compact(eps), warnings
}

// affinityTimeout is the affinity sets' timeout: nftables counts in
// milliseconds, and Kubernetes' smallest timeout is a second.
func affinityTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return max(d.Round(time.Millisecond), time.Second)
}

// hashName is the stable part of a derived name: 12 hex digits (48 bits)
// of SHA-256, with clashes caught by render rather than assumed away.
func hashName(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// maxHint bounds the human part of a name; nftables allows 255 bytes.
const maxHint = 96

// portHint is the readable part of a service port's chain names:
// namespace/name/protocol/port, in the characters nft prints unquoted.
func portHint(s *lb.Service, p lb.Port) string {
	h := s.Namespace + "/" + s.Name + "/" + strings.ToLower(string(p.Protocol)) + "/" + strconv.Itoa(int(p.Port))
	b := []byte(h)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '-' || c == '_' || c == '.'
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) > maxHint {
		b = b[:maxHint]
	}
	return string(b)
}
