package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

type getOptions struct {
	g             *globals
	output        string
	allNamespaces bool
	selector      string
	watch         bool
	watchOnly     bool
	noHeaders     bool
}

func newGetCommand(g *globals) *cobra.Command {
	o := &getOptions{g: g}
	cmd := &cobra.Command{
		Use:   "get KIND[,KIND...] [NAME...] | KIND/NAME...",
		Short: "Display one or many objects",
		Long: `Display one or many objects.

Kinds: pods (po), deployments (deploy), services (svc), endpoints (ep), nodes (no).`,
		Example: `  shoal get pods -o wide
  shoal get deploy web -o yaml
  shoal get svc,ep -A
  shoal get pods -l app=web -w`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	f := cmd.Flags()
	addOutputFlag(f, &o.output, "wide, json, yaml, name")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list the objects of every namespace")
	f.StringVarP(&o.selector, "selector", "l", "", "label selector, such as app=web,tier!=db")
	f.BoolVarP(&o.watch, "watch", "w", false, "after listing, watch for changes")
	f.BoolVar(&o.watchOnly, "watch-only", false, "watch for changes without printing the objects as they are first")
	f.BoolVar(&o.noHeaders, "no-headers", false, "print tables without their header")
	return cmd
}

// target is one kind and the names asked for (none: every object).
type target struct {
	kind  api.KindInfo
	names []string
}

// parseTargets reads KIND[,KIND] [NAME...] or KIND/NAME....
func parseTargets(args []string) ([]target, error) {
	if len(args) == 0 {
		return nil, errors.New(`you must specify the type of resource: one of pods, deployments, services, endpoints, nodes`)
	}
	if strings.Contains(args[0], "/") {
		var out []target
		for _, a := range args {
			kind, name, ok := strings.Cut(a, "/")
			if !ok || name == "" || kind == "" {
				return nil, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'shoal get pod/web' instead of 'shoal get pod web'): %q", a)
			}
			k, ok := api.LookupKind(kind)
			if !ok {
				return nil, fmt.Errorf("the server doesn't have a resource type %q", kind)
			}
			if n := len(out); n > 0 && out[n-1].kind.Kind == k.Kind {
				out[n-1].names = append(out[n-1].names, name)
			} else {
				out = append(out, target{kind: k, names: []string{name}})
			}
		}
		return out, nil
	}
	var out []target
	for _, kind := range strings.Split(args[0], ",") {
		k, ok := api.LookupKind(kind)
		if !ok {
			return nil, fmt.Errorf("the server doesn't have a resource type %q", kind)
		}
		out = append(out, target{kind: k, names: args[1:]})
	}
	return out, nil
}

// namespaceFor is the namespace a request about kind k goes to: none for
// kinds without one and with -A.
func (g *globals) namespaceFor(k api.KindInfo, all bool) string {
	if !k.Namespaced || all {
		return ""
	}
	return g.namespace
}

// noResources is kubectl's message for an empty answer.
func noResources(targets []target, ns string, all bool) string {
	namespaced := false
	for _, t := range targets {
		namespaced = namespaced || t.kind.Namespaced
	}
	if !namespaced || all {
		return "No resources found"
	}
	return fmt.Sprintf("No resources found in %s namespace.", ns)
}

