package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/credentials"
)

// The API port carries gRPC and HTTP/JSON over one TLS listener. gRPC
// served through net/http (grpc.Server.ServeHTTP) costs about a third of
// the leader's CPU per write, so each connection goes to the server that
// speaks its protocol instead: HTTP/1.1 connections and HTTP/2 connections
// whose first request is not gRPC to net/http, the rest to gRPC's own
// transport. Telling them apart takes reading the first request's headers.

const (
	h2FrameHeaderLen   = 9
	h2FrameSettings    = 0x4
	h2FrameHeaders     = 0x1
	h2FrameContinue    = 0x9
	h2FlagAck          = 0x1
	h2FlagEndHeaders   = 0x4
	h2FlagPadded       = 0x8
	h2FlagPriority     = 0x20
	h2MaxPeekFrameSize = 1 << 20
	// h2MaxPeekBytes bounds all that is read (and kept, to be replayed)
	// before the first request's headers are complete: a header block (up
	// to net/http's 1 MiB), and what flow control lets a client send
	// before the server's first WINDOW_UPDATE (64 KiB).
	h2MaxPeekBytes = 2 << 20
	// sniffTimeout bounds how long a new connection may take to say what
	// it is.
	sniffTimeout = 10 * time.Second
)

// apiMux accepts the API port's connections and hands them on.
type apiMux struct {
	ln     net.Listener
	tlsCfg *tls.Config
	grpcLn *chanListener
	httpLn *chanListener // HTTP/1.1 connections, served by net/http
	h2     *http2.Server
	hs     *http.Server
	log    *slog.Logger

	wg sync.WaitGroup

	mu      sync.Mutex
	h2Conns map[net.Conn]bool // HTTP/2 connections net/http serves, closed at shutdown
	closing bool
}

// close stops accepting and ends the connections the mux serves itself.
func (m *apiMux) close() {
	m.ln.Close()
	m.grpcLn.Close()
	m.httpLn.Close()
	m.mu.Lock()
	m.closing = true
	for c := range m.h2Conns {
		c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *apiMux) serve(ctx context.Context) error {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(ctx, conn)
		}()
	}
}

