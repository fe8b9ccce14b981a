package chaos

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// h builds ops: one per line, call and return times given.
type hop struct {
	client     int
	in         Input
	out        Output
	call, ret  int64
	dropped    bool
	unknownOut bool
}

func toOps(hs []hop) []Op {
	var out []Op
	for _, h := range hs {
		o := Op{Client: h.client, Input: h.in, Output: h.out, Call: h.call, Return: h.ret, Dropped: h.dropped}
		out = append(out, o)
	}
	return out
}

func check(t *testing.T, hs []hop) porcupine.CheckResult {
	t.Helper()
	res, _ := porcupine.CheckOperationsVerbose(Model(), Porcupine(toOps(hs), 10), 10*time.Second)
	return res
}

func put(k string, v int64) Input    { return Input{Kind: OpPut, Key: k, Value: v} }
func create(k string, v int64) Input { return Input{Kind: OpCreate, Key: k, Value: v} }
func cas(k string, v int64, rv uint64) Input {
	return Input{Kind: OpCAS, Key: k, Value: v, ExpectRV: rv}
}
func del(k string, rv uint64) Input  { return Input{Kind: OpDelete, Key: k, ExpectRV: rv} }
func get(k string) Input             { return Input{Kind: OpGet, Key: k} }
func ok(rv uint64) Output            { return Output{Result: ResOK, RV: rv} }
func read(v int64, rv uint64) Output { return Output{Result: ResOK, RV: rv, Value: v} }

var (
	notFound = Output{Result: ResNotFound}
	exists   = Output{Result: ResExists}
	conflict = Output{Result: ResConflict}
	unknown  = Output{Result: ResUnknown}
)

