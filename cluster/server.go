package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// forwardedKey marks a call one node forwarded to the leader, so that the
// receiver never forwards it again.
const forwardedKey = "x-shoal-forwarded"

func isForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// notLeaderMessage is what a node answers to a forwarded call it cannot
// serve because it no longer leads; the forwarder retries elsewhere.
const notLeaderMessage = "this node is not the leader"

// retryableForward reports whether a forwarded call certainly did not take
// effect, so that sending it again cannot apply it twice.
func retryableForward(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	msg := st.Message()
	return strings.Contains(msg, notLeaderMessage) || strings.Contains(msg, "while dialing") ||
		strings.Contains(msg, "connection refused")
}

// maxLeaderWait bounds how long a call waits for a leader, also when the
// caller would wait longer: an election takes a second or two, so a node
// that finds no leader for this long is cut off from the majority, and its
// caller is better told so than left waiting.
const maxLeaderWait = 15 * time.Second

// onLeader runs local when this node leads, or remote against the leader's
// API (addr) when another does, waiting for a leader to exist.
func (c *Cluster) onLeader(ctx context.Context, method string, local func(context.Context) error, remote func(ctx context.Context, addr string) error) error {
	ctx, cancel := context.WithTimeout(ctx, maxLeaderWait)
	defer cancel()
	var last error
	for {
		switch {
		case c.isLeader() && local != nil:
			err := local(ctx)
			if !errors.Is(err, errNotLeader) {
				return err
			}
			last = err
		case isForwarded(ctx):
			return status.Error(codes.Unavailable, notLeaderMessage)
		default:
			if addr := c.leaderAPI(); addr != "" && addr != c.id.apiAddr() {
				c.metrics.forwarded.WithLabelValues(method).Inc()
				fctx := metadata.AppendToOutgoingContext(ctx, forwardedKey, c.id.Name)
				err := remote(fctx, addr)
				if !retryableForward(err) {
					return err
				}
				last = err
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = errors.New("no leader elected")
			}
			return status.Errorf(codes.Unavailable, "no leader reachable from node %s within %v (is it cut off from the majority of voters?): %v", c.id.Name, maxLeaderWait, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readBarrier makes the next local read linearizable: the leader confirms
// with a quorum that it still leads, then waits until it has applied
// everything committed before the read began (raft's read index).
func (c *Cluster) readBarrier(ctx context.Context) error {
	if !c.isLeaderReady() {
		return errNotLeader
	}
	idx := c.raft.raft.CommitIndex()
	if err := c.raft.raft.VerifyLeader().Error(); err != nil {
		return errNotLeader
	}
	for c.raft.raft.AppliedIndex() < idx {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// write proposes a transaction through the leader's raft log.
func (c *Cluster) write(ctx context.Context, txn *storepb.Txn) ([]*api.Object, error) {
	res, err := c.propose(ctx, txn)
	if err != nil {
		return nil, err
	}
	if res.Code != 0 {
		return nil, status.Error(codes.Code(res.Code), res.Message)
	}
	for _, o := range res.Objects {
		api.SetTypeMeta(o.Resource())
	}
	return res.Objects, nil
}

// apiServer implements the Shoal API on every node.
type apiServer struct {
	api.UnimplementedShoalServer
	c *Cluster
}

func kindInfo(name string) (api.KindInfo, error) {
	if name == "" {
		return api.KindInfo{}, status.Error(codes.InvalidArgument, "kind required")
	}
	k, ok := api.LookupKind(name)
	if !ok {
		return api.KindInfo{}, status.Errorf(codes.InvalidArgument, "unknown kind %q", name)
	}
	return k, nil
}

func namespaceFor(k api.KindInfo, ns string) string {
	if !k.Namespaced {
		return ""
	}
	if ns == "" {
		return api.DefaultNamespace
	}
	return ns
}

// maxObjectsPerApply bounds one Apply.
const maxObjectsPerApply = 1000

func (s *apiServer) Apply(ctx context.Context, req *api.ApplyRequest) (*api.ApplyResponse, error) {
	if len(req.Objects) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no objects to apply")
	}
	if len(req.Objects) > maxObjectsPerApply {
		return nil, status.Errorf(codes.InvalidArgument, "%d objects in one apply; at most %d", len(req.Objects), maxObjectsPerApply)
	}
	txn := &storepb.Txn{TimeUnixNano: time.Now().UnixNano()}
	for i, o := range req.Objects {
		r := o.Resource()
		if r == nil {
			return nil, status.Errorf(codes.InvalidArgument, "object %d is empty", i+1)
		}
		r = proto.Clone(r).(api.Resource)
		if r.GetMetadata() == nil {
			return nil, status.Errorf(codes.InvalidArgument, "object %d (%s): metadata.name: required", i+1, api.KindOf(r))
		}
		k := api.MustKind(api.KindOf(r))
		if req.Status {
			r.GetMetadata().Namespace = namespaceFor(k, r.GetMetadata().GetNamespace())
			if r.GetMetadata().GetName() == "" {
				return nil, status.Errorf(codes.InvalidArgument, "object %d (%s): metadata.name: required", i+1, k.Kind)
			}
		} else {
			api.Default(r)
			if err := api.Validate(r); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "%s %s: %v", k.Kind, api.KeyOf(r), err)
			}
		}
		txn.Ops = append(txn.Ops, &storepb.Op{
			Type:            storepb.Op_PUT,
			Object:          api.Wrap(r),
			ResourceVersion: r.GetMetadata().GetResourceVersion(),
			CreateOnly:      req.CreateOnly,
			StatusOnly:      req.Status,
			NewUid:          uuid.NewString(),
		})
	}
	var out *api.ApplyResponse
	err := s.c.onLeader(ctx, "Apply", func(ctx context.Context) error {
		if req.Status {
			var err error
			out, err = s.c.writeEach(ctx, txn)
			return err
		}
		objs, err := s.c.write(ctx, txn)
		out = &api.ApplyResponse{Objects: objs}
		return err
	}, func(ctx context.Context, addr string) error {
		cl, err := s.c.peers.client(addr)
		if err != nil {
			return err
		}
		out, err = cl.Apply(ctx, req)
		return err
	})
	return out, err
}

// writeEach proposes each op of txn as a transaction of its own (they still
// share raft entries) and reports which failed.
func (c *Cluster) writeEach(ctx context.Context, txn *storepb.Txn) (*api.ApplyResponse, error) {
	type result struct {
		res *storepb.TxnResult
		err error
	}
	results := make([]result, len(txn.Ops))
	var wg sync.WaitGroup
	for i, op := range txn.Ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.propose(ctx, &storepb.Txn{TimeUnixNano: txn.TimeUnixNano, Ops: []*storepb.Op{op}})
			results[i] = result{res, err}
		}()
	}
	wg.Wait()
	out := &api.ApplyResponse{}
	for i, r := range results {
		switch {
		case r.err != nil:
			// Not proposed (no longer the leader) or outcome unknown: the
			// whole call fails and the caller retries.
			return nil, r.err
		case r.res.Code != 0:
			out.Failures = append(out.Failures, &api.ApplyFailure{Index: int32(i), Code: r.res.Code, Message: r.res.Message})
		default:
			for _, o := range r.res.Objects {
				api.SetTypeMeta(o.Resource())
				out.Objects = append(out.Objects, o)
			}
		}
	}
	return out, nil
}

func notFound(k api.KindInfo, ns, name string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", k.Plural, name)
}

func (s *apiServer) Get(ctx context.Context, req *api.GetRequest) (*api.Object, error) {
	k, err := kindInfo(req.Kind)
	if err != nil {
		return nil, err
	}
	ns := namespaceFor(k, req.Namespace)
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name required")
	}
	read := func() (*api.Object, error) {
		r := s.c.state.Get(k.Kind, ns, req.Name)
		if r == nil {
			return nil, notFound(k, ns, req.Name)
		}
		r = proto.Clone(r).(api.Resource)
		api.SetTypeMeta(r)
		return api.Wrap(r), nil
	}
	if !req.Consistent {
		if cl, fctx, err := s.c.remoteReader(ctx); err != nil || cl != nil {
			if err != nil {
				return nil, err
			}
			out, err := cl.Get(fctx, req)
			s.c.replicaFailed(err)
			return out, err
		}
		if err := s.c.checkReadStaleness(ctx); err != nil {
			return nil, err
		}
		return read()
	}
	var out *api.Object
	err = s.c.onLeader(ctx, "Get", func(ctx context.Context) error {
		if err := s.c.readBarrier(ctx); err != nil {
			return err
		}
		var err error
		out, err = read()
		return err
	}, func(ctx context.Context, addr string) error {
		cl, err := s.c.peers.client(addr)
		if err != nil {
			return err
		}
		out, err = cl.Get(ctx, req)
		return err
	})
	return out, err
}

