// Package chaos is shoal's linearizability suite: clients write and read a
// small set of objects through the API of different nodes while a fault
// injector kills, pauses and partitions the agents; every operation is
// recorded with its start, end and outcome, and the history is checked
// with porcupine against a sequential model of the store. Watchers record
// the change stream across reconnects and are compared with the change log
// a node replays at the end. The lab wiring lives in e2e/chaos_test.go;
// this package holds the model, the recording, the fault schedule, the
// checks and the report.
package chaos

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"

	"github.com/anishathalye/porcupine"
)

// OpKind is what a recorded operation did.
type OpKind uint8

const (
	// OpCreate is an Apply with createOnly: fails with AlreadyExists when
	// the object exists.
	OpCreate OpKind = iota
	// OpPut is an Apply without precondition: creates or replaces.
	OpPut
	// OpCAS is an Apply naming a resourceVersion: replaces the object only
	// when it is at that version.
	OpCAS
	// OpDelete deletes, naming a resourceVersion when ExpectRV is set.
	OpDelete
	// OpGet is a consistent (linearizable) Get.
	OpGet
	// OpLocalGet is a default Get, served by the node's own replica: it
	// may be stale, so it is not part of the linearizability check; it is
	// checked to return a version that was committed, and its staleness
	// is measured.
	OpLocalGet
)

func (k OpKind) String() string {
	switch k {
	case OpCreate:
		return "create"
	case OpPut:
		return "put"
	case OpCAS:
		return "cas"
	case OpDelete:
		return "delete"
	case OpGet:
		return "get"
	case OpLocalGet:
		return "local-get"
	}
	return fmt.Sprintf("op%d", uint8(k))
}

// IsWrite reports whether the operation may change the store.
func (k OpKind) IsWrite() bool { return k != OpGet && k != OpLocalGet }

// Input is what a client asked.
type Input struct {
	Kind     OpKind
	Key      string
	Value    int64  // the value written (unique per write)
	ExpectRV uint64 // the resourceVersion a CAS or delete names; 0: none
}

// Result is the outcome of an operation as the model sees it.
type Result uint8

const (
	// ResOK: the operation took effect (a write) or answered (a read).
	ResOK Result = iota
	// ResNotFound, ResExists and ResConflict are definite failures that
	// say something about the state: the object was absent, present, or
	// at another resourceVersion.
	ResNotFound
	ResExists
	ResConflict
	// ResUnknown: the client cannot know whether the write took effect
	// (timeout, connection lost after sending). It may take effect at any
	// time after its start, or never.
	ResUnknown
)

func (r Result) String() string {
	switch r {
	case ResOK:
		return "ok"
	case ResNotFound:
		return "not-found"
	case ResExists:
		return "exists"
	case ResConflict:
		return "conflict"
	case ResUnknown:
		return "unknown"
	}
	return fmt.Sprintf("res%d", uint8(r))
}

// Output is what the client was told.
type Output struct {
	Result Result
	// RV is the resourceVersion of the object written or read; for a
	// delete, the raft index of the deletion.
	RV uint64
	// Value is the value a Get read.
	Value int64
}

// keyState is the model's state of one key. When RVKnown is false an
// unknown-outcome write was applied and the real resourceVersion is only
// known to be greater than RV.
type keyState struct {
	Exists  bool
	Value   int64
	RV      uint64
	RVKnown bool
}

func (s keyState) String() string {
	rv := fmt.Sprint(s.RV)
	if !s.RVKnown {
		rv = ">" + rv
	}
	if !s.Exists {
		return "absent@" + rv
	}
	return fmt.Sprintf("%d@%s", s.Value, rv)
}

// rvCould reports whether the state's resourceVersion can be rv.
func (s keyState) rvCould(rv uint64) bool {
	if s.RVKnown {
		return s.RV == rv
	}
	return rv > s.RV
}

// rvSurely reports whether the state's resourceVersion is certainly rv.
func (s keyState) rvSurely(rv uint64) bool { return s.RVKnown && s.RV == rv }

// newer reports whether rv can be the version of a change after s: every
// change must carry a resourceVersion greater than the one before.
func (s keyState) newer(rv uint64) bool { return rv > s.RV }

