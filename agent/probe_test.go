package agent

import (
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/api"
)

func TestProbeResult(t *testing.T) {
	for _, tc := range []struct {
		name                string
		start               bool
		outcomes            string // s = success, f = failure
		success, failure    int32
		want                bool
		changesAtLastResult bool
	}{
		{name: "one success makes ready", outcomes: "s", success: 1, failure: 3, want: true, changesAtLastResult: true},
		{name: "needs three successes", outcomes: "ss", success: 3, failure: 3, want: false},
		{name: "three successes in a row", outcomes: "sss", success: 3, failure: 3, want: true, changesAtLastResult: true},
		{name: "a failure resets the successes", outcomes: "ssfs", success: 3, failure: 3, want: false},
		{name: "failures below the threshold keep ok", start: true, outcomes: "ff", success: 1, failure: 3, want: true},
		{name: "the third failure turns it", start: true, outcomes: "fff", success: 1, failure: 3, want: false, changesAtLastResult: true},
		{name: "a success resets the failures", start: true, outcomes: "ffsff", success: 1, failure: 3, want: true},
		{name: "zero thresholds act as one", outcomes: "s", want: true, changesAtLastResult: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := probeResult{ok: tc.start}
			var changed bool
			for _, o := range tc.outcomes {
				changed = r.observe(o == 's', tc.success, tc.failure)
			}
			if r.ok != tc.want || changed != tc.changesAtLastResult {
				t.Fatalf("ok %v changed %v; want %v %v", r.ok, changed, tc.want, tc.changesAtLastResult)
			}
		})
	}
}

func TestProbePort(t *testing.T) {
	c := &api.Container{Ports: []*api.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	for _, tc := range []struct {
		v    *structpb.Value
		want int
		err  bool
	}{
		{structpb.NewNumberValue(80), 80, false},
		{structpb.NewStringValue("http"), 8080, false},
		{structpb.NewStringValue("8081"), 8081, false},
		{structpb.NewStringValue("grpc"), 0, true},
		{nil, 0, true},
	} {
		got, err := probePort(tc.v, c)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("probePort(%v) = %d, %v; want %d (error %v)", tc.v, got, err, tc.want, tc.err)
		}
	}
}
