package agent

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/agent/runtime"
)

func TestHollowRuntime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newHollowRuntime()
	defer r.Close()
	events, err := r.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spec := runtime.ContainerSpec{PodUID: "u1", PodName: "p", PodNamespace: "default", Name: "c", Image: "busybox",
		Labels: map[string]string{"x": "y"}, LogPath: filepath.Join(t.TempDir(), "c.log")}
	id, err := r.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Status(ctx, id); st.State != runtime.StateCreated || st.Labels[runtime.LabelPodUID] != "u1" || st.ImageID == "" {
		t.Fatalf("created: %+v", st)
	}
	if err := r.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	list, _ := r.List(ctx, map[string]string{runtime.LabelPodUID: "u1", "x": "y"})
	if len(list) != 1 || list[0].State != runtime.StateRunning || list[0].StartedAt.IsZero() {
		t.Fatalf("list: %+v", list)
	}
	if other, _ := r.List(ctx, map[string]string{runtime.LabelPodUID: "u2"}); len(other) != 0 {
		t.Fatalf("list of another pod: %+v", other)
	}
	if code, err := r.Exec(ctx, id, []string{"true"}, nil, nil, nil, false); code != 0 || err != nil {
		t.Fatalf("exec: %d, %v", code, err)
	}
	if err := r.Stop(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Type != runtime.EventExit || ev.ContainerID != id || ev.ExitCode != 143 {
			t.Fatalf("event: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit event")
	}
	if st, _ := r.Status(ctx, id); st.State != runtime.StateExited {
		t.Fatalf("stopped: %+v", st)
	}
	if err := r.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Status(ctx, id); !runtime.IsNotFound(err) {
		t.Fatalf("status after remove: %v", err)
	}
	if err := r.Remove(ctx, id); !runtime.IsNotFound(err) {
		t.Fatalf("second remove: %v", err)
	}
	cancel()
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("an event after the end")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events not closed when ctx ended")
	}
}

func TestHollowNetwork(t *testing.T) {
	ctx := context.Background()
	n := &hollowNetwork{subnet: netip.MustParsePrefix("10.244.3.0/29"), pods: map[string]hollowPod{}}
	var ips []string
	for _, uid := range []string{"a", "b", "c", "d", "e"} { // .2 to .6: .1 is the gateway, .7 broadcast
		att, err := n.Setup(ctx, podnet.PodRef{UID: uid}, nil)
		if err != nil {
			t.Fatalf("%s: %v", uid, err)
		}
		if att.Gateway.String() != "10.244.3.1" {
			t.Fatalf("gateway %s", att.Gateway)
		}
		ips = append(ips, att.IP.String())
	}
	if want := []string{"10.244.3.2", "10.244.3.3", "10.244.3.4", "10.244.3.5", "10.244.3.6"}; len(ips) != len(want) || ips[0] != want[0] || ips[4] != want[4] {
		t.Fatalf("addresses %v, want %v", ips, want)
	}
	if _, err := n.Setup(ctx, podnet.PodRef{UID: "f"}, nil); err == nil {
		t.Fatal("a sixth pod in a /29 got an address")
	}
	if att, _ := n.Setup(ctx, podnet.PodRef{UID: "b"}, nil); att.IP.String() != "10.244.3.3" {
		t.Fatalf("setup again: %s, want the same address", att.IP)
	}
	if err := n.Teardown(ctx, podnet.PodRef{UID: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := n.Status(ctx, podnet.PodRef{UID: "b"}); ok {
		t.Fatal("status after teardown")
	}
	if refs, _ := n.List(ctx); len(refs) != 4 {
		t.Fatalf("list: %v", refs)
	}
	if att, err := n.Setup(ctx, podnet.PodRef{UID: "f"}, nil); err != nil || att.IP.String() != "10.244.3.3" {
		t.Fatalf("a freed address is reused: %v, %v", att.IP, err)
	}
}
