package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

// deploymentName takes "web", "deploy/web", "deployment/web" or
// "deployments/web".
func deploymentName(arg string) (string, error) {
	kind, name, found := strings.Cut(arg, "/")
	if !found {
		return arg, nil
	}
	switch strings.ToLower(kind) {
	case "deploy", "deployment", "deployments":
		return name, nil
	}
	return "", fmt.Errorf("%q: only deployments roll out (deploy/NAME)", arg)
}

func getDeployment(ctx context.Context, c *client.HTTPClient, ns, name string) (*api.Deployment, error) {
	raw, err := c.GetConsistent(ctx, "deployments", ns, name)
	if err != nil {
		return nil, err
	}
	r, _, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	d, ok := r.(*api.Deployment)
	if !ok {
		return nil, fmt.Errorf("deployments/%s: the server sent a %s", name, api.KindOf(r))
	}
	return d, nil
}

func newRolloutCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Follow a Deployment's rollout"}
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status deploy/NAME",
		Short: "Show a rollout's progress until it completes; exit 1 when it fails",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := deploymentName(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return rolloutStatus(ctx, c, g.namespace, name, cmd.OutOrStdout())
		},
	}
	status.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait as long as the rollout progresses)")
	cmd.AddCommand(status)
	return cmd
}

// rolloutStatus prints each change of progress until the rollout
// completes (nil) or fails (an error naming why).
func rolloutStatus(ctx context.Context, c *client.HTTPClient, ns, name string, out io.Writer) error {
	last := ""
	for {
		d, err := getDeployment(ctx, c, ns, name)
		if err != nil {
			return err
		}
		msg, done, failed := rolloutProgress(d)
		if msg != last {
			fmt.Fprintln(out, msg)
			last = msg
		}
		if failed {
			return errReported
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("deployment %q: rollout not finished: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rolloutProgress says where a rollout stands, in kubectl's words.
func rolloutProgress(d *api.Deployment) (msg string, done, failed bool) {
	name := d.GetMetadata().GetName()
	st := d.GetStatus()
	want := int32(1)
	if d.GetSpec().Replicas != nil {
		want = d.GetSpec().GetReplicas()
	}
	for _, c := range st.GetConditions() {
		if c.Type == "Progressing" && c.Status == "False" && c.Reason == "ProgressDeadlineExceeded" {
			return fmt.Sprintf("error: deployment %q exceeded its progress deadline", name), false, true
		}
	}
	switch {
	case st.GetObservedGeneration() < d.GetMetadata().GetGeneration():
		return "Waiting for deployment spec update to be observed...", false, false
	case st.GetUpdatedReplicas() < want:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", name, st.GetUpdatedReplicas(), want), false, false
	case st.GetReplicas() > st.GetUpdatedReplicas():
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", name, st.GetReplicas()-st.GetUpdatedReplicas()), false, false
	case st.GetAvailableReplicas() < st.GetUpdatedReplicas():
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", name, st.GetAvailableReplicas(), st.GetUpdatedReplicas()), false, false
	}
	return fmt.Sprintf("deployment %q successfully rolled out", name), true, false
}

func newScaleCommand(g *globals) *cobra.Command {
	var replicas int32
	cmd := &cobra.Command{
		Use:   "scale deploy/NAME --replicas N",
		Short: "Set the number of replicas of a Deployment",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return errors.New("--replicas is required")
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas %d: must be 0 or more", replicas)
			}
			name, err := deploymentName(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			d, err := getDeployment(ctx, c, g.namespace, name)
			if err != nil {
				return err
			}
			d.Spec.Replicas = &replicas
			d.Status = nil
			// The resourceVersion read is kept: a change in between is a
			// conflict, not overwritten.
			body, err := api.MarshalJSON(d)
			if err != nil {
				return err
			}
			if _, err := c.Apply(ctx, body, client.ApplyOptions{}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployment.apps/%s scaled\n", name)
			return nil
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the number of replicas")
	return cmd
}
