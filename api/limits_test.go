package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// Regression tests of the limits on what the API reads: each hostile input
// is refused with an error that names the limit, quickly and in bounded
// memory, and nothing is applied.

// limitTestAlloc runs f and returns the bytes it allocated (the whole
// process's, so these tests do not run in parallel).
func limitTestAlloc(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// limitTestDecode decodes in, wants an error containing want, and bounds
// what decoding allocated.
func limitTestDecode(t *testing.T, in string, want string, maxAlloc uint64) {
	t.Helper()
	var objs []Resource
	var err error
	data := []byte(in)
	alloc := limitTestAlloc(func() { objs, err = DecodeManifests(data) })
	if err == nil {
		t.Fatalf("%d bytes decoded to %d objects, want an error about %q", len(in), len(objs), want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %.300q does not say %q", err, want)
	}
	var me *ManifestError
	if !errors.As(err, &me) {
		t.Errorf("error is %T, not a *ManifestError", err)
	}
	if alloc > maxAlloc {
		t.Errorf("decoding %d bytes allocated %d MiB, more than %d MiB", len(in), alloc>>20, maxAlloc>>20)
	}
	t.Logf("%d bytes: %.160s (allocated %d KiB)", len(in), err, alloc>>10)
}

// Ten thousand levels of nesting, in every syntax the decoder reads: the
// parser's own limit (10000) or ours (64) refuses them, before any object
// is built.
func TestLimitNesting10000(t *testing.T) {
	const n = 10000
	var blocks strings.Builder // block mappings, as deep as 8 MiB allows
	for i := 0; blocks.Len() < MaxManifestBytes-8<<10; i++ {
		blocks.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	for _, tc := range []struct{ name, in string }{
		{"yaml flow sequences", strings.Repeat("[", n) + strings.Repeat("]", n) + "\n---\n"},
		{"yaml flow sequences under a key", "a: " + strings.Repeat("[", n-1) + strings.Repeat("]", n-1)},
		{"yaml flow mappings", strings.Repeat("{a: ", n) + "1" + strings.Repeat("}", n)},
		{"yaml flow mappings, unclosed", "a: " + strings.Repeat("{a: ", 2*n)},
		{"yaml block sequences", strings.Repeat("- ", n) + "x\n"},
		{"yaml block mappings up to 8 MiB", blocks.String()},
		{"json arrays", strings.Repeat("[", n) + strings.Repeat("]", n)},
		{"json objects", strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)},
		{"json objects in an object", `{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":` + strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) + "}}"},
		{"json unclosed", strings.Repeat(`{"a":[`, n)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limitTestDecode(t, tc.in, fmt.Sprintf("nested deeper than %d levels", MaxManifestDepth), 64<<20)
		})
	}
}

// limitTestLaughs is the "billion laughs": ten strings, each level a list
// of ten aliases of the level above, nine levels deep (10^9 strings).
func limitTestLaughs(s string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "a: &a [%s]\n", strings.TrimSuffix(strings.Repeat(s+", ", 10), ", "))
	for c := 'b'; c <= 'i'; c++ {
		ref := "*" + string(c-1)
		fmt.Fprintf(&b, "%c: &%c [%s]\n", c, c, strings.TrimSuffix(strings.Repeat(ref+", ", 10), ", "))
	}
	return b.String()
}

func TestLimitBillionLaughs(t *testing.T) {
	limitTestDecode(t, limitTestLaughs("lol"), fmt.Sprintf("aliases expand to more than %d values", manifestMaxAliasNodes), 64<<20)
	// Inside an object (aliases are expanded before fields are checked),
	// and as merges.
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n" + limitTestLaughs("lol")
	limitTestDecode(t, pod, "aliases expand to more than", 64<<20)
	merges := "a: &a {k0: v}\n"
	for i := 1; i < 30; i++ {
		merges += fmt.Sprintf("a%d: &a%d {<<: [*a%d, *a%d], k%d: v}\n", i, i, max(i-1, 0), max(i-2, 0), i)
	}
	merges = strings.ReplaceAll(merges, "*a0", "*a")
	limitTestDecode(t, merges, "aliases expand to more than", 64<<20)
}

