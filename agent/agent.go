// Package agent is the daemon that wires one node together: its place in
// the cluster, the API it serves, and (as they are built) its pods and its
// load balancer.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/cluster"
)

// Config is the agent's configuration: the cluster part, and where --init
// writes the administrator's client configuration.
type Config struct {
	Cluster cluster.Config
	// ClientConfigPath is where --init writes the admin credentials.
	ClientConfigPath string
	// OnInit is called once a new cluster exists, with the join line to
	// show the operator.
	OnInit func(joinLine string)
	Pods   PodsConfig
	// Services is the node's service load balancer and DNS.
	Services ServicesConfig
	// Reserved is what the node keeps for itself (the agent, containerd,
	// the system): cpu and memory quantities taken off its capacity to
	// give the allocatable that the scheduler places pods against.
	Reserved map[string]string
	Logger   *slog.Logger
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Cluster.Logger = log
	if cfg.Cluster.Registry == nil {
		// One registry for the cluster's metrics and the agent's (served at
		// /metrics by the cluster's API).
		cfg.Cluster.Registry = prometheus.NewRegistry()
	}
	if cfg.Pods.Hollow {
		cfg.Services.Mode = LBModeNone // a hollow node has no dataplane
	}
	if err := cfg.Services.check(); err != nil {
		return err
	}
	if cfg.Services.Mode != LBModeNone {
		cfg.Pods.ClusterDomain = cfg.Services.ClusterDomain
	}
	c, err := cluster.Start(ctx, cfg.Cluster)
	if err != nil {
		return err
	}
	defer c.Close()
	if res := c.InitResult(); res != nil {
		cc := &client.Config{Server: res.APIAddress, CA: string(res.CACert), Cert: string(res.AdminCert), Key: string(res.AdminKey)}
		if err := cc.Save(cfg.ClientConfigPath); err != nil {
			return fmt.Errorf("write client configuration: %w", err)
		}
		log.Info("cluster created; client configuration written", "path", cfg.ClientConfigPath)
		if cfg.OnInit != nil {
			cfg.OnInit(fmt.Sprintf("shoal agent --join %s --token %s", res.APIAddress, res.Token))
		}
	}
	go func() {
		if err := reportNodeInfo(ctx, c.LocalAPI(), c.NodeName(), cfg.Cluster.Version, cfg.Reserved); err != nil && ctx.Err() == nil {
			log.Warn("node info not reported", "err", err)
		}
	}()
	var endpointsHave func(ip string) bool
	if cfg.Services.Mode != LBModeNone {
		set := newServiceSet()
		endpointsHave = set.hasAddress
		go func() {
			if err := runServices(ctx, c, cfg.Services, set, cfg.Cluster.Registry, log.With("component", "services")); err != nil && ctx.Err() == nil {
				log.Error("services stopped", "err", err)
			}
		}()
	}
	if cfg.Pods.Enabled {
		svc := newPodsService()
		c.SetPodIO(svc)
		go func() {
			for ctx.Err() == nil {
				err := runPods(ctx, c, cfg.Pods, svc, endpointsHave, cfg.Cluster.DataDir, log)
				if ctx.Err() != nil {
					return
				}
				log.Error("pods stopped; starting them again", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
			}
		}()
	}
	return c.ServeAPI(ctx)
}
