package proxy

import (
	"container/list"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/lb"
)

// udpListener receives the datagrams to one address of a UDP service
// port. Each client address gets a session: a socket of its own connected
// to the endpoint chosen for it, whose replies go back to the client from
// the listener's socket, so the client sees them come from the address it
// sent to.
type udpListener struct {
	env    *env
	id     string // the service port
	addr   netip.AddrPort
	conn   *net.UDPConn
	picker *picker
	// pktinfo is set on a wildcard listener: it learns the address each
	// datagram was sent to and answers from it, or a node with several
	// addresses would answer from whichever its routes prefer and the
	// client would drop the reply.
	pktinfo bool
	ctx     context.Context // cancelled by stop
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	sessions map[netip.AddrPort]*udpSession
	order    list.List // of *udpSession, oldest first, for eviction
	closed   bool
}

// udpSession is one client address's flow.
type udpSession struct {
	l      *udpListener
	client netip.AddrPort
	ep     netip.AddrPort
	conn   *net.UDPConn // connected to ep
	raw    syscall.RawConn
	oob    []byte // a wildcard listener's source address for replies
	// last is when a datagram last went either way, as time since
	// env.start, so the idle timeout follows the monotonic clock.
	last     atomic.Int64
	elem     *list.Element // in l.order; guarded by l.mu
	shutOnce sync.Once
}

func listenUDP(ctx context.Context, e *env, id string, pk *picker, addr netip.AddrPort) (*udpListener, error) {
	l := &udpListener{env: e, id: id, addr: addr, picker: pk, pktinfo: addr.Addr().IsUnspecified(), sessions: map[netip.AddrPort]*udpSession{}}
	var lc net.ListenConfig
	if l.pktinfo {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if addr.Addr().Is4() {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
				}
			})
			return errors.Join(err, serr)
		}
	}
	pc, err := lc.ListenPacket(ctx, network(lb.UDP, addr.Addr()), addr.String())
	if err != nil {
		return nil, err
	}
	l.conn = pc.(*net.UDPConn)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

func (l *udpListener) serve() {
	defer l.wg.Done()
	buf := make([]byte, udpBufSize)
	var oob []byte
	if l.pktinfo {
		oob = make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo)+unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	}
	var backoff time.Duration
	for {
		n, oobn, _, from, err := l.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Not expected on an unconnected socket; wait rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.env.log.Warn("receive failed, retrying", "port", l.id, "addr", l.addr, "err", err, "retry_in", backoff)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		l.forward(buf[:n], from, oob[:oobn])
	}
}

// forward sends a client's datagram on its session.
func (l *udpListener) forward(b []byte, from netip.AddrPort, oob []byte) {
	for retried := false; ; retried = true {
		s := l.session(from, oob)
		if s == nil {
			return
		}
		s.touch()
		_, err := s.conn.Write(b)
		if err == nil {
			l.env.metrics.udp.toEndpoint.Add(float64(len(b)))
			return
		}
		s.close()
		if retried || !errors.Is(err, net.ErrClosed) {
			// Mostly ECONNREFUSED: an earlier datagram's ICMP said nothing
			// listens there. The client's next datagram picks again.
			l.env.log.Debug("send to endpoint", "port", l.id, "endpoint", s.ep, "err", err)
			return
		}
		// The session expired (or was evicted) as the datagram came: a
		// new one takes it.
	}
}

// session returns from's session, making one when it has none; nil when
// no endpoint can take it.
func (l *udpListener) session(from netip.AddrPort, oob []byte) *udpSession {
	l.mu.Lock()
	s := l.sessions[from]
	l.mu.Unlock()
	if s != nil {
		return s
	}
	// Only serve makes sessions, so none for from appears meanwhile.
	m := &l.env.metrics.udp
	var replyOOB []byte
	if l.pktinfo {
		replyOOB = sourceOOB(oob)
	}
	var tried []netip.AddrPort
	for l.ctx.Err() == nil {
		ep, ok := l.picker.pick(from.Addr(), tried)
		if !ok {
			break
		}
		d := net.Dialer{Timeout: l.env.dialTimeout}
		c, err := d.DialContext(l.ctx, network(lb.UDP, ep.Addr()), ep.String())
		if err == nil {
			s = &udpSession{l: l, client: from, ep: ep, conn: c.(*net.UDPConn), oob: replyOOB}
			s.raw, err = s.conn.SyscallConn()
			if err != nil {
				c.Close()
			}
		}
		if err != nil {
			l.picker.release(ep)
			tried = append(tried, ep)
			m.dialErrors.Inc()
			l.env.log.Debug("dial endpoint", "port", l.id, "endpoint", ep, "err", err)
			continue
		}
		s.touch()
		if !l.add(s) {
			c.Close()
			l.picker.release(ep)
			return nil
		}
		m.proxied.Inc()
		m.active.Inc()
		l.wg.Add(1)
		go s.serve()
		return s
	}
	switch {
	case l.ctx.Err() != nil:
	case len(tried) == 0:
		m.noEndpoints.Inc()
	default:
		m.dialFailed.Inc()
	}
	return nil
}

