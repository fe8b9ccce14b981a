package cluster

import "github.com/prometheus/client_golang/prometheus"

// metrics are what an operator graphs about the control plane.
type metrics struct {
	applyLatency      prometheus.Histogram
	batchSize         prometheus.Histogram
	membershipChanges *prometheus.CounterVec
	forwarded         *prometheus.CounterVec
	apiRequests       *prometheus.CounterVec
	apiLatency        *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry, c *Cluster) *metrics {
	m := &metrics{
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_raft_apply_seconds",
			Help:    "Time from proposing a raft entry to its being applied, on the leader.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_raft_entry_writes",
			Help:    "Writes carried by one raft entry.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		membershipChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_raft_membership_changes_total",
			Help: "Raft configuration changes made by the leader, by kind.",
		}, []string{"op"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_api_forwarded_total",
			Help: "API calls this node forwarded to the leader, by method.",
		}, []string{"method"}),
	}
	m.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_api_requests_total",
		Help: "gRPC API calls this node answered, by method and status code.",
	}, []string{"method", "code"})
	m.apiLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shoal_api_request_seconds",
		Help:    "Time to answer a unary gRPC API call, by method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"method"})
	reg.MustRegister(m.applyLatency, m.batchSize, m.membershipChanges, m.forwarded, m.apiRequests, m.apiLatency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "shoal_cluster_members",
			Help:        "Nodes gossip knows, by state.",
			ConstLabels: prometheus.Labels{"state": "alive"},
		}, func() float64 { return float64(c.countMembers(true)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "shoal_cluster_members",
			Help:        "Nodes gossip knows, by state.",
			ConstLabels: prometheus.Labels{"state": "dead"},
		}, func() float64 { return float64(c.countMembers(false)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_node_fenced",
			Help: "1 when the cluster removed this node and it stopped serving (see its log for why).",
		}, func() float64 {
			if c.Fenced() != "" {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_raft_leader",
			Help: "1 when this node is the raft leader.",
		}, func() float64 {
			if c.raft != nil && c.isLeader() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_store_index",
			Help: "Raft index of the last entry applied to this node's store.",
		}, func() float64 { return float64(c.state.Index()) }),
	)
	return m
}

func (c *Cluster) countMembers(alive bool) int {
	if c.members == nil {
		return 0
	}
	n := 0
	for _, m := range c.members.Members() {
		if m.Alive == alive {
			n++
		}
	}
	return n
}
