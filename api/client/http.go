package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoalproj/shoal/api"
)

// HTTPClient talks to the HTTP/JSON face of the shoal API over HTTP/2 with
// mutual TLS. Objects come back as the API sends them (json.RawMessage), so
// a caller can print them unchanged or decode them with api.UnmarshalJSON.
//
// A response other than 2xx becomes an *api.HTTPError carrying the server's
// reason and message; its Error() reads like kubectl's
// "Error from server (NotFound): ...".
type HTTPClient struct {
	endpoints []string
	hc        *http.Client

	mu  sync.Mutex
	cur int // index in endpoints of the one that last answered
}

// ApplyOptions are the query parameters of an apply.
type ApplyOptions struct {
	// CreateOnly fails with AlreadyExists instead of updating an object.
	CreateOnly bool
	// Status writes status instead of spec (agents and controllers).
	Status bool
}

// ListOptions select what a list returns.
type ListOptions struct {
	// AllNamespaces lists a namespaced kind in every namespace.
	AllNamespaces bool
	LabelSelector string
	// NodeName keeps only the pods bound to that node.
	NodeName string
	// Consistent asks for a linearizable read.
	Consistent bool
}

// ObjectList is a list as the API returns it: {"items":[...],"resourceVersion":"N"}.
type ObjectList struct {
	Items           []json.RawMessage `json:"items"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
}

// WatchOptions select what a watch streams.
type WatchOptions struct {
	// ResourceVersion: stream every change after it; empty: from now.
	ResourceVersion string
	LabelSelector   string
	NodeName        string
	// AllowBookmarks asks for BOOKMARK events (no object, the position
	// reached) when the stream is quiet.
	AllowBookmarks bool
}

// WatchEvent is one event of a watch.
type WatchEvent struct {
	Type            string          `json:"type"` // ADDED, MODIFIED, DELETED, BOOKMARK
	Object          json.RawMessage `json:"object,omitempty"`
	ResourceVersion string          `json:"resourceVersion"`
}

// NewHTTPClient returns a client of server, or, when server is empty, of
// cfg.Server with cfg.Servers as fallbacks tried in order when an endpoint
// cannot be reached.
func NewHTTPClient(cfg *Config, server string) (*HTTPClient, error) {
	endpoints := Endpoints(cfg, server)
	if len(endpoints) == 0 {
		return nil, errors.New("no API endpoint: the client configuration names no server")
	}
	for _, ep := range endpoints {
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return nil, fmt.Errorf("API endpoint %q must be HOST:PORT", ep)
		}
	}
	tlsCfg, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:     tlsCfg, // ServerName is set per connection from the endpoint's host
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		// Pings find a dead server under a long watch.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
	return &HTTPClient{endpoints: endpoints, hc: &http.Client{Transport: tr}}, nil
}

// Server returns the endpoint the client talks to now.
func (c *HTTPClient) Server() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endpoints[c.cur]
}

// Close releases idle connections.
func (c *HTTPClient) Close() {
	c.hc.CloseIdleConnections()
}

// Apply sends a manifest (YAML or JSON, one or several documents) and
// returns the applied objects as the server stored them.
func (c *HTTPClient) Apply(ctx context.Context, manifest []byte, opts ApplyOptions) ([]json.RawMessage, error) {
	q := url.Values{}
	if opts.CreateOnly {
		q.Set("createOnly", "true")
	}
	if opts.Status {
		q.Set("status", "true")
	}
	var list ObjectList
	if err := c.doJSON(ctx, http.MethodPost, "/v1/apply", q, manifest, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Get returns one object. plural is any name of a kind (pods, po, Pod...);
// ns is ignored for nodes.
func (c *HTTPClient) Get(ctx context.Context, plural, ns, name string) (json.RawMessage, error) {
	return c.get(ctx, plural, ns, name, false)
}

// GetConsistent is Get with a linearizable read.
func (c *HTTPClient) GetConsistent(ctx context.Context, plural, ns, name string) (json.RawMessage, error) {
	return c.get(ctx, plural, ns, name, true)
}

func (c *HTTPClient) get(ctx context.Context, plural, ns, name string, consistent bool) (json.RawMessage, error) {
	p, err := ObjectPath(plural, ns, name)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if consistent {
		q.Set("consistent", "true")
	}
	var obj json.RawMessage
	if err := c.doJSON(ctx, http.MethodGet, p, q, nil, &obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// List returns the objects of a kind in namespace ns, or in every namespace
// when allNamespaces is set (or ns is empty), filtered by a label selector.
func (c *HTTPClient) List(ctx context.Context, plural, ns string, allNamespaces bool, labelSelector string) ([]json.RawMessage, error) {
	l, err := c.ListObjects(ctx, plural, ns, ListOptions{AllNamespaces: allNamespaces, LabelSelector: labelSelector})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// ListObjects is List with every option, returning the list's resourceVersion too.
func (c *HTTPClient) ListObjects(ctx context.Context, plural, ns string, opts ListOptions) (*ObjectList, error) {
	if opts.AllNamespaces {
		ns = ""
	}
	p, err := CollectionPath(plural, ns)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts.LabelSelector != "" {
		q.Set("labelSelector", opts.LabelSelector)
	}
	if opts.NodeName != "" {
		q.Set("nodeName", opts.NodeName)
	}
	if opts.Consistent {
		q.Set("consistent", "true")
	}
	var list ObjectList
	if err := c.doJSON(ctx, http.MethodGet, p, q, nil, &list); err != nil {
		return nil, err
	}
	if list.Items == nil {
		list.Items = []json.RawMessage{}
	}
	return &list, nil
}

// Delete deletes an object, only if it is still at resourceVersion when
// that is set, and returns it as it was. Deleting a node removes it from the
// cluster (as RemoveNode).
func (c *HTTPClient) Delete(ctx context.Context, plural, ns, name, resourceVersion string) (json.RawMessage, error) {
	return c.DeleteWithGrace(ctx, plural, ns, name, resourceVersion, -1)
}

// DeleteWithGrace is Delete with a grace period for a pod: negative for
// the pod's own (a graceful delete: it turns Terminating until its node
// has stopped it), 0 to remove it at once.
func (c *HTTPClient) DeleteWithGrace(ctx context.Context, plural, ns, name, resourceVersion string, grace int64) (json.RawMessage, error) {
	p, err := ObjectPath(plural, ns, name)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if resourceVersion != "" {
		q.Set("resourceVersion", resourceVersion)
	}
	if grace >= 0 {
		q.Set("gracePeriodSeconds", strconv.FormatInt(grace, 10))
	}
	var obj json.RawMessage
	if err := c.doJSON(ctx, http.MethodDelete, p, q, nil, &obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// RemoveNode takes a node out of the cluster.
func (c *HTTPClient) RemoveNode(ctx context.Context, name string) error {
	_, err := c.Delete(ctx, "nodes", "", name, "")
	return err
}

// Token returns the cluster's join token, rotating it first when rotate is set.
func (c *HTTPClient) Token(ctx context.Context, rotate bool) (*api.TokenResponse, error) {
	method, p := http.MethodGet, "/v1/token"
	if rotate {
		method, p = http.MethodPost, "/v1/token/rotate"
	}
	var body struct {
		Token     string   `json:"token"`
		Endpoints []string `json:"endpoints"`
	}
	if err := c.doJSON(ctx, method, p, nil, nil, &body); err != nil {
		return nil, err
	}
	return &api.TokenResponse{Token: body.Token, Endpoints: body.Endpoints}, nil
}

// Version returns the server's version, its node name and the leader's.
func (c *HTTPClient) Version(ctx context.Context) (*api.VersionResponse, error) {
	var body struct {
		Version string `json:"version"`
		Node    string `json:"node"`
		Leader  string `json:"leader"`
	}
	if err := c.doJSON(ctx, http.MethodGet, "/v1/version", nil, nil, &body); err != nil {
		return nil, err
	}
	return &api.VersionResponse{Version: body.Version, Node: body.Node, Leader: body.Leader}, nil
}

// Watch streams the changes of a kind in namespace ns (every namespace when
// ns is empty). The caller reads events with Next and ends the watch with
// Close or by cancelling ctx.
func (c *HTTPClient) Watch(ctx context.Context, plural, ns string, opts WatchOptions) (*Watcher, error) {
	p, err := CollectionPath(plural, ns)
	if err != nil {
		return nil, err
	}
	q := url.Values{"watch": {"true"}}
	if opts.ResourceVersion != "" {
		q.Set("resourceVersion", opts.ResourceVersion)
	}
	if opts.LabelSelector != "" {
		q.Set("labelSelector", opts.LabelSelector)
	}
	if opts.NodeName != "" {
		q.Set("nodeName", opts.NodeName)
	}
	if opts.AllowBookmarks {
		q.Set("allowWatchBookmarks", "true")
	}
	resp, err := c.do(ctx, http.MethodGet, p, q, nil)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(resp.Body)
	return &Watcher{body: resp.Body, dec: dec}, nil
}

// Watcher reads the events of one watch.
type Watcher struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Next returns the next event. It returns io.EOF when the server ends the
// watch, and an *api.HTTPError when the server sends an error event.
func (w *Watcher) Next() (WatchEvent, error) {
	var ev WatchEvent
	if err := w.dec.Decode(&ev); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return WatchEvent{}, fmt.Errorf("watch: the stream broke: %w", err)
		}
		return WatchEvent{}, err
	}
	if ev.Type == "ERROR" {
		var he api.HTTPError
		if err := json.Unmarshal(ev.Object, &he); err != nil || he.Message == "" {
			return WatchEvent{}, fmt.Errorf("watch: error event: %s", ev.Object)
		}
		return WatchEvent{}, &he
	}
	return ev, nil
}

// Close ends the watch.
func (w *Watcher) Close() error {
	return w.body.Close()
}

// CollectionPath returns the HTTP path of a kind's collection in namespace
// ns, or across every namespace when ns is empty. kind is any of the kind's
// names (pods, pod, po, Pod).
func CollectionPath(kind, ns string) (string, error) {
	k, ok := api.LookupKind(kind)
	if !ok {
		return "", fmt.Errorf("the server doesn't have a resource type %q", kind)
	}
	if !k.Namespaced || ns == "" {
		return "/v1/" + k.Plural, nil
	}
	return "/v1/namespaces/" + url.PathEscape(ns) + "/" + k.Plural, nil
}

// ObjectPath returns the HTTP path of one object. ns is ignored for kinds
// that have no namespace and defaults to "default" for those that do.
func ObjectPath(kind, ns, name string) (string, error) {
	k, ok := api.LookupKind(kind)
	if !ok {
		return "", fmt.Errorf("the server doesn't have a resource type %q", kind)
	}
	if name == "" {
		return "", errors.New("resource name may not be empty")
	}
	if !k.Namespaced {
		return "/v1/" + k.Plural + "/" + url.PathEscape(name), nil
	}
	if ns == "" {
		ns = api.DefaultNamespace
	}
	return "/v1/namespaces/" + url.PathEscape(ns) + "/" + k.Plural + "/" + url.PathEscape(name), nil
}

// doJSON does a request and decodes a 2xx answer into out.
func (c *HTTPClient) doJSON(ctx context.Context, method, p string, q url.Values, body []byte, out any) error {
	resp, err := c.do(ctx, method, p, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read the answer of %s %s: %w", method, p, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode the answer of %s %s: %w", method, p, err)
	}
	return nil
}

// do sends a request to the current endpoint, moving on to the next ones
// when an endpoint cannot be reached (the request was then never sent, so
// sending it again is safe). A non-2xx answer becomes an *api.HTTPError.
func (c *HTTPClient) do(ctx context.Context, method, p string, q url.Values, body []byte) (*http.Response, error) {
	c.mu.Lock()
	start := c.cur
	c.mu.Unlock()
	var errs []error
	for i := range c.endpoints {
		idx := (start + i) % len(c.endpoints)
		ep := c.endpoints[idx]
		u := url.URL{Scheme: "https", Host: ep, Path: p, RawQuery: q.Encode()}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/yaml")
		}
		req.Header.Set("Accept", "application/json")
		resp, err := c.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, unwrapURLError(err))
			if isDialError(err) {
				continue
			}
			return nil, fmt.Errorf("shoal API at %s: %w", ep, unwrapURLError(err))
		}
		c.mu.Lock()
		c.cur = idx
		c.mu.Unlock()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			defer resp.Body.Close()
			return nil, readHTTPError(resp)
		}
		return resp, nil
	}
	if len(c.endpoints) == 1 {
		return nil, fmt.Errorf("cannot reach the shoal API: %w - is the agent running, and is %s the right address?", errors.Join(errs...), c.endpoints[0])
	}
	return nil, fmt.Errorf("cannot reach the shoal API at any of %s: %w", strings.Join(c.endpoints, ", "), errors.Join(errs...))
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// isDialError tells whether the request failed before anything was sent.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

// readHTTPError turns a non-2xx answer into an *api.HTTPError, from the
// Status body the API sends, or from the HTTP status when the body is
// something else (a proxy, another server).
func readHTTPError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var he api.HTTPError
	if err := json.Unmarshal(data, &he); err == nil && he.Kind == "Status" && he.Message != "" {
		if he.Code == 0 {
			he.Code = resp.StatusCode
		}
		if he.Reason == "" {
			he.Reason = reasonOf(resp.StatusCode)
		}
		return &he
	}
	msg := strings.TrimSpace(string(data))
	if msg == "" {
		msg = resp.Status
	}
	return &api.HTTPError{Kind: "Status", Code: resp.StatusCode, Reason: reasonOf(resp.StatusCode), Message: msg}
}

func reasonOf(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "Unauthorized"
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusPreconditionFailed:
		return "PreconditionFailed"
	case http.StatusRequestEntityTooLarge:
		return "RequestEntityTooLarge"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "Timeout"
	}
	if t := http.StatusText(code); t != "" {
		return strings.ReplaceAll(t, " ", "")
	}
	return "Status" + strconv.Itoa(code)
}
