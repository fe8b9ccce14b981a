package scheduler

import (
	"crypto/rand"
	"encoding/hex"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
)

const (
	// eventTTL is how long the leader keeps an event after it last
	// happened; maxEvents bounds how many it keeps in all.
	eventTTL  = time.Hour
	maxEvents = 5000
	// eventSource is the component events of the controllers name.
	eventSource = "shoal-controllers"
)

// recorder collects the events of one round.
type recorder struct {
	events []*api.Event
}

// record notes that something happened to obj (a Pod, Deployment, Node...).
func (r *recorder) record(obj api.Resource, typ, reason, message string) {
	if r == nil {
		return
	}
	m := obj.GetMetadata()
	r.events = append(r.events, &api.Event{
		Metadata: &api.ObjectMeta{Namespace: eventNamespace(m.GetNamespace())},
		InvolvedObject: &api.ObjectReference{Kind: api.KindOf(obj), Namespace: m.GetNamespace(),
			Name: m.GetName(), Uid: m.GetUid()},
		Reason:  reason,
		Message: message,
		Type:    typ,
		Source:  &api.EventSource{Component: eventSource},
	})
}

// eventNamespace is where the event of an object lives: its namespace, or
// default for cluster-wide objects such as Nodes (as Kubernetes does).
func eventNamespace(ns string) string {
	if ns == "" {
		return api.DefaultNamespace
	}
	return ns
}

// eventKey says which events are the same one happening again.
func eventKey(e *api.Event) string {
	o := e.GetInvolvedObject()
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName() + "/" + o.GetUid() + "\x00" + e.GetType() + "\x00" + e.GetReason() + "\x00" + e.GetMessage()
}

// planEvents writes the events recorded this round, counting repeats of
// an existing event up instead of adding one, and deletes events past
// eventTTL and the oldest beyond maxEvents.
func planEvents(existing []*api.Event, recorded []*api.Event, now time.Time) []Op {
	stamp := now.UTC().Format(time.RFC3339)
	byKey := make(map[string]*api.Event, len(existing))
	for _, e := range existing {
		byKey[eventKey(e)] = e
	}
	var ops []Op
	created := 0
	seen := map[string]bool{}
	for _, e := range recorded {
		k := eventKey(e)
		if seen[k] {
			continue // once per round
		}
		seen[k] = true
		if cur := byKey[k]; cur != nil {
			next := proto.Clone(cur).(*api.Event)
			next.Count++
			next.LastTimestamp = stamp
			ops = append(ops, Op{Put: next, ResourceVersion: cur.GetMetadata().GetResourceVersion(), Why: "event " + e.Reason + " again"})
			continue
		}
		e.Metadata.Name = e.GetInvolvedObject().GetName() + "." + randomHex(8)
		e.Count = 1
		e.FirstTimestamp, e.LastTimestamp = stamp, stamp
		ops = append(ops, Op{Put: e, Create: true, Why: "event " + e.Reason})
		created++
	}
	// Expiry: past the TTL, then the oldest beyond the bound.
	var kept []*api.Event
	for _, e := range existing {
		last, err := time.Parse(time.RFC3339, e.GetLastTimestamp())
		if err == nil && now.Sub(last) <= eventTTL {
			kept = append(kept, e)
			continue
		}
		ops = append(ops, deleteEvent(e))
	}
	if over := len(kept) + created - maxEvents; over > 0 {
		sort.Slice(kept, func(i, j int) bool { return kept[i].GetLastTimestamp() < kept[j].GetLastTimestamp() })
		for _, e := range kept[:min(over, len(kept))] {
			ops = append(ops, deleteEvent(e))
		}
	}
	return ops
}

func deleteEvent(e *api.Event) Op {
	m := e.GetMetadata()
	return Op{Delete: &ObjectKey{Kind: "Event", Namespace: m.GetNamespace(), Name: m.GetName()},
		ResourceVersion: m.GetResourceVersion(), Why: "event expired"}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
