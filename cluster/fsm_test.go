package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// fsmTestSink is a raft.SnapshotSink over a buffer; writes fail once more
// than failAfter bytes would be held (never when failAfter < 0).
type fsmTestSink struct {
	bytes.Buffer
	failAfter int
	closed    bool
	canceled  bool
}

var _ raft.SnapshotSink = (*fsmTestSink)(nil)

func (s *fsmTestSink) Write(p []byte) (int, error) {
	if s.failAfter >= 0 && s.Len()+len(p) > s.failAfter {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *fsmTestSink) ID() string    { return "test-snapshot" }
func (s *fsmTestSink) Close() error  { s.closed = true; return nil }
func (s *fsmTestSink) Cancel() error { s.canceled = true; return nil }

// fsmTestCloser records that Restore closed its reader.
type fsmTestCloser struct {
	io.Reader
	closed bool
}

func (c *fsmTestCloser) Close() error { c.closed = true; return nil }

// fsmLog is the raft log entry of a command of one transaction per op list.
func fsmLog(t *testing.T, index uint64, txns ...[]*storepb.Op) *raft.Log {
	t.Helper()
	cmd := &storepb.Command{}
	for _, ops := range txns {
		cmd.Txns = append(cmd.Txns, &storepb.Txn{Ops: ops, TimeUnixNano: stTime(index).UnixNano()})
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// fsmApplyHistory applies the entries of stHistory from index from to to.
func fsmApplyHistory(t *testing.T, f *fsm, from, to uint64) {
	t.Helper()
	h := stHistory()
	for i := from; i <= to; i++ {
		if _, ok := f.Apply(fsmLog(t, i, h[i-1]...)).([]*storepb.TxnResult); !ok {
			t.Fatalf("entry %d did not apply", i)
		}
	}
}

// fsmSnapshot persists a snapshot of f and returns its bytes.
func fsmTakeSnapshot(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &fsmTestSink{failAfter: -1}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	if !sink.closed || sink.canceled {
		t.Errorf("after a good persist the sink is closed=%v canceled=%v, want closed only", sink.closed, sink.canceled)
	}
	return sink.Bytes()
}

// fsmRestored is a new replica restored from a snapshot.
func fsmRestored(t *testing.T, snap []byte) *fsm {
	t.Helper()
	f := &fsm{state: NewState()}
	rc := &fsmTestCloser{Reader: bytes.NewReader(snap)}
	if err := f.Restore(rc); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !rc.closed {
		t.Error("Restore did not close its reader")
	}
	return f
}

// fsmSameState compares two replicas object by object, every field.
func fsmSameState(t *testing.T, got, want *State) {
	t.Helper()
	if got.Index() != want.Index() {
		t.Errorf("index %d, want %d", got.Index(), want.Index())
	}
	if !proto.Equal(got.Secrets(), want.Secrets()) {
		t.Errorf("secrets %v, want %v", got.Secrets(), want.Secrets())
	}
	for _, k := range api.Kinds() {
		g, _ := got.List(k.Kind, "", "")
		w, _ := want.List(k.Kind, "", "")
		if len(g) != len(w) {
			t.Errorf("%s: %d objects, want %d", k.Kind, len(g), len(w))
			continue
		}
		for i := range g {
			if !proto.Equal(g[i], w[i]) {
				t.Errorf("%s %s:\n got %v\nwant %v", k.Kind, api.KeyOf(w[i]), g[i], w[i])
			}
		}
	}
}

func TestFSMApply(t *testing.T) {
	cases := []struct {
		name      string
		log       func(t *testing.T) *raft.Log
		wantErr   string
		wantCodes []codes.Code
		wantIndex uint64
	}{
		{
			name: "a command of two transactions",
			log: func(t *testing.T) *raft.Log {
				return fsmLog(t, 5, []*storepb.Op{stPut(stPod("default", "a", "img"))}, []*storepb.Op{stPut(stPod("default", "a", "img"), stCreateOnly)})
			},
			wantCodes: []codes.Code{codes.OK, codes.AlreadyExists},
			wantIndex: 5,
		},
		{
			name:      "an empty command",
			log:       func(t *testing.T) *raft.Log { return fsmLog(t, 6) },
			wantCodes: []codes.Code{},
			wantIndex: 6,
		},
		{
			name: "an entry that does not decode",
			log: func(t *testing.T) *raft.Log {
				return &raft.Log{Index: 7, Type: raft.LogCommand, Data: []byte{0xff, 0xff, 0xff}}
			},
			wantErr:   "raft entry 7",
			wantIndex: 7, // still advanced: nobody waits on it forever
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fsm{state: NewState()}
			out := f.Apply(tc.log(t))
			switch r := out.(type) {
			case error:
				if tc.wantErr == "" || !strings.Contains(r.Error(), tc.wantErr) {
					t.Fatalf("Apply = error %v, want %q", r, tc.wantErr)
				}
			case []*storepb.TxnResult:
				if tc.wantErr != "" {
					t.Fatalf("Apply = %v, want error %q", r, tc.wantErr)
				}
				if len(r) != len(tc.wantCodes) {
					t.Fatalf("%d results, want %d", len(r), len(tc.wantCodes))
				}
				for i, res := range r {
					if codes.Code(res.Code) != tc.wantCodes[i] {
						t.Errorf("txn %d: %s %s, want %s", i, codes.Code(res.Code), res.Message, tc.wantCodes[i])
					}
				}
			default:
				t.Fatalf("Apply returned %T", out)
			}
			if f.state.Index() != tc.wantIndex {
				t.Errorf("index %d, want %d", f.state.Index(), tc.wantIndex)
			}
		})
	}
}

// TestFSMSnapshotRoundTrip: Persist then Restore gives an identical replica,
// which goes on applying like the original.
func TestFSMSnapshotRoundTrip(t *testing.T) {
	secrets := &storepb.ClusterSecrets{ClusterId: "c1", CaCert: []byte("cert"), CaKey: []byte("key"), JoinSecret: "j", GossipKey: bytes.Repeat([]byte{7}, 32)}
	big := func(t *testing.T, f *fsm) {
		var ops []*storepb.Op
		for i := 0; i < 600; i++ {
			p := stBoundPod(fmt.Sprintf("ns%d", i%7), fmt.Sprintf("p%04d", i), fmt.Sprintf("n%d", i%13))
			p.Metadata.Annotations = map[string]string{"big": strings.Repeat("x", 150)}
			ops = append(ops, stPut(p))
		}
		for i := 0; i < 13; i++ {
			ops = append(ops, stPut(stNode(fmt.Sprintf("n%d", i))))
		}
		f.Apply(fsmLog(t, 1, ops))
	}
	cases := []struct {
		name  string
		build func(t *testing.T, f *fsm)
	}{
		{"empty", func(t *testing.T, f *fsm) {}},
		{"secrets only", func(t *testing.T, f *fsm) { f.state.applyTxns(1, []*storepb.Txn{{SetSecrets: secrets}}) }},
		{"history with secrets", func(t *testing.T, f *fsm) {
			fsmApplyHistory(t, f, 1, 12)
			f.state.applyTxns(13, []*storepb.Txn{{SetSecrets: secrets}})
		}},
		{"objects over the 64 KiB write buffer", big},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &fsm{state: NewState()}
			tc.build(t, src)
			snap := fsmTakeSnapshot(t, src)
			dst := fsmRestored(t, snap)
			fsmSameState(t, dst.state, src.state)
			for n := 0; n < 13; n++ {
				g, _ := dst.state.List("Pod", "", fmt.Sprintf("n%d", n))
				w, _ := src.state.List("Pod", "", fmt.Sprintf("n%d", n))
				if len(g) != len(w) {
					t.Errorf("node n%d: %d pods after restore, %d before", n, len(g), len(w))
				}
			}
			// Both go on identically.
			next := src.state.Index() + 1
			for _, f := range []*fsm{src, dst} {
				f.Apply(fsmLog(t, next, []*storepb.Op{stPut(stPod("default", "after", "img"))}, []*storepb.Op{stPut(stNode("n1"))}))
			}
			fsmSameState(t, dst.state, src.state)
		})
	}
}

