package cluster

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// record is a row of a kind's table. Objects inside are never modified
// after insertion: a change inserts a new record.
type record struct {
	Key      string // namespace/name, or name for cluster-wide kinds
	NodeName string // pods: spec.nodeName
	Obj      api.Resource
}

func stateSchema() *memdb.DBSchema {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{}}
	for _, k := range api.Kinds() {
		s.Tables[k.Kind] = &memdb.TableSchema{
			Name: k.Kind,
			Indexes: map[string]*memdb.IndexSchema{
				"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
				"node": {Name: "node", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "NodeName"}},
			},
		}
	}
	return s
}

// Event is one change of one object, as watches deliver it.
type Event struct {
	Type  string // ADDED, MODIFIED, DELETED
	Index uint64 // the raft entry: the object's resourceVersion
	// Seq numbers the changes of one entry from 1: transactions batched
	// into one entry share its index, so the index alone cannot say where
	// a watch broken between them stopped.
	Seq    int
	Object api.Resource
}

// WatchPosition is where a watch stream stands: after the change Seq of
// entry Index, or after the whole entry when Seq is 0. Written "INDEX" or
// "INDEX.SEQ"; a list's resourceVersion is a position too.
type WatchPosition struct {
	Index uint64
	Seq   int
}

func (p WatchPosition) String() string {
	if p.Seq == 0 {
		return strconv.FormatUint(p.Index, 10)
	}
	return strconv.FormatUint(p.Index, 10) + "." + strconv.Itoa(p.Seq)
}

// after reports whether e comes after the position.
func (p WatchPosition) after(e Event) bool {
	return e.Index > p.Index || (p.Seq > 0 && e.Index == p.Index && e.Seq > p.Seq)
}

// ParseWatchPosition reads a resourceVersion a watch starts after.
func ParseWatchPosition(s string) (WatchPosition, error) {
	idx, seq, hasSeq := strings.Cut(s, ".")
	var p WatchPosition
	var err error
	if p.Index, err = strconv.ParseUint(idx, 10, 64); err != nil {
		return WatchPosition{}, fmt.Errorf("resourceVersion %q is not a number (or NUMBER.NUMBER, as watch events carry)", s)
	}
	if hasSeq {
		if p.Seq, err = strconv.Atoi(seq); err != nil || p.Seq < 1 {
			return WatchPosition{}, fmt.Errorf("resourceVersion %q: after the dot comes a change's number in its entry, from 1", s)
		}
	}
	return p, nil
}

// eventLogSize bounds the changes kept for watches that resume from an
// older resourceVersion; older ones must re-list.
const eventLogSize = 65536

// State is one replica's copy of the desired state: indexed tables in
// go-memdb, the index of the last applied raft entry, the cluster secrets,
// and a bounded log of recent changes for watches. The FSM is its only
// writer.
type State struct {
	db *memdb.MemDB

	mu       sync.Mutex
	index    uint64
	secrets  *storepb.ClusterSecrets
	settings *storepb.ClusterSettings
	events   []Event // recent events, oldest first, from events[head]
	head     int
	// firstIndex is the lowest resourceVersion a watch can resume from:
	// every event after it is in events.
	firstIndex uint64
	notify     chan struct{} // closed and replaced on every applied entry
}

// NewState returns an empty state.
func NewState() *State {
	db, err := memdb.NewMemDB(stateSchema())
	if err != nil {
		panic(fmt.Sprintf("state schema: %v", err)) // the schema is static
	}
	return &State{db: db, notify: make(chan struct{})}
}

// Index is the raft index of the last entry applied.
func (s *State) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Settings returns the cluster-wide settings, or nil before --init wrote
// them.
func (s *State) Settings() *storepb.ClusterSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings
}

// Secrets returns the cluster secrets, or nil before --init wrote them.
func (s *State) Secrets() *storepb.ClusterSecrets {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.secrets
}

