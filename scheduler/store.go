package scheduler

import (
	"context"

	"github.com/shoalproj/shoal/api"
)

// Store is what the leader's controllers need of the replicated store: a
// read of the local (leader's) state, a signal when it changes, and
// writes through raft. The cluster package implements it.
type Store interface {
	// List returns every object of the kinds in every namespace, all read
	// at one store index, and that index. The objects are shared: read
	// only.
	List(kinds ...string) ([]api.Resource, uint64)
	// Changed returns a channel closed once the store is past index.
	Changed(index uint64) <-chan struct{}
	// Write proposes each op as a transaction of its own; ops proposed
	// together share raft entries. It returns one error per op (nil when
	// applied), or an error for all when none could be proposed (this
	// node no longer leads).
	Write(ctx context.Context, ops []Op) ([]error, error)
}

// Op is one write of a controller.
type Op struct {
	// Put creates or replaces an object (its spec and metadata; the stored
	// status is kept), or, with StatusOnly, replaces only its status.
	Put        api.Resource
	StatusOnly bool
	// Create fails the op when the object exists.
	Create bool
	// Delete removes the object of this kind, namespace and name.
	Delete *ObjectKey
	// Graceful, for a Delete of a pod on a node, marks it terminating
	// (its node stops it and removes it) rather than removing it at once.
	Graceful bool
	// ResourceVersion, when set, fails the op if the object changed since.
	ResourceVersion string
	// Why is what the op is for, in logs.
	Why string
}

// ObjectKey names an object.
type ObjectKey struct {
	Kind, Namespace, Name string
}