// TestFSMSnapshotIsPointInTime: what Persist writes is the state when
// Snapshot was called, whatever is applied meanwhile.
func TestFSMSnapshotIsPointInTime(t *testing.T) {
	for _, at := range []uint64{0, 1, 5, 8, 11} {
		t.Run(fmt.Sprintf("snapshot at %d", at), func(t *testing.T) {
			f := &fsm{state: NewState()}
			fsmApplyHistory(t, f, 1, at)
			snap, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			fsmApplyHistory(t, f, at+1, 12)
			sink := &fsmTestSink{failAfter: -1}
			if err := snap.Persist(sink); err != nil {
				t.Fatal(err)
			}
			snap.Release()
			want := &fsm{state: NewState()}
			fsmApplyHistory(t, want, 1, at)
			fsmSameState(t, fsmRestored(t, sink.Bytes()).state, want.state)
		})
	}
}

// TestFSMPersistFailureCancels: a snapshot that cannot be written is
// canceled, never closed (which would make raft keep a broken snapshot).
func TestFSMPersistFailureCancels(t *testing.T) {
	f := &fsm{state: NewState()}
	fsmApplyHistory(t, f, 1, 12)
	full := len(fsmTakeSnapshot(t, f))
	for _, failAfter := range []int{0, 5, full / 2, full - 1} {
		t.Run(fmt.Sprintf("fail after %d of %d bytes", failAfter, full), func(t *testing.T) {
			snap, _ := f.Snapshot()
			sink := &fsmTestSink{failAfter: failAfter}
			err := snap.Persist(sink)
			if err == nil {
				t.Fatal("Persist succeeded on a failing sink")
			}
			if !sink.canceled || sink.closed {
				t.Errorf("sink canceled=%v closed=%v, want canceled only", sink.canceled, sink.closed)
			}
		})
	}
}

