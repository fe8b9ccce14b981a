package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

// exitCodeError ends the CLI with a command's own exit code (shoal exec).
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit code %d", e.code) }

// grpcError prints a gRPC failure the way server errors print elsewhere.
func grpcError(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("error from server (%s): %s", st.Code(), st.Message())
	}
	return err
}

func (g *globals) grpcClient(cmd *cobra.Command) (api.ShoalClient, func(), error) {
	_, cc, err := g.grpcConn(cmd)
	if err != nil {
		return nil, nil, err
	}
	return api.NewShoalClient(cc), func() { cc.Close() }, nil
}

// grpcConn dials the API with the client configuration, which it returns
// too; the caller closes the connection.
func (g *globals) grpcConn(cmd *cobra.Command) (*client.Config, *grpc.ClientConn, error) {
	cfg, err := client.LoadConfig(g.configPath)
	if err != nil {
		return nil, nil, err
	}
	cc, err := client.Dial(cmd.Context(), cfg, g.server)
	if err != nil {
		return nil, nil, err
	}
	return cfg, cc, nil
}

func newLogsCommand(g *globals) *cobra.Command {
	var (
		container string
		follow    bool
		previous  bool
		tail      int32
	)
	cmd := &cobra.Command{
		Use:   "logs POD",
		Short: "Print the output of a container of a pod",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, done, err := g.grpcClient(cmd)
			if err != nil {
				return err
			}
			defer done()
			stream, err := cl.Logs(cmd.Context(), &api.LogsRequest{Namespace: g.namespace, Name: args[0], Container: container,
				Follow: follow, Previous: previous, TailLines: tail})
			if err != nil {
				return grpcError(err)
			}
			out := cmd.OutOrStdout()
			for {
				chunk, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil // interrupted while following
					}
					return grpcError(err)
				}
				if _, err := out.Write(chunk.Data); err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVarP(&container, "container", "c", "", "the container (needed when the pod has several)")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing output as it comes, until the container exits")
	f.BoolVarP(&previous, "previous", "p", false, "the output of the instance before the last restart")
	f.Int32Var(&tail, "tail", 0, "only the last lines (0: all)")
	return cmd
}

func newExecCommand(g *globals) *cobra.Command {
	var (
		container string
		stdin     bool
		tty       bool
	)
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG...]",
		Short: "Run a command in a container of a pod; exits with its exit code",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usageErrorf(cmd, "want POD -- COMMAND [ARG...]")
			}
			cl, done, err := g.grpcClient(cmd)
			if err != nil {
				return err
			}
			defer done()
			stream, err := cl.Exec(cmd.Context())
			if err != nil {
				return grpcError(err)
			}
			if err := stream.Send(&api.ExecRequest{Namespace: g.namespace, Name: args[0], Container: container,
				Command: args[1:], Tty: tty, Stdin: stdin}); err != nil {
				return grpcError(err)
			}
			if stdin {
				go func() {
					buf := make([]byte, 32<<10)
					in := cmd.InOrStdin()
					for {
						n, err := in.Read(buf)
						if n > 0 {
							if stream.Send(&api.ExecRequest{StdinData: append([]byte(nil), buf[:n]...)}) != nil {
								return
							}
						}
						if err != nil {
							stream.Send(&api.ExecRequest{StdinClose: true})
							stream.CloseSend()
							return
						}
					}
				}()
			} else {
				stream.CloseSend()
			}
			for {
				resp, err := stream.Recv()
				if err != nil {
					if errors.Is(err, io.EOF) {
						return errors.New("exec ended without an exit code")
					}
					return grpcError(err)
				}
				cmd.OutOrStdout().Write(resp.Stdout)
				cmd.ErrOrStderr().Write(resp.Stderr)
				if resp.Exited {
					if resp.ExitCode != 0 {
						return &exitCodeError{code: int(resp.ExitCode)}
					}
					return nil
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVarP(&container, "container", "c", "", "the container (needed when the pod has several)")
	f.BoolVarP(&stdin, "stdin", "i", false, "pass standard input to the command")
	f.BoolVarP(&tty, "tty", "t", false, "run the command with a terminal")
	return cmd
}
