package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// serverVersionTimeout bounds the wait for the server's version.
const serverVersionTimeout = 5 * time.Second

func newVersionCommand(g *globals) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client's version, and the server's when it answers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client Version: %s\n", version)
			if clientOnly {
				return nil
			}
			c, err := g.client()
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Server Version: unknown (%v)\n", err)
				return nil
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), serverVersionTimeout)
			defer cancel()
			v, err := c.Version(ctx)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Server Version: unknown (%v)\n", err)
				return nil
			}
			fmt.Fprintf(out, "Server Version: %s\n", v.GetVersion())
			if v.GetNode() != "" {
				leader := v.GetLeader()
				if leader == "" {
					leader = "none"
				}
				fmt.Fprintf(out, "Server Node: %s (leader: %s)\n", v.GetNode(), leader)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print the client's version only")
	return cmd
}
