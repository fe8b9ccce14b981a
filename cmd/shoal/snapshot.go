package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/cluster"
)

// secretsWarning is said wherever a snapshot file is made or described.
const secretsWarning = `A snapshot holds the cluster's secrets (the CA key, the gossip key and the
join secret): whoever reads it can join nodes to the cluster and impersonate
any of them. Keep it as safe as the CA key; shoal writes it readable by its
owner only (0600).`

func newSnapshotCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up the cluster's store to a file, and restore a cluster from one",
		Long: `Back up the cluster's store to a file, and restore a cluster from one.

` + secretsWarning,
	}
	cmd.AddCommand(newSnapshotSaveCommand(g), newSnapshotRestoreCommand(), newSnapshotInspectCommand())
	return cmd
}

func newSnapshotSaveCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent snapshot of the whole store to FILE (administrators only)",
		Long: `Save a consistent snapshot of the whole store to FILE: every object at one raft
index, read on the leader after it confirmed its leadership, so it holds every
write acknowledged before the command began. FILE is written atomically (it is
complete or absent) and replaced when it exists.

` + secretsWarning,
		Example: `  shoal snapshot save backup-$(date +%F).snap`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, done, err := g.grpcClient(cmd)
			if err != nil {
				return err
			}
			defer done()
			hdr, err := cluster.SaveSnapshot(cmd.Context(), cl, args[0])
			if err != nil {
				return snapshotError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Saved %s: cluster %s at index %d, %d objects, %d bytes (sha256 %s), served by %s.\n",
				args[0], hdr.ClusterID, hdr.Index, hdr.Objects, hdr.Size, hdr.SHA256, hdr.Node)
			fmt.Fprintln(cmd.ErrOrStderr(), "The file holds the cluster's CA key and secrets: keep it as safe as the CA key.")
			return nil
		},
	}
}

func newSnapshotRestoreCommand() *cobra.Command {
	var cfg cluster.Config
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Make a new node's data directory from a snapshot (offline, on the machine of the new node)",
		Long: `Make a new data directory from a snapshot, offline, like 'etcdutl snapshot
restore'. The node it makes belongs to the snapshot's cluster (same CA, same
secrets, same join token) and starts as the single voter of that cluster with
every object of the snapshot at its resourceVersion:

  shoal snapshot restore backup.snap --data-dir /var/lib/shoal --advertise-addr 192.168.56.11
  shoal agent --data-dir /var/lib/shoal

Then join the other machines to it with the cluster's token ('shoal token' on
the restored node prints the join line); wipe their old data directories
first. The admin credentials of the old cluster still work: point the client
at the restored node (--server HOST:7443) if its address changed. Nodes of the
snapshot that do not come back show NotReady once the restored node leads;
remove them with 'shoal node rm'.

The file is verified first (header, size, SHA-256 of the content, decoding);
a corrupt or truncated file, or a data directory that is not empty, is refused
and nothing is changed.

` + secretsWarning,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			res, err := cluster.RestoreSnapshot(args[0], cfg)
			if err != nil {
				return err
			}
			s := res.Snapshot
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Restored %s into %s: cluster %s at index %d, %d objects (snapshot of %s by %s).\n",
				args[0], res.DataDir, s.ClusterID, s.Index, s.Objects, s.CreatedAt.Local().Format(time.RFC3339), s.Node)
			fmt.Fprintf(out, "This node is %s (API %s). Start it with:\n\n    shoal agent --data-dir %s\n\n", res.NodeName, res.APIAddress, res.DataDir)
			fmt.Fprintln(out, "Then join the other machines with the cluster's token (shoal token prints the join line).")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/shoal", "the data directory to create (must not exist, or be empty)")
	f.StringVar(&cfg.NodeName, "node-name", "", "the new node's name (default: the host name)")
	f.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "IP address other nodes reach the new node at (default: the first private address)")
	f.StringVar(&cfg.BindAddr, "bind-addr", "", "IP address the new node listens on (default: --advertise-addr)")
	f.IntVar(&cfg.APIPort, "api-port", cluster.DefaultAPIPort, "port of the API (gRPC and HTTP, TLS)")
	f.IntVar(&cfg.GossipPort, "gossip-port", cluster.DefaultGossipPort, "port of gossip (TCP and UDP)")
	f.IntVar(&cfg.RaftPort, "raft-port", cluster.DefaultRaftPort, "port of raft")
	return cmd
}

func newSnapshotInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Verify a snapshot file and print what it holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hdr, err := cluster.VerifySnapshotFile(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "File:       %s (format %d, intact)\n", args[0], hdr.Format)
			fmt.Fprintf(out, "Cluster:    %s\n", hdr.ClusterID)
			fmt.Fprintf(out, "Index:      %d\n", hdr.Index)
			fmt.Fprintf(out, "Objects:    %d\n", hdr.Objects)
			fmt.Fprintf(out, "Size:       %d bytes\n", hdr.Size)
			fmt.Fprintf(out, "SHA-256:    %s\n", hdr.SHA256)
			fmt.Fprintf(out, "Created:    %s by %s (shoal %s)\n", hdr.CreatedAt.Local().Format(time.RFC3339), hdr.Node, hdr.ShoalVersion)
			fmt.Fprintf(out, "Secrets:    %v (CA key, gossip key, join secret)\n", hdr.Secrets)
			return nil
		},
	}
}

// snapshotError says a server's error the way the other commands do,
// keeping the context SaveSnapshot gave it.
func snapshotError(err error) error {
	var se interface {
		error
		GRPCStatus() *status.Status
	}
	if !errors.As(err, &se) {
		return err
	}
	st := se.GRPCStatus()
	return fmt.Errorf("error from server (%s): %s%s", st.Code(), strings.TrimSuffix(err.Error(), se.Error()), st.Message())
}