// A long string repeated by aliases costs its length every time it is
// written out again: few values, many bytes. Before the byte budget, 80
// KiB repeated 99,000 times (a request of 380 KB) took the process down
// with 8 GB of JSON.
func TestLimitAliasBytes(t *testing.T) {
	long := strings.Repeat("x", 64<<10)
	values := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    args: [&s " + long + strings.Repeat(", *s", 1000) + "]\n"
	want := fmt.Sprintf("aliases expand to more than %d bytes (8 MiB) of strings", manifestMaxAliasBytes)
	limitTestDecode(t, values, want, 64<<20)
	// The same through keys: each mapping may hold the key once, but many
	// mappings may.
	keys := "apiVersion: v1\nkind: List\nitems:\n- &k " + long + "\n" + strings.Repeat("- {*k : 1}\n", 1000)
	limitTestDecode(t, keys, want, 64<<20)
	// Across documents: the budget is the manifest's, not each document's.
	var multi strings.Builder
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&multi, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p%d}\nspec:\n  containers:\n  - name: c\n    image: i\n    args: [&s %s%s]\n", i, long, strings.Repeat(", *s", 10))
	}
	limitTestDecode(t, multi.String(), want, 64<<20)
	// Within the budget, aliases work.
	ok := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    args: [&s " + long + strings.Repeat(", *s", 100) + "]\n"
	objs, err := DecodeManifests([]byte(ok))
	if err != nil || len(objs[0].(*Pod).GetSpec().GetContainers()[0].GetArgs()) != 101 {
		t.Fatalf("6.4 MiB of aliased strings: %v", err)
	}
}

func TestLimitManifestSize(t *testing.T) {
	limitTestDecode(t, strings.Repeat("#", MaxManifestBytes+1), "more than the limit of 8388608 bytes (8 MiB)", 1<<20)
	// Values: many small ones in few bytes.
	limitTestDecode(t, "a: ["+strings.Repeat("1,", manifestMaxNodes)+"1]", fmt.Sprintf("more than the limit of %d", manifestMaxNodes), 1<<20)
	// Documents: empty ones cost nothing each, but are counted.
	limitTestDecode(t, strings.Repeat("---\n", manifestMaxNodes), fmt.Sprintf("more than the limit of %d", manifestMaxNodes), 1<<20)
	var docs strings.Builder
	for i := 0; i <= MaxManifestObjects; i++ {
		fmt.Fprintf(&docs, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p%d}\n", i)
	}
	limitTestDecode(t, docs.String(), fmt.Sprintf("document %d (Pod default/p%d): manifest has more than %d objects", MaxManifestObjects+1, MaxManifestObjects, MaxManifestObjects), 64<<20)
}

