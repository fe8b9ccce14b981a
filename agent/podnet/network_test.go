package podnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// checkPodNS checks the inside of a pod's namespace: eth0 up with the
// pod's IP and the MTU, a default route via the gateway, and lo up and
// answering.
func (l *lab) checkPodNS(att Attachment, mtu int) {
	l.t.Helper()
	t := l.t
	ns := l.open(att.NetNSPath)
	h := l.handle(ns)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("%s: no eth0: %v", att.NetNSPath, err)
	}
	if eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: eth0 is down", att.NetNSPath)
	}
	if eth0.Attrs().MTU != mtu {
		t.Errorf("%s: eth0 MTU %d, want %d", att.NetNSPath, eth0.Attrs().MTU, mtu)
	}
	addrs, err := h.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || !addrs[0].IP.Equal(att.IP) || addrs[0].IPNet.Mask.String() != "ffffff00" {
		t.Errorf("%s: eth0 addresses %v, want %s/24", att.NetNSPath, addrs, att.IP)
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	defaultVia := ""
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			defaultVia = r.Gw.String()
		}
	}
	if defaultVia != att.Gateway.String() {
		t.Errorf("%s: default route via %q, want %s (routes %v)", att.NetNSPath, defaultVia, att.Gateway, routes)
	}
	lo, err := h.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: lo not up (%v)", att.NetNSPath, err)
	}
	l.serve(ns, "127.0.0.1:7000")
	l.mustDial(ns, "pod's own lo", "127.0.0.1:7000", "127.0.0.1")
}

func ipamFile(stateDir string, ip net.IP) string {
	return filepath.Join(stateDir, "podnet", "ipam", "shoal", ip.String())
}