// WaitIndex blocks until the state has applied index, or ctx ends.
func (s *State) WaitIndex(ctx context.Context, index uint64) error {
	for {
		s.mu.Lock()
		cur, ch := s.index, s.notify
		s.mu.Unlock()
		if cur >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// changedAfter returns a channel closed once the state is past index.
func (s *State) changedAfter(index uint64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.index > index {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return s.notify
}

// readTxn returns a consistent read-only view of every table and the index
// it reflects.
func (s *State) readTxn() (*memdb.Txn, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Txn(false), s.index
}

// Get returns one object, or nil.
func (s *State) Get(kind, namespace, name string) api.Resource {
	txn, _ := s.readTxn()
	raw, err := txn.First(kind, "id", api.Key(namespace, name))
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*record).Obj
}

// List returns the objects of a kind, in one namespace (or all when
// namespace is empty), bound to one node when nodeName is set, sorted by
// key, with the index they were read at.
func (s *State) List(kind, namespace, nodeName string) ([]api.Resource, uint64) {
	txn, idx := s.readTxn()
	return listTxn(txn, kind, namespace, nodeName), idx
}

func listTxn(txn *memdb.Txn, kind, namespace, nodeName string) []api.Resource {
	var it memdb.ResultIterator
	var err error
	switch {
	case nodeName != "":
		it, err = txn.Get(kind, "node", nodeName)
	case namespace != "":
		it, err = txn.Get(kind, "id_prefix", namespace+"/")
	default:
		it, err = txn.Get(kind, "id")
	}
	if err != nil {
		return nil
	}
	var out []api.Resource
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*record)
		if namespace != "" && !strings.HasPrefix(r.Key, namespace+"/") {
			continue
		}
		out = append(out, r.Obj)
	}
	sort.Slice(out, func(i, j int) bool { return api.KeyOf(out[i]) < api.KeyOf(out[j]) })
	return out
}

// ListKinds lists several kinds at one index, as a watch that starts with
// the current state needs.
func (s *State) ListKinds(kinds []string, namespace, nodeName string) ([]api.Resource, uint64) {
	txn, idx := s.readTxn()
	var out []api.Resource
	for _, k := range kinds {
		ns := namespace
		if info, ok := api.LookupKind(k); ok && !info.Namespaced {
			ns = ""
		}
		out = append(out, listTxn(txn, k, ns, nodeName)...)
	}
	return out, idx
}

// EventsSince returns the events after pos that match filter, the
// position they bring the caller to, and a channel closed when more
// arrive. The events are whole entries: after the last one returned, the
// caller is past every change of its entry. It fails with OutOfRange when
// the events after pos are no longer kept (the watcher must re-list).
func (s *State) EventsSince(pos WatchPosition, match func(Event) bool) ([]Event, WatchPosition, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// firstIndex's own changes are dropped with the entries before it.
	if pos.Index < s.firstIndex || (pos.Seq > 0 && pos.Index == s.firstIndex && s.firstIndex > 0) {
		return nil, WatchPosition{}, nil, status.Errorf(codes.OutOfRange,
			"resourceVersion %s is too old: changes are kept from %d on; list again and watch from the list's resourceVersion", pos, s.firstIndex)
	}
	// events are sorted by (index, seq): find the first after pos.
	win := s.eventWindowLocked()
	i := sort.Search(len(win), func(i int) bool { return pos.after(win[i]) })
	var out []Event
	for _, e := range win[i:] {
		if match(e) {
			out = append(out, e)
		}
	}
	// A replica behind the caller answers from the caller's position on,
	// so that nothing the caller already has is sent again.
	next := pos
	if s.index > pos.Index {
		next = WatchPosition{Index: s.index}
	}
	return out, next, s.notify, nil
}

// applyTxns applies one raft entry: each transaction all or nothing, in
// order. It returns one result per transaction.
func (s *State) applyTxns(index uint64, txns []*storepb.Txn) []*storepb.TxnResult {
	// The lock is held for the whole entry so that a reader never sees the
	// tables of one index with the index of another.
	s.mu.Lock()
	defer s.mu.Unlock()
	results := make([]*storepb.TxnResult, len(txns))
	var events []Event
	for i, t := range txns {
		res, evs := s.applyTxnLocked(index, t)
		results[i] = res
		events = append(events, evs...)
	}
	for i := range events {
		events[i].Seq = i + 1
	}
	s.index = index
	s.appendEventsLocked(events)
	close(s.notify)
	s.notify = make(chan struct{})
	return results
}

func (s *State) appendEventsLocked(events []Event) {
	s.events = append(s.events, events...)
	win := s.events[s.head:]
	if over := len(win) - eventLogSize; over > 0 {
		s.firstIndex = win[over-1].Index
		// Drop whole raft entries only, so that no index is half kept.
		for over < len(win) && win[over].Index == s.firstIndex {
			over++
		}
		s.head += over
	}
	// Move the window down only once the dropped part is as large as the
	// log, so that trimming costs O(1) per event.
	if s.head >= eventLogSize {
		s.events = append([]Event(nil), s.events[s.head:]...)
		s.head = 0
	}
}

