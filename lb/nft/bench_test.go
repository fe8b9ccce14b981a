package nft

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/shoalproj/shoal/lb"
)

// benchServices makes n services of one TCP port (with a node port for
// every other one) and eps endpoints each, spread over a /16 of pods.
func benchServices(n, eps int) []lb.Service {
	out := make([]lb.Service, n)
	for i := range out {
		p := lb.Port{Protocol: lb.TCP, Port: 80}
		if i%2 == 0 {
			p.NodePort = uint16(30000 + i)
		}
		for j := range eps {
			k := i*eps + j
			p.Endpoints = append(p.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(k >> 8), byte(k)}), 8080))
		}
		out[i] = lb.Service{
			Namespace: "bench",
			Name:      fmt.Sprintf("svc%d", i),
			ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}),
			Ports:     []lb.Port{p},
		}
	}
	return out
}

// BenchmarkSync1000Services applies 1,000 services × 10 endpoints into a
// throwaway namespace. "full" is a whole initial sync (render, diff, one
// transaction) into an empty table; "one-endpoint" changes one endpoint
// of one service.
func BenchmarkSync1000Services(b *testing.B) {
	needRoot(b)
	ns := newNS(b)
	d := newDataplane(b, ns, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	services := benchServices(1000, 10)

	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			if err := d.Sync(ctx, nil); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := d.Sync(ctx, services); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/sync")
	})

	// ClientIP affinity keeps kube-proxy's per-endpoint sets and chains,
	// and the kernel looks a set up by name through a list: the full sync
	// grows with the square of the affinity sets (1,000 × 10 all with
	// affinity took about 19 s on the lab machine), hence 100 here.
	b.Run("full-affinity-100x10", func(b *testing.B) {
		sticky := benchServices(100, 10)
		for i := range sticky {
			sticky[i].Affinity = time.Hour
		}
		for b.Loop() {
			b.StopTimer()
			if err := d.Sync(ctx, nil); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := d.Sync(ctx, sticky); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/sync")
	})

	b.Run("one-endpoint", func(b *testing.B) {
		if err := d.Sync(ctx, services); err != nil {
			b.Fatal(err)
		}
		changed := make([]lb.Service, len(services))
		copy(changed, services)
		port := changed[500].Ports[0]
		port.Endpoints = append([]netip.AddrPort(nil), port.Endpoints...)
		port.Endpoints[3] = netip.MustParseAddrPort("10.244.250.1:8080")
		changed[500].Ports = []lb.Port{port}
		i := 0
		for b.Loop() {
			s := services
			if i%2 == 0 {
				s = changed
			}
			i++
			if err := d.Sync(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/sync")
	})
}

// BenchmarkRender is the pure part of a full sync: rendering 1,000
// services × 10 endpoints and diffing against an empty table.
func BenchmarkRender(b *testing.B) {
	services := benchServices(1000, 10)
	cfg := renderConfig{clusterCIDR: testClusterCIDR}
	for b.Loop() {
		d, _, err := render(cfg, services)
		if err != nil {
			b.Fatal(err)
		}
		_ = diff(nil, d)
	}
}

// BenchmarkDiffOneEndpoint is the pure part of a one-endpoint change.
func BenchmarkDiffOneEndpoint(b *testing.B) {
	services := benchServices(1000, 10)
	cfg := renderConfig{clusterCIDR: testClusterCIDR}
	old, _, err := render(cfg, services)
	if err != nil {
		b.Fatal(err)
	}
	services[500].Ports[0].Endpoints[3] = netip.MustParseAddrPort("10.244.250.1:8080")
	for b.Loop() {
		d, _, err := render(cfg, services)
		if err != nil {
			b.Fatal(err)
		}
		if ops := diff(old, d); len(ops) == 0 {
			b.Fatal("no operations")
		}
	}
}