// fsmDelimited concatenates length-delimited records.
func fsmDelimited(t *testing.T, msgs ...proto.Message) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, m := range msgs {
		if _, err := protodelim.MarshalTo(&b, m); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// TestFSMRestoreRejectsBadSnapshots: a broken snapshot is an error and
// leaves the replica as it was.
func TestFSMRestoreRejectsBadSnapshots(t *testing.T) {
	pod := api.Wrap(stPod("default", "a", "img"))
	good := func() []byte {
		f := &fsm{state: NewState()}
		fsmApplyHistory(t, f, 1, 3)
		return fsmTakeSnapshot(t, f)
	}()
	cases := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "snapshot header"},
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "snapshot header"},
		{"fewer objects than the header says", fsmDelimited(t, &storepb.SnapshotHeader{Index: 3, ObjectCount: 2}, pod), "snapshot object 2 of 2"},
		{"an empty object", fsmDelimited(t, &storepb.SnapshotHeader{Index: 3, ObjectCount: 1}, &api.Object{}), "snapshot object 1 of 1 is empty"},
		{"truncated", good[:len(good)-3], "snapshot object"},
		{"a record over the size bound", append(fsmDelimited(t, &storepb.SnapshotHeader{Index: 3, ObjectCount: 1}), 0xff, 0xff, 0xff, 0xff, 0x0f), "snapshot object 1 of 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fsm{state: NewState()}
			fsmApplyHistory(t, f, 1, 12)
			before := &fsm{state: NewState()}
			fsmApplyHistory(t, before, 1, 12)
			rc := &fsmTestCloser{Reader: bytes.NewReader(tc.data)}
			err := f.Restore(rc)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Restore = %v, want an error containing %q", err, tc.wantErr)
			}
			if !rc.closed {
				t.Error("Restore did not close its reader")
			}
			fsmSameState(t, f.state, before.state)
		})
	}
}

// TestFSMRestoreHugeObjectCount: a header claiming more objects than memory
// holds is an error, not a crash of the agent.
func TestFSMRestoreHugeObjectCount(t *testing.T) {

	for _, count := range []uint64{1 << 62, 1 << 40} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			data := fsmDelimited(t, &storepb.SnapshotHeader{Index: 1, ObjectCount: count})
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
						t.Errorf("readSnapshot panicked: %v", r)
					}
				}()
				_, _, err = readSnapshot(bytes.NewReader(data))
			}()
			if err == nil {
				t.Error("readSnapshot accepted a header with no objects behind it")
			}
		})
	}
}

// TestFSMReplicasAgree: the FSM is deterministic. Replicas that apply the
// same log, directly or through a snapshot taken at any point, hold the
// same objects, the same resourceVersions, and serve the same events after
// the snapshot's index.
func TestFSMReplicasAgree(t *testing.T) {
	const last = 12
	direct := &fsm{state: NewState()}
	fsmApplyHistory(t, direct, 1, last)
	for k := uint64(0); k <= last; k++ {
		t.Run(fmt.Sprintf("snapshot at %d", k), func(t *testing.T) {
			a := &fsm{state: NewState()}
			fsmApplyHistory(t, a, 1, k)
			b := fsmRestored(t, fsmTakeSnapshot(t, a))
			fsmApplyHistory(t, a, k+1, last)
			fsmApplyHistory(t, b, k+1, last)
			fsmSameState(t, a.state, direct.state)
			fsmSameState(t, b.state, direct.state)
			want, _, _, err := direct.state.EventsSince(WatchPosition{Index: k}, stAll)
			if err != nil {
				t.Fatal(err)
			}
			got, _, _, err := b.state.EventsSince(WatchPosition{Index: k}, stAll)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d events after %d on the restored replica, %d on the other", len(got), k, len(want))
			}
			for i := range got {
				if got[i].Type != want[i].Type || got[i].Index != want[i].Index || !proto.Equal(got[i].Object, want[i].Object) {
					t.Errorf("event %d: %s@%d %v, want %s@%d %v", i, got[i].Type, got[i].Index, got[i].Object, want[i].Type, want[i].Index, want[i].Object)
				}
			}
			if k > 0 {
				if _, _, _, err := b.state.EventsSince(WatchPosition{Index: k - 1}, stAll); status.Code(err) != codes.OutOfRange {
					t.Errorf("restored replica: EventsSince(%d) = %v, want OutOfRange", k-1, err)
				}
			}
		})
	}
}
