package api

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

const validTestPodYAML = `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: c
    image: busybox
    ports: [{name: http, containerPort: 80}]
    resources:
      limits: {cpu: 500m, memory: 64Mi}
      requests: {cpu: 250m, memory: 32Mi}
    volumeMounts: [{name: data, mountPath: /data}]
    livenessProbe: {httpGet: {port: http}}
`

// validTestObject decodes one object and defaults it.
func validTestObject(t *testing.T, manifest string, index int) Resource {
	t.Helper()
	objs, err := DecodeManifests([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	Default(objs[index])
	return objs[index]
}

type validTestCase[T Resource] struct {
	name   string
	change func(T)
	// want is the whole error, or its beginning when it ends with "...";
	// "" means valid.
	want string
}

func runValidTests[T Resource](t *testing.T, base func() T, tests []validTestCase[T]) {
	t.Helper()
	if err := Validate(base()); err != nil {
		t.Fatalf("base object: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.change(o)
			err := Validate(o)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want == "":
			case err == nil:
				t.Errorf("no error, want %s", tc.want)
			case strings.HasSuffix(tc.want, "..."):
				if !strings.HasPrefix(err.Error(), strings.TrimSuffix(tc.want, "...")) {
					t.Errorf("error:\n got: %s\nwant: %s", err, tc.want)
				}
			case err.Error() != tc.want:
				t.Errorf("error:\n got: %s\nwant: %s", err, tc.want)
			}
			if err != nil {
				var fe FieldErrors
				if !errors.As(err, &fe) || len(fe) == 0 {
					t.Errorf("error is %T, not FieldErrors", err)
				}
			}
		})
	}
}

