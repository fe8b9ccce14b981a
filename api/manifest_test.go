package api

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// manifestTestWeb is a Deployment and its Service as a Kubernetes user
// writes them, with the noise `kubectl create --dry-run -o yaml` leaves
// (creationTimestamp: null, empty resources, status: {}).
const manifestTestWeb = `# web: a deployment and its service
---
apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: web
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: web
        app.kubernetes.io/version: "1.25"
    spec:
      containers:
      - image: nginx:1.25
        name: nginx
        ports:
        - containerPort: 80
          name: http
        resources: {}
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
          periodSeconds: 5
status: {}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
  - name: metrics
    port: 9090
    targetPort: 9090
    protocol: TCP
`

// manifestTestPod is a multi-container pod using most of what shoal knows.
const manifestTestPod = `apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: shop
  labels:
    app: shop
    tier: backend
  annotations:
    example.com/owner: "team-a"
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 10
  nodeSelector:
    disktype: ssd
  volumes:
  - name: cache
    emptyDir:
      medium: Memory
      sizeLimit: 64Mi
  - name: logs
    hostPath:
      path: /var/log/app
      type: DirectoryOrCreate
  containers:
  - name: api
    image: registry.local:5000/shop/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    command: ["/bin/api"]
    args: ["--port=8080", "--verbose"]
    workingDir: /srv
    env:
    - name: MODE
      value: production
    - name: EMPTY
    ports:
    - name: http
      containerPort: 8080
    - containerPort: 9000
      protocol: UDP
      hostPort: 9000
    resources:
      requests:
        cpu: 0.5
        memory: 128Mi
      limits:
        cpu: 1
        memory: 1e9
    volumeMounts:
    - name: cache
      mountPath: /cache
    - name: logs
      mountPath: /var/log/app
      readOnly: true
    livenessProbe:
      httpGet:
        path: /live
        port: 8080
        httpHeaders:
        - name: X-Probe
          value: "1"
      initialDelaySeconds: 5
      failureThreshold: 5
    readinessProbe:
      tcpSocket:
        port: http
    startupProbe:
      exec:
        command: [cat, /tmp/ready]
  - name: sidecar
    image: busybox
    command:
    - sh
    - -c
    - |
      while true; do
        date >> /var/log/app/tick
        sleep 5
      done
    volumeMounts:
    - name: logs
      mountPath: /var/log/app
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - key: kubernetes.io/arch
            operator: In
            values: [amd64, arm64]
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        preference:
          matchExpressions:
          - key: zone
            operator: NotIn
            values: [z3]
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              app: shop
  tolerations:
  - key: dedicated
    operator: Equal
    value: shop
    effect: NoSchedule
  - key: node.kubernetes.io/unreachable
    operator: Exists
    effect: NoExecute
    tolerationSeconds: 60
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchExpressions:
      - key: app
        operator: Exists
`

// manifestTestKubectl is what kubectl create deployment / service
// --dry-run=client -o yaml write.
const manifestTestKubectl = `apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: web
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: web
    spec:
      containers:
      - image: nginx
        name: nginx
        resources: {}
status: {}
---
apiVersion: v1
kind: Service
metadata:
  creationTimestamp: null
  labels:
    app: web
  name: web
spec:
  ports:
  - name: 80-8080
    port: 80
    protocol: TCP
    targetPort: 8080
  selector:
    app: web
  type: ClusterIP
status:
  loadBalancer: {}
`

const manifestTestNode = `apiVersion: v1
kind: Node
metadata:
  name: node1
  labels:
    zone: z1
spec:
  podCIDR: 10.244.1.0/24
  taints:
  - key: dedicated
    value: shop
    effect: NoSchedule
status:
  capacity:
    cpu: 4
    memory: 8Gi
  allocatable:
    cpu: 3500m
    memory: 7Gi
  raftRole: leader
`