// eventWindowLocked is the kept events, oldest first.
func (s *State) eventWindowLocked() []Event { return s.events[s.head:] }

func (s *State) applyTxnLocked(index uint64, t *storepb.Txn) (*storepb.TxnResult, []Event) {
	if t.SetSecrets != nil || t.SetSettings != nil {
		// Secrets and settings travel alone: such a transaction has no ops.
		if t.SetSecrets != nil {
			s.secrets = proto.Clone(t.SetSecrets).(*storepb.ClusterSecrets)
		}
		if t.SetSettings != nil {
			s.settings = proto.Clone(t.SetSettings).(*storepb.ClusterSettings)
		}
		return &storepb.TxnResult{}, nil
	}
	txn := s.db.Txn(true)
	now := time.Unix(0, t.TimeUnixNano).UTC()
	var out []*api.Object
	var events []Event
	for i, op := range t.Ops {
		obj, ev, err := applyOp(txn, s.settings, index, now, op)
		if err != nil {
			txn.Abort()
			st, _ := status.FromError(err)
			msg := st.Message()
			if len(t.Ops) > 1 {
				msg = fmt.Sprintf("object %d of %d: %s (nothing was changed)", i+1, len(t.Ops), msg)
			}
			return &storepb.TxnResult{Code: int32(st.Code()), Message: msg}, nil
		}
		// A copy: callers set apiVersion/kind on results, and stored
		// objects must never change.
		out = append(out, api.Wrap(proto.Clone(obj).(api.Resource)))
		if ev != nil {
			events = append(events, *ev)
		}
	}
	txn.Commit()
	return &storepb.TxnResult{Objects: out}, events
}

func applyOp(txn *memdb.Txn, settings *storepb.ClusterSettings, index uint64, now time.Time, op *storepb.Op) (api.Resource, *Event, error) {
	rv := strconv.FormatUint(index, 10)
	switch op.Type {
	case storepb.Op_DELETE:
		key := api.Key(op.Namespace, op.Name)
		raw, err := txn.First(op.Kind, "id", key)
		if err != nil {
			return nil, nil, status.Errorf(codes.Internal, "delete %s %s: %v", op.Kind, key, err)
		}
		if raw == nil {
			return nil, nil, status.Errorf(codes.NotFound, "%s %q not found", pluralOf(op.Kind), op.Name)
		}
		cur := raw.(*record).Obj
		if op.ResourceVersion != "" && op.ResourceVersion != cur.GetMetadata().GetResourceVersion() {
			return nil, nil, conflictError(op.Kind, key, op.ResourceVersion, cur)
		}
		if pod, ok := cur.(*api.Pod); ok && op.Graceful && runsOnNode(pod) {
			next := terminating(pod, op.GraceSeconds, now)
			if next == nil { // already terminating, no shorter grace
				return cur, nil, nil
			}
			next.Metadata.ResourceVersion = rv
			if err := txn.Insert(op.Kind, &record{Key: key, NodeName: nodeNameOf(next), Obj: next}); err != nil {
				return nil, nil, status.Errorf(codes.Internal, "delete %s %s: %v", op.Kind, key, err)
			}
			return next, &Event{Type: "MODIFIED", Index: index, Object: next}, nil
		}
		if err := txn.Delete(op.Kind, raw); err != nil {
			return nil, nil, status.Errorf(codes.Internal, "delete %s %s: %v", op.Kind, key, err)
		}
		gone := proto.Clone(cur).(api.Resource)
		gone.GetMetadata().ResourceVersion = rv
		return gone, &Event{Type: "DELETED", Index: index, Object: gone}, nil

	case storepb.Op_PUT:
		in := op.Object.Resource()
		if in == nil {
			return nil, nil, status.Error(codes.InvalidArgument, "empty object")
		}
		kind := api.KindOf(in)
		key := api.KeyOf(in)
		raw, err := txn.First(kind, "id", key)
		if err != nil {
			return nil, nil, status.Errorf(codes.Internal, "put %s %s: %v", kind, key, err)
		}
		var cur api.Resource
		if raw != nil {
			cur = raw.(*record).Obj
		}
		if cur != nil && op.CreateOnly {
			return nil, nil, status.Errorf(codes.AlreadyExists, "%s %q already exists", pluralOf(kind), in.GetMetadata().GetName())
		}
		if op.ResourceVersion != "" {
			if cur == nil {
				return nil, nil, status.Errorf(codes.NotFound, "%s %q not found (the write names resourceVersion %s)", pluralOf(kind), in.GetMetadata().GetName(), op.ResourceVersion)
			}
			if op.ResourceVersion != cur.GetMetadata().GetResourceVersion() {
				return nil, nil, conflictError(kind, key, op.ResourceVersion, cur)
			}
		}
		if svc, ok := in.(*api.Service); ok && !op.StatusOnly {
			c, _ := cur.(*api.Service)
			if in, err = allocateServiceAddresses(txn, settings, svc, c); err != nil {
				return nil, nil, err
			}
		}
		next, evType, err := mergeObject(cur, in, op, now)
		if err != nil {
			return nil, nil, err
		}
		if evType == "" { // unchanged
			return cur, nil, nil
		}
		next.GetMetadata().ResourceVersion = rv
		if err := txn.Insert(kind, &record{Key: key, NodeName: nodeNameOf(next), Obj: next}); err != nil {
			return nil, nil, status.Errorf(codes.Internal, "put %s %s: %v", kind, key, err)
		}
		return next, &Event{Type: evType, Index: index, Object: next}, nil
	}
	return nil, nil, status.Errorf(codes.InvalidArgument, "unknown operation %v", op.Type)
}

