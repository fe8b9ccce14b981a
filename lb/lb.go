// Package lb is service load balancing on one node: the services and their
// ready endpoints as the dataplanes see them (this file), the conversion
// from the API's Service and Endpoints (build.go), the nftables dataplane
// (lb/nft), the userspace TCP/UDP proxy (lb/proxy) and the node-local DNS
// for service names (lb/dns).
package lb

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Protocol is a service port's transport protocol.
type Protocol string

const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// Balance is how a dataplane picks among a port's ready endpoints for a
// new connection (or a new UDP flow).
type Balance string

const (
	// RoundRobin takes the endpoints in turn (nftables: numgen inc).
	RoundRobin Balance = "round-robin"
	// Random takes one at random (nftables: numgen random).
	Random Balance = "random"
	// LeastConn takes the endpoint with the fewest open connections
	// (userspace only: the kernel path cannot count connections).
	LeastConn Balance = "least-conn"
)

// Service is one Service as a node's load balancer sees it: its virtual
// IP, its ports and, per port, the ready endpoints.
type Service struct {
	Namespace string
	Name      string
	// ClusterIP is the virtual IP; invalid for a service without one.
	ClusterIP netip.Addr
	// Affinity, when above zero, keeps a client (by source IP) on the
	// endpoint it was first sent to until it has been idle that long
	// (sessionAffinity: ClientIP).
	Affinity time.Duration
	Ports    []Port
}

// Port is one port of a service.
type Port struct {
	// Name is the service port's name ("" when the service has one port).
	Name     string
	Protocol Protocol
	// Port is the port on the virtual IP.
	Port uint16
	// NodePort, when not 0, is published on every node's addresses.
	NodePort uint16
	// Endpoints are the ready endpoints (address and target port), sorted
	// and without duplicates. Empty: connections are refused.
	Endpoints []netip.AddrPort
}

// PortID names a service port uniquely on the node: namespace/name:port/protocol.
func (s *Service) PortID(p Port) string {
	return fmt.Sprintf("%s/%s:%d/%s", s.Namespace, s.Name, p.Port, p.Protocol)
}

// Dataplane makes a node's forwarding what Sync is last given. Sync takes
// the whole desired state each time and changes only what differs from
// the previous call; it is safe to call again after an error. Close
// removes everything the dataplane made.
type Dataplane interface {
	Sync(ctx context.Context, services []Service) error
	Close() error
}
