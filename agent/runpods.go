package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster"
)

// PodsConfig is how the agent runs pods.
type PodsConfig struct {
	// Enabled runs the pods bound to this node.
	Enabled bool
	// ContainerdSocket is containerd's socket; when nothing answers there,
	// the agent starts a containerd of its own under its data directory.
	ContainerdSocket string
	Registry         runtime.RegistryConfig
}

// runPods starts the pod machinery once this node has something to run
// (a pod bound to it, or pods left from before a restart), so that a node
// that only takes part in the control plane starts no containerd and
// changes nothing in the host's network.
func runPods(ctx context.Context, c *cluster.Cluster, cfg PodsConfig, dataDir string, log *slog.Logger) error {
	client, err := c.SelfClient()
	if err != nil {
		return err
	}
	node := c.NodeName()
	podState := filepath.Join(dataDir, "podnet")
	for {
		list, err := client.List(ctx, &api.ListRequest{Kind: "Pod", NodeName: node})
		if err == nil && len(list.Items) > 0 {
			break
		}
		if entries, _ := os.ReadDir(filepath.Join(podState, "pods")); len(entries) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	addr, stop, err := runtime.EnsureContainerd(ctx, cfg.ContainerdSocket, dataDir, log.With("component", "containerd"))
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	defer stop()
	rt, err := runtime.New(ctx, runtime.Options{Address: addr, Registry: cfg.Registry, Logger: log.With("component", "runtime")})
	if err != nil {
		return fmt.Errorf("container runtime: %w", err)
	}
	defer rt.Close()

	// The pod subnet the leader leased this node.
	var podCIDR, clusterCIDR string
	for podCIDR == "" {
		obj, err := client.Get(ctx, &api.GetRequest{Kind: "Node", Name: node})
		if err == nil {
			podCIDR = obj.GetNode().GetSpec().GetPodCidr()
		}
		if podCIDR == "" {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	clusterCIDR = c.PodCIDR()
	network, err := podnet.New(ctx, podnet.Config{PodCIDR: podCIDR, ClusterCIDR: clusterCIDR, StateDir: dataDir})
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	defer network.Close()
	host, _, _ := net.SplitHostPort(c.APIAddress())
	m := newPodManager(node, host, dataDir, rt, network, client, log.With("component", "pods"))
	c.SetPodIO(m)
	defer c.SetPodIO(nil)
	log.Info("running pods", "containerd", addr, "podCIDR", podCIDR)
	return m.run(ctx)
}
