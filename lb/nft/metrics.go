package nft

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a Sync, the label of shoal_lb_syncs_total.
const (
	outcomeIncremental = "incremental" // the changes applied in one transaction
	outcomeFull        = "full"        // the whole table rebuilt in one transaction
	outcomeUnchanged   = "unchanged"   // nothing to change
	outcomeInvalid     = "invalid"     // the services refused, nothing changed
	outcomeFailed      = "failed"      // the kernel or the host refused
)

// metrics are what an operator graphs about a node's kernel dataplane.
type metrics struct {
	syncSeconds  prometheus.Histogram
	syncs        *prometheus.CounterVec
	servicePorts prometheus.Gauge
	endpoints    prometheus.Gauge
	conntrack    prometheus.Counter
}

// newMetrics registers the dataplane's metrics with reg (nil: not
// registered, still counted). A second dataplane on the same registry is
// an error, not a panic.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_lb_sync_seconds",
			Help:    "Time of one Sync of the nftables dataplane: rendering, diff, the kernel transaction and conntrack cleanup.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_lb_syncs_total",
			Help: "Syncs of the nftables dataplane by outcome (incremental, full, unchanged, invalid, failed).",
		}, []string{"outcome"}),
		servicePorts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_lb_service_ports",
			Help: "Service ports programmed in nftables (those without endpoints, which are rejected, included).",
		}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_lb_endpoints",
			Help: "Endpoints (service port and backend pairs) programmed in nftables.",
		}),
		conntrack: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_lb_conntrack_flushed_total",
			Help: "Stale UDP conntrack entries deleted so that their flows move to live endpoints.",
		}),
	}
	if reg != nil {
		cs := []prometheus.Collector{m.syncSeconds, m.syncs, m.servicePorts, m.endpoints, m.conntrack}
		for i, c := range cs {
			if err := reg.Register(c); err != nil {
				for _, done := range cs[:i] {
					reg.Unregister(done)
				}
				var are prometheus.AlreadyRegisteredError
				if errors.As(err, &are) {
					return nil, errors.New("nft: metrics already registered: one dataplane per registry")
				}
				return nil, fmt.Errorf("nft: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