func TestValidatePod(t *testing.T) {
	base := func() *Pod { return validTestObject(t, validTestPodYAML, 0).(*Pod) }
	c0 := func(p *Pod) *Container { return p.Spec.Containers[0] }
	probe := func(port *structpb.Value) *Probe { return &Probe{TcpSocket: &TCPSocketAction{Port: port}} }
	runValidTests(t, base, []validTestCase[*Pod]{
		{"valid as written", func(p *Pod) {}, ""},
		{"name missing", func(p *Pod) { p.Metadata.Name = "" }, "metadata.name: required"},
		{"name invalid", func(p *Pod) { p.Metadata.Name = "Web_1" }, `metadata.name: "Web_1" is not a lowercase RFC 1123 subdomain...`},
		{"name with dots", func(p *Pod) { p.Metadata.Name = "web.v1" }, ""},
		{"name too long", func(p *Pod) { p.Metadata.Name = strings.Repeat("a", 254) }, `metadata.name: "aaaa...`},
		{"namespace invalid", func(p *Pod) { p.Metadata.Namespace = "Prod" }, `metadata.namespace: "Prod" is not a lowercase RFC 1123 label...`},
		{"namespace with a dot", func(p *Pod) { p.Metadata.Namespace = "a.b" }, `metadata.namespace: "a.b" is not a lowercase RFC 1123 label...`},
		{"label key", func(p *Pod) { p.Metadata.Labels = map[string]string{"-bad": "x"} }, `metadata.labels: key "-bad": the name must consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit`},
		{"label key prefix", func(p *Pod) { p.Metadata.Labels = map[string]string{"Example.com/x": "x"} }, `metadata.labels: key "Example.com/x": prefix "Example.com" is not a lowercase RFC 1123 subdomain...`},
		{"label key with prefix", func(p *Pod) { p.Metadata.Labels = map[string]string{"app.kubernetes.io/name": "web", "x": ""} }, ""},
		{"label value", func(p *Pod) { p.Metadata.Labels = map[string]string{"a": "b c"} }, `metadata.labels: key "a": value "b c" must be empty or consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit`},
		{"label value too long", func(p *Pod) { p.Metadata.Labels = map[string]string{"a": strings.Repeat("x", 64)} }, `metadata.labels: key "a": value "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..." is longer than 63 characters`},
		{"annotation key", func(p *Pod) { p.Metadata.Annotations = map[string]string{"a b": "anything goes here"} }, `metadata.annotations: key "a b": the name must...`},
		{"annotations too large", func(p *Pod) { p.Metadata.Annotations = map[string]string{"a": strings.Repeat("x", 300<<10)} }, `metadata.annotations: too long: 307201 bytes, at most 262144`},
		{"wrong kind", func(p *Pod) { p.Kind = "Deployment" }, `kind: must be Pod, got "Deployment"`},
		{"wrong apiVersion", func(p *Pod) { p.ApiVersion = "apps/v1" }, `apiVersion: "apps/v1" is not an apiVersion of Pod: use v1 (or shoal/v1)`},
		{"shoal apiVersion", func(p *Pod) { p.ApiVersion = "shoal/v1" }, ""},
		{"no containers", func(p *Pod) { p.Spec.Containers = nil }, "spec.containers: required: a pod runs at least one container"},
		{"no spec", func(p *Pod) { p.Spec = nil }, "spec.containers: required: a pod runs at least one container"},
		{"image missing", func(p *Pod) { c0(p).Image = "" }, "spec.containers[0].image: required"},
		{"image with spaces", func(p *Pod) { c0(p).Image = " busybox" }, "spec.containers[0].image: must not have leading or trailing whitespace"},
		{"container name missing", func(p *Pod) { c0(p).Name = "" }, "spec.containers[0].name: required"},
		{"container name invalid", func(p *Pod) { c0(p).Name = "my.container" }, `spec.containers[0].name: "my.container" is not a lowercase RFC 1123 label...`},
		{"duplicate container", func(p *Pod) {
			p.Spec.Containers = append(p.Spec.Containers, &Container{Name: "c", Image: "x"})
		}, `spec.containers[1].name: duplicate name "c"`},
		{"pull policy", func(p *Pod) { c0(p).ImagePullPolicy = "Sometimes" }, `spec.containers[0].imagePullPolicy: unsupported value "Sometimes": must be Always, IfNotPresent or Never`},
		{"port 0", func(p *Pod) { c0(p).Ports[0].ContainerPort = 0 }, "spec.containers[0].ports[0].containerPort: must be between 1 and 65535, got 0"},
		{"port too large", func(p *Pod) { c0(p).Ports[0].ContainerPort = 70000 }, "spec.containers[0].ports[0].containerPort: must be between 1 and 65535, got 70000"},
		{"host port", func(p *Pod) { c0(p).Ports[0].HostPort = -1 }, "spec.containers[0].ports[0].hostPort: must be between 1 and 65535, got -1"},
		{"duplicate host port", func(p *Pod) {
			c0(p).Ports = append(c0(p).Ports, &ContainerPort{ContainerPort: 81, HostPort: 8080}, &ContainerPort{ContainerPort: 82, HostPort: 8080, Protocol: "TCP"}, &ContainerPort{ContainerPort: 83, HostPort: 8080, Protocol: "UDP"})
		}, "spec.containers[0].ports[2].hostPort: duplicate host port 8080/TCP"},
		{"protocol", func(p *Pod) { c0(p).Ports[0].Protocol = "SCTP" }, `spec.containers[0].ports[0].protocol: unsupported value "SCTP": must be TCP or UDP`},
		{"port name too long", func(p *Pod) { c0(p).Ports[0].Name = "abcdefghijklmnop" }, `spec.containers[0].ports[0].name: port name "abcdefghijklmnop" is longer than 15 characters; spec.containers[0].livenessProbe.httpGet.port: port "http" is not one of the container's named ports`},
		{"port name without letter", func(p *Pod) { c0(p).Ports[0].Name = "80"; c0(p).LivenessProbe = nil }, `spec.containers[0].ports[0].name: port name "80" must contain at least one letter`},
		{"port name with --", func(p *Pod) { c0(p).Ports[0].Name = "a--b"; c0(p).LivenessProbe = nil }, `spec.containers[0].ports[0].name: port name "a--b" must not contain "--"`},
		{"port name upper case", func(p *Pod) { c0(p).Ports[0].Name = "Http"; c0(p).LivenessProbe = nil }, `spec.containers[0].ports[0].name: port name "Http" must consist of lowercase letters, digits and '-'`},
		{"duplicate port name", func(p *Pod) {
			p.Spec.Containers = append(p.Spec.Containers, &Container{Name: "d", Image: "x", Ports: []*ContainerPort{{Name: "http", ContainerPort: 81}}})
		}, `spec.containers[1].ports[0].name: duplicate port name "http"`},
		{"env name", func(p *Pod) { c0(p).Env = []*EnvVar{{Name: "A"}, {Name: "1ABC"}, {Name: ""}, {Name: "my.var-x"}} },
			`spec.containers[0].env[1].name: "1ABC" is not a valid environment variable name: letters, digits, '_', '-' and '.', not starting with a digit; spec.containers[0].env[2].name: required`},
		{"mount of an undeclared volume", func(p *Pod) { c0(p).VolumeMounts[0].Name = "cache" }, `spec.containers[0].volumeMounts[0].name: volume "cache" is not declared in the pod's volumes`},
		{"relative mount path", func(p *Pod) { c0(p).VolumeMounts[0].MountPath = "data" }, `spec.containers[0].volumeMounts[0].mountPath: must be an absolute path, got "data"`},
		{"duplicate mount path", func(p *Pod) {
			c0(p).VolumeMounts = append(c0(p).VolumeMounts, &VolumeMount{Name: "data", MountPath: "/data/"})
		}, `spec.containers[0].volumeMounts[1].mountPath: duplicate mount path "/data/"`},
		{"volume without source", func(p *Pod) { p.Spec.Volumes[0].EmptyDir = nil }, "spec.volumes[0]: must specify exactly one of emptyDir, hostPath"},
		{"volume with two sources", func(p *Pod) { p.Spec.Volumes[0].HostPath = &HostPathVolumeSource{Path: "/x"} }, "spec.volumes[0]: must specify exactly one of emptyDir, hostPath"},
		{"relative host path", func(p *Pod) { p.Spec.Volumes[0] = &Volume{Name: "data", HostPath: &HostPathVolumeSource{Path: "x"}} }, `spec.volumes[0].hostPath.path: must be an absolute path, got "x"`},
		{"host path type", func(p *Pod) {
			p.Spec.Volumes[0] = &Volume{Name: "data", HostPath: &HostPathVolumeSource{Path: "/x", Type: "Dir"}}
		}, `spec.volumes[0].hostPath.type: unsupported value "Dir"...`},
		{"emptyDir size", func(p *Pod) { p.Spec.Volumes[0].EmptyDir.SizeLimit = "1GB" }, `spec.volumes[0].emptyDir.sizeLimit: quantity "1GB": unknown suffix "GB"...`},
		{"emptyDir medium", func(p *Pod) { p.Spec.Volumes[0].EmptyDir.Medium = "Disk" }, `spec.volumes[0].emptyDir.medium: unsupported value "Disk": must be Memory`},
		{"duplicate volume", func(p *Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, &Volume{Name: "data", EmptyDir: &EmptyDirVolumeSource{}})
		}, `spec.volumes[1].name: duplicate name "data"`},
		{"restart policy", func(p *Pod) { p.Spec.RestartPolicy = "Sometimes" }, `spec.restartPolicy: unsupported value "Sometimes": must be Always, OnFailure or Never`},
		{"grace period", func(p *Pod) { p.Spec.TerminationGracePeriodSeconds = proto.Int32(-1) }, "spec.terminationGracePeriodSeconds: must be greater than or equal to 0, got -1"},
		{"probe with two handlers", func(p *Pod) { c0(p).LivenessProbe.Exec = &ExecAction{Command: []string{"true"}} }, "spec.containers[0].livenessProbe: must specify exactly one of exec, httpGet, tcpSocket"},
		{"probe without handler", func(p *Pod) { c0(p).ReadinessProbe = &Probe{} }, "spec.containers[0].readinessProbe: must specify exactly one of exec, httpGet, tcpSocket"},
		{"probe exec without command", func(p *Pod) { c0(p).ReadinessProbe = &Probe{Exec: &ExecAction{}} }, "spec.containers[0].readinessProbe.exec.command: required"},
		{"probe unknown port name", func(p *Pod) { c0(p).StartupProbe = probe(structpb.NewStringValue("metrics")) }, `spec.containers[0].startupProbe.tcpSocket.port: port "metrics" is not one of the container's named ports`},
		{"probe port number", func(p *Pod) { c0(p).StartupProbe = probe(structpb.NewNumberValue(0)) }, "spec.containers[0].startupProbe.tcpSocket.port: must be between 1 and 65535, got 0"},
		{"probe port fraction", func(p *Pod) { c0(p).StartupProbe = probe(structpb.NewNumberValue(80.5)) }, "spec.containers[0].startupProbe.tcpSocket.port: must be between 1 and 65535, got 80.5"},
		{"probe port missing", func(p *Pod) { c0(p).StartupProbe = probe(nil) }, "spec.containers[0].startupProbe.tcpSocket.port: required"},
		{"probe port of another type", func(p *Pod) { c0(p).StartupProbe = probe(structpb.NewBoolValue(true)) }, "spec.containers[0].startupProbe.tcpSocket.port: must be a port number or a port name"},
		{"probe scheme", func(p *Pod) { c0(p).LivenessProbe.HttpGet.Scheme = "FTP" }, `spec.containers[0].livenessProbe.httpGet.scheme: unsupported value "FTP": must be HTTP or HTTPS`},
		{"probe header", func(p *Pod) { c0(p).LivenessProbe.HttpGet.HttpHeaders = []*HTTPHeader{{Name: "Bad Header"}} }, `spec.containers[0].livenessProbe.httpGet.httpHeaders[0].name: "Bad Header" is not a valid HTTP header name`},
		{"probe numbers", func(p *Pod) { c0(p).LivenessProbe.PeriodSeconds = -1; c0(p).LivenessProbe.InitialDelaySeconds = -2 },
			"spec.containers[0].livenessProbe.initialDelaySeconds: must be greater than or equal to 0, got -2; spec.containers[0].livenessProbe.periodSeconds: must be greater than or equal to 0, got -1"},
		{"liveness success threshold", func(p *Pod) { c0(p).LivenessProbe.SuccessThreshold = 2 }, "spec.containers[0].livenessProbe.successThreshold: must be 1 for a liveness or startup probe, got 2"},
		{"readiness success threshold", func(p *Pod) {
			c0(p).ReadinessProbe = probe(structpb.NewNumberValue(80))
			c0(p).ReadinessProbe.SuccessThreshold = 2
		}, ""},
		{"cpu quantity", func(p *Pod) { c0(p).Resources.Limits["cpu"] = "abc" }, `spec.containers[0].resources.limits.cpu: quantity "abc": expected a number with an optional suffix...`},
		{"memory quantity", func(p *Pod) { c0(p).Resources.Requests["memory"] = "12Gb" }, `spec.containers[0].resources.requests.memory: quantity "12Gb": unknown suffix "Gb"...`},
		{"requests above limits", func(p *Pod) { c0(p).Resources.Requests["memory"] = "65Mi"; c0(p).Resources.Requests["cpu"] = "1" },
			"spec.containers[0].resources.requests.cpu: must be less than or equal to the cpu limit of 500m; spec.containers[0].resources.requests.memory: must be less than or equal to the memory limit of 64Mi"},
		{"requests equal to limits", func(p *Pod) { c0(p).Resources.Requests["cpu"] = "0.5" }, ""},
		{"unsupported resource", func(p *Pod) { c0(p).Resources.Limits["nvidia.com/gpu"] = "1" }, `spec.containers[0].resources.limits: unsupported resource "nvidia.com/gpu": shoal supports cpu or memory`},
		{"negative quantity", func(p *Pod) { c0(p).Resources.Limits["cpu"] = "-1" }, `spec.containers[0].resources.limits.cpu: quantity "-1": must not be negative`},
		{"node name", func(p *Pod) { p.Spec.NodeName = "Node_1" }, `spec.nodeName: "Node_1" is not a lowercase RFC 1123 subdomain...`},
		{"node selector", func(p *Pod) { p.Spec.NodeSelector = map[string]string{"disk": "s s d"} }, `spec.nodeSelector: key "disk": value "s s d" must be empty...`},
		{"toleration exists with value", func(p *Pod) { p.Spec.Tolerations = []*Toleration{{Key: "k", Operator: "Exists", Value: "v"}} }, "spec.tolerations[0].value: must be empty when the operator is Exists"},
		{"toleration without key", func(p *Pod) { p.Spec.Tolerations = []*Toleration{{Value: "v"}} }, "spec.tolerations[0].operator: must be Exists when the key is empty"},
		{"toleration of everything", func(p *Pod) { p.Spec.Tolerations = []*Toleration{{Operator: "Exists"}} }, ""},
		{"toleration effect", func(p *Pod) { p.Spec.Tolerations = []*Toleration{{Key: "k", Effect: "NoWay"}} }, `spec.tolerations[0].effect: unsupported value "NoWay": must be NoSchedule, PreferNoSchedule or NoExecute`},
		{"toleration operator", func(p *Pod) { p.Spec.Tolerations = []*Toleration{{Key: "k", Operator: "In"}} }, `spec.tolerations[0].operator: unsupported value "In": must be Exists or Equal`},
		{"toleration seconds", func(p *Pod) {
			p.Spec.Tolerations = []*Toleration{{Key: "k", Effect: "NoSchedule", TolerationSeconds: proto.Int32(5)}}
		}, "spec.tolerations[0].tolerationSeconds: may only be set when the effect is NoExecute"},
		{"node affinity without terms", func(p *Pod) {
			p.Spec.Affinity = &Affinity{NodeAffinity: &NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &NodeSelector{}}}
		}, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: required: at least one term"},
		{"node affinity requirements", func(p *Pod) {
			p.Spec.Affinity = &Affinity{NodeAffinity: &NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &NodeSelector{NodeSelectorTerms: []*NodeSelectorTerm{{MatchExpressions: []*NodeSelectorRequirement{
				{Key: "a", Operator: "In"},
				{Key: "b", Operator: "Gt", Values: []string{"x"}},
				{Key: "c", Operator: "Exists", Values: []string{"x"}},
				{Key: "d", Operator: "Near"},
				{Key: "e", Operator: "Lt", Values: []string{"5"}},
			}}}}}}
		}, `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: required when the operator is In; ` +
			`spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].values[0]: must be an integer when the operator is Gt, got "x"; ` +
			`spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[2].values: must be empty when the operator is Exists; ` +
			`spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[3].operator: unsupported value "Near": must be In, NotIn, Exists, DoesNotExist, Gt or Lt`},
		{"preferred weight", func(p *Pod) {
			p.Spec.Affinity = &Affinity{NodeAffinity: &NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []*PreferredSchedulingTerm{{Weight: 0, Preference: &NodeSelectorTerm{}}}}}
		}, "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: must be between 1 and 100, got 0"},
		{"anti-affinity", func(p *Pod) {
			p.Spec.Affinity = &Affinity{PodAntiAffinity: &PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution:  []*PodAffinityTerm{{LabelSelector: &LabelSelector{MatchExpressions: []*LabelSelectorRequirement{{Key: "app", Operator: "Gt"}}}}},
				PreferredDuringSchedulingIgnoredDuringExecution: []*WeightedPodAffinityTerm{{Weight: 101}},
			}}
		}, `spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: required; ` +
			`spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].operator: unsupported value "Gt": must be In, NotIn, Exists or DoesNotExist; ` +
			`spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: must be between 1 and 100, got 101; ` +
			`spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm: required`},
		{"topology spread", func(p *Pod) {
			p.Spec.TopologySpreadConstraints = []*TopologySpreadConstraint{{MaxSkew: 0, TopologyKey: "zone", WhenUnsatisfiable: "Maybe"}}
		}, `spec.topologySpreadConstraints[0].maxSkew: must be greater than 0, got 0; spec.topologySpreadConstraints[0].whenUnsatisfiable: unsupported value "Maybe": must be DoNotSchedule or ScheduleAnyway`},
		{"nil container", func(p *Pod) { p.Spec.Containers = append(p.Spec.Containers, nil) }, "spec.containers[1].name: required; spec.containers[1].image: required"},
	})
}

