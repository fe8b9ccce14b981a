package api

// The HTTP/JSON face of the Shoal service. The API port serves gRPC and this
// handler on one TLS listener: the server routes application/grpc requests to
// gRPC and every other request here, after authenticating the caller.
//
// Routes (JSON in and out, kubectl-like):
//
//	POST   /v1/apply                               manifest (YAML or JSON, several documents) → {"items":[...]}
//	GET    /v1/{plural}                            list nodes, or a namespaced kind in every namespace
//	GET    /v1/namespaces/{ns}/{plural}            list in one namespace
//	GET    /v1/namespaces/{ns}/{plural}/{name}     get
//	GET    /v1/nodes/{name}                        get a node
//	DELETE /v1/namespaces/{ns}/{plural}/{name}     delete → the deleted object
//	DELETE /v1/nodes/{name}                        remove a node from the cluster
//	GET    /v1/token, POST /v1/token/rotate        the join token
//	GET    /v1/version
//
// A list with watch=true streams newline-delimited JSON events instead.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// MaxRequestBody is the largest request body the HTTP API reads.
const MaxRequestBody = 8 << 20

// HTTPError is the body of every HTTP API error response, shaped like a
// Kubernetes Status: {"kind":"Status","code":409,"reason":"Conflict","message":"..."}.
type HTTPError struct {
	Kind    string `json:"kind"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Error prints the error as kubectl does: Error from server (Reason): message.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("Error from server (%s): %s", e.Reason, e.Message)
}

// HTTPStatus maps a gRPC status code to the HTTP status code and the
// Kubernetes-style reason the HTTP API answers with.
func HTTPStatus(c codes.Code) (int, string) {
	switch c {
	case codes.OK:
		return http.StatusOK, "Success"
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest, "BadRequest"
	case codes.NotFound:
		return http.StatusNotFound, "NotFound"
	case codes.AlreadyExists:
		return http.StatusConflict, "AlreadyExists"
	case codes.Aborted:
		return http.StatusConflict, "Conflict"
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed, "PreconditionFailed"
	case codes.Unauthenticated:
		return http.StatusUnauthorized, "Unauthorized"
	case codes.PermissionDenied:
		return http.StatusForbidden, "Forbidden"
	case codes.Unavailable:
		return http.StatusServiceUnavailable, "ServiceUnavailable"
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout, "Timeout"
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests, "TooManyRequests"
	case codes.Unimplemented:
		return http.StatusNotImplemented, "NotImplemented"
	}
	return http.StatusInternalServerError, "InternalError"
}

// HTTPErrorFrom turns an error returned by a ShoalServer method into the
// HTTP API's error body.
func HTTPErrorFrom(err error) *HTTPError {
	var he *HTTPError
	if errors.As(err, &he) {
		return he
	}
	var st *status.Status
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		st = status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		st = status.New(codes.Canceled, err.Error())
	default:
		st, _ = status.FromError(err)
	}
	code, reason := HTTPStatus(st.Code())
	return &HTTPError{Kind: "Status", Code: code, Reason: reason, Message: st.Message()}
}

// NewHTTPHandler returns the HTTP/JSON mapping of the Shoal service. The
// ShoalServer's methods get a context that carries the caller as a gRPC
// peer (peer.FromContext), with the TLS state of the HTTP connection.
func NewHTTPHandler(s ShoalServer) http.Handler {
	return &httpAPI{s: s, decode: newDecodeBudget(MaxDecodingBytes, decodeQueueWait)}
}

type httpAPI struct {
	s      ShoalServer
	decode *decodeBudget
}

func (h *httpAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = httpWithPeer(r)
	// Split the escaped path, so that a %2F inside a name stays in it.
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/")
	if !ok {
		httpNotFound(w, r)
		return
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if s == "" || err != nil {
			httpNotFound(w, r)
			return
		}
		segs[i] = u
	}
	switch {
	case len(segs) == 1 && segs[0] == "apply":
		if httpMethod(w, r, http.MethodPost) {
			h.apply(w, r)
		}
	case len(segs) == 1 && segs[0] == "version":
		if httpMethod(w, r, http.MethodGet) {
			h.version(w, r)
		}
	case len(segs) == 1 && segs[0] == "token":
		if httpMethod(w, r, http.MethodGet) {
			h.token(w, r, false)
		}
	case len(segs) == 2 && segs[0] == "token" && segs[1] == "rotate":
		if httpMethod(w, r, http.MethodPost) {
			h.token(w, r, true)
		}
	case len(segs) == 1:
		// A cluster-wide list: nodes, or a namespaced kind in every namespace.
		k, ok := httpKind(w, r, segs[0])
		if ok && httpMethod(w, r, http.MethodGet) {
			h.list(w, r, k, "")
		}
	case len(segs) == 2:
		k, ok := httpKind(w, r, segs[0])
		if !ok {
			return
		}
		if k.Namespaced {
			httpWriteError(w, r, &HTTPError{Kind: "Status", Code: http.StatusNotFound, Reason: "NotFound",
				Message: fmt.Sprintf("%s are namespaced: use /v1/namespaces/{namespace}/%s/%s", k.Plural, k.Plural, segs[1])})
			return
		}
		if !httpMethod(w, r, http.MethodGet, http.MethodDelete) {
			return
		}
		if r.Method == http.MethodGet {
			h.get(w, r, k, "", segs[1])
		} else if k.Kind == "Node" {
			h.removeNode(w, r, segs[1])
		} else {
			h.delete(w, r, k, "", segs[1])
		}
	case (len(segs) == 3 || len(segs) == 4) && segs[0] == "namespaces":
		k, ok := httpKind(w, r, segs[2])
		if !ok {
			return
		}
		if !k.Namespaced {
			httpWriteError(w, r, &HTTPError{Kind: "Status", Code: http.StatusNotFound, Reason: "NotFound",
				Message: fmt.Sprintf("%s are not namespaced: use /v1/%s", k.Plural, k.Plural)})
			return
		}
		ns := segs[1]
		if len(segs) == 3 {
			if httpMethod(w, r, http.MethodGet) {
				h.list(w, r, k, ns)
			}
			return
		}
		if !httpMethod(w, r, http.MethodGet, http.MethodDelete) {
			return
		}
		if r.Method == http.MethodGet {
			h.get(w, r, k, ns, segs[3])
		} else {
			h.delete(w, r, k, ns, segs[3])
		}
	default:
		httpNotFound(w, r)
	}
}

// httpWithPeer gives the request's context the gRPC peer of the caller
// (address and TLS state, with its verified client certificate chains), as
// gRPC gives it to a call, so that the ShoalServer finds out who calls the
// same way (peer.FromContext) over both faces.
func httpWithPeer(r *http.Request) *http.Request {
	if _, ok := peer.FromContext(r.Context()); ok {
		return r
	}
	p := &peer.Peer{Addr: httpAddr(r.RemoteAddr)}
	if r.TLS != nil {
		p.AuthInfo = credentials.TLSInfo{
			State:          *r.TLS,
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		}
	}
	return r.WithContext(peer.NewContext(r.Context(), p))
}

// httpAddr is a request's remote address as a net.Addr.
type httpAddr string

func (a httpAddr) Network() string { return "tcp" }
func (a httpAddr) String() string  { return string(a) }

// apply: POST /v1/apply.
func (h *httpAPI) apply(w http.ResponseWriter, r *http.Request) {
	createOnly, err := httpBoolParam(r, "createOnly")
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	statusOnly, err := httpBoolParam(r, "status")
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	tooLarge := func(size string) {
		httpWriteError(w, r, &HTTPError{Kind: "Status", Code: http.StatusRequestEntityTooLarge, Reason: "RequestEntityTooLarge",
			Message: fmt.Sprintf("request body too large: %s %s sent %s, the limit is %d MiB (%d bytes); split the manifest", r.Method, r.URL.Path, size, MaxRequestBody>>20, MaxRequestBody)})
	}
	if r.ContentLength > MaxRequestBody {
		// Refused before reading a byte of it.
		tooLarge(fmt.Sprintf("%d bytes", r.ContentLength))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(fmt.Sprintf("more than %d bytes", mbe.Limit))
			return
		}
		httpWriteError(w, r, httpBadRequest("read request body: %v", err))
		return
	}
	// Decoding takes many times the body's size: many large manifests at
	// once wait their turn rather than exhaust the memory. (The read is
	// not counted: a slow client must not hold a share while it sends.)
	release, err := h.decode.acquire(r.Context(), int64(len(body)))
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	objs, err := DecodeManifests(body)
	release()
	if err != nil {
		httpWriteError(w, r, httpBadRequest("%s", err.Error()))
		return
	}
	if len(objs) == 0 {
		httpWriteError(w, r, httpBadRequest("no objects in the request body"))
		return
	}
	req := &ApplyRequest{CreateOnly: createOnly, Status: statusOnly}
	for _, o := range objs {
		req.Objects = append(req.Objects, Wrap(o))
	}
	resp, err := h.s.Apply(r.Context(), req)
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	items, err := httpMarshalObjects(resp.GetObjects())
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	var b bytes.Buffer
	b.WriteString(`{"items":`)
	b.Write(items)
	if len(resp.GetFailures()) > 0 {
		// Status writes succeed or fail one by one.
		failures, err := json.Marshal(resp.GetFailures())
		if err != nil {
			httpWriteError(w, r, err)
			return
		}
		b.WriteString(`,"failures":`)
		b.Write(failures)
	}
	b.WriteString(`}`)
	httpWriteJSON(w, http.StatusOK, b.Bytes())
}

// list: GET on a collection, or a watch when watch=true.
func (h *httpAPI) list(w http.ResponseWriter, r *http.Request, k KindInfo, ns string) {
	q := r.URL.Query()
	watch, err := httpBoolParam(r, "watch")
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	if watch {
		h.watch(w, r, k, ns)
		return
	}
	consistent, err := httpBoolParam(r, "consistent")
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	resp, err := h.s.List(r.Context(), &ListRequest{
		Kind:          k.Kind,
		Namespace:     ns,
		LabelSelector: q.Get("labelSelector"),
		Consistent:    consistent,
		NodeName:      q.Get("nodeName"),
	})
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	items, err := httpMarshalObjects(resp.GetItems())
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	rv, _ := json.Marshal(resp.GetResourceVersion())
	var b bytes.Buffer
	b.WriteString(`{"items":`)
	b.Write(items)
	b.WriteString(`,"resourceVersion":`)
	b.Write(rv)
	b.WriteString(`}`)
	httpWriteJSON(w, http.StatusOK, b.Bytes())
}

// get: GET on an object.
func (h *httpAPI) get(w http.ResponseWriter, r *http.Request, k KindInfo, ns, name string) {
	consistent, err := httpBoolParam(r, "consistent")
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	obj, err := h.s.Get(r.Context(), &GetRequest{Kind: k.Kind, Namespace: ns, Name: name, Consistent: consistent})
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	h.writeObject(w, r, obj)
}

// delete: DELETE on an object, with an optional resourceVersion
// precondition and, for pods, gracePeriodSeconds (0: at once).
func (h *httpAPI) delete(w http.ResponseWriter, r *http.Request, k KindInfo, ns, name string) {
	req := &DeleteRequest{
		Kind:            k.Kind,
		Namespace:       ns,
		Name:            name,
		ResourceVersion: r.URL.Query().Get("resourceVersion"),
	}
	if v := r.URL.Query().Get("gracePeriodSeconds"); v != "" {
		g, err := strconv.ParseInt(v, 10, 64)
		if err != nil || g < 0 {
			httpWriteError(w, r, status.Errorf(codes.InvalidArgument, "gracePeriodSeconds: want a number of seconds, 0 or more, got %q", v))
			return
		}
		req.GracePeriodSeconds = &g
	}
	resp, err := h.s.Delete(r.Context(), req)
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	h.writeObject(w, r, resp.GetObject())
}

// removeNode: DELETE /v1/nodes/{name} takes the node out of the cluster
// (raft and gossip membership included) and answers with the node object as
// it was before.
func (h *httpAPI) removeNode(w http.ResponseWriter, r *http.Request, name string) {
	before, getErr := h.s.Get(r.Context(), &GetRequest{Kind: "Node", Name: name})
	if getErr != nil && status.Code(getErr) != codes.NotFound {
		httpWriteError(w, r, getErr)
		return
	}
	if rv := r.URL.Query().Get("resourceVersion"); rv != "" && getErr == nil {
		if cur := before.Resource().GetMetadata().GetResourceVersion(); cur != rv {
			httpWriteError(w, r, status.Errorf(codes.Aborted,
				"node %q: the object has been modified (resourceVersion %s, precondition %s)", name, cur, rv))
			return
		}
	}
	if _, err := h.s.RemoveNode(r.Context(), &RemoveNodeRequest{Name: name}); err != nil {
		httpWriteError(w, r, err)
		return
	}
	if getErr == nil && before.Resource() != nil {
		h.writeObject(w, r, before)
		return
	}
	// A member without a node object: nothing to show but the success.
	body, _ := json.Marshal(struct {
		Kind    string `json:"kind"`
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Message string `json:"message"`
	}{"Status", http.StatusOK, "Success", fmt.Sprintf("node %q removed", name)})
	httpWriteJSON(w, http.StatusOK, body)
}

// token: GET /v1/token and POST /v1/token/rotate.
func (h *httpAPI) token(w http.ResponseWriter, r *http.Request, rotate bool) {
	resp, err := h.s.Token(r.Context(), &TokenRequest{Rotate: rotate})
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	endpoints := resp.GetEndpoints()
	if endpoints == nil {
		endpoints = []string{}
	}
	body, err := json.Marshal(struct {
		Token     string   `json:"token"`
		Endpoints []string `json:"endpoints"`
	}{resp.GetToken(), endpoints})
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	httpWriteJSON(w, http.StatusOK, body)
}

// version: GET /v1/version.
func (h *httpAPI) version(w http.ResponseWriter, r *http.Request) {
	resp, err := h.s.Version(r.Context(), &VersionRequest{})
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	body, err := json.Marshal(struct {
		Version string `json:"version"`
		Node    string `json:"node"`
		Leader  string `json:"leader"`
	}{resp.GetVersion(), resp.GetNode(), resp.GetLeader()})
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	httpWriteJSON(w, http.StatusOK, body)
}

// watch: GET on a collection with watch=true. The answer is a stream of
// newline-delimited JSON events, each flushed as it is sent, until the
// client goes away or the server ends the watch. An error after the stream
// has begun is sent as an event of type ERROR whose object is the Status.
func (h *httpAPI) watch(w http.ResponseWriter, r *http.Request, k KindInfo, ns string) {
	q := r.URL.Query()
	match, err := ParseSelector(q.Get("labelSelector"))
	if err != nil {
		httpWriteError(w, r, httpBadRequest("labelSelector: %v", err))
		return
	}
	bookmarks, err := httpBoolParam(r, "allowWatchBookmarks")
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	// A watch lives longer than any write timeout the server may set.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		slog.Debug("http api: watch: flush", "err", err)
	}
	stream := &httpWatchStream{ctx: r.Context(), w: w, rc: rc, match: match}
	err = h.s.Watch(&WatchRequest{
		Kind:            k.Kind,
		Namespace:       ns,
		ResourceVersion: q.Get("resourceVersion"),
		NodeName:        q.Get("nodeName"),
		AllowBookmarks:  bookmarks,
	}, stream)
	if err == nil || r.Context().Err() != nil || stream.broken {
		return
	}
	he := HTTPErrorFrom(err)
	st, _ := json.Marshal(he)
	line := append([]byte(`{"type":"ERROR","object":`), st...)
	line = append(line, "}\n"...)
	if _, err := w.Write(line); err == nil {
		_ = rc.Flush()
	}
}

// httpWatchStream is the Shoal_WatchServer of an HTTP watch: each event is
// written as one line of JSON and flushed.
type httpWatchStream struct {
	ctx    context.Context
	w      io.Writer
	rc     *http.ResponseController
	match  func(map[string]string) bool
	broken bool // a write failed: the client is gone
}

var _ Shoal_WatchServer = (*httpWatchStream)(nil)

func (s *httpWatchStream) Send(ev *WatchEvent) error {
	if err := s.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if res := ev.GetObject().Resource(); res != nil && s.match != nil && !s.match(res.GetMetadata().GetLabels()) {
		return nil
	}
	line, err := httpEncodeWatchEvent(ev)
	if err != nil {
		return status.Errorf(codes.Internal, "encode watch event: %v", err)
	}
	if _, err := s.w.Write(line); err != nil {
		s.broken = true
		return status.Errorf(codes.Unavailable, "watch: client gone: %v", err)
	}
	if err := s.rc.Flush(); err != nil {
		s.broken = true
		return status.Errorf(codes.Unavailable, "watch: client gone: %v", err)
	}
	return nil
}

func (s *httpWatchStream) SendMsg(m any) error {
	ev, ok := m.(*WatchEvent)
	if !ok {
		return status.Errorf(codes.Internal, "watch: cannot send %T", m)
	}
	return s.Send(ev)
}

func (s *httpWatchStream) RecvMsg(any) error {
	return status.Error(codes.Internal, "watch: the HTTP stream receives nothing")
}

func (s *httpWatchStream) SetHeader(metadata.MD) error  { return nil }
func (s *httpWatchStream) SendHeader(metadata.MD) error { return nil }
func (s *httpWatchStream) SetTrailer(metadata.MD)       {}
func (s *httpWatchStream) Context() context.Context     { return s.ctx }

var _ grpc.ServerStream = (*httpWatchStream)(nil)

// httpEncodeWatchEvent writes {"type":"ADDED","object":{...},"resourceVersion":"N"}
// and a newline. An event without an object (a bookmark) has no "object".
func httpEncodeWatchEvent(ev *WatchEvent) ([]byte, error) {
	typ, _ := json.Marshal(ev.GetType())
	rv, _ := json.Marshal(ev.GetResourceVersion())
	var b bytes.Buffer
	b.WriteString(`{"type":`)
	b.Write(typ)
	if res := ev.GetObject().Resource(); res != nil {
		obj, err := httpMarshalResource(res)
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"object":`)
		b.Write(obj)
	}
	b.WriteString(`,"resourceVersion":`)
	b.Write(rv)
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// httpMarshalObjects marshals objects as a JSON array.
func httpMarshalObjects(objs []*Object) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	n := 0
	for _, o := range objs {
		res := o.Resource()
		if res == nil {
			continue
		}
		data, err := httpMarshalResource(res)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.Write(data)
		n++
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// httpMarshalResource marshals one object with its apiVersion and kind set.
// The server may hand out objects it shares with its store, so one whose
// type meta needs setting is copied first rather than written to.
func httpMarshalResource(res Resource) ([]byte, error) {
	k := MustKind(KindOf(res))
	if tm, ok := res.(interface {
		GetApiVersion() string
		GetKind() string
	}); !ok || tm.GetApiVersion() != k.APIVersion || tm.GetKind() != k.Kind {
		res = httpClone(res)
		SetTypeMeta(res)
	}
	data, err := MarshalJSON(res)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "marshal %s %q: %v", k.Kind, KeyOf(res), err)
	}
	return data, nil
}

