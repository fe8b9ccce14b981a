package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// sniffConn is a connection whose client sends r and whose writes are
// dropped.
type sniffConn struct {
	r       io.Reader
	read    int
	written int
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.read += n
	return n, err
}
func (c *sniffConn) Write(b []byte) (int, error)      { c.written += len(b); return len(b), nil }
func (c *sniffConn) Close() error                     { return nil }
func (c *sniffConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *sniffConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *sniffConn) SetDeadline(time.Time) error      { return nil }
func (c *sniffConn) SetReadDeadline(time.Time) error  { return nil }
func (c *sniffConn) SetWriteDeadline(time.Time) error { return nil }

// sniffTestClient writes what an HTTP/2 client sends first: the preface,
// its SETTINGS, a request's headers (split over CONTINUATION frames when
// split is set) and the acknowledgement of the server's SETTINGS.
func sniffTestClient(t testing.TB, contentType string, split, ack bool) []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"}, {Name: ":authority", Value: "10.0.0.1:7443"},
		{Name: ":path", Value: "/shoal.v1.Shoal/Apply"}, {Name: "content-type", Value: contentType}, {Name: "te", Value: "trailers"},
	} {
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}))
	must(fr.WriteWindowUpdate(0, 1<<20))
	block := hb.Bytes()
	if split {
		must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3], PadLength: 4,
			Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}}))
		must(fr.WriteContinuation(1, false, block[3:5]))
		must(fr.WriteContinuation(1, true, block[5:]))
	} else {
		must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true}))
	}
	must(fr.WriteData(1, false, []byte("\x00\x00\x00\x00\x02{}")))
	if ack {
		must(fr.WriteSettingsAck())
	}
	return out.Bytes()
}

// FuzzSniffH2 feeds arbitrary bytes to the reading of a new HTTP/2
// connection's first request, which the API port does before it knows who
// the client is: it must not panic, must stop within its limit, and what
// it hands on to be read again is exactly what the client sent, less the
// acknowledgement of the mux's own SETTINGS.
func FuzzSniffH2(f *testing.F) {
	for _, ct := range []string{"application/grpc", "application/grpc+proto", "application/json", ""} {
		for _, split := range []bool{false, true} {
			for _, ack := range []bool{false, true} {
				f.Add(sniffTestClient(f, ct, split, ack))
			}
		}
	}
	f.Add([]byte(http2.ClientPreface))
	f.Add([]byte(http2.ClientPreface + "\xff\xff\xff\x01\x04\x00\x00\x00\x01"))
	f.Add([]byte(http2.ClientPreface + "\x00\x00\x01\x01\x08\x00\x00\x00\x01\xff"))
	f.Add([]byte(http2.ClientPreface + "\x00\x00\x05\x01\x24\x00\x00\x00\x01\x00\x00\x00\x00\x10"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &sniffConn{r: bytes.NewReader(data)}
		seen, _, err := sniffH2(c)
		if c.read > h2MaxPeekBytes+2*(h2FrameHeaderLen+h2MaxPeekFrameSize) {
			t.Fatalf("read %d bytes, more than the limit of %d", c.read, h2MaxPeekBytes)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if !bytes.HasPrefix(seen, []byte(http2.ClientPreface)) || len(seen) > h2MaxPeekBytes {
			t.Fatalf("handed on %d bytes starting %q", len(seen), seen[:min(len(seen), 30)])
		}
		// What was read, less the first SETTINGS frame with the ACK flag
		// (the client's acknowledgement of the mux's SETTINGS).
		read := data[:c.read]
		want := read
		for off := len(http2.ClientPreface); off+h2FrameHeaderLen <= len(read); {
			hdr := read[off : off+h2FrameHeaderLen]
			end := off + h2FrameHeaderLen + (int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2]))
			if hdr[3] == h2FrameSettings && hdr[4]&h2FlagAck != 0 {
				want = append(slices.Clone(read[:off]), read[min(end, len(read)):]...)
				break
			}
			off = end
		}
		if !bytes.Equal(seen, want) {
			t.Fatalf("handed on %q,\nwant %q", seen, want)
		}
	})
}

// sniffRepeat reads b again and again.
type sniffRepeat struct {
	b   []byte
	off int
}