func TestTwoPods(t *testing.T) {
	l := newLab(t)
	ctx := ctxT(t)
	n := l.network(Config{MTU: 1400})
	a, b := l.pod("a"), l.pod("b")

	start := time.Now()
	attA, err := n.Setup(ctx, a, nil)
	if err != nil {
		t.Fatalf("Setup a: %v", err)
	}
	t.Logf("first Setup (creates the bridge): %v", time.Since(start))
	start = time.Now()
	attB, err := n.Setup(ctx, b, nil)
	if err != nil {
		t.Fatalf("Setup b: %v", err)
	}
	t.Logf("second Setup: %v", time.Since(start))
	_, subnet, _ := net.ParseCIDR(testPodCIDR)
	for _, att := range []Attachment{attA, attB} {
		if !subnet.Contains(att.IP) || att.IP.String() == testGateway || att.Gateway.String() != testGateway {
			t.Errorf("attachment %+v: want an IP in %s other than the gateway %s", att, testPodCIDR, testGateway)
		}
	}
	if attA.IP.Equal(attB.IP) {
		t.Fatalf("both pods got %s", attA.IP)
	}
	if attA.NetNSPath != "/run/netns/"+NetNSName(a.UID) || !strings.HasPrefix(filepath.Base(attA.NetNSPath), "shoal-") {
		t.Errorf("namespace path %s", attA.NetNSPath)
	}
	t.Logf("a: %+v, b: %+v", attA, attB)

	// Setup again: the same attachment.
	again, err := n.Setup(ctx, a, nil)
	if err != nil || !reflect.DeepEqual(again, attA) {
		t.Errorf("second Setup of a = %+v, %v; want %+v", again, err, attA)
	}

	l.checkPodNS(attA, 1400)
	l.checkPodNS(attB, 1400)

	// The bridge in the host carries the gateway.
	br, err := l.handle(l.host).LinkByName("shoal0")
	if err != nil {
		t.Fatalf("no bridge shoal0 in the host namespace: %v", err)
	}
	if br.Type() != "bridge" {
		t.Errorf("shoal0 is a %s", br.Type())
	}

	// The host reaches both pods; the pods reach each other, unmasqueraded.
	nsA, nsB := l.open(attA.NetNSPath), l.open(attB.NetNSPath)
	l.serve(nsA, ":8080")
	l.serve(nsB, ":8080")
	l.mustDial(l.host, "host to a", attA.IP.String()+":8080", testGateway)
	l.mustDial(l.host, "host to b", attB.IP.String()+":8080", testGateway)
	l.mustDial(nsB, "b to a", attA.IP.String()+":8080", attB.IP.String())
	l.mustDial(nsA, "a to b", attB.IP.String()+":8080", attA.IP.String())

	// Status and List.
	st, ok, err := n.Status(ctx, a)
	if err != nil || !ok || !reflect.DeepEqual(st, attA) {
		t.Errorf("Status(a) = %+v, %v, %v; want %+v", st, ok, err, attA)
	}
	if _, ok, err := n.Status(ctx, l.pod("never")); ok || err != nil {
		t.Errorf("Status of an unknown pod = %v, %v", ok, err)
	}
	refs, err := n.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []PodRef{a, b}
	if a.UID > b.UID {
		want = []PodRef{b, a}
	}
	if !reflect.DeepEqual(refs, want) {
		t.Errorf("List = %v, want %v", refs, want)
	}

	// Teardown releases the IPs and removes the namespaces; twice is fine.
	for _, p := range []struct {
		ref PodRef
		att Attachment
	}{{a, attA}, {b, attB}} {
		if _, err := os.Stat(ipamFile(l.stateDir, p.att.IP)); err != nil {
			t.Errorf("host-local has no lease file for %s before teardown: %v", p.att.IP, err)
		}
		start := time.Now()
		if err := n.Teardown(ctx, p.ref); err != nil {
			t.Fatalf("Teardown %s: %v", p.ref.Name, err)
		}
		t.Logf("Teardown %s: %v", p.ref.Name, time.Since(start))
		if err := n.Teardown(ctx, p.ref); err != nil {
			t.Errorf("second Teardown %s: %v", p.ref.Name, err)
		}
		if pathExists(p.att.NetNSPath) {
			t.Errorf("%s still exists after teardown", p.att.NetNSPath)
		}
		if _, err := os.Stat(ipamFile(l.stateDir, p.att.IP)); !os.IsNotExist(err) {
			t.Errorf("%s still leased after teardown (%v)", p.att.IP, err)
		}
		if _, ok, err := n.Status(ctx, p.ref); ok || err != nil {
			t.Errorf("Status after teardown = %v, %v", ok, err)
		}
	}
	if refs, err := n.List(ctx); err != nil || len(refs) != 0 {
		t.Errorf("List after teardown = %v, %v", refs, err)
	}
	if _, err := dialWithin(l.host, attA.IP.String()+":8080", 500*time.Millisecond); err == nil {
		t.Errorf("%s still answers after teardown", attA.IP)
	}

	// A third pod gets an address of the subnet again, leased to it.
	c := l.pod("c")
	attC, err := n.Setup(ctx, c, nil)
	if err != nil {
		t.Fatalf("Setup c: %v", err)
	}
	lease, err := os.ReadFile(ipamFile(l.stateDir, attC.IP))
	if err != nil || !strings.HasPrefix(string(lease), c.UID) || !subnet.Contains(attC.IP) {
		t.Errorf("c: %+v, lease %q, %v", attC, lease, err)
	}
	if err := n.Teardown(ctx, c); err != nil {
		t.Fatalf("Teardown c: %v", err)
	}
	leases, _ := filepath.Glob(filepath.Join(l.stateDir, "podnet", "ipam", "shoal", "10.*"))
	if len(leases) != 0 {
		t.Errorf("leases left: %v", leases)
	}
}

func TestHostPort(t *testing.T) {
	l := newLab(t)
	ctx := ctxT(t)
	n := l.network(Config{})
	p := l.pod("web")
	start := time.Now()
	att, err := n.Setup(ctx, p, []PortMapping{
		{HostPort: 18080, ContainerPort: 8080, Protocol: "TCP"},
		{ContainerPort: 9090}, // no hostPort: not published
	})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Logf("Setup with a host port: %v", time.Since(start))
	// MTU 0: the host has no default route, so 1500, less the overlay's 50
	// in auto mode (the default).
	l.checkPodNS(att, 1450)
	l.serve(l.open(att.NetNSPath), ":8080")
	// From the host, to one of its own addresses and to localhost.
	l.mustDial(l.host, "host port on the bridge address", testGateway+":18080", testGateway)
	if got, err := dial(l.host, "127.0.0.1:18080"); err != nil {
		t.Errorf("host port on localhost: %v", err)
	} else {
		t.Logf("host port on localhost: the pod saw %s", got)
	}
	if err := n.Teardown(ctx, p); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if _, err := dial(l.host, testGateway+":18080"); !isConnRefused(err) {
		t.Errorf("host port after teardown: %v, want connection refused", err)
	}
}

