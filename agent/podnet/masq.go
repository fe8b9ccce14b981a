package podnet

import (
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// MasqTable is the nftables table (family ip) this package owns: one
// postrouting NAT chain masquerading traffic from this node's pods to
// addresses outside the cluster CIDR.
const MasqTable = "shoal-podnet"

const masqChain = "postrouting"

// Offsets in the IPv4 header.
const (
	ipv4SaddrOffset = 12
	ipv4DaddrOffset = 16
)

// masqExprs is the rule
//
//	ip saddr <podNet> ip daddr != <clusterNet> counter masquerade
func masqExprs(podNet, clusterNet *net.IPNet) []expr.Any {
	match := func(offset uint32, n *net.IPNet, op expr.CmpOp) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte(n.Mask), Xor: make([]byte, 4)},
			&expr.Cmp{Op: op, Register: 1, Data: []byte(n.IP.To4())},
		}
	}
	var e []expr.Any
	e = append(e, match(ipv4SaddrOffset, podNet, expr.CmpOpEq)...)
	e = append(e, match(ipv4DaddrOffset, clusterNet, expr.CmpOpNeq)...)
	e = append(e, &expr.Counter{}, &expr.Masq{})
	return e
}

func masqTable() *nftables.Table {
	return &nftables.Table{Name: MasqTable, Family: nftables.TableFamilyIPv4}
}

// programMasq (re)creates the table in one transaction: whatever an
// earlier run left is replaced atomically.
func programMasq(conn *nftables.Conn, podNet, clusterNet *net.IPNet) error {
	t := masqTable()
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	ch := conn.AddChain(&nftables.Chain{
		Name:     masqChain,
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: masqExprs(podNet, clusterNet)})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("podnet: program nftables table %s: %w", MasqTable, err)
	}
	return nil
}

// removeMasq deletes the table if it is there.
func removeMasq(conn *nftables.Conn) error {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("podnet: list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == MasqTable {
			conn.DelTable(t)
			if err := conn.Flush(); err != nil {
				return fmt.Errorf("podnet: delete nftables table %s: %w", MasqTable, err)
			}
			return nil
		}
	}
	return nil
}
