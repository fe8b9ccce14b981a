package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoalproj/shoal/api"
)

func TestPlanEvents(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	pod := &api.Pod{Metadata: &api.ObjectMeta{Name: "p", Namespace: "default", Uid: "u"}}
	node := &api.Node{Metadata: &api.ObjectMeta{Name: "n1", Uid: "n"}}
	rec := &recorder{}
	rec.record(pod, "Warning", "FailedScheduling", "0/3 nodes are available: 3 Insufficient memory")
	rec.record(pod, "Warning", "FailedScheduling", "0/3 nodes are available: 3 Insufficient memory") // twice in a round: once
	rec.record(node, "Warning", "NodeNotReady", "node n1 is not ready")

	ops := planEvents(nil, rec.events, now)
	if len(ops) != 2 {
		t.Fatalf("want 2 new events, got %d: %+v", len(ops), ops)
	}
	first := ops[0].Put.(*api.Event)
	if !ops[0].Create || first.Count != 1 || first.LastTimestamp != "2026-11-27T12:00:00Z" || first.Metadata.Namespace != "default" ||
		first.InvolvedObject.Kind != "Pod" || first.Source.Component != eventSource {
		t.Fatalf("new event %+v", first)
	}
	if nodeEv := ops[1].Put.(*api.Event); nodeEv.Metadata.Namespace != "default" || nodeEv.InvolvedObject.Namespace != "" {
		t.Fatalf("a node's event lives in default: %+v", nodeEv)
	}

	// Again later: the stored one counts up.
	first.Metadata.ResourceVersion = "5"
	rec2 := &recorder{}
	rec2.record(pod, "Warning", "FailedScheduling", "0/3 nodes are available: 3 Insufficient memory")
	ops = planEvents([]*api.Event{first}, rec2.events, now.Add(time.Minute))
	if len(ops) != 1 || ops[0].Create || ops[0].ResourceVersion != "5" {
		t.Fatalf("repeat: %+v", ops)
	}
	if e := ops[0].Put.(*api.Event); e.Count != 2 || e.FirstTimestamp != "2026-11-27T12:00:00Z" || e.LastTimestamp != "2026-11-27T12:01:00Z" {
		t.Fatalf("repeat: %+v", e)
	}

	// Past the TTL: deleted.
	ops = planEvents([]*api.Event{first}, nil, now.Add(eventTTL+time.Second))
	if len(ops) != 1 || ops[0].Delete == nil || ops[0].Delete.Name != first.Metadata.Name {
		t.Fatalf("expiry: %+v", ops)
	}

	// Beyond maxEvents: the oldest go.
	var many []*api.Event
	for i := range maxEvents {
		many = append(many, &api.Event{Metadata: &api.ObjectMeta{Name: fmt.Sprintf("e%05d", i), Namespace: "default"},
			LastTimestamp: now.Add(time.Duration(i-maxEvents) * time.Millisecond).Format(time.RFC3339Nano)})
	}
	many[7].LastTimestamp = now.Add(-30 * time.Minute).Format(time.RFC3339) // the oldest
	ops = planEvents(many, rec2.events, now)
	var deleted []string
	for _, op := range ops {
		if op.Delete != nil {
			deleted = append(deleted, op.Delete.Name)
		}
	}
	if len(deleted) != 1 || deleted[0] != "e00007" {
		t.Fatalf("bound: deleted %v", deleted)
	}
}
