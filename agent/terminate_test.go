package agent

import (
	"testing"
	"time"
)

func TestDrainWait(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ms := time.Millisecond
	for _, tc := range []struct {
		name        string
		now, gone   time.Duration // from seen; gone < 0: not yet
		inEndpoints bool
		haveLB      bool
		grace       time.Duration
		want        time.Duration
	}{
		{"still an endpoint: look again soon", 0, -1, true, true, 30 * time.Second, 100 * ms},
		{"still an endpoint near the end of the grace", 29950 * ms, -1, true, true, 30 * time.Second, 50 * ms},
		{"still an endpoint when the grace is spent: stop anyway", 30 * time.Second, -1, true, true, 30 * time.Second, 0},
		{"just left the endpoints: the margin", 2 * time.Second, 2 * time.Second, false, true, 30 * time.Second, endpointsMargin},
		{"left them a while ago", 3 * time.Second, 2 * time.Second, false, true, 30 * time.Second, 0},
		{"margin cut to the grace", 800 * ms, 700 * ms, false, true, time.Second, 200 * ms},
		{"no load balancer here: a fixed delay", 300 * ms, -1, false, false, 30 * time.Second, drainDelayWithoutLB - 300*ms},
		{"no load balancer, short grace", 300 * ms, -1, false, false, 500 * ms, 200 * ms},
		{"grace 0", 0, -1, true, true, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gone time.Time
			if tc.gone >= 0 {
				gone = at(tc.gone)
			}
			if got := drainWait(at(tc.now), t0, gone, tc.inEndpoints, tc.haveLB, tc.grace); got != tc.want {
				t.Fatalf("drainWait = %v, want %v", got, tc.want)
			}
		})
	}
}
