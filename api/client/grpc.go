package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// DialTimeout bounds how long one endpoint may take to answer before the
// next configured one is tried.
var DialTimeout = 5 * time.Second

// MaxMessageSize is the largest gRPC message the client accepts (a list of
// many objects can pass the default 4 MiB).
const MaxMessageSize = 64 << 20

// Endpoints returns the API endpoints to try, in order: server alone when it
// is set (an explicit choice, such as --server), otherwise cfg.Server and
// then cfg.Servers, without repeats.
func Endpoints(cfg *Config, server string) []string {
	if server != "" {
		return []string{server}
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range append([]string{cfg.Server}, cfg.Servers...) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Dial connects to the shoal API over gRPC with mutual TLS from cfg. It
// connects to server, or, when server is empty, to cfg.Server and then each
// of cfg.Servers in order until one answers. The connection is ready when
// Dial returns.
func Dial(ctx context.Context, cfg *Config, server string) (*grpc.ClientConn, error) {
	endpoints := Endpoints(cfg, server)
	if len(endpoints) == 0 {
		return nil, errors.New("no API endpoint: the client configuration names no server")
	}
	tlsCfg, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ep := range endpoints {
		conn, err := dialOne(ctx, tlsCfg, ep)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("cannot reach the shoal API: %w", errors.Join(errs...))
}

func dialOne(ctx context.Context, base *tls.Config, endpoint string) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint must be HOST:PORT: %w", err)
	}
	tlsCfg := base.Clone()
	tlsCfg.ServerName = host
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		// A watch on a node that was cut off ends instead of waiting for ever.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	conn.Connect()
	for {
		st := conn.GetState()
		switch st {
		case connectivity.Ready:
			return conn, nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			conn.Close()
			return nil, errors.New("connection failed (unreachable, or the TLS handshake was refused)")
		}
		if !conn.WaitForStateChange(wctx, st) {
			conn.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("no answer within %s", DialTimeout)
		}
	}
}
