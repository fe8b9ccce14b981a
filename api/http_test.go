package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// httpFake is a map-backed ShoalServer: just enough behaviour to test the
// HTTP mapping.
type httpFake struct {
	UnimplementedShoalServer

	mu       sync.Mutex
	rv       int
	objs     map[string]Resource // kind/namespace/name
	err      error               // returned by every call when set
	lastList *ListRequest
	lastGet  *GetRequest
	removed  []string
	token    string

	events   chan *WatchEvent // what Watch streams
	watchErr error            // what Watch returns after events is closed
	lastWat  *WatchRequest
	lastPeer *peer.Peer
}

func newHTTPFake() *httpFake {
	return &httpFake{objs: map[string]Resource{}, token: "SHOAL-1-abc-def"}
}

func httpFakeKey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

func (f *httpFake) Apply(_ context.Context, req *ApplyRequest) (*ApplyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.rv++
	resp := &ApplyResponse{}
	for _, o := range req.GetObjects() {
		r := proto.Clone(o.Resource()).(Resource)
		m := r.GetMetadata()
		if m.Namespace == "" && MustKind(KindOf(r)).Namespaced {
			m.Namespace = DefaultNamespace
		}
		key := httpFakeKey(KindOf(r), m.Namespace, m.Name)
		if _, ok := f.objs[key]; ok && req.CreateOnly {
			return nil, status.Errorf(codes.AlreadyExists, "%s %q already exists", KindOf(r), m.Name)
		}
		m.ResourceVersion = strconv.Itoa(f.rv)
		m.Generation = 1
		f.objs[key] = r
		resp.Objects = append(resp.Objects, Wrap(proto.Clone(r).(Resource)))
	}
	return resp, nil
}

func (f *httpFake) Get(_ context.Context, req *GetRequest) (*Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastGet = req
	if f.err != nil {
		return nil, f.err
	}
	r, ok := f.objs[httpFakeKey(req.Kind, req.Namespace, req.Name)]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s %q not found", strings.ToLower(req.Kind)+"s", req.Name)
	}
	return Wrap(r), nil
}

func (f *httpFake) List(_ context.Context, req *ListRequest) (*ListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastList = req
	if f.err != nil {
		return nil, f.err
	}
	resp := &ListResponse{ResourceVersion: strconv.Itoa(f.rv)}
	keys := make([]string, 0, len(f.objs))
	for k := range f.objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r := f.objs[k]
		if KindOf(r) != req.Kind || (req.Namespace != "" && r.GetMetadata().Namespace != req.Namespace) {
			continue
		}
		resp.Items = append(resp.Items, Wrap(r))
	}
	return resp, nil
}

func (f *httpFake) Delete(_ context.Context, req *DeleteRequest) (*DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	key := httpFakeKey(req.Kind, req.Namespace, req.Name)
	r, ok := f.objs[key]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%q not found", req.Name)
	}
	if req.ResourceVersion != "" && req.ResourceVersion != r.GetMetadata().ResourceVersion {
		return nil, status.Errorf(codes.Aborted, "%q: resourceVersion %s is not %s", req.Name, r.GetMetadata().ResourceVersion, req.ResourceVersion)
	}
	delete(f.objs, key)
	return &DeleteResponse{Object: Wrap(r)}, nil
}

