package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// errNotLeader means the write was not proposed because this node does not
// lead: it is safe to send it to the leader.
var errNotLeader = errors.New("not the leader")

// proposal is one transaction waiting for its raft entry.
type proposal struct {
	txn  *storepb.Txn
	done chan proposalResult
}

type proposalResult struct {
	res *storepb.TxnResult
	err error
}

const (
	// maxTxnsPerEntry bounds how many transactions share one raft entry.
	maxTxnsPerEntry = 512
	// maxEntriesInFlight bounds the raft entries proposed and not yet
	// applied; while they are, new writes queue and go out together.
	maxEntriesInFlight = 2
)

// propose submits a transaction through raft on the leader and waits for its
// result. Transactions arriving together share raft entries.
func (c *Cluster) propose(ctx context.Context, txn *storepb.Txn) (*storepb.TxnResult, error) {
	if !c.isLeader() {
		return nil, errNotLeader
	}
	p := &proposal{txn: txn, done: make(chan proposalResult, 1)}
	select {
	case c.proposals <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		// Proposed: it may still commit. The caller cannot know.
		return nil, status.Errorf(codes.Unavailable, "write outcome unknown: %v", ctx.Err())
	}
}

// batchLoop turns queued proposals into raft entries. Two transactions
// that change the same object never share an entry: the second waits for
// the next one. Every change of an object so has a resourceVersion (raft
// index) of its own, and a write naming the version of a change that was
// since overwritten fails with a conflict, as it must.
func (c *Cluster) batchLoop(ctx context.Context) {
	inFlight := make(chan struct{}, maxEntriesInFlight)
	var held []*proposal // for the next entry: they touch an object of this one
	for {
		pending := held
		held = nil
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				return
			case p := <-c.proposals:
				pending = append(pending, p)
			}
		}
		// Wait for room before draining: while entries are in flight, the
		// writes that arrive meanwhile join this batch.
		select {
		case inFlight <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var batch []*proposal
		touched := map[string]bool{}
		take := func(p *proposal) {
			keys := txnKeys(p.txn)
			for _, k := range keys {
				if touched[k] {
					held = append(held, p)
					return
				}
			}
			if len(batch) >= maxTxnsPerEntry {
				held = append(held, p)
				return
			}
			for _, k := range keys {
				touched[k] = true
			}
			batch = append(batch, p)
		}
		for _, p := range pending {
			take(p)
		}
	drain:
		for len(batch) < maxTxnsPerEntry && len(held) < maxTxnsPerEntry {
			select {
			case p := <-c.proposals:
				take(p)
			default:
				break drain
			}
		}
		cmd := &storepb.Command{Txns: make([]*storepb.Txn, len(batch))}
		for i, p := range batch {
			cmd.Txns[i] = p.txn
		}
		data, err := proto.Marshal(cmd)
		if err != nil {
			<-inFlight
			for _, p := range batch {
				p.done <- proposalResult{err: fmt.Errorf("encode raft entry: %w", err)}
			}
			continue
		}
		start := time.Now()
		f := c.raft.raft.Apply(data, 10*time.Second)
		c.metrics.batchSize.Observe(float64(len(batch)))
		go func() {
			defer func() { <-inFlight }()
			err := f.Error()
			c.metrics.applyLatency.Observe(time.Since(start).Seconds())
			var results []*storepb.TxnResult
			if err == nil {
				switch r := f.Response().(type) {
				case []*storepb.TxnResult:
					results = r
				case error:
					err = r
				}
			}
			for i, p := range batch {
				switch {
				case errors.Is(err, raft.ErrNotLeader):
					p.done <- proposalResult{err: errNotLeader}
				case err != nil:
					p.done <- proposalResult{err: status.Errorf(codes.Unavailable, "write outcome unknown: %v", err)}
				case i < len(results):
					p.done <- proposalResult{res: results[i]}
				default:
					p.done <- proposalResult{err: status.Error(codes.Internal, "raft entry returned too few results")}
				}
			}
		}()
	}
}

// txnKeys names the objects a transaction changes (kind/namespace/name).
func txnKeys(t *storepb.Txn) []string {
	keys := make([]string, 0, len(t.Ops))
	for _, op := range t.Ops {
		switch op.Type {
		case storepb.Op_DELETE:
			keys = append(keys, op.Kind+"/"+api.Key(op.Namespace, op.Name))
		default:
			if r := op.Object.Resource(); r != nil {
				keys = append(keys, api.KindOf(r)+"/"+api.KeyOf(r))
			}
		}
	}
	return keys
}
