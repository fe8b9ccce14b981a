package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// ---------------------------------------------------------------- helpers

// stTime is the leader's clock of the entry at index i: a fixed instant, so
// that every replica (and every run) stamps the same times.
func stTime(i uint64) time.Time {
	return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
}

func stStamp(i uint64) string { return stTime(i).Format(time.RFC3339) }

// stPod is a pod with one container, labelled app=<name>, in phase Running.
func stPod(ns, name, image string) *api.Pod {
	return &api.Pod{
		Metadata: &api.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:     &api.PodSpec{Containers: []*api.Container{{Name: "c", Image: image}}},
		Status:   &api.PodStatus{Phase: "Running"},
	}
}

func stBoundPod(ns, name, node string) *api.Pod {
	p := stPod(ns, name, "img")
	p.Spec.NodeName = node
	return p
}

func stService(ns, name string, port int32) *api.Service {
	return &api.Service{
		Metadata: &api.ObjectMeta{Namespace: ns, Name: name},
		Spec:     &api.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []*api.ServicePort{{Port: port}}},
	}
}

func stNode(name string) *api.Node {
	return &api.Node{Metadata: &api.ObjectMeta{Name: name}, Spec: &api.NodeSpec{PodCidr: "10.244.1.0/24"}, Status: &api.NodeStatus{NodeId: name}}
}

// stPut is a PUT of obj; mods set the op's options.
func stPut(obj api.Resource, mods ...func(*storepb.Op)) *storepb.Op {
	op := &storepb.Op{Type: storepb.Op_PUT, Object: api.Wrap(proto.Clone(obj).(api.Resource)), NewUid: "uid-" + obj.GetMetadata().GetName()}
	for _, m := range mods {
		m(op)
	}
	return op
}

func stRV(rv string) func(*storepb.Op)   { return func(op *storepb.Op) { op.ResourceVersion = rv } }
func stCreateOnly(op *storepb.Op)        { op.CreateOnly = true }
func stStatusOnly(op *storepb.Op)        { op.StatusOnly = true }
func stUID(uid string) func(*storepb.Op) { return func(op *storepb.Op) { op.NewUid = uid } }

func stDel(kind, ns, name, rv string) *storepb.Op {
	return &storepb.Op{Type: storepb.Op_DELETE, Kind: kind, Namespace: ns, Name: name, ResourceVersion: rv}
}

// stApply applies one raft entry holding one transaction per op list.
func stApply(s *State, index uint64, txns ...[]*storepb.Op) []*storepb.TxnResult {
	var ts []*storepb.Txn
	for _, ops := range txns {
		ts = append(ts, &storepb.Txn{Ops: ops, TimeUnixNano: stTime(index).UnixNano()})
	}
	return s.applyTxns(index, ts)
}

// stMustApply applies a one-transaction entry and fails the test when it
// does not succeed.
func stMustApply(t *testing.T, s *State, index uint64, ops ...*storepb.Op) *storepb.TxnResult {
	t.Helper()
	res := stApply(s, index, ops)[0]
	if res.Code != 0 {
		t.Fatalf("entry %d: %s: %s", index, codes.Code(res.Code), res.Message)
	}
	return res
}

func stAll(Event) bool { return true }

// stEvents renders the events after index as "TYPE key@rv" strings.
func stEvents(t *testing.T, s *State, after uint64) []string {
	t.Helper()
	evs, _, _, err := s.EventsSince(WatchPosition{Index: after}, stAll)
	if err != nil {
		t.Fatalf("EventsSince(%d): %v", after, err)
	}
	return stEventStrings(evs)
}

func stEventStrings(evs []Event) []string {
	out := []string{}
	for _, e := range evs {
		rv := e.Object.GetMetadata().GetResourceVersion()
		if rv != fmt.Sprint(e.Index) {
			rv += fmt.Sprintf("(index %d)", e.Index)
		}
		out = append(out, fmt.Sprintf("%s %s %s@%s", e.Type, api.KindOf(e.Object), api.KeyOf(e.Object), rv))
	}
	return out
}

func stGetPod(t *testing.T, s *State, ns, name string) *api.Pod {
	t.Helper()
	r := s.Get("Pod", ns, name)
	if r == nil {
		return nil
	}
	return r.(*api.Pod)
}

// stDump lists every object of every kind as "Kind key@rv".
func stDump(s *State) ([]string, uint64) {
	var out []string
	var at uint64
	for _, k := range api.Kinds() {
		objs, idx := s.List(k.Kind, "", "")
		at = idx
		for _, o := range objs {
			out = append(out, fmt.Sprintf("%s %s@%s", k.Kind, api.KeyOf(o), o.GetMetadata().GetResourceVersion()))
		}
	}
	return out, at
}

func stEqualStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- writes

