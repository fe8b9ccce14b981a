package api

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func encodeTestDeployment() *Deployment {
	return &Deployment{
		Metadata: &ObjectMeta{Name: "web", Labels: map[string]string{"b": "2", "a": "yes", "c": "1.0"}},
		Spec: &DeploymentSpec{
			Replicas: proto.Int32(0),
			Selector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Strategy: &DeploymentStrategy{RollingUpdate: &RollingUpdateDeployment{MaxSurge: structpb.NewNumberValue(1), MaxUnavailable: structpb.NewStringValue("25%")}},
			Template: &PodTemplateSpec{Spec: &PodSpec{Containers: []*Container{{
				Name: "c", Image: "nginx", Command: []string{"sh", "-c", "echo a\necho b\n"},
			}}}},
		},
	}
}

func TestMarshalJSON(t *testing.T) {
	d := encodeTestDeployment()
	want := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"yes","b":"2","c":"1.0"}},"spec":{"replicas":0,"selector":{"matchLabels":{"app":"web"}},"template":{"spec":{"containers":[{"name":"c","image":"nginx","command":["sh","-c","echo a\necho b\n"]}]}},"strategy":{"rollingUpdate":{"maxUnavailable":"25%","maxSurge":1}}}}`
	for i := 0; i < 20; i++ {
		got, err := MarshalJSON(d)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("MarshalJSON:\n got: %s\nwant: %s", got, want)
		}
	}
	if d.GetApiVersion() != "" || d.GetKind() != "" {
		t.Errorf("MarshalJSON changed its argument: %q %q", d.GetApiVersion(), d.GetKind())
	}
	// apiVersion and kind already set are kept.
	d.ApiVersion, d.Kind = ShoalAPIVersion, "Deployment"
	got, _ := MarshalJSON(d)
	if !bytes.HasPrefix(got, []byte(`{"apiVersion":"shoal/v1","kind":"Deployment",`)) {
		t.Errorf("got %s", got)
	}
	// Messages that are not objects, and empty ones.
	got, err := MarshalJSON(&ListResponse{Items: []*Object{Wrap(&Pod{Metadata: &ObjectMeta{Name: "p"}})}, ResourceVersion: "7"})
	if err != nil || string(got) != `{"items":[{"pod":{"metadata":{"name":"p"}}}],"resourceVersion":"7"}` {
		t.Errorf("ListResponse: %s, %v", got, err)
	}
	got, err = MarshalJSON((*Pod)(nil))
	if err != nil || string(got) != `{}` {
		t.Errorf("nil pod: %s, %v", got, err)
	}
}

func TestMarshalJSONIndent(t *testing.T) {
	got, err := MarshalJSONIndent(&Pod{Metadata: &ObjectMeta{Name: "p", Labels: map[string]string{"a": "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "name": "p",
    "labels": {
      "a": "b"
    }
  }
}
`
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestMarshalYAML(t *testing.T) {
	got, err := MarshalYAML(encodeTestDeployment())
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    a: "yes"
    b: "2"
    c: "1.0"
spec:
  replicas: 0
  selector:
    matchLabels:
      app: web
  template:
    spec:
      containers:
        - name: c
          image: nginx
          command:
            - sh
            - -c
            - |
              echo a
              echo b
  strategy:
    rollingUpdate:
      maxUnavailable: 25%
      maxSurge: 1
`
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	empty, err := MarshalYAML(&Service{Metadata: &ObjectMeta{Name: "s"}, Spec: &ServiceSpec{}})
	if err != nil || string(empty) != "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec: {}\n" {
		t.Errorf("empty spec: %q, %v", empty, err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	objs, err := DecodeManifests([]byte(manifestTestWeb + "---\n" + manifestTestPod + "---\n" + manifestTestNode + "---\n" + manifestTestEndpoints))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o)
		j1, err := MarshalJSON(o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeManifests(j1)
		if err != nil {
			t.Fatalf("%s: decoding its JSON: %v\n%s", KindOf(o), err, j1)
		}
		if !proto.Equal(back[0], o) {
			t.Errorf("%s: JSON round trip differs:\n%v\n%v", KindOf(o), o, back[0])
		}
		j2, _ := MarshalJSON(back[0])
		if !bytes.Equal(j1, j2) {
			t.Errorf("%s: JSON not stable:\n%s\n%s", KindOf(o), j1, j2)
		}
		y, err := MarshalYAML(o)
		if err != nil {
			t.Fatal(err)
		}
		back, err = DecodeManifests(y)
		if err != nil {
			t.Fatalf("%s: decoding its YAML: %v\n%s", KindOf(o), err, y)
		}
		if !proto.Equal(back[0], o) {
			t.Errorf("%s: YAML round trip differs:\n%s", KindOf(o), y)
		}
		var u = MustKind(KindOf(o)).New()
		if err := UnmarshalJSON(j1, u); err != nil || !proto.Equal(u, o) {
			t.Errorf("%s: UnmarshalJSON: %v", KindOf(o), err)
		}
	}
}

func TestUnmarshalJSONSkipsUnknownFields(t *testing.T) {
	var p Pod
	in := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","futureField":{"x":1}},"spec":{"containers":[{"name":"c","image":"i","securityContext":{}}]},"futureTop":true}`
	if err := UnmarshalJSON([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	if p.GetMetadata().GetName() != "p" || p.GetSpec().GetContainers()[0].GetImage() != "i" {
		t.Errorf("got %v", &p)
	}
	if err := UnmarshalJSON([]byte(`{"metadata":`), &p); err == nil {
		t.Error("truncated JSON accepted")
	}
	if _, err := DecodeManifests([]byte(in)); err == nil || !strings.Contains(err.Error(), "futureTop: unknown field") {
		t.Errorf("DecodeManifests is not strict: %v", err)
	}
}