// Labels and annotations are bounded by validation, as in Kubernetes:
// label keys (prefix 253, name 63), values 63, annotations 256 KiB in all.
func TestLimitLabelsAndAnnotations(t *testing.T) {
	pod := func(mod func(m *ObjectMeta)) *Pod {
		p := &Pod{Metadata: &ObjectMeta{Name: "p"}, Spec: &PodSpec{Containers: []*Container{{Name: "c", Image: "i"}}}}
		mod(p.Metadata)
		Default(p)
		return p
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name string
		mod  func(m *ObjectMeta)
		want string // "" when valid
	}{
		{"label value of 63", func(m *ObjectMeta) { m.Labels = map[string]string{"k": long(63)} }, ""},
		{"label value of 64", func(m *ObjectMeta) { m.Labels = map[string]string{"k": long(64)} }, "is longer than 63 characters"},
		{"label name of 64", func(m *ObjectMeta) { m.Labels = map[string]string{long(64): "v"} }, "the name is longer than 63 characters"},
		{"label prefix of 254", func(m *ObjectMeta) { m.Labels = map[string]string{long(254) + "/k": "v"} }, "is longer than 253 characters"},
		{"annotations of 256 KiB", func(m *ObjectMeta) { m.Annotations = map[string]string{"k": long(256<<10 - 1)} }, ""},
		{"annotations over 256 KiB", func(m *ObjectMeta) { m.Annotations = map[string]string{"k": long(256 << 10)} }, "metadata.annotations: too long: 262145 bytes, at most 262144"},
		{"annotations over 256 KiB in many keys", func(m *ObjectMeta) {
			m.Annotations = map[string]string{}
			for i := 0; i < 300; i++ {
				m.Annotations[fmt.Sprint("k", i)] = long(1 << 10)
			}
		}, "metadata.annotations: too long"},
		{"annotation key of 64", func(m *ObjectMeta) { m.Annotations = map[string]string{long(64): "v"} }, "the name is longer than 63 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(pod(tc.mod))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// An object with a hundred thousand wrong labels gets an error of a few
// kilobytes that says how many more problems there are.
func TestLimitValidationErrors(t *testing.T) {
	p := &Pod{Metadata: &ObjectMeta{Name: "p", Labels: map[string]string{}}, Spec: &PodSpec{Containers: []*Container{{Name: "c", Image: "i"}}}}
	for i := 0; i < 100_000; i++ {
		p.Metadata.Labels[fmt.Sprintf("k%d", i)] = "-"
	}
	Default(p)
	err := Validate(p)
	var fe FieldErrors
	if !errors.As(err, &fe) || len(fe) != validMaxErrors+1 {
		t.Fatalf("error of %d problems, want %d and a count: %.200v", len(fe), validMaxErrors, err)
	}
	if last := fe[len(fe)-1].Error(); last != fmt.Sprintf("and %d more errors", 100_000-validMaxErrors) {
		t.Errorf("last problem %q", last)
	}
	if n := len(err.Error()); n > 64<<10 {
		t.Errorf("error of %d bytes", n)
	}
}

// The HTTP API refuses a body over MaxRequestBody with 413 and a message
// that names the limit and the route, whether the client announced the
// length or not, and applies nothing.
func TestLimitHTTPRequestBody(t *testing.T) {
	f := newHTTPFake()
	h := NewHTTPHandler(f)
	big := "# padding\n" + strings.Repeat("#", MaxRequestBody) + "\n" + httpTestManifest
	for _, announced := range []bool{true, false} {
		req := httptest.NewRequest(http.MethodPost, "/v1/apply", strings.NewReader(big))
		if !announced {
			req.ContentLength = -1 // chunked: the length is found by reading
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"reason":"RequestEntityTooLarge"`) ||
			!strings.Contains(body, "POST /v1/apply") || !strings.Contains(body, "the limit is 8 MiB (8388608 bytes)") {
			t.Fatalf("announced %v: %d %.300s", announced, rec.Code, body)
		}
		t.Logf("announced %v: %s", announced, strings.TrimSpace(body))
	}
	if len(f.objs) != 0 {
		t.Fatalf("applied %d objects", len(f.objs))
	}
	// Just within the limit: read, decoded, applied.
	within := strings.Repeat("#", MaxRequestBody-len(httpTestManifest)-1) + "\n" + httpTestManifest
	if code, body := httpDo(t, h, http.MethodPost, "/v1/apply", within); code != http.StatusOK {
		t.Fatalf("%d bytes: %d %.300s", len(within), code, body)
	}
}

// The manifest limits reach an HTTP client as 400 with the decoder's
// message.
func TestLimitHTTPManifest(t *testing.T) {
	f := newHTTPFake()
	h := NewHTTPHandler(f)
	for _, tc := range []struct{ name, in, want string }{
		{"billion laughs", limitTestLaughs("lol"), "aliases expand to more than 100000 values"},
		{"deep", strings.Repeat("[", 10000), "nested deeper than 64 levels"},
		{"too many documents", strings.Repeat("---\napiVersion: v1\nkind: Node\nmetadata: {name: n}\n", MaxManifestObjects+1), "manifest has more than 1000 objects"},
	} {
		code, body := httpDo(t, h, http.MethodPost, "/v1/apply", tc.in)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %.300s", tc.name, code, body)
		}
	}
	if len(f.objs) != 0 {
		t.Fatalf("applied %d objects", len(f.objs))
	}
}