func TestValidatePodBeforeDefault(t *testing.T) {
	// Fields Default fills may be empty: Validate gives the same answer.
	objs, err := DecodeManifests([]byte(validTestPodYAML + "---\n" + manifestTestWeb + "---\n" + manifestTestPod))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := Validate(o); err != nil {
			t.Errorf("%s %s before Default: %v", KindOf(o), o.GetMetadata().GetName(), err)
		}
	}
}

func TestValidateDeployment(t *testing.T) {
	base := func() *Deployment { return validTestObject(t, manifestTestWeb, 0).(*Deployment) }
	ru := func(d *Deployment) *RollingUpdateDeployment { return d.Spec.Strategy.RollingUpdate }
	runValidTests(t, base, []validTestCase[*Deployment]{
		{"no selector", func(d *Deployment) { d.Spec.Selector = nil }, "spec.selector: required: a deployment selects its pods by label"},
		{"empty selector", func(d *Deployment) { d.Spec.Selector = &LabelSelector{} }, "spec.selector: required: a deployment selects its pods by label"},
		{"selector not matching", func(d *Deployment) { d.Spec.Selector.MatchLabels["app"] = "api" }, "spec.template.metadata.labels: do not match spec.selector: the deployment would not own its pods"},
		{"selector expressions", func(d *Deployment) {
			d.Spec.Selector = &LabelSelector{MatchExpressions: []*LabelSelectorRequirement{{Key: "app", Operator: "In", Values: []string{"web", "api"}}, {Key: "canary", Operator: "DoesNotExist"}}}
		}, ""},
		{"selector expressions not matching", func(d *Deployment) {
			d.Spec.Selector = &LabelSelector{MatchExpressions: []*LabelSelectorRequirement{{Key: "app", Operator: "NotIn", Values: []string{"web"}}}}
		}, "spec.template.metadata.labels: do not match spec.selector: the deployment would not own its pods"},
		{"selector operator", func(d *Deployment) {
			d.Spec.Selector.MatchExpressions = []*LabelSelectorRequirement{{Key: "app", Operator: "Exists", Values: []string{"x"}}}
		}, "spec.selector.matchExpressions[0].values: must be empty when the operator is Exists"},
		{"negative replicas", func(d *Deployment) { d.Spec.Replicas = proto.Int32(-1) }, "spec.replicas: must be greater than or equal to 0, got -1"},
		{"zero replicas", func(d *Deployment) { d.Spec.Replicas = proto.Int32(0) }, ""},
		{"no template", func(d *Deployment) { d.Spec.Template = nil }, "spec.template: required"},
		{"template image", func(d *Deployment) { d.Spec.Template.Spec.Containers[0].Image = "" }, "spec.template.spec.containers[0].image: required"},
		{"template restart policy", func(d *Deployment) { d.Spec.Template.Spec.RestartPolicy = "Never" }, `spec.template.spec.restartPolicy: must be Always in a deployment, got "Never"`},
		{"template label", func(d *Deployment) { d.Spec.Template.Metadata.Labels["bad key"] = "x" }, `spec.template.metadata.labels: key "bad key"...`},
		{"strategy type", func(d *Deployment) { d.Spec.Strategy.Type = "BlueGreen" }, `spec.strategy.type: unsupported value "BlueGreen": must be RollingUpdate or Recreate`},
		{"recreate with rolling update", func(d *Deployment) { d.Spec.Strategy.Type = "Recreate" }, "spec.strategy.rollingUpdate: may not be set when the strategy type is Recreate"},
		{"recreate", func(d *Deployment) { d.Spec.Strategy = &DeploymentStrategy{Type: "Recreate"} }, ""},
		{"both zero", func(d *Deployment) { ru(d).MaxSurge = structpb.NewStringValue("0%") }, "spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0: the rollout could not make progress"},
		{"percentages", func(d *Deployment) {
			ru(d).MaxSurge = structpb.NewStringValue("150%")
			ru(d).MaxUnavailable = structpb.NewStringValue("100%")
		}, ""},
		{"max unavailable over 100%", func(d *Deployment) { ru(d).MaxUnavailable = structpb.NewStringValue("101%") }, `spec.strategy.rollingUpdate.maxUnavailable: must not be more than 100%, got "101%"`},
		{"not a percentage", func(d *Deployment) { ru(d).MaxSurge = structpb.NewStringValue("1") }, `spec.strategy.rollingUpdate.maxSurge: must be a non-negative integer or a percentage (e.g. "25%"), got "1"`},
		{"negative", func(d *Deployment) { ru(d).MaxSurge = structpb.NewNumberValue(-1) }, "spec.strategy.rollingUpdate.maxSurge: must be a non-negative integer or a percentage, got -1"},
		{"fraction", func(d *Deployment) { ru(d).MaxUnavailable = structpb.NewNumberValue(0.5) }, "spec.strategy.rollingUpdate.maxUnavailable: must be a non-negative integer or a percentage, got 0.5"},
		{"other type", func(d *Deployment) { ru(d).MaxUnavailable = structpb.NewBoolValue(true) }, "spec.strategy.rollingUpdate.maxUnavailable: must be a non-negative integer or a percentage"},
		{"deadline", func(d *Deployment) { d.Spec.MinReadySeconds = 10; d.Spec.ProgressDeadlineSeconds = proto.Int32(10) }, "spec.progressDeadlineSeconds: must be greater than minReadySeconds (10), got 10"},
		{"history", func(d *Deployment) { d.Spec.RevisionHistoryLimit = proto.Int32(-1) }, "spec.revisionHistoryLimit: must be greater than or equal to 0, got -1"},
		{"no spec", func(d *Deployment) { d.Spec = nil }, "spec.selector: required: a deployment selects its pods by label; spec.template: required"},
	})
}

