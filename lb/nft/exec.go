package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/lb"
)

// The executor turns operations into google/nftables calls, all buffered
// in one Conn and sent by one Flush: one kernel transaction.

// Registers: reg 1 is the first 16-byte register; concatenations are
// built in the 4-byte registers that follow it (9, 10, ... are
// NFT_REG32_01, NFT_REG32_02, ...), as nft itself does.
const (
	reg1   = unix.NFT_REG_1
	reg2   = unix.NFT_REG_2
	reg32a = unix.NFT_REG32_00 + 1
	reg32b = unix.NFT_REG32_00 + 2
)

// Offsets in the IPv4 and transport headers.
const (
	offSaddr = 12
	offDaddr = 16
	offDport = 2
)

// icmpPortUnreachable is the ICMP code a plain reject sends.
const icmpPortUnreachable = 3

// maxElemsPerMsg bounds the elements of one netlink message: a netlink
// attribute's length is 16 bits.
const maxElemsPerMsg = 512

// txn is one transaction being built.
type txn struct {
	c     *nftables.Conn
	table *nftables.Table
	// setID numbers the sets created in this transaction (the kernel
	// wants an ID unique in the transaction); our own counter keeps the
	// library's package-level one, shared by every Conn, out of it.
	setID uint32
	// msgs counts the netlink messages queued: the kernel acknowledges
	// each, and the receive buffer must hold all the acks.
	msgs int
}

func newTxn(c *nftables.Conn, table string) *txn {
	return &txn{c: c, table: &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}}
}

// replaceTable starts a transaction that drops whatever table of that
// name exists (a stale one from a crashed agent included) and creates it
// empty, before the operations of a full rendering are added.
func (x *txn) replaceTable() {
	x.c.AddTable(x.table) // so that the delete cannot fail on a missing table
	x.c.DelTable(x.table)
	x.c.AddTable(x.table)
	x.msgs += 3
}

// deleteTable removes the table if it exists.
func (x *txn) deleteTable() {
	x.c.AddTable(x.table)
	x.c.DelTable(x.table)
	x.msgs += 2
}

func (x *txn) chain(c *chain) *nftables.Chain {
	ch := &nftables.Chain{Name: c.name, Table: x.table}
	if c.hook != nil {
		ch.Type = nftables.ChainType(c.hook.typ)
		switch c.hook.hook {
		case "prerouting":
			ch.Hooknum = nftables.ChainHookPrerouting
		case "input":
			ch.Hooknum = nftables.ChainHookInput
		case "forward":
			ch.Hooknum = nftables.ChainHookForward
		case "output":
			ch.Hooknum = nftables.ChainHookOutput
		case "postrouting":
			ch.Hooknum = nftables.ChainHookPostrouting
		}
		ch.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.hook.prio))
	}
	return ch
}

func (x *txn) set(s *set) *nftables.Set {
	ns := &nftables.Set{Name: s.name, Table: x.table}
	switch s.kind {
	case kindVIPMap:
		ns.IsMap, ns.Concatenation, ns.KeyType, ns.DataType = true, true, vipKeyType(), nftables.TypeVerdict
	case kindNodePortMap:
		ns.IsMap, ns.Concatenation, ns.KeyType, ns.DataType = true, true, nodePortKeyType(), nftables.TypeVerdict
	case kindVIPSet:
		ns.Concatenation, ns.KeyType = true, vipKeyType()
	case kindNodePortSet:
		ns.Concatenation, ns.KeyType = true, nodePortKeyType()
	// The index keys are typed mark, not integer: the same 4 bytes in host
	// order (as numgen writes them), and a type nft can print and read
	// back (it lists an integer key as "type 0").
	case kindEndpointChains:
		ns.IsMap, ns.KeyType, ns.DataType, ns.KeyByteOrder = true, nftables.TypeMark, nftables.TypeVerdict, binaryutil.NativeEndian
	case kindEndpointAddrs:
		ns.IsMap, ns.KeyType, ns.KeyByteOrder = true, nftables.TypeMark, binaryutil.NativeEndian
		ns.DataType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	case kindHairpin:
		ns.Concatenation, ns.KeyType = true, nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
	case kindAffinity:
		ns.KeyType, ns.HasTimeout, ns.Timeout, ns.Dynamic = nftables.TypeIPAddr, true, s.timeout, true
	}
	return ns
}

