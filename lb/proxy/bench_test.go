package proxy

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/shoalproj/shoal/lb"
)

// echoBackend echoes every connection on 127.0.0.1 until the benchmark
// ends.
func echoBackend(b *testing.B) netip.AddrPort {
	b.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// BenchmarkProxyTCP compares request/response round trips (64 bytes each
// way, on persistent connections, several in parallel) to an echo server
// directly and through the proxy. It reports figures; it passes or fails
// on nothing but errors.
func BenchmarkProxyTCP(b *testing.B) {
	const size = 64
	echo := echoBackend(b)
	vip := testIP()
	viaProxy := netip.AddrPortFrom(vip, freePort(b, lb.TCP, vip))
	p := newProxy(b, Config{})
	mustSync(b, p, service("echo", vip, tcpPort(viaProxy.Port(), echo)))

	for _, bc := range []struct {
		name string
		addr netip.AddrPort
	}{{"direct", echo}, {"proxied", viaProxy}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetParallelism(4)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp4", bc.addr.String())
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				req, resp := make([]byte, size), make([]byte, size)
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					if _, err := io.ReadFull(c, resp); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