func TestRestart(t *testing.T) {
	l := newLab(t)
	ctx := ctxT(t)
	n1 := l.network(Config{})
	p := l.pod("survivor")
	att, err := n1.Setup(ctx, p, []PortMapping{{HostPort: 18081, ContainerPort: 8080}})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	l.serve(l.open(att.NetNSPath), ":8080")
	// The agent dies (kill -9): nothing is cleaned up.
	n1.mu.Lock()
	n1.closed = true
	n1.hostNS.Close()
	n1.mu.Unlock()

	n2 := l.network(Config{})
	refs, err := n2.List(ctx)
	if err != nil || !reflect.DeepEqual(refs, []PodRef{p}) {
		t.Fatalf("List after restart = %v, %v; want [%v]", refs, err, p)
	}
	st, ok, err := n2.Status(ctx, p)
	if err != nil || !ok || !reflect.DeepEqual(st, att) {
		t.Fatalf("Status after restart = %+v, %v, %v; want %+v", st, ok, err, att)
	}
	l.mustDial(l.host, "pod after restart", att.IP.String()+":8080", testGateway)
	l.mustDial(l.host, "host port after restart", testGateway+":18081", testGateway)
	// Setup of an adopted pod returns it as it is.
	if again, err := n2.Setup(ctx, p, nil); err != nil || !reflect.DeepEqual(again, att) {
		t.Errorf("Setup after restart = %+v, %v", again, err)
	}

	// The new instance re-created the masquerade table, with one rule.
	conn, err := nftables.New(nftables.WithNetNSFd(int(l.host)))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := conn.ListTableOfFamily(MasqTable, nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatalf("masquerade table after restart: %v", err)
	}
	rules, err := conn.GetRules(tbl, &nftables.Chain{Name: masqChain, Table: tbl})
	if err != nil || len(rules) != 1 {
		t.Errorf("masquerade rules after restart: %d, %v; want 1", len(rules), err)
	}

	if err := n2.Teardown(ctx, p); err != nil {
		t.Fatalf("Teardown after restart: %v", err)
	}
	if pathExists(att.NetNSPath) {
		t.Errorf("%s still exists", att.NetNSPath)
	}
	if _, err := os.Stat(ipamFile(l.stateDir, att.IP)); !os.IsNotExist(err) {
		t.Errorf("%s still leased (%v)", att.IP, err)
	}
	if _, err := dial(l.host, testGateway+":18081"); !isConnRefused(err) {
		t.Errorf("host port after teardown: %v, want connection refused", err)
	}
	if refs, err := n2.List(ctx); err != nil || len(refs) != 0 {
		t.Errorf("List = %v, %v", refs, err)
	}
	cache, _ := filepath.Glob(filepath.Join(l.stateDir, "podnet", "cni-cache", "results", "*"))
	if len(cache) != 0 {
		t.Errorf("CNI cache left: %v", cache)
	}
}