func TestModel(t *testing.T) {
	cases := []struct {
		name string
		ops  []hop
		want porcupine.CheckResult
	}{
		{"sequential life of a key", []hop{
			{0, get("a"), notFound, 0, 1, false, false},
			{0, create("a", 1), ok(5), 2, 3, false, false},
			{0, create("a", 2), exists, 4, 5, false, false},
			{0, get("a"), read(1, 5), 6, 7, false, false},
			{0, cas("a", 3, 5), ok(7), 8, 9, false, false},
			{0, cas("a", 4, 5), conflict, 10, 11, false, false},
			{0, put("a", 5), ok(9), 12, 13, false, false},
			{0, del("a", 9), ok(12), 14, 15, false, false},
			{0, del("a", 0), notFound, 16, 17, false, false},
			{0, cas("a", 6, 12), notFound, 18, 19, false, false},
			{0, get("a"), notFound, 20, 21, false, false},
			{0, create("a", 7), ok(14), 22, 23, false, false},
		}, porcupine.Ok},
		{"concurrent writes in either order", []hop{
			{0, put("a", 1), ok(5), 0, 10, false, false},
			{1, put("a", 2), ok(6), 0, 10, false, false},
			{2, get("a"), read(2, 6), 11, 12, false, false},
		}, porcupine.Ok},
		{"stale read after an acknowledged write", []hop{
			{0, put("a", 1), ok(5), 0, 10, false, false},
			{1, get("a"), notFound, 20, 30, false, false},
		}, porcupine.Illegal},
		{"read goes back in time", []hop{
			{0, put("a", 1), ok(5), 0, 1, false, false},
			{0, put("a", 2), ok(6), 2, 3, false, false},
			{1, get("a"), read(2, 6), 4, 5, false, false},
			{1, get("a"), read(1, 5), 6, 7, false, false},
		}, porcupine.Illegal},
		{"two changes with one resourceVersion", []hop{
			{0, put("a", 1), ok(5), 0, 10, false, false},
			{1, put("a", 2), ok(5), 0, 10, false, false},
		}, porcupine.Illegal},
		{"stale precondition accepted", []hop{
			{0, put("a", 1), ok(5), 0, 1, false, false},
			{1, put("a", 2), ok(6), 2, 3, false, false},
			{0, cas("a", 3, 5), ok(7), 4, 5, false, false},
		}, porcupine.Illegal},
		{"conflict while the version matches", []hop{
			{0, put("a", 1), ok(5), 0, 1, false, false},
			{0, cas("a", 3, 5), conflict, 4, 5, false, false},
		}, porcupine.Illegal},
		{"unknown write seen later", []hop{
			{0, put("a", 1), unknown, 0, 0, false, false},
			{1, get("a"), read(1, 8), 20, 21, false, false},
			{1, cas("a", 2, 8), ok(9), 22, 23, false, false},
		}, porcupine.Ok},
		{"unknown write never seen", []hop{
			{0, put("a", 1), unknown, 0, 0, false, false},
			{1, get("a"), notFound, 20, 21, false, false},
			{1, get("a"), notFound, 22, 23, false, false},
		}, porcupine.Ok},
		{"unknown write seen, then gone without a write", []hop{
			{0, put("a", 1), unknown, 0, 0, false, false},
			{1, get("a"), read(1, 8), 20, 21, false, false},
			{1, get("a"), notFound, 22, 23, false, false},
		}, porcupine.Illegal},
		{"precondition on an unknown write's version", []hop{
			{0, create("a", 1), ok(3), 0, 1, false, false},
			{0, put("a", 2), unknown, 2, 0, false, false},
			{1, cas("a", 3, 3), conflict, 20, 21, false, false},
			{1, get("a"), read(2, 9), 22, 23, false, false},
		}, porcupine.Ok},
		{"unknown cas that could not apply", []hop{
			{0, create("a", 1), ok(3), 0, 1, false, false},
			{0, cas("a", 2, 99), unknown, 2, 0, false, false},
			{1, get("a"), read(2, 9), 22, 23, false, false},
		}, porcupine.Illegal},
		{"unknown delete applied", []hop{
			{0, create("a", 1), ok(3), 0, 1, false, false},
			{0, del("a", 3), unknown, 2, 0, false, false},
			{1, get("a"), notFound, 22, 23, false, false},
			{1, create("a", 4), ok(11), 24, 25, false, false},
		}, porcupine.Ok},
		{"dropped failures are ignored", []hop{
			{0, put("a", 1), Output{}, 0, 1, true, false},
			{1, get("a"), notFound, 22, 23, false, false},
		}, porcupine.Ok},
		{"keys are independent", []hop{
			{0, put("a", 1), ok(5), 0, 1, false, false},
			{1, put("b", 2), ok(6), 2, 3, false, false},
			{1, get("a"), read(1, 5), 4, 5, false, false},
			{1, get("b"), read(2, 6), 4, 5, false, false},
		}, porcupine.Ok},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range c.ops {
				if c.ops[i].out.Result == ResUnknown {
					c.ops[i].ret = 1000
				}
			}
			if got := check(t, c.ops); got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestRVOrder(t *testing.T) {
	ops := toOps([]hop{
		{0, put("a", 1), ok(5), 0, 1, false, false},
		{1, put("b", 2), ok(4), 2, 3, false, false}, // began after a's ack, smaller rv
		{2, put("c", 3), ok(9), 0, 10, false, false},
	})
	got := rvOrder(ops)
	if len(got) != 1 || !strings.Contains(got[0], "put(b, 2)") {
		t.Errorf("rvOrder = %q, want one finding about b", got)
	}
	if got := rvOrder(ops[:1]); len(got) != 0 {
		t.Errorf("rvOrder of one op = %q", got)
	}
}

func TestClassify(t *testing.T) {
	if ClassifyError(errNotSent) != ErrNoEffect {
		t.Error("errNotSent is not ErrNoEffect")
	}
}

func TestScheduleDeterministic(t *testing.T) {
	a := Schedule(42, 3, time.Minute, nil)
	b := Schedule(42, 3, time.Minute, nil)
	if !reflect.DeepEqual(a, b) || len(a) == 0 {
		t.Fatalf("schedules of one seed differ or are empty: %v / %v", a, b)
	}
	c := Schedule(43, 3, time.Minute, nil)
	if reflect.DeepEqual(a, c) {
		t.Error("seeds 42 and 43 give the same schedule")
	}
	for _, f := range Schedule(9, 3, time.Minute, []FaultKind{FaultPause}) {
		if f.Kind != FaultPause {
			t.Fatalf("schedule of pauses holds %v", f.Kind)
		}
	}
	for _, f := range Schedule(7, 5, 10*time.Minute, nil) {
		for _, h := range f.Hosts {
			if h < 1 || h > 5 {
				t.Fatalf("fault %+v aims at host %d", f, h)
			}
		}
		if f.Kind == FaultPartition && len(f.Hosts) > 2 {
			t.Fatalf("partition of %v is no minority of 5", f.Hosts)
		}
	}
}
