package main

// End-to-end tests of the client commands: the real CLI against an
// httptest TLS server (mutual TLS, HTTP/2) running api.NewHTTPHandler over
// an in-memory fake of the cluster.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

// fakeNow is the fake cluster's clock; the CLI's is set five minutes later.
var fakeNow = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func init() {
	now = func() time.Time { return fakeNow.Add(5 * time.Minute) }
}

// fakeCluster is an in-memory ShoalServer with the store semantics the CLI
// relies on: one resourceVersion per write, atomic applies, unchanged
// objects keep their version, watches replay from a version.
type fakeCluster struct {
	api.UnimplementedShoalServer

	mu      sync.Mutex
	rv      int
	objs    map[string]api.Resource
	log     []*api.WatchEvent
	changed chan struct{}
	token   string
	removed []string
	applies int

	watchStarted chan struct{} // a watch has taken its starting point
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{objs: map[string]api.Resource{}, changed: make(chan struct{}), token: "SHOAL-1-aaaa-bbbb", watchStarted: make(chan struct{}, 1)}
}

func fkey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

// put stores an object as a controller or agent would (status included).
func (f *fakeCluster) put(r api.Resource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	m := r.GetMetadata()
	m.ResourceVersion = strconv.Itoa(f.rv)
	if m.CreationTimestamp == "" {
		m.CreationTimestamp = fakeNow.Format(time.RFC3339)
	}
	if m.Generation == 0 {
		m.Generation = 1
	}
	typ := "ADDED"
	key := fkey(api.KindOf(r), m.Namespace, m.Name)
	if _, ok := f.objs[key]; ok {
		typ = "MODIFIED"
	}
	f.objs[key] = r
	f.emit(typ, r)
}

func (f *fakeCluster) emit(typ string, r api.Resource) {
	f.log = append(f.log, &api.WatchEvent{Type: typ, Object: api.Wrap(proto.Clone(r).(api.Resource)), ResourceVersion: strconv.Itoa(f.rv)})
	close(f.changed)
	f.changed = make(chan struct{})
}

// specOf is an object without the metadata the server owns and without
// status: what decides whether an apply changes it.
func specOf(r api.Resource) api.Resource {
	c := proto.Clone(r).(api.Resource)
	m := c.GetMetadata()
	m.ResourceVersion, m.Generation, m.CreationTimestamp, m.Uid = "", 0, "", ""
	switch v := c.(type) {
	case *api.Pod:
		v.Status = nil
	case *api.Deployment:
		v.Status = nil
	case *api.Node:
		v.Status = nil
	}
	return c
}

func (f *fakeCluster) Apply(_ context.Context, req *api.ApplyRequest) (*api.ApplyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	var objs []api.Resource
	for i, o := range req.GetObjects() {
		r := proto.Clone(o.Resource()).(api.Resource)
		k := api.MustKind(api.KindOf(r))
		m := r.GetMetadata()
		if m.GetName() == "" {
			return nil, status.Errorf(codes.InvalidArgument, "objects[%d]: metadata.name: required", i)
		}
		if k.Namespaced && m.Namespace == "" {
			m.Namespace = "default"
		}
		if p, ok := r.(*api.Pod); ok && len(p.GetSpec().GetContainers()) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "Pod %q: spec.containers: required", m.Name)
		}
		if _, ok := f.objs[fkey(k.Kind, m.Namespace, m.Name)]; ok && req.CreateOnly {
			return nil, status.Errorf(codes.AlreadyExists, "%s %q already exists", qualifiedPlural(k), m.Name)
		}
		objs = append(objs, r)
	}
	f.rv++
	resp := &api.ApplyResponse{}
	for _, r := range objs {
		m := r.GetMetadata()
		key := fkey(api.KindOf(r), m.Namespace, m.Name)
		old, exists := f.objs[key]
		switch {
		case exists && proto.Equal(specOf(old), specOf(r)):
			r = old
		case exists:
			om := old.GetMetadata()
			m.CreationTimestamp, m.Uid, m.Generation = om.CreationTimestamp, om.Uid, om.Generation+1
			m.ResourceVersion = strconv.Itoa(f.rv)
			f.objs[key] = r
			f.emit("MODIFIED", r)
		default:
			m.CreationTimestamp = fakeNow.Format(time.RFC3339)
			m.Uid = "uid-" + m.Name
			m.Generation = 1
			m.ResourceVersion = strconv.Itoa(f.rv)
			f.objs[key] = r
			f.emit("ADDED", r)
		}
		resp.Objects = append(resp.Objects, api.Wrap(proto.Clone(r).(api.Resource)))
	}
	return resp, nil
}