func (h *httpAPI) writeObject(w http.ResponseWriter, r *http.Request, obj *Object) {
	res := obj.Resource()
	if res == nil {
		httpWriteError(w, r, status.Error(codes.Internal, "the server returned an empty object"))
		return
	}
	data, err := httpMarshalResource(res)
	if err != nil {
		httpWriteError(w, r, err)
		return
	}
	httpWriteJSON(w, http.StatusOK, data)
}

func httpWriteJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}

func httpWriteError(w http.ResponseWriter, r *http.Request, err error) {
	he := HTTPErrorFrom(err)
	if he.Code >= 500 && he.Code != http.StatusServiceUnavailable && he.Code != http.StatusGatewayTimeout {
		slog.Error("http api", "method", r.Method, "path", r.URL.Path, "code", he.Code, "err", he.Message)
	}
	if he.Code == http.StatusServiceUnavailable || he.Code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	body, _ := json.Marshal(he)
	httpWriteJSON(w, he.Code, body)
}

func httpBadRequest(format string, args ...any) *HTTPError {
	return &HTTPError{Kind: "Status", Code: http.StatusBadRequest, Reason: "BadRequest", Message: fmt.Sprintf(format, args...)}
}

func httpNotFound(w http.ResponseWriter, r *http.Request) {
	httpWriteError(w, r, &HTTPError{Kind: "Status", Code: http.StatusNotFound, Reason: "NotFound",
		Message: fmt.Sprintf("the server could not find the requested resource (%s %s)", r.Method, r.URL.Path)})
}

// httpMethod checks the request's method against the route's; on a mismatch
// it answers 405 and returns false.
func httpMethod(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	for _, m := range allowed {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	httpWriteError(w, r, &HTTPError{Kind: "Status", Code: http.StatusMethodNotAllowed, Reason: "MethodNotAllowed",
		Message: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", "))})
	return false
}

// httpKind finds the kind whose plural is the path segment; on an unknown
// one it answers 404 and returns false.
func httpKind(w http.ResponseWriter, r *http.Request, plural string) (KindInfo, bool) {
	for _, k := range Kinds() {
		if k.Plural == plural {
			return k, true
		}
	}
	httpWriteError(w, r, &HTTPError{Kind: "Status", Code: http.StatusNotFound, Reason: "NotFound",
		Message: fmt.Sprintf("the server doesn't have a resource type %q", plural)})
	return KindInfo{}, false
}

func httpBoolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, httpBadRequest("query parameter %s: %q is not a boolean", name, v)
	}
	return b, nil
}

func httpClone(r Resource) Resource {
	return proto.Clone(r).(Resource)
}
