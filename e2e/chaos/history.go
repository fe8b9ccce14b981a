package chaos

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Op is one recorded operation.
type Op struct {
	Client int // the client that made it
	Node   int // the host (1-based) whose API it was sent to
	Input  Input
	Output Output
	// Call and Return are monotonic nanoseconds since the run began;
	// Return is Never for an unknown outcome.
	Call, Return int64
	// Dropped marks a definite failure that says nothing about the state
	// (no leader reachable, the request never left the client): it had no
	// effect and is left out of the checked history.
	Dropped bool
	// Why is the error of a failed or unknown operation.
	Why string
}

// Outcome classes in the summary.
const (
	ClassOK      = "ok"
	ClassFailed  = "failed"
	ClassUnknown = "unknown"
)

// Class is ok, failed (definitely without effect) or unknown.
func (o Op) Class() string {
	switch {
	case o.Output.Result == ResUnknown:
		return ClassUnknown
	case o.Dropped || o.Output.Result != ResOK:
		return ClassFailed
	}
	return ClassOK
}

// Acked reports whether the op is a write the store acknowledged.
func (o Op) Acked() bool {
	return o.Input.Kind.IsWrite() && !o.Dropped && o.Output.Result == ResOK
}

// History records operations from many goroutines.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewHistory starts the clock of a history.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the monotonic time since the history began, in nanoseconds.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Since converts a monotonic instant into the history's clock.
func (h *History) Since(t time.Time) time.Duration { return t.Sub(h.start) }

// Add records one operation.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of the operations, by call time.
func (h *History) Ops() []Op {
	h.mu.Lock()
	out := append([]Op(nil), h.ops...)
	h.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

// Porcupine converts the checked part of the history (everything but the
// dropped failures) into porcupine operations. Unknown outcomes get a
// client id of their own, since their client went on while they stayed
// pending.
func Porcupine(ops []Op, clients int) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	next := clients
	for _, o := range ops {
		if o.Dropped || o.Input.Kind == OpLocalGet {
			continue
		}
		id := o.Client
		ret := o.Return
		if o.Output.Result == ResUnknown {
			id = next
			next++
			ret = Never
		}
		meta := fmt.Sprintf("client %d via host %d", o.Client, o.Node)
		if o.Why != "" {
			meta += ": " + o.Why
		}
		out = append(out, porcupine.Operation{ClientId: id, Input: o.Input, Call: o.Call, Output: o.Output, Return: ret, Metadata: meta})
	}
	return out
}

// ErrorClass says what a failed call means for the history.
type ErrorClass int

const (
	// ErrUnknown: the call may or may not have taken effect.
	ErrUnknown ErrorClass = iota
	// ErrNotFound, ErrExists, ErrConflict: definite failures decided by
	// the store's state.
	ErrNotFound
	ErrExists
	ErrConflict
	// ErrNoEffect: a definite failure decided before any proposal (no
	// leader reachable, the request never left the client).
	ErrNoEffect
	// ErrInvalid: the request was refused as malformed: a bug of the
	// suite, not of the store.
	ErrInvalid
)

// ClassifyError sorts a gRPC error of a write by what it tells about its
// effect. Only errors that cannot follow a proposal are definite:
//   - Aborted (conflict), AlreadyExists and NotFound come from the raft
//     entry's apply (the transaction failed as a whole) or from validation;
//   - Unavailable "no leader reachable" is cluster/server.go's onLeader
//     giving up after only errors that certainly did not propose (not the
//     leader before proposing, forwards refused or never dialled);
//   - a call that never left the client (no ready connection) did nothing.
//
// Everything else (deadline exceeded, connection lost mid-call, "write
// outcome unknown", internal errors) is unknown.
func ClassifyError(err error) ErrorClass {
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, errNotSent) {
			return ErrNoEffect
		}
		return ErrUnknown
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Aborted:
		return ErrConflict
	case codes.AlreadyExists:
		return ErrExists
	case codes.NotFound:
		return ErrNotFound
	case codes.InvalidArgument:
		return ErrInvalid
	case codes.Unavailable, codes.DeadlineExceeded:
		if strings.Contains(msg, "outcome unknown") {
			return ErrUnknown
		}
		if strings.Contains(msg, "no leader reachable") {
			return ErrNoEffect
		}
		// grpc's picker: no connection was ready, nothing was sent.
		if strings.Contains(msg, "while waiting for connections to become ready") ||
			strings.Contains(msg, "latest balancer error") ||
			strings.Contains(msg, "Error while dialing") {
			return ErrNoEffect
		}
	}
	return ErrUnknown
}

var errNotSent = errors.New("not sent")

// ShortError is an error's message cut to one line for the reports.
func ShortError(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if st, ok := status.FromError(err); ok {
		s = st.Code().String() + ": " + st.Message()
	}
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
