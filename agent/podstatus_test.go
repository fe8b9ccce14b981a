package agent

import (
	"testing"
	"time"

	"github.com/shoalproj/shoal/api"
)

func TestPodStatus(t *testing.T) {
	web := rcPod("Always", "web")
	probed := rcPod("Always", "web")
	probed.Spec.Containers[0].ReadinessProbe = &api.Probe{TcpSocket: &api.TCPSocketAction{}}
	job := rcPod("Never", "job")
	type want struct {
		phase, state, reason string
		ready                bool
		restarts             int32
		lastReason           string
	}
	for _, tc := range []struct {
		name      string
		pod       *api.Pod
		instances []observedContainer
		waiting   map[string]waitingState
		ready     map[string]bool
		want      want
	}{
		{name: "being created", pod: web, want: want{phase: "Pending", state: "waiting", reason: "ContainerCreating"}},
		{name: "image cannot be pulled", pod: web, waiting: map[string]waitingState{"web": {"ErrImagePull", "not found"}},
			want: want{phase: "Pending", state: "waiting", reason: "ErrImagePull"}},
		{name: "running without a readiness probe is ready", pod: web, instances: []observedContainer{rcRunning(web, "web", "a", 0)},
			want: want{phase: "Running", state: "running", ready: true}},
		{name: "running, readiness not yet known", pod: probed, instances: []observedContainer{rcRunning(probed, "web", "a", 0)},
			want: want{phase: "Running", state: "running"}},
		{name: "running, readiness failing", pod: probed, instances: []observedContainer{rcRunning(probed, "web", "a", 0)}, ready: map[string]bool{"web": false},
			want: want{phase: "Running", state: "running"}},
		{name: "running, readiness passing", pod: probed, instances: []observedContainer{rcRunning(probed, "web", "a", 0)}, ready: map[string]bool{"web": true},
			want: want{phase: "Running", state: "running", ready: true}},
		{name: "crash loop", pod: web, instances: []observedContainer{rcExited(web, "web", "a", 3, 1, time.Second, 2*time.Second)},
			want: want{phase: "Running", state: "waiting", reason: "CrashLoopBackOff", restarts: 3, lastReason: "Error"}},
		{name: "restarted after a crash: lastState", pod: web, instances: []observedContainer{rcExited(web, "web", "a", 0, 1, time.Second, time.Minute), rcRunning(web, "web", "b", 1)},
			want: want{phase: "Running", state: "running", ready: true, restarts: 1, lastReason: "Error"}},
		{name: "OOM under Never: failed", pod: job, instances: []observedContainer{func() observedContainer {
			o := rcExited(job, "job", "a", 0, 137, time.Second, time.Minute)
			o.OOMKilled = true
			return o
		}()}, want: want{phase: "Failed", state: "terminated", reason: "OOMKilled"}},
		{name: "done under Never: succeeded", pod: job, instances: []observedContainer{rcExited(job, "job", "a", 0, 0, time.Second, time.Minute)},
			want: want{phase: "Succeeded", state: "terminated", reason: "Completed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, plans := planPod(tc.pod, tc.instances, rcNow)
			st := podStatus(tc.pod, podObservation{Instances: tc.instances, Plans: plans, Waiting: tc.waiting, Ready: tc.ready, PodIP: "10.244.0.5"}, nil, rcNow)
			cs := st.ContainerStatuses[0]
			state, reason := "", ""
			switch {
			case cs.State.GetRunning() != nil:
				state = "running"
			case cs.State.GetWaiting() != nil:
				state, reason = "waiting", cs.State.GetWaiting().Reason
			case cs.State.GetTerminated() != nil:
				state, reason = "terminated", cs.State.GetTerminated().Reason
			}
			got := want{phase: st.Phase, state: state, reason: reason, ready: cs.Ready, restarts: cs.RestartCount,
				lastReason: cs.GetLastState().GetTerminated().GetReason()}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			var readyCond string
			for _, c := range st.Conditions {
				if c.Type == "Ready" {
					readyCond = c.Status
				}
			}
			if (readyCond == "True") != tc.want.ready {
				t.Fatalf("Ready condition %s with container ready %v", readyCond, tc.want.ready)
			}
		})
	}
}

func TestPodStatusKeepsTransitionTimes(t *testing.T) {
	web := rcPod("Always", "web")
	inst := []observedContainer{rcRunning(web, "web", "a", 0)}
	_, plans := planPod(web, inst, rcNow)
	first := podStatus(web, podObservation{Instances: inst, Plans: plans}, nil, rcNow)
	later := podStatus(web, podObservation{Instances: inst, Plans: plans}, first, rcNow.Add(time.Hour))
	for i, c := range later.Conditions {
		if c.LastTransitionTime != first.Conditions[i].LastTransitionTime {
			t.Fatalf("condition %s moved its transition time without changing", c.Type)
		}
	}
}

func TestAllocatableOf(t *testing.T) {
	got := allocatableOf(map[string]string{"cpu": "2", "memory": "4096Ki", "pods": "110"}, map[string]string{"cpu": "100m", "memory": "1Mi"})
	if got["cpu"] != "1900m" || got["memory"] != "3072Ki" || got["pods"] != "110" {
		t.Fatalf("allocatable %v", got)
	}
	if got := allocatableOf(map[string]string{"cpu": "1"}, map[string]string{"cpu": "4"}); got["cpu"] != "0m" {
		t.Fatalf("never below zero: %v", got)
	}
	if got := allocatableOf(map[string]string{"cpu": "1"}, nil); got["cpu"] != "1" {
		t.Fatalf("no reservation: %v", got)
	}
}
