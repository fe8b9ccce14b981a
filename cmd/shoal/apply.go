package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

type applyOptions struct {
	g      *globals
	files  []string
	output string
}

func newApplyCommand(g *globals) *cobra.Command {
	o := &applyOptions{g: g}
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests",
		Long: `Create or update objects from Kubernetes-shaped manifests (YAML or JSON,
several documents per file). Every object of every file is sent in one
request: when one is refused, nothing changes.`,
		Example: `  shoal apply -f web.yaml
  shoal apply -f manifests/ -f extra.yaml
  cat web.yaml | shoal apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "a manifest file, a directory of them (*.yaml, *.yml, *.json), or - for standard input; repeatable")
	addOutputFlag(f, &o.output, "json, yaml, name")
	return cmd
}

// manifest is one object read from a file.
type manifest struct {
	file string
	obj  api.Resource
	kind api.KindInfo
}

// readManifestFiles reads each -f argument: a file, a directory (its
// *.yaml, *.yml and *.json files, sorted by name), or - for stdin.
func readManifestFiles(paths []string, stdin io.Reader) ([]string, [][]byte, error) {
	var names []string
	var datas [][]byte
	stdinRead := false
	for _, p := range paths {
		if p == "-" {
			if stdinRead {
				return nil, nil, errors.New("standard input (-) can be given only once")
			}
			stdinRead = true
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, nil, fmt.Errorf("read standard input: %w", err)
			}
			names, datas = append(names, "STDIN"), append(datas, data)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("the path %q does not exist", p)
		}
		if !st.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, nil, err
			}
			names, datas = append(names, p), append(datas, data)
			continue
		}
		entries, err := os.ReadDir(p) // sorted by name
		if err != nil {
			return nil, nil, err
		}
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
				continue
			}
			fp := filepath.Join(p, e.Name())
			data, err := os.ReadFile(fp)
			if err != nil {
				return nil, nil, err
			}
			names, datas = append(names, fp), append(datas, data)
		}
	}
	return names, datas, nil
}

// readManifests reads and decodes the -f arguments; an error names the file.
// Namespaced objects that name no namespace get the -n one; with -n given
// explicitly, an object of another namespace is refused, as kubectl does.
func (g *globals) readManifests(paths []string, stdin io.Reader) ([]manifest, error) {
	if len(paths) == 0 {
		return nil, errors.New("must specify -f FILENAME")
	}
	names, datas, err := readManifestFiles(paths, stdin)
	if err != nil {
		return nil, err
	}
	var out []manifest
	for i, data := range datas {
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		objs, err := api.DecodeManifests(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", names[i], err)
		}
		for _, r := range objs {
			k := api.MustKind(api.KindOf(r))
			m := r.GetMetadata()
			if m == nil {
				return nil, fmt.Errorf("%s: %s without metadata", names[i], k.Kind)
			}
			if k.Namespaced {
				switch {
				case m.Namespace == "":
					m.Namespace = g.namespace
				case g.namespaceSet && m.Namespace != g.namespace:
					return nil, fmt.Errorf("%s: the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation.",
						names[i], m.Namespace, g.namespace, m.Namespace)
				}
			}
			out = append(out, manifest{file: names[i], obj: r, kind: k})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no objects passed to apply")
	}
	return out, nil
}

// priorState is what was stored under an object's name before the apply.
type priorState struct {
	known   bool // the lookup answered (found or not found)
	found   bool
	rv      string
	created string
}

func objectKey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

// lookupPrior reads what each object is before the apply, to tell created,
// configured and unchanged apart afterwards (a few reads at a time).
func lookupPrior(ctx context.Context, c *client.HTTPClient, ms []manifest) (map[string]priorState, error) {
	out := make(map[string]priorState, len(ms))
	// No leader: the apply would fail the same way, after as long a wait.
	var unavailable error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, m := range ms {
		meta := m.obj.GetMetadata()
		key := objectKey(m.kind.Kind, meta.GetNamespace(), meta.GetName())
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var p priorState
			raw, err := c.GetConsistent(ctx, m.kind.Plural, meta.GetNamespace(), meta.GetName())
			var he *api.HTTPError
			switch {
			case err == nil:
				if r, _, derr := decodeObject(raw); derr == nil {
					p = priorState{known: true, found: true, rv: r.GetMetadata().GetResourceVersion(), created: r.GetMetadata().GetCreationTimestamp()}
				}
			case errors.As(err, &he) && he.Code == 404:
				p = priorState{known: true}
			}
			mu.Lock()
			out[key] = p
			if errors.As(err, &he) && he.Code == http.StatusServiceUnavailable && unavailable == nil {
				unavailable = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, unavailable
}

// applyResult says what an apply did to an object: created, configured or
// unchanged. With the object's state before, that is exact: a new object
// (or one recreated since: another creationTimestamp) was created, an
// unchanged one kept its resourceVersion. Without it (the read failed), an
// object of generation 1 created moments ago counts as created.
func applyResult(before priorState, after *api.ObjectMeta, started time.Time) string {
	if before.known {
		switch {
		case !before.found:
			return "created"
		case after.GetCreationTimestamp() != before.created:
			return "created"
		case after.GetResourceVersion() == before.rv:
			return "unchanged"
		}
		return "configured"
	}
	if after.GetGeneration() == 1 {
		if t, ok := parseTime(after.GetCreationTimestamp()); ok && !t.Before(started.Add(-time.Minute)) {
			return "created"
		}
	}
	return "configured"
}

// manifestBody joins objects into one YAML stream, the body of one apply.
func manifestBody(ms []manifest) ([]byte, error) {
	var b bytes.Buffer
	for _, m := range ms {
		j, err := api.MarshalJSON(m.obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", m.file, err)
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", m.file, err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}

func (o *applyOptions) run(cmd *cobra.Command) error {
	if err := checkOutput(o.output, "", "json", "yaml", "name"); err != nil {
		return err
	}
	ms, err := o.g.readManifests(o.files, cmd.InOrStdin())
	if err != nil {
		return err
	}
	body, err := manifestBody(ms)
	if err != nil {
		return err
	}
	c, err := o.g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cmd.Context()
	out := cmd.OutOrStdout()

	var before map[string]priorState
	if o.output == "" {
		if before, err = lookupPrior(ctx, c, ms); err != nil {
			return err
		}
	}
	started := now()
	items, err := c.Apply(ctx, body, client.ApplyOptions{})
	if err != nil {
		return err
	}
	if o.output != "" {
		return writeObjects(out, o.output, items, "", false)
	}
	for _, raw := range items {
		r, k, err := decodeObject(raw)
		if err != nil {
			return err
		}
		m := r.GetMetadata()
		verb := applyResult(before[objectKey(k.Kind, m.GetNamespace(), m.GetName())], m, started)
		fmt.Fprintf(out, "%s/%s %s\n", qualifiedKind(k), m.GetName(), verb)
	}
	return nil
}
