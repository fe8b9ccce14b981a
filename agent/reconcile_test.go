package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/api"
)

var rcNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func rcPod(policy string, containers ...string) *api.Pod {
	p := &api.Pod{Metadata: &api.ObjectMeta{Uid: "u1", Name: "p", Namespace: "default"}, Spec: &api.PodSpec{RestartPolicy: policy}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, &api.Container{Name: c, Image: "busybox"})
	}
	return p
}

func rcHash(pod *api.Pod, name string) string {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return containerHash(c)
		}
	}
	return "old"
}

// rcInst is an instance: running, or exited with code at finishedAgo.
func rcRunning(pod *api.Pod, name, id string, restart int) observedContainer {
	return observedContainer{ID: id, PodUID: "u1", Name: name, Hash: rcHash(pod, name), Restart: restart, Running: true, StartedAt: rcNow.Add(-time.Minute)}
}

func rcExited(pod *api.Pod, name, id string, restart int, code int32, ranFor, finishedAgo time.Duration) observedContainer {
	fin := rcNow.Add(-finishedAgo)
	return observedContainer{ID: id, PodUID: "u1", Name: name, Hash: rcHash(pod, name), Restart: restart, Exited: true, ExitCode: code,
		StartedAt: fin.Add(-ranFor), FinishedAt: fin}
}

func rcActions(a []Action) string {
	var out []string
	for _, x := range a {
		s := x.Kind + " " + x.Container
		if x.ID != "" {
			s += " " + x.ID
		}
		if x.Kind == "start" {
			s += fmt.Sprintf(" #%d", x.Restart)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func TestPlanPod(t *testing.T) {
	web := rcPod("Always", "web", "side")
	never := rcPod("Never", "job")
	onFail := rcPod("OnFailure", "job")
	for _, tc := range []struct {
		name      string
		pod       *api.Pod
		instances []observedContainer
		want      string
		backoff   string // container in back-off
	}{
		{name: "new pod: start every container", pod: web, want: "start web #0, start side #0"},
		{name: "all running: nothing", pod: web, instances: []observedContainer{rcRunning(web, "web", "a", 0), rcRunning(web, "side", "b", 0)}, want: ""},
		{name: "one missing", pod: web, instances: []observedContainer{rcRunning(web, "web", "a", 0)}, want: "start side #0"},
		{name: "exited under Always, back-off over: restart with the next number", pod: web,
			instances: []observedContainer{rcExited(web, "web", "a", 0, 0, time.Second, time.Minute), rcRunning(web, "side", "b", 0)},
			want:      "start web #1"},
		{name: "exited under Always, within back-off: wait", pod: web,
			instances: []observedContainer{rcExited(web, "web", "a", 2, 1, time.Second, 5*time.Second), rcRunning(web, "side", "b", 0)},
			want:      "", backoff: "web"},
		{name: "back-off doubles: 3rd restart waits 40 s", pod: web,
			instances: []observedContainer{rcExited(web, "web", "a", 2, 1, time.Second, 30*time.Second), rcRunning(web, "side", "b", 0)},
			want:      "", backoff: "web"},
		{name: "back-off resets after a long run", pod: web,
			instances: []observedContainer{rcExited(web, "web", "a", 7, 1, 11*time.Minute, 11*time.Second), rcRunning(web, "side", "b", 0)},
			want:      "start web #8"},
		{name: "Never: an exited container stays", pod: never, instances: []observedContainer{rcExited(never, "job", "a", 0, 1, time.Second, time.Hour)}, want: ""},
		{name: "OnFailure: success stays", pod: onFail, instances: []observedContainer{rcExited(onFail, "job", "a", 0, 0, time.Second, time.Hour)}, want: ""},
		{name: "OnFailure: failure restarts", pod: onFail, instances: []observedContainer{rcExited(onFail, "job", "a", 0, 2, time.Second, time.Hour)}, want: "start job #1"},
		{name: "spec changed: the old instance is stopped, a new one started", pod: web,
			instances: []observedContainer{{ID: "a", PodUID: "u1", Name: "web", Hash: "old", Running: true}, rcRunning(web, "side", "b", 0)},
			want:      "stop web a, start web #1"},
		{name: "an exited old-spec instance is removed", pod: web,
			instances: []observedContainer{{ID: "a", PodUID: "u1", Name: "web", Hash: "old", Exited: true}, rcRunning(web, "side", "b", 0)},
			want:      "remove web a, start web #1"},
		{name: "one previous instance is kept, older ones removed", pod: web,
			instances: []observedContainer{rcExited(web, "web", "a", 0, 1, time.Second, time.Hour), rcExited(web, "web", "b", 1, 1, time.Second, time.Hour),
				rcRunning(web, "web", "c", 2), rcRunning(web, "side", "d", 0)},
			want: "remove web a"},
		{name: "a container not in the spec goes", pod: web,
			instances: []observedContainer{rcRunning(web, "web", "a", 0), rcRunning(web, "side", "b", 0), {ID: "x", PodUID: "u1", Name: "gone", Running: true}},
			want:      "stop gone x"},
		{name: "created but never started: replaced", pod: web,
			instances: []observedContainer{{ID: "a", PodUID: "u1", Name: "web", Hash: rcHash(web, "web")}, rcRunning(web, "side", "b", 0)},
			want:      "remove web a, start web #1"},
		{name: "two running instances of one container: the older stops", pod: web,
			instances: []observedContainer{rcRunning(web, "web", "a", 0), rcRunning(web, "web", "b", 1), rcRunning(web, "side", "c", 0)},
			want:      "stop web a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			actions, plans := planPod(tc.pod, tc.instances, rcNow)
			if got := rcActions(actions); got != tc.want {
				t.Fatalf("actions %q, want %q", got, tc.want)
			}
			for name, p := range plans {
				if inBackoff := !p.BackoffUntil.IsZero(); inBackoff != (name == tc.backoff) {
					t.Fatalf("container %s back-off until %v; want back-off only for %q", name, p.BackoffUntil, tc.backoff)
				}
			}
		})
	}
}

func TestRestartDelay(t *testing.T) {
	for restarts, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 6: 5 * time.Minute, 20: 5 * time.Minute} {
		if got := restartDelay(restarts); got != want {
			t.Errorf("restartDelay(%d) = %v, want %v", restarts, got, want)
		}
	}
}

func TestObservedFromLabels(t *testing.T) {
	o, ok := observedFromLabels("id", map[string]string{runtime.LabelPodUID: "u", runtime.LabelContainerName: "c", LabelSpecHash: "h", LabelRestart: "3"})
	if !ok || o.Restart != 3 || o.Hash != "h" {
		t.Fatalf("got %+v %v", o, ok)
	}
	if _, ok := observedFromLabels("id", map[string]string{"other": "x"}); ok {
		t.Fatal("a container without shoal's labels was taken as shoal's")
	}
}