func vipKeyType() nftables.SetDatatype {
	return nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
}

func nodePortKeyType() nftables.SetDatatype {
	return nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
}

// apply queues the operations.
func (x *txn) apply(ops []op) error {
	for _, o := range ops {
		var err error
		switch o.kind {
		case opAddSet:
			x.setID++
			ns := x.set(o.set)
			ns.ID = x.setID
			err = x.c.AddSet(ns, nil)
			x.msgs++
		case opDelSet:
			x.c.DelSet(x.set(o.set))
			x.msgs++
		case opAddChain:
			x.c.AddChain(x.chain(o.chain))
			x.msgs++
		case opFlushChain:
			x.c.FlushChain(x.chain(o.chain))
			x.msgs++
		case opDelChain:
			x.c.DelChain(x.chain(o.chain))
			x.msgs++
		case opAddRules:
			ch := x.chain(o.chain)
			for _, r := range o.chain.rules {
				var e []expr.Any
				if e, err = x.exprs(r); err != nil {
					break
				}
				x.c.AddRule(&nftables.Rule{Table: x.table, Chain: ch, Exprs: e})
				x.msgs++
			}
		case opAddElems, opDelElems:
			ns := x.set(o.set)
			for start := 0; start < len(o.elems) && err == nil; start += maxElemsPerMsg {
				part := o.elems[start:min(start+maxElemsPerMsg, len(o.elems))]
				els := make([]nftables.SetElement, len(part))
				for i, e := range part {
					els[i] = setElement(o.set, e)
				}
				if o.kind == opAddElems {
					err = x.c.SetAddElements(ns, els)
				} else {
					err = x.c.SetDeleteElements(ns, els)
				}
				x.msgs++
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", o, err)
		}
	}
	return nil
}

func setElement(s *set, e elem) nftables.SetElement {
	switch s.kind {
	case kindEndpointChains:
		return nftables.SetElement{Key: native32(e.idx), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.target}}
	case kindEndpointAddrs:
		a := e.to.Addr().As4()
		val := append(a[:], byte(e.to.Port()>>8), byte(e.to.Port()), 0, 0)
		return nftables.SetElement{Key: native32(e.idx), Val: val}
	case kindHairpin:
		a := e.vip.As4()
		return nftables.SetElement{Key: append(a[:], a[:]...)}
	}
	var key []byte
	if e.vip.IsValid() {
		a := e.vip.As4()
		key = append(key, a[:]...)
	}
	// Each field of a concatenation fills whole 4-byte registers.
	key = append(key, protoNum(e.proto), 0, 0, 0)
	key = append(key, byte(e.port>>8), byte(e.port), 0, 0)
	el := nftables.SetElement{Key: key}
	if e.target != "" {
		el.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.target}
	}
	return el
}

