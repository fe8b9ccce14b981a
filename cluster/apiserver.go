package cluster

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/net/http2"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/shoalproj/shoal/api"
)

// listenAPI binds the API port early, so that a port in use fails the
// start and clients can connect as soon as Start returns.
func (c *Cluster) listenAPI() error {
	bind := net.JoinHostPort(c.id.BindAddr, strconv.Itoa(c.id.APIPort))
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return fmt.Errorf("API listen on %s: %w", bind, err)
	}
	c.apiListener = ln
	return nil
}

// SelfClient is a gRPC client of this node's own API, as this node (the
// agent's view of the cluster: it works on nodes outside the replicas too).
func (c *Cluster) SelfClient() (api.ShoalClient, error) {
	return c.peers.client(c.id.apiAddr())
}

// PodCIDR is the cluster's pod CIDR, as --init chose it.
func (c *Cluster) PodCIDR() string {
	if st := c.state.Settings(); st != nil && st.PodCidr != "" {
		return st.PodCidr
	}
	return DefaultPodCIDR
}

// ServiceCIDR is where the cluster's services get their virtual IPs.
func (c *Cluster) ServiceCIDR() string {
	if st := c.state.Settings(); st != nil && st.ServiceCidr != "" {
		return st.ServiceCidr
	}
	return DefaultServiceCIDR
}

// LocalAPI is this node's API server, for in-process callers (the agent).
// Calls run as this node.
func (c *Cluster) LocalAPI() api.ShoalServer { return c.localAPI }

// apiMaxRecvMsgSize is the largest gRPC message the API accepts: twice
// the largest manifest (api.MaxManifestBytes), as its objects are smaller
// as protobuf than as YAML. A larger one is refused with ResourceExhausted
// ("grpc: received message larger than max (N vs. 16777216)"), found from
// the message's length prefix.
const apiMaxRecvMsgSize = 16 << 20

// peerMaxRecvMsgSize bounds what a node takes from another in one
// message: answers (lists, watch events) can be larger than any request.
const peerMaxRecvMsgSize = 256 << 20

// ServeAPI serves the API (gRPC and HTTP/JSON on one TLS port) until ctx
// ends.
func (c *Cluster) ServeAPI(ctx context.Context) error {
	tlsCfg, err := APIServerTLS(c.creds)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(grpc.Creds(acceptedTLS{}),
		grpc.ChainUnaryInterceptor(c.unaryInterceptor), grpc.ChainStreamInterceptor(c.streamInterceptor),
		grpc.MaxRecvMsgSize(apiMaxRecvMsgSize),
		// Peers and clients ping every few seconds (see peers.go); the
		// server pings too, so a caller that vanished ends its streams.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 2 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}))
	srv := c.localAPI
	api.RegisterShoalServer(gs, srv)
	api.RegisterJoinServer(gs, &joinServer{c: c})
	api.RegisterAdminServer(gs, &adminServer{c: c})
	httpAPI := api.NewHTTPHandler(srv)
	metrics := promhttp.HandlerFor(c.cfg.Registry, promhttp.HandlerOpts{})

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			// A gRPC call on a connection that began with HTTP/JSON.
			gs.ServeHTTP(w, r) // the interceptors authenticate
			return
		}
		if r.URL.Path == "/healthz" {
			w.Header().Set("Content-Type", "text/plain")
			if c.Fenced() != "" {
				// The reason goes to callers with a certificate only.
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, "fenced: removed from the cluster")
				return
			}
			fmt.Fprintln(w, "ok")
			return
		}
		if c.httpRefused(w, r) { // no certificate, or a revoked one (auth.go)
			return
		}
		if r.URL.Path == "/metrics" {
			metrics.ServeHTTP(w, r)
			return
		}
		// The HTTP face gives the server methods the caller's certificate
		// the way gRPC does (peer.FromContext).
		httpAPI.ServeHTTP(w, r)
	})
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Handshakes refused for want of a valid certificate are routine.
		ErrorLog: slog.NewLogLogger(c.log.With("component", "api").Handler(), slog.LevelDebug),
	}
	mux := &apiMux{
		ln:      c.apiListener,
		tlsCfg:  tlsCfg,
		grpcLn:  newChanListener(c.apiListener.Addr()),
		httpLn:  newChanListener(c.apiListener.Addr()),
		h2:      &http2.Server{},
		hs:      hs,
		log:     c.log.With("component", "api"),
		h2Conns: map[net.Conn]bool{},
	}
	errc := make(chan error, 3)
	go func() { errc <- gs.Serve(mux.grpcLn) }()
	go func() { errc <- hs.Serve(mux.httpLn) }()
	go func() { errc <- mux.serve(ctx) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	mux.close()
	_ = hs.Shutdown(sctx)
	gs.Stop()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, net.ErrClosed) && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("API server: %w", serveErr)
	}
	return nil
}
