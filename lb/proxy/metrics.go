package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoalproj/shoal/lb"
)

// Outcomes of a new TCP connection or UDP flow, for the connections metric.
const (
	outcomeProxied     = "proxied"      // an endpoint was dialled and the traffic forwarded
	outcomeNoEndpoints = "no_endpoints" // the port had no ready endpoint: reset (TCP) or dropped (UDP, per packet)
	outcomeDialFailed  = "dial_failed"  // every endpoint was tried and none could be dialled
)

// metrics are what an operator graphs about the proxy.
type metrics struct {
	connections *prometheus.CounterVec
	active      *prometheus.GaugeVec
	bytes       *prometheus.CounterVec
	dialErrors  *prometheus.CounterVec
	evicted     prometheus.Counter

	// The series of each protocol, looked up once rather than per packet.
	tcp, udp protoMetrics
}

// protoMetrics are the series of one protocol.
type protoMetrics struct {
	proxied, noEndpoints, dialFailed prometheus.Counter
	dialErrors                       prometheus.Counter
	active                           prometheus.Gauge
	toEndpoint, toClient             prometheus.Counter
}

// newMetrics registers the proxy's metrics with reg (nil: not registered,
// still counted).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_proxy_connections_total",
			Help: "New connections (TCP) and flows (UDP) of the userspace proxy by protocol and outcome (proxied, no_endpoints, dial_failed).",
		}, []string{"protocol", "outcome"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shoal_proxy_active_connections",
			Help: "Connections (TCP) and sessions (UDP) the userspace proxy is forwarding.",
		}, []string{"protocol"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_proxy_bytes_total",
			Help: "Bytes forwarded by the userspace proxy, by protocol and direction (to_endpoint, to_client); a TCP connection's bytes are counted when each direction ends.",
		}, []string{"protocol", "direction"}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_proxy_dial_errors_total",
			Help: "Failed dials of an endpoint by the userspace proxy (each is followed by a try of the next endpoint).",
		}, []string{"protocol"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_proxy_udp_sessions_evicted_total",
			Help: "UDP sessions dropped before their idle timeout because their port had the most sessions allowed.",
		}),
	}
	if reg != nil {
		for i, c := range m.collectors() {
			if err := reg.Register(c); err != nil {
				for _, done := range m.collectors()[:i] {
					reg.Unregister(done)
				}
				return nil, fmt.Errorf("proxy: register metrics: %w", err)
			}
		}
	}
	m.tcp = m.protocol(lb.TCP)
	m.udp = m.protocol(lb.UDP)
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.connections, m.active, m.bytes, m.dialErrors, m.evicted}
}

func (m *metrics) protocol(proto lb.Protocol) protoMetrics {
	p := string(proto)
	return protoMetrics{
		proxied:     m.connections.WithLabelValues(p, outcomeProxied),
		noEndpoints: m.connections.WithLabelValues(p, outcomeNoEndpoints),
		dialFailed:  m.connections.WithLabelValues(p, outcomeDialFailed),
		dialErrors:  m.dialErrors.WithLabelValues(p),
		active:      m.active.WithLabelValues(p),
		toEndpoint:  m.bytes.WithLabelValues(p, "to_endpoint"),
		toClient:    m.bytes.WithLabelValues(p, "to_client"),
	}
}