func protoNum(p lb.Protocol) byte {
	if p == lb.UDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// exprs turns one rule of the IR into expressions.
func (x *txn) exprs(r rule) ([]expr.Any, error) {
	var out []expr.Any
	for _, s := range r {
		switch s := s.(type) {
		case matchSaddr:
			a := s.addr.As4()
			out = append(out,
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offSaddr, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: a[:]})
		case matchSaddrNotIn:
			p := s.prefix.Masked()
			a := p.Addr().As4()
			out = append(out,
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offSaddr, Len: 4},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: prefixMask(p), Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: a[:]})
		case matchL4Proto:
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{protoNum(s.proto)}})
		case matchCtNew:
			out = append(out,
				&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)})
		case matchFibLocal:
			out = append(out,
				&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(unix.RTN_LOCAL)})
		case matchSaddrNotLocal:
			out = append(out,
				&expr.Fib{Register: reg1, FlagSADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(unix.RTN_LOCAL)})
		case matchMarkUnset:
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(masqMark), Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: make([]byte, 4)})
		case setMasqMark:
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^masqMark), Xor: native32(masqMark)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1})
		case clearMasqMark:
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^masqMark), Xor: make([]byte, 4)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1})
		case lookupDest:
			out = append(out,
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offDaddr, Len: 4},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32a},
				&expr.Payload{DestRegister: reg32b, Base: expr.PayloadBaseTransportHeader, Offset: offDport, Len: 2},
				&expr.Lookup{SourceRegister: reg1, SetName: s.set, IsDestRegSet: s.vmap})
		case lookupNodePort:
			out = append(out,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32a},
				&expr.Payload{DestRegister: reg32b, Base: expr.PayloadBaseTransportHeader, Offset: offDport, Len: 2},
				&expr.Lookup{SourceRegister: reg32a, SetName: s.set, IsDestRegSet: s.vmap})
		case matchHairpin:
			out = append(out,
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offSaddr, Len: 4},
				&expr.Payload{DestRegister: reg32a, Base: expr.PayloadBaseNetworkHeader, Offset: offDaddr, Len: 4},
				&expr.Lookup{SourceRegister: reg1, SetName: setHairpin})
		case lookupSaddr:
			out = append(out,
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offSaddr, Len: 4},
				&expr.Lookup{SourceRegister: reg1, SetName: s.set})
		case updateSaddr:
			out = append(out,
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offSaddr, Len: 4},
				&expr.Dynset{SrcRegKey: reg1, SetName: s.set, Operation: unix.NFT_DYNSET_OP_UPDATE})
		case numgenVmap:
			typ := uint32(unix.NFT_NG_INCREMENTAL)
			if s.random {
				typ = unix.NFT_NG_RANDOM
			}
			out = append(out,
				&expr.Numgen{Register: reg1, Modulus: uint32(s.count), Type: typ},
				&expr.Lookup{SourceRegister: reg1, SetName: s.set, IsDestRegSet: true})
		case dnatMap:
			typ := uint32(unix.NFT_NG_INCREMENTAL)
			if s.random {
				typ = unix.NFT_NG_RANDOM
			}
			out = append(out,
				&expr.Numgen{Register: reg1, Modulus: uint32(s.count), Type: typ},
				// The address lands in the first 32-bit register, the
				// port in the second.
				&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: s.set},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg32a, Specified: true})
		case dnatTo:
			a := s.to.Addr().As4()
			out = append(out,
				&expr.Immediate{Register: reg1, Data: a[:]},
				&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(s.to.Port())},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg2, Specified: true})
		case masquerade:
			out = append(out, &expr.Masq{FullyRandom: s.fullyRandom})
		case reject:
			if s.tcpReset {
				out = append(out, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
			} else {
				out = append(out, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreachable})
			}
		case verdict:
			switch s.kind {
			case verdictJump:
				out = append(out, &expr.Verdict{Kind: expr.VerdictJump, Chain: s.chain})
			case verdictGoto:
				out = append(out, &expr.Verdict{Kind: expr.VerdictGoto, Chain: s.chain})
			default:
				out = append(out, &expr.Verdict{Kind: expr.VerdictReturn})
			}
		default:
			return nil, fmt.Errorf("no expressions for statement %T", s)
		}
	}
	return out, nil
}

func prefixMask(p netip.Prefix) []byte {
	m := uint32(0)
	if p.Bits() > 0 {
		m = ^uint32(0) << (32 - p.Bits())
	}
	return binary.BigEndian.AppendUint32(nil, m)
}
