// Command podtrace watches pods and prints, per pod, when it was created,
// bound, Running and Ready, relative to the start: a tool for finding
// where a rollout's time goes.
//
//	go run ./hack/podtrace -l app=web -for 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

type trace struct {
	name                                  string
	node                                  string
	added, bound, running, ready, deleted time.Duration
}

func main() {
	sel := flag.String("l", "", "label selector")
	dur := flag.Duration("for", 30*time.Second, "how long to watch")
	flag.Parse()
	cfg, err := client.LoadConfig(client.DefaultConfigPath())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := client.NewHTTPClient(cfg, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	l, err := c.ListObjects(ctx, "pods", "default", client.ListOptions{LabelSelector: *sel})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w, err := c.Watch(ctx, "pods", "default", client.WatchOptions{ResourceVersion: l.ResourceVersion, LabelSelector: *sel})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	fmt.Fprintln(os.Stderr, "watching")
	traces := map[string]*trace{}
	for {
		ev, err := w.Next()
		if err != nil {
			break
		}
		var p api.Pod
		if err := api.UnmarshalJSON(ev.Object, &p); err != nil {
			continue
		}
		at := time.Since(start)
		t := traces[p.GetMetadata().GetName()]
		if t == nil {
			t = &trace{name: p.GetMetadata().GetName(), added: -1, bound: -1, running: -1, ready: -1, deleted: -1}
			traces[t.name] = t
		}
		if ev.Type == "ADDED" && t.added < 0 {
			t.added = at
		}
		if ev.Type == "DELETED" {
			t.deleted = at
			continue
		}
		if p.GetSpec().GetNodeName() != "" && t.bound < 0 {
			t.bound, t.node = at, p.GetSpec().GetNodeName()
		}
		if p.GetStatus().GetPhase() == "Running" && t.running < 0 {
			t.running = at
		}
		for _, cnd := range p.GetStatus().GetConditions() {
			if cnd.Type == "Ready" && cnd.Status == "True" && t.ready < 0 {
				t.ready = at
			}
		}
	}
	var all []*trace
	for _, t := range traces {
		all = append(all, t)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].added < all[j].added })
	ms := func(d time.Duration) string {
		if d < 0 {
			return "-"
		}
		return fmt.Sprintf("%d", d.Milliseconds())
	}
	fmt.Printf("%-28s %-12s %8s %8s %8s %8s %8s\n", "POD", "NODE", "ADDED", "BOUND", "RUNNING", "READY", "DELETED")
	for _, t := range all {
		fmt.Printf("%-28s %-12s %8s %8s %8s %8s %8s\n", t.name, t.node, ms(t.added), ms(t.bound), ms(t.running), ms(t.ready), ms(t.deleted))
	}
}