func (r *sniffRepeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// TestLimitSniffH2 feeds the sniffer clients that never finish their first
// request's headers: frames of other kinds, or a header block continued
// for ever. Before the limit it kept all of it, for as long as the
// connection's 10 s sniff deadline let the client send.
func TestLimitSniffH2(t *testing.T) {
	frames := func(typ byte, flags byte, stream byte, n int) []byte {
		payload := bytes.Repeat([]byte{0}, n)
		return append([]byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, 0, 0, 0, stream}, payload...)
	}
	for _, tc := range []struct {
		name  string
		start []byte
		loop  []byte
	}{
		{"data frames", nil, frames(0x0, 0, 1, 16<<10)},
		{"pings", nil, frames(0x6, 0, 0, 8)},
		{"header block continued for ever", frames(h2FrameHeaders, 0, 1, 100), frames(h2FrameContinue, 0, 1, 16<<10)},
		{"frames of the largest size", nil, frames(0x0, 0, 1, h2MaxPeekFrameSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// 64 MiB at most, so that a missing limit fails instead of
			// hanging.
			head := append([]byte(http2.ClientPreface), tc.start...)
			c := &sniffConn{r: io.LimitReader(io.MultiReader(bytes.NewReader(head), &sniffRepeat{b: tc.loop}), 64<<20)}
			_, _, err := sniffH2(c)
			if err == nil || !strings.Contains(err.Error(), "more than 2097152 bytes (2 MiB) before the first request's headers end") {
				t.Fatalf("after %d bytes: %v", c.read, err)
			}
			if c.read > h2MaxPeekBytes+h2FrameHeaderLen {
				t.Errorf("read %d bytes, more than the limit of %d", c.read, h2MaxPeekBytes)
			}
			t.Logf("refused after %d bytes: %v", c.read, err)
		})
	}
	// A frame over the largest frame size is refused from its header.
	c := &sniffConn{r: bytes.NewReader(append([]byte(http2.ClientPreface), 0x10, 0, 1, 0, 0, 0, 0, 0, 1))}
	if _, _, err := sniffH2(c); err == nil || !strings.Contains(err.Error(), "more than the limit of 1048576") || errors.Is(err, io.EOF) {
		t.Fatalf("huge frame: %v", err)
	}
	// A real client within the limits is told apart.
	for _, tc := range []struct {
		ct   string
		grpc bool
	}{{"application/grpc", true}, {"application/json", false}} {
		data := sniffTestClient(t, tc.ct, true, true)
		c := &sniffConn{r: bytes.NewReader(data)}
		seen, isGRPC, err := sniffH2(c)
		// gRPC is handed on at the end of its headers; the rest once the
		// client acknowledged the mux's SETTINGS, less that frame.
		want := c.read
		if !tc.grpc {
			want = len(data) - h2FrameHeaderLen
		}
		if err != nil || isGRPC != tc.grpc || len(seen) != want {
			t.Fatalf("%s: grpc %v, %d of %d bytes handed on, want %d: %v", tc.ct, isGRPC, len(seen), len(data), want, err)
		}
	}
}

// TestLimitAPIRequestSize sends requests over the limits to a running
// node's API port: a gRPC message over apiMaxRecvMsgSize and an HTTP body
// over api.MaxRequestBody, over HTTP/1.1 and HTTP/2. Each is refused with
// an error that names the limit, and nothing is written.
func TestLimitAPIRequestSize(t *testing.T) {
	n := startTestNode(t, Config{DataDir: filepath.Join(t.TempDir(), "n1"), NodeName: "n1", AdvertiseAddr: "127.0.78.1", Init: true})
	res := n.c.InitResult()
	ctx := context.Background()
	cl := adminClient(t, res, n.c.APIAddress())
	pod := &api.Pod{Metadata: &api.ObjectMeta{Name: "big"}, Spec: &api.PodSpec{Containers: []*api.Container{{
		Name: "c", Image: "busybox", Args: []string{strings.Repeat("x", apiMaxRecvMsgSize)},
	}}}}
	_, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(pod)}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), fmt.Sprint(apiMaxRecvMsgSize)) {
		t.Fatalf("gRPC apply of %d MiB: want ResourceExhausted naming the limit, got %v", apiMaxRecvMsgSize>>20, err)
	}
	t.Logf("gRPC: %v", err)

	cert, err := tls.X509KeyPair(res.AdminCert, res.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(res.CACert)
	body := strings.Repeat("#", api.MaxRequestBody+1)
	for _, proto := range []string{"h2", "http/1.1"} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, NextProtos: []string{proto}},
			ForceAttemptHTTP2: proto == "h2"}
		if proto != "h2" {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		for _, chunked := range []bool{false, true} {
			var rd io.Reader = strings.NewReader(body)
			if chunked {
				rd = io.MultiReader(rd) // no length known: sent chunked (HTTP/1.1) or without content-length (HTTP/2)
			}
			resp, err := hc.Post("https://"+n.c.APIAddress()+"/v1/apply", "application/yaml", rd)
			if err != nil {
				t.Fatalf("%s (chunked %v): %v", proto, chunked, err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "the limit is 8 MiB") {
				t.Fatalf("%s (chunked %v): %s %s", proto, chunked, resp.Status, out)
			}
			t.Logf("%s (chunked %v): %s %s", proto, chunked, resp.Status, bytes.TrimSpace(out))
		}
		tr.CloseIdleConnections()
	}
	list, err := cl.List(ctx, &api.ListRequest{Kind: "Pod"})
	if err != nil || len(list.GetItems()) != 0 {
		t.Fatalf("pods after refused applies: %v %v", list.GetItems(), err)
	}
}