func (f *fakeCluster) Get(_ context.Context, req *api.GetRequest) (*api.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.objs[fkey(req.Kind, req.Namespace, req.Name)]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s %q not found", qualifiedPlural(api.MustKind(req.Kind)), req.Name)
	}
	return api.Wrap(proto.Clone(r).(api.Resource)), nil
}

func (f *fakeCluster) List(_ context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	match, err := api.ParseSelector(req.LabelSelector)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "labelSelector: %v", err)
	}
	var keys []string
	for k := range f.objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	resp := &api.ListResponse{ResourceVersion: strconv.Itoa(f.rv)}
	for _, k := range keys {
		r := f.objs[k]
		m := r.GetMetadata()
		if api.KindOf(r) != req.Kind || (req.Namespace != "" && m.Namespace != req.Namespace) {
			continue
		}
		if match != nil && !match(m.Labels) {
			continue
		}
		if p, ok := r.(*api.Pod); ok && req.NodeName != "" && p.GetSpec().GetNodeName() != req.NodeName {
			continue
		}
		resp.Items = append(resp.Items, api.Wrap(proto.Clone(r).(api.Resource)))
	}
	return resp, nil
}

func (f *fakeCluster) Delete(_ context.Context, req *api.DeleteRequest) (*api.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := fkey(req.Kind, req.Namespace, req.Name)
	r, ok := f.objs[key]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s %q not found", qualifiedPlural(api.MustKind(req.Kind)), req.Name)
	}
	if req.ResourceVersion != "" && req.ResourceVersion != r.GetMetadata().ResourceVersion {
		return nil, status.Errorf(codes.Aborted, "Operation cannot be fulfilled on %s %q: the object has been modified", qualifiedPlural(api.MustKind(req.Kind)), req.Name)
	}
	f.rv++
	delete(f.objs, key)
	f.emit("DELETED", r)
	return &api.DeleteResponse{Object: api.Wrap(r)}, nil
}

func (f *fakeCluster) Watch(req *api.WatchRequest, s api.Shoal_WatchServer) error {
	f.mu.Lock()
	next := len(f.log)
	if req.ResourceVersion != "" {
		from, _ := strconv.Atoi(req.ResourceVersion)
		next = sort.Search(len(f.log), func(i int) bool {
			rv, _ := strconv.Atoi(f.log[i].ResourceVersion)
			return rv > from
		})
	}
	f.mu.Unlock()
	select {
	case f.watchStarted <- struct{}{}:
	default:
	}
	for {
		f.mu.Lock()
		evs, ch := f.log[next:], f.changed
		next = len(f.log)
		f.mu.Unlock()
		for _, ev := range evs {
			r := ev.Object.Resource()
			if req.Kind != "" && api.KindOf(r) != req.Kind {
				continue
			}
			if req.Namespace != "" && r.GetMetadata().Namespace != req.Namespace {
				continue
			}
			if err := s.Send(ev); err != nil {
				return err
			}
		}
		select {
		case <-ch:
		case <-s.Context().Done():
			return nil
		}
	}
}

func (f *fakeCluster) Token(_ context.Context, req *api.TokenRequest) (*api.TokenResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Rotate {
		f.token = "SHOAL-1-aaaa-cccc"
	}
	return &api.TokenResponse{Token: f.token, Endpoints: []string{"192.168.56.11:7443", "192.168.56.12:7443"}}, nil
}

func (f *fakeCluster) RemoveNode(_ context.Context, req *api.RemoveNodeRequest) (*api.RemoveNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := fkey("Node", "", req.Name)
	if _, ok := f.objs[key]; !ok {
		return nil, status.Errorf(codes.NotFound, "nodes %q not found", req.Name)
	}
	if req.Name == "n1" {
		return nil, status.Errorf(codes.FailedPrecondition, "node %q is the leader: it cannot remove itself", req.Name)
	}
	delete(f.objs, key)
	f.removed = append(f.removed, req.Name)
	return &api.RemoveNodeResponse{}, nil
}

func (f *fakeCluster) Version(context.Context, *api.VersionRequest) (*api.VersionResponse, error) {
	return &api.VersionResponse{Version: "v0.9.0", Node: "n1", Leader: "n1"}, nil
}

// ---------------------------------------------------------------- harness