func TestValidateService(t *testing.T) {
	base := func() *Service { return validTestObject(t, manifestTestWeb, 1).(*Service) }
	runValidTests(t, base, []validTestCase[*Service]{
		{"name with a dot", func(s *Service) { s.Metadata.Name = "web.v1" }, `metadata.name: "web.v1" is not a lowercase RFC 1035 label...`},
		{"name starting with a digit", func(s *Service) { s.Metadata.Name = "1web" }, `metadata.name: "1web" is not a lowercase RFC 1035 label...`},
		{"no ports", func(s *Service) { s.Spec.Ports = nil }, "spec.ports: required: a service exposes at least one port"},
		{"headless without ports", func(s *Service) { s.Spec.Ports = nil; s.Spec.ClusterIp = "None" }, ""},
		{"unnamed port among several", func(s *Service) { s.Spec.Ports[1].Name = "" }, "spec.ports[1].name: required when the service has more than one port"},
		{"one unnamed port", func(s *Service) { s.Spec.Ports = s.Spec.Ports[:1]; s.Spec.Ports[0].Name = "" }, ""},
		{"duplicate names", func(s *Service) { s.Spec.Ports[1].Name = "http" }, `spec.ports[1].name: duplicate name "http"`},
		{"port name", func(s *Service) { s.Spec.Ports[1].Name = "Metrics" }, `spec.ports[1].name: "Metrics" is not a lowercase RFC 1123 label...`},
		{"port 0", func(s *Service) { s.Spec.Ports[0].Port = 0 }, "spec.ports[0].port: must be between 1 and 65535, got 0"},
		{"duplicate port", func(s *Service) { s.Spec.Ports[1].Port = 80 }, "spec.ports[1]: duplicate port 80/TCP"},
		{"same port other protocol", func(s *Service) { s.Spec.Ports[1].Port = 80; s.Spec.Ports[1].Protocol = "UDP" }, ""},
		{"protocol", func(s *Service) { s.Spec.Ports[0].Protocol = "SCTP" }, `spec.ports[0].protocol: unsupported value "SCTP": must be TCP or UDP`},
		{"target port number", func(s *Service) { s.Spec.Ports[0].TargetPort = structpb.NewNumberValue(70000) }, "spec.ports[0].targetPort: must be between 1 and 65535, got 70000"},
		{"target port name", func(s *Service) { s.Spec.Ports[0].TargetPort = structpb.NewStringValue("HTTP") }, `spec.ports[0].targetPort: port name "HTTP" must consist of lowercase letters, digits and '-'`},
		{"target port type", func(s *Service) { s.Spec.Ports[0].TargetPort = structpb.NewBoolValue(false) }, "spec.ports[0].targetPort: must be a port number or a port name"},
		{"type", func(s *Service) { s.Spec.Type = "LoadBalancer" }, `spec.type: unsupported value "LoadBalancer": shoal supports ClusterIP and NodePort`},
		{"unknown type", func(s *Service) { s.Spec.Type = "Magic" }, `spec.type: unsupported value "Magic": must be ClusterIP or NodePort`},
		{"node port", func(s *Service) { s.Spec.Type = "NodePort"; s.Spec.Ports[0].NodePort = 30080 }, ""},
		{"node port without NodePort", func(s *Service) { s.Spec.Ports[0].NodePort = 30080 }, "spec.ports[0].nodePort: may only be set when the type is NodePort"},
		{"node port range", func(s *Service) { s.Spec.Type = "NodePort"; s.Spec.Ports[0].NodePort = -5 }, "spec.ports[0].nodePort: must be between 1 and 65535, got -5"},
		{"cluster IP", func(s *Service) { s.Spec.ClusterIp = "10.96.0.10" }, ""},
		{"cluster IP invalid", func(s *Service) { s.Spec.ClusterIp = "10.96.0.300" }, `spec.clusterIP: must be empty, None or an IPv4 address, got "10.96.0.300"`},
		{"cluster IP v6", func(s *Service) { s.Spec.ClusterIp = "fd00::1" }, `spec.clusterIP: must be empty, None or an IPv4 address, got "fd00::1"`},
		{"headless node port", func(s *Service) { s.Spec.ClusterIp = "None"; s.Spec.Type = "NodePort" }, "spec.clusterIP: may not be None when the type is NodePort"},
		{"selector", func(s *Service) { s.Spec.Selector["app"] = "web app" }, `spec.selector: key "app": value "web app"...`},
		{"affinity", func(s *Service) { s.Spec.SessionAffinity = "Sticky" }, `spec.sessionAffinity: unsupported value "Sticky": must be None or ClientIP`},
		{"client IP", func(s *Service) { s.Spec.SessionAffinity = "ClientIP"; Default(s) }, ""},
		{"client IP timeout", func(s *Service) {
			s.Spec.SessionAffinity = "ClientIP"
			s.Spec.SessionAffinityConfig = &SessionAffinityConfig{ClientIp: &ClientIPConfig{TimeoutSeconds: proto.Int32(86401)}}
		}, "spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be between 1 and 86400, got 86401"},
		{"client IP timeout 0", func(s *Service) {
			s.Spec.SessionAffinity = "ClientIP"
			s.Spec.SessionAffinityConfig = &SessionAffinityConfig{ClientIp: &ClientIPConfig{TimeoutSeconds: proto.Int32(0)}}
		}, "spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be between 1 and 86400, got 0"},
		{"config without ClientIP", func(s *Service) { s.Spec.SessionAffinityConfig = &SessionAffinityConfig{} }, "spec.sessionAffinityConfig: may only be set when sessionAffinity is ClientIP"},
	})
}