func (s *apiServer) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	k, err := kindInfo(req.Kind)
	if err != nil {
		return nil, err
	}
	match, err := api.ParseSelector(req.LabelSelector)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "labelSelector: %v", err)
	}
	ns := ""
	if k.Namespaced {
		ns = req.Namespace
	}
	read := func() *api.ListResponse {
		objs, idx := s.c.state.List(k.Kind, ns, req.NodeName)
		out := &api.ListResponse{ResourceVersion: fmt.Sprint(idx), Items: make([]*api.Object, 0, len(objs))}
		for _, r := range objs {
			if match != nil && !match(r.GetMetadata().GetLabels()) {
				continue
			}
			r = proto.Clone(r).(api.Resource)
			api.SetTypeMeta(r)
			out.Items = append(out.Items, api.Wrap(r))
		}
		return out
	}
	if !req.Consistent {
		if cl, fctx, err := s.c.remoteReader(ctx); err != nil || cl != nil {
			if err != nil {
				return nil, err
			}
			out, err := cl.List(fctx, req)
			s.c.replicaFailed(err)
			return out, err
		}
		if err := s.c.checkReadStaleness(ctx); err != nil {
			return nil, err
		}
		return read(), nil
	}
	var out *api.ListResponse
	err = s.c.onLeader(ctx, "List", func(ctx context.Context) error {
		if err := s.c.readBarrier(ctx); err != nil {
			return err
		}
		out = read()
		return nil
	}, func(ctx context.Context, addr string) error {
		cl, err := s.c.peers.client(addr)
		if err != nil {
			return err
		}
		out, err = cl.List(ctx, req)
		return err
	})
	return out, err
}