type testEnv struct {
	f      *fakeCluster
	addr   string
	config string
	cfg    *client.Config
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shoal test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	serverCert, serverKey := issue(2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := issue(3, x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	f := newFakeCluster()
	h := api.NewHTTPHandler(f)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 expected", http.StatusHTTPVersionNotSupported)
			return
		}
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	addr := srv.Listener.Addr().String()
	cfg := &client.Config{Server: addr, CA: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), Cert: string(clientCert), Key: string(clientKey)}
	path := filepath.Join(t.TempDir(), "config")
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	return &testEnv{f: f, addr: addr, config: path, cfg: cfg}
}

// shoal runs one command line and returns stdout, stderr and the exit code.
func (e *testEnv) shoal(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--config", e.config)
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (e *testEnv) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := e.shoal(t, "", args...)
	if code != 0 {
		t.Fatalf("shoal %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fail runs a command that must fail and returns its stderr.
func (e *testEnv) fail(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := e.shoal(t, "", args...)
	if code != 1 {
		t.Fatalf("shoal %s: exit %d, want 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return errOut
}

// api does a raw HTTP request to the API, as curl would.
func (e *testEnv) api(t *testing.T, path string) []byte {
	t.Helper()
	c, err := client.NewHTTPClient(e.cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tlsCfg, _ := e.cfg.TLSConfig()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
	resp, err := hc.Get("https://" + e.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.Bytes()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const webYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
    nodePort: 30080
`

const podJSON = `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "labels": {"app": "solo"}},
 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}`

// ---------------------------------------------------------------- tests

func TestApplyCreatedConfiguredUnchanged(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	writeFile(t, dir, "a-web.yaml", fmt.Sprintf(webYAML, 2))
	writeFile(t, dir, "b-pod.json", podJSON)
	writeFile(t, dir, "README.md", "not a manifest")

	out := e.ok(t, "apply", "-f", dir)
	if want := "deployment.apps/web created\nservice/web created\npod/solo created\n"; out != want {
		t.Fatalf("first apply:\n%s\nwant\n%s", out, want)
	}
	if e.f.applies != 1 {
		t.Fatalf("%d apply requests, want 1", e.f.applies)
	}
	out = e.ok(t, "apply", "-f", dir)
	if want := "deployment.apps/web unchanged\nservice/web unchanged\npod/solo unchanged\n"; out != want {
		t.Fatalf("second apply:\n%s\nwant\n%s", out, want)
	}
	writeFile(t, dir, "a-web.yaml", fmt.Sprintf(webYAML, 3))
	out = e.ok(t, "apply", "-f", dir)
	if want := "deployment.apps/web configured\nservice/web unchanged\npod/solo unchanged\n"; out != want {
		t.Fatalf("third apply:\n%s\nwant\n%s", out, want)
	}

	// Standard input, and -o name.
	out, errOut, code := e.shoal(t, podJSON, "apply", "-f", "-", "-o", "name")
	if code != 0 || out != "pod/solo\n" {
		t.Fatalf("stdin apply: %d %q %q", code, out, errOut)
	}
}

func TestApplyBadDocumentChangesNothing(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", fmt.Sprintf(webYAML, 1))
	bad := writeFile(t, dir, "bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: empty}\nspec: {containers: []}\n")
	errOut := e.fail(t, "apply", "-f", good, "-f", bad)
	if !strings.Contains(errOut, "Error from server (BadRequest):") || !strings.Contains(errOut, "spec.containers: required") {
		t.Fatalf("stderr %q", errOut)
	}
	if len(e.f.objs) != 0 {
		t.Fatalf("a refused apply stored %d objects", len(e.f.objs))
	}
	// A document that does not decode is refused before anything is sent,
	// and the message names the file.
	broken := writeFile(t, dir, "broken.yaml", "kind: Pod\nmetadata: [\n")
	errOut = e.fail(t, "apply", "-f", good, "-f", broken)
	if !strings.HasPrefix(errOut, "error: "+broken+": ") {
		t.Fatalf("stderr %q", errOut)
	}
	if e.f.applies != 1 {
		t.Fatalf("%d applies, want 1", e.f.applies)
	}
	errOut = e.fail(t, "apply", "-f", filepath.Join(dir, "missing.yaml"))
	if !strings.Contains(errOut, "does not exist") {
		t.Fatalf("stderr %q", errOut)
	}
	if errOut = e.fail(t, "apply"); !strings.Contains(errOut, "-f") {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestApplyNamespaces(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	p := writeFile(t, dir, "pod.json", podJSON)
	if out := e.ok(t, "apply", "-n", "team", "-f", p); out != "pod/solo created\n" {
		t.Fatalf("apply -n: %q", out)
	}
	if _, ok := e.f.objs[fkey("Pod", "team", "solo")]; !ok {
		t.Fatal("pod not in namespace team")
	}
	other := writeFile(t, dir, "other.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: prod}\nspec: {containers: [{name: c, image: busybox}]}\n")
	errOut := e.fail(t, "apply", "-n", "team", "-f", other)
	if !strings.Contains(errOut, `the namespace from the provided object "prod" does not match the namespace "team"`) {
		t.Fatalf("stderr %q", errOut)
	}
	// Without -n the object's own namespace counts.
	e.ok(t, "apply", "-f", other)
	if _, ok := e.f.objs[fkey("Pod", "prod", "x")]; !ok {
		t.Fatal("pod not in namespace prod")
	}
}

func seedCluster(e *testEnv) {
	three := int32(3)
	e.f.put(&api.Node{Metadata: &api.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}},
		Spec: &api.NodeSpec{PodCidr: "10.244.1.0/24"},
		Status: &api.NodeStatus{RaftRole: "leader", NodeId: "id-1", ApiEndpoint: "192.168.56.11:7443",
			Conditions: []*api.NodeCondition{{Type: "Ready", Status: "True", Reason: "AgentReady"}},
			Addresses:  []*api.NodeAddress{{Type: "InternalIP", Address: "192.168.56.11"}},
			Capacity:   map[string]string{"cpu": "2", "memory": "4Gi"},
			NodeInfo:   &api.NodeSystemInfo{ShoalVersion: "v0.9.0", KernelVersion: "6.18.0"}}})
	e.f.put(&api.Node{Metadata: &api.ObjectMeta{Name: "n2"}, Spec: &api.NodeSpec{Unschedulable: true},
		Status: &api.NodeStatus{RaftRole: "voter",
			Conditions: []*api.NodeCondition{{Type: "Ready", Status: "Unknown"}},
			Addresses:  []*api.NodeAddress{{Type: "InternalIP", Address: "192.168.56.12"}},
			NodeInfo:   &api.NodeSystemInfo{ShoalVersion: "v0.9.0"}}})
	e.f.put(&api.Deployment{Metadata: &api.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &api.DeploymentSpec{Replicas: &three, Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: &api.PodTemplateSpec{Metadata: &api.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: &api.PodSpec{Containers: []*api.Container{{Name: "web", Image: "busybox:1.36"}}}}},
		Status: &api.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2,
			Conditions: []*api.DeploymentCondition{{Type: "Available", Status: "False", Reason: "MinimumReplicasUnavailable"}}}})
	for i, node := range []string{"n1", "n2", "n1"} {
		e.f.put(&api.Pod{Metadata: &api.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "default", Labels: map[string]string{"app": "web"},
			OwnerReferences: []*api.OwnerReference{{Kind: "Deployment", Name: "web", Controller: true}}},
			Spec: &api.PodSpec{NodeName: node, Containers: []*api.Container{{Name: "web", Image: "busybox:1.36"}}},
			Status: &api.PodStatus{Phase: "Running", PodIp: fmt.Sprintf("10.244.%d.%d", i+1, i+2), HostIp: "192.168.56.11",
				ContainerStatuses: []*api.ContainerStatus{{Name: "web", Ready: i != 1, RestartCount: int32(i),
					State: &api.ContainerState{Running: &api.ContainerStateRunning{StartedAt: fakeNow.Format(time.RFC3339)}}}}}})
	}
	e.f.put(&api.Pod{Metadata: &api.ObjectMeta{Name: "db-0", Namespace: "data", Labels: map[string]string{"app": "db"}},
		Spec: &api.PodSpec{Containers: []*api.Container{{Name: "db", Image: "busybox"}}}})
	e.f.put(&api.Service{Metadata: &api.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &api.ServiceSpec{Type: "NodePort", ClusterIp: "10.96.0.20", Selector: map[string]string{"app": "web"},
			Ports: []*api.ServicePort{{Port: 80, Protocol: "TCP", NodePort: 30080}}}})
	e.f.put(&api.Endpoints{Metadata: &api.ObjectMeta{Name: "web", Namespace: "default"},
		Subsets: []*api.EndpointSubset{{Addresses: []*api.EndpointAddress{{Ip: "10.244.1.2"}, {Ip: "10.244.3.4"}},
			Ports: []*api.EndpointPort{{Port: 80, Protocol: "TCP"}}}}})
}

func TestGetTables(t *testing.T) {
	e := newTestEnv(t)
	seedCluster(e)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "pods"}, `
NAME    READY   STATUS    RESTARTS   AGE
web-0   1/1     Running   0          5m
web-1   0/1     Running   1          5m
web-2   1/1     Running   2          5m
`},
		{[]string{"get", "po", "-o", "wide", "-l", "app=web"}, `
NAME    READY   STATUS    RESTARTS   AGE   IP           NODE
web-0   1/1     Running   0          5m    10.244.1.2   n1
web-1   0/1     Running   1          5m    10.244.2.3   n2
web-2   1/1     Running   2          5m    10.244.3.4   n1
`},
		{[]string{"get", "pods", "-A", "-l", "app in (db)"}, `
NAMESPACE   NAME   READY   STATUS    RESTARTS   AGE
data        db-0   0/1     Pending   0          5m
`},
		{[]string{"get", "pods", "-n", "data"}, `
NAME   READY   STATUS    RESTARTS   AGE
db-0   0/1     Pending   0          5m
`},
		{[]string{"get", "deploy"}, `
NAME   READY   UP-TO-DATE   AVAILABLE   AGE
web    2/3     3            2           5m
`},
		{[]string{"get", "svc"}, `
NAME   TYPE       CLUSTER-IP   PORT(S)        AGE
web    NodePort   10.96.0.20   80:30080/TCP   5m
`},
		{[]string{"get", "ep", "web"}, `
NAME   ENDPOINTS                     AGE
web    10.244.1.2:80,10.244.3.4:80   5m
`},
		{[]string{"get", "nodes"}, `
NAME   STATUS                        ROLES    AGE   VERSION
n1     Ready                         leader   5m    v0.9.0
n2     NotReady,SchedulingDisabled   voter    5m    v0.9.0
`},
		{[]string{"node", "ls", "-o", "wide"}, `
NAME   STATUS                        ROLES    AGE   VERSION   INTERNAL-IP
n1     Ready                         leader   5m    v0.9.0    192.168.56.11
n2     NotReady,SchedulingDisabled   voter    5m    v0.9.0    192.168.56.12
`},
		{[]string{"get", "deploy,svc"}, `
NAME                  READY   UP-TO-DATE   AVAILABLE   AGE
deployment.apps/web   2/3     3            2           5m

NAME          TYPE       CLUSTER-IP   PORT(S)        AGE
service/web   NodePort   10.96.0.20   80:30080/TCP   5m
`},
		{[]string{"get", "po/web-0", "deploy/web", "--no-headers"}, `
pod/web-0   1/1   Running   0     5m

deployment.apps/web   2/3   3     2     5m
`},
		{[]string{"get", "pods", "-o", "name"}, `
pod/web-0
pod/web-1
pod/web-2
`},
	} {
		if got := e.ok(t, tc.args...); got != strings.TrimPrefix(tc.want, "\n") {
			t.Errorf("shoal %s:\n%s\nwant\n%s", strings.Join(tc.args, " "), got, strings.TrimPrefix(tc.want, "\n"))
		}
	}
}

func TestGetEmptyAndErrors(t *testing.T) {
	e := newTestEnv(t)
	seedCluster(e)
	out, errOut, code := e.shoal(t, "", "get", "pods", "-n", "nothing")
	if code != 0 || out != "" || errOut != "No resources found in nothing namespace.\n" {
		t.Fatalf("empty: %d %q %q", code, out, errOut)
	}
	if _, errOut, _ = e.shoal(t, "", "get", "svc", "-A", "-l", "x=y"); errOut != "No resources found\n" {
		t.Fatalf("empty -A: %q", errOut)
	}
	if errOut := e.fail(t, "get", "pods", "nope"); errOut != "Error from server (NotFound): pods \"nope\" not found\n" {
		t.Fatalf("not found: %q", errOut)
	}
	// Found objects are printed, missing ones reported, exit 1.
	out, errOut, code = e.shoal(t, "", "get", "pods", "web-0", "nope")
	if code != 1 || !strings.Contains(out, "web-0") || !strings.Contains(errOut, `pods "nope" not found`) {
		t.Fatalf("partial: %d %q %q", code, out, errOut)
	}
	if errOut := e.fail(t, "get", "widgets"); errOut != "error: the server doesn't have a resource type \"widgets\"\nSee 'shoal get --help' for usage.\n" {
		t.Fatalf("unknown kind: %q", errOut)
	}
	if errOut := e.fail(t, "get", "pods", "--bogus"); !strings.HasPrefix(errOut, "error: unknown flag: --bogus\nSee 'shoal get --help'") {
		t.Fatalf("unknown flag: %q", errOut)
	}
	if errOut := e.fail(t, "get", "pods", "-o", "xml"); !strings.Contains(errOut, `output format "xml"`) {
		t.Fatalf("bad output: %q", errOut)
	}
	if errOut := e.fail(t, "get", "pods", "-l", "a b=c"); !strings.HasPrefix(errOut, "Error from server (BadRequest): labelSelector") {
		t.Fatalf("bad selector: %q", errOut)
	}
	var eo bytes.Buffer
	code = run(context.Background(), []string{"get", "pods", "--config", filepath.Join(t.TempDir(), "none")}, nil, &bytes.Buffer{}, &eo)
	if errOut = eo.String(); code != 1 || !strings.Contains(errOut, "no client configuration at") {
		t.Fatalf("no config: %d %q", code, errOut)
	}
}

func TestGetJSONIsTheAPI(t *testing.T) {
	e := newTestEnv(t)
	seedCluster(e)
	compact := func(b []byte) string {
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return c.String()
	}
	if got, want := compact([]byte(e.ok(t, "get", "deploy", "web", "-o", "json"))), compact(e.api(t, "/v1/namespaces/default/deployments/web")); got != want {
		t.Errorf("get deploy web -o json:\n%s\nAPI:\n%s", got, want)
	}
	if got, want := compact([]byte(e.ok(t, "get", "pods", "-o", "json"))), compact(e.api(t, "/v1/namespaces/default/pods")); got != want {
		t.Errorf("get pods -o json:\n%s\nAPI:\n%s", got, want)
	}
	if got, want := compact([]byte(e.ok(t, "node", "ls", "-o", "json"))), compact(e.api(t, "/v1/nodes")); got != want {
		t.Errorf("node ls -o json:\n%s\nAPI:\n%s", got, want)
	}
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(e.ok(t, "get", "pods", "-A", "-o", "json")), &list); err != nil || len(list.Items) != 4 {
		t.Fatalf("-A json: %v %d", err, len(list.Items))
	}
	y := e.ok(t, "get", "svc", "web", "-o", "yaml")
	for _, want := range []string{"apiVersion: v1\n", "kind: Service\n", "  name: web\n", "  - nodePort: 30080\n"} {
		if !strings.Contains(y, want) {
			t.Errorf("yaml lacks %q:\n%s", want, y)
		}
	}
}

func TestDescribe(t *testing.T) {
	e := newTestEnv(t)
	seedCluster(e)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"describe", "pod", "web-1"}, []string{"Name:", "web-1", "Namespace:", "Node:", "n2/192.168.56.11", "Labels:", "app=web",
			"Status:", "Running", "IP:", "10.244.2.3", "Controlled By:", "Deployment/web", "Containers:", "  web:", "Image:", "busybox:1.36",
			"State:", "Running", "Ready:", "False", "Restart Count:", "1"}},
		{[]string{"describe", "deploy/web"}, []string{"Name:", "Selector:", "app=web", "Replicas:", "3 desired | 3 updated | 3 total | 2 available | 0 unavailable",
			"StrategyType:", "RollingUpdate", "25% max unavailable, 25% max surge", "Pod Template:", "Conditions:", "Available", "MinimumReplicasUnavailable"}},
		{[]string{"describe", "svc", "web"}, []string{"Type:", "NodePort", "IP:", "10.96.0.20", "NodePort:", "30080/TCP", "Endpoints:", "10.244.1.2:80,10.244.3.4:80"}},
		{[]string{"describe", "ep", "web"}, []string{"Subsets:", "Addresses:", "10.244.1.2,10.244.3.4"}},
		{[]string{"describe", "node", "n1"}, []string{"Roles:", "leader", "zone=a", "Conditions:", "Ready", "True", "AgentReady",
			"InternalIP:", "192.168.56.11", "Capacity:", "memory:", "4Gi", "Kernel Version:", "6.18.0", "Pods:", "(2 in total)", "web-0", "web-2"}},
	} {
		out := e.ok(t, tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("shoal %s lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}
	// Aligned values: the Name and Namespace values start in one column.
	out := e.ok(t, "describe", "pod", "web-0")
	lines := strings.Split(out, "\n")
	if i, j := strings.Index(lines[0], "web-0"), strings.Index(lines[1], "default"); i != j || i < 0 {
		t.Errorf("unaligned:\n%s", out)
	}
	if errOut := e.fail(t, "describe", "pod", "nope"); !strings.Contains(errOut, "(NotFound)") {
		t.Errorf("describe missing: %q", errOut)
	}
}

func TestDelete(t *testing.T) {
	e := newTestEnv(t)
	seedCluster(e)
	if out := e.ok(t, "delete", "pod", "web-0", "web-1"); out != "pod \"web-0\" deleted\npod \"web-1\" deleted\n" {
		t.Fatalf("delete: %q", out)
	}
	out, errOut, code := e.shoal(t, "", "delete", "pod", "web-0", "web-2")
	if code != 1 || out != "pod \"web-2\" deleted\n" || errOut != "Error from server (NotFound): pods \"web-0\" not found\n" {
		t.Fatalf("delete missing: %d %q %q", code, out, errOut)
	}
	if out := e.ok(t, "delete", "pod", "web-0", "--ignore-not-found"); out != "" {
		t.Fatalf("ignore not found: %q", out)
	}
	if errOut := e.fail(t, "delete", "deploy", "web", "--resource-version", "1"); !strings.HasPrefix(errOut, "Error from server (Conflict): ") {
		t.Fatalf("stale delete: %q", errOut)
	}
	dir := t.TempDir()
	f := writeFile(t, dir, "web.yaml", fmt.Sprintf(webYAML, 3))
	if out := e.ok(t, "delete", "-f", f); out != "deployment.apps \"web\" deleted\nservice \"web\" deleted\n" {
		t.Fatalf("delete -f: %q", out)
	}
	if errOut := e.fail(t, "delete", "-f", f); !strings.Contains(errOut, fmt.Sprintf(`Error from server (NotFound): error when deleting %q: deployments.apps "web" not found`, f)) {
		t.Fatalf("delete -f again: %q", errOut)
	}
	if errOut := e.fail(t, "delete", "pods"); !strings.Contains(errOut, "no name was specified") {
		t.Fatalf("delete without name: %q", errOut)
	}
}

func TestNodeAndToken(t *testing.T) {
	e := newTestEnv(t)
	seedCluster(e)
	if out := e.ok(t, "node", "rm", "n2"); out != "node \"n2\" removed\n" {
		t.Fatalf("node rm: %q", out)
	}
	if len(e.f.removed) != 1 || e.f.removed[0] != "n2" {
		t.Fatalf("removed %v", e.f.removed)
	}
	if errOut := e.fail(t, "node", "rm", "n1"); errOut != "Error from server (PreconditionFailed): node \"n1\" is the leader: it cannot remove itself\n" {
		t.Fatalf("node rm leader: %q", errOut)
	}
	if out := e.ok(t, "node", "ls", "-o", "name"); out != "node/n1\n" {
		t.Fatalf("node ls: %q", out)
	}

	out := e.ok(t, "token")
	if out != "SHOAL-1-aaaa-bbbb\nshoal agent --join 192.168.56.11:7443 --token SHOAL-1-aaaa-bbbb\n" {
		t.Fatalf("token: %q", out)
	}
	out, errOut, code := e.shoal(t, "", "token", "--rotate")
	if code != 0 || strings.SplitN(out, "\n", 2)[0] != "SHOAL-1-aaaa-cccc" || !strings.Contains(out, "--token SHOAL-1-aaaa-cccc") || !strings.Contains(errOut, "rotated") {
		t.Fatalf("rotate: %d %q %q", code, out, errOut)
	}
}

func TestVersionAndServerFlag(t *testing.T) {
	e := newTestEnv(t)
	old := version
	version = "v1.2.3-test"
	defer func() { version = old }()
	if out := e.ok(t, "version", "--client"); out != "Client Version: v1.2.3-test\n" {
		t.Fatalf("client: %q", out)
	}
	if out := e.ok(t, "version"); out != "Client Version: v1.2.3-test\nServer Version: v0.9.0\nServer Node: n1 (leader: n1)\n" {
		t.Fatalf("version: %q", out)
	}
	// An unreachable server: the client's version still, and a note.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	out, errOut, code := e.shoal(t, "", "version", "--server", dead)
	if code != 0 || out != "Client Version: v1.2.3-test\n" || !strings.Contains(errOut, "cannot reach the shoal API") {
		t.Fatalf("unreachable: %d %q %q", code, out, errOut)
	}
	if errOut := e.fail(t, "get", "nodes", "--server", dead); !strings.Contains(errOut, dead) {
		t.Fatalf("--server: %q", errOut)
	}
	// A configuration whose first server is down falls back to the next.
	cfg := *e.cfg
	cfg.Server, cfg.Servers = dead, []string{e.addr}
	p := filepath.Join(t.TempDir(), "config")
	if err := cfg.Save(p); err != nil {
		t.Fatal(err)
	}
	var o, eo bytes.Buffer
	if code := run(context.Background(), []string{"version", "--config", p}, nil, &o, &eo); code != 0 || !strings.Contains(o.String(), "Server Version: v0.9.0") {
		t.Fatalf("fallback: %d %q %q", code, o.String(), eo.String())
	}
}

// syncBuffer is a buffer written by one goroutine and read by another; it
// signals every write.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the buffer holds want.
func (s *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(s.String(), want) {
		select {
		case <-s.wrote:
		case <-deadline:
			t.Fatalf("timed out waiting for %q in:\n%s", want, s.String())
		}
	}
}

func TestGetWatch(t *testing.T) {
	e := newTestEnv(t)
	seedCluster(e)
	out := &syncBuffer{wrote: make(chan struct{}, 1)}
	var errOut bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"get", "pods", "-w", "-l", "app=web", "--config", e.config}, nil, out, &errOut)
	}()
	out.waitFor(t, "web-2")
	e.f.put(&api.Pod{Metadata: &api.ObjectMeta{Name: "web-3", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &api.PodSpec{Containers: []*api.Container{{Name: "web"}}}})
	e.f.put(&api.Pod{Metadata: &api.ObjectMeta{Name: "other", Namespace: "default", Labels: map[string]string{"app": "other"}},
		Spec: &api.PodSpec{Containers: []*api.Container{{Name: "web"}}}})
	e.f.put(&api.Pod{Metadata: &api.ObjectMeta{Name: "web-4", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &api.PodSpec{Containers: []*api.Container{{Name: "web"}}}})
	out.waitFor(t, "web-4")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d: %s", code, errOut.String())
	}
	want := `NAME    READY   STATUS    RESTARTS   AGE
web-0   1/1     Running   0          5m
web-1   0/1     Running   1          5m
web-2   1/1     Running   2          5m
web-3   0/1     Pending   0          5m
web-4   0/1     Pending   0          5m
`
	if out.String() != want {
		t.Fatalf("watch output:\n%s\nwant\n%s", out.String(), want)
	}
}

func TestGetWatchJSONByName(t *testing.T) {
	e := newTestEnv(t)
	seedCluster(e)
	out := &syncBuffer{wrote: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"get", "deploy", "web", "--watch-only", "-o", "json", "--config", e.config}, nil, out, &bytes.Buffer{})
	}()
	// The watch starts from now: wait until the server has it.
	<-e.f.watchStarted
	two := int32(2)
	e.f.put(&api.Deployment{Metadata: &api.ObjectMeta{Name: "api", Namespace: "default"}})
	e.f.put(&api.Deployment{Metadata: &api.ObjectMeta{Name: "web", Namespace: "default"}, Spec: &api.DeploymentSpec{Replicas: &two}})
	out.waitFor(t, `"replicas": 2`)
	cancel()
	<-done
	if strings.Contains(out.String(), `"name": "api"`) {
		t.Fatalf("watch by name printed another object:\n%s", out.String())
	}
}

// The join token comes from --token, --token-file (first line) or
// $SHOAL_TOKEN; a bad combination or an unusable file is refused with
// what is wrong.
func TestJoinTokenSources(t *testing.T) {
	files := map[string]string{
		"tok":   "SHOAL-1-aaaa-bbbb\n",
		"crlf":  "  SHOAL-1-aaaa-bbbb \r\nsecond line\n",
		"empty": "\n",
	}
	read := func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: no such file or directory", name)
	}
	cases := []struct {
		flag, file, env string
		want, err       string
	}{
		{flag: "SHOAL-1-flag", want: "SHOAL-1-flag"},
		{flag: "SHOAL-1-flag", env: "SHOAL-1-env", want: "SHOAL-1-flag"},
		{file: "tok", want: "SHOAL-1-aaaa-bbbb"},
		{file: "crlf", env: "SHOAL-1-env", want: "SHOAL-1-aaaa-bbbb"},
		{env: " SHOAL-1-env\n", want: "SHOAL-1-env"},
		{want: ""},
		{flag: "SHOAL-1-flag", file: "tok", err: "--token and --token-file exclude each other"},
		{file: "missing", err: "--token-file: open missing"},
		{file: "empty", err: "--token-file empty: its first line is empty"},
	}
	for _, tc := range cases {
		got, err := joinToken(tc.flag, tc.file, tc.env, read)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("joinToken(%q, %q, %q) = %q, %v; want an error saying %q", tc.flag, tc.file, tc.env, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("joinToken(%q, %q, %q) = %q, %v; want %q", tc.flag, tc.file, tc.env, got, err, tc.want)
		}
	}
}