// TestStatePutAndDelete applies one operation (at index 10) over a state
// holding default/web, created at index 1 with uid u1, and checks the
// result, the event and the stored object.
func TestStatePutAndDelete(t *testing.T) {
	base := stPod("default", "web", "nginx:1")
	withImage := func(img string) *api.Pod {
		p := proto.Clone(base).(*api.Pod)
		p.Spec.Containers[0].Image = img
		return p
	}
	modBase := func(f func(p *api.Pod)) *api.Pod { p := proto.Clone(base).(*api.Pod); f(p); return p }
	created := []*storepb.Op{stPut(base, stUID("u1"))}
	createdTwice := []*storepb.Op{stPut(base, stUID("u1")), stPut(withImage("nginx:2"))} // at 1, then 2

	type check func(t *testing.T, s *State, res *storepb.TxnResult)
	stored := func(want func(t *testing.T, p *api.Pod)) check {
		return func(t *testing.T, s *State, res *storepb.TxnResult) {
			t.Helper()
			p := stGetPod(t, s, "default", "web")
			if p == nil {
				t.Fatal("default/web is not stored")
			}
			want(t, p)
		}
	}
	absent := func(t *testing.T, s *State, _ *storepb.TxnResult) {
		if p := stGetPod(t, s, "default", "web"); p != nil {
			t.Fatalf("default/web still stored at resourceVersion %s", p.Metadata.ResourceVersion)
		}
	}
	meta := func(rv string, gen int32, uid, created string) func(t *testing.T, p *api.Pod) {
		return func(t *testing.T, p *api.Pod) {
			t.Helper()
			m := p.GetMetadata()
			if m.ResourceVersion != rv || m.Generation != gen || m.Uid != uid || m.CreationTimestamp != created {
				t.Errorf("metadata rv=%s gen=%d uid=%s created=%s; want rv=%s gen=%d uid=%s created=%s",
					m.ResourceVersion, m.Generation, m.Uid, m.CreationTimestamp, rv, gen, uid, created)
			}
		}
	}
	both := func(cs ...func(t *testing.T, p *api.Pod)) func(t *testing.T, p *api.Pod) {
		return func(t *testing.T, p *api.Pod) {
			t.Helper()
			for _, c := range cs {
				c(t, p)
			}
		}
	}
	image := func(want string) func(t *testing.T, p *api.Pod) {
		return func(t *testing.T, p *api.Pod) {
			t.Helper()
			if got := p.GetSpec().GetContainers()[0].GetImage(); got != want {
				t.Errorf("image %q, want %q", got, want)
			}
		}
	}
	phase := func(want string) func(t *testing.T, p *api.Pod) {
		return func(t *testing.T, p *api.Pod) {
			t.Helper()
			if got := p.GetStatus().GetPhase(); got != want {
				t.Errorf("status.phase %q, want %q", got, want)
			}
		}
	}

	cases := []struct {
		name       string
		setup      []*storepb.Op // one entry each, at indexes 1, 2, ...
		op         *storepb.Op   // at index 10
		wantCode   codes.Code
		anyFailure bool   // any code but OK
		wantMsg    string // substring of the result's message
		wantEvent  []string
		check      check
	}{
		{
			name: "create stamps uid, generation, creation time and resourceVersion from the entry",
			op: stPut(modBase(func(p *api.Pod) {
				p.ApiVersion, p.Kind = "v1", "Pod"
				p.Metadata.Uid, p.Metadata.ResourceVersion, p.Metadata.Generation = "client-uid", "77", 9
				p.Metadata.CreationTimestamp, p.Metadata.DeletionTimestamp = "2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z"
			}), stUID("u1")),
			wantEvent: []string{"ADDED Pod default/web@10"},
			check: stored(both(meta("10", 1, "u1", stStamp(10)), phase("Running"), func(t *testing.T, p *api.Pod) {
				if p.ApiVersion != "" || p.Kind != "" || p.Metadata.DeletionTimestamp != "" {
					t.Errorf("stored apiVersion=%q kind=%q deletionTimestamp=%q; want all empty", p.ApiVersion, p.Kind, p.Metadata.DeletionTimestamp)
				}
			})),
		},
		{
			name: "create-only of a new object",
			op:   stPut(base, stCreateOnly, stUID("u9")), wantEvent: []string{"ADDED Pod default/web@10"},
			check: stored(meta("10", 1, "u9", stStamp(10))),
		},
		{
			name:  "spec change bumps generation and keeps uid, creation time and the stored status",
			setup: created,
			op: stPut(modBase(func(p *api.Pod) {
				p.Spec.Containers[0].Image = "nginx:2"
				p.Status.Phase = "Failed"
				p.Metadata.Uid = "forged"
				p.Metadata.CreationTimestamp = "forged"
			}), stUID("u2")),
			wantEvent: []string{"MODIFIED Pod default/web@10"},
			check:     stored(both(meta("10", 2, "u1", stStamp(1)), image("nginx:2"), phase("Running"))),
		},
		{
			name:      "spec write without status keeps the stored status",
			setup:     created,
			op:        stPut(modBase(func(p *api.Pod) { p.Status = nil; p.Spec.Containers[0].Image = "nginx:2" })),
			wantEvent: []string{"MODIFIED Pod default/web@10"},
			check:     stored(both(meta("10", 2, "u1", stStamp(1)), phase("Running"))),
		},
		{
			name:      "metadata-only change is an event but no new generation",
			setup:     created,
			op:        stPut(modBase(func(p *api.Pod) { p.Metadata.Labels["tier"] = "front" })),
			wantEvent: []string{"MODIFIED Pod default/web@10"},
			check:     stored(meta("10", 1, "u1", stStamp(1))),
		},
		{
			name:  "unchanged write is no event and keeps the resourceVersion",
			setup: created,
			op: stPut(modBase(func(p *api.Pod) {
				p.ApiVersion, p.Kind = "v1", "Pod" // type meta, server-set fields and status do not count
				p.Metadata.Uid, p.Metadata.Generation, p.Metadata.CreationTimestamp = "other", 5, "other"
				p.Status.Phase = "Failed"
			})),
			wantEvent: []string{},
			check: func(t *testing.T, s *State, res *storepb.TxnResult) {
				stored(both(meta("1", 1, "u1", stStamp(1)), phase("Running")))(t, s, res)
				if got := res.Objects[0].Resource().GetMetadata().GetResourceVersion(); got != "1" {
					t.Errorf("result resourceVersion %s, want the unchanged 1", got)
				}
			},
		},
		{
			name:      "write naming the current resourceVersion succeeds",
			setup:     created,
			op:        stPut(withImage("nginx:2"), stRV("1")),
			wantEvent: []string{"MODIFIED Pod default/web@10"},
			check:     stored(meta("10", 2, "u1", stStamp(1))),
		},
		{
			name:     "write naming a stale resourceVersion conflicts",
			setup:    createdTwice,
			op:       stPut(withImage("nginx:3"), stRV("1")),
			wantCode: codes.Aborted, wantMsg: `conflict: pods "web" is at resourceVersion 2, the write names 1`,
			check: stored(both(meta("2", 2, "u1", stStamp(1)), image("nginx:2"))),
		},
		{
			name:     "write naming a resourceVersion of a missing object",
			op:       stPut(base, stRV("3")),
			wantCode: codes.NotFound, wantMsg: `pods "web" not found (the write names resourceVersion 3)`,
			check: absent,
		},
		{
			name:     "create-only over an existing object",
			setup:    created,
			op:       stPut(withImage("nginx:2"), stCreateOnly),
			wantCode: codes.AlreadyExists, wantMsg: `pods "web" already exists`,
			check: stored(both(meta("1", 1, "u1", stStamp(1)), image("nginx:1"))),
		},
		{
			name:  "status-only write replaces status and nothing else",
			setup: created,
			op: stPut(modBase(func(p *api.Pod) {
				p.Spec.Containers[0].Image = "nginx:9"
				p.Metadata.Labels = map[string]string{"evil": "yes"}
				p.Status.Phase = "Succeeded"
			}), stStatusOnly),
			wantEvent: []string{"MODIFIED Pod default/web@10"},
			check: stored(both(meta("10", 1, "u1", stStamp(1)), image("nginx:1"), phase("Succeeded"), func(t *testing.T, p *api.Pod) {
				if p.Metadata.Labels["app"] != "web" || p.Metadata.Labels["evil"] != "" {
					t.Errorf("labels %v changed by a status write", p.Metadata.Labels)
				}
			})),
		},
		{
			name:      "status-only write with no status clears it",
			setup:     created,
			op:        stPut(modBase(func(p *api.Pod) { p.Status = nil }), stStatusOnly),
			wantEvent: []string{"MODIFIED Pod default/web@10"},
			check:     stored(phase("")),
		},
		{
			name:      "unchanged status-only write is no event",
			setup:     created,
			op:        stPut(base, stStatusOnly),
			wantEvent: []string{},
			check:     stored(meta("1", 1, "u1", stStamp(1))),
		},
		{
			name:     "status-only write of a missing object",
			op:       stPut(base, stStatusOnly),
			wantCode: codes.NotFound, wantMsg: `pods "web" not found`,
			check: absent,
		},
		{
			name:     "status-only write naming a stale resourceVersion",
			setup:    createdTwice,
			op:       stPut(modBase(func(p *api.Pod) { p.Status.Phase = "Failed" }), stStatusOnly, stRV("1")),
			wantCode: codes.Aborted, wantMsg: "conflict",
			check: stored(phase("Running")),
		},
		{
			name:      "delete is an event at the delete's index with the last object",
			setup:     created,
			op:        stDel("Pod", "default", "web", ""),
			wantEvent: []string{"DELETED Pod default/web@10"},
			check: func(t *testing.T, s *State, res *storepb.TxnResult) {
				absent(t, s, res)
				gone := res.Objects[0].Resource().(*api.Pod)
				if gone.Metadata.Uid != "u1" || gone.Spec.Containers[0].Image != "nginx:1" {
					t.Errorf("deleted object %v, want the last stored one", gone)
				}
			},
		},
		{
			name:      "delete naming the current resourceVersion",
			setup:     createdTwice,
			op:        stDel("Pod", "default", "web", "2"),
			wantEvent: []string{"DELETED Pod default/web@10"},
			check:     absent,
		},
		{
			name:     "delete naming a stale resourceVersion keeps the object",
			setup:    createdTwice,
			op:       stDel("Pod", "default", "web", "1"),
			wantCode: codes.Aborted, wantMsg: "is at resourceVersion 2, the write names 1",
			check: stored(meta("2", 2, "u1", stStamp(1))),
		},
		{
			name:     "delete of a missing object",
			op:       stDel("Pod", "default", "web", ""),
			wantCode: codes.NotFound, wantMsg: `pods "web" not found`,
		},
		{
			name:     "delete in another namespace does not touch default/web",
			setup:    created,
			op:       stDel("Pod", "other", "web", ""),
			wantCode: codes.NotFound,
			check:    stored(meta("1", 1, "u1", stStamp(1))),
		},
		{
			// The FSM must fail an entry, never panic on it: a panic
			// stops every replica at the same entry, forever.
			name:       "delete of an unknown kind",
			setup:      created,
			op:         stDel("pod", "default", "web", ""),
			anyFailure: true,
			check:      stored(meta("1", 1, "u1", stStamp(1))),
		},
		{
			name:     "put of an empty object",
			op:       &storepb.Op{Type: storepb.Op_PUT, Object: &api.Object{}},
			wantCode: codes.InvalidArgument, wantMsg: "empty object",
		},
		{
			name:     "unknown operation",
			op:       &storepb.Op{Type: storepb.Op_Type(42), Object: api.Wrap(base)},
			wantCode: codes.InvalidArgument, wantMsg: "unknown operation",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			for i, op := range tc.setup {
				stMustApply(t, s, uint64(i+1), op)
			}
			res := stApply(s, 10, []*storepb.Op{tc.op})[0]
			if tc.anyFailure && res.Code != 0 {
				tc.wantCode = codes.Code(res.Code)
			}
			if codes.Code(res.Code) != tc.wantCode || (tc.anyFailure && res.Code == 0) {
				t.Fatalf("code %s (%s), want %s", codes.Code(res.Code), res.Message, tc.wantCode)
			}
			if !strings.Contains(res.Message, tc.wantMsg) {
				t.Errorf("message %q, want it to contain %q", res.Message, tc.wantMsg)
			}
			if tc.wantCode == codes.OK && len(res.Objects) != 1 {
				t.Fatalf("%d result objects, want 1", len(res.Objects))
			}
			if tc.wantCode != codes.OK && len(res.Objects) != 0 {
				t.Errorf("failed write returned %d objects", len(res.Objects))
			}
			want := tc.wantEvent
			if want == nil {
				want = []string{}
			}
			if got := stEvents(t, s, 9); !stEqualStrings(got, want) {
				t.Errorf("events %q, want %q", got, want)
			}
			if s.Index() != 10 {
				t.Errorf("index %d after the entry, want 10 (failed and unchanged writes still advance it)", s.Index())
			}
			if tc.check != nil {
				tc.check(t, s, res)
			}
		})
	}
}

