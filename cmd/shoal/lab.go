package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/lab"
	"github.com/shoalproj/shoal/lab/ociimage"
)

// The lab `shoal lab up` makes: hosts are the namespaces shoal-lab-1..N on
// the bridge shoal-lab, with 10.77.0.0/24; its record sits next to its
// directory so that `shoal lab down` finds everything it made.
const (
	labDir        = "/var/lib/shoal-lab"
	labRecord     = "/var/lib/shoal-lab.json"
	labBridge     = "shoal-lab"
	labSubnetByte = 0
	labMaxHosts   = 20
)

// labImages are the images every lab host gets (the examples use them);
// no registry is needed.
var labImages = []string{"docker.io/library/busybox:1.36"}

func labHostName(i int) string { return fmt.Sprintf("shoal-lab-%d", i) }

// labConfigPath is the lab's client config: ~/.shoal/lab.config.
func labConfigPath() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".shoal", "lab.config")
}

func newLabCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A cluster of network-namespace hosts on this Linux machine (as root)",
		Long: `A lab cluster on one Linux machine: each host is a network namespace
(shoal-lab-1 ... shoal-lab-N) on a bridge in this machine's namespace, with
its own address, its own shoal agent and its own containerd.

  shoal lab up --nodes 3      # then: export SHOAL_CONFIG=~/.shoal/lab.config
  shoal lab down              # removes every trace of it`,
	}
	var (
		nodes     int
		agentArgs []string
	)
	up := &cobra.Command{
		Use:   "up",
		Short: "Bring up a lab cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return labUp(cmd, nodes, agentArgs)
		},
	}
	up.Flags().IntVar(&nodes, "nodes", 3, "how many hosts")
	up.Flags().StringArrayVar(&agentArgs, "agent-arg", nil, "an extra flag for every host's `shoal agent` (repeatable)")
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove the lab cluster: namespaces, links, processes, nftables tables, mounts, data",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := labPreflight(false); err != nil {
				return err
			}
			found, errs := lab.TeardownRecord(labRecord, func(f string, a ...any) {
				fmt.Fprintf(cmd.ErrOrStderr(), f+"\n", a...)
			})
			if len(errs) > 0 {
				return fmt.Errorf("lab down: %w", errors.Join(errs...))
			}
			if !found {
				fmt.Fprintln(cmd.OutOrStdout(), "no lab is up")
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), "lab removed")
			return nil
		},
	}
	cmd.AddCommand(up, down)
	return cmd
}

// labPreflight says what is missing before anything is made.
func labPreflight(full bool) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (it makes network namespaces, a bridge and runs containerd)")
	}
	if !full {
		return nil
	}
	var missing []string
	for bin, pkg := range map[string]string{"nsenter": "util-linux", "containerd": "containerd", "runc": "runc",
		"containerd-shim-runc-v2": "containerd", "nft": "nftables", "iptables": "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		missing = append(missing, "containernetworking-plugins")
	}
	if err := ociimage.CheckBusybox(); err != nil {
		missing = append(missing, "busybox-static")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the lab needs these Debian packages: apt-get install %s", strings.Join(dedupe(missing), " "))
	}
	return nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func labUp(cmd *cobra.Command, nodes int, agentArgs []string) error {
	if nodes < 1 || nodes > labMaxHosts {
		return fmt.Errorf("--nodes %d: between 1 and %d", nodes, labMaxHosts)
	}
	if err := labPreflight(true); err != nil {
		return err
	}
	if _, err := os.Stat(labRecord); err == nil {
		return errors.New("a lab is up already (shoal lab down removes it)")
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("lab: find the shoal binary: %w", err)
	}
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	confPath := labConfigPath()
	if err := os.MkdirAll(filepath.Dir(confPath), 0o700); err != nil {
		return err
	}
	l, err := lab.Create(lab.Options{
		Bin:         bin,
		Hosts:       nodes,
		Dir:         labDir,
		ID:          "shoal-lab",
		Bridge:      labBridge,
		NetNS:       labHostName,
		Veth:        labHostName,
		Node:        labHostName,
		SubnetOctet: labSubnetByte,
		RecordPath:  labRecord,
		ClientConf:  confPath,
		AgentArgs:   agentArgs,
		Detach:      true,
		Logf:        func(f string, a ...any) { fmt.Fprintf(errOut, f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	fail := func(err error) error {
		fmt.Fprintf(errOut, "lab up failed; the logs are in %s/h*.log. Removing the lab.\n", labDir)
		fmt.Fprintln(errOut, l.LogTails(15))
		for _, e := range l.Teardown() {
			fmt.Fprintln(errOut, e)
		}
		return err
	}
	if err := l.Form(ctx); err != nil {
		return fail(err)
	}
	// Any host's API will do: list them all, host 1 first.
	cfg, err := client.LoadConfig(confPath)
	if err != nil {
		return fail(err)
	}
	cfg.Servers = nil
	for _, h := range l.Hosts[1:] {
		cfg.Servers = append(cfg.Servers, net.JoinHostPort(h.IP, "7443"))
	}
	if err := cfg.Save(confPath); err != nil {
		return fail(err)
	}
	if err := labLoadImages(ctx, cmd, cfg, l); err != nil {
		return fail(err)
	}
	if err := labPodRoutes(ctx, cfg, l); err != nil {
		return fail(err)
	}
	fmt.Fprintf(out, "lab: %d hosts on bridge %s (%s), each a network namespace with its own agent and containerd:\n", nodes, labBridge, l.Subnet)
	for _, h := range l.Hosts {
		fmt.Fprintf(out, "  %-13s %-11s nsenter --net=/run/netns/%s ...   log: %s\n", h.Node, h.IP, h.NetNS, h.LogPath)
	}
	fmt.Fprintf(out, "images on every host: %s\n\n", strings.Join(labImages, ", "))
	fmt.Fprintf(out, "export SHOAL_CONFIG=%s\n", strings.Replace(confPath, os.Getenv("HOME"), "~", 1))
	return nil
}

// labLoadImages makes the lab's images and loads them onto every host.
func labLoadImages(ctx context.Context, cmd *cobra.Command, cfg *client.Config, l *lab.Lab) error {
	cc, err := client.Dial(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer cc.Close()
	cl := api.NewShoalClient(cc)
	for _, ref := range labImages {
		archive, err := ociimage.OCIArchive(ref, ociimage.Options{})
		if err != nil {
			return err
		}
		path := filepath.Join(labDir, "image.tar")
		if err := os.WriteFile(path, archive, 0o600); err != nil {
			return err
		}
		for _, h := range l.Hosts {
			if _, err := loadImage(cmd, cl, h.Node, path); err != nil {
				return fmt.Errorf("load %s onto %s: %w", ref, h.Node, err)
			}
		}
		os.Remove(path)
	}
	return nil
}

// labPodRoutes routes each host's pod subnet through the host from this
// machine's namespace, so that pod IPs answer from here (curl, a browser).
func labPodRoutes(ctx context.Context, cfg *client.Config, l *lab.Lab) error {
	cc, err := client.Dial(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer cc.Close()
	list, err := api.NewShoalClient(cc).List(ctx, &api.ListRequest{Kind: "Node"})
	if err != nil {
		return grpcError(err)
	}
	byName := map[string]string{}
	for _, o := range list.Items {
		n := o.GetNode()
		byName[n.GetMetadata().GetName()] = n.GetSpec().GetPodCidr()
	}
	routes := map[string]string{}
	for _, h := range l.Hosts {
		if cidr := byName[h.Node]; cidr != "" {
			routes[cidr] = h.IP
		}
	}
	return l.AddRootRoutes(routes)
}
