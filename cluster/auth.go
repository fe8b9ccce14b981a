package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// caller is who made an API call, from its verified client certificate.
type caller struct {
	Name    string
	IsNode  bool
	IsAdmin bool
}

func callerFrom(ctx context.Context) (caller, bool) {
	leaf := peerLeaf(ctx)
	if leaf == nil {
		return caller{}, false
	}
	name, isNode, isAdmin := PeerIdentity(leaf)
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

// authenticate lets a call through when it comes with a verified client
// certificate that is not revoked. The check of the revocation list runs on
// every call, not only at the handshake: a connection made before its node
// was removed is refused from the next call on.
func (c *Cluster) authenticate(ctx context.Context, method string) error {
	if method == joinMethod || method == removedMethod {
		return nil
	}
	leaf := peerLeaf(ctx)
	if leaf == nil {
		return status.Error(codes.Unauthenticated, "a client certificate of this cluster is required")
	}
	if c.sec.live != nil {
		if err := c.sec.live.check("API", leaf); err != nil {
			return status.Errorf(codes.PermissionDenied, "certificate of %q refused: %v", leaf.Subject.CommonName, err)
		}
	}
	return c.fencedError()
}

// httpRefused answers an HTTP request that comes without a verified client
// certificate, or with a revoked one, and reports whether it did.
func (c *Cluster) httpRefused(w http.ResponseWriter, r *http.Request) bool {
	code, msg := c.httpAuthError(r.TLS)
	if code == 0 {
		return false
	}
	body, _ := json.Marshal(struct {
		Kind    string `json:"kind"`
		Code    int    `json:"code"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}{"Status", code, strings.ReplaceAll(http.StatusText(code), " ", ""), msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
	return true
}

// httpAuthError is authenticate for an HTTP request: 0 when it may go on,
// else the status and message to answer with.
func (c *Cluster) httpAuthError(cs *tls.ConnectionState) (int, string) {
	if cs == nil {
		return http.StatusUnauthorized, "a client certificate of this cluster is required"
	}
	leaf := verifiedLeaf(*cs)
	if leaf == nil {
		return http.StatusUnauthorized, "a client certificate of this cluster is required"
	}
	if c.sec.live != nil {
		if err := c.sec.live.check("API", leaf); err != nil {
			return http.StatusForbidden, fmt.Sprintf("certificate of %q refused: %v", leaf.Subject.CommonName, err)
		}
	}
	if r := c.Fenced(); r != "" {
		return http.StatusPreconditionFailed, r
	}
	return 0, ""
}

// unaryInterceptor authenticates every call but joining and counts it.
func (c *Cluster) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	method := path.Base(info.FullMethod)
	resp, err := func() (any, error) {
		if err := c.authenticate(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}()
	c.metrics.apiLatency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	c.metrics.apiRequests.WithLabelValues(method, status.Code(err).String()).Inc()
	return resp, err
}

func (c *Cluster) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := c.authenticate(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, ss)
	}
	c.metrics.apiRequests.WithLabelValues(path.Base(info.FullMethod), status.Code(err).String()).Inc()
	return err
}
