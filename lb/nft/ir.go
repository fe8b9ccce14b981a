package nft

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/shoalproj/shoal/lb"
)

// The IR below is the table as render describes it and diff compares it:
// chains with their rules, named sets, and the elements of the sets shoal
// fills. Each statement prints as nft would list it, so a chain's text is
// both what diff compares and what a test or a log shows.

// masqMark is the packet mark bit that asks postrouting to masquerade
// (the bit kube-proxy uses, so operators recognise it).
const masqMark uint32 = 0x4000

// Names of the table's fixed chains and sets (no nft keyword, such as
// "reject", so that a listing reads back).
const (
	chainPrerouting    = "prerouting"
	chainOutput        = "output"
	chainPostrouting   = "postrouting"
	chainFilterInput   = "filter-input"
	chainFilterForward = "filter-forward"
	chainFilterOutput  = "filter-output"
	chainServices      = "services"
	chainRejectCheck   = "no-endpoints-check"
	chainReject        = "no-endpoints-reject"

	setServiceIPs          = "service-ips"
	setServiceNodePorts    = "service-nodeports"
	setNoEndpoints         = "no-endpoints"
	setNoEndpointNodePorts = "no-endpoint-nodeports"
	setHairpin             = "hairpin"
)

// stmt is one statement of a rule.
type stmt interface{ String() string }

// rule is a list of statements, evaluated left to right.
type rule []stmt

func (r rule) String() string {
	var b strings.Builder
	r.write(&b)
	return b.String()
}

func (r rule) write(b *strings.Builder) {
	for i, s := range r {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.String())
	}
}

// hook makes a chain a base chain.
type hook struct {
	typ  string // "nat" or "filter"
	hook string // "prerouting", "input", "forward", "output", "postrouting"
	prio int32
}

func (h hook) String() string {
	return fmt.Sprintf("type %s hook %s priority %d", h.typ, h.hook, h.prio)
}

// chain is one chain: base when hook is set.
type chain struct {
	name  string
	hook  *hook
	rules []rule
	// text is the canonical form of the chain (hook and rules), what
	// diff compares to decide whether to refill it.
	text string
	// owner is the service port the chain belongs to (lb.Service.PortID),
	// "" for the table's own chains.
	owner string
}

func newChain(name, owner string, h *hook, rules ...rule) *chain {
	c := &chain{name: name, hook: h, rules: rules, owner: owner}
	var b strings.Builder
	if h != nil {
		b.WriteString(h.String())
		b.WriteByte('\n')
	}
	for _, r := range rules {
		r.write(&b)
		b.WriteByte('\n')
	}
	c.text = b.String()
	return c
}

// setKind is what a named set holds.
type setKind uint8

const (
	// kindVIPMap: ipv4_addr . inet_proto . inet_service : verdict
	kindVIPMap setKind = iota
	// kindNodePortMap: inet_proto . inet_service : verdict
	kindNodePortMap
	// kindVIPSet: ipv4_addr . inet_proto . inet_service
	kindVIPSet
	// kindNodePortSet: inet_proto . inet_service
	kindNodePortSet
	// kindAffinity: ipv4_addr with a timeout, filled by the packet path
	kindAffinity
	// kindEndpointChains: mark : verdict, an affinity service port's
	// endpoint chains by index
	kindEndpointChains
	// kindEndpointAddrs: mark : ipv4_addr . inet_service, a service
	// port's endpoints by index, for DNAT straight from the map
	kindEndpointAddrs
	// kindHairpin: ipv4_addr . ipv4_addr, endpoint . itself
	kindHairpin
)

// set is a named set (or map).
type set struct {
	name    string
	kind    setKind
	timeout time.Duration // kindAffinity
	owner   string
}

func (s *set) String() string {
	switch s.kind {
	case kindVIPMap:
		return "map " + s.name + " { type ipv4_addr . inet_proto . inet_service : verdict }"
	case kindNodePortMap:
		return "map " + s.name + " { type inet_proto . inet_service : verdict }"
	case kindVIPSet:
		return "set " + s.name + " { type ipv4_addr . inet_proto . inet_service }"
	case kindNodePortSet:
		return "set " + s.name + " { type inet_proto . inet_service }"
	case kindEndpointChains:
		return "map " + s.name + " { type mark : verdict }"
	case kindEndpointAddrs:
		return "map " + s.name + " { type mark : ipv4_addr . inet_service }"
	case kindHairpin:
		return "set " + s.name + " { type ipv4_addr . ipv4_addr }"
	case kindAffinity:
		return fmt.Sprintf("set %s { type ipv4_addr; flags dynamic,timeout; timeout %s }", s.name, s.timeout)
	}
	return "set " + s.name + " { ? }"
}

// elemKey identifies an element of a set shoal fills: the VIP (invalid
// for the node port sets), protocol and port; in @hairpin (proto "") the
// endpoint address in vip; in a service port's endpoint map (proto "",
// no vip) the endpoint's index.
type elemKey struct {
	set   string
	vip   netip.Addr
	proto lb.Protocol
	port  uint16
	idx   uint32
}

func (k elemKey) String() string {
	if k.proto == "" {
		if k.vip.IsValid() {
			return k.vip.String() + " . " + k.vip.String()
		}
		return strconv.Itoa(int(k.idx))
	}
	p := strings.ToLower(string(k.proto))
	if k.vip.IsValid() {
		return k.vip.String() + " . " + p + " . " + strconv.Itoa(int(k.port))
	}
	return p + " . " + strconv.Itoa(int(k.port))
}

