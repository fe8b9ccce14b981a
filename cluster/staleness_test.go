package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// A replica cut off from the leader answers default reads only until the
// bound; after it, it refuses them with the reason.
func TestDefaultReadStalenessBounded(t *testing.T) {
	nodes, res := testCluster(t, 3, "127.0.84.")
	ctx := context.Background()
	admin := adminClient(t, res, nodes[0].c.APIAddress())
	waitFor(t, 20*time.Second, "3 voters", func() (bool, string) {
		roles, seen := nodeTable(ctx, admin)
		_, v, _, r := countRoles(roles)
		return v == 3 && r == 3, seen
	})
	if _, err := admin.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{api.Wrap(&api.Service{
		Metadata: &api.ObjectMeta{Name: "before"},
		Spec:     &api.ServiceSpec{Ports: []*api.ServicePort{{Port: 80}}},
	})}}); err != nil {
		t.Fatal(err)
	}
	// Keep one follower; stop the others: no leader any more.
	survivor := -1
	for i, n := range nodes {
		if !n.c.isLeader() && survivor < 0 {
			survivor = i
		}
	}
	waitFor(t, 10*time.Second, "the survivor has the write", func() (bool, string) {
		return nodes[survivor].c.state.Get("Service", "default", "before") != nil, ""
	})
	// Watches through the survivor: a user's, and its own agent's.
	cl := adminClient(t, res, nodes[survivor].c.APIAddress())
	self, err := nodes[survivor].c.SelfClient()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancelWatches := context.WithCancel(ctx)
	defer cancelWatches()
	userWatch, err := cl.Watch(wctx, &api.WatchRequest{Kind: "Service"})
	if err != nil {
		t.Fatal(err)
	}
	selfWatch, err := self.Watch(wctx, &api.WatchRequest{Kind: "Service"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []api.Shoal_WatchClient{userWatch, selfWatch} {
		if ev, err := w.Recv(); err != nil || ev.Object.GetService().GetMetadata().GetName() != "before" {
			t.Fatalf("watch through the survivor: %v, %v", ev, err)
		}
	}
	for i, n := range nodes {
		if i != survivor {
			n.stop()
		}
	}
	stopped := time.Now()
	if _, err := cl.Get(ctx, &api.GetRequest{Kind: "Service", Name: "before"}); err != nil {
		t.Fatalf("a default read right after the leader went: %v", err)
	}
	var last error
	waitFor(t, DefaultMaxReadStaleness+10*time.Second, "default reads refused once the bound has passed", func() (bool, string) {
		_, last = cl.Get(ctx, &api.GetRequest{Kind: "Service", Name: "before"})
		return status.Code(last) == codes.Unavailable, "last: " + errString(last)
	})
	// The bound counts from the last contact, which was before the stop
	// returned: a little slack.
	if since := time.Since(stopped); since < DefaultMaxReadStaleness-time.Second {
		t.Fatalf("refused after %v, well before the bound %v: %v", since, DefaultMaxReadStaleness, last)
	}
	if !strings.Contains(last.Error(), "last heard from the raft leader") {
		t.Fatalf("refusal without the reason: %v", last)
	}
	if _, err := cl.List(ctx, &api.ListRequest{Kind: "Service"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("list past the bound: %v; want Unavailable", err)
	}
	// The user's watch ends with the reason, so that its client moves to
	// another node; a new one is refused.
	if ev, err := userWatch.Recv(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "last heard from the raft leader") {
		t.Fatalf("a watch through the node past the bound: %v, %v; want Unavailable with the reason", ev, err)
	}
	if w, err := cl.Watch(ctx, &api.WatchRequest{Kind: "Service"}); err == nil {
		if _, err = w.Recv(); status.Code(err) != codes.Unavailable {
			t.Fatalf("a new watch past the bound: %v; want Unavailable", err)
		}
	}
	// The node's own agent still reads and watches what it has.
	if _, err := self.Get(ctx, &api.GetRequest{Kind: "Service", Name: "before"}); err != nil {
		t.Fatalf("the node's own read past the bound: %v", err)
	}
	if _, err := self.List(ctx, &api.ListRequest{Kind: "Service"}); err != nil {
		t.Fatalf("the node's own list past the bound: %v", err)
	}
	// The watches check once a second: let the agent's pass two more
	// checks past the bound before ending it here.
	time.Sleep(2 * time.Second)
	cancelWatches()
	if _, err := selfWatch.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("the node's own watch past the bound ended by itself: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
