package cluster

import (
	"bufio"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// fsm applies committed raft entries to the replica's State and writes and
// reads its snapshots.
type fsm struct {
	state *State
}

var _ raft.FSM = (*fsm)(nil)

// Apply applies one committed Command; it returns []*storepb.TxnResult, or
// an error for an entry that cannot be decoded (which no version of shoal
// writes).
func (f *fsm) Apply(l *raft.Log) interface{} {
	var cmd storepb.Command
	if err := proto.Unmarshal(l.Data, &cmd); err != nil {
		// Still advance the index, so that nobody waits on it forever.
		f.state.applyTxns(l.Index, nil)
		return fmt.Errorf("raft entry %d: %w", l.Index, err)
	}
	return f.state.applyTxns(l.Index, cmd.Txns)
}

// Snapshot captures a consistent view; Persist writes it while Apply goes on
// (go-memdb's read transactions are immutable trees).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{view: f.state.snapshotView()}, nil
}

// Restore replaces the state with a snapshot's content.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	hdr, objs, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	return f.state.restore(hdr, objs)
}

type fsmSnapshot struct {
	view *snapshotView
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.view); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// writeSnapshot writes a header and then every object, each as a
// length-delimited protobuf record.
func writeSnapshot(w io.Writer, v *snapshotView) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	var objs []*api.Object
	for _, k := range api.Kinds() {
		it, err := v.txn.Get(k.Kind, "id")
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", k.Kind, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			objs = append(objs, api.Wrap(raw.(*record).Obj))
		}
	}
	hdr := &storepb.SnapshotHeader{Index: v.index, Secrets: v.secrets, Settings: v.settings, ObjectCount: uint64(len(objs))}
	if _, err := protodelim.MarshalTo(bw, hdr); err != nil {
		return fmt.Errorf("snapshot header: %w", err)
	}
	for _, o := range objs {
		if _, err := protodelim.MarshalTo(bw, o); err != nil {
			return fmt.Errorf("snapshot object: %w", err)
		}
	}
	return bw.Flush()
}

func readSnapshot(r io.Reader) (*storepb.SnapshotHeader, []api.Resource, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	opts := protodelim.UnmarshalOptions{MaxSize: 64 << 20}
	var hdr storepb.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return nil, nil, fmt.Errorf("snapshot header: %w", err)
	}
	// The count comes from the file: do not trust it for an allocation.
	objs := make([]api.Resource, 0, min(hdr.ObjectCount, 1<<16))
	for i := uint64(0); i < hdr.ObjectCount; i++ {
		var o api.Object
		if err := opts.UnmarshalFrom(br, &o); err != nil {
			return nil, nil, fmt.Errorf("snapshot object %d of %d: %w", i+1, hdr.ObjectCount, err)
		}
		r := o.Resource()
		if r == nil {
			return nil, nil, fmt.Errorf("snapshot object %d of %d is empty", i+1, hdr.ObjectCount)
		}
		objs = append(objs, r)
	}
	return &hdr, objs, nil
}