func (s *apiServer) Delete(ctx context.Context, req *api.DeleteRequest) (*api.DeleteResponse, error) {
	k, err := kindInfo(req.Kind)
	if err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name required")
	}
	if g := req.GracePeriodSeconds; g != nil && *g < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "gracePeriodSeconds: must be 0 or more, got %d", *g)
	}
	op := &storepb.Op{
		Type: storepb.Op_DELETE, Kind: k.Kind, Namespace: namespaceFor(k, req.Namespace), Name: req.Name,
		ResourceVersion: req.ResourceVersion,
	}
	// A pod on a node is stopped by that node before it goes (unless the
	// caller forces it with a grace of 0).
	if k.Kind == "Pod" && (req.GracePeriodSeconds == nil || *req.GracePeriodSeconds > 0) {
		op.Graceful, op.GraceSeconds = true, -1
		if req.GracePeriodSeconds != nil {
			op.GraceSeconds = *req.GracePeriodSeconds
		}
	}
	txn := &storepb.Txn{TimeUnixNano: time.Now().UnixNano(), Ops: []*storepb.Op{op}}
	var out *api.DeleteResponse
	err = s.c.onLeader(ctx, "Delete", func(ctx context.Context) error {
		objs, err := s.c.write(ctx, txn)
		if err == nil && len(objs) == 1 {
			out = &api.DeleteResponse{Object: objs[0]}
		}
		return err
	}, func(ctx context.Context, addr string) error {
		cl, err := s.c.peers.client(addr)
		if err != nil {
			return err
		}
		out, err = cl.Delete(ctx, req)
		return err
	})
	return out, err
}

// watchBookmarkEvery is how long a watch that asked for bookmarks stays
// quiet before it gets one.
const watchBookmarkEvery = 5 * time.Second