const manifestTestEndpoints = `apiVersion: v1
kind: Endpoints
metadata:
  name: web
subsets:
- addresses:
  - ip: 10.244.1.5
    nodeName: node1
    targetRef:
      kind: Pod
      name: web-1
  notReadyAddresses:
  - ip: 10.244.2.7
  ports:
  - name: http
    port: 8080
`

func manifestTestDecodeOne(t *testing.T, data string) Resource {
	t.Helper()
	objs, err := DecodeManifests([]byte(data))
	if err != nil {
		t.Fatalf("DecodeManifests: %v", err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	return objs[0]
}

func TestDecodeDeploymentAndService(t *testing.T) {
	objs, err := DecodeManifests([]byte(manifestTestWeb))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want 2", len(objs))
	}
	d, ok := objs[0].(*Deployment)
	if !ok {
		t.Fatalf("first object is %T", objs[0])
	}
	if d.GetApiVersion() != "apps/v1" || d.GetKind() != "Deployment" || d.GetMetadata().GetName() != "web" {
		t.Errorf("type meta or name: %v", d)
	}
	if d.GetSpec().GetReplicas() != 3 || d.GetSpec().Replicas == nil {
		t.Errorf("replicas = %v", d.GetSpec().Replicas)
	}
	ru := d.GetSpec().GetStrategy().GetRollingUpdate()
	if ru.GetMaxSurge().GetNumberValue() != 1 || ru.GetMaxUnavailable() == nil || ru.GetMaxUnavailable().GetNumberValue() != 0 {
		t.Errorf("rollingUpdate = %v", ru)
	}
	tmpl := d.GetSpec().GetTemplate()
	if got := tmpl.GetMetadata().GetLabels()["app.kubernetes.io/version"]; got != "1.25" {
		t.Errorf("quoted label value = %q", got)
	}
	c := tmpl.GetSpec().GetContainers()[0]
	if c.GetImage() != "nginx:1.25" || c.GetPorts()[0].GetContainerPort() != 80 {
		t.Errorf("container = %v", c)
	}
	if c.GetResources() == nil {
		t.Errorf("resources: {} should be set, empty")
	}
	if p := c.GetReadinessProbe().GetHttpGet().GetPort().GetStringValue(); p != "http" {
		t.Errorf("probe port = %q", p)
	}
	s, ok := objs[1].(*Service)
	if !ok {
		t.Fatalf("second object is %T", objs[1])
	}
	if got := s.GetSpec().GetPorts()[0].GetTargetPort().GetStringValue(); got != "http" {
		t.Errorf("targetPort[0] = %v", s.GetSpec().GetPorts()[0].GetTargetPort())
	}
	if got := s.GetSpec().GetPorts()[1].GetTargetPort().GetNumberValue(); got != 9090 {
		t.Errorf("targetPort[1] = %v", s.GetSpec().GetPorts()[1].GetTargetPort())
	}
	for _, r := range objs {
		Default(r)
		if err := Validate(r); err != nil {
			t.Errorf("%s: %v", KindOf(r), err)
		}
	}
}

func TestDecodeMultiContainerPod(t *testing.T) {
	p := manifestTestDecodeOne(t, manifestTestPod).(*Pod)
	spec := p.GetSpec()
	if p.GetMetadata().GetNamespace() != "shop" || p.GetMetadata().GetAnnotations()["example.com/owner"] != "team-a" {
		t.Errorf("metadata = %v", p.GetMetadata())
	}
	if len(spec.GetContainers()) != 2 || len(spec.GetVolumes()) != 2 {
		t.Fatalf("containers/volumes: %v", spec)
	}
	api := spec.GetContainers()[0]
	res := api.GetResources()
	want := map[string]string{"cpu": "0.5", "memory": "128Mi"}
	if fmt.Sprint(res.GetRequests()) != fmt.Sprint(want) {
		t.Errorf("requests = %v, want %v", res.GetRequests(), want)
	}
	want = map[string]string{"cpu": "1", "memory": "1e9"}
	if fmt.Sprint(res.GetLimits()) != fmt.Sprint(want) {
		t.Errorf("limits = %v, want %v", res.GetLimits(), want)
	}
	if api.GetEnv()[1].GetName() != "EMPTY" || api.GetEnv()[1].GetValue() != "" {
		t.Errorf("env = %v", api.GetEnv())
	}
	if api.GetLivenessProbe().GetHttpGet().GetPort().GetNumberValue() != 8080 {
		t.Errorf("liveness port = %v", api.GetLivenessProbe().GetHttpGet().GetPort())
	}
	if got := api.GetStartupProbe().GetExec().GetCommand(); len(got) != 2 || got[0] != "cat" {
		t.Errorf("startup command = %v", got)
	}
	if spec.GetVolumes()[0].GetEmptyDir().GetSizeLimit() != "64Mi" || spec.GetVolumes()[1].GetHostPath().GetPath() != "/var/log/app" {
		t.Errorf("volumes = %v", spec.GetVolumes())
	}
	if !strings.HasPrefix(spec.GetContainers()[1].GetCommand()[2], "while true; do\n  date") {
		t.Errorf("block scalar = %q", spec.GetContainers()[1].GetCommand()[2])
	}
	terms := spec.GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution().GetNodeSelectorTerms()
	if len(terms) != 1 || terms[0].GetMatchExpressions()[0].GetValues()[1] != "arm64" {
		t.Errorf("node affinity = %v", terms)
	}
	if tol := spec.GetTolerations()[1]; tol.GetTolerationSeconds() != 60 || tol.TolerationSeconds == nil {
		t.Errorf("toleration = %v", tol)
	}
	if spec.GetTopologySpreadConstraints()[0].GetLabelSelector().GetMatchExpressions()[0].GetOperator() != "Exists" {
		t.Errorf("spread = %v", spec.GetTopologySpreadConstraints())
	}
	Default(p)
	if err := Validate(p); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if got := api.GetImagePullPolicy(); got != "IfNotPresent" {
		t.Errorf("pull policy of a digest = %q", got)
	}
	if got := spec.GetContainers()[1].GetImagePullPolicy(); got != "Always" {
		t.Errorf("pull policy of an untagged image = %q", got)
	}
}

func TestDecodeKubectlGenerated(t *testing.T) {
	objs, err := DecodeManifests([]byte(manifestTestKubectl))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o)
		if err := Validate(o); err != nil {
			t.Errorf("%s: %v", KindOf(o), err)
		}
	}
}

