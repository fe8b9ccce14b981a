package api

import (
	"encoding/json"
	"errors"
	"math/rand"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
)

var manifestFuzzSeeds = []string{
	manifestTestWeb, manifestTestKubectl, manifestTestPod, manifestTestNode, manifestTestEndpoints, validTestPodYAML,
	`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}]}`,
	`[{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":80,"targetPort":"http"}]}}]`,
	"a: &a [x, x]\nb: &b [*a, *a]\nc: {<<: *b}\n",
	"apiVersion: v1\nkind: Pod\nmetadata: &m {name: a}\nspec: {containers: [{<<: *m, image: x}]}\n",
	"---\n---\n",
	"{apiVersion: v1, kind: Node, metadata: {name: n}, status: {capacity: {cpu: 1e3}}}",
	"apiVersion: apps/v1\nkind: Deployment\nspec:\n  strategy: {rollingUpdate: {maxSurge: 1.5}}\n",
	// Limits: aliases of a long string, deep nesting, many documents.
	"a: &s " + strings.Repeat("x", 4096) + "\nb: [*s, *s, *s, *s, *s, *s, *s, *s]\nc: {*s : 1}\n",
	"a: " + strings.Repeat("[", 70) + strings.Repeat("]", 70),
	strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
	strings.Repeat("- ", 70) + "x\n",
	strings.Repeat("---\napiVersion: v1\nkind: Node\nmetadata: {name: n}\n", 3),
}

// FuzzDecodeManifests feeds arbitrary bytes to DecodeManifests: it must
// never panic, and whatever it accepts must survive Default, Validate and
// a round trip through MarshalJSON and MarshalYAML unchanged.
func FuzzDecodeManifests(f *testing.F) {
	for _, s := range manifestFuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(manifestFuzzCheck)
}

func manifestFuzzCheck(t *testing.T, data []byte) {
	objs, err := DecodeManifests(data)
	if err != nil {
		manifestFuzzCheckError(t, err)
		return
	}
	for _, o := range objs {
		Default(o)
		again := proto.Clone(o).(Resource)
		Default(again)
		if !proto.Equal(again, o) {
			t.Fatalf("Default is not idempotent:\n%v\n%v", o, again)
		}
		if err := Validate(o); err != nil {
			var fe FieldErrors
			if !errors.As(err, &fe) || len(fe) == 0 || err.Error() == "" {
				t.Fatalf("Validate: %T %q is not a list of field errors", err, err)
			}
		}
		j, err := MarshalJSON(o)
		if err != nil {
			t.Fatalf("MarshalJSON of a decoded object: %v", err)
		}
		back, err := DecodeManifests(j)
		if err != nil {
			t.Fatalf("decoding the JSON of a decoded object: %v\n%s", err, j)
		}
		if len(back) != 1 || !proto.Equal(back[0], o) {
			t.Fatalf("JSON round trip differs:\n%s", j)
		}
		y, err := MarshalYAML(o)
		if err != nil {
			t.Fatalf("MarshalYAML of a decoded object: %v", err)
		}
		back, err = DecodeManifests(y)
		if err != nil {
			t.Fatalf("decoding the YAML of a decoded object: %v\n%s", err, y)
		}
		if len(back) != 1 || !proto.Equal(back[0], o) {
			t.Fatalf("YAML round trip differs:\n%s", y)
		}
	}
}

// manifestFuzzCheckError checks that a decoding error is clear: one or more
// *ManifestError (joined), each with something to say.
func manifestFuzzCheckError(t *testing.T, err error) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		me, ok := e.(*ManifestError)
		if !ok {
			// The last of joined errors may say that decoding stopped.
			if strings.HasPrefix(e.Error(), "stopped after ") {
				continue
			}
			t.Fatalf("decoding error %T %q is not a *ManifestError", e, e)
		}
		if me.Err == nil && len(me.Fields) == 0 {
			t.Fatalf("decoding error without a cause: %#v", me)
		}
		if strings.Contains(me.Error(), "panic") || strings.Contains(me.Error(), "cannot parse") {
			t.Fatalf("decoding error from a recovered panic: %v", me)
		}
	}
}