func TestValidateEndpoints(t *testing.T) {
	base := func() *Endpoints { return validTestObject(t, manifestTestEndpoints, 0).(*Endpoints) }
	runValidTests(t, base, []validTestCase[*Endpoints]{
		{"ip", func(e *Endpoints) { e.Subsets[0].Addresses[0].Ip = "10.0.0" }, `subsets[0].addresses[0].ip: "10.0.0" is not a valid IP address`},
		{"ipv6", func(e *Endpoints) { e.Subsets[0].Addresses[0].Ip = "fd00::5" }, ""},
		{"unspecified", func(e *Endpoints) { e.Subsets[0].NotReadyAddresses[0].Ip = "0.0.0.0" }, `subsets[0].notReadyAddresses[0].ip: "0.0.0.0" is not a usable IP address`},
		{"no ip", func(e *Endpoints) { e.Subsets[0].Addresses[0].Ip = "" }, "subsets[0].addresses[0].ip: required"},
		{"port", func(e *Endpoints) { e.Subsets[0].Ports[0].Port = 0 }, "subsets[0].ports[0].port: must be between 1 and 65535, got 0"},
		{"unnamed ports", func(e *Endpoints) { e.Subsets[0].Ports = append(e.Subsets[0].Ports, &EndpointPort{Port: 9090}) }, "subsets[0].ports[1].name: required when the subset has more than one port"},
		{"protocol", func(e *Endpoints) { e.Subsets[0].Ports[0].Protocol = "ICMP" }, `subsets[0].ports[0].protocol: unsupported value "ICMP": must be TCP or UDP`},
		{"empty subset", func(e *Endpoints) { e.Subsets = append(e.Subsets, &EndpointSubset{}) }, "subsets[1]: must have addresses or notReadyAddresses"},
		{"node name", func(e *Endpoints) { e.Subsets[0].Addresses[0].NodeName = proto.String("Node 1") }, `subsets[0].addresses[0].nodeName: "Node 1" is not a lowercase RFC 1123 subdomain...`},
	})
}

