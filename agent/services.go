package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster"
	"github.com/shoalproj/shoal/lb"
	shoaldns "github.com/shoalproj/shoal/lb/dns"
	"github.com/shoalproj/shoal/lb/nft"
	"github.com/shoalproj/shoal/lb/proxy"
)

// Load balancer modes (--lb-mode).
const (
	LBModeNFTables  = "nftables"
	LBModeUserspace = "userspace"
	LBModeNone      = "none"
)

// LBLink is the link (a dummy, or a bridge without ports on kernels without
// the dummy driver) the dataplanes route the service CIDR through
// (nftables, lb/nft's LinkName) or put the virtual IPs on (userspace).
const LBLink = "shoal-lb0"

// servicesResync is how often the Services and Endpoints are listed
// again from scratch: the dataplane is synced then too.
const servicesResync = 5 * time.Minute

// DefaultClusterDomain is the DNS domain of service names.
const DefaultClusterDomain = "cluster.local"

// ServicesConfig is how the node balances services and answers their names.
type ServicesConfig struct {
	// Mode is the dataplane: nftables (the default), userspace, or none
	// (no virtual IPs, node ports or DNS on this node).
	Mode string
	// Balance is how a new connection picks an endpoint.
	Balance lb.Balance
	// ClusterDomain is the DNS domain of service names (cluster.local).
	ClusterDomain string
}

