package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// raftConfig is tuned for a LAN: a dead leader is noticed within about a
// second and a new one elected soon after, while a busy machine does not
// make a healthy leader step down.
func raftConfig(nodeID string, trailingLogs uint64, logger hclog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(nodeID)
	c.HeartbeatTimeout = 1000 * time.Millisecond
	c.ElectionTimeout = 1000 * time.Millisecond
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	// Raft's default: lower makes an idle leader message its followers
	// every few milliseconds.
	c.CommitTimeout = 50 * time.Millisecond
	c.MaxAppendEntries = 128
	c.BatchApplyCh = true
	c.SnapshotInterval = 30 * time.Second
	c.SnapshotThreshold = 8192
	c.TrailingLogs = trailingLogs
	c.Logger = logger
	return c
}

// tlsStreamLayer carries raft's RPCs over mutual TLS: both ends present node
// certificates of this cluster's CA.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	creds     NodeCredentials
}

func newTLSStreamLayer(bind string, advertise net.Addr, creds NodeCredentials) (*tlsStreamLayer, error) {
	cfg, err := PeerServerTLS(creds)
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", bind, cfg)
	if err != nil {
		return nil, fmt.Errorf("raft listen on %s: %w", bind, err)
	}
	return &tlsStreamLayer{ln: ln, advertise: advertise, creds: creds}, nil
}

func (t *tlsStreamLayer) Accept() (net.Conn, error) {
	return t.creds.guardConn("raft server")(t.ln.Accept())
}
func (t *tlsStreamLayer) Close() error   { return t.ln.Close() }
func (t *tlsStreamLayer) Addr() net.Addr { return t.advertise }

func (t *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	cfg, err := PeerClientTLSFor(t.creds, string(address))
	if err != nil {
		return nil, err
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	return t.creds.guardConn("raft client")(d.Dial("tcp", string(address)))
}

// raftNode is the raft instance with its stores.
type raftNode struct {
	raft      *raft.Raft
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore
}

// openRaft starts raft on the data directory. bootstrap makes this node the
// single voter of a new cluster when it has no state yet.
func openRaft(dir, nodeID, bind string, advertise net.Addr, creds NodeCredentials, f raft.FSM, bootstrap bool, trailingLogs uint64, log *slog.Logger) (*raftNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft data directory: %w", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{log.With("component", "raft")}})
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("raft log store: %w", err)
	}
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft snapshot store: %w", err)
	}
	snaps, err := newOwnerOnlySnapshots(fileSnaps, dir) // snapshots hold the CA key
	if err != nil {
		store.Close()
		return nil, err
	}
	layer, err := newTLSStreamLayer(bind, advertise, creds)
	if err != nil {
		store.Close()
		return nil, err
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          layer,
		MaxPool:         4,
		Timeout:         5 * time.Second,
		Logger:          logger,
		MaxRPCsInFlight: 64,
	})
	cfg := raftConfig(nodeID, trailingLogs, logger)
	if bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			transport.Close()
			store.Close()
			return nil, fmt.Errorf("raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(nodeID), Address: raft.ServerAddress(advertise.String()), Suffrage: raft.Voter}}}
			if err := raft.BootstrapCluster(cfg, store, store, snaps, transport, conf); err != nil {
				transport.Close()
				store.Close()
				return nil, fmt.Errorf("raft bootstrap: %w", err)
			}
		}
	}
	// Followers are sent recent entries from memory, not read back from
	// bolt and decoded again.
	logs, err := raft.NewLogCache(1024, store)
	if err != nil {
		transport.Close()
		store.Close()
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	r, err := raft.NewRaft(cfg, f, logs, store, snaps, transport)
	if err != nil {
		transport.Close()
		store.Close()
		return nil, fmt.Errorf("raft: %w", err)
	}
	return &raftNode{raft: r, transport: transport, store: store}, nil
}

func (n *raftNode) close() error {
	err := n.raft.Shutdown().Error()
	err = errors.Join(err, n.transport.Close(), n.store.Close())
	return err
}

// slogWriter turns a library's log lines into slog records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	for len(msg) > 0 && (msg[len(msg)-1] == '\n') {
		msg = msg[:len(msg)-1]
	}
	w.log.Info(msg)
	return len(p), nil
}

var _ io.Writer = slogWriter{}