// TestStatePutOtherKinds covers keys and generations of the kinds that are
// not pods.
func TestStatePutOtherKinds(t *testing.T) {
	cases := []struct {
		name       string
		first      api.Resource
		second     api.Resource
		statusOnly bool
		kind, ns   string
		key        string
		wantGen    int32
		wantEvents []string
	}{
		{
			name: "node is cluster-wide: its key is its name", first: stNode("n1"),
			second: func() api.Resource { n := stNode("n1"); n.Spec.Unschedulable = true; return n }(),
			kind:   "Node", key: "n1", wantGen: 2,
			wantEvents: []string{"ADDED Node n1@1", "MODIFIED Node n1@2"},
		},
		{
			name: "service without status: spec change is a new generation", first: stService("prod", "api", 80),
			second: stService("prod", "api", 8080), kind: "Service", ns: "prod", key: "prod/api", wantGen: 2,
			wantEvents: []string{"ADDED Service prod/api@1", "MODIFIED Service prod/api@2"},
		},
		{
			name: "service rewritten identically", first: stService("prod", "api", 80),
			second: stService("prod", "api", 80), kind: "Service", ns: "prod", key: "prod/api", wantGen: 1,
			wantEvents: []string{"ADDED Service prod/api@1"},
		},
		{
			name:  "node status write keeps its spec",
			first: stNode("n2"),
			second: func() api.Resource {
				n := stNode("n2")
				n.Spec.PodCidr = "forged"
				n.Status.RaftRole = RoleVoter
				return n
			}(),
			statusOnly: true, kind: "Node", key: "n2", wantGen: 1,
			wantEvents: []string{"ADDED Node n2@1", "MODIFIED Node n2@2"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			stMustApply(t, s, 1, stPut(tc.first))
			op := stPut(tc.second)
			op.StatusOnly = tc.statusOnly
			stMustApply(t, s, 2, op)
			got := s.Get(tc.kind, tc.ns, strings.TrimPrefix(tc.key, tc.ns+"/"))
			if got == nil {
				t.Fatalf("Get(%s, %q, %q) = nil", tc.kind, tc.ns, tc.key)
			}
			if api.KeyOf(got) != tc.key || got.GetMetadata().GetGeneration() != tc.wantGen {
				t.Errorf("key %s generation %d, want %s %d", api.KeyOf(got), got.GetMetadata().GetGeneration(), tc.key, tc.wantGen)
			}
			if n, ok := got.(*api.Node); ok && op.StatusOnly && (n.Spec.PodCidr != "10.244.1.0/24" || n.Status.RaftRole != RoleVoter) {
				t.Errorf("after a status write: podCIDR %q role %q", n.Spec.PodCidr, n.Status.RaftRole)
			}
			if evs := stEvents(t, s, 0); !stEqualStrings(evs, tc.wantEvents) {
				t.Errorf("events %q, want %q", evs, tc.wantEvents)
			}
		})
	}
}

