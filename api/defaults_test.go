package api

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestDefaultPod(t *testing.T) {
	p := manifestTestDecodeOne(t, `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: a
    image: nginx
    ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]
    livenessProbe:
      httpGet: {port: 80}
    readinessProbe:
      exec: {command: ["true"]}
      timeoutSeconds: 5
      periodSeconds: 2
      successThreshold: 2
      failureThreshold: 1
  - {name: b, image: "nginx:latest"}
  - {name: c, image: "nginx:1.25"}
  - {name: d, image: "registry:5000/nginx"}
  - {name: e, image: "registry:5000/nginx:1.0"}
  - {name: f, image: "nginx@sha256:abcd"}
  - {name: g, image: "nginx:latest@sha256:abcd"}
  - {name: h, image: nginx, imagePullPolicy: Never}
`).(*Pod)
	Default(p)
	if got := p.GetMetadata().GetNamespace(); got != "default" {
		t.Errorf("namespace = %q", got)
	}
	s := p.GetSpec()
	if s.GetRestartPolicy() != "Always" || s.TerminationGracePeriodSeconds == nil || s.GetTerminationGracePeriodSeconds() != 30 {
		t.Errorf("restartPolicy %q, grace %v", s.GetRestartPolicy(), s.TerminationGracePeriodSeconds)
	}
	a := s.GetContainers()[0]
	if a.GetPorts()[0].GetProtocol() != "TCP" || a.GetPorts()[1].GetProtocol() != "UDP" {
		t.Errorf("ports = %v", a.GetPorts())
	}
	want := &Probe{HttpGet: &HTTPGetAction{Port: structpb.NewNumberValue(80), Path: "/", Scheme: "HTTP"}, TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
	if !proto.Equal(a.GetLivenessProbe(), want) {
		t.Errorf("liveness = %v, want %v", a.GetLivenessProbe(), want)
	}
	r := a.GetReadinessProbe()
	if r.GetTimeoutSeconds() != 5 || r.GetPeriodSeconds() != 2 || r.GetSuccessThreshold() != 2 || r.GetFailureThreshold() != 1 {
		t.Errorf("readiness values overwritten: %v", r)
	}
	pull := map[string]string{"a": "Always", "b": "Always", "c": "IfNotPresent", "d": "Always", "e": "IfNotPresent", "f": "IfNotPresent", "g": "Always", "h": "Never"}
	for _, c := range s.GetContainers() {
		if got := c.GetImagePullPolicy(); got != pull[c.GetName()] {
			t.Errorf("container %s (%s): imagePullPolicy %q, want %q", c.GetName(), c.GetImage(), got, pull[c.GetName()])
		}
	}
}

func TestDefaultDeployment(t *testing.T) {
	d := manifestTestDecodeOne(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: prod}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers: [{name: c, image: "nginx:1"}]
`).(*Deployment)
	Default(d)
	s := d.GetSpec()
	if d.GetMetadata().GetNamespace() != "prod" {
		t.Errorf("namespace overwritten: %q", d.GetMetadata().GetNamespace())
	}
	if s.Replicas == nil || s.GetReplicas() != 1 || s.GetRevisionHistoryLimit() != 10 || s.GetProgressDeadlineSeconds() != 600 {
		t.Errorf("spec = %v", s)
	}
	st := s.GetStrategy()
	if st.GetType() != "RollingUpdate" || st.GetRollingUpdate().GetMaxSurge().GetStringValue() != "25%" || st.GetRollingUpdate().GetMaxUnavailable().GetStringValue() != "25%" {
		t.Errorf("strategy = %v", st)
	}
	if s.GetTemplate().GetSpec().GetRestartPolicy() != "Always" || s.GetTemplate().GetSpec().GetContainers()[0].GetImagePullPolicy() != "IfNotPresent" {
		t.Errorf("template = %v", s.GetTemplate())
	}
	if err := Validate(d); err != nil {
		t.Error(err)
	}

	// replicas: 0 stays 0; a Recreate strategy gets no rollingUpdate; a
	// partial rollingUpdate keeps its value.
	zero := &Deployment{Spec: &DeploymentSpec{Replicas: proto.Int32(0), Strategy: &DeploymentStrategy{Type: "Recreate"}}}
	Default(zero)
	if zero.GetSpec().GetReplicas() != 0 || zero.GetSpec().GetStrategy().GetRollingUpdate() != nil {
		t.Errorf("zero = %v", zero.GetSpec())
	}
	partial := &Deployment{Spec: &DeploymentSpec{Strategy: &DeploymentStrategy{RollingUpdate: &RollingUpdateDeployment{MaxSurge: structpb.NewNumberValue(0)}}}}
	Default(partial)
	ru := partial.GetSpec().GetStrategy().GetRollingUpdate()
	if ru.GetMaxSurge().GetNumberValue() != 0 || ru.GetMaxSurge().GetKind() == nil || ru.GetMaxUnavailable().GetStringValue() != "25%" {
		t.Errorf("partial = %v", ru)
	}
}

func TestDefaultService(t *testing.T) {
	s := manifestTestDecodeOne(t, `apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  sessionAffinity: ClientIP
  ports:
  - {name: a, port: 80}
  - {name: b, port: 53, protocol: UDP, targetPort: dns}
  - {name: c, port: 81, targetPort: 0}
`).(*Service)
	Default(s)
	sp := s.GetSpec()
	if sp.GetType() != "ClusterIP" || sp.GetSessionAffinity() != "ClientIP" || sp.GetSessionAffinityConfig().GetClientIp().GetTimeoutSeconds() != 10800 {
		t.Errorf("spec = %v", sp)
	}
	ports := sp.GetPorts()
	if ports[0].GetProtocol() != "TCP" || ports[0].GetTargetPort().GetNumberValue() != 80 {
		t.Errorf("port a = %v", ports[0])
	}
	if ports[1].GetProtocol() != "UDP" || ports[1].GetTargetPort().GetStringValue() != "dns" {
		t.Errorf("port b = %v", ports[1])
	}
	if ports[2].GetTargetPort().GetNumberValue() != 81 {
		t.Errorf("port c = %v", ports[2])
	}
	plain := &Service{Spec: &ServiceSpec{Ports: []*ServicePort{{Port: 80}}}}
	Default(plain)
	if plain.GetSpec().GetSessionAffinity() != "None" || plain.GetSpec().GetSessionAffinityConfig() != nil {
		t.Errorf("plain = %v", plain.GetSpec())
	}
}

func TestDefaultEndpointsAndNode(t *testing.T) {
	e := &Endpoints{Subsets: []*EndpointSubset{{Ports: []*EndpointPort{{Port: 80}, {Port: 53, Protocol: "UDP"}}}}}
	Default(e)
	if e.GetMetadata().GetNamespace() != "default" || e.GetSubsets()[0].GetPorts()[0].GetProtocol() != "TCP" || e.GetSubsets()[0].GetPorts()[1].GetProtocol() != "UDP" {
		t.Errorf("endpoints = %v", e)
	}
	n := &Node{}
	Default(n)
	if n.GetMetadata() == nil || n.GetMetadata().GetNamespace() != "" {
		t.Errorf("node = %v", n)
	}
}

func TestDefaultIdempotent(t *testing.T) {
	for _, m := range []string{manifestTestWeb, manifestTestPod, manifestTestNode, manifestTestEndpoints} {
		objs, err := DecodeManifests([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			Default(o)
			once := proto.Clone(o)
			Default(o)
			if !proto.Equal(once, o) {
				t.Errorf("%s: Default is not idempotent:\n%v\n%v", KindOf(o), once, o)
			}
		}
	}
}

func TestDefaultNil(t *testing.T) {
	// Nil objects and empty ones do not panic.
	Default(nil)
	Default((*Pod)(nil))
	Default((*Deployment)(nil))
	Default((*Service)(nil))
	Default((*Endpoints)(nil))
	Default((*Node)(nil))
	Default(&Deployment{Spec: &DeploymentSpec{Template: &PodTemplateSpec{}}})
	Default(&Pod{Spec: &PodSpec{Containers: []*Container{nil, {Ports: []*ContainerPort{nil}}}}})
	Default(&Service{Spec: &ServiceSpec{Ports: []*ServicePort{nil}}})
	Default(&Endpoints{Subsets: []*EndpointSubset{nil, {Ports: []*EndpointPort{nil}}}})
	Default(&Pod{Spec: &PodSpec{Containers: []*Container{{LivenessProbe: &Probe{}}}}})
}
