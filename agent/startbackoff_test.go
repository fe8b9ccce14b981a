package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/api"
)

// createFails is a runtime whose Create fails, counting the attempts.
type createFails struct {
	*hollowRuntime
	creates int
}

func (r *createFails) Create(context.Context, runtime.ContainerSpec) (string, error) {
	r.creates++
	return "", errors.New("no space left on device")
}

// A container whose creation fails is not tried again every round: it
// backs off as a failed pull does, and reports CreateContainerError.
func TestCreateFailureBacksOff(t *testing.T) {
	rt := &createFails{hollowRuntime: newHollowRuntime()}
	defer rt.Close()
	m := newPodManager("n1", "10.0.0.1", t.TempDir(), rt, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	pod := &api.Pod{Metadata: &api.ObjectMeta{Name: "p", Namespace: "default", Uid: "u1"},
		Spec: &api.PodSpec{Containers: []*api.Container{{Name: "c", Image: "busybox"}}}}
	c := pod.Spec.Containers[0]
	for i := range 3 {
		waiting := map[string]waitingState{}
		err := m.start(context.Background(), pod, c, podnet.Attachment{}, 0, waiting)
		if i == 0 && err == nil {
			t.Fatal("the first create should fail")
		}
		if i > 0 && err != nil {
			t.Fatalf("attempt %d tried again within the back-off: %v", i+1, err)
		}
		if w := waiting["c"]; w.Reason != "CreateContainerError" || w.Message != "no space left on device" {
			t.Fatalf("attempt %d: waiting %+v", i+1, w)
		}
	}
	if rt.creates != 1 {
		t.Fatalf("creates: %d, want 1 within the back-off", rt.creates)
	}
	// Once the back-off ends it tries again.
	m.pulls["u1/c"].until = time.Now().Add(-time.Second)
	if err := m.start(context.Background(), pod, c, podnet.Attachment{}, 0, map[string]waitingState{}); err == nil || rt.creates != 2 {
		t.Fatalf("after the back-off: err %v, creates %d", err, rt.creates)
	}
}
