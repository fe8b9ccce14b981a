package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/shoalproj/shoal/api"
)

// mirrorKind keeps a copy of every object of kind, by key, until ctx
// ends: a list, then a watch from the list's resourceVersion, and a list
// again when the watch breaks or resync has passed (which also puts back
// whatever a missed event, or someone else, left wrong). onChange gets the
// whole set after the list and after each event; it runs on mirrorKind's
// goroutine and must not keep the map.
func mirrorKind(ctx context.Context, client api.ShoalClient, kind string, resync time.Duration, log *slog.Logger, onChange func(map[string]api.Resource)) {
	for ctx.Err() == nil {
		err := func() error {
			list, err := client.List(ctx, &api.ListRequest{Kind: kind})
			if err != nil {
				return err
			}
			objs := make(map[string]api.Resource, len(list.Items))
			for _, o := range list.Items {
				if r := o.Resource(); r != nil {
					objs[api.KeyOf(r)] = r
				}
			}
			onChange(objs)
			wctx, cancel := context.WithTimeout(ctx, resync)
			defer cancel()
			w, err := client.Watch(wctx, &api.WatchRequest{Kind: kind, ResourceVersion: list.ResourceVersion})
			if err != nil {
				return err
			}
			for {
				ev, err := w.Recv()
				if err != nil {
					return err
				}
				r := ev.GetObject().Resource()
				if r == nil {
					continue
				}
				if ev.Type == "DELETED" {
					delete(objs, api.KeyOf(r))
				} else {
					objs[api.KeyOf(r)] = r
				}
				onChange(objs)
			}
		}()
		if ctx.Err() != nil {
			return
		}
		log.Debug("list again", "kind", kind, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
