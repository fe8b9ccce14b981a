package chaos

import (
	"strings"
	"testing"
)

func ev(typ, key string, v int64, rv uint64) Change {
	return Change{Type: typ, Key: key, Value: v, RV: rv}
}

func items(cs ...Change) []WatchItem {
	var out []WatchItem
	for _, c := range cs {
		out = append(out, WatchItem{Change: c})
	}
	return out
}

var testLog = []Change{
	ev("ADDED", "a", 1, 11),
	ev("ADDED", "b", 2, 12),
	ev("MODIFIED", "a", 3, 14),
	ev("DELETED", "b", 2, 15),
	ev("ADDED", "fence", 9, 20),
}

func TestCheckWatch(t *testing.T) {
	cases := []struct {
		name  string
		items []WatchItem
		want  string // "" or a part of the first finding
	}{
		{"complete", items(testLog...), ""},
		{"missed", items(testLog[0], testLog[2], testLog[3], testLog[4]), "missed ADDED b=2@12"},
		{"repeated", items(testLog[0], testLog[1], testLog[1], testLog[2], testLog[3], testLog[4]), "repeats"},
		{"back in time", items(testLog[0], testLog[2], testLog[1], testLog[3], testLog[4]), "goes back"},
		{"phantom", items(testLog[0], testLog[1], testLog[2], testLog[3], ev("MODIFIED", "a", 7, 16), testLog[4]), "not in the change log"},
		{"re-list covers the gap", append(append(items(testLog[0]),
			WatchItem{Relist: true, FromRV: 11, ListRV: 14, Items: map[string]finalState{"a": {true, 3, 14}, "b": {true, 2, 12}}}),
			items(testLog[3], testLog[4])...), ""},
		{"re-list that lies", append(append(items(testLog[0]),
			WatchItem{Relist: true, FromRV: 11, ListRV: 14, Items: map[string]finalState{"a": {true, 3, 14}}}),
			items(testLog[3], testLog[4])...), "re-list at resourceVersion 14"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := checkWatch(c.items, testLog, 10, 20)
			switch {
			case c.want == "" && len(got) != 0:
				t.Errorf("findings %q, want none", got)
			case c.want != "" && (len(got) == 0 || !strings.Contains(got[0], c.want)):
				t.Errorf("findings %q, want one with %q", got, c.want)
			}
		})
	}
}

func TestCheckChangeLog(t *testing.T) {
	ops := toOps([]hop{
		{0, create("a", 1), ok(11), 0, 1, false, false},
		{0, create("b", 2), ok(12), 0, 1, false, false},
		{0, cas("a", 3, 11), unknown, 0, 0, false, false},
		{0, put("fence", 9), ok(20), 0, 1, false, false},
	})
	if got := checkChangeLog(testLog, ops); len(got) != 0 {
		t.Errorf("findings on a good log: %q", got)
	}
	bad := []struct {
		name string
		log  []Change
		ops  []Op
		want string
	}{
		{"applied twice", append(append([]Change(nil), testLog...), ev("MODIFIED", "a", 3, 21)), ops, "applied twice"},
		{"failed but applied", testLog, toOps([]hop{
			{0, create("a", 1), ok(11), 0, 1, false, false},
			{0, create("b", 2), ok(12), 0, 1, false, false},
			{0, cas("a", 3, 11), conflict, 0, 1, false, false},
			{0, put("fence", 9), ok(20), 0, 1, false, false},
		}), "reported failed"},
		{"same version twice", []Change{ev("ADDED", "a", 1, 11), ev("MODIFIED", "a", 3, 11)}, ops, "not greater"},
		{"nobody wrote it", []Change{ev("ADDED", "a", 77, 11)}, ops, "no client wrote"},
		{"added twice", []Change{ev("ADDED", "a", 1, 11), ev("ADDED", "a", 3, 14)}, ops, "exists"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			got := checkChangeLog(c.log, c.ops)
			if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), c.want) {
				t.Errorf("findings %q, want one with %q", got, c.want)
			}
		})
	}
}

func TestLostWrites(t *testing.T) {
	ops := toOps([]hop{
		{0, create("a", 1), ok(11), 0, 1, false, false},
		{0, create("b", 2), ok(12), 0, 1, false, false},
		{0, cas("a", 3, 11), ok(14), 0, 1, false, false},
		{0, del("b", 0), ok(15), 0, 1, false, false},
	})
	if n, d := lostWrites(ops, testLog, map[string]finalState{"a": {true, 3, 14}}); n != 0 {
		t.Errorf("lost %d: %q", n, d)
	}
	if n, _ := lostWrites(ops, testLog[:2], nil); n != 2 {
		t.Errorf("lost %d from a log without the last two writes, want 2", n)
	}
	if n, _ := lostWrites(ops, nil, map[string]finalState{"a": {true, 1, 11}}); n != 1 {
		t.Errorf("lost %d with a final state older than an ack, want 1", n)
	}
}