func TestValidateNode(t *testing.T) {
	base := func() *Node { return validTestObject(t, manifestTestNode, 0).(*Node) }
	runValidTests(t, base, []validTestCase[*Node]{
		{"namespace", func(n *Node) { n.Metadata.Namespace = "default" }, "metadata.namespace: must be empty: a Node is not namespaced"},
		{"taint effect", func(n *Node) { n.Spec.Taints[0].Effect = "NoWay" }, `spec.taints[0].effect: unsupported value "NoWay": must be NoSchedule, PreferNoSchedule or NoExecute`},
		{"taint without effect", func(n *Node) { n.Spec.Taints[0].Effect = "" }, `spec.taints[0].effect: required: must be NoSchedule, PreferNoSchedule or NoExecute`},
		{"taint key", func(n *Node) { n.Spec.Taints[0].Key = "" }, "spec.taints[0].key: required"},
		{"duplicate taint", func(n *Node) { n.Spec.Taints = append(n.Spec.Taints, &Taint{Key: "dedicated", Effect: "NoSchedule"}) }, `spec.taints[1]: duplicate taint "dedicated" with effect NoSchedule`},
		{"pod CIDR", func(n *Node) { n.Spec.PodCidr = "10.244.1.0" }, `spec.podCIDR: "10.244.1.0" is not a valid CIDR`},
		{"status is not checked", func(n *Node) { n.Status.Capacity["cpu"] = "lots" }, ""},
		{"no spec", func(n *Node) { n.Spec = nil }, ""},
		{"name", func(n *Node) { n.Metadata.Name = "" }, "metadata.name: required"},
	})
}

func TestValidateNotAnObject(t *testing.T) {
	if err := Validate(nil); err == nil {
		t.Error("Validate(nil) passed")
	}
	if err := Validate((*Pod)(nil)); err == nil {
		t.Error("Validate((*Pod)(nil)) passed")
	}
	if err := Validate(&Pod{}); err == nil || !strings.HasPrefix(err.Error(), "metadata.name: required; spec.containers: required") {
		t.Errorf("Validate(empty pod) = %v", err)
	}
}

func TestFieldErrorsFormat(t *testing.T) {
	errs := FieldErrors{{Path: "spec.template.spec.containers[0].image", Message: "required"}, {Path: "metadata.name", Message: "required"}, {Message: "whole object"}}
	want := "spec.template.spec.containers[0].image: required; metadata.name: required; whole object"
	if errs.Error() != want {
		t.Errorf("got %q", errs.Error())
	}
}