// TestStateTxnAllOrNothing: every transaction of an entry commits whole or
// not at all, independently of the others in the entry.
func TestStateTxnAllOrNothing(t *testing.T) {
	a, b := stPod("default", "a", "img"), stPod("default", "b", "img")
	cases := []struct {
		name      string
		setup     [][]*storepb.Op // one entry each
		entry     [][]*storepb.Op // the entry under test, at index 10: its transactions
		wantCodes []codes.Code
		wantMsgs  []string // prefix of each result's message
		wantObjs  []int    // result objects per transaction
		wantEvent []string
		wantKeys  []string // pods stored afterwards
	}{
		{
			name:      "second op fails: the first is undone",
			setup:     [][]*storepb.Op{{stPut(b)}},
			entry:     [][]*storepb.Op{{stPut(a), stPut(b, stCreateOnly)}},
			wantCodes: []codes.Code{codes.AlreadyExists},
			wantMsgs:  []string{`object 2 of 2: pods "b" already exists (nothing was changed)`},
			wantObjs:  []int{0},
			wantEvent: []string{},
			wantKeys:  []string{"default/b"},
		},
		{
			name:      "a single failing op is reported without position",
			entry:     [][]*storepb.Op{{stDel("Pod", "default", "a", "")}},
			wantCodes: []codes.Code{codes.NotFound},
			wantMsgs:  []string{`pods "a" not found`},
			wantObjs:  []int{0},
			wantEvent: []string{},
		},
		{
			name:      "transactions of one entry are independent",
			setup:     [][]*storepb.Op{{stPut(b)}},
			entry:     [][]*storepb.Op{{stPut(a)}, {stPut(b, stCreateOnly)}, {stDel("Pod", "default", "b", "")}},
			wantCodes: []codes.Code{codes.OK, codes.AlreadyExists, codes.OK},
			wantMsgs:  []string{"", `pods "b" already exists`, ""},
			wantObjs:  []int{1, 0, 1},
			wantEvent: []string{"ADDED Pod default/a@10", "DELETED Pod default/b@10"},
			wantKeys:  []string{"default/a"},
		},
		{
			name:      "a later transaction sees an earlier one of the same entry",
			entry:     [][]*storepb.Op{{stPut(a)}, {stPut(a, stCreateOnly)}, {stPut(stPod("default", "a", "img2"), stRV("10"))}},
			wantCodes: []codes.Code{codes.OK, codes.AlreadyExists, codes.OK},
			wantMsgs:  []string{"", `pods "a" already exists`, ""},
			wantObjs:  []int{1, 0, 1},
			wantEvent: []string{"ADDED Pod default/a@10", "MODIFIED Pod default/a@10"},
			wantKeys:  []string{"default/a"},
		},
		{
			name:      "create and delete in one transaction leave nothing",
			entry:     [][]*storepb.Op{{stPut(a), stDel("Pod", "default", "a", "")}},
			wantCodes: []codes.Code{codes.OK},
			wantMsgs:  []string{""},
			wantObjs:  []int{2},
			wantEvent: []string{"ADDED Pod default/a@10", "DELETED Pod default/a@10"},
		},
		{
			name:      "unchanged ops return the stored object and no event",
			setup:     [][]*storepb.Op{{stPut(a), stPut(b)}},
			entry:     [][]*storepb.Op{{stPut(a), stPut(stPod("default", "b", "img2"))}},
			wantCodes: []codes.Code{codes.OK},
			wantMsgs:  []string{""},
			wantObjs:  []int{2},
			wantEvent: []string{"MODIFIED Pod default/b@10"},
			wantKeys:  []string{"default/a", "default/b"},
		},
		{
			name:      "an empty entry only advances the index",
			entry:     nil,
			wantEvent: []string{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			for i, ops := range tc.setup {
				stMustApply(t, s, uint64(i+1), ops...)
			}
			results := stApply(s, 10, tc.entry...)
			if len(results) != len(tc.entry) {
				t.Fatalf("%d results for %d transactions", len(results), len(tc.entry))
			}
			for i, r := range results {
				if codes.Code(r.Code) != tc.wantCodes[i] || !strings.HasPrefix(r.Message, tc.wantMsgs[i]) || len(r.Objects) != tc.wantObjs[i] {
					t.Errorf("txn %d: %s %q with %d objects; want %s %q… with %d", i, codes.Code(r.Code), r.Message, len(r.Objects), tc.wantCodes[i], tc.wantMsgs[i], tc.wantObjs[i])
				}
			}
			if got := stEvents(t, s, 9); !stEqualStrings(got, tc.wantEvent) {
				t.Errorf("events %q, want %q", got, tc.wantEvent)
			}
			objs, idx := s.List("Pod", "", "")
			var keys []string
			for _, o := range objs {
				keys = append(keys, api.KeyOf(o))
			}
			if !stEqualStrings(keys, tc.wantKeys) || idx != 10 {
				t.Errorf("pods %q at %d, want %q at 10", keys, idx, tc.wantKeys)
			}
		})
	}
}

// TestStateSecrets: secrets are a transaction of their own, copied in, with
// no event.
func TestStateSecrets(t *testing.T) {
	s := NewState()
	if s.Secrets() != nil {
		t.Fatal("a new state has secrets")
	}
	in := &storepb.ClusterSecrets{ClusterId: "c1", JoinSecret: "s1"}
	res := s.applyTxns(1, []*storepb.Txn{{SetSecrets: in}})
	if res[0].Code != 0 {
		t.Fatalf("set secrets: %s", res[0].Message)
	}
	in.JoinSecret = "mutated by the caller"
	if got := s.Secrets(); got.GetJoinSecret() != "s1" || got.GetClusterId() != "c1" {
		t.Errorf("secrets %v, want the ones applied (copied)", got)
	}
	s.applyTxns(2, []*storepb.Txn{{SetSecrets: &storepb.ClusterSecrets{ClusterId: "c1", JoinSecret: "s2"}}})
	if got := s.Secrets().GetJoinSecret(); got != "s2" {
		t.Errorf("join secret %q after rotation, want s2", got)
	}
	if evs := stEvents(t, s, 0); len(evs) != 0 {
		t.Errorf("secrets produced events %q", evs)
	}
}