func (o *getOptions) run(cmd *cobra.Command, args []string) error {
	if err := checkOutput(o.output, "", "wide", "json", "yaml", "name"); err != nil {
		return err
	}
	targets, err := parseTargets(args)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	c, err := o.g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cmd.Context()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()

	if o.watch || o.watchOnly {
		if len(targets) != 1 {
			return usageErrorf(cmd, "you may only watch one kind at a time")
		}
		return o.runWatch(ctx, c, targets[0], out)
	}

	type result struct {
		kind  api.KindInfo
		items []json.RawMessage
	}
	var results []result
	var all []json.RawMessage
	rv := ""
	failed := false
	for _, t := range targets {
		ns := o.g.namespaceFor(t.kind, o.allNamespaces)
		res := result{kind: t.kind}
		if len(t.names) == 0 {
			l, err := c.ListObjects(ctx, t.kind.Plural, ns, client.ListOptions{AllNamespaces: o.allNamespaces, LabelSelector: o.selector})
			if err != nil {
				return err
			}
			res.items = l.Items
			if len(targets) == 1 {
				rv = l.ResourceVersion
			}
		} else {
			if o.allNamespaces && t.kind.Namespaced {
				ns = o.g.namespace
			}
			for _, name := range t.names {
				obj, err := c.Get(ctx, t.kind.Plural, ns, name)
				if err != nil {
					var he *api.HTTPError
					if errors.As(err, &he) {
						fmt.Fprintln(errOut, he.Error())
						failed = true
						continue
					}
					return err
				}
				res.items = append(res.items, obj)
			}
		}
		results = append(results, res)
		all = append(all, res.items...)
	}
	single := len(targets) == 1 && len(targets[0].names) == 1

	switch o.output {
	case "json", "yaml", "name":
		if single && len(all) == 0 {
			break // the error is printed
		}
		if err := writeObjects(out, o.output, all, rv, single); err != nil {
			return err
		}
	default:
		if len(all) == 0 {
			if !failed {
				fmt.Fprintln(errOut, noResources(targets, o.g.namespace, o.allNamespaces))
			}
			break
		}
		first := true
		for _, res := range results {
			if len(res.items) == 0 {
				continue
			}
			if !first {
				fmt.Fprintln(out)
			}
			first = false
			topts := tableOptions{wide: o.output == "wide", namespace: o.allNamespaces, kindPrefix: len(targets) > 1}
			objs := make([]api.Resource, 0, len(res.items))
			for _, raw := range res.items {
				r, _, err := decodeObject(raw)
				if err != nil {
					return err
				}
				objs = append(objs, r)
			}
			if res.kind.Kind == "Event" {
				sortEvents(objs)
			}
			rows := make([][]string, 0, len(objs))
			for _, r := range objs {
				rows = append(rows, row(r, topts, now()))
			}
			newTable(headers(res.kind, topts)).write(out, rows, o.noHeaders)
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// runWatch lists (unless --watch-only) and then prints every change until
// the user interrupts or the server ends the watch.
func (o *getOptions) runWatch(ctx context.Context, c *client.HTTPClient, t target, out io.Writer) error {
	ns := o.g.namespaceFor(t.kind, o.allNamespaces)
	wanted := func(name string) bool {
		if len(t.names) == 0 {
			return true
		}
		for _, n := range t.names {
			if n == name {
				return true
			}
		}
		return false
	}
	topts := tableOptions{wide: o.output == "wide", namespace: o.allNamespaces}
	tbl := newTable(headers(t.kind, topts))
	headerDone := o.noHeaders
	printed := 0
	print := func(raw json.RawMessage) error {
		r, k, err := decodeObject(raw)
		if err != nil {
			return err
		}
		if !wanted(r.GetMetadata().GetName()) {
			return nil
		}
		switch o.output {
		case "json":
			err = writeJSON(out, raw)
		case "yaml":
			if printed > 0 {
				fmt.Fprintln(out, "---")
			}
			err = writeYAML(out, raw)
		case "name":
			_, err = fmt.Fprintf(out, "%s/%s\n", qualifiedKind(k), r.GetMetadata().GetName())
		default:
			cells := row(r, topts, now())
			if !headerDone {
				tbl.fit(cells)
				tbl.writeRow(out, tbl.headers)
				headerDone = true
			}
			tbl.writeRow(out, cells)
		}
		printed++
		return err
	}

	// The list gives the version the watch starts after; --watch-only
	// only leaves its objects unprinted.
	l, err := c.ListObjects(ctx, t.kind.Plural, ns, client.ListOptions{AllNamespaces: o.allNamespaces, LabelSelector: o.selector})
	if err != nil {
		return err
	}
	rv := l.ResourceVersion
	if !o.watchOnly {
		if o.output == "" || o.output == "wide" {
			// Size the columns to the first rows, as kubectl does.
			for _, raw := range l.Items {
				if r, _, err := decodeObject(raw); err == nil && wanted(r.GetMetadata().GetName()) {
					tbl.fit(row(r, topts, now()))
				}
			}
		}
		for _, raw := range l.Items {
			if err := print(raw); err != nil {
				return err
			}
		}
	}
	w, err := c.Watch(ctx, t.kind.Plural, ns, client.WatchOptions{ResourceVersion: rv, LabelSelector: o.selector})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer w.Close()
	for {
		ev, err := w.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(ev.Object) == 0 || ev.Type == "BOOKMARK" {
			continue
		}
		if err := print(ev.Object); err != nil {
			return err
		}
	}
}