func TestDecodeNodeAndEndpoints(t *testing.T) {
	n := manifestTestDecodeOne(t, manifestTestNode).(*Node)
	if n.GetStatus().GetCapacity()["cpu"] != "4" || n.GetStatus().GetAllocatable()["cpu"] != "3500m" || n.GetSpec().GetTaints()[0].GetEffect() != "NoSchedule" {
		t.Errorf("node = %v", n)
	}
	Default(n)
	if err := Validate(n); err != nil {
		t.Errorf("Validate(node): %v", err)
	}
	if n.GetMetadata().GetNamespace() != "" {
		t.Errorf("a node got namespace %q", n.GetMetadata().GetNamespace())
	}
	e := manifestTestDecodeOne(t, manifestTestEndpoints).(*Endpoints)
	if a := e.GetSubsets()[0].GetAddresses()[0]; a.GetNodeName() != "node1" || a.GetTargetRef().GetName() != "web-1" {
		t.Errorf("endpoints = %v", e)
	}
	Default(e)
	if err := Validate(e); err != nil {
		t.Errorf("Validate(endpoints): %v", err)
	}
}

func TestDecodeForms(t *testing.T) {
	pod := func(name string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`
	}
	tests := []struct {
		name  string
		in    string
		names []string
	}{
		{"json object", pod("a"), []string{"a"}},
		{"json indented with tabs", "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Pod\",\n\t\"metadata\": {\"name\": \"a\"}\n}\n", []string{"a"}},
		{"json list", `{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[` + pod("a") + `,` + pod("b") + `]}`, []string{"a", "b"}},
		{"json items only", `{"items":[` + pod("a") + `]}`, []string{"a"}},
		{"json array", `[` + pod("a") + `,` + pod("b") + `]`, []string{"a", "b"}},
		{"json stream", pod("a") + "\n" + pod("b") + "\n", []string{"a", "b"}},
		{"json with BOM", "\xef\xbb\xbf" + pod("a"), []string{"a"}},
		{"typed list", `{"apiVersion":"v1","kind":"PodList","items":[{"metadata":{"name":"a"}}]}`, []string{"a"}},
		{"yaml list", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: b}\n", []string{"a", "b"}},
		{"yaml flow mapping", "{apiVersion: v1, kind: Pod, metadata: {name: a}}\n", []string{"a"}},
		{"empty documents", "---\n---\n# nothing\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n---\n...\n---\n", []string{"a"}},
		{"explicit nulls", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels:\nspec:\n  containers: ~\n", []string{"a"}},
		{"nothing", "", nil},
		{"only comments", "# a\n# b\n", nil},
		{"document end markers", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n...\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n", []string{"a", "b"}},
		{"kubectl generated", manifestTestKubectl, []string{"web", "web"}},
		{"shoal apiVersion", "apiVersion: shoal/v1\nkind: Deployment\nmetadata: {name: a}\n", []string{"a"}},
		{"anchors and merge keys", `apiVersion: v1
kind: Pod
metadata:
  name: a
  labels: &labels
    app: a
spec:
  nodeSelector: *labels
  containers:
  - &base
    name: one
    image: busybox
    env: [{name: A, value: x}]
  - <<: *base
    name: two
`, []string{"a"}},
		{"yaml windows line endings", "apiVersion: v1\r\nkind: Pod\r\nmetadata:\r\n  name: a\r\n", []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := DecodeManifests([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range objs {
				names = append(names, o.GetMetadata().GetName())
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.names) {
				t.Errorf("names = %v, want %v", names, tc.names)
			}
		})
	}
}

func TestDecodeMergeKeys(t *testing.T) {
	p := manifestTestDecodeOne(t, `apiVersion: v1
kind: Pod
metadata:
  name: a
spec:
  containers:
  - &base
    name: one
    image: busybox
    env: [{name: A, value: x}]
  - <<: *base
    name: two
`).(*Pod)
	c := p.GetSpec().GetContainers()
	if c[1].GetName() != "two" || c[1].GetImage() != "busybox" || c[1].GetEnv()[0].GetValue() != "x" {
		t.Errorf("merged container = %v", c[1])
	}
}

func TestDecodeTypedListFillsKind(t *testing.T) {
	objs, err := DecodeManifests([]byte(`{"apiVersion":"apps/v1","kind":"DeploymentList","items":[{"metadata":{"name":"a"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d, ok := objs[0].(*Deployment)
	if !ok || d.GetApiVersion() != "apps/v1" || d.GetKind() != "Deployment" {
		t.Errorf("got %T %v", objs[0], objs[0])
	}
}

func TestDecodeQuantitiesAsNumbers(t *testing.T) {
	p := manifestTestDecodeOne(t, `apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  volumes:
  - name: v
    emptyDir: {sizeLimit: 1000000}
  containers:
  - name: c
    image: busybox
    resources:
      limits: {cpu: 2, memory: 1.5e9}
      requests: {cpu: 0.25, memory: 0x100}
`).(*Pod)
	res := p.GetSpec().GetContainers()[0].GetResources()
	got := fmt.Sprintln(res.GetLimits(), res.GetRequests(), p.GetSpec().GetVolumes()[0].GetEmptyDir().GetSizeLimit())
	if want := "map[cpu:2 memory:1.5e9] map[cpu:0.25 memory:256] 1000000\n"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// JSON numbers too.
	p = manifestTestDecodeOne(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{"cpu":1.5}}}]}}`).(*Pod)
	if got := p.GetSpec().GetContainers()[0].GetResources().GetLimits()["cpu"]; got != "1.5" {
		t.Errorf("json cpu = %q", got)
	}
}

func TestDecodeIntOrString(t *testing.T) {
	svc := func(target string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n    targetPort: " + target + "\n"
	}
	tests := []struct {
		target string
		want   *structpb.Value
		err    string
	}{
		{"8080", structpb.NewNumberValue(8080), ""},
		{"http", structpb.NewStringValue("http"), ""},
		{`"8080"`, structpb.NewStringValue("8080"), ""},
		{"80.5", nil, `spec.ports[0].targetPort: expected an integer or a string, got number 80.5`},
		{"true", nil, `spec.ports[0].targetPort: expected an integer or a string, got boolean true`},
		{"[80]", nil, `spec.ports[0].targetPort: expected an integer or a string, got array`},
		{"{port: 80}", nil, `spec.ports[0].targetPort: expected an integer or a string, got object`},
		{"9999999999", nil, `spec.ports[0].targetPort: integer 9999999999 is out of range [-2147483648, 2147483647]`},
	}
	for _, tc := range tests {
		objs, err := DecodeManifests([]byte(svc(tc.target)))
		if tc.err != "" {
			want := "document 1 (Service default/s): " + tc.err
			if err == nil || err.Error() != want {
				t.Errorf("targetPort %s: error %v, want %s", tc.target, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("targetPort %s: %v", tc.target, err)
			continue
		}
		got := objs[0].(*Service).GetSpec().GetPorts()[0].GetTargetPort()
		if !proto.Equal(got, tc.want) {
			t.Errorf("targetPort %s = %v, want %v", tc.target, got, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	deploy := strings.Replace(manifestTestWeb, "      - image: nginx:1.25\n", "      - imagee: nginx:1.25\n", 1)
	tests := []struct {
		name, in, want string
	}{
		{"unknown field in a deep list", deploy,
			"document 1 (Deployment default/web): spec.template.spec.containers[0].imagee: unknown field"},
		{"type mismatch", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: three\n",
			`document 1 (Deployment default/web): spec.replicas: expected an integer, got string "three"`},
		{"float for an integer", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1.5\n",
			`document 1 (Deployment default/web): spec.replicas: expected an integer, got number 1.5`},
		{"integer out of range", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3000000000\n",
			`document 1 (Deployment default/web): spec.replicas: integer 3000000000 is out of range [-2147483648, 2147483647]`},
		{"proto name refused", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    ports:\n    - container_port: 80\n",
			`document 1 (Pod default/p): spec.containers[0].ports[0].container_port: unknown field (did you mean "containerPort"?)`},
		{"number for a string", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    env:\n    - name: PORT\n      value: 8080\n",
			`document 1 (Pod default/p): spec.containers[0].env[0].value: expected a string, got number 8080`},
		{"label value number", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    version: 1.0\n    app.kubernetes.io/name: 2\n",
			`document 1 (Pod default/p): metadata.labels["app.kubernetes.io/name"]: expected a string, got number 2; metadata.labels.version: expected a string, got number 1.0`},
		{"string for a boolean", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    volumeMounts:\n    - {name: v, mountPath: /v, readOnly: \"true\"}\n",
			`document 1 (Pod default/p): spec.containers[0].volumeMounts[0].readOnly: expected a boolean, got string "true"`},
		{"object for an array", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    name: c\n",
			`document 1 (Pod default/p): spec.containers: expected an array, got object`},
		{"scalar for an object", "apiVersion: v1\nkind: Pod\nmetadata: web\n",
			`document 1 (Pod): metadata: expected an object, got string "web"`},
		{"null in a list", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  -\n",
			`document 1 (Pod default/p): spec.containers[0]: expected an object, got null`},
		{"quantity of the wrong type", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    resources: {limits: {cpu: true}}\n",
			`document 1 (Pod default/p): spec.containers[0].resources.limits.cpu: expected a quantity (a string or a number), got boolean true`},
		{"several errors", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, nam: q}\nspec: {hostNetwork: true}\nextra: 1\n",
			`document 1 (Pod default/p): extra: unknown field; metadata.nam: unknown field; spec.hostNetwork: unknown field`},
		{"apiVersion missing", "kind: Pod\nmetadata: {name: p}\n",
			`document 1 (Pod default/p): apiVersion: required`},
		{"kind missing", "apiVersion: v1\nmetadata: {name: p}\n",
			`document 1: kind: required`},
		{"both missing", "metadata: {name: p}\n",
			`document 1: apiVersion: required; kind: required`},
		{"kind not a string", "apiVersion: v1\nkind: [Pod]\n",
			`document 1: kind: expected a string, got array`},
		{"wrong apiVersion", "apiVersion: v1\nkind: Deployment\nmetadata: {name: web}\n",
			`document 1 (Deployment default/web): apiVersion: "v1" is not an apiVersion of Deployment: use apps/v1 (or shoal/v1)`},
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
			`document 1: kind: unknown kind "ConfigMap": shoal serves Node, Pod, Deployment, Service, Endpoints, Event, ControllerRevision`},
		{"kind in the wrong case", "apiVersion: v1\nkind: pod\nmetadata: {name: c}\n",
			`document 1: kind: unknown kind "pod" (did you mean "Pod"?)`},
		{"second document", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n# comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIp: None}\n",
			`document 2 (Service default/s): spec.clusterIp: unknown field (did you mean "clusterIP"?)`},
		{"service status with something in it", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nstatus: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}\n",
			`document 1 (Service default/s): status: unknown field`},
		{"node namespace shown without default", "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {cidr: x}\n",
			`document 1 (Node n1): spec.cidr: unknown field`},
		{"not an object", "hello\n",
			`document 1: expected an object, got string "hello"`},
		{"list item", `{"kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}},{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b","namespace":"x"},"spec":{"containers":[{"name":5}]}}]}`,
			`document 1, item 2 (Pod x/b): spec.containers[0].name: expected a string, got number 5`},
		{"list item not an object", `{"kind":"List","items":[1]}`,
			`document 1, item 1: expected an object, got number 1`},
		{"unknown list field", "kind: List\nitems: []\nextra: 1\n",
			`document 1 (List): extra: unknown field`},
		{"yaml syntax error", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n   namespace: x\n",
			`document 2: yaml: line 9: mapping values are not allowed in this context`},
		{"yaml tab indentation", "apiVersion: v1\nkind: Pod\nmetadata:\n\tname: b\n",
			`document 1: yaml: line 4: found character that cannot start any token`},
		{"yaml duplicate key", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: {x: y}\n  name: b\n",
			`document 1: yaml: line 6: metadata.name: duplicate field`},
		{"json duplicate key", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a",` + "\n" + `"name":"b"}}`,
			`document 1: json: line 2: metadata.name: duplicate field`},
		{"json syntax error", "{\"apiVersion\": \"v1\",\n \"kind\": \"Pod\"\n \"metadata\": {\"name\": \"a\"}\n}\n",
			`document 1: json: line 3: invalid character '"' after object key:value pair`},
		{"json trailing comma is YAML", "{\"apiVersion\": \"v1\",\n \"kind\": \"Pod\",\n \"metadata\": {\"name\": \"a\"},\n \"x\": 1,\n}\n",
			`document 1 (Pod default/a): x: unknown field`},
		{"json truncated", `{"apiVersion": "v1", "kind": "Pod"`,
			`document 1: json: unexpected end of input`},
		{"unknown yaml tag", "apiVersion: v1\nkind: !custom Pod\n",
			`document 1: yaml: line 2: kind: unsupported YAML tag !custom`},
		{"unknown alias", "apiVersion: v1\nkind: *nothing\n",
			`document 1: yaml: unknown anchor 'nothing' referenced`},
		{"infinite number", "apiVersion: v1\nkind: Pod\nmetadata: {name: a, generation: .inf}\n",
			`document 1: yaml: line 3: metadata.generation: .inf is not a finite number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := DecodeManifests([]byte(tc.in))
			if err == nil {
				t.Fatalf("no error; got %d objects", len(objs))
			}
			if objs != nil {
				t.Errorf("objects returned with an error")
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tc.want)
			}
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Errorf("error is %T, not a *ManifestError", err)
			}
		})
	}
}

func TestDecodeManyErrorsInOneObject(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n")
	for i := 0; i < manifestMaxFieldErrors+3; i++ {
		fmt.Fprintf(&b, "  x%02d: 1\n", i)
	}
	_, err := DecodeManifests([]byte(b.String()))
	if err == nil || !strings.HasSuffix(err.Error(), "metadata.x19: unknown field; and 3 more errors") {
		t.Errorf("error: %v", err)
	}
}

func TestDecodeErrorsOfSeveralDocuments(t *testing.T) {
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: a, x: 1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: c, y: 1}\n"
	_, err := DecodeManifests([]byte(in))
	want := "document 1 (Pod default/a): metadata.x: unknown field\ndocument 3 (Pod default/c): metadata.y: unknown field"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got: %v\nwant: %s", err, want)
	}
	var me *ManifestError
	if !errors.As(err, &me) || me.Document != 1 || me.Fields[0].Path != "metadata.x" {
		t.Errorf("errors.As: %#v", me)
	}
}

func TestDecodeLimits(t *testing.T) {
	var nestedYAML strings.Builder
	for i := 0; i <= MaxManifestDepth; i++ {
		nestedYAML.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	nestedJSON := `{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":` + strings.Repeat(`{"a":`, MaxManifestDepth) + `1` + strings.Repeat("}", MaxManifestDepth) + `}}`
	okDepth := strings.Repeat("[", MaxManifestDepth) + strings.Repeat("]", MaxManifestDepth)
	var manyDocs strings.Builder
	for i := 0; i <= MaxManifestObjects; i++ {
		fmt.Fprintf(&manyDocs, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p%d}\n", i)
	}
	var manyItems strings.Builder
	manyItems.WriteString(`{"kind":"List","items":[`)
	for i := 0; i <= MaxManifestObjects; i++ {
		if i > 0 {
			manyItems.WriteByte(',')
		}
		fmt.Fprintf(&manyItems, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p%d"}}`, i)
	}
	manyItems.WriteString("]}")
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for _, c := range "bcdefghij" {
		prev := string(c - 1)
		bomb += fmt.Sprintf("%c: &%c [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n", c, c, prev, prev, prev, prev, prev, prev, prev, prev, prev, prev)
	}
	selfAlias := "a: &a [*a]\n"
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"too large", bytes.Repeat([]byte("#"), MaxManifestBytes+1), "manifest is 8388609 bytes, more than the limit of 8388608 bytes (8 MiB)"},
		{"too many values", []byte("[" + strings.Repeat("1,", manifestMaxNodes) + "1]"), "manifest is too complex: up to 500002 values, more than the limit of 500000"},
		{"yaml too deep", []byte(nestedYAML.String()), "document 1: yaml: line 65: " + strings.TrimSuffix(strings.Repeat("a.", MaxManifestDepth), ".") + ": nested deeper than 64 levels"},
		{"json far too deep", []byte(strings.Repeat("[", 20000)), "document 1: json: line 1: " + strings.Repeat("[0]", MaxManifestDepth) + ": nested deeper than 64 levels"},
		{"yaml far too deep", []byte("a: " + strings.Repeat("[", 20000)), "document 1: yaml: nested deeper than 64 levels"},
		{"yaml far too deep in blocks", []byte(strings.Repeat("- ", 20000) + "x\n"), "document 1: yaml: nested deeper than 64 levels"},
		{"json too deep", []byte(nestedJSON), "document 1: json: line 1: metadata.annotations.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a: nested deeper than 64 levels"},
		{"too many documents", []byte(manyDocs.String()), "document 1001 (Pod default/p1000): manifest has more than 1000 objects"},
		{"too many list items", []byte(manyItems.String()), "document 1, item 1001 (Pod default/p1000): manifest has more than 1000 objects"},
		{"too many wrong objects", []byte("[" + strings.Repeat("1,", 200) + "1]"), manifestTestWrongItems(manifestMaxErrors)},
		{"alias bomb", []byte(bomb), "document 1: yaml: line 1: e[7][0][7][5][2]: aliases expand to more than 100000 values"},
		{"alias to itself", []byte(selfAlias), "document 1: yaml: line 1: a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested deeper than 64 levels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeManifests(tc.in)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
	// Just within the limits.
	if _, err := DecodeManifests([]byte(okDepth)); err == nil || !strings.Contains(err.Error(), "expected an object, got array") {
		t.Errorf("64 levels: %v", err)
	}
}

func manifestTestWrongItems(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "document 1, item %d: expected an object, got number 1\n", i)
	}
	fmt.Fprintf(&b, "stopped after %d wrong objects", n)
	return b.String()
}

