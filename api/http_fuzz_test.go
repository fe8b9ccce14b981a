package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// httpFuzzSeeds are requests to every route, right and wrong.
var httpFuzzSeeds = []struct {
	method, target, body string
}{
	{"GET", "/v1/version", ""},
	{"GET", "/v1/token", ""},
	{"POST", "/v1/token/rotate", ""},
	{"POST", "/v1/apply", httpTestManifest},
	{"POST", "/v1/apply?createOnly=true", manifestTestWeb},
	{"POST", "/v1/apply?status=1", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"status":{"phase":"Running"}}`},
	{"POST", "/v1/apply?createOnly=maybe", httpTestManifest},
	{"POST", "/v1/apply", "a: &a [x, x]\nb: &b [*a, *a]\n"},
	{"POST", "/v1/apply", `{"kind":"List","items":[{"apiVersion":"v1","kind":"Node","metadata":{"name":"n2"}}]}`},
	{"GET", "/v1/nodes", ""},
	{"GET", "/v1/nodes/n1", ""},
	{"DELETE", "/v1/nodes/n1?resourceVersion=1", ""},
	{"DELETE", "/v1/nodes/ghost", ""},
	{"GET", "/v1/pods?labelSelector=app%20in%20(web,db),!canary", ""},
	{"GET", "/v1/namespaces/default/pods?consistent=true&nodeName=n1", ""},
	{"GET", "/v1/namespaces/default/pods?watch=true&resourceVersion=3&labelSelector=app%3Dweb", ""},
	{"GET", "/v1/namespaces/default/pods?watch=1&labelSelector=a+b", ""},
	{"GET", "/v1/namespaces/default/pods/web", ""},
	{"GET", "/v1/namespaces/my%20ns/pods/a%2Fb", ""},
	{"DELETE", "/v1/namespaces/default/pods/web?resourceVersion=7", ""},
	{"DELETE", "/v1/namespaces/default/pods/web?gracePeriodSeconds=0", ""},
	{"DELETE", "/v1/namespaces/default/pods/web?gracePeriodSeconds=-3", ""},
	{"GET", "/v1/namespaces/default/nodes", ""},
	{"GET", "/v1/deployments/x", ""},
	{"PUT", "/v1/namespaces/default/services/svc", "{}"},
	{"GET", "/v1/%zz", ""},
	{"GET", "/v1//pods", ""},
	{"GET", "/", ""},
	{"OPTIONS", "*", ""},
	{"GET", "http://other/v1/version", ""},
}

// httpFuzzState is what the fake serves at the start of every run.
var httpFuzzState = []Resource{
	&Pod{Metadata: &ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}, ResourceVersion: "1"},
		Spec: &PodSpec{NodeName: "n1", Containers: []*Container{{Name: "c", Image: "busybox"}}}},
	&Node{Metadata: &ObjectMeta{Name: "n1", ResourceVersion: "1"}},
	&Service{Metadata: &ObjectMeta{Name: "svc", Namespace: "default", ResourceVersion: "1"},
		Spec: &ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []*ServicePort{{Port: 80}}}},
}

func httpFuzzFake() *httpFake {
	f := newHTTPFake()
	f.rv = 1
	for _, r := range httpFuzzState {
		r = proto.Clone(r).(Resource)
		f.objs[httpFakeKey(KindOf(r), r.GetMetadata().GetNamespace(), r.GetMetadata().GetName())] = r
	}
	// A watch sends nothing and ends at once.
	f.events = make(chan *WatchEvent)
	close(f.events)
	return f
}

// httpFuzzServer is the fake with the checks the real server makes of an
// apply before it writes anything (cluster/server.go): an object with
// metadata, defaulted and valid unless only its status is written.
// (Found by FuzzHTTPHandler, testdata/fuzz/FuzzHTTPHandler/b53f0b94e1120cdf:
// the bare fake of http_test.go panics on an object without metadata.)
type httpFuzzServer struct{ *httpFake }

func (s httpFuzzServer) Apply(ctx context.Context, req *ApplyRequest) (*ApplyResponse, error) {
	for i, o := range req.GetObjects() {
		r := o.Resource()
		if r == nil || r.GetMetadata().GetName() == "" {
			return nil, status.Errorf(codes.InvalidArgument, "object %d: metadata.name: required", i+1)
		}
		if req.GetStatus() {
			continue
		}
		Default(r)
		if err := Validate(r); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s %s: %v", KindOf(r), KeyOf(r), err)
		}
	}
	return s.httpFake.Apply(ctx, req)
}

// httpFuzzStateOf describes the fake's objects, to tell whether a request
// changed them.
func httpFuzzStateOf(f *httpFake) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.objs))
	for k, r := range f.objs {
		keys = append(keys, k+"@"+r.GetMetadata().GetResourceVersion())
	}
	sort.Strings(keys)
	return fmt.Sprintf("%v removed=%v token=%s", keys, f.removed, f.token)
}

// FuzzHTTPHandler sends arbitrary requests (method, target, body, read
// from the wire as net/http reads them) to the HTTP API over an in-memory
// backend. The handler must not panic; every answer is JSON, an error is a
// Status whose code is the response's; a refused request changes
// nothing; and what an apply answers decodes as a manifest again.
func FuzzHTTPHandler(f *testing.F) {
	for _, s := range httpFuzzSeeds {
		f.Add(s.method, s.target, []byte(s.body))
	}
	for _, s := range manifestFuzzSeeds {
		f.Add("POST", "/v1/apply", []byte(s))
	}
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: shoal\r\nContent-Length: %d\r\n\r\n", method, target, len(body))
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return // net/http refuses it before any handler sees it
		}
		req.RemoteAddr = "192.0.2.1:1234"
		fake := httpFuzzFake()
		before := httpFuzzStateOf(fake)
		rec := httptest.NewRecorder()
		NewHTTPHandler(httpFuzzServer{fake}).ServeHTTP(rec, req)
		httpFuzzCheck(t, req, rec, fake, before)
	})
}

func httpFuzzCheck(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder, fake *httpFake, before string) {
	t.Helper()
	what := fmt.Sprintf("%s %q", req.Method, req.RequestURI)
	code, out := rec.Code, rec.Body.Bytes()
	if code < 200 || code >= 500 {
		t.Fatalf("%s: status %d from a backend that never fails: %s", what, code, out)
	}
	ct := rec.Header().Get("Content-Type")
	if ct == "application/x-ndjson" {
		if code != http.StatusOK {
			t.Fatalf("%s: a watch answered %d", what, code)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
			if len(line) > 0 && !json.Valid(line) {
				t.Fatalf("%s: watch line is not JSON: %q", what, line)
			}
		}
		return
	}
	if ct != "application/json" || !json.Valid(out) {
		t.Fatalf("%s: %d answer of type %q is not JSON: %q", what, code, ct, out)
	}
	if code >= 300 {
		var st HTTPError
		if err := json.Unmarshal(out, &st); err != nil || st.Kind != "Status" || st.Code != code || st.Reason == "" || st.Message == "" {
			t.Fatalf("%s: %d error is not a Status of its code: %s", what, code, out)
		}
		if after := httpFuzzStateOf(fake); after != before {
			t.Fatalf("%s: refused with %d, yet the objects changed:\n%s\n%s", what, code, before, after)
		}
		return
	}
	if req.Method == http.MethodPost && req.URL.Path == "/v1/apply" {
		var resp struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(out, &resp); err != nil || len(resp.Items) == 0 {
			t.Fatalf("%s: apply answered %s (%v)", what, out, err)
		}
		objs, err := DecodeManifests(out)
		if err != nil {
			t.Fatalf("%s: the apply's answer does not decode as a manifest: %v\n%s", what, err, out)
		}
		if len(objs) != len(resp.Items) {
			t.Fatalf("%s: the apply's answer has %d items, decodes to %d objects", what, len(resp.Items), len(objs))
		}
	}
}

// FuzzApplyRequestProto feeds arbitrary bytes to what the gRPC API reads
// of an apply (an ApplyRequest in protobuf): unmarshalling, Default and
// Validate must not panic, an error must say where, and every object that
// passes validation must survive the JSON and YAML faces unchanged, as it
// will be served over HTTP and applied again from `shoal get -o yaml`.
func FuzzApplyRequestProto(f *testing.F) {
	for _, s := range manifestFuzzSeeds {
		objs, err := DecodeManifests([]byte(s))
		if err != nil {
			continue
		}
		req := &ApplyRequest{}
		for _, o := range objs {
			req.Objects = append(req.Objects, Wrap(o))
		}
		data, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, r := range httpFuzzState {
		data, err := proto.Marshal(&ApplyRequest{Objects: []*Object{Wrap(r)}, CreateOnly: true})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &ApplyRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			return // gRPC refuses it
		}
		for _, o := range req.GetObjects() {
			r := o.Resource()
			if r == nil {
				continue
			}
			r = proto.Clone(r).(Resource)
			Default(r)
			again := proto.Clone(r).(Resource)
			Default(again)
			if !proto.Equal(again, r) {
				t.Fatalf("Default is not idempotent:\n%v\n%v", r, again)
			}
			if err := Validate(r); err != nil {
				fe, ok := err.(FieldErrors)
				if !ok || len(fe) == 0 {
					t.Fatalf("Validate: %T %v", err, err)
				}
				for _, e := range fe {
					if e.Message == "" {
						t.Fatalf("Validate: a problem without a message at %q", e.Path)
					}
				}
				continue
			}
			// What the server would store: it must read back as itself.
			SetTypeMeta(r)
			for _, enc := range []struct {
				name    string
				marshal func(proto.Message) ([]byte, error)
			}{{"JSON", MarshalJSON}, {"YAML", MarshalYAML}} {
				text, err := enc.marshal(r)
				if err != nil {
					t.Fatalf("Marshal%s of a valid object: %v\n%v", enc.name, err, r)
				}
				back, err := DecodeManifests(text)
				if err != nil {
					t.Fatalf("the %s of a valid object does not decode: %v\n%s", enc.name, err, text)
				}
				if len(back) != 1 || !proto.Equal(back[0], r) {
					t.Fatalf("%s round trip differs:\n%s\n%v", enc.name, text, back)
				}
			}
		}
	})
}
