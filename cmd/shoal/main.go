// Command shoal is the one binary of shoal: `shoal agent` runs a node, and
// the other commands are the client, kubectl-style, over the HTTP API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code. Errors go to
// stderr: the server's as it said them ("Error from server (NotFound): ..."),
// others as "error: ...".
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *exitCodeError
	if errors.As(err, &exit) {
		return exit.code // the remote command's, as it is (shoal exec)
	}
	printError(stderr, err)
	return 1
}

func printError(w io.Writer, err error) {
	var he *api.HTTPError
	var ue *usageError
	switch {
	case errors.Is(err, errReported):
		// Already printed, one line per failure.
	case errors.As(err, &he):
		fmt.Fprintln(w, he.Error())
	case errors.As(err, &ue):
		fmt.Fprintf(w, "error: %v\nSee '%s --help' for usage.\n", ue.err, ue.cmd)
	default:
		fmt.Fprintf(w, "error: %v\n", err)
	}
}

// errReported ends a command that has already printed its errors and only
// needs to exit with 1.
var errReported = errors.New("errors reported")

// usageError is a command line that does not parse.
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

// globals are the persistent flags every client command has.
type globals struct {
	server     string
	configPath string
	namespace  string
	// namespaceSet: -n was given, rather than defaulted.
	namespaceSet bool
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "shoal",
		Short: "shoal runs containers on a cluster of equal machines",
		Long: `shoal is a container orchestrator without a master: every machine runs
'shoal agent'; the other commands talk to the cluster's API, the way kubectl does.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			if f := cmd.Flags().Lookup("namespace"); f != nil {
				g.namespaceSet = f.Changed
			}
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", "", "the API endpoint HOST:PORT to talk to (overrides the configured one)")
	pf.StringVar(&g.configPath, "config", client.DefaultConfigPath(), "the client configuration file")
	pf.StringVarP(&g.namespace, "namespace", "n", api.DefaultNamespace, "the namespace of the objects")

	root.AddCommand(
		newAgentCommand(),
		newApplyCommand(g),
		newGetCommand(g),
		newDescribeCommand(g),
		newDeleteCommand(g),
		newNodeCommand(g),
		newTokenCommand(g),
		newVersionCommand(g),
		newLogsCommand(g),
		newExecCommand(g),
		newImageCommand(g),
		newLabCommand(g),
		newRolloutCommand(g),
		newScaleCommand(g),
		newSnapshotCommand(g),
		newAdminCertCommand(g),
	)
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

// client loads the configuration and returns a client of the API.
func (g *globals) client() (*client.HTTPClient, error) {
	cfg, err := client.LoadConfig(g.configPath)
	if err != nil {
		return nil, err
	}
	c, err := client.NewHTTPClient(cfg, g.server)
	if err != nil {
		return nil, err
	}
	slog.Debug("shoal client", "server", c.Server())
	return c, nil
}

// withClient runs fn with a client of the API and the command's context,
// closing the client after.
func (g *globals) withClient(cmd *cobra.Command, fn func(ctx context.Context, c *client.HTTPClient) error) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(cmd.Context(), c)
}

// addOutputFlag adds -o/--output with the formats a command prints.
func addOutputFlag(fs *pflag.FlagSet, p *string, formats string) {
	fs.StringVarP(p, "output", "o", "", "output format: one of "+formats)
}