func TestDecodeYAMLDetails(t *testing.T) {
	pod := func(meta string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata:\n" + meta
	}
	tests := []struct {
		name, in string
		check    func(p *Pod) bool
		err      string
	}{
		{"timestamp stays a string", pod("  name: p\n  creationTimestamp: 2024-01-02T03:04:05Z\n"),
			func(p *Pod) bool { return p.GetMetadata().GetCreationTimestamp() == "2024-01-02T03:04:05Z" }, ""},
		{"hex and octal integers", pod("  name: p\n  generation: 0x10\n"),
			func(p *Pod) bool { return p.GetMetadata().GetGeneration() == 16 }, ""},
		{"explicit string tag", pod("  name: !!str 123\n"),
			func(p *Pod) bool { return p.GetMetadata().GetName() == "123" }, ""},
		{"booleans", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    volumeMounts: [{name: v, mountPath: /v, readOnly: True}]\n",
			func(p *Pod) bool { return p.GetSpec().GetContainers()[0].GetVolumeMounts()[0].GetReadOnly() }, ""},
		{"alias as a key", pod("  name: &k p\n  labels: {*k : v}\n"),
			func(p *Pod) bool { return p.GetMetadata().GetLabels()["p"] == "v" }, ""},
		{"merge of several mappings", pod("  name: p\n  labels:\n    <<: [{a: '1', b: '1'}, {b: '2', c: '2'}]\n    c: '3'\n"),
			func(p *Pod) bool { return fmt.Sprint(p.GetMetadata().GetLabels()) == "map[a:1 b:1 c:3]" }, ""},
		{"numeric key", pod("  name: p\n  labels: {80: http}\n"),
			func(p *Pod) bool { return p.GetMetadata().GetLabels()["80"] == "http" }, ""},
		{"merge of a scalar", pod("  name: p\n  labels: {<<: x}\n"), nil,
			`document 1: yaml: line 5: metadata.labels: a merge (<<) needs a mapping, got string "x"`},
		{"complex key", pod("  name: p\n  labels: {[a]: b}\n"), nil,
			`document 1: yaml: line 5: metadata.labels: a mapping key must be a string`},
		{"empty key", pod("  name: p\n  labels: {? : b}\n"), nil,
			`document 1: yaml: line 5: metadata.labels: a mapping key must not be empty`},
		{"set tag", pod("  name: p\n  labels: !!set {a}\n"), nil,
			`document 1: yaml: line 5: metadata.labels: unsupported YAML tag !!set`},
		{"integer too large", pod("  name: p\n  generation: 99999999999999999999999\n"), nil,
			`document 1 (Pod default/p): metadata.generation: integer 99999999999999999999999 is out of range [-2147483648, 2147483647]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := DecodeManifests([]byte(tc.in))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("error:\n got: %v\nwant: %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(objs[0].(*Pod)) {
				t.Errorf("got %v", objs[0])
			}
		})
	}
}