// pluralOf names a kind in messages; it never panics inside apply.
func pluralOf(kind string) string {
	if k, ok := api.LookupKind(kind); ok {
		return k.Plural
	}
	return strings.ToLower(kind)
}

func conflictError(kind, key, want string, cur api.Resource) error {
	return status.Errorf(codes.Aborted,
		"conflict: %s %q is at resourceVersion %s, the write names %s; read it again and retry",
		pluralOf(kind), cur.GetMetadata().GetName(), cur.GetMetadata().GetResourceVersion(), want)
}

// mergeObject computes the object to store for a PUT of in over cur (nil
// when new). Spec writes keep the stored status; status writes keep
// everything but status. It returns "" as the event type when nothing
// changes.
func mergeObject(cur, in api.Resource, op *storepb.Op, now time.Time) (api.Resource, string, error) {
	if cur == nil {
		if op.StatusOnly {
			return nil, "", status.Errorf(codes.NotFound, "%s %q not found", pluralOf(api.KindOf(in)), in.GetMetadata().GetName())
		}
		next := proto.Clone(in).(api.Resource)
		m := next.GetMetadata()
		m.Uid = op.NewUid
		m.Generation = 1
		m.CreationTimestamp = now.Format(time.RFC3339)
		m.DeletionTimestamp = ""
		m.DeletionGracePeriodSeconds = nil
		clearTypeMeta(next)
		return next, "ADDED", nil
	}
	var next api.Resource
	if op.StatusOnly {
		next = proto.Clone(cur).(api.Resource)
		copyField(next, in, "status")
	} else {
		next = proto.Clone(in).(api.Resource)
		copyField(next, cur, "status")
		keepBinding(next, cur)
		m, cm := next.GetMetadata(), cur.GetMetadata()
		m.Uid = cm.Uid
		m.CreationTimestamp = cm.CreationTimestamp
		m.DeletionTimestamp = cm.DeletionTimestamp
		m.DeletionGracePeriodSeconds = cm.DeletionGracePeriodSeconds
		m.Generation = cm.Generation
		if !proto.Equal(specOf(next), specOf(cur)) {
			m.Generation++
		}
		clearTypeMeta(next)
	}
	next.GetMetadata().ResourceVersion = cur.GetMetadata().ResourceVersion
	if proto.Equal(next, cur) {
		return nil, "", nil
	}
	return next, "MODIFIED", nil
}

// runsOnNode: a pod whose containers a node may be running, which that
// node's agent must stop before the pod goes.
func runsOnNode(p *api.Pod) bool {
	if p.GetSpec().GetNodeName() == "" {
		return false
	}
	switch p.GetStatus().GetPhase() {
	case "Succeeded", "Failed":
		return false
	}
	return true
}

