package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster"
	shoaldns "github.com/shoalproj/shoal/lb/dns"
)

// PodsConfig is how the agent runs pods.
type PodsConfig struct {
	// Enabled runs the pods bound to this node.
	Enabled bool
	// ContainerdSocket is containerd's socket; when nothing answers there,
	// the agent starts a containerd of its own under its data directory.
	ContainerdSocket string
	Registry         runtime.RegistryConfig
	// Hollow runs the pods on a runtime that runs nothing and a pod
	// network that only hands out addresses (agent/hollow.go): many
	// agents on one machine for scale tests.
	Hollow bool
	// ClusterDomain, when set, gives every pod a resolv.conf that asks the
	// node's DNS server (services.go) first, with the search path of the
	// pod's namespace; "" leaves the image's resolv.conf.
	ClusterDomain string
	// Network is how pods reach other nodes' pods: auto (direct routes to
	// nodes on a shared link, a VXLAN overlay to the others), host-gw or
	// vxlan.
	Network string
}

// runPods starts the pod machinery once this node has something to run
// (a pod bound to it, or pods left from before a restart), so that a node
// that only takes part in the control plane starts no containerd and
// changes nothing in the host's network.
func runPods(ctx context.Context, c *cluster.Cluster, cfg PodsConfig, svc *podsService, endpointsHave func(ip string) bool, dataDir string, log *slog.Logger) error {
	if cfg.Hollow {
		return runHollowPods(ctx, c, svc, dataDir, log)
	}
	client, err := c.SelfClient()
	if err != nil {
		return err
	}
	node := c.NodeName()
	podState := filepath.Join(dataDir, "podnet")
wait:
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
		case <-svc.wake:
			break wait // an image load, logs or exec
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

	podCIDR := waitPodCIDR(ctx, client, node)
	if podCIDR == "" {
		return nil // ctx ended
	}
	clusterCIDR := c.PodCIDR()
	// The node's address, as its Node object publishes it (InternalIP):
	// the overlay's tunnel endpoint, which peers derive its MAC from.
	host, _, _ := net.SplitHostPort(c.APIAddress())
	network, err := podnet.New(ctx, podnet.Config{PodCIDR: podCIDR, ClusterCIDR: clusterCIDR, StateDir: dataDir, Mode: cfg.Network, NodeIP: host})
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	defer network.Close()
	// Pods reach the pods of other nodes through routes to their subnets;
	// the sync ends before the network closes.
	rctx, stopRoutes := context.WithCancel(ctx)
	routesDone := make(chan struct{})
	go func() {
		defer close(routesDone)
		syncNodeRoutes(rctx, client, node, network, log.With("component", "podnet"))
	}()
	defer func() { stopRoutes(); <-routesDone }()
	m := newPodManager(node, host, dataDir, rt, network, client, log.With("component", "pods"))
	m.endpointsHave = endpointsHave
	if cfg.ClusterDomain != "" {
		nameserver, err := DNSAddress(podCIDR)
		if err != nil {
			return err
		}
		m.resolvConf = func(namespace string) []byte {
			return shoaldns.ResolvConf(nameserver, namespace, cfg.ClusterDomain)
		}
	}
	svc.set(m)
	defer svc.set(nil)
	log.Info("running pods", "containerd", addr, "podCIDR", podCIDR)
	return m.run(ctx)
}

// waitPodCIDR returns the pod subnet the leader leased node, waiting for
// the lease; "" once ctx ends.
func waitPodCIDR(ctx context.Context, client api.ShoalClient, node string) string {
	for {
		obj, err := client.Get(ctx, &api.GetRequest{Kind: "Node", Name: node})
		if cidr := obj.GetNode().GetSpec().GetPodCidr(); err == nil && cidr != "" {
			return cidr
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// podsService is the agent's side of Logs, Exec and LoadImage calls. The
// pod machinery starts with the first pod; a call that needs it before then
// starts it.
type podsService struct {
	wake  chan struct{}
	mu    sync.Mutex
	m     *podManager
	ready chan struct{} // closed while m is set
}

func newPodsService() *podsService {
	return &podsService{wake: make(chan struct{}, 1), ready: make(chan struct{})}
}

func (p *podsService) set(m *podManager) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m = m
	if m != nil {
		close(p.ready)
	} else {
		p.ready = make(chan struct{})
	}
}

// manager returns the running pod manager, starting it if need be.
func (p *podsService) manager(ctx context.Context) (*podManager, error) {
	select {
	case p.wake <- struct{}{}:
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p.mu.Lock()
	ready := p.ready
	p.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("the node's container runtime did not start: %w", ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		return nil, errors.New("the node's container runtime stopped")
	}
	return p.m, nil
}

func (p *podsService) ImportImages(ctx context.Context, r io.Reader) ([]string, error) {
	m, err := p.manager(ctx)
	if err != nil {
		return nil, err
	}
	return m.rt.ImportImages(ctx, r)
}

func (p *podsService) Logs(ctx context.Context, pod *api.Pod, container string, previous, follow bool, tailLines int, w io.Writer) error {
	m, err := p.manager(ctx)
	if err != nil {
		return err
	}
	return m.Logs(ctx, pod, container, previous, follow, tailLines, w)
}

func (p *podsService) Exec(ctx context.Context, pod *api.Pod, container string, cmd []string, tty bool, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	m, err := p.manager(ctx)
	if err != nil {
		return 0, err
	}
	return m.Exec(ctx, pod, container, cmd, tty, stdin, stdout, stderr)
}