func (f *httpFake) Watch(req *WatchRequest, stream Shoal_WatchServer) error {
	f.mu.Lock()
	f.lastWat = req
	events := f.events
	f.mu.Unlock()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				f.mu.Lock()
				defer f.mu.Unlock()
				return f.watchErr
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (f *httpFake) Token(_ context.Context, req *TokenRequest) (*TokenResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if req.Rotate {
		f.token = "SHOAL-1-abc-rotated"
	}
	return &TokenResponse{Token: f.token, Endpoints: []string{"10.0.0.1:7443"}}, nil
}

func (f *httpFake) RemoveNode(_ context.Context, req *RemoveNodeRequest) (*RemoveNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.removed = append(f.removed, req.Name)
	delete(f.objs, httpFakeKey("Node", "", req.Name))
	return &RemoveNodeResponse{}, nil
}

func (f *httpFake) Version(ctx context.Context, _ *VersionRequest) (*VersionResponse, error) {
	f.mu.Lock()
	f.lastPeer, _ = peer.FromContext(ctx)
	f.mu.Unlock()
	return &VersionResponse{Version: "1.2.3", Node: "n1", Leader: "n2"}, nil
}

func httpDo(t *testing.T, h http.Handler, method, target, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

const httpTestManifest = `apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web}
spec:
  containers:
  - name: c
    image: busybox
---
{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
`

func TestHTTPApplyGetListDelete(t *testing.T) {
	f := newHTTPFake()
	h := NewHTTPHandler(f)

	code, body := httpDo(t, h, "POST", "/v1/apply", httpTestManifest)
	if code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	var applied struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &applied); err != nil {
		t.Fatal(err)
	}
	if len(applied.Items) != 2 || applied.Items[0]["kind"] != "Pod" || applied.Items[1]["kind"] != "Node" {
		t.Fatalf("apply items: %s", body)
	}
	if !strings.HasPrefix(body, `{"items":[{`) || !strings.HasSuffix(body, `}]}`) {
		t.Fatalf("apply body shape: %s", body)
	}

	// The list shape is exactly {"items":[...],"resourceVersion":"N"}.
	code, body = httpDo(t, h, "GET", "/v1/namespaces/default/pods?labelSelector=app%3Dweb&consistent=true&nodeName=n1", "")
	if code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	pod, _ := f.objs["Pod/default/web-1"].(*Pod)
	podJSON, _ := MarshalJSON(pod)
	want := `{"items":[` + string(podJSON) + `],"resourceVersion":"1"}`
	if body != want {
		t.Fatalf("list body\n got %s\nwant %s", body, want)
	}
	if l := f.lastList; l.Kind != "Pod" || l.Namespace != "default" || l.LabelSelector != "app=web" || !l.Consistent || l.NodeName != "n1" {
		t.Fatalf("list request: %v", l)
	}

	// Every namespace; an empty list is [] and not null.
	if code, body = httpDo(t, h, "GET", "/v1/pods", ""); code != 200 || f.lastList.Namespace != "" || !strings.Contains(body, `"web-1"`) {
		t.Fatalf("list all: %d %s", code, body)
	}
	if code, body = httpDo(t, h, "GET", "/v1/namespaces/other/services", ""); code != 200 || body != `{"items":[],"resourceVersion":"1"}` {
		t.Fatalf("empty list: %d %s", code, body)
	}

	// Get of a namespaced object and of a node.
	code, body = httpDo(t, h, "GET", "/v1/namespaces/default/pods/web-1?consistent=true", "")
	if code != 200 || body != string(podJSON) || !f.lastGet.Consistent {
		t.Fatalf("get: %d %s", code, body)
	}
	if code, body = httpDo(t, h, "GET", "/v1/nodes/n1", ""); code != 200 || !strings.Contains(body, `"kind":"Node"`) {
		t.Fatalf("get node: %d %s", code, body)
	}

	// Delete with a stale precondition, then for real.
	code, body = httpDo(t, h, "DELETE", "/v1/namespaces/default/pods/web-1?resourceVersion=99", "")
	if code != 409 || !strings.Contains(body, `"reason":"Conflict"`) {
		t.Fatalf("delete stale: %d %s", code, body)
	}
	code, body = httpDo(t, h, "DELETE", "/v1/namespaces/default/pods/web-1?resourceVersion=1", "")
	if code != 200 || body != string(podJSON) {
		t.Fatalf("delete: %d %s", code, body)
	}
	code, body = httpDo(t, h, "GET", "/v1/namespaces/default/pods/web-1", "")
	if code != 404 || body != `{"kind":"Status","code":404,"reason":"NotFound","message":"pods \"web-1\" not found"}` {
		t.Fatalf("get deleted: %d %s", code, body)
	}

	// Deleting a node removes it from the cluster and shows it as it was.
	code, body = httpDo(t, h, "DELETE", "/v1/nodes/n1", "")
	if code != 200 || !strings.Contains(body, `"name":"n1"`) || len(f.removed) != 1 || f.removed[0] != "n1" {
		t.Fatalf("remove node: %d %s %v", code, body, f.removed)
	}
}

func TestHTTPApplyErrors(t *testing.T) {
	f := newHTTPFake()
	h := NewHTTPHandler(f)

	code, body := httpDo(t, h, "POST", "/v1/apply", "kind: Bogus\nmetadata: {name: x}\n")
	if code != 400 || !strings.Contains(body, `"reason":"BadRequest"`) || !strings.Contains(body, "kind") {
		t.Fatalf("bad manifest: %d %s", code, body)
	}
	if code, body = httpDo(t, h, "POST", "/v1/apply", "  \n"); code != 400 {
		t.Fatalf("empty manifest: %d %s", code, body)
	}
	if code, body = httpDo(t, h, "POST", "/v1/apply?createOnly=maybe", httpTestManifest); code != 400 || !strings.Contains(body, "createOnly") {
		t.Fatalf("bad bool: %d %s", code, body)
	}
	if code, body = httpDo(t, h, "POST", "/v1/apply?createOnly=true", httpTestManifest); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body = httpDo(t, h, "POST", "/v1/apply?createOnly=true", httpTestManifest)
	if code != 409 || !strings.Contains(body, `"reason":"AlreadyExists"`) {
		t.Fatalf("create again: %d %s", code, body)
	}

	big := strings.Repeat("#", MaxRequestBody+1)
	code, body = httpDo(t, h, "POST", "/v1/apply", big)
	if code != 413 || !strings.Contains(body, "8 MiB") || !strings.Contains(body, `"reason":"RequestEntityTooLarge"`) {
		t.Fatalf("too large: %d %.200s", code, body)
	}
}

func TestHTTPErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		code   codes.Code
		status int
		reason string
	}{
		{codes.InvalidArgument, 400, "BadRequest"},
		{codes.NotFound, 404, "NotFound"},
		{codes.AlreadyExists, 409, "AlreadyExists"},
		{codes.Aborted, 409, "Conflict"},
		{codes.FailedPrecondition, 412, "PreconditionFailed"},
		{codes.Unauthenticated, 401, "Unauthorized"},
		{codes.PermissionDenied, 403, "Forbidden"},
		{codes.Unavailable, 503, "ServiceUnavailable"},
		{codes.DeadlineExceeded, 504, "Timeout"},
		{codes.Internal, 500, "InternalError"},
		{codes.Unknown, 500, "InternalError"},
	} {
		f := newHTTPFake()
		f.err = status.Error(tc.code, "spec.replicas: boom")
		code, body := httpDo(t, NewHTTPHandler(f), "GET", "/v1/namespaces/default/deployments", "")
		want := `{"kind":"Status","code":` + strconv.Itoa(tc.status) + `,"reason":"` + tc.reason + `","message":"spec.replicas: boom"}`
		if code != tc.status || body != want {
			t.Errorf("%v: got %d %s, want %d %s", tc.code, code, body, tc.status, want)
		}
	}
}

