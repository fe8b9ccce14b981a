package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/api"
)

func TestHumanAge(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-5 * time.Second, "<invalid>"},
		{-500 * time.Millisecond, "0s"},
		{0, "0s"},
		{59 * time.Second, "59s"},
		{119 * time.Second, "119s"},
		{2 * time.Minute, "2m"},
		{3*time.Minute + 20*time.Second, "3m20s"},
		{10 * time.Minute, "10m"},
		{179 * time.Minute, "179m"},
		{3 * time.Hour, "3h"},
		{5*time.Hour + 12*time.Minute, "5h12m"},
		{30 * time.Hour, "30h"},
		{3*24*time.Hour + 4*time.Hour, "3d4h"},
		{7 * 24 * time.Hour, "7d"},
		{100 * 24 * time.Hour, "100d"},
		{3*365*24*time.Hour + 10*24*time.Hour, "3y10d"},
		{9 * 365 * 24 * time.Hour, "9y"},
	} {
		if got := humanAge(tc.d); got != tc.want {
			t.Errorf("humanAge(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

var printNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func ts(ago time.Duration) string { return printNow.Add(-ago).Format(time.RFC3339) }

func TestPodColumns(t *testing.T) {
	running := &api.ContainerState{Running: &api.ContainerStateRunning{StartedAt: ts(time.Hour)}}
	for _, tc := range []struct {
		name string
		pod  *api.Pod
		want string // READY STATUS RESTARTS
	}{
		{"pending", &api.Pod{Spec: &api.PodSpec{Containers: []*api.Container{{Name: "a"}}}}, "0/1 Pending 0"},
		{"creating", &api.Pod{Spec: &api.PodSpec{Containers: []*api.Container{{Name: "a"}}}, Status: &api.PodStatus{Phase: "Pending",
			ContainerStatuses: []*api.ContainerStatus{{Name: "a", State: &api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}},
			"0/1 ContainerCreating 0"},
		{"running", &api.Pod{Spec: &api.PodSpec{Containers: []*api.Container{{Name: "a"}, {Name: "b"}}}, Status: &api.PodStatus{Phase: "Running",
			ContainerStatuses: []*api.ContainerStatus{{Name: "a", Ready: true, State: running}, {Name: "b", Ready: true, State: running}}}},
			"2/2 Running 0"},
		{"crashloop", &api.Pod{Spec: &api.PodSpec{Containers: []*api.Container{{Name: "a"}}}, Status: &api.PodStatus{Phase: "Running",
			ContainerStatuses: []*api.ContainerStatus{{Name: "a", RestartCount: 4,
				State:     &api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastState: &api.ContainerState{Terminated: &api.ContainerStateTerminated{ExitCode: 1, FinishedAt: ts(90 * time.Second)}}}}}},
			"0/1 CrashLoopBackOff 4 (90s ago)"},
		{"exited", &api.Pod{Spec: &api.PodSpec{Containers: []*api.Container{{Name: "a"}}}, Status: &api.PodStatus{Phase: "Failed",
			ContainerStatuses: []*api.ContainerStatus{{Name: "a", State: &api.ContainerState{Terminated: &api.ContainerStateTerminated{ExitCode: 2}}}}}},
			"0/1 ExitCode:2 0"},
		{"completed", &api.Pod{Spec: &api.PodSpec{Containers: []*api.Container{{Name: "a"}}}, Status: &api.PodStatus{Phase: "Succeeded",
			ContainerStatuses: []*api.ContainerStatus{{Name: "a", State: &api.ContainerState{Terminated: &api.ContainerStateTerminated{Reason: "Completed"}}}}}},
			"0/1 Completed 0"},
		{"terminating", &api.Pod{Metadata: &api.ObjectMeta{DeletionTimestamp: ts(0)}, Spec: &api.PodSpec{Containers: []*api.Container{{Name: "a"}}},
			Status: &api.PodStatus{Phase: "Running", ContainerStatuses: []*api.ContainerStatus{{Name: "a", Ready: true, State: running}}}},
			"1/1 Terminating 0"},
		{"evicted", &api.Pod{Spec: &api.PodSpec{Containers: []*api.Container{{Name: "a"}}}, Status: &api.PodStatus{Phase: "Failed", Reason: "NodeLost"}},
			"0/1 NodeLost 0"},
	} {
		got := podReady(tc.pod) + " " + podStatus(tc.pod) + " " + podRestarts(tc.pod, printNow)
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRows(t *testing.T) {
	one := int32(3)
	meta := func(name string) *api.ObjectMeta {
		return &api.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: ts(5 * time.Minute)}
	}
	for _, tc := range []struct {
		name string
		obj  api.Resource
		o    tableOptions
		want []string
	}{
		{"pod wide", &api.Pod{Metadata: meta("p"), Spec: &api.PodSpec{NodeName: "n1", Containers: []*api.Container{{Name: "a"}}},
			Status: &api.PodStatus{Phase: "Running", PodIp: "10.244.1.2"}}, tableOptions{wide: true},
			[]string{"p", "0/1", "Running", "0", "5m", "10.244.1.2", "n1"}},
		{"pod unscheduled wide -A", &api.Pod{Metadata: meta("p"), Spec: &api.PodSpec{}}, tableOptions{wide: true, namespace: true},
			[]string{"default", "p", "0/0", "Pending", "0", "5m", "<none>", "<none>"}},
		{"deployment", &api.Deployment{Metadata: meta("web"), Spec: &api.DeploymentSpec{Replicas: &one},
			Status: &api.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2}}, tableOptions{},
			[]string{"web", "2/3", "3", "2", "5m"}},
		{"deployment default replicas wide", &api.Deployment{Metadata: meta("web"), Spec: &api.DeploymentSpec{
			Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: &api.PodTemplateSpec{Spec: &api.PodSpec{Containers: []*api.Container{{Name: "c", Image: "busybox"}}}}}},
			tableOptions{wide: true, kindPrefix: true},
			[]string{"deployment.apps/web", "0/1", "0", "0", "5m", "c", "busybox", "app=web"}},
		{"service", &api.Service{Metadata: meta("web"), Spec: &api.ServiceSpec{ClusterIp: "10.96.0.10", Ports: []*api.ServicePort{
			{Port: 80, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}}}}, tableOptions{},
			[]string{"web", "ClusterIP", "10.96.0.10", "80/TCP,53/UDP", "5m"}},
		{"nodeport", &api.Service{Metadata: meta("web"), Spec: &api.ServiceSpec{Type: "NodePort", ClusterIp: "10.96.0.11", Ports: []*api.ServicePort{
			{Port: 80, NodePort: 30080}}}}, tableOptions{},
			[]string{"web", "NodePort", "10.96.0.11", "80:30080/TCP", "5m"}},
		{"service without ip", &api.Service{Metadata: meta("x"), Spec: &api.ServiceSpec{Selector: map[string]string{"b": "2", "a": "1"}}}, tableOptions{wide: true},
			[]string{"x", "ClusterIP", "<none>", "<none>", "5m", "a=1,b=2"}},
		{"endpoints", &api.Endpoints{Metadata: meta("web"), Subsets: []*api.EndpointSubset{{
			Addresses:         []*api.EndpointAddress{{Ip: "10.244.1.2"}, {Ip: "10.244.2.2"}},
			NotReadyAddresses: []*api.EndpointAddress{{Ip: "10.244.3.2"}},
			Ports:             []*api.EndpointPort{{Port: 8080}}}}}, tableOptions{},
			[]string{"web", "10.244.1.2:8080,10.244.2.2:8080", "5m"}},
		{"endpoints many", &api.Endpoints{Metadata: meta("web"), Subsets: []*api.EndpointSubset{{
			Addresses: []*api.EndpointAddress{{Ip: "1.1.1.1"}, {Ip: "2.2.2.2"}, {Ip: "3.3.3.3"}, {Ip: "4.4.4.4"}, {Ip: "5.5.5.5"}},
			Ports:     []*api.EndpointPort{{Port: 80}}}}}, tableOptions{},
			[]string{"web", "1.1.1.1:80,2.2.2.2:80,3.3.3.3:80 + 2 more...", "5m"}},
		{"endpoints empty", &api.Endpoints{Metadata: meta("web")}, tableOptions{}, []string{"web", "<none>", "5m"}},
		{"node ready leader", &api.Node{Metadata: &api.ObjectMeta{Name: "n1", CreationTimestamp: ts(26 * time.Hour)},
			Status: &api.NodeStatus{RaftRole: "leader", Conditions: []*api.NodeCondition{{Type: "Ready", Status: "True"}},
				NodeInfo:  &api.NodeSystemInfo{ShoalVersion: "v0.1.0"},
				Addresses: []*api.NodeAddress{{Type: "Hostname", Address: "h1"}, {Type: "InternalIP", Address: "192.168.56.11"}}}},
			tableOptions{wide: true, namespace: true},
			[]string{"n1", "Ready", "leader", "26h", "v0.1.0", "192.168.56.11"}},
		{"node down cordoned", &api.Node{Metadata: &api.ObjectMeta{Name: "n2"}, Spec: &api.NodeSpec{Unschedulable: true},
			Status: &api.NodeStatus{Conditions: []*api.NodeCondition{{Type: "Ready", Status: "Unknown"}}}}, tableOptions{},
			[]string{"n2", "NotReady,SchedulingDisabled", "<none>", "<unknown>", "<none>"}},
		{"node no condition", &api.Node{Metadata: &api.ObjectMeta{Name: "n3"}}, tableOptions{},
			[]string{"n3", "Unknown", "<none>", "<unknown>", "<none>"}},
	} {
		got := row(tc.obj, tc.o, printNow)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
		k := api.MustKind(api.KindOf(tc.obj))
		if h := headers(k, tc.o); len(h) != len(got) {
			t.Errorf("%s: %d headers %v for %d cells", tc.name, len(h), h, len(got))
		}
	}
}

func TestHeaders(t *testing.T) {
	for _, tc := range []struct {
		kind string
		o    tableOptions
		want string
	}{
		{"pods", tableOptions{}, "NAME READY STATUS RESTARTS AGE"},
		{"pods", tableOptions{wide: true}, "NAME READY STATUS RESTARTS AGE IP NODE"},
		{"pods", tableOptions{namespace: true}, "NAMESPACE NAME READY STATUS RESTARTS AGE"},
		{"deploy", tableOptions{}, "NAME READY UP-TO-DATE AVAILABLE AGE"},
		{"svc", tableOptions{}, "NAME TYPE CLUSTER-IP PORT(S) AGE"},
		{"ep", tableOptions{}, "NAME ENDPOINTS AGE"},
		{"nodes", tableOptions{}, "NAME STATUS ROLES AGE VERSION"},
		{"nodes", tableOptions{wide: true, namespace: true}, "NAME STATUS ROLES AGE VERSION INTERNAL-IP"},
	} {
		k, _ := api.LookupKind(tc.kind)
		if got := strings.Join(headers(k, tc.o), " "); got != tc.want {
			t.Errorf("%s %+v: %q, want %q", tc.kind, tc.o, got, tc.want)
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	tbl := newTable([]string{"NAME", "READY", "AGE"})
	tbl.write(&b, [][]string{{"web-7d4b9c-abcde", "1/1", "5m"}, {"x", "0/1", "10s"}}, false)
	want := "" +
		"NAME               READY   AGE\n" +
		"web-7d4b9c-abcde   1/1     5m\n" +
		"x                  0/1     10s\n"
	if b.String() != want {
		t.Fatalf("table\n%s\nwant\n%s", b.String(), want)
	}
	// A row printed later keeps the columns.
	b.Reset()
	tbl.writeRow(&b, []string{"y", "1/1", "1s"})
	if b.String() != "y                  1/1     1s\n" {
		t.Fatalf("later row %q", b.String())
	}
	// Narrow columns are six wide, like kubectl's.
	b.Reset()
	newTable([]string{"A", "B"}).write(&b, [][]string{{"x", "y"}}, true)
	if b.String() != "x     y\n" {
		t.Fatalf("narrow %q", b.String())
	}
}

func TestParseTargets(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		bad  bool
	}{
		{[]string{"po"}, "Pod[]", false},
		{[]string{"deploy", "a", "b"}, "Deployment[a b]", false},
		{[]string{"deploy,svc"}, "Deployment[] Service[]", false},
		{[]string{"deploy/web", "svc/web", "svc/db"}, "Deployment[web] Service[web db]", false},
		{[]string{"NODES"}, "Node[]", false},
		{[]string{"widgets"}, "", true},
		{[]string{"deploy/web", "svc"}, "", true},
		{[]string{"pod/"}, "", true},
		{nil, "", true},
	} {
		ts, err := parseTargets(tc.args)
		if tc.bad {
			if err == nil {
				t.Errorf("%v: no error", tc.args)
			}
			continue
		}
		var parts []string
		for _, x := range ts {
			parts = append(parts, x.kind.Kind+"["+strings.Join(x.names, " ")+"]")
		}
		if got := strings.Join(parts, " "); err != nil || got != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.args, got, err, tc.want)
		}
	}
}

func TestApplyResult(t *testing.T) {
	started := printNow
	created := ts(0)
	old := ts(time.Hour)
	for _, tc := range []struct {
		name   string
		before priorState
		after  *api.ObjectMeta
		want   string
	}{
		{"new", priorState{known: true}, &api.ObjectMeta{ResourceVersion: "7", Generation: 1, CreationTimestamp: created}, "created"},
		{"same version", priorState{known: true, found: true, rv: "5", created: old}, &api.ObjectMeta{ResourceVersion: "5", Generation: 2, CreationTimestamp: old}, "unchanged"},
		{"new version", priorState{known: true, found: true, rv: "5", created: old}, &api.ObjectMeta{ResourceVersion: "7", Generation: 3, CreationTimestamp: old}, "configured"},
		{"recreated", priorState{known: true, found: true, rv: "5", created: old}, &api.ObjectMeta{ResourceVersion: "7", Generation: 1, CreationTimestamp: created}, "created"},
		{"unknown, fresh", priorState{}, &api.ObjectMeta{ResourceVersion: "7", Generation: 1, CreationTimestamp: created}, "created"},
		{"unknown, old", priorState{}, &api.ObjectMeta{ResourceVersion: "7", Generation: 1, CreationTimestamp: old}, "configured"},
		{"unknown, gen 2", priorState{}, &api.ObjectMeta{ResourceVersion: "7", Generation: 2, CreationTimestamp: created}, "configured"},
	} {
		if got := applyResult(tc.before, tc.after, started); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestQualifiedKind(t *testing.T) {
	for kind, want := range map[string]string{"po": "pod", "deploy": "deployment.apps", "svc": "service", "ep": "endpoints", "no": "node"} {
		k, _ := api.LookupKind(kind)
		if got := qualifiedKind(k); got != want {
			t.Errorf("%s: %s, want %s", kind, got, want)
		}
	}
	k, _ := api.LookupKind("deploy")
	if qualifiedPlural(k) != "deployments.apps" {
		t.Errorf("plural %s", qualifiedPlural(k))
	}
}

func TestCheckOutput(t *testing.T) {
	if err := checkOutput("wide", "", "wide", "json"); err != nil {
		t.Fatal(err)
	}
	err := checkOutput("xml", "", "wide", "json")
	if err == nil || !strings.Contains(err.Error(), `"xml"`) || !strings.Contains(err.Error(), "wide,json") {
		t.Fatalf("%v", err)
	}
}

func TestProbeAndValue(t *testing.T) {
	p := &api.Probe{HttpGet: &api.HTTPGetAction{Path: "/healthz", Port: structpb.NewNumberValue(8080)}, PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3}
	if got := probeString(p); got != "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3" {
		t.Errorf("probe %q", got)
	}
	if got := valueString(structpb.NewStringValue("http")); got != "http" {
		t.Errorf("value %q", got)
	}
	if got := valueString(nil); got != "" {
		t.Errorf("nil value %q", got)
	}
}
