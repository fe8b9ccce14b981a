package cluster

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

func stGracefulDel(name string, grace int64) *storepb.Op {
	op := stDel("Pod", "default", name, "")
	op.Graceful, op.GraceSeconds = true, grace
	return op
}

func TestStateGracefulPodDelete(t *testing.T) {
	s := NewState()
	bound := stBoundPod("default", "web", "n1")
	bound.Spec.TerminationGracePeriodSeconds = proto.Int32(7)
	stMustApply(t, s, 1, stPut(bound), stPut(stPod("default", "pending", "img")))

	// A pod on a node turns Terminating with its own grace; it stays.
	stMustApply(t, s, 2, stGracefulDel("web", -1))
	p := stGetPod(t, s, "default", "web")
	if p == nil || p.Metadata.DeletionTimestamp != stStamp(2) || p.Metadata.GetDeletionGracePeriodSeconds() != 7 || p.Metadata.ResourceVersion != "2" {
		t.Fatalf("after a graceful delete: %v", p.GetMetadata())
	}
	// Again: nothing changes (no event); a shorter grace is taken.
	stMustApply(t, s, 3, stGracefulDel("web", -1))
	if got := stGetPod(t, s, "default", "web").Metadata.ResourceVersion; got != "2" {
		t.Fatalf("a second graceful delete changed the pod (rv %s)", got)
	}
	stMustApply(t, s, 4, stGracefulDel("web", 1))
	p = stGetPod(t, s, "default", "web")
	if p.Metadata.GetDeletionGracePeriodSeconds() != 1 || p.Metadata.DeletionTimestamp != stStamp(2) {
		t.Fatalf("shorter grace: %v", p.Metadata)
	}
	// A status write of the node keeps it terminating.
	st := proto.Clone(p).(*api.Pod)
	st.Status = &api.PodStatus{Phase: "Running", PodIp: "10.244.1.9"}
	stMustApply(t, s, 5, stPut(st, func(op *storepb.Op) { op.StatusOnly = true }))
	if p = stGetPod(t, s, "default", "web"); p.Metadata.DeletionTimestamp == "" || p.Metadata.GetDeletionGracePeriodSeconds() != 1 {
		t.Fatalf("status write lost the termination: %v", p.Metadata)
	}
	// The node's final delete (not graceful) removes it.
	stMustApply(t, s, 6, stDel("Pod", "default", "web", ""))
	if stGetPod(t, s, "default", "web") != nil {
		t.Fatal("the final delete left the pod")
	}
	// A pod on no node has nothing to stop: gone at once.
	stMustApply(t, s, 7, stGracefulDel("pending", -1))
	if stGetPod(t, s, "default", "pending") != nil {
		t.Fatal("a graceful delete of an unbound pod left it")
	}
}