func TestHTTPRouting(t *testing.T) {
	h := NewHTTPHandler(newHTTPFake())
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/", 404},
		{"GET", "/v2/pods", 404},
		{"GET", "/v1/", 404},
		{"GET", "/v1/widgets", 404},
		{"GET", "/v1/pods/x", 404}, // namespaced: needs /namespaces/
		{"GET", "/v1/namespaces/default/nodes", 404},
		{"GET", "/v1/namespaces/default/pods/x/y", 404},
		{"GET", "/v1/namespaces/default/pods/", 404},
		{"GET", "/v1/apply", 405},
		{"PUT", "/v1/namespaces/default/pods/x", 405},
		{"POST", "/v1/pods", 405},
		{"DELETE", "/v1/namespaces/default/pods", 405},
		{"POST", "/v1/version", 405},
		{"GET", "/v1/token/rotate", 405},
		{"GET", "/v1/nodes", 200},
		{"GET", "/v1/deployments", 200},
		{"GET", "/v1/version", 200},
		{"GET", "/v1/token", 200},
	} {
		code, body := httpDo(t, h, tc.method, tc.path, "")
		if code != tc.code {
			t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, code, tc.code, body)
			continue
		}
		if code != 200 {
			var st HTTPError
			if err := json.Unmarshal([]byte(body), &st); err != nil || st.Kind != "Status" || st.Code != code || st.Message == "" {
				t.Errorf("%s %s: error body %s", tc.method, tc.path, body)
			}
		}
	}
}