// step returns the states the key can be in after the operation, given
// its outcome; none when the outcome is impossible from s.
func step(s keyState, in Input, out Output) []keyState {
	unchanged := []keyState{s}
	none := []keyState(nil)
	written := func(rv uint64) keyState { return keyState{Exists: true, Value: in.Value, RV: rv, RVKnown: true} }
	// An unknown write applied: its version is above every version before.
	writtenUnknown := func(floor uint64) keyState {
		return keyState{Exists: true, Value: in.Value, RV: floor, RVKnown: false}
	}
	switch in.Kind {
	case OpGet:
		switch out.Result {
		case ResOK:
			if s.Exists && s.Value == out.Value && s.rvCould(out.RV) {
				return []keyState{{Exists: true, Value: s.Value, RV: out.RV, RVKnown: true}}
			}
		case ResNotFound:
			if !s.Exists {
				return unchanged
			}
		}
		return none

	case OpCreate:
		switch out.Result {
		case ResOK:
			if !s.Exists && s.newer(out.RV) {
				return []keyState{written(out.RV)}
			}
		case ResExists:
			if s.Exists {
				return unchanged
			}
		case ResUnknown:
			if !s.Exists {
				return []keyState{writtenUnknown(s.RV)}
			}
			return unchanged // it would fail here: no effect
		}
		return none

	case OpPut:
		same := s.Exists && s.Value == in.Value // a no-op write keeps the version
		switch out.Result {
		case ResOK:
			if same {
				if s.rvCould(out.RV) {
					return []keyState{written(out.RV)}
				}
				return none
			}
			if s.newer(out.RV) {
				return []keyState{written(out.RV)}
			}
		case ResUnknown:
			if same {
				return unchanged
			}
			return []keyState{writtenUnknown(s.RV)}
		}
		return none

	case OpCAS:
		switch out.Result {
		case ResOK:
			if !s.Exists || !s.rvCould(in.ExpectRV) {
				return none
			}
			if s.Value == in.Value {
				if out.RV == in.ExpectRV {
					return []keyState{written(out.RV)}
				}
				return none
			}
			if out.RV > in.ExpectRV {
				return []keyState{written(out.RV)}
			}
		case ResConflict:
			if s.Exists && !s.rvSurely(in.ExpectRV) {
				return unchanged
			}
		case ResNotFound:
			if !s.Exists {
				return unchanged
			}
		case ResUnknown:
			var next []keyState
			if s.Exists && s.rvCould(in.ExpectRV) {
				if s.Value == in.Value {
					next = append(next, keyState{Exists: true, Value: s.Value, RV: in.ExpectRV, RVKnown: true})
				} else {
					next = append(next, writtenUnknown(in.ExpectRV))
				}
			}
			if !s.rvSurely(in.ExpectRV) || !s.Exists {
				next = append(next, s) // it fails here: no effect
			}
			return next
		}
		return none

	case OpDelete:
		matches := in.ExpectRV == 0 || s.rvCould(in.ExpectRV)
		surely := in.ExpectRV == 0 || s.rvSurely(in.ExpectRV)
		switch out.Result {
		case ResOK:
			if s.Exists && matches && s.newer(out.RV) && (in.ExpectRV == 0 || out.RV > in.ExpectRV) {
				return []keyState{{Exists: false, RV: out.RV, RVKnown: true}}
			}
		case ResNotFound:
			if !s.Exists {
				return unchanged
			}
		case ResConflict:
			if in.ExpectRV != 0 && s.Exists && !s.rvSurely(in.ExpectRV) {
				return unchanged
			}
		case ResUnknown:
			var next []keyState
			if s.Exists && matches {
				floor := s.RV
				if in.ExpectRV != 0 {
					floor = in.ExpectRV
				}
				next = append(next, keyState{Exists: false, RV: floor, RVKnown: false})
			}
			if !s.Exists || !surely {
				next = append(next, s)
			}
			return next
		}
		return none
	}
	return none
}

// Model is the porcupine model of the store: one register per key holding
// an object's value and resourceVersion, with create, put, compare-and-set
// on the resourceVersion, delete and linearizable get; every change must
// carry a resourceVersion greater than the key's previous one. The history
// is partitioned by key.
func Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []interface{} { return []interface{}{keyState{RVKnown: true}} },
		Step: func(state, input, output interface{}) []interface{} {
			next := step(state.(keyState), input.(Input), output.(Output))
			out := make([]interface{}, len(next))
			for i, s := range next {
				out[i] = s
			}
			return out
		},
		Equal: func(a, b interface{}) bool { return a.(keyState) == b.(keyState) },
		Hash: func(s interface{}) uint64 {
			k := s.(keyState)
			h := fnv.New64a()
			fmt.Fprintf(h, "%v/%d/%d/%v", k.Exists, k.Value, k.RV, k.RVKnown)
			return h.Sum64()
		},
		DescribeOperation: func(input, output interface{}) string {
			return describeOp(input.(Input), output.(Output))
		},
		DescribeState: func(s interface{}) string { return s.(keyState).String() },
		DescribeOperationMetadata: func(m interface{}) string {
			if m == nil {
				return ""
			}
			return fmt.Sprint(m)
		},
	}
	return nm.ToModel()
}

func describeOp(in Input, out Output) string {
	var call string
	switch in.Kind {
	case OpGet, OpLocalGet:
		call = fmt.Sprintf("%s(%s)", in.Kind, in.Key)
	case OpDelete:
		call = fmt.Sprintf("delete(%s", in.Key)
		if in.ExpectRV != 0 {
			call += fmt.Sprintf(", rv=%d", in.ExpectRV)
		}
		call += ")"
	case OpCAS:
		call = fmt.Sprintf("cas(%s, %d, rv=%d)", in.Key, in.Value, in.ExpectRV)
	default:
		call = fmt.Sprintf("%s(%s, %d)", in.Kind, in.Key, in.Value)
	}
	switch {
	case out.Result == ResOK && !in.Kind.IsWrite():
		return fmt.Sprintf("%s -> %d@%d", call, out.Value, out.RV)
	case out.Result == ResOK:
		return fmt.Sprintf("%s -> ok@%d", call, out.RV)
	}
	return fmt.Sprintf("%s -> %s", call, out.Result)
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := op.Input.(Input).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// Never is the end of an operation whose outcome is unknown: it may take
// effect at any time after its start.
const Never = int64(math.MaxInt64)
