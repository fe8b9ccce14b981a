package scheduler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoalproj/shoal/api"
)

// Metrics are what an operator graphs about the leader's controllers.
// Registered once per process; the controllers of each leadership term
// update the same series.
type Metrics struct {
	rounds        prometheus.Counter
	roundSeconds  prometheus.Histogram
	writes        *prometheus.CounterVec
	pending       prometheus.Gauge
	unschedulable prometheus.Gauge
	nodesLost     prometheus.Counter
}

// NewMetrics registers the controllers' metrics with reg (nil: not
// registered, still counted).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_controller_rounds_total",
			Help: "Rounds of the leader's controllers (each reads the state and writes what it decided).",
		}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_controller_round_seconds",
			Help:    "Time of one controller round, its writes included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_controller_writes_total",
			Help: "Writes of the controllers by what they were (bind, create, delete, status, other) and outcome (applied, refused).",
		}, []string{"op", "outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_scheduler_pending_pods",
			Help: "Pods not bound to a node at the last round.",
		}),
		unschedulable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_scheduler_unschedulable_pods",
			Help: "Pending pods no node could take at the last round.",
		}),
		nodesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_node_lost_pod_deletions_total",
			Help: "Pods deleted because their node stayed NotReady past the grace, for their controllers to replace.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.rounds, m.roundSeconds, m.writes, m.pending, m.unschedulable, m.nodesLost)
	}
	return m
}

// opKind names what a write is, for the writes metric.
func opKind(op Op) string {
	switch {
	case op.Delete != nil:
		return "delete"
	case op.StatusOnly:
		return "status"
	case op.Create:
		return "create"
	}
	if _, ok := op.Put.(*api.Pod); ok {
		return "bind" // the only spec write of a pod the controllers make
	}
	return "other"
}
