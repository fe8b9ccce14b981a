package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
	"github.com/shoalproj/shoal/scheduler"
)

// controllerStore is the leader's store as the scheduler's controllers see
// it: the local state (current on the leader once its barrier passed) and
// writes through this node's raft proposer.
type controllerStore struct{ c *Cluster }

func (s controllerStore) List(kinds ...string) ([]api.Resource, uint64) {
	return s.c.state.ListKinds(kinds, "", "")
}

func (s controllerStore) Changed(index uint64) <-chan struct{} {
	return s.c.state.changedAfter(index)
}

// maxControllerWait bounds one round's writes.
const maxControllerWait = 15 * time.Second

func (s controllerStore) Write(ctx context.Context, ops []scheduler.Op) ([]error, error) {
	ctx, cancel := context.WithTimeout(ctx, maxControllerWait)
	defer cancel()
	now := time.Now().UnixNano()
	errs := make([]error, len(ops))
	var notProposed error
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Every op is its own transaction; the proposer packs those that
	// arrive together into shared raft entries.
	sem := make(chan struct{}, 4096)
	for i, op := range ops {
		txn := &storepb.Txn{TimeUnixNano: now, Ops: []*storepb.Op{storeOp(op)}}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := s.c.propose(ctx, txn)
			switch {
			case err != nil:
				mu.Lock()
				notProposed = err
				mu.Unlock()
				errs[i] = err
			case res.Code != 0:
				errs[i] = status.Error(codes.Code(res.Code), res.Message)
			}
		}()
	}
	wg.Wait()
	if notProposed != nil {
		return errs, notProposed
	}
	return errs, nil
}

func storeOp(op scheduler.Op) *storepb.Op {
	if op.Delete != nil {
		return &storepb.Op{Type: storepb.Op_DELETE, Kind: op.Delete.Kind, Namespace: op.Delete.Namespace,
			Name: op.Delete.Name, ResourceVersion: op.ResourceVersion, Graceful: op.Graceful, GraceSeconds: -1}
	}
	out := &storepb.Op{Type: storepb.Op_PUT, Object: api.Wrap(op.Put), ResourceVersion: op.ResourceVersion,
		CreateOnly: op.Create, StatusOnly: op.StatusOnly}
	if op.Create {
		out.NewUid = uuid.NewString()
	}
	return out
}
