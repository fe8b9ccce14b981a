package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/shoalproj/shoal/lb"
)

// tcpListener accepts the connections to one address of a TCP service
// port and forwards each to an endpoint.
type tcpListener struct {
	env    *env
	id     string // the service port
	addr   netip.AddrPort
	ln     *net.TCPListener
	picker *picker
	ctx    context.Context // cancelled by stop: ends dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[*net.TCPConn]struct{} // both sides of every connection
	closed bool
}

func listenTCP(ctx context.Context, e *env, id string, pk *picker, addr netip.AddrPort) (*tcpListener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network(lb.TCP, addr.Addr()), addr.String())
	if err != nil {
		return nil, err
	}
	l := &tcpListener{env: e, id: id, addr: addr, ln: ln.(*net.TCPListener), picker: pk, conns: map[*net.TCPConn]struct{}{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

func (l *tcpListener) serve() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, say: wait rather than spin, the kernel
			// keeps the backlog meanwhile.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.env.log.Warn("accept failed, retrying", "port", l.id, "addr", l.addr, "err", err, "retry_in", backoff)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		l.wg.Add(1)
		go l.handle(c)
	}
}

// handle forwards one accepted connection, trying each endpoint at most
// once; a client nobody can serve is reset, so it fails at once instead
// of waiting for a reply that will not come.
func (l *tcpListener) handle(client *net.TCPConn) {
	defer l.wg.Done()
	if !l.track(client) {
		return
	}
	defer l.untrack(client)
	m := &l.env.metrics.tcp
	from := client.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	var tried []netip.AddrPort
	for l.ctx.Err() == nil {
		ep, ok := l.picker.pick(from, tried)
		if !ok {
			break
		}
		backend, err := l.dial(ep)
		if err != nil {
			l.picker.release(ep)
			tried = append(tried, ep)
			if l.ctx.Err() == nil {
				m.dialErrors.Inc()
				l.env.log.Debug("dial endpoint", "port", l.id, "endpoint", ep, "err", err)
			}
			continue
		}
		m.proxied.Inc()
		l.forward(client, backend)
		l.picker.release(ep)
		return
	}
	switch {
	case l.ctx.Err() != nil: // stopped: not an outcome of the service
	case len(tried) == 0:
		m.noEndpoints.Inc()
	default:
		m.dialFailed.Inc()
		l.env.log.Debug("no endpoint could be dialled", "port", l.id, "client", client.RemoteAddr(), "tried", len(tried))
	}
	reset(client)
}

func (l *tcpListener) dial(ep netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: l.env.dialTimeout}
	c, err := d.DialContext(l.ctx, network(lb.TCP, ep.Addr()), ep.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// forward copies both ways until both directions have ended. io.Copy
// between two *net.TCPConn splices in the kernel; each direction's end is
// passed on as a half-close, so a client that stops sending still gets
// its answer. An error on either side resets both, so neither peer takes
// a broken stream for a complete one.
func (l *tcpListener) forward(client, backend *net.TCPConn) {
	if !l.track(backend) {
		return
	}
	defer l.untrack(backend)
	m := &l.env.metrics.tcp
	m.active.Inc()
	defer m.active.Dec()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := io.Copy(backend, client)
		m.toEndpoint.Add(float64(n))
		halfClose(backend, client, err)
	}()
	n, err := io.Copy(client, backend)
	m.toClient.Add(float64(n))
	halfClose(client, backend, err)
	<-done
	client.Close()
	backend.Close()
}

// halfClose passes on the end of the stream from src to dst: a clean end
// as a FIN, an error as a reset of both.
func halfClose(dst, src *net.TCPConn, err error) {
	if err == nil {
		dst.CloseWrite()
		return
	}
	reset(dst)
	reset(src)
}

// reset closes c with an RST rather than a FIN.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// track adds c to the connections stop closes; false (and c reset) when
// the listener has already stopped.
func (l *tcpListener) track(c *net.TCPConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		reset(c)
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *tcpListener) untrack(c *net.TCPConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

func (l *tcpListener) stop() {
	l.mu.Lock()
	l.closed = true
	l.cancel()
	l.ln.Close()
	for c := range l.conns {
		reset(c) // the port is gone: its clients learn at once
	}
	l.mu.Unlock()
	l.wg.Wait()
}
