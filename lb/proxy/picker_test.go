package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shoalproj/shoal/lb"
)

// step is one thing done to a picker in a table case, with what it must
// give. Exactly one of its kinds is set.
type step struct {
	set     []string // endpoints, by name (a, b, c, ...)
	setAff  time.Duration
	isSet   bool
	pick    string // client (c1, c2, ...); want is the endpoint, "" for none
	exclude []string
	want    string
	release string        // endpoint
	advance time.Duration // of the fake clock
	open    map[string]int
	sticky  int // with check: the size the affinity table must have
	check   bool
}

func set(aff time.Duration, eps ...string) step { return step{isSet: true, set: eps, setAff: aff} }
func pick(client, want string, exclude ...string) step {
	return step{pick: client, want: want, exclude: exclude}
}
func release(ep string) step              { return step{release: ep} }
func advance(d time.Duration) step        { return step{advance: d} }
func expectOpen(open map[string]int) step { return step{open: open} }
func expectSticky(n int) step             { return step{sticky: n, check: true} }

func ep(name string) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, name[0] - 'a' + 1}), 8080)
}

func epName(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return string(rune('a' + a.Addr().As4()[3] - 1))
}

func clientIP(name string) netip.Addr {
	var n byte
	fmt.Sscanf(name, "c%d", &n)
	return netip.AddrFrom4([4]byte{192, 168, 0, n})
}