func TestHTTPTokenVersion(t *testing.T) {
	f := newHTTPFake()
	h := NewHTTPHandler(f)
	if code, body := httpDo(t, h, "GET", "/v1/token", ""); code != 200 || body != `{"token":"SHOAL-1-abc-def","endpoints":["10.0.0.1:7443"]}` {
		t.Fatalf("token: %d %s", code, body)
	}
	if code, body := httpDo(t, h, "POST", "/v1/token/rotate", ""); code != 200 || body != `{"token":"SHOAL-1-abc-rotated","endpoints":["10.0.0.1:7443"]}` {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if code, body := httpDo(t, h, "GET", "/v1/version", ""); code != 200 || body != `{"version":"1.2.3","node":"n1","leader":"n2"}` {
		t.Fatalf("version: %d %s", code, body)
	}
}

func TestHTTPWatch(t *testing.T) {
	f := newHTTPFake()
	f.events = make(chan *WatchEvent)
	srv := httptest.NewServer(NewHTTPHandler(f))
	defer srv.Close()

	if resp, err := http.Get(srv.URL + "/v1/namespaces/default/pods?watch=true&allowWatchBookmarks=maybe"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("allowWatchBookmarks=maybe: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, err := http.Get(srv.URL + "/v1/namespaces/default/pods?watch=true&resourceVersion=5&labelSelector=app%3Dweb&allowWatchBookmarks=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("watch: %d", resp.StatusCode)
	}
	lines := bufio.NewReader(resp.Body)
	pod := func(name, app string) *Object {
		return Wrap(&Pod{Metadata: &ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": app}, ResourceVersion: "6"}})
	}
	// Each event arrives on its own, flushed: the test reads it before
	// sending the next.
	f.events <- &WatchEvent{Type: "ADDED", Object: pod("a", "web"), ResourceVersion: "6"}
	line, err := lines.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"default","labels":{"app":"web"},"resourceVersion":"6"}},"resourceVersion":"6"}` + "\n"
	if line != want {
		t.Fatalf("event\n got %s\nwant %s", line, want)
	}
	if w := f.lastWat; w.Kind != "Pod" || w.Namespace != "default" || w.ResourceVersion != "5" || !w.AllowBookmarks {
		t.Fatalf("watch request %v", w)
	}
	f.events <- &WatchEvent{Type: "ADDED", Object: pod("b", "db"), ResourceVersion: "7"} // filtered out
	f.events <- &WatchEvent{Type: "DELETED", Object: pod("a", "web"), ResourceVersion: "8"}
	if line, _ = lines.ReadString('\n'); !strings.HasPrefix(line, `{"type":"DELETED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"`) {
		t.Fatalf("second event %s", line)
	}
	f.events <- &WatchEvent{Type: "BOOKMARK", ResourceVersion: "9"}
	if line, _ = lines.ReadString('\n'); line != `{"type":"BOOKMARK","resourceVersion":"9"}`+"\n" {
		t.Fatalf("bookmark %s", line)
	}
	// An error after the stream began arrives as an ERROR event.
	f.mu.Lock()
	f.watchErr = status.Error(codes.Unavailable, "no leader")
	f.mu.Unlock()
	close(f.events)
	rest, _ := io.ReadAll(lines)
	if string(rest) != `{"type":"ERROR","object":{"kind":"Status","code":503,"reason":"ServiceUnavailable","message":"no leader"}}`+"\n" {
		t.Fatalf("error event %s", rest)
	}
}

func TestHTTPWatchClientGone(t *testing.T) {
	f := newHTTPFake()
	f.events = make(chan *WatchEvent)
	done := make(chan struct{})
	h := NewHTTPHandler(f)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/v1/nodes?watch=true", nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	go func() {
		h.ServeHTTP(rec, req)
		close(done)
	}()
	f.events <- &WatchEvent{Type: "ADDED", Object: Wrap(&Node{Metadata: &ObjectMeta{Name: "n1"}}), ResourceVersion: "1"}
	// The fake takes the next event only once Send of the first returned:
	// then the first is written, and the client may go.
	f.events <- &WatchEvent{Type: "ADDED", Object: Wrap(&Node{Metadata: &ObjectMeta{Name: "n2"}}), ResourceVersion: "2"}
	cancel()
	<-done
	if !rec.Flushed || !strings.Contains(rec.Body.String(), `"kind":"Node"`) || strings.Contains(rec.Body.String(), "ERROR") {
		t.Fatalf("body %q flushed %v", rec.Body.String(), rec.Flushed)
	}
}

func TestHTTPParseSelector(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front", "env": "prod"}
	for _, tc := range []struct {
		sel   string
		match bool
		bad   bool
	}{
		{"", true, false},
		{"app=web", true, false},
		{"app==web", true, false},
		{"app = web , tier=front", true, false},
		{"app=db", false, false},
		{"app!=db", true, false},
		{"missing!=x", true, false},
		{"app", true, false},
		{"!app", false, false},
		{"!canary", true, false},
		{"env in (prod, staging)", true, false},
		{"env notin (prod,staging),app=web", false, false},
		{"missing notin (a)", true, false},
		{"missing in (a)", false, false},
		{"app=web,", false, true},
		{"env in (a", false, true},
		{"env within (a)", false, true},
		{"a b=c", false, true},
	} {
		m, err := ParseSelector(tc.sel)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error", tc.sel)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.sel, err)
			continue
		}
		if got := m == nil || m(labels); got != tc.match {
			t.Errorf("%q: match %v, want %v", tc.sel, got, tc.match)
		}
	}
}

func TestHTTPMarshalDoesNotWriteSharedObjects(t *testing.T) {
	p := &Pod{Metadata: &ObjectMeta{Name: "x"}}
	data, err := httpMarshalResource(p)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != "" || !strings.Contains(string(data), `"kind":"Pod"`) {
		t.Fatalf("kind %q, data %s", p.Kind, data)
	}
}

func TestHTTPCallerIsAPeer(t *testing.T) {
	f := newHTTPFake()
	h := NewHTTPHandler(f)
	req := httptest.NewRequest("GET", "https://shoal/v1/version", nil) // with a TLS state
	req.RemoteAddr = "192.0.2.7:5555"
	h.ServeHTTP(httptest.NewRecorder(), req)
	p := f.lastPeer
	if p == nil || p.Addr.String() != "192.0.2.7:5555" {
		t.Fatalf("peer %v", p)
	}
	if _, ok := p.AuthInfo.(credentials.TLSInfo); !ok {
		t.Fatalf("auth info %T", p.AuthInfo)
	}
	// Plain HTTP: a peer without TLS.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/version", nil))
	if f.lastPeer == nil || f.lastPeer.AuthInfo != nil {
		t.Fatalf("peer %v", f.lastPeer)
	}
}

func TestHTTPEscapedName(t *testing.T) {
	f := newHTTPFake()
	code, _ := httpDo(t, NewHTTPHandler(f), "GET", "/v1/namespaces/my%20ns/pods/a%2Fb", "")
	if code != 404 || f.lastGet == nil || f.lastGet.Name != "a/b" || f.lastGet.Namespace != "my ns" {
		t.Fatalf("%d %v", code, f.lastGet)
	}
}

// Manifests are decoded within a budget of bytes at once: while it is
// taken, an apply waits, and after the wait is told to retry (429 with
// Retry-After) with nothing written; a small manifest fits in what a large
// one leaves; once the budget is back the same apply succeeds.
func TestHTTPApplyDecodeBudget(t *testing.T) {
	f := newHTTPFake()
	h := NewHTTPHandler(f).(*httpAPI)
	h.decode = newDecodeBudget(MaxDecodingBytes, 100*time.Millisecond)
	ctx := context.Background()
	// Others decode all but 100 bytes' worth: this manifest is larger.
	if err := h.decode.sem.Acquire(ctx, MaxDecodingBytes-100); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/v1/apply", strings.NewReader(httpTestManifest))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body := rec.Body.String()
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(body, `"reason":"TooManyRequests"`) ||
		!strings.Contains(body, "retry") || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("apply with the budget taken: %d %v %s", rec.Code, rec.Header(), body)
	}
	if len(f.objs) != 0 {
		t.Fatalf("a refused apply wrote %d objects", len(f.objs))
	}
	small := `{"apiVersion":"v1","kind":"Node","metadata":{"name":"n"}}`
	if len(small) > 100 {
		t.Fatalf("the small manifest is %d bytes", len(small))
	}
	if code, body := httpDo(t, h, "POST", "/v1/apply", small); code != 200 {
		t.Fatalf("a manifest that fits in what is left: %d %s", code, body)
	}
	h.decode.sem.Release(MaxDecodingBytes - 100)
	if code, body := httpDo(t, h, "POST", "/v1/apply", httpTestManifest); code != 200 {
		t.Fatalf("apply with the budget back: %d %s", code, body)
	}
	// Every share went back.
	if !h.decode.sem.TryAcquire(MaxDecodingBytes) {
		t.Fatal("the budget is not whole after the applies")
	}
}