// elem is an element of a set shoal fills, with its value in a map: the
// chain a verdict map element goes to, or the address of an endpoint map.
type elem struct {
	elemKey
	target string
	to     netip.AddrPort
	owner  string
}

// sameValue says whether e and o map their key to the same thing.
func (e elem) sameValue(o elem) bool { return e.target == o.target && e.to == o.to }

func (e elem) String() string {
	switch {
	case e.target != "":
		return e.elemKey.String() + " : goto " + e.target
	case e.to.IsValid():
		return e.elemKey.String() + " : " + e.to.Addr().String() + " . " + strconv.Itoa(int(e.to.Port()))
	}
	return e.elemKey.String()
}

// Statements.

type matchSaddr struct{ addr netip.Addr }

func (s matchSaddr) String() string { return "ip saddr " + s.addr.String() }

type matchSaddrNotIn struct{ prefix netip.Prefix }

func (s matchSaddrNotIn) String() string { return "ip saddr != " + s.prefix.String() }

type matchL4Proto struct{ proto lb.Protocol }

func (s matchL4Proto) String() string { return "meta l4proto " + strings.ToLower(string(s.proto)) }

type matchCtNew struct{}

func (matchCtNew) String() string { return "ct state new" }

type matchFibLocal struct{}

// matchSaddrNotLocal: the packet does not come from an address of this
// node (the node's own connections need no masquerade: the reply comes
// back to it, and keeping their ports avoids clashes between the node's
// fresh ports and the endpoint's TIME_WAIT sockets).
type matchSaddrNotLocal struct{}

func (matchSaddrNotLocal) String() string { return "fib saddr type != local" }

func (matchFibLocal) String() string { return "fib daddr type local" }

type matchMarkUnset struct{}

func (matchMarkUnset) String() string { return fmt.Sprintf("meta mark & 0x%08x == 0", masqMark) }

type setMasqMark struct{}

func (setMasqMark) String() string { return fmt.Sprintf("meta mark set meta mark | 0x%08x", masqMark) }

type clearMasqMark struct{}

func (clearMasqMark) String() string {
	return fmt.Sprintf("meta mark set meta mark & 0x%08x", ^masqMark)
}

// lookupDest looks the packet's destination VIP . protocol . port up in
// a set, or dispatches on it through a verdict map.
type lookupDest struct {
	set  string
	vmap bool
}

func (s lookupDest) String() string {
	if s.vmap {
		return "ip daddr . meta l4proto . th dport vmap @" + s.set
	}
	return "ip daddr . meta l4proto . th dport @" + s.set
}

// lookupNodePort is lookupDest on protocol . port only.
type lookupNodePort struct {
	set  string
	vmap bool
}

func (s lookupNodePort) String() string {
	if s.vmap {
		return "meta l4proto . th dport vmap @" + s.set
	}
	return "meta l4proto . th dport @" + s.set
}

// matchHairpin matches a packet sent to its own source, as a pod
// reaching itself through a VIP is after DNAT.
type matchHairpin struct{}

func (matchHairpin) String() string { return "ip saddr . ip daddr @" + setHairpin }

type lookupSaddr struct{ set string }

func (s lookupSaddr) String() string { return "ip saddr @" + s.set }

type updateSaddr struct{ set string }

func (s updateSaddr) String() string { return "update @" + s.set + " { ip saddr }" }

// The numgen maps below are named ones per service port, not anonymous
// maps bound to the rule as nft would make: the kernel binds each
// anonymous set by walking the whole transaction, and a full sync of
// 1,000 services took seconds. Not one map shared by all service ports
// either: the kernel validates a verdict map by walking all its elements
// for each rule that looks it up, quadratic again.

// numgenVmap picks an endpoint chain: goto the chain the service port's
// map has for numgen inc|random mod count.
type numgenVmap struct {
	random bool
	count  int
	set    string
}

func (s numgenVmap) String() string {
	mode := "inc"
	if s.random {
		mode = "random"
	}
	return "numgen " + mode + " mod " + strconv.Itoa(s.count) + " vmap @" + s.set
}

// dnatMap picks an endpoint and DNATs to it: the address and port the
// service port's map has for numgen inc|random mod count.
type dnatMap struct {
	random bool
	count  int
	set    string
}

func (s dnatMap) String() string {
	mode := "inc"
	if s.random {
		mode = "random"
	}
	return "dnat to numgen " + mode + " mod " + strconv.Itoa(s.count) + " map @" + s.set
}

type dnatTo struct{ to netip.AddrPort }

func (s dnatTo) String() string { return "dnat to " + s.to.String() }

type masquerade struct{ fullyRandom bool }

func (s masquerade) String() string {
	if s.fullyRandom {
		return "masquerade fully-random"
	}
	return "masquerade"
}

type reject struct{ tcpReset bool }

func (s reject) String() string {
	if s.tcpReset {
		return "reject with tcp reset"
	}
	return "reject" // ICMP port unreachable
}

type verdictKind uint8

const (
	verdictJump verdictKind = iota
	verdictGoto
	verdictReturn
)

type verdict struct {
	kind  verdictKind
	chain string
}

func (s verdict) String() string {
	switch s.kind {
	case verdictJump:
		return "jump " + s.chain
	case verdictGoto:
		return "goto " + s.chain
	}
	return "return"
}
