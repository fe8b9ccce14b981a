package cluster

import (
	"context"
	"path"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// caller is who made an API call, from its verified client certificate.
type caller struct {
	Name    string
	IsNode  bool
	IsAdmin bool
}

func callerFrom(ctx context.Context) (caller, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return caller{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return caller{}, false
	}
	name, isNode, isAdmin := PeerIdentity(info.State.VerifiedChains[0][0])
	return caller{Name: name, IsNode: isNode, IsAdmin: isAdmin}, true
}

// requireAdmin lets through administrators, and nodes forwarding a call an
// administrator made to them.
func requireAdmin(ctx context.Context) error {
	c, ok := callerFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "a client certificate of this cluster is required")
	}
	if c.IsAdmin || (c.IsNode && isForwarded(ctx)) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s may not do this: administrators only", c.Name)
}

// joinMethod is the one call that needs no client certificate.
const joinMethod = "/shoal.v1.Join/Join"

func authenticate(ctx context.Context, method string) error {
	if method == joinMethod {
		return nil
	}
	if _, ok := callerFrom(ctx); !ok {
		return status.Error(codes.Unauthenticated, "a client certificate of this cluster is required")
	}
	return nil
}

// unaryInterceptor authenticates every call but joining and counts it.
func (c *Cluster) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	method := path.Base(info.FullMethod)
	resp, err := func() (any, error) {
		if err := authenticate(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}()
	c.metrics.apiLatency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	c.metrics.apiRequests.WithLabelValues(method, status.Code(err).String()).Inc()
	return resp, err
}

func (c *Cluster) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := authenticate(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, ss)
	}
	c.metrics.apiRequests.WithLabelValues(path.Base(info.FullMethod), status.Code(err).String()).Inc()
	return err
}
