package nft

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// opKind is what an operation does. The values are in the order the
// operations must run in one transaction: objects are created before
// anything refers to them, and references are dropped before what they
// refer to is deleted.
type opKind uint8

const (
	opAddSet     opKind = iota // create a named set
	opAddChain                 // create an empty chain
	opFlushChain               // empty a chain that changed or goes away
	opDelElems                 // remove map/set elements (dropping their gotos)
	opAddRules                 // fill a new or flushed chain
	opAddElems                 // add map/set elements (their chains exist by now)
	opDelChain                 // delete an emptied, unreferenced chain
	opDelSet                   // delete a set no rule refers to any more
)

func (k opKind) String() string {
	switch k {
	case opAddSet:
		return "add set"
	case opAddChain:
		return "add chain"
	case opFlushChain:
		return "flush chain"
	case opDelElems:
		return "delete elements"
	case opAddRules:
		return "add rules"
	case opAddElems:
		return "add elements"
	case opDelChain:
		return "delete chain"
	case opDelSet:
		return "delete set"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// op is one step of a transaction.
type op struct {
	kind  opKind
	chain *chain // opAddChain, opFlushChain, opAddRules, opDelChain
	set   *set   // opAddSet, opDelSet; the set elements go to for opAddElems, opDelElems
	elems []elem
}

func (o op) String() string {
	switch o.kind {
	case opAddSet:
		return "add " + o.set.String()
	case opDelSet:
		return o.kind.String() + " " + o.set.name
	case opAddElems, opDelElems:
		parts := make([]string, len(o.elems))
		for i, e := range o.elems {
			parts[i] = e.String()
		}
		return o.kind.String() + " " + o.set.name + " { " + strings.Join(parts, ", ") + " }"
	case opAddRules:
		return fmt.Sprintf("%s %s (%d)", o.kind, o.chain.name, len(o.chain.rules))
	}
	return o.kind.String() + " " + o.chain.name
}

// diff returns the operations that turn the table old describes into the
// one new describes, in an order the kernel accepts in one transaction.
// old nil means an empty table (the caller creates the table itself).
func diff(old, new *desc) []op {
	if old == nil {
		old = newDesc()
	}
	var ops []op
	byName := func(a, b *chain) int { return strings.Compare(a.name, b.name) }

	var addSets, delSets []*set
	for name, s := range new.sets {
		if _, ok := old.sets[name]; !ok {
			addSets = append(addSets, s)
		}
	}
	for name, s := range old.sets {
		if _, ok := new.sets[name]; !ok {
			delSets = append(delSets, s)
		}
	}
	setsByName := func(a, b *set) int { return strings.Compare(a.name, b.name) }
	slices.SortFunc(addSets, setsByName)
	slices.SortFunc(delSets, setsByName)

	var added, changed, removed []*chain
	for name, c := range new.chains {
		oc, ok := old.chains[name]
		switch {
		case !ok:
			added = append(added, c)
		case oc.text != c.text:
			changed = append(changed, c)
		}
	}
	for name, c := range old.chains {
		if _, ok := new.chains[name]; !ok {
			removed = append(removed, c)
		}
	}
	slices.SortFunc(added, byName)
	slices.SortFunc(changed, byName)
	slices.SortFunc(removed, byName)

	// Elements whose value changed are deleted and added again: the
	// kernel refuses to overwrite an element's data.
	delElems := map[string][]elem{}
	addElems := map[string][]elem{}
	for k, e := range old.elems {
		if ne, ok := new.elems[k]; !ok || !ne.sameValue(e) {
			delElems[k.set] = append(delElems[k.set], e)
		}
	}
	for k, e := range new.elems {
		if oe, ok := old.elems[k]; !ok || !oe.sameValue(e) {
			addElems[k.set] = append(addElems[k.set], e)
		}
	}

	for _, s := range addSets {
		ops = append(ops, op{kind: opAddSet, set: s})
	}
	for _, c := range added {
		ops = append(ops, op{kind: opAddChain, chain: c})
	}
	for _, c := range changed {
		ops = append(ops, op{kind: opFlushChain, chain: c})
	}
	// A chain about to be deleted is emptied first, so that whatever its
	// rules point to (other chains, affinity sets) is free to go too.
	for _, c := range removed {
		ops = append(ops, op{kind: opFlushChain, chain: c})
	}
	ops = appendElemOps(ops, opDelElems, delElems, old, new)
	for _, c := range added {
		if len(c.rules) > 0 {
			ops = append(ops, op{kind: opAddRules, chain: c})
		}
	}
	for _, c := range changed {
		if len(c.rules) > 0 {
			ops = append(ops, op{kind: opAddRules, chain: c})
		}
	}
	ops = appendElemOps(ops, opAddElems, addElems, old, new)
	for _, c := range removed {
		ops = append(ops, op{kind: opDelChain, chain: c})
	}
	for _, s := range delSets {
		ops = append(ops, op{kind: opDelSet, set: s})
	}
	return ops
}

// appendElemOps adds one operation per set, elements sorted, sets by name.
func appendElemOps(ops []op, kind opKind, bySet map[string][]elem, old, new *desc) []op {
	names := make([]string, 0, len(bySet))
	for name := range bySet {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		s := new.sets[name]
		if s == nil {
			s = old.sets[name]
		}
		elems := bySet[name]
		slices.SortFunc(elems, func(a, b elem) int {
			if c := a.vip.Compare(b.vip); c != 0 {
				return c
			}
			if c := cmp.Compare(a.proto, b.proto); c != 0 {
				return c
			}
			if c := cmp.Compare(a.port, b.port); c != 0 {
				return c
			}
			return cmp.Compare(a.idx, b.idx)
		})
		ops = append(ops, op{kind: kind, set: s, elems: elems})
	}
	return ops
}