// TestDecodeMutatedManifests is a structure-aware complement of the fuzz
// target: the test manifests, with values swapped for values of other
// types and fields removed or copied, as YAML and as JSON.
func TestDecodeMutatedManifests(t *testing.T) {
	rnd := rand.New(rand.NewSource(manifestFuzzSeed))
	var bases []any
	for _, m := range []string{manifestTestWeb, manifestTestPod, manifestTestNode, manifestTestEndpoints, manifestTestKubectl} {
		dec := yaml.NewDecoder(strings.NewReader(m))
		for {
			var v any
			if dec.Decode(&v) != nil {
				break
			}
			if v != nil {
				bases = append(bases, v)
			}
		}
	}
	decoded := 0
	for i := 0; i < 3000; i++ {
		doc := manifestFuzzCopy(bases[rnd.Intn(len(bases))])
		for n := rnd.Intn(4) + 1; n > 0; n-- {
			doc = manifestFuzzMutate(rnd, doc, doc)
		}
		var data []byte
		var err error
		if i%2 == 0 {
			data, err = yaml.Marshal(doc)
		} else {
			data, err = json.Marshal(doc)
		}
		if err != nil {
			continue
		}
		if objs, err := DecodeManifests(data); err == nil && len(objs) > 0 {
			decoded++
		}
		manifestFuzzCheck(t, data)
	}
	t.Logf("%d of 3000 mutated manifests decoded", decoded)
}

func manifestFuzzCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = manifestFuzzCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = manifestFuzzCopy(e)
		}
		return out
	}
	return v
}

// manifestFuzzSeed seeds TestDecodeMutatedManifests; change it to explore.
var manifestFuzzSeed int64 = 1

var manifestFuzzValues = []any{nil, "", "x", "yes", "1.0", "80", "http", "25%", "-1", "Always", "None", "ClientIP", "NodePort", "/abs", "10.0.0.1",
	0, 1, -1, 80, 65536, 1.5, 1e3, 2147483648, true, false, map[string]any{}, []any{}, []any{"a"}, map[string]any{"a": "b"}}

// manifestFuzzMutate changes one random place of v.
func manifestFuzzMutate(rnd *rand.Rand, v, root any) any {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 || rnd.Intn(5) == 0 {
			return manifestFuzzValue(rnd, root)
		}
		keys := sortedKeys(x)
		k := keys[rnd.Intn(len(keys))]
		switch rnd.Intn(6) {
		case 0:
			delete(x, k)
		case 1:
			x[k+"x"] = x[k]
		default:
			x[k] = manifestFuzzMutate(rnd, x[k], root)
		}
		return x
	case []any:
		if len(x) == 0 || rnd.Intn(5) == 0 {
			return append(x, manifestFuzzValue(rnd, root))
		}
		i := rnd.Intn(len(x))
		x[i] = manifestFuzzMutate(rnd, x[i], root)
		return x
	}
	return manifestFuzzValue(rnd, root)
}

func manifestFuzzValue(rnd *rand.Rand, root any) any {
	if rnd.Intn(4) == 0 {
		// A copy of some other part of the document.
		v := root
		for d := rnd.Intn(4); d > 0; d-- {
			switch x := v.(type) {
			case map[string]any:
				if len(x) > 0 {
					keys := sortedKeys(x)
					v = x[keys[rnd.Intn(len(keys))]]
				}
			case []any:
				if len(x) > 0 {
					v = x[rnd.Intn(len(x))]
				}
			}
		}
		return manifestFuzzCopy(v)
	}
	return manifestFuzzCopy(manifestFuzzValues[rnd.Intn(len(manifestFuzzValues))])
}
