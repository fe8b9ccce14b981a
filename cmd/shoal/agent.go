package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalproj/shoal/agent"
	"github.com/shoalproj/shoal/agent/podnet"
	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/cluster"
	"github.com/shoalproj/shoal/lb"
	"github.com/shoalproj/shoal/scheduler"
)

// newAgentCommand is `shoal agent`: the daemon every machine runs.
func newAgentCommand() *cobra.Command {
	var (
		cfg              cluster.Config
		pods             agent.PodsConfig
		services         agent.ServicesConfig
		logLevel         string
		registryConfig   string
		registryMirrors  []string
		insecureRegistry []string
		reserveCPU       string
		reserveMemory    string
		tokenFile        string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the shoal agent on this machine",
		Long: `Run the shoal agent. Every machine runs the same agent.

  shoal agent --init --advertise-addr 192.168.56.11      # create a cluster
  shoal agent --join 192.168.56.11:7443 --token SHOAL-1-...   # join it
  shoal agent                                             # restart from --data-dir
  shoal agent --force-new-cluster   # a survivor of a lost majority of voters becomes the only voter`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.Init && cfg.Join != "" {
				return fmt.Errorf("--init and --join exclude each other")
			}
			if st := cfg.Controllers.Strategy; st != scheduler.Spread && st != scheduler.Binpack {
				return fmt.Errorf("--scheduling-strategy %q: spread or binpack", st)
			}
			if cfg.ForceNewCluster && (cfg.Init || cfg.Join != "") {
				return fmt.Errorf("--force-new-cluster restarts a node from its data directory: it excludes --init and --join")
			}
			token, err := joinToken(cfg.Token, tokenFile, os.Getenv(tokenEnv), os.ReadFile)
			if err != nil {
				return err
			}
			cfg.Token = token
			if cfg.Join != "" && cfg.Token == "" {
				return fmt.Errorf("--join needs the join token: --token-file FILE, $%s or --token (print it with `shoal token` on a node of the cluster)", tokenEnv)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			reg, err := agent.LoadRegistryConfig(registryConfig, registryMirrors, insecureRegistry)
			if err != nil {
				return err
			}
			pods.Registry = reg
			if _, err := api.ParseCPU(reserveCPU); err != nil {
				return fmt.Errorf("--reserve-cpu %q: %w", reserveCPU, err)
			}
			if _, err := api.ParseBytes(reserveMemory); err != nil {
				return fmt.Errorf("--reserve-memory %q: %w", reserveMemory, err)
			}
			cfg.Version = version
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return agent.Run(ctx, agent.Config{
				Cluster:          cfg,
				ClientConfigPath: client.DefaultConfigPath(),
				Pods:             pods,
				Services:         services,
				Reserved:         map[string]string{"cpu": reserveCPU, "memory": reserveMemory},
				Logger:           log,
				OnInit: func(joinLine string) {
					fmt.Fprintf(cmd.OutOrStdout(), "Cluster created. To add a node, run on it:\n\n    %s\n\n", joinLine)
				},
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&cfg.Init, "init", false, "create a new cluster with this node as its first member")
	f.StringVar(&cfg.Join, "join", "", "join the cluster of the node whose API is at HOST:PORT")
	f.StringVar(&cfg.Token, "token", "", "join token (SHOAL-1-...), printed by --init and by `shoal token`; other users of the machine see it in the process list: prefer --token-file or $"+tokenEnv)
	f.StringVar(&tokenFile, "token-file", "", "file holding the join token (its first line)")
	f.BoolVar(&cfg.ForceNewCluster, "force-new-cluster", false, "disaster recovery, on a survivor of a lost majority of voters: restart this node as the only voter of its cluster, "+
		"keeping all the data it holds; others join it again with the token. Wipe the lost nodes' data before they come back. "+
		"One-shot: ignored once applied while <data-dir>/force-new-cluster.json exists")
	f.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "IP address other nodes reach this node at (default: the first private address)")
	f.StringVar(&cfg.BindAddr, "bind-addr", "", "IP address to listen on (default: --advertise-addr)")
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/shoal", "directory for this node's state")
	f.StringVar(&cfg.NodeName, "node-name", "", "this node's name (default: the host name)")
	f.IntVar(&cfg.APIPort, "api-port", cluster.DefaultAPIPort, "port of the API (gRPC and HTTP, TLS)")
	f.IntVar(&cfg.GossipPort, "gossip-port", cluster.DefaultGossipPort, "port of gossip (TCP and UDP)")
	f.IntVar(&cfg.RaftPort, "raft-port", cluster.DefaultRaftPort, "port of raft")
	f.IntVar(&cfg.MaxReplicas, "max-replicas", 9, "most nodes that hold the raft log (voters and non-voters)")
	f.DurationVar(&cfg.Stabilization, "stabilization", 10*time.Second, "how long a voter must be gone before another node replaces it")
	f.DurationVar(&cfg.NodeCertValidity, "node-cert-validity", cluster.DefaultNodeCertValidity, "while leading: the lifetime of the node certificates this node signs (nodes renew theirs after 2/3 of it)")
	f.StringVar(&cfg.PodCIDR, "pod-cidr", cluster.DefaultPodCIDR, "with --init: the CIDR pods get addresses from; each node leases a /24 of it")
	f.StringVar((*string)(&cfg.Controllers.Strategy), "scheduling-strategy", "spread", "with --init: how the scheduler places pods on the nodes that fit: spread (least loaded first) or binpack (most loaded first)")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", cluster.DefaultServiceCIDR, "with --init: the CIDR services get virtual IPs from")
	f.StringVar(&cfg.NodePortRange, "node-port-range", cluster.DefaultNodePortRange, "with --init: the ports NodePort services are published on, LOW-HIGH")
	f.DurationVar(&cfg.Controllers.NodeLostGrace, "node-lost-grace", 5*time.Second, "while leading: how long a node stays NotReady before its pods are replaced on other nodes")
	f.StringVar(&reserveCPU, "reserve-cpu", "100m", "cpu kept for the system: the node's allocatable cpu is its capacity minus this")
	f.StringVar(&reserveMemory, "reserve-memory", "256Mi", "memory kept for the system: the node's allocatable memory is its capacity minus this")
	f.BoolVar(&pods.Enabled, "run-pods", true, "run the pods the cluster binds to this node (containerd and the pod network start with the first one)")
	f.BoolVar(&pods.Hollow, "hollow", false, "scale tests: run this node's pods on a hollow runtime (nothing runs: no containerd, no pod network, no root needed)")
	f.StringVar(&services.Mode, "lb-mode", agent.LBModeNFTables, "how this node balances services: nftables (the kernel), userspace (a TCP/UDP proxy, for hosts without nftables) or none")
	f.StringVar((*string)(&services.Balance), "lb-balance", string(lb.RoundRobin), "how a new connection picks a service endpoint: round-robin, random, or least-conn (userspace only)")
	f.StringVar(&services.ClusterDomain, "cluster-domain", agent.DefaultClusterDomain, "the DNS domain of service names (NAME.NAMESPACE.svc.DOMAIN)")
	f.StringVar(&pods.Network, "pod-network", podnet.ModeAuto, "how pods reach the pods of other nodes: auto (direct routes to nodes on a shared link, a VXLAN overlay on UDP 4789 to the others), host-gw or vxlan")
	f.StringVar(&pods.ContainerdSocket, "containerd-socket", "/run/containerd/containerd.sock", "containerd's socket; when nothing answers there, the agent starts its own containerd")
	f.StringVar(&registryConfig, "registry-config", "", "YAML file with registry mirrors, plain-HTTP registries and credentials")
	f.StringArrayVar(&registryMirrors, "registry-mirror", nil, "REGISTRY=ENDPOINT: pull REGISTRY's images from ENDPOINT first (repeatable)")
	f.StringArrayVar(&insecureRegistry, "insecure-registry", nil, "a registry HOST[:PORT] spoken to over plain HTTP (repeatable)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// tokenEnv names the environment variable a join token may come in: unlike
// a flag, it is not in the process list other users of the machine see.
const tokenEnv = "SHOAL_TOKEN"

// joinToken picks the join token from --token, --token-file or the
// environment, in that order; at most one of the flags may be given.
func joinToken(flag, file, env string, readFile func(string) ([]byte, error)) (string, error) {
	switch {
	case flag != "" && file != "":
		return "", fmt.Errorf("--token and --token-file exclude each other")
	case flag != "":
		return flag, nil
	case file != "":
		data, err := readFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		token := strings.TrimSpace(line)
		if token == "" {
			return "", fmt.Errorf("--token-file %s: its first line is empty; want the join token (SHOAL-1-...)", file)
		}
		return token, nil
	}
	return strings.TrimSpace(env), nil
}
