package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMaxReadStaleness bounds how far behind the leader a default
// (non-consistent) read may be: a replica that has not heard from the
// leader for longer refuses it, rather than answer from a copy that may
// be arbitrarily old (a node cut off from the majority). Five heartbeat
// timeouts.
const DefaultMaxReadStaleness = 5 * time.Second

// checkReadStaleness refuses a default read this node cannot vouch for.
// Its own agent is let through: during a partition it keeps running the
// pods it knows of, from what it has.
func (c *Cluster) checkReadStaleness(ctx context.Context) error {
	max := c.cfg.MaxReadStaleness
	if max < 0 || c.raft == nil || c.raft.raft == nil {
		return nil
	}
	if who, ok := callerFrom(ctx); ok && who.IsNode && who.Name == c.id.Name && !isForwarded(ctx) {
		return nil
	}
	if c.raft.raft.State() == raft.Leader {
		return nil // a leader cut off from the majority steps down within its lease
	}
	last := c.raft.raft.LastContact()
	if last.IsZero() {
		// Never a follower of a leader yet (joining, or outside the
		// replicas, which read through one): nothing to bound.
		return nil
	}
	if age := time.Since(last); age > max {
		return status.Errorf(codes.Unavailable, "node %s last heard from the raft leader %v ago (the bound is %v): its copy of the state may be stale; ask another node, or read with consistent=true",
			c.id.Name, age.Round(time.Millisecond), max)
	}
	return nil
}
