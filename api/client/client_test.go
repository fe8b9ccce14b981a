package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate.
type testPKI struct {
	caPEM      []byte
	serverCert tls.Certificate
	clientCert []byte
	clientKey  []byte
	pool       *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, server bool) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "leaf"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := &testPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	sc, sk := issue(2, true)
	p.serverCert, err = tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientKey = issue(3, false)
	return p
}

func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.serverCert},
		ClientCAs:    p.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

func (p *testPKI) config(server string, more ...string) *Config {
	return &Config{Server: server, Servers: more, CA: string(p.caPEM), Cert: string(p.clientCert), Key: string(p.clientKey)}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// fakeServer is a minimal ShoalServer for the client tests.
type fakeServer struct {
	api.UnimplementedShoalServer
	mu     sync.Mutex
	pods   map[string]*api.Pod
	rv     int
	events chan *api.WatchEvent
	proto  string // protocol of the last HTTP request
}

func (f *fakeServer) Apply(_ context.Context, req *api.ApplyRequest) (*api.ApplyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	resp := &api.ApplyResponse{}
	for _, o := range req.Objects {
		p, ok := o.Resource().(*api.Pod)
		if !ok {
			return nil, status.Error(codes.InvalidArgument, "kind: only pods here")
		}
		if _, exists := f.pods[p.Metadata.Name]; exists && req.CreateOnly {
			return nil, status.Errorf(codes.AlreadyExists, "pods %q already exists", p.Metadata.Name)
		}
		p.Metadata.Namespace = "default"
		p.Metadata.ResourceVersion = strconv.Itoa(f.rv)
		f.pods[p.Metadata.Name] = p
		resp.Objects = append(resp.Objects, api.Wrap(p))
	}
	return resp, nil
}

func (f *fakeServer) Get(_ context.Context, req *api.GetRequest) (*api.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[req.Name]
	if !ok || req.Namespace != "default" {
		return nil, status.Errorf(codes.NotFound, "pods %q not found", req.Name)
	}
	return api.Wrap(p), nil
}

func (f *fakeServer) List(_ context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &api.ListResponse{ResourceVersion: strconv.Itoa(f.rv)}
	for _, p := range f.pods {
		resp.Items = append(resp.Items, api.Wrap(p))
	}
	return resp, nil
}

func (f *fakeServer) Delete(_ context.Context, req *api.DeleteRequest) (*api.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[req.Name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pods %q not found", req.Name)
	}
	if req.ResourceVersion != "" && req.ResourceVersion != p.Metadata.ResourceVersion {
		return nil, status.Errorf(codes.Aborted, "pods %q: the object has been modified", req.Name)
	}
	delete(f.pods, req.Name)
	return &api.DeleteResponse{Object: api.Wrap(p)}, nil
}

func (f *fakeServer) Watch(req *api.WatchRequest, s api.Shoal_WatchServer) error {
	for {
		select {
		case ev, ok := <-f.events:
			if !ok {
				return status.Error(codes.Unavailable, "leader lost")
			}
			if err := s.Send(ev); err != nil {
				return err
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

func (f *fakeServer) Token(_ context.Context, req *api.TokenRequest) (*api.TokenResponse, error) {
	if req.Rotate {
		return &api.TokenResponse{Token: "SHOAL-1-new", Endpoints: []string{"10.0.0.1:7443"}}, nil
	}
	return &api.TokenResponse{Token: "SHOAL-1-old"}, nil
}

func (f *fakeServer) RemoveNode(_ context.Context, req *api.RemoveNodeRequest) (*api.RemoveNodeResponse, error) {
	if req.Name != "n1" {
		return nil, status.Errorf(codes.NotFound, "node %q is not a member", req.Name)
	}
	return &api.RemoveNodeResponse{}, nil
}

func (f *fakeServer) Version(context.Context, *api.VersionRequest) (*api.VersionResponse, error) {
	return &api.VersionResponse{Version: "v9", Node: "n1", Leader: "n1"}, nil
}

func startHTTP(t *testing.T, p *testPKI, f *fakeServer) string {
	h := api.NewHTTPHandler(f)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.proto = r.Proto
		f.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = p.serverTLS()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestHTTPClient(t *testing.T) {
	p := newTestPKI(t)
	f := &fakeServer{pods: map[string]*api.Pod{}, events: make(chan *api.WatchEvent)}
	addr := startHTTP(t, p, f)
	// The configured server is down: the client moves on to the next one.
	c, err := NewHTTPClient(p.config(deadAddr(t), addr), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	items, err := c.Apply(ctx, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: busybox}]}\n"), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || !strings.Contains(string(items[0]), `"kind":"Pod"`) {
		t.Fatalf("apply: %s", items)
	}
	if c.Server() != addr {
		t.Fatalf("server %s, want %s", c.Server(), addr)
	}
	f.mu.Lock()
	if f.proto != "HTTP/2.0" {
		t.Errorf("protocol %s, want HTTP/2.0", f.proto)
	}
	f.mu.Unlock()

	_, err = c.Apply(ctx, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n"), ApplyOptions{CreateOnly: true})
	var he *api.HTTPError
	if !errors.As(err, &he) || he.Code != 409 || err.Error() != `Error from server (AlreadyExists): pods "a" already exists` {
		t.Fatalf("create-only: %v", err)
	}

	obj, err := c.Get(ctx, "po", "default", "a")
	if err != nil || !strings.Contains(string(obj), `"name":"a"`) {
		t.Fatalf("get: %s %v", obj, err)
	}
	if _, err := c.GetConsistent(ctx, "pods", "", "missing"); err == nil || err.Error() != `Error from server (NotFound): pods "missing" not found` {
		t.Fatalf("get missing: %v", err)
	}
	list, err := c.List(ctx, "pods", "default", false, "app=web")
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %s %v", list, err)
	}
	ol, err := c.ListObjects(ctx, "Pod", "default", ListOptions{AllNamespaces: true})
	if err != nil || ol.ResourceVersion != "2" || len(ol.Items) != 1 {
		t.Fatalf("list objects: %+v %v", ol, err)
	}
	if _, err := c.List(ctx, "widgets", "", true, ""); err == nil || !strings.Contains(err.Error(), `resource type "widgets"`) {
		t.Fatalf("unknown kind: %v", err)
	}

	if _, err := c.Delete(ctx, "pods", "default", "a", "7"); err == nil || !strings.Contains(err.Error(), "(Conflict)") {
		t.Fatalf("delete stale: %v", err)
	}
	if obj, err := c.Delete(ctx, "pods", "default", "a", "1"); err != nil || !strings.Contains(string(obj), `"name":"a"`) {
		t.Fatalf("delete: %s %v", obj, err)
	}

	tok, err := c.Token(ctx, false)
	if err != nil || tok.Token != "SHOAL-1-old" || len(tok.Endpoints) != 0 {
		t.Fatalf("token: %v %v", tok, err)
	}
	tok, err = c.Token(ctx, true)
	if err != nil || tok.Token != "SHOAL-1-new" || tok.Endpoints[0] != "10.0.0.1:7443" {
		t.Fatalf("rotate: %v %v", tok, err)
	}
	// The fake has no node objects: the API still removes the member.
	if err := c.RemoveNode(ctx, "n1"); err != nil {
		t.Fatalf("remove node: %v", err)
	}
	if err := c.RemoveNode(ctx, "n9"); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("remove unknown node: %v", err)
	}
	v, err := c.Version(ctx)
	if err != nil || v.Version != "v9" || v.Leader != "n1" {
		t.Fatalf("version: %v %v", v, err)
	}
}

func TestHTTPClientWatch(t *testing.T) {
	p := newTestPKI(t)
	f := &fakeServer{pods: map[string]*api.Pod{}, events: make(chan *api.WatchEvent)}
	addr := startHTTP(t, p, f)
	c, err := NewHTTPClient(p.config("unused:1"), addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := c.Watch(ctx, "pods", "default", WatchOptions{ResourceVersion: "3"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f.events <- &api.WatchEvent{Type: "ADDED", Object: api.Wrap(&api.Pod{Metadata: &api.ObjectMeta{Name: "a"}}), ResourceVersion: "4"}
	ev, err := w.Next()
	if err != nil || ev.Type != "ADDED" || ev.ResourceVersion != "4" || !strings.Contains(string(ev.Object), `"name":"a"`) {
		t.Fatalf("event %+v %v", ev, err)
	}
	close(f.events)
	if _, err := w.Next(); err == nil || err.Error() != "Error from server (ServiceUnavailable): leader lost" {
		t.Fatalf("error event: %v", err)
	}
	if _, err := w.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestHTTPClientUnreachable(t *testing.T) {
	p := newTestPKI(t)
	dead := deadAddr(t)
	c, err := NewHTTPClient(p.config(dead), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Version(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach the shoal API") || !strings.Contains(err.Error(), dead) {
		t.Fatalf("err %v", err)
	}
	if _, err := NewHTTPClient(p.config("nohostport"), ""); err == nil {
		t.Fatal("bad endpoint accepted")
	}
}

func TestReadHTTPErrorNotStatus(t *testing.T) {
	rec := httptest.NewRecorder()
	http.Error(rec, "upstream exploded", http.StatusBadGateway)
	err := readHTTPError(rec.Result())
	if err.Error() != "Error from server (BadGateway): upstream exploded" {
		t.Fatalf("%v", err)
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		kind, ns, name, want string
	}{
		{"po", "default", "x", "/v1/namespaces/default/pods/x"},
		{"deploy", "", "web", "/v1/namespaces/default/deployments/web"},
		{"nodes", "ignored", "n1", "/v1/nodes/n1"},
		{"svc", "a b", "x/y", "/v1/namespaces/a%20b/services/x%2Fy"},
	} {
		got, err := ObjectPath(tc.kind, tc.ns, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("ObjectPath(%q,%q,%q) = %q %v, want %q", tc.kind, tc.ns, tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ kind, ns, want string }{
		{"pods", "", "/v1/pods"},
		{"ep", "kube", "/v1/namespaces/kube/endpoints"},
		{"no", "default", "/v1/nodes"},
	} {
		got, err := CollectionPath(tc.kind, tc.ns)
		if err != nil || got != tc.want {
			t.Errorf("CollectionPath(%q,%q) = %q %v, want %q", tc.kind, tc.ns, got, err, tc.want)
		}
	}
}

func TestDialFallsBack(t *testing.T) {
	p := newTestPKI(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.serverTLS())))
	api.RegisterShoalServer(gs, &fakeServer{pods: map[string]*api.Pod{}})
	go gs.Serve(l)
	defer gs.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := Dial(ctx, p.config(deadAddr(t), deadAddr(t), l.Addr().String()), "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := api.NewShoalClient(conn).Version(ctx, &api.VersionRequest{})
	if err != nil || v.Version != "v9" {
		t.Fatalf("version %v %v", v, err)
	}

	// An explicit server is the only one tried.
	if _, err := Dial(ctx, p.config(l.Addr().String()), deadAddr(t)); err == nil {
		t.Fatal("dial of a dead explicit server succeeded")
	}
	// A client certificate from another CA is refused.
	other := newTestPKI(t)
	cfg := other.config(l.Addr().String())
	if conn, err := Dial(ctx, cfg, ""); err == nil {
		conn.Close()
		t.Fatal("dial with a foreign CA succeeded")
	}
}

func TestEndpoints(t *testing.T) {
	cfg := &Config{Server: "a:1", Servers: []string{"b:1", "a:1", "", "c:1"}}
	if got := strings.Join(Endpoints(cfg, ""), ","); got != "a:1,b:1,c:1" {
		t.Errorf("endpoints %s", got)
	}
	if got := strings.Join(Endpoints(cfg, "x:2"), ","); got != "x:2" {
		t.Errorf("explicit %s", got)
	}
}