// terminating is p marked for graceful deletion at now, with grace
// seconds (negative: the pod's terminationGracePeriodSeconds); nil when
// p is already terminating with a grace no longer than that.
func terminating(p *api.Pod, grace int64, now time.Time) *api.Pod {
	if grace < 0 {
		grace = api.DefaultTerminationGracePeriodSeconds
		if g := p.GetSpec().TerminationGracePeriodSeconds; g != nil {
			grace = int64(*g)
		}
	}
	m := p.GetMetadata()
	if m.GetDeletionTimestamp() != "" && m.DeletionGracePeriodSeconds != nil && *m.DeletionGracePeriodSeconds <= grace {
		return nil
	}
	next := proto.Clone(p).(*api.Pod)
	if next.Metadata.DeletionTimestamp == "" {
		next.Metadata.DeletionTimestamp = now.Format(time.RFC3339)
	}
	next.Metadata.DeletionGracePeriodSeconds = &grace
	return next
}

// keepBinding keeps a pod on the node it is bound to when a spec write
// names no node (the same manifest applied again): binding is the
// scheduler's, and a pod does not move, as in Kubernetes.
func keepBinding(next, cur api.Resource) {
	p, ok := next.(*api.Pod)
	c, _ := cur.(*api.Pod)
	if !ok || c.GetSpec().GetNodeName() == "" || p.GetSpec().GetNodeName() != "" {
		return
	}
	if p.Spec == nil {
		p.Spec = &api.PodSpec{}
	}
	p.Spec.NodeName = c.GetSpec().GetNodeName()
}

// specOf is the object without metadata and status: what generation
// counts changes of.
func specOf(r api.Resource) proto.Message {
	c := proto.Clone(r)
	m := c.ProtoReflect()
	for _, name := range []protoreflect.Name{"metadata", "status", "api_version", "kind"} {
		if fd := m.Descriptor().Fields().ByName(name); fd != nil {
			m.Clear(fd)
		}
	}
	return c
}

// copyField sets field name of dst to src's (cleared when src has none).
func copyField(dst, src api.Resource, name protoreflect.Name) {
	dm := dst.ProtoReflect()
	fd := dm.Descriptor().Fields().ByName(name)
	if fd == nil {
		return
	}
	sm := src.ProtoReflect()
	if sm.Has(fd) {
		dm.Set(fd, protoreflect.ValueOfMessage(proto.Clone(sm.Get(fd).Message().Interface()).ProtoReflect()))
	} else {
		dm.Clear(fd)
	}
}

// clearTypeMeta drops apiVersion and kind: the table says the kind, and
// the API sets them on the way out.
func clearTypeMeta(r api.Resource) {
	m := r.ProtoReflect()
	for _, name := range []protoreflect.Name{"api_version", "kind"} {
		if fd := m.Descriptor().Fields().ByName(name); fd != nil {
			m.Clear(fd)
		}
	}
}

func nodeNameOf(r api.Resource) string {
	if p, ok := r.(*api.Pod); ok {
		return p.GetSpec().GetNodeName()
	}
	return ""
}

// restore replaces the whole state with the objects of a snapshot.
func (s *State) restore(hdr *storepb.SnapshotHeader, objs []api.Resource) error {
	index, secrets := hdr.GetIndex(), hdr.GetSecrets()
	db, err := memdb.NewMemDB(stateSchema())
	if err != nil {
		return err
	}
	txn := db.Txn(true)
	for _, o := range objs {
		if err := txn.Insert(api.KindOf(o), &record{Key: api.KeyOf(o), NodeName: nodeNameOf(o), Obj: o}); err != nil {
			txn.Abort()
			return fmt.Errorf("restore %s %s: %w", api.KindOf(o), api.KeyOf(o), err)
		}
	}
	txn.Commit()
	s.mu.Lock()
	s.db = db
	s.index = index
	s.secrets = secrets
	s.settings = hdr.GetSettings()
	s.events = nil
	s.head = 0
	s.firstIndex = index
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// snapshotView is a consistent read-only view for a snapshot.
type snapshotView struct {
	index    uint64
	secrets  *storepb.ClusterSecrets
	settings *storepb.ClusterSettings
	txn      *memdb.Txn
}

func (s *State) snapshotView() *snapshotView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &snapshotView{index: s.index, secrets: s.secrets, settings: s.settings, txn: s.db.Txn(false)}
}