func TestPicker(t *testing.T) {
	const aff = 10 * time.Second
	cases := []struct {
		name      string
		balance   lb.Balance
		random    []int // what the random source returns, in turn
		maxSticky int
		steps     []step
	}{
		{
			name: "no endpoints: none", balance: lb.RoundRobin,
			steps: []step{set(0), pick("c1", ""), set(aff), pick("c1", ""), expectSticky(0)},
		},
		{
			name: "round robin takes turns", balance: lb.RoundRobin,
			steps: []step{set(0, "a", "b", "c"), pick("c1", "a"), pick("c1", "b"), pick("c2", "c"), pick("c1", "a"), pick("c3", "b")},
		},
		{
			name: "round robin tries each endpoint at most once", balance: lb.RoundRobin,
			steps: []step{
				set(0, "a", "b", "c"),
				pick("c1", "b", "a"), pick("c1", "a", "c"), pick("c1", "c", "a", "b"), pick("c1", "", "a", "b", "c"),
			},
		},
		{
			name: "round robin goes on over changed endpoints", balance: lb.RoundRobin,
			steps: []step{set(0, "a", "b", "c"), pick("c1", "a"), pick("c1", "b"), set(0, "a", "c", "d"), pick("c1", "d"), pick("c1", "a")},
		},
		{
			name: "random draws among those left", balance: lb.Random, random: []int{2, 0, 1, 1},
			steps: []step{
				set(0, "a", "b", "c"),
				pick("c1", "c"), pick("c1", "a"), pick("c1", "b"),
				pick("c1", "c", "a"), // left: b, c; the source says 1
				pick("c1", "", "a", "b", "c"),
			},
		},
		{
			name: "least-conn takes the fewest, ties in turn", balance: lb.LeastConn,
			steps: []step{
				set(0, "a", "b", "c"),
				pick("c1", "a"), pick("c1", "b"), pick("c1", "c"), pick("c1", "a"), // a2 b1 c1
				pick("c1", "b"), // b and c tie; b is next in turn
				pick("c1", "c"),
				expectOpen(map[string]int{"a": 2, "b": 2, "c": 2}),
				release("a"), release("a"),
				pick("c1", "a"), pick("c1", "a"), // a is fewest both times
				expectOpen(map[string]int{"a": 2, "b": 2, "c": 2}),
				release("c"),
				pick("c1", "b", "c"), // c is fewest but excluded
			},
		},
		{
			name: "least-conn counts outlive an endpoint's removal", balance: lb.LeastConn,
			steps: []step{
				set(0, "a", "b"),
				pick("c1", "a"), pick("c1", "b"), pick("c1", "a"), // a2 b1
				set(0, "b"),
				pick("c1", "b"),
				set(0, "a", "b"),
				expectOpen(map[string]int{"a": 2, "b": 2}),
				pick("c1", "a"), // tie, a in turn
				release("a"), release("a"), release("a"),
				expectOpen(map[string]int{"b": 2}),
				pick("c1", "a"),
			},
		},
		{
			name: "affinity keeps a client on its endpoint", balance: lb.RoundRobin,
			steps: []step{
				set(aff, "a", "b", "c"),
				pick("c1", "a"), pick("c2", "b"), pick("c1", "a"), pick("c1", "a"), pick("c3", "c"), pick("c2", "b"),
				pick("c4", "a"), // others go on in turn
				expectSticky(4),
			},
		},
		{
			name: "affinity lasts while used within the timeout", balance: lb.RoundRobin,
			steps: []step{
				set(aff, "a", "b", "c"),
				pick("c1", "a"),
				advance(9 * time.Second), pick("c1", "a"),
				advance(9 * time.Second), pick("c1", "a"), // 18s after the first, 9s idle
				advance(aff), // idle for the timeout: forgotten
				pick("c1", "b"),
				expectSticky(1),
			},
		},
		{
			name: "affinity expiry forgets idle clients only", balance: lb.RoundRobin,
			steps: []step{
				set(aff, "a", "b", "c"),
				pick("c1", "a"), advance(5 * time.Second), pick("c2", "b"), advance(5 * time.Second),
				pick("c3", "c"), // c1 idle 10s: dropped; c2 idle 5s kept
				expectSticky(2),
				pick("c2", "b"),
			},
		},
		{
			name: "affinity to a removed endpoint is dropped", balance: lb.RoundRobin,
			steps: []step{
				set(aff, "a", "b", "c"),
				pick("c1", "a"), pick("c2", "b"),
				set(aff, "a", "c"),
				expectSticky(1), // c1's
				pick("c2", "a"), // anew, in turn
				set(aff, "a", "b", "c"),
				pick("c2", "a"), // b back changes nothing: c2 is on a now
				pick("c1", "a"),
			},
		},
		{
			name: "affinity gives way to a failed endpoint", balance: lb.RoundRobin,
			steps: []step{
				set(aff, "a", "b", "c"),
				pick("c1", "a"),
				pick("c1", "b", "a"), // a failed for this connection
				pick("c1", "b"),      // and the client stays on b
			},
		},
		{
			name: "affinity with least-conn", balance: lb.LeastConn,
			steps: []step{
				set(aff, "a", "b"),
				pick("c1", "a"), pick("c1", "a"), pick("c1", "a"), // sticky beats the counts
				pick("c2", "b"),
				expectOpen(map[string]int{"a": 3, "b": 1}),
			},
		},
		{
			name: "affinity table is bounded, least recently used dropped", balance: lb.RoundRobin, maxSticky: 2,
			steps: []step{
				set(aff, "a", "b", "c"),
				pick("c1", "a"), pick("c2", "b"), pick("c1", "a"), // c2 is now least recently used
				pick("c3", "c"),
				expectSticky(2),
				pick("c1", "a"),
				pick("c2", "a"), // forgotten: the next in turn after c
			},
		},
		{
			name: "affinity switched off clears the table", balance: lb.RoundRobin,
			steps: []step{
				set(aff, "a", "b"), pick("c1", "a"), expectSticky(1),
				set(0, "a", "b"), expectSticky(0),
				pick("c1", "b"), pick("c1", "a"), expectSticky(0),
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			draws := 0
			intn := func(n int) int {
				if draws >= len(tc.random) {
					t.Fatalf("the random source was asked more than the %d times the case gives", len(tc.random))
				}
				v := tc.random[draws]
				draws++
				if v >= n {
					t.Fatalf("the case's random draw %d is not below %d", v, n)
				}
				return v
			}
			maxSticky := tc.maxSticky
			if maxSticky == 0 {
				maxSticky = 100
			}
			p := newPicker(tc.balance, func() time.Time { return clock }, intn, maxSticky)
			var log []string // what happened so far, printed on failure
			for i, s := range tc.steps {
				switch {
				case s.isSet:
					eps := make([]netip.AddrPort, len(s.set))
					for j, n := range s.set {
						eps[j] = ep(n)
					}
					p.set(eps, s.setAff)
					log = append(log, fmt.Sprintf("set %v aff %v", s.set, s.setAff))
				case s.pick != "":
					var excl []netip.AddrPort
					for _, n := range s.exclude {
						excl = append(excl, ep(n))
					}
					got, ok := p.pick(clientIP(s.pick), excl)
					if ok != (s.want != "") || epName(got) != s.want {
						t.Fatalf("step %d: pick for %s excluding %v = %q, want %q; steps so far: %s",
							i, s.pick, s.exclude, epName(got), s.want, strings.Join(log, "; "))
					}
					log = append(log, fmt.Sprintf("pick %s→%s", s.pick, epName(got)))
				case s.release != "":
					p.release(ep(s.release))
					log = append(log, "release "+s.release)
				case s.advance != 0:
					clock = clock.Add(s.advance)
					log = append(log, "advance "+s.advance.String())
				case s.open != nil:
					got := map[string]int{}
					p.mu.Lock()
					for a, n := range p.active {
						got[epName(a)] = n
					}
					p.mu.Unlock()
					if fmt.Sprint(got) != fmt.Sprint(s.open) {
						t.Fatalf("step %d: open connections %v, want %v; steps so far: %s", i, got, s.open, strings.Join(log, "; "))
					}
				case s.check:
					if n := p.stickyLen(); n != s.sticky {
						t.Fatalf("step %d: affinity table holds %d clients, want %d; steps so far: %s", i, n, s.sticky, strings.Join(log, "; "))
					}
				default:
					t.Fatalf("step %d is empty", i)
				}
			}
		})
	}
}
