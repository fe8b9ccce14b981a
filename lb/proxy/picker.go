package proxy

import (
	"container/list"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/shoalproj/shoal/lb"
)

// picker chooses the endpoint of each new connection (or UDP flow) of one
// service port. It does no I/O and takes time and randomness from its
// caller, so it is tested with tables; the listeners of the port (its
// virtual IP and its node ports) share one picker, so round robin, the
// connection counts and client affinity span all of them.
type picker struct {
	balance   lb.Balance
	now       func() time.Time
	intn      func(n int) int // uniform in [0, n)
	maxSticky int

	mu        sync.Mutex
	endpoints []netip.AddrPort
	present   map[netip.AddrPort]struct{}
	next      int                    // round robin: index to try first
	active    map[netip.AddrPort]int // connections and sessions open per endpoint
	affinity  time.Duration
	sticky    map[netip.Addr]*list.Element // client IP → element of lru
	lru       list.List                    // of *stickyEntry, most recently used first
}

// stickyEntry is where a client was last sent, and when.
type stickyEntry struct {
	client netip.Addr
	ep     netip.AddrPort
	used   time.Time
}

func newPicker(balance lb.Balance, now func() time.Time, intn func(int) int, maxSticky int) *picker {
	return &picker{
		balance:   balance,
		now:       now,
		intn:      intn,
		maxSticky: maxSticky,
		present:   map[netip.AddrPort]struct{}{},
		active:    map[netip.AddrPort]int{},
		sticky:    map[netip.Addr]*list.Element{},
	}
}

// set replaces the ready endpoints and the affinity timeout. Connections
// already counted stay counted until released, whether or not their
// endpoint is still ready, so the counts are right when it comes back.
func (p *picker) set(endpoints []netip.AddrPort, affinity time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endpoints = slices.Clone(endpoints)
	clear(p.present)
	for _, ep := range p.endpoints {
		p.present[ep] = struct{}{}
	}
	p.affinity = affinity
	for e := p.lru.Front(); e != nil; {
		next := e.Next()
		st := e.Value.(*stickyEntry)
		if _, ok := p.present[st.ep]; !ok || affinity <= 0 {
			p.forget(e)
		}
		e = next
	}
}

// pick chooses an endpoint for a new connection from client, other than
// those in exclude (the ones that already failed for this connection),
// and counts it as open until release. ok is false when none is left.
func (p *picker) pick(client netip.Addr, exclude []netip.AddrPort) (ep netip.AddrPort, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	useAffinity := p.affinity > 0 && client.IsValid()
	var now time.Time
	if useAffinity {
		now = p.now()
		p.expire(now)
		if e, found := p.sticky[client]; found {
			st := e.Value.(*stickyEntry)
			if _, ready := p.present[st.ep]; ready && !slices.Contains(exclude, st.ep) {
				st.used = now
				p.lru.MoveToFront(e)
				p.active[st.ep]++
				return st.ep, true
			}
		}
	}
	ep, ok = p.choose(exclude)
	if !ok {
		return netip.AddrPort{}, false
	}
	p.active[ep]++
	if useAffinity {
		p.remember(client, ep, now)
	}
	return ep, true
}

// release ends what pick counted.
func (p *picker) release(ep netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.active[ep]; n > 1 {
		p.active[ep] = n - 1
	} else {
		delete(p.active, ep) // so endpoints that went away leave no entries
	}
}

// open is the number of connections counted for ep.
func (p *picker) open(ep netip.AddrPort) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active[ep]
}

// choose applies the balance algorithm to the endpoints not excluded.
func (p *picker) choose(exclude []netip.AddrPort) (netip.AddrPort, bool) {
	n := len(p.endpoints)
	if n == 0 {
		return netip.AddrPort{}, false
	}
	switch p.balance {
	case lb.Random:
		if len(exclude) == 0 {
			return p.endpoints[p.intn(n)], true
		}
		left := make([]netip.AddrPort, 0, n)
		for _, ep := range p.endpoints {
			if !slices.Contains(exclude, ep) {
				left = append(left, ep)
			}
		}
		if len(left) == 0 {
			return netip.AddrPort{}, false
		}
		return left[p.intn(len(left))], true
	case lb.LeastConn:
		// Scanning from the round robin cursor and keeping the first of
		// the least loaded makes ties go round robin.
		best, bestOpen := -1, 0
		for i := range n {
			idx := (p.next + i) % n
			ep := p.endpoints[idx]
			if slices.Contains(exclude, ep) {
				continue
			}
			if open := p.active[ep]; best < 0 || open < bestOpen {
				best, bestOpen = idx, open
			}
		}
		if best < 0 {
			return netip.AddrPort{}, false
		}
		p.next = (best + 1) % n
		return p.endpoints[best], true
	default: // lb.RoundRobin
		for i := range n {
			idx := (p.next + i) % n
			if !slices.Contains(exclude, p.endpoints[idx]) {
				p.next = (idx + 1) % n
				return p.endpoints[idx], true
			}
		}
		return netip.AddrPort{}, false
	}
}

// expire forgets the clients idle for the affinity timeout or longer. The
// list is in order of use, so only its expired tail is looked at.
func (p *picker) expire(now time.Time) {
	for e := p.lru.Back(); e != nil; e = p.lru.Back() {
		if now.Sub(e.Value.(*stickyEntry).used) < p.affinity {
			return
		}
		p.forget(e)
	}
}

// remember sends client to ep from now on, forgetting the least recently
// used client when the table is full.
func (p *picker) remember(client netip.Addr, ep netip.AddrPort, now time.Time) {
	if e, ok := p.sticky[client]; ok {
		st := e.Value.(*stickyEntry)
		st.ep, st.used = ep, now
		p.lru.MoveToFront(e)
		return
	}
	for p.maxSticky > 0 && p.lru.Len() >= p.maxSticky {
		p.forget(p.lru.Back())
	}
	p.sticky[client] = p.lru.PushFront(&stickyEntry{client: client, ep: ep, used: now})
}

func (p *picker) forget(e *list.Element) {
	delete(p.sticky, e.Value.(*stickyEntry).client)
	p.lru.Remove(e)
}

// stickyLen is the size of the affinity table.
func (p *picker) stickyLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}