// TestStateResultsDoNotAliasStore: the objects a write returns leave the
// FSM (Cluster.write sets apiVersion and kind on them); changing them must
// not change the replica.
func TestStateResultsDoNotAliasStore(t *testing.T) {
	cases := []struct {
		name string
		ops  []*storepb.Op // second entry
	}{
		{"created", nil},
		{"modified", []*storepb.Op{stPut(stPod("default", "web", "nginx:2"))}},
		{"unchanged", []*storepb.Op{stPut(stPod("default", "web", "nginx:1"))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			leader, follower := NewState(), NewState()
			for _, s := range []*State{leader, follower} {
				res := stMustApply(t, s, 1, stPut(stPod("default", "web", "nginx:1")))
				if len(tc.ops) > 0 {
					res = stMustApply(t, s, 2, tc.ops...)
				}
				if s == leader { // what Cluster.write does with the results
					for _, o := range res.Objects {
						api.SetTypeMeta(o.Resource())
					}
				}
			}
			l, f := leader.Get("Pod", "default", "web"), follower.Get("Pod", "default", "web")
			if !proto.Equal(l, f) {
				t.Errorf("replicas differ after the leader touched its results:\nleader   %v\nfollower %v", l, f)
			}
			// The next identical write must be a no-op on both replicas,
			// or their resourceVersions part.
			for _, s := range []*State{leader, follower} {
				stMustApply(t, s, 3, stPut(stPod("default", "web", "nginx:1")))
			}
			if lv, fv := leader.Get("Pod", "default", "web").GetMetadata().GetResourceVersion(), follower.Get("Pod", "default", "web").GetMetadata().GetResourceVersion(); lv != fv {
				t.Errorf("resourceVersion leader %s follower %s", lv, fv)
			}
		})
	}
}

// ---------------------------------------------------------------- reads

func TestStateList(t *testing.T) {
	s := NewState()
	stMustApply(t, s, 1,
		stPut(stBoundPod("b", "p2", "n1")), stPut(stBoundPod("a", "p1", "n1")), stPut(stBoundPod("a", "p3", "n2")),
		stPut(stPod("ab", "p0", "img")), stPut(stPod("a", "p9", "img")), stPut(stService("a", "svc", 80)), stPut(stNode("n1")))
	// Rebinding moves the pod between nodes in the node index.
	stMustApply(t, s, 2, stPut(stBoundPod("b", "p2", "n2")))
	cases := []struct {
		kind, ns, node string
		want           []string
	}{
		{"Pod", "", "", []string{"a/p1", "a/p3", "a/p9", "ab/p0", "b/p2"}},
		{"Pod", "a", "", []string{"a/p1", "a/p3", "a/p9"}}, // not ab/
		{"Pod", "ab", "", []string{"ab/p0"}},
		{"Pod", "zz", "", nil},
		{"Pod", "", "n1", []string{"a/p1"}},
		{"Pod", "", "n2", []string{"a/p3", "b/p2"}},
		{"Pod", "a", "n2", []string{"a/p3"}},
		{"Pod", "b", "n1", nil},
		{"Pod", "", "n9", nil},
		{"Service", "a", "", []string{"a/svc"}},
		{"Service", "", "n1", nil}, // only pods are bound to nodes
		{"Node", "", "", []string{"n1"}},
		{"Deployment", "", "", nil},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s ns=%q node=%q", tc.kind, tc.ns, tc.node), func(t *testing.T) {
			objs, idx := s.List(tc.kind, tc.ns, tc.node)
			var got []string
			for _, o := range objs {
				got = append(got, api.KeyOf(o))
			}
			if !stEqualStrings(got, tc.want) || idx != 2 {
				t.Errorf("got %q at %d, want %q at 2", got, idx, tc.want)
			}
		})
	}
	if s.Get("Pod", "a", "nope") != nil || s.Get("NoSuchKind", "a", "p1") != nil {
		t.Error("Get of a missing object or kind is not nil")
	}
}

func TestStateWaitIndex(t *testing.T) {
	cases := []struct {
		name    string
		applied uint64 // entries applied before waiting
		wait    uint64
		later   uint64 // entries applied while waiting
		cancel  bool
		wantErr bool
	}{
		{name: "already applied", applied: 3, wait: 2},
		{name: "exactly applied", applied: 3, wait: 3},
		{name: "applied later", applied: 1, wait: 4, later: 4},
		{name: "never applied: context ends", applied: 1, wait: 9, later: 3, cancel: true, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			for i := uint64(1); i <= tc.applied; i++ {
				stApply(s, i)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.WaitIndex(ctx, tc.wait) }()
			for i := tc.applied + 1; i <= tc.later; i++ {
				stApply(s, i)
			}
			if tc.cancel {
				cancel()
			}
			if err := <-done; (err != nil) != tc.wantErr {
				t.Errorf("WaitIndex(%d) = %v, want error %v", tc.wait, err, tc.wantErr)
			}
		})
	}
}

// ---------------------------------------------------------------- watches

// stHistory is a write history over several kinds and namespaces with
// every kind of change: add, modify, status write, unchanged write, failed
// write, delete, re-create, multi-transaction entries.
func stHistory() [][][]*storepb.Op {
	p := func(ns, name, img string) *api.Pod { return stPod(ns, name, img) }
	status := func(ns, name, phase string) *storepb.Op {
		x := p(ns, name, "v1")
		x.Status.Phase = phase
		return stPut(x, stStatusOnly)
	}
	return [][][]*storepb.Op{
		{{stPut(p("default", "a", "v1"))}},                                               // 1
		{{stPut(p("default", "b", "v1")), stPut(stService("default", "s", 80))}},         // 2
		{{stPut(p("default", "a", "v2"))}, {stPut(p("kube", "c", "v1"))}},                // 3: two txns
		{{stPut(p("default", "a", "v2"))}},                                               // 4: unchanged
		{{status("default", "b", "Failed")}},                                             // 5
		{{stPut(p("default", "b", "v9"), stRV("1"))}},                                    // 6: conflict
		{{stDel("Pod", "default", "a", "")}},                                             // 7
		{{stPut(p("default", "a", "v3")), stPut(stNode("n1"))}},                          // 8: re-create
		{{stPut(stService("default", "s", 81))}, {stDel("Pod", "kube", "c", "")}},        // 9
		{{stPut(p("default", "d", "v1")), stPut(p("default", "a", "v1"), stCreateOnly)}}, // 10: fails whole
		{{stDel("Service", "default", "s", "")}, {stPut(p("default", "d", "v1"))}},       // 11
		{{stPut(p("default", "d", "v2")), stDel("Pod", "default", "d", "")}},             // 12
	}
}

// stReplay applies watch events to a list taken at listAt, checking that
// every event is new to it: after listAt, ADDED of an absent key, MODIFIED
// or DELETED of a present one at no older resourceVersion.
func stReplay(t *testing.T, list map[string]string, listAt uint64, evs []Event) {
	t.Helper()
	for _, e := range evs {
		key := api.KindOf(e.Object) + " " + api.KeyOf(e.Object)
		rv := e.Object.GetMetadata().GetResourceVersion()
		cur, ok := list[key]
		switch {
		case e.Index <= listAt:
			t.Errorf("%s %s@%s at index %d: the list at %d already holds it, seen twice", e.Type, key, rv, e.Index, listAt)
		case rv != fmt.Sprint(e.Index):
			t.Errorf("%s %s: resourceVersion %s, event index %d", e.Type, key, rv, e.Index)
		case e.Type == "ADDED" && ok:
			t.Errorf("ADDED %s@%s but it is already there at %s: seen twice", key, rv, cur)
		case e.Type != "ADDED" && !ok:
			t.Errorf("%s %s@%s of an object the list does not hold", e.Type, key, rv)
		case ok && stAtoi(cur) > stAtoi(rv):
			t.Errorf("%s %s@%s after %s: out of order", e.Type, key, rv, cur)
		}
		if e.Type == "DELETED" {
			delete(list, key)
		} else {
			list[key] = rv
		}
	}
}