func (m *apiMux) route(ctx context.Context, raw net.Conn) {
	tc := tls.Server(raw, m.tlsCfg)
	_ = tc.SetDeadline(time.Now().Add(sniffTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		m.log.Debug("API handshake", "remote", raw.RemoteAddr(), "err", err)
		raw.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		_ = tc.SetDeadline(time.Time{})
		m.httpLn.push(tc)
		return
	}
	seen, isGRPC, err := sniffH2(tc)
	if err != nil {
		m.log.Debug("API connection", "remote", raw.RemoteAddr(), "err", err)
		tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	pc := &prefixConn{Conn: tc, tls: tc, prefix: seen}
	if isGRPC {
		m.grpcLn.push(pc)
		return
	}
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		pc.Close()
		return
	}
	m.h2Conns[pc] = true
	m.mu.Unlock()
	m.h2.ServeConn(pc, &http2.ServeConnOpts{Context: ctx, BaseConfig: m.hs, Handler: m.hs.Handler})
	m.mu.Lock()
	delete(m.h2Conns, pc)
	m.mu.Unlock()
	pc.Close()
}

// sniffH2 reads an HTTP/2 connection up to its first request's headers and
// returns the bytes read (to be read again by the real server), and whether
// that request is gRPC. It sends the server's SETTINGS first, because gRPC
// clients wait for them before they send a request; the client's
// acknowledgement of those is consumed here, as the real server will send
// and count its own.
func sniffH2(c net.Conn) ([]byte, bool, error) {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return nil, false, fmt.Errorf("read HTTP/2 preface: %w", err)
	}
	if string(preface) != http2.ClientPreface {
		return nil, false, errors.New("not an HTTP/2 client preface")
	}
	// A SETTINGS frame with only SETTINGS_NO_RFC7540_PRIORITIES=1: net/http
	// sends that in its own SETTINGS, and clients refuse it changing after
	// the first (RFC 9218); gRPC's server does not send it at all.
	if _, err := c.Write([]byte{0, 0, 6, h2FrameSettings, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1}); err != nil {
		return nil, false, fmt.Errorf("write SETTINGS: %w", err)
	}
	seen := bytes.NewBuffer(preface)
	var block []byte
	decided, isGRPC, acked := false, false, false
	for !decided || !acked {
		var hdr [h2FrameHeaderLen]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return nil, false, fmt.Errorf("read HTTP/2 frame: %w", err)
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags := hdr[3], hdr[4]
		if length > h2MaxPeekFrameSize {
			return nil, false, fmt.Errorf("HTTP/2 frame of %d bytes, more than the limit of %d", length, h2MaxPeekFrameSize)
		}
		if seen.Len()+h2FrameHeaderLen+length > h2MaxPeekBytes {
			return nil, false, fmt.Errorf("HTTP/2: more than %d bytes (%d MiB) before the first request's headers end", h2MaxPeekBytes, h2MaxPeekBytes>>20)
		}
		payload := make([]byte, length)
		if _, err := io.ReadFull(c, payload); err != nil {
			return nil, false, fmt.Errorf("read HTTP/2 frame: %w", err)
		}
		if typ == h2FrameSettings && flags&h2FlagAck != 0 && !acked {
			acked = true // the acknowledgement of our SETTINGS: not replayed
			continue
		}
		seen.Write(hdr[:])
		seen.Write(payload)
		if decided {
			continue
		}
		switch typ {
		case h2FrameHeaders:
			frag, err := headerFragment(flags, payload)
			if err != nil {
				return nil, false, err
			}
			block = append(block, frag...)
		case h2FrameContinue:
			block = append(block, payload...)
		default:
			continue
		}
		if flags&h2FlagEndHeaders == 0 {
			continue
		}
		fields, err := hpack.NewDecoder(4096, nil).DecodeFull(block)
		if err != nil {
			return nil, false, fmt.Errorf("decode HTTP/2 headers: %w", err)
		}
		for _, f := range fields {
			if f.Name == "content-type" {
				isGRPC = strings.HasPrefix(f.Value, "application/grpc")
			}
		}
		decided = true
		if isGRPC {
			// gRPC's transport ignores a stray acknowledgement; do not wait.
			break
		}
	}
	return seen.Bytes(), isGRPC, nil
}

// headerFragment strips padding and priority from a HEADERS payload.
func headerFragment(flags byte, p []byte) ([]byte, error) {
	pad := 0
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 {
			return nil, errors.New("short padded HEADERS frame")
		}
		pad = int(p[0])
		p = p[1:]
	}
	if flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, errors.New("short HEADERS frame")
		}
		p = p[5:] // stream dependency and weight
	}
	if pad > len(p) {
		return nil, errors.New("HEADERS padding longer than the frame")
	}
	return p[:len(p)-pad], nil
}

// prefixConn is a TLS connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	tls    *tls.Conn
	mu     sync.Mutex
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()
	return p.Conn.Read(b)
}

// ConnectionState lets both servers see the client's certificate.
func (p *prefixConn) ConnectionState() tls.ConnectionState { return p.tls.ConnectionState() }

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// acceptedTLS is gRPC transport security for connections whose TLS
// handshake the mux already did: it passes the connection's TLS state on,
// so that calls see the client's certificate.
type acceptedTLS struct{}

func (acceptedTLS) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	st, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil, nil, errors.New("API connection without TLS")
	}
	return c, credentials.TLSInfo{
		State:          st.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (acceptedTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("acceptedTLS is for servers only")
}

func (acceptedTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (a acceptedTLS) Clone() credentials.TransportCredentials { return a }

func (acceptedTLS) OverrideServerName(string) error { return nil }
