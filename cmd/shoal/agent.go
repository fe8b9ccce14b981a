package main

import "github.com/spf13/cobra"

// newAgentCommand is `shoal agent`: the daemon every machine runs.
func newAgentCommand() *cobra.Command {
	return &cobra.Command{Use: "agent", Short: "Run the shoal agent on this machine"}
}
