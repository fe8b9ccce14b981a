package cluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/shoalproj/shoal/api"
)

// peerClients keeps one gRPC connection per peer API, authenticated with
// this node's certificate.
type peerClients struct {
	creds NodeCredentials
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerClients(creds NodeCredentials) *peerClients {
	return &peerClients{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

func (p *peerClients) client(addr string) (api.ShoalClient, error) {
	cc, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return api.NewShoalClient(cc), nil
}

func (p *peerClients) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	cfg, err := NodeClientTLS(p.creds)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg.ServerName = host
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		// A peer cut off mid-stream sends nothing, not even a reset: without
		// pings a relayed watch would wait on it for ever.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
		// Forwarded calls carry what the API port accepts, and their
		// answers (a consistent list, a relayed watch) may be larger than
		// grpc-go's 4 MiB default: a write committed on the leader must
		// not come back as an error because its answer was too big.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(peerMaxRecvMsgSize), grpc.MaxCallSendMsgSize(apiMaxRecvMsgSize)))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = cc
	return cc, nil
}

func (p *peerClients) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, cc := range p.conns {
		cc.Close()
		delete(p.conns, addr)
	}
}

// defaultAdvertiseAddr picks this host's first private IPv4 address (or its
// first public one when it has no private one), as Consul and Nomad do.
func defaultAdvertiseAddr() (string, error) {
	ip, err := sockaddr.GetPrivateIP()
	if err == nil && ip != "" {
		return ip, nil
	}
	ip, err = sockaddr.GetPublicIP()
	if err == nil && ip != "" {
		return ip, nil
	}
	if err == nil {
		err = errors.New("none found")
	}
	return "", fmt.Errorf("choose an advertise address (pass --advertise-addr): %w", err)
}
