package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/shoalproj/shoal/api"
)

type deleteOptions struct {
	g               *globals
	files           []string
	ignoreNotFound  bool
	resourceVersion string
	gracePeriod     int64
	force           bool
}

func newDeleteCommand(g *globals) *cobra.Command {
	o := &deleteOptions{g: g}
	cmd := &cobra.Command{
		Use:   "delete (-f FILE | KIND NAME... | KIND/NAME...)",
		Short: "Delete objects by name or by manifest",
		Example: `  shoal delete pod web-1
  shoal delete deploy/web svc/web
  shoal delete -f web.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "delete the objects of a manifest file, a directory of them, or - for standard input; repeatable")
	f.BoolVar(&o.ignoreNotFound, "ignore-not-found", false, "treat an object that does not exist as deleted")
	f.StringVar(&o.resourceVersion, "resource-version", "", "delete only if the object is still at this resourceVersion")
	f.Int64Var(&o.gracePeriod, "grace-period", -1, "pods: seconds between SIGTERM and SIGKILL (-1: the pod's terminationGracePeriodSeconds); the pod stays Terminating until its node stopped it")
	f.BoolVar(&o.force, "force", false, "pods: remove at once from the cluster, without waiting for the node (its containers stop when the node sees it gone); same as --grace-period 0")
	return cmd
}

// deletion is one object to delete.
type deletion struct {
	kind      api.KindInfo
	namespace string
	name      string
	file      string // the manifest it comes from, if any
}

func (o *deleteOptions) run(cmd *cobra.Command, args []string) error {
	var todo []deletion
	switch {
	case len(o.files) > 0 && len(args) > 0:
		return usageErrorf(cmd, "give either -f or KIND NAME, not both")
	case len(o.files) > 0:
		ms, err := o.g.readManifests(o.files, cmd.InOrStdin())
		if err != nil {
			return err
		}
		for _, m := range ms {
			meta := m.obj.GetMetadata()
			todo = append(todo, deletion{kind: m.kind, namespace: meta.GetNamespace(), name: meta.GetName(), file: m.file})
		}
	default:
		targets, err := parseTargets(args)
		if err != nil {
			return usageErrorf(cmd, "%v", err)
		}
		for _, t := range targets {
			if len(t.names) == 0 {
				return usageErrorf(cmd, "resource(s) were provided, but no name was specified")
			}
			for _, n := range t.names {
				todo = append(todo, deletion{kind: t.kind, namespace: o.g.namespaceFor(t.kind, false), name: n})
			}
		}
	}
	c, err := o.g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	failed := false
	for _, d := range todo {
		grace := o.gracePeriod
		if o.force {
			grace = 0
		}
		_, err := c.DeleteWithGrace(cmd.Context(), d.kind.Plural, d.namespace, d.name, o.resourceVersion, grace)
		if err == nil {
			fmt.Fprintf(out, "%s %q deleted\n", qualifiedKind(d.kind), d.name)
			continue
		}
		var he *api.HTTPError
		if !errors.As(err, &he) {
			return err
		}
		if he.Code == 404 && o.ignoreNotFound {
			continue
		}
		failed = true
		if d.file != "" {
			fmt.Fprintf(errOut, "Error from server (%s): error when deleting %q: %s\n", he.Reason, d.file, he.Message)
		} else {
			fmt.Fprintln(errOut, he.Error())
		}
	}
	if failed {
		return errReported
	}
	return nil
}
