package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/scheduler"
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

// withDeployment runs fn with a client of the API and the name of the
// Deployment arg names (NAME or deploy/NAME), closing the client after.
func (g *globals) withDeployment(cmd *cobra.Command, arg string, fn func(ctx context.Context, c *client.HTTPClient, name string) error) error {
	name, err := deploymentName(arg)
	if err != nil {
		return err
	}
	return g.withClient(cmd, func(ctx context.Context, c *client.HTTPClient) error { return fn(ctx, c, name) })
}

func getDeployment(ctx context.Context, c *client.HTTPClient, ns, name string) (*api.Deployment, error) {
	return getObject[*api.Deployment](ctx, c, "deployments", ns, name)
}

func newRolloutCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Follow a Deployment's rollout"}
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status deploy/NAME",
		Short: "Show a rollout's progress until it completes; exit 1 when it fails",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withDeployment(cmd, args[0], func(ctx context.Context, c *client.HTTPClient, name string) error {
				if timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, timeout)
					defer cancel()
				}
				return rolloutStatus(ctx, c, g.namespace, name, cmd.OutOrStdout())
			})
		},
	}
	status.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait as long as the rollout progresses)")

	var revision int64
	history := &cobra.Command{
		Use:   "history deploy/NAME",
		Short: "List a Deployment's revisions, or show one (--revision)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withDeployment(cmd, args[0], func(ctx context.Context, c *client.HTTPClient, name string) error {
				d, revs, err := deploymentRevisions(ctx, c, g.namespace, name)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if revision > 0 {
					for _, r := range revs {
						if r.GetRevision() == revision {
							y, err := api.MarshalYAML(r.GetData())
							if err != nil {
								return err
							}
							fmt.Fprintf(out, "deployment.apps/%s with revision #%d\nPod Template:\n%s", name, revision, y)
							return nil
						}
					}
					return fmt.Errorf("deployment %q has no revision %d", name, revision)
				}
				fmt.Fprintf(out, "deployment.apps/%s\n", d.GetMetadata().GetName())
				tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "REVISION\tCHANGE-CAUSE")
				for _, r := range revs {
					fmt.Fprintf(tw, "%d\t%s\n", r.GetRevision(), orNone(r.GetMetadata().GetAnnotations()[scheduler.AnnotationChangeCause]))
				}
				return tw.Flush()
			})
		},
	}
	history.Flags().Int64Var(&revision, "revision", 0, "show the pod template of this revision")

	var toRevision int64
	undo := &cobra.Command{
		Use:   "undo deploy/NAME [--to-revision N]",
		Short: "Roll a Deployment back to its previous revision, or to revision N",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withDeployment(cmd, args[0], func(ctx context.Context, c *client.HTTPClient, name string) error {
				_, revs, err := deploymentRevisions(ctx, c, g.namespace, name)
				if err != nil {
					return err
				}
				target, err := undoTarget(revs, toRevision)
				if err != nil {
					return fmt.Errorf("deployment %q: %w", name, err)
				}
				tpl := proto.Clone(target.GetData()).(*api.PodTemplateSpec)
				delete(tpl.GetMetadata().GetLabels(), scheduler.LabelPodTemplateHash)
				if err := updateDeployment(ctx, c, g.namespace, name, func(d *api.Deployment) { d.Spec.Template = tpl }); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deployment.apps/%s rolled back to revision %d\n", name, target.GetRevision())
				return nil
			})
		},
	}
	undo.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to return to (default: the previous one)")

	pauseResume := func(use, short, verb string, paused bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " deploy/NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.withDeployment(cmd, args[0], func(ctx context.Context, c *client.HTTPClient, name string) error {
					if err := updateDeployment(ctx, c, g.namespace, name, func(d *api.Deployment) { d.Spec.Paused = paused }); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "deployment.apps/%s %s\n", name, verb)
					return nil
				})
			},
		}
	}
	cmd.AddCommand(status, history, undo,
		pauseResume("pause", "Stop a Deployment's rollout where it is (scaling goes on)", "paused", true),
		pauseResume("resume", "Let a paused Deployment's rollout go on", "resumed", false))
	return cmd
}

// deploymentRevisions returns the Deployment and the revisions it owns,
// oldest first.
func deploymentRevisions(ctx context.Context, c *client.HTTPClient, ns, name string) (*api.Deployment, []*api.ControllerRevision, error) {
	d, err := getDeployment(ctx, c, ns, name)
	if err != nil {
		return nil, nil, err
	}
	raws, err := c.List(ctx, "controllerrevisions", ns, false, "")
	if err != nil {
		return nil, nil, err
	}
	var revs []*api.ControllerRevision
	for _, raw := range raws {
		r, _, err := decodeObject(raw)
		if err != nil {
			return nil, nil, err
		}
		if cr, ok := r.(*api.ControllerRevision); ok && scheduler.OwnedBy(cr.GetMetadata(), d.GetMetadata().GetUid()) {
			revs = append(revs, cr)
		}
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].GetRevision() < revs[j].GetRevision() })
	return d, revs, nil
}

// undoTarget picks the revision undo returns to: to, or the one before
// the newest.
func undoTarget(revs []*api.ControllerRevision, to int64) (*api.ControllerRevision, error) {
	if to > 0 {
		for _, r := range revs {
			if r.GetRevision() == to {
				return r, nil
			}
		}
		return nil, fmt.Errorf("no revision %d (rollout history lists them)", to)
	}
	if len(revs) < 2 {
		return nil, errors.New("no previous revision to roll back to")
	}
	return revs[len(revs)-2], nil
}

// updateDeployment changes a Deployment (see updateObject).
func updateDeployment(ctx context.Context, c *client.HTTPClient, ns, name string, change func(*api.Deployment)) error {
	return updateObject(ctx, c, "deployments", ns, name, change)
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
			return g.withDeployment(cmd, args[0], func(ctx context.Context, c *client.HTTPClient, name string) error {
				if err := updateDeployment(ctx, c, g.namespace, name, func(d *api.Deployment) { d.Spec.Replicas = &replicas }); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deployment.apps/%s scaled\n", name)
				return nil
			})
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the number of replicas")
	return cmd
}
