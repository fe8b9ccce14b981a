package podnet

import (
	"strings"
	"testing"
)

func TestPlanRoutes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		want     map[string]string
		have     map[string]string
		set, del string
	}{
		{name: "nothing yet", want: map[string]string{"10.244.1.0/24": "10.0.0.2", "10.244.2.0/24": "10.0.0.3"},
			set: "10.244.1.0/24,10.244.2.0/24"},
		{name: "in place", want: map[string]string{"10.244.1.0/24": "10.0.0.2"}, have: map[string]string{"10.244.1.0/24": "10.0.0.2"}},
		{name: "a node moved", want: map[string]string{"10.244.1.0/24": "10.0.0.9"}, have: map[string]string{"10.244.1.0/24": "10.0.0.2"},
			set: "10.244.1.0/24"},
		{name: "a node gone", want: map[string]string{}, have: map[string]string{"10.244.1.0/24": "10.0.0.2"},
			del: "10.244.1.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, del := PlanRoutes(tc.want, tc.have)
			if strings.Join(set, ",") != tc.set || strings.Join(del, ",") != tc.del {
				t.Fatalf("set %v del %v, want set %q del %q", set, del, tc.set, tc.del)
			}
		})
	}
}
