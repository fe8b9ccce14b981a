package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newNodeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "List, cordon, drain or remove the cluster's nodes",
	}
	cmd.AddCommand(newNodeLsCommand(g), newNodeRmCommand(g))
	cmd.AddCommand(newCordonCommands(g)...)
	return cmd
}

func newNodeLsCommand(g *globals) *cobra.Command {
	o := &getOptions{g: g}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the nodes (as get nodes)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, []string{"nodes"})
		},
	}
	f := cmd.Flags()
	addOutputFlag(f, &o.output, "wide, json, yaml, name")
	f.StringVarP(&o.selector, "selector", "l", "", "label selector, such as zone=a")
	f.BoolVarP(&o.watch, "watch", "w", false, "after listing, watch for changes")
	f.BoolVar(&o.noHeaders, "no-headers", false, "print the table without its header")
	return cmd
}

func newNodeRmCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove nodes from the cluster",
		Long: `Remove nodes from the cluster: their raft membership, their node object,
and the pods bound to them (which are then placed elsewhere). A removed node's
certificates are revoked: every node refuses it on raft and the API, and
ignores its gossip, even if it comes back with its data directory. To bring
the machine back, wipe its data directory and join it again.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			for _, name := range args {
				if err := c.RemoveNode(cmd.Context(), name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "node %q removed\n", name)
			}
			return nil
		},
	}
}
