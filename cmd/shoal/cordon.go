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
	"github.com/shoalproj/shoal/scheduler"
)

// setCordon marks a node unschedulable (and draining) or schedulable.
func setCordon(ctx context.Context, c *client.HTTPClient, name string, cordon, drain bool) error {
	return updateObject(ctx, c, "nodes", "", name, func(n *api.Node) {
		if n.Spec == nil {
			n.Spec = &api.NodeSpec{}
		}
		n.Spec.Unschedulable = cordon
		if n.Metadata.Annotations == nil {
			n.Metadata.Annotations = map[string]string{}
		}
		if drain {
			n.Metadata.Annotations[scheduler.AnnotationDrain] = "true"
		} else {
			delete(n.Metadata.Annotations, scheduler.AnnotationDrain)
		}
	})
}

func newCordonCommands(g *globals) []*cobra.Command {
	mark := func(use, short, verb string, cordon bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.withClient(cmd, func(ctx context.Context, c *client.HTTPClient) error {
					if err := setCordon(ctx, c, args[0], cordon, false); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "node/%s %s\n", args[0], verb)
					return nil
				})
			},
		}
	}
	cordon := mark("cordon", "Mark a node unschedulable: nothing new is placed on it", "cordoned", true)
	uncordon := mark("uncordon", "Mark a node schedulable again (ends a drain)", "uncordoned", false)
	var (
		timeout time.Duration
		force   bool
	)
	drain := &cobra.Command{
		Use:   "drain NAME",
		Short: "Cordon a node and move its pods elsewhere, within each Deployment's maxUnavailable",
		Long: `Cordon a node and move its pods elsewhere. The leader replaces the pods of
Deployments as in a rolling update: a replacement starts on another node
(within maxSurge) and the pod on the drained node stops only while the
Deployment keeps at least replicas - maxUnavailable pods available. Pods
that no controller owns would be lost: drain refuses unless --force, which
deletes them. The command returns once no pod remains on the node.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.HTTPClient) error {
				if timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, timeout)
					defer cancel()
				}
				return drainNode(ctx, c, args[0], force, cmd.OutOrStdout())
			})
		},
	}
	drain.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: no limit); the node stays cordoned")
	drain.Flags().BoolVar(&force, "force", false, "also delete pods that no controller owns (they are not recreated)")
	return []*cobra.Command{cordon, uncordon, drain}
}

func nodePods(ctx context.Context, c *client.HTTPClient, node string) ([]*api.Pod, error) {
	raws, err := c.List(ctx, "pods", "", true, "")
	if err != nil {
		return nil, err
	}
	var out []*api.Pod
	for _, raw := range raws {
		r, _, err := decodeObject(raw)
		if err != nil {
			return nil, err
		}
		if p, ok := r.(*api.Pod); ok && p.GetSpec().GetNodeName() == node {
			out = append(out, p)
		}
	}
	return out, nil
}

func drainNode(ctx context.Context, c *client.HTTPClient, node string, force bool, out io.Writer) error {
	pods, err := nodePods(ctx, c, node)
	if err != nil {
		return err
	}
	var bare []*api.Pod
	for _, p := range pods {
		if controllerOf(p) == "" {
			bare = append(bare, p)
		}
	}
	if len(bare) > 0 && !force {
		var names []string
		for _, p := range bare {
			names = append(names, api.KeyOf(p))
		}
		return fmt.Errorf("node %s runs pods that no controller owns and that would be lost: %s (--force deletes them)", node, strings.Join(names, ", "))
	}
	if err := setCordon(ctx, c, node, true, true); err != nil {
		return err
	}
	fmt.Fprintf(out, "node/%s cordoned\n", node)
	for _, p := range bare {
		m := p.GetMetadata()
		if _, err := c.Delete(ctx, "pods", m.GetNamespace(), m.GetName(), ""); err != nil {
			var he *api.HTTPError
			if !errors.As(err, &he) || he.Code != 404 {
				return err
			}
		}
		fmt.Fprintf(out, "pod/%s deleted (no controller)\n", m.GetName())
	}
	last := -1
	for {
		pods, err := nodePods(ctx, c, node)
		if err != nil {
			return err
		}
		if len(pods) != last {
			fmt.Fprintf(out, "node/%s: %d pods left\n", node, len(pods))
			last = len(pods)
		}
		if len(pods) == 0 {
			fmt.Fprintf(out, "node/%s drained\n", node)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: %d pods still on it: %w", node, len(pods), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// controllerOf names the controller that owns a pod, "" for none.
func controllerOf(p *api.Pod) string {
	for _, o := range p.GetMetadata().GetOwnerReferences() {
		if o.Controller {
			return o.Kind + "/" + o.Name
		}
	}
	return ""
}
