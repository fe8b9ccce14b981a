package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newTokenCommand(g *globals) *cobra.Command {
	var rotate bool
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print the join token (first line), and the command that joins a node",
		Long: `Print the cluster's join token on the first line of output, alone, then the
command to run on a machine to join it to the cluster.

With --rotate, a new token replaces the old one first: the old one stops
working for joins; nodes already in the cluster are not affected.`,
		Example: `  shoal token
  TOKEN=$(shoal token | head -1)
  shoal token --rotate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			t, err := c.Token(cmd.Context(), rotate)
			if err != nil {
				return err
			}
			endpoint := c.Server()
			if len(t.GetEndpoints()) > 0 {
				endpoint = t.GetEndpoints()[0]
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, t.GetToken())
			fmt.Fprintf(out, "shoal agent --join %s --token %s\n", endpoint, t.GetToken())
			if rotate {
				fmt.Fprintln(cmd.ErrOrStderr(), "The join token was rotated: the previous one no longer joins nodes.")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the join token with a new one, and print it")
	return cmd
}