func stAtoi(s string) uint64 {
	var n uint64
	fmt.Sscan(s, &n)
	return n
}

func stListMap(s *State) (map[string]string, uint64) {
	out := map[string]string{}
	var at uint64
	for i, k := range api.Kinds() {
		objs, idx := s.List(k.Kind, "", "")
		if i > 0 && idx != at {
			panic("index moved between lists of a test without writers")
		}
		at = idx
		for _, o := range objs {
			out[k.Kind+" "+api.KeyOf(o)] = o.GetMetadata().GetResourceVersion()
		}
	}
	return out, at
}

// TestStateListThenWatchExactlyOnce: a list at N plus the events after N
// rebuild the final state, every change seen exactly once, from every
// point of the history.
func TestStateListThenWatchExactlyOnce(t *testing.T) {
	h := stHistory()
	s := NewState()
	type point struct {
		list map[string]string
		at   uint64
	}
	points := []point{}
	l, at := stListMap(s)
	points = append(points, point{l, at})
	for i, entry := range h {
		stApply(s, uint64(i+1), entry...)
		l, at := stListMap(s)
		points = append(points, point{l, at})
	}
	final, finalAt := stListMap(s)
	for _, p := range points {
		t.Run(fmt.Sprintf("list at %d", p.at), func(t *testing.T) {
			evs, idx, _, err := s.EventsSince(WatchPosition{Index: p.at}, stAll)
			if err != nil {
				t.Fatal(err)
			}
			if idx != (WatchPosition{Index: finalAt}) {
				t.Errorf("EventsSince returned index %d, want %d", idx, finalAt)
			}
			got := map[string]string{}
			for k, v := range p.list {
				got[k] = v
			}
			stReplay(t, got, p.at, evs)
			if fmt.Sprint(got) != fmt.Sprint(final) {
				t.Errorf("list+watch rebuilt\n%v\nwant\n%v", got, final)
			}
		})
	}
}

