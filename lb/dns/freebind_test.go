package dns_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoalproj/shoal/lb"
	shoaldns "github.com/shoalproj/shoal/lb/dns"
)

// inNS runs fn on a thread in ns. The thread is never moved back: it
// stays locked and dies with its goroutine, so no other goroutine ever
// runs in ns by mistake.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter the test's network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// TestServeFreebind serves on an address no interface has, in a throwaway
// network namespace (never the machine's own), then assigns the address
// and expects answers: the agent's case, which starts its DNS server
// before the pod bridge and its gateway address exist.
func TestServeFreebind(t *testing.T) {
	needRoot(t)
	const ip = "10.253.0.1"
	addr := ip + ":53"
	s := newServer(t, shoaldns.Config{Upstreams: []string{}})
	s.Set([]lb.Service{webService})

	ctx, cancel := context.WithCancel(context.Background())
	nsc := make(chan netns.NsHandle, 1)
	// serveNow tells the goroutine to serve (true) or, when the test
	// ends before it could, to end (false).
	serveNow := make(chan bool, 1)
	done := make(chan error, 1)
	go func() {
		// Serve creates its sockets on this goroutine's thread, so they
		// belong to the new namespace. The thread is never unlocked: it
		// dies with the goroutine instead of going back to the pool
		// inside the throwaway namespace.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			close(nsc)
			done <- fmt.Errorf("create a network namespace: %w", err)
			return
		}
		nsc <- ns
		if !<-serveNow {
			done <- nil
			return
		}
		done <- s.Serve(ctx, addr)
	}()
	ns, ok := <-nsc
	if !ok {
		t.Fatal(<-done)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case serveNow <- false:
		default: // told to serve already
		}
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(ioTimeout):
			t.Error("Serve did not return after its context ended")
		}
		ns.Close()
	})

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// lo up gives the namespace its local routing table: before that,
	// the kernel lets any address be bound, freebind or not.
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring lo up in the namespace: %v", err)
	}
	// Without IP_FREEBIND the bind fails: the test does test it.
	err = inNS(ns, func() error {
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
		}
		return err
	})
	if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("a plain bind of an unassigned address: %v, want EADDRNOTAVAIL", err)
	}
	serveNow <- true

	// Wait until both sockets are bound: the namespace's socket tables
	// list them (the address, little-endian hex, and port 53).
	const local = " 0100FD0A:0035 "
	bound := func() (bool, error) {
		var ok bool
		err := inNS(ns, func() error {
			ok = true
			for _, table := range []string{"udp", "tcp"} {
				b, err := os.ReadFile("/proc/thread-self/net/" + table)
				if err != nil {
					return err
				}
				ok = ok && strings.Contains(string(b), local)
			}
			return nil
		})
		return ok, err
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	deadline := time.After(ioTimeout)
	for {
		ok, err := bound()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("Serve on %s, an address not assigned yet: %v", addr, err)
		case <-deadline:
			t.Fatalf("Serve did not bind %s within %v", addr, ioTimeout)
		case <-tick.C:
		}
	}

	if err := h.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(ip), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatalf("assign %s in the namespace: %v", ip, err)
	}

	for _, network := range []string{"udp", "tcp"} {
		var r *dns.Msg
		err := inNS(ns, func() error {
			c := &dns.Client{Net: network, Timeout: ioTimeout}
			var err error
			r, _, err = c.Exchange(new(dns.Msg).SetQuestion("web.default.svc.cluster.local.", dns.TypeA), addr)
			return err
		})
		if err != nil {
			t.Fatalf("%s: query once the address exists: %v", network, err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.0.10" {
			t.Errorf("%s: %v", network, r)
		}
	}
}