func TestMasquerade(t *testing.T) {
	l := newLab(t)
	ctx := ctxT(t)
	rootForward, err := readSysctl(l.root, "net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}

	// An "outside" network: 192.0.2.0/24 (documentation range) on a veth
	// pair between the host and a namespace of its own, with no route back
	// to the pods: only masqueraded traffic can get an answer.
	outside := l.anonNS()
	hh, oh := l.handle(l.host), l.handle(outside)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "out0"}, PeerName: "out1", PeerNamespace: netlink.NsFd(int(outside))}
	if err := hh.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	for _, x := range []struct {
		h    *netlink.Handle
		name string
		addr string
	}{{hh, "out0", "192.0.2.1/24"}, {oh, "out1", "192.0.2.2/24"}, {oh, "lo", ""}} {
		link, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if x.addr != "" {
			a, _ := netlink.ParseAddr(x.addr)
			if err := x.h.AddrAdd(link, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := x.h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	l.serve(outside, "192.0.2.2:9090")

	n := l.network(Config{})
	for _, k := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"} {
		if v, err := readSysctl(l.host, k); err != nil || v != "1" {
			t.Errorf("%s in the host namespace = %q, %v; want 1", k, v, err)
		}
	}
	if v, _ := readSysctl(l.root, "net/ipv4/ip_forward"); v != rootForward {
		t.Errorf("the test's own namespace changed: ip_forward %s, was %s", v, rootForward)
	}

	conn, err := nftables.New(nftables.WithNetNSFd(int(l.host)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ListTableOfFamily(MasqTable, nftables.TableFamilyIPv4); err != nil {
		t.Fatalf("no table %s after New: %v", MasqTable, err)
	}

	p := l.pod("client")
	att, err := n.Setup(ctx, p, nil)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	pod := l.open(att.NetNSPath)
	l.mustDial(pod, "pod to outside", "192.0.2.2:9090", "192.0.2.1")
	// Inside the cluster CIDR nothing is masqueraded: the host sees the pod.
	l.serve(l.host, testGateway+":9091")
	l.mustDial(pod, "pod to host", testGateway+":9091", att.IP.String())

	if err := n.Teardown(ctx, p); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := conn.ListTableOfFamily(MasqTable, nftables.TableFamilyIPv4); err == nil {
		t.Errorf("table %s still there after Close", MasqTable)
	}
	if _, err := n.Setup(ctx, l.pod("late"), nil); err == nil {
		t.Error("Setup after Close succeeded")
	}
}

func TestSetupFailureLeavesNothing(t *testing.T) {
	l := newLab(t)
	ctx := ctxT(t)
	n := l.network(Config{})
	p := l.pod("first")
	if _, err := n.Setup(ctx, p, []PortMapping{{HostPort: 18082, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	// A pod whose UID starts like p's would get p's namespace name: refused,
	// and p is untouched.
	twin := PodRef{UID: p.UID[:12] + "-twin", Namespace: "default", Name: "twin"}
	if _, err := n.Setup(ctx, twin, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Setup of a pod with the same namespace name: %v", err)
	}
	if _, ok, _ := n.Status(ctx, p); !ok {
		t.Error("first pod lost")
	}
	// A Setup that fails (its context is cancelled, so the first plugin
	// does not run) undoes itself: no namespace, no record, no lease.
	bad := l.pod("bad")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.Setup(cancelled, bad, nil); err == nil {
		t.Error("Setup with a cancelled context succeeded")
	}
	if pathExists(NetNSPath(bad.UID)) {
		t.Error("namespace of the failed pod left behind")
	}
	if _, ok, err := n.Status(ctx, bad); ok || err != nil {
		t.Errorf("Status of the failed pod: %v, %v", ok, err)
	}
	refs, _ := n.List(ctx)
	if !reflect.DeepEqual(refs, []PodRef{p}) {
		t.Errorf("List = %v, want only %v", refs, p)
	}
	if err := n.Teardown(ctx, p); err != nil {
		t.Fatal(err)
	}
	leases, _ := filepath.Glob(filepath.Join(l.stateDir, "podnet", "ipam", "shoal", "10.*"))
	if len(leases) != 0 {
		t.Errorf("leases left: %v", leases)
	}
}

func TestConcurrentPods(t *testing.T) {
	const pods = 30
	l := newLab(t)
	ctx := ctxT(t)
	n := l.network(Config{})
	refs := make([]PodRef, pods)
	for i := range refs {
		refs[i] = l.pod(fmt.Sprintf("p%d", i))
	}
	atts := make([]Attachment, pods)
	errs := make([]error, pods)
	run := func(fn func(i int)) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for i := range refs {
			wg.Add(1)
			go func() { defer wg.Done(); fn(i) }()
		}
		wg.Wait()
		return time.Since(start)
	}
	took := run(func(i int) { atts[i], errs[i] = n.Setup(ctx, refs[i], nil) })
	t.Logf("%d concurrent Setups (the first ones race to create the bridge): %v", pods, took)
	seen := map[string]string{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Setup %s: %v", refs[i].Name, err)
		}
		ip := atts[i].IP.String()
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s and %s both got %s", other, refs[i].Name, ip)
		}
		seen[ip] = refs[i].Name
	}
	// Every pod answers the host.
	for i := range refs {
		if i%10 == 0 {
			l.serve(l.open(atts[i].NetNSPath), ":8080")
			l.mustDial(l.host, refs[i].Name, atts[i].IP.String()+":8080", testGateway)
		}
	}
	if got, err := n.List(ctx); err != nil || len(got) != pods {
		t.Fatalf("List: %d pods, %v", len(got), err)
	}
	took = run(func(i int) { errs[i] = n.Teardown(ctx, refs[i]) })
	t.Logf("%d concurrent Teardowns: %v", pods, took)
	for i, err := range errs {
		if err != nil {
			t.Errorf("Teardown %s: %v", refs[i].Name, err)
		}
		if pathExists(atts[i].NetNSPath) {
			t.Errorf("%s left", atts[i].NetNSPath)
		}
	}
	leases, _ := filepath.Glob(filepath.Join(l.stateDir, "podnet", "ipam", "shoal", "10.*"))
	if len(leases) != 0 {
		t.Errorf("leases left: %v", leases)
	}
}