// check refuses a combination the dataplane cannot do.
func (c *ServicesConfig) check() error {
	if c.Mode == "" {
		c.Mode = LBModeNFTables
	}
	if c.Balance == "" {
		c.Balance = lb.RoundRobin
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	switch c.Mode {
	case LBModeNFTables:
		if c.Balance != lb.RoundRobin && c.Balance != lb.Random {
			return fmt.Errorf("--lb-balance %s: the nftables dataplane balances round-robin or random; least-conn needs --lb-mode userspace", c.Balance)
		}
	case LBModeUserspace:
		if c.Balance != lb.RoundRobin && c.Balance != lb.Random && c.Balance != lb.LeastConn {
			return fmt.Errorf("--lb-balance %q: want round-robin, random or least-conn", c.Balance)
		}
	case LBModeNone:
	default:
		return fmt.Errorf("--lb-mode %q: want nftables, userspace or none", c.Mode)
	}
	return nil
}

// DNSAddress is where a node's DNS server answers, for the node itself
// and its pods: the first address of the node's pod subnet, which the
// pods' bridge has as their gateway.
func DNSAddress(podCIDR string) (netip.Addr, error) {
	p, err := netip.ParsePrefix(podCIDR)
	if err != nil || !p.Addr().Is4() {
		return netip.Addr{}, fmt.Errorf("pod subnet %q: not an IPv4 CIDR", podCIDR)
	}
	return p.Masked().Addr().Next(), nil
}

// serviceSet is the newest Services and Endpoints the mirrors have seen,
// and a signal that they changed.
type serviceSet struct {
	mu        sync.Mutex
	services  map[string]api.Resource
	endpoints map[string]api.Resource
	changed   chan struct{}
}

func (s *serviceSet) set(kind string, objs map[string]api.Resource) {
	c := make(map[string]api.Resource, len(objs))
	for k, v := range objs {
		c[k] = v
	}
	s.mu.Lock()
	if kind == "Service" {
		s.services = c
	} else {
		s.endpoints = c
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func newServiceSet() *serviceSet { return &serviceSet{changed: make(chan struct{}, 1)} }

// hasAddress says whether ip is a ready endpoint of some Service, in the
// newest Endpoints seen.
func (s *serviceSet) hasAddress(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.endpoints {
		e, ok := r.(*api.Endpoints)
		if !ok {
			continue
		}
		for _, sub := range e.GetSubsets() {
			for _, a := range sub.GetAddresses() {
				if a.GetIp() == ip {
					return true
				}
			}
		}
	}
	return false
}

// build is what the dataplanes program, once both kinds were listed.
func (s *serviceSet) build() ([]lb.Service, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.services == nil || s.endpoints == nil {
		return nil, false
	}
	svcs := make([]*api.Service, 0, len(s.services))
	for _, r := range s.services {
		if svc, ok := r.(*api.Service); ok {
			svcs = append(svcs, svc)
		}
	}
	eps := make(map[string]*api.Endpoints, len(s.endpoints))
	for k, r := range s.endpoints {
		if e, ok := r.(*api.Endpoints); ok {
			eps[k] = e
		}
	}
	return lb.Build(svcs, eps), true
}

// runServices keeps this node's service dataplane and DNS in line with
// the cluster's Services and Endpoints until ctx ends. Nothing touches
// the host's network before the cluster has its first Service, so a node
// of a cluster without services changes nothing. Rules stay in place when
// the agent stops, so that service traffic flows while it restarts; the
// next start takes them over.
func runServices(ctx context.Context, c *cluster.Cluster, cfg ServicesConfig, set *serviceSet, reg prometheus.Registerer, log *slog.Logger) error {
	client, err := c.SelfClient()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	for _, kind := range []string{"Service", "Endpoints"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mirrorKind(mctx, client, kind, servicesResync, log, func(objs map[string]api.Resource) { set.set(kind, objs) })
		}()
	}

	var (
		dp      lb.Dataplane
		dns     *shoaldns.Server
		lastErr string
		retry   <-chan time.Time
		backoff = 100 * time.Millisecond
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-set.changed:
		case <-retry:
		}
		retry = nil
		services, ok := set.build()
		if !ok || (dp == nil && len(services) == 0) {
			continue
		}
		err := func() error {
			if dns == nil {
				s, err := startDNS(ctx, c, cfg, reg, log.With("component", "dns"))
				if err != nil {
					return err
				}
				dns = s
			}
			dns.Set(services)
			if dp == nil {
				d, err := newDataplane(c, cfg, reg, log.With("component", "lb", "mode", cfg.Mode))
				if err != nil {
					return err
				}
				dp = d
				log.Info("service load balancer started", "mode", cfg.Mode, "balance", cfg.Balance)
			}
			return dp.Sync(ctx, services)
		}()
		if err == nil {
			if lastErr != "" {
				log.Info("services in sync again")
			}
			lastErr, backoff = "", 100*time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if err.Error() != lastErr {
			log.Error("services not in sync; retrying", "err", err)
			lastErr = err.Error()
		}
		retry = time.After(backoff)
		backoff = min(2*backoff, 10*time.Second)
	}
}

func newDataplane(c *cluster.Cluster, cfg ServicesConfig, reg prometheus.Registerer, log *slog.Logger) (lb.Dataplane, error) {
	switch cfg.Mode {
	case LBModeNFTables:
		podNet, err := netip.ParsePrefix(c.PodCIDR())
		if err != nil {
			return nil, fmt.Errorf("pod CIDR: %w", err)
		}
		svcNet, err := netip.ParsePrefix(c.ServiceCIDR())
		if err != nil {
			return nil, fmt.Errorf("service CIDR: %w", err)
		}
		// The node's own connections to VIPs leave from its advertised
		// address, which every node's pods can answer.
		host, _, _ := net.SplitHostPort(c.APIAddress())
		nodeIP, _ := netip.ParseAddr(host)
		return nft.New(nft.Config{ClusterCIDR: podNet, ServiceCIDR: svcNet, NodeIP: nodeIP, Balance: cfg.Balance, Logger: log, Registerer: reg})
	case LBModeUserspace:
		return proxy.New(proxy.Config{Balance: cfg.Balance, Link: LBLink, Logger: log, Registerer: reg})
	}
	return nil, fmt.Errorf("no dataplane for --lb-mode %q", cfg.Mode)
}

// startDNS serves service names on this node's DNS address (the pods'
// gateway), waiting for the node's pod subnet to know it.
func startDNS(ctx context.Context, c *cluster.Cluster, cfg ServicesConfig, reg prometheus.Registerer, log *slog.Logger) (*shoaldns.Server, error) {
	client, err := c.SelfClient()
	if err != nil {
		return nil, err
	}
	podCIDR := waitPodCIDR(ctx, client, c.NodeName())
	if podCIDR == "" {
		return nil, ctx.Err()
	}
	addr, err := DNSAddress(podCIDR)
	if err != nil {
		return nil, err
	}
	s, err := shoaldns.New(shoaldns.Config{Domain: cfg.ClusterDomain, Logger: log, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	hostPort := net.JoinHostPort(addr.String(), "53")
	go func() {
		// Serve returns at once when it cannot bind (port 53 taken): the
		// service dataplane still runs, the names do not.
		if err := s.Serve(ctx, hostPort); err != nil && ctx.Err() == nil {
			log.Error("service names not served", "address", hostPort, "err", err)
		}
	}()
	return s, nil
}