// TestStateEventsFilter: the filter sees every event and only matching ones
// come back; the index and channel come back regardless.
func TestStateEventsFilter(t *testing.T) {
	s := NewState()
	for i, entry := range stHistory() {
		stApply(s, uint64(i+1), entry...)
	}
	cases := []struct {
		name  string
		match func(Event) bool
		want  []string
	}{
		{"services only", func(e Event) bool { return api.KindOf(e.Object) == "Service" },
			[]string{"ADDED Service default/s@2", "MODIFIED Service default/s@9", "DELETED Service default/s@11"}},
		{"namespace kube", func(e Event) bool { return e.Object.GetMetadata().GetNamespace() == "kube" },
			[]string{"ADDED Pod kube/c@3", "DELETED Pod kube/c@9"}},
		{"nothing", func(Event) bool { return false }, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, idx, ch, err := s.EventsSince(WatchPosition{Index: 0}, tc.match)
			if err != nil || idx != (WatchPosition{Index: 12}) || ch == nil {
				t.Fatalf("EventsSince: idx %d ch %v err %v", idx, ch, err)
			}
			if got := stEventStrings(evs); !stEqualStrings(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStateEventsNotify: the channel EventsSince returns is closed by the
// next applied entry, even one without events, and not before.
func TestStateEventsNotify(t *testing.T) {
	s := NewState()
	_, idx, ch, _ := s.EventsSince(WatchPosition{Index: 0}, stAll)
	select {
	case <-ch:
		t.Fatal("closed before any entry")
	default:
	}
	stApply(s, 1, []*storepb.Op{stDel("Pod", "x", "y", "")}) // fails: no event
	select {
	case <-ch:
	default:
		t.Fatal("not closed by an applied entry")
	}
	evs, idx2, ch2, _ := s.EventsSince(idx, stAll)
	if len(evs) != 0 || idx2 != (WatchPosition{Index: 1}) || ch2 == ch {
		t.Errorf("after a failed write: %d events, index %d, same channel %v", len(evs), idx2, ch2 == ch)
	}
}

// TestWatchPositionParse: a watch names where it stands as INDEX or
// INDEX.SEQ; anything else is refused with what it should be.
func TestWatchPositionParse(t *testing.T) {
	cases := []struct {
		in   string
		want WatchPosition
		err  string
	}{
		{"0", WatchPosition{}, ""},
		{"17", WatchPosition{Index: 17}, ""},
		{"17.2", WatchPosition{Index: 17, Seq: 2}, ""},
		{"", WatchPosition{}, "not a number"},
		{"x", WatchPosition{}, "not a number"},
		{"-1", WatchPosition{}, "not a number"},
		{" 17", WatchPosition{}, "not a number"},
		{"17.", WatchPosition{}, "from 1"},
		{"17.0", WatchPosition{}, "from 1"},
		{"17.-1", WatchPosition{}, "from 1"},
		{"17.2.3", WatchPosition{}, "from 1"},
		{".2", WatchPosition{}, "not a number"},
	}
	for _, tc := range cases {
		got, err := ParseWatchPosition(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseWatchPosition(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseWatchPosition(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
		case tc.err == "" && got.String() != tc.in:
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

// TestStateEventsResumeInsideEntry: transactions batched into one raft
// entry share its index as resourceVersion, so a watch broken between
// their changes resumes from index.seq and gets exactly the rest.
func TestStateEventsResumeInsideEntry(t *testing.T) {
	s := NewState()
	stApply(s, 1,
		[]*storepb.Op{stPut(stPod("default", "a", "img"))},
		[]*storepb.Op{stPut(stPod("default", "b", "img")), stPut(stPod("default", "c", "img"))},
		[]*storepb.Op{stDel("Pod", "default", "nope", "")}, // fails: no change
		[]*storepb.Op{stPut(stPod("default", "d", "img"))})
	stApply(s, 2, []*storepb.Op{stPut(stPod("default", "e", "img"))})
	all := []string{"ADDED Pod default/a@1", "ADDED Pod default/b@1", "ADDED Pod default/c@1", "ADDED Pod default/d@1", "ADDED Pod default/e@2"}
	cases := []struct {
		from string
		want []string
	}{
		{"0", all},
		{"1.1", all[1:]},
		{"1.2", all[2:]},
		{"1.3", all[3:]},
		{"1.4", all[4:]},
		{"1", all[4:]},
		{"2", nil},
		{"2.1", nil},
	}
	for _, tc := range cases {
		from, err := ParseWatchPosition(tc.from)
		if err != nil {
			t.Fatal(err)
		}
		evs, next, _, err := s.EventsSince(from, stAll)
		if err != nil {
			t.Fatalf("EventsSince(%s): %v", tc.from, err)
		}
		if got := stEventStrings(evs); !stEqualStrings(got, append([]string{}, tc.want...)) {
			t.Errorf("from %s: got %q, want %q", tc.from, got, tc.want)
		}
		if want := (WatchPosition{Index: 2}); next != want && !(from.Index == 2 && next == from) {
			t.Errorf("from %s: next position %v, want %v", tc.from, next, want)
		}
	}
	// Once entry 1 is dropped from the log (here: a snapshot at 1), a
	// position inside it is too old.
	r := NewState()
	objs, _ := s.List("Pod", "", "")
	if err := r.restore(&storepb.SnapshotHeader{Index: 1}, objs[:4]); err != nil {
		t.Fatal(err)
	}
	for _, from := range []WatchPosition{{Index: 0}, {Index: 1, Seq: 2}} {
		if _, _, _, err := r.EventsSince(from, stAll); status.Code(err) != codes.OutOfRange {
			t.Errorf("restored at 1: EventsSince(%v) = %v, want OutOfRange", from, err)
		}
	}
	if _, _, _, err := r.EventsSince(WatchPosition{Index: 1}, stAll); err != nil {
		t.Errorf("restored at 1: EventsSince(1) = %v, want the changes after it", err)
	}
}

// TestStateEventsSinceAheadOfReplica: a watch may name a resourceVersion
// this replica has not applied yet (read from the leader or another
// replica). The index EventsSince hands back is where the watcher resumes;
// it must never be lower than what the watcher asked for, or the changes in
// between are delivered although the watcher's list already had them.
func TestStateEventsSinceAheadOfReplica(t *testing.T) {

	h := stHistory()
	cases := []struct{ replicaAt, watchFrom uint64 }{{3, 5}, {0, 2}, {8, 12}}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("replica at %d, watch from %d", tc.replicaAt, tc.watchFrom), func(t *testing.T) {
			elsewhere := NewState()
			for i := uint64(1); i <= tc.watchFrom; i++ {
				stApply(elsewhere, i, h[i-1]...)
			}
			list, at := stListMap(elsewhere)
			s := NewState()
			for i := uint64(1); i <= tc.replicaAt; i++ {
				stApply(s, i, h[i-1]...)
			}
			from := at
			_, idx, _, err := s.EventsSince(WatchPosition{Index: from}, stAll)
			if err != nil {
				t.Fatal(err)
			}
			if idx.Index < from {
				t.Errorf("EventsSince(%d) on a replica at %d resumes from %d", from, tc.replicaAt, idx)
			}
			// What server.Watch does: catch up, resume from idx.
			for i := tc.replicaAt + 1; i <= uint64(len(h)); i++ {
				stApply(s, i, h[i-1]...)
			}
			evs, _, _, _ := s.EventsSince(idx, stAll)
			stReplay(t, list, at, evs)
		})
	}
}

// stSyntheticEvents is count events at index (of one shared object: only
// the log's bookkeeping is under test).
func stSyntheticEvents(index uint64, count int) []Event {
	obj := &api.Pod{Metadata: &api.ObjectMeta{Namespace: "synthetic", Name: fmt.Sprint(index), ResourceVersion: fmt.Sprint(index)}}
	out := make([]Event, count)
	for i := range out {
		out[i] = Event{Type: "MODIFIED", Index: index, Object: obj}
	}
	return out
}

// TestStateEventLogTrim: the log keeps eventLogSize events at most, drops
// whole raft entries only, and firstIndex is exactly the boundary: from it
// a watch gets every later event, from before it OutOfRange.
func TestStateEventLogTrim(t *testing.T) {
	const n = eventLogSize
	type batch struct {
		index uint64
		count int
	}
	cases := []struct {
		name       string
		batches    []batch
		wantFirst  uint64
		wantLen    int
		wantOldest uint64
	}{
		{name: "under the bound", batches: []batch{{1, 1}, {2, 3}}, wantFirst: 0, wantLen: 4, wantOldest: 1},
		{name: "exactly full", batches: []batch{{1, n}}, wantFirst: 0, wantLen: n, wantOldest: 1},
		{name: "full over many entries", batches: []batch{{1, 1}, {2, n - 2}, {3, 1}}, wantFirst: 0, wantLen: n, wantOldest: 1},
		{name: "one over drops the oldest entry", batches: []batch{{1, 1}, {2, n - 1}, {3, 1}}, wantFirst: 1, wantLen: n, wantOldest: 2},
		{name: "cut inside an entry drops all of it", batches: []batch{{1, 10}, {2, n - 5}, {3, 10}}, wantFirst: 2, wantLen: 10, wantOldest: 3},
		{name: "cut at an entry's end", batches: []batch{{1, 10}, {2, n}}, wantFirst: 1, wantLen: n, wantOldest: 2},
		{name: "one entry larger than the log", batches: []batch{{1, 3}, {5, n + 5}}, wantFirst: 5, wantLen: 0},
		{name: "entries without events leave gaps", batches: []batch{{2, n}, {7, 1}, {9, 1}}, wantFirst: 2, wantLen: 2, wantOldest: 7},
		{name: "trims again", batches: []batch{{1, n}, {2, 1}, {3, n}}, wantFirst: 2, wantLen: n, wantOldest: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			total := map[uint64]int{}
			for _, b := range tc.batches {
				s.mu.Lock()
				s.index = b.index
				s.appendEventsLocked(stSyntheticEvents(b.index, b.count))
				s.mu.Unlock()
				total[b.index] += b.count
			}
			s.mu.Lock()
			first, l := s.firstIndex, len(s.eventWindowLocked())
			var oldest uint64
			if l > 0 {
				oldest = s.eventWindowLocked()[0].Index
			}
			s.mu.Unlock()
			if first != tc.wantFirst || l != tc.wantLen || oldest != tc.wantOldest {
				t.Errorf("firstIndex %d, %d events from %d; want %d, %d from %d", first, l, oldest, tc.wantFirst, tc.wantLen, tc.wantOldest)
			}
			if l > eventLogSize {
				t.Errorf("%d events kept, over eventLogSize", l)
			}
			// From firstIndex: every event after it, none missing.
			evs, _, _, err := s.EventsSince(WatchPosition{Index: first}, stAll)
			if err != nil {
				t.Fatalf("EventsSince(firstIndex %d): %v", first, err)
			}
			want := 0
			for idx, c := range total {
				if idx > first {
					want += c
				}
			}
			if len(evs) != want {
				t.Errorf("EventsSince(firstIndex %d) = %d events, want every one after it: %d", first, len(evs), want)
			}
			// Before firstIndex: out of range, never a silent gap.
			if first > 0 {
				_, _, _, err := s.EventsSince(WatchPosition{Index: first - 1}, stAll)
				if status.Code(err) != codes.OutOfRange {
					t.Errorf("EventsSince(%d) = %v, want OutOfRange", first-1, err)
				}
			}
		})
	}
}

// TestStateEventLogTrimThroughApply crosses the bound through applyTxns:
// a log one short of full (entry 1), then an entry of three changes.
func TestStateEventLogTrimThroughApply(t *testing.T) {
	s := NewState()
	s.mu.Lock()
	s.appendEventsLocked(stSyntheticEvents(1, eventLogSize-1))
	s.index = 1
	s.mu.Unlock()
	stApply(s, 2, []*storepb.Op{stPut(stPod("default", "a", "img"))}, []*storepb.Op{stPut(stPod("default", "b", "img"))},
		[]*storepb.Op{stPut(stPod("default", "a", "img2"))})
	cases := []struct {
		from    uint64
		want    []string
		wantErr codes.Code
	}{
		{0, nil, codes.OutOfRange},
		{1, []string{"ADDED Pod default/a@2", "ADDED Pod default/b@2", "MODIFIED Pod default/a@2"}, codes.OK},
		{2, []string{}, codes.OK},
	}
	for _, tc := range cases {
		evs, _, _, err := s.EventsSince(WatchPosition{Index: tc.from}, stAll)
		if status.Code(err) != tc.wantErr {
			t.Errorf("EventsSince(%d): %v, want %s", tc.from, err, tc.wantErr)
			continue
		}
		if got := stEventStrings(evs); err == nil && !stEqualStrings(got, tc.want) {
			t.Errorf("EventsSince(%d) = %q, want %q", tc.from, got, tc.want)
		}
	}
}

// TestStateConcurrentListAndWatch: readers list and follow the events while
// entries are applied; each rebuilds the final state with every change
// seen exactly once. Run with -race.
func TestStateConcurrentListAndWatch(t *testing.T) {
	const entries = 300
	s := NewState()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= entries; i++ {
			name := fmt.Sprintf("p%d", i%7)
			var op *storepb.Op
			switch i % 5 {
			case 0:
				op = stDel("Pod", "default", name, "")
			case 1:
				op = stPut(stPod("default", name, "img"), stStatusOnly)
			default:
				op = stPut(stPod("default", name, fmt.Sprint("img", i%3)))
			}
			stApply(s, i, []*storepb.Op{op}, []*storepb.Op{stPut(stPod("other", "x", fmt.Sprint(i)))})
		}
	}()
	readers := 4
	results := make(chan map[string]string, readers)
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			list := map[string]string{}
			objs, listAt := s.List("Pod", "", "")
			for _, o := range objs {
				list["Pod "+api.KeyOf(o)] = o.GetMetadata().GetResourceVersion()
			}
			for at := listAt; at < entries; {
				evs, idx, ch, err := s.EventsSince(WatchPosition{Index: at}, stAll)
				if err != nil {
					t.Error(err)
					break
				}
				stReplay(t, list, listAt, evs)
				at = idx.Index
				if at < entries {
					<-ch
				}
			}
			results <- list
		}()
	}
	wg.Wait()
	close(results)
	final, _ := stListMap(s)
	for got := range results {
		if fmt.Sprint(got) != fmt.Sprint(final) {
			t.Errorf("a reader rebuilt\n%v\nwant\n%v", got, final)
		}
	}
}

// ---------------------------------------------------------------- restore

func TestStateRestore(t *testing.T) {
	objs := []api.Resource{stBoundPod("default", "b", "n1"), stBoundPod("default", "a", "n2"), stService("default", "s", 80), stNode("n1")}
	for i, o := range objs {
		o.GetMetadata().ResourceVersion = fmt.Sprint(40 + i)
	}
	secrets := &storepb.ClusterSecrets{ClusterId: "c"}
	cases := []struct {
		name string
		objs []api.Resource
		want []string
	}{
		{"objects of every kind", objs, []string{"Node n1@43", "Pod default/a@41", "Pod default/b@40", "Service default/s@42"}},
		{"empty", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			for i, entry := range stHistory() {
				stApply(s, uint64(i+1), entry...)
			}
			_, _, ch, _ := s.EventsSince(WatchPosition{Index: 12}, stAll)
			if err := s.restore(&storepb.SnapshotHeader{Index: 50, Secrets: secrets}, tc.objs); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ch:
			default:
				t.Error("watchers are not woken by a restore")
			}
			got, at := stDump(s)
			if !stEqualStrings(got, tc.want) || at != 50 || s.Index() != 50 {
				t.Errorf("restored %q at %d, want %q at 50", got, at, tc.want)
			}
			if !proto.Equal(s.Secrets(), secrets) {
				t.Errorf("secrets %v", s.Secrets())
			}
			if _, _, _, err := s.EventsSince(WatchPosition{Index: 49}, stAll); status.Code(err) != codes.OutOfRange {
				t.Errorf("EventsSince before the snapshot = %v, want OutOfRange", err)
			}
			if evs, idx, _, err := s.EventsSince(WatchPosition{Index: 50}, stAll); err != nil || len(evs) != 0 || idx != (WatchPosition{Index: 50}) {
				t.Errorf("EventsSince(50) = %d events at %d, %v", len(evs), idx, err)
			}
			if err := s.WaitIndex(context.Background(), 50); err != nil {
				t.Error(err)
			}
			// The replica goes on from the snapshot.
			stMustApply(t, s, 51, stPut(stPod("default", "c", "img")))
			if evs := stEvents(t, s, 50); !stEqualStrings(evs, []string{"ADDED Pod default/c@51"}) {
				t.Errorf("events after restore %q", evs)
			}
			if tc.objs != nil {
				if pods, _ := s.List("Pod", "", "n1"); len(pods) != 1 || api.KeyOf(pods[0]) != "default/b" {
					t.Errorf("node index after restore: %v", pods)
				}
			}
		})
	}
}

// BenchmarkStateApply measures one small entry with an empty event log
// and with a full one (where every append trims the log).
func BenchmarkStateApply(b *testing.B) {
	for _, prefill := range []int{0, eventLogSize / 2, eventLogSize} {
		b.Run(fmt.Sprintf("log holding %d events", prefill), func(b *testing.B) {
			s := NewState()
			s.mu.Lock()
			for i := 1; i <= prefill; i++ { // one event per entry
				s.appendEventsLocked(stSyntheticEvents(uint64(i), 1))
			}
			s.index = uint64(prefill)
			s.mu.Unlock()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := stPod("default", "p", "img")
				p.Metadata.Labels["i"] = fmt.Sprint(i)
				stApply(s, uint64(prefill+i+1), []*storepb.Op{stPut(p)})
			}
		})
	}
}

// A bound pod written again without a node (its manifest applied again)
// stays on its node; a write that names a node sets it.
func TestStatePodKeepsItsBinding(t *testing.T) {
	s := NewState()
	stMustApply(t, s, 1, stPut(stPod("default", "web", "nginx:1"), stUID("u1")))
	stMustApply(t, s, 2, stPut(stBoundPod("default", "web", "n1")))
	again := stPod("default", "web", "nginx:2")
	stMustApply(t, s, 3, stPut(again))
	p := stGetPod(t, s, "default", "web")
	if p.Spec.NodeName != "n1" || p.Spec.Containers[0].Image != "nginx:2" {
		t.Fatalf("after applying the manifest again: node %q image %q; want n1, nginx:2", p.Spec.NodeName, p.Spec.Containers[0].Image)
	}
}