// add enters s in the table, evicting the oldest session when the table
// is full; false when the listener has stopped.
func (l *udpListener) add(s *udpSession) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	var evicted *udpSession
	if len(l.sessions) >= l.env.maxSessions && l.order.Len() > 0 {
		evicted = l.order.Front().Value.(*udpSession)
		l.removeLocked(evicted)
	}
	l.sessions[s.client] = s
	s.elem = l.order.PushBack(s)
	l.mu.Unlock()
	if evicted != nil {
		l.env.metrics.evicted.Inc()
		evicted.shutdown()
	}
	return true
}

func (l *udpListener) removeLocked(s *udpSession) {
	if l.sessions[s.client] == s {
		delete(l.sessions, s.client)
		l.order.Remove(s.elem)
	}
}

// sessionCount is the number of live sessions.
func (l *udpListener) sessionCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sessions)
}

func (l *udpListener) stop() {
	l.mu.Lock()
	l.closed = true
	sessions := make([]*udpSession, 0, len(l.sessions))
	for _, s := range l.sessions {
		sessions = append(sessions, s)
	}
	clear(l.sessions)
	l.order.Init()
	l.mu.Unlock()
	l.cancel()
	l.conn.Close()
	for _, s := range sessions {
		s.shutdown()
	}
	l.wg.Wait()
}

// serve sends the endpoint's datagrams to the client until the session
// has been idle for the timeout, is closed, or the endpoint refuses.
func (s *udpSession) serve() {
	l := s.l
	defer l.wg.Done()
	defer s.close()
	m := &l.env.metrics.udp
	for {
		idleUntil := l.env.start.Add(time.Duration(s.last.Load()) + l.env.udpIdle)
		if !time.Now().Before(idleUntil) {
			return
		}
		s.conn.SetReadDeadline(idleUntil)
		buf, n, err := s.read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // the client may have sent meanwhile: look again
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.env.log.Debug("receive from endpoint", "port", l.id, "endpoint", s.ep, "err", err)
			}
			return
		}
		s.touch()
		_, _, err = l.conn.WriteMsgUDPAddrPort((*buf)[:n], s.oob, s.client)
		l.env.bufs.Put(buf)
		if err != nil {
			l.env.log.Debug("send to client", "port", l.id, "client", s.client, "err", err)
			continue
		}
		m.toClient.Add(float64(n))
	}
}

// read receives one datagram into a buffer from the pool. The buffer is
// only taken once the socket is readable, so idle sessions, which may be
// many thousands, hold no buffer while they wait.
func (s *udpSession) read() (*[]byte, int, error) {
	var (
		buf  *[]byte
		n    int
		rerr error
	)
	err := s.raw.Read(func(fd uintptr) bool {
		b := s.l.env.bufs.Get().(*[]byte)
		for {
			n, rerr = unix.Read(int(fd), *b)
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			s.l.env.bufs.Put(b)
			return false // wait until readable
		}
		buf = b
		return true
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		if buf != nil {
			s.l.env.bufs.Put(buf)
		}
		return nil, 0, err
	}
	return buf, n, nil
}

func (s *udpSession) touch() {
	s.last.Store(int64(time.Since(s.l.env.start)))
}

// close takes s out of its listener's table and shuts it.
func (s *udpSession) close() {
	s.l.mu.Lock()
	s.l.removeLocked(s)
	s.l.mu.Unlock()
	s.shutdown()
}

// shutdown closes the session's socket, which ends its serve, and stops
// counting it; once, whoever comes first (idle timeout, eviction, stop).
func (s *udpSession) shutdown() {
	s.shutOnce.Do(func() {
		s.conn.Close()
		s.l.picker.release(s.ep)
		s.l.env.metrics.udp.active.Dec()
	})
}

// sourceOOB turns the destination address the kernel reported for a
// datagram (IP_PKTINFO) into the control message that sends replies from
// that address; nil when there is none.
func sourceOOB(oob []byte) []byte {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: ifindex, spec_dst, addr (the header's destination).
			return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: [4]byte(m.Data[8:12])})
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			return unix.PktInfo6(&unix.Inet6Pktinfo{Addr: [16]byte(m.Data[0:16])})
		}
	}
	return nil
}