func (s *apiServer) Watch(req *api.WatchRequest, stream grpc.ServerStreamingServer[api.WatchEvent]) error {
	ctx := stream.Context()
	if cl, fctx, err := s.c.remoteReader(ctx); err != nil || cl != nil {
		if err != nil {
			return err
		}
		err := relayWatch(fctx, cl, req, stream)
		s.c.replicaFailed(err)
		return err
	}
	// A watch is a default read that goes on: served from this replica
	// only while the replica can vouch for it, so a watch through a node
	// cut off from the leader ends (and its client moves to another node)
	// instead of going silent.
	if err := s.c.checkReadStaleness(ctx); err != nil {
		return err
	}
	var kinds []api.KindInfo
	if req.Kind == "" {
		kinds = api.Kinds()
	} else {
		k, err := kindInfo(req.Kind)
		if err != nil {
			return err
		}
		kinds = []api.KindInfo{k}
	}
	wantKind := map[string]bool{}
	for _, k := range kinds {
		wantKind[k.Kind] = true
	}
	matchObj := func(r api.Resource) bool {
		if req.Namespace != "" && r.GetMetadata().GetNamespace() != "" && r.GetMetadata().GetNamespace() != req.Namespace {
			return false
		}
		if req.NodeName != "" {
			p, ok := r.(*api.Pod)
			return ok && p.GetSpec().GetNodeName() == req.NodeName
		}
		return true
	}
	lastSent := time.Now()
	send := func(typ string, r api.Resource, pos string) error {
		r = proto.Clone(r).(api.Resource)
		api.SetTypeMeta(r)
		lastSent = time.Now()
		return stream.Send(&api.WatchEvent{Type: typ, Object: api.Wrap(r), ResourceVersion: pos})
	}
	var from WatchPosition
	if req.ResourceVersion == "" {
		// Like Kubernetes: the current state as ADDED events, then changes,
		// all kinds read at one index. Only the last of them carries the
		// index: a stream broken before it cannot resume from any of them
		// (the rest of the state is not in the change log), so their
		// resourceVersion is empty, which starts over.
		names := make([]string, len(kinds))
		for i, k := range kinds {
			names[i] = k.Kind
		}
		objs, idx := s.c.state.ListKinds(names, req.Namespace, req.NodeName)
		var listed []api.Resource
		for _, r := range objs {
			if matchObj(r) {
				listed = append(listed, r)
			}
		}
		for i, r := range listed {
			pos := ""
			if i == len(listed)-1 {
				pos = strconv.FormatUint(idx, 10)
			}
			if err := send("ADDED", r, pos); err != nil {
				return err
			}
		}
		from = WatchPosition{Index: idx}
	} else {
		var err error
		if from, err = ParseWatchPosition(req.ResourceVersion); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	staleCheck := time.NewTicker(time.Second)
	defer staleCheck.Stop()
	for {
		evs, next, changed, err := s.c.state.EventsSince(from, func(e Event) bool {
			return wantKind[api.KindOf(e.Object)] && matchObj(e.Object)
		})
		if err != nil {
			return err
		}
		for i, e := range evs {
			// The event's resourceVersion is where a watch resumes after
			// it: the plain index once nothing later in its entry is for
			// this stream, else index.seq.
			pos := WatchPosition{Index: e.Index}
			if i+1 < len(evs) && evs[i+1].Index == e.Index {
				pos.Seq = e.Seq
			}
			if err := send(e.Type, e.Object, pos.String()); err != nil {
				return err
			}
		}
		from = next
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-staleCheck.C:
			if err := s.c.checkReadStaleness(ctx); err != nil {
				return err
			}
			if req.AllowBookmarks && time.Since(lastSent) >= watchBookmarkEvery {
				lastSent = time.Now()
				if err := stream.Send(&api.WatchEvent{Type: "BOOKMARK", ResourceVersion: from.String()}); err != nil {
					return err
				}
			}
		}
	}
}

func (s *apiServer) Token(ctx context.Context, req *api.TokenRequest) (*api.TokenResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var out *api.TokenResponse
	err := s.c.onLeader(ctx, "Token", func(ctx context.Context) error {
		sec := s.c.state.Secrets()
		if sec == nil {
			return status.Error(codes.Unavailable, "the cluster is still starting")
		}
		if req.Rotate {
			secret, err := NewJoinSecret()
			if err != nil {
				return err
			}
			// Through updateSecrets: a node revoked at the same moment
			// stays revoked.
			next, err := s.c.updateSecrets(ctx, func(next *storepb.ClusterSecrets) bool {
				next.JoinSecret = secret
				return true
			})
			if err != nil {
				return err
			}
			s.c.log.Info("join token rotated")
			sec = next
		}
		tok, err := tokenFrom(sec)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		out = &api.TokenResponse{Token: tok}
		for _, m := range s.c.members.Members() {
			if m.Alive {
				out.Endpoints = append(out.Endpoints, m.Meta.API)
			}
		}
		return nil
	}, func(ctx context.Context, addr string) error {
		cl, err := s.c.peers.client(addr)
		if err != nil {
			return err
		}
		out, err = cl.Token(ctx, req)
		return err
	})
	return out, err
}

func (s *apiServer) RemoveNode(ctx context.Context, req *api.RemoveNodeRequest) (*api.RemoveNodeResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "node name required")
	}
	err := s.c.onLeader(ctx, "RemoveNode", func(ctx context.Context) error {
		return s.c.removeNode(ctx, req.Name)
	}, func(ctx context.Context, addr string) error {
		cl, err := s.c.peers.client(addr)
		if err != nil {
			return err
		}
		_, err = cl.RemoveNode(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &api.RemoveNodeResponse{}, nil
}

func (s *apiServer) Version(ctx context.Context, req *api.VersionRequest) (*api.VersionResponse, error) {
	out := &api.VersionResponse{Version: s.c.cfg.Version, Node: s.c.id.Name}
	if _, id := s.c.raft.raft.LeaderWithID(); id != "" {
		if string(id) == s.c.id.ID {
			out.Leader = s.c.id.Name
		} else if m, ok := s.c.members.Member(string(id)); ok {
			out.Leader = m.Meta.Name
		}
	}
	return out, nil
}
