package cluster

// Disaster recovery: backups of the store (`shoal snapshot save` and
// `restore`) and bringing back a cluster that lost the majority of its
// voters (`shoal agent --force-new-cluster`).
//
// A snapshot file is a header block of snapshotHeaderSize bytes, then the
// content: exactly what the FSM writes into a raft snapshot (the store's
// index, cluster secrets and settings, then every object). The header block
// is a magic line with the format, then one line of JSON (SnapshotFileHeader)
// padded with spaces, so `head -2 FILE` shows what a file holds. The content
// carries the cluster's CA key, gossip key and join secret: a restored node
// is the same cluster, which the other nodes join again with the same token.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

const (
	// SnapshotFormat is the version of the snapshot file format this shoal
	// writes and reads.
	SnapshotFormat = 1
	// snapshotMagic starts every snapshot file, followed by the format.
	snapshotMagic = "SHOAL-SNAPSHOT "
	// snapshotHeaderSize is the size of the header block before the content.
	snapshotHeaderSize = 4096
	// snapshotChunkSize bounds one message of the Snapshot stream, well
	// below the 4 MiB a gRPC client accepts by default (a relaying node).
	snapshotChunkSize = 1 << 20
	// forceMarkerName records in the data directory that
	// --force-new-cluster was applied, which makes the flag one-shot.
	forceMarkerName = "force-new-cluster.json"
)

// ErrSnapshotCorrupt is wrapped by every error about a snapshot file that is
// not intact: truncated, altered, or not a snapshot.
var ErrSnapshotCorrupt = errors.New("snapshot file is corrupt")

// SnapshotFileHeader describes a snapshot file; it is its header.
type SnapshotFileHeader struct {
	Format    int    `json:"format"`
	ClusterID string `json:"clusterID"`
	// Index is the raft index the snapshot reflects: every object's
	// resourceVersion is at most this.
	Index   uint64 `json:"index"`
	Objects uint64 `json:"objects"`
	// Size and SHA256 (hex) are those of the content after the header.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// CreatedAt is when the serving node read the store.
	CreatedAt time.Time `json:"createdAt"`
	// Node is the node that served it (the leader then).
	Node         string `json:"node"`
	ShoalVersion string `json:"shoalVersion"`
	// Secrets says the content holds the cluster CA key, the gossip key
	// and the join secret (always, in format 1).
	Secrets bool `json:"secrets"`
}

// ---------------------------------------------------------------- serving

// Snapshot streams a consistent snapshot of the store. The leader serves it
// after a read barrier (it confirms its leadership with a quorum and applies
// everything committed), so it includes every write acknowledged before the
// call; other nodes relay the leader's.
func (s *apiServer) Snapshot(req *api.SnapshotRequest, stream grpc.ServerStreamingServer[api.SnapshotChunk]) error {
	ctx := stream.Context()
	if err := requireAdmin(ctx); err != nil {
		return err
	}
	c := s.c
	// Like onLeader, but a relayed stream may last longer than the wait for
	// a leader, and a stream that has begun is never started again.
	deadline := time.Now().Add(maxLeaderWait)
	var last error
	for {
		switch {
		case c.isLeader():
			err := c.readBarrier(ctx)
			if err == nil {
				return c.sendSnapshot(stream)
			}
			if !errors.Is(err, errNotLeader) {
				return status.Errorf(codes.Unavailable, "snapshot: %v", err)
			}
			last = err
		case isForwarded(ctx):
			return status.Error(codes.Unavailable, notLeaderMessage)
		default:
			if addr := c.leaderAPI(); addr != "" && addr != c.id.apiAddr() {
				c.metrics.forwarded.WithLabelValues("Snapshot").Inc()
				started, err := c.relaySnapshot(ctx, addr, req, stream)
				if started || !retryableForward(err) {
					return err
				}
				last = err
			}
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("no leader elected")
			}
			return status.Errorf(codes.Unavailable, "no leader reachable from node %s within %v (is it cut off from the majority of voters?): %v", c.id.Name, maxLeaderWait, last)
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sendSnapshot streams this node's state at one index: info, data, and the
// size and checksum of the data.
func (c *Cluster) sendSnapshot(stream grpc.ServerStreamingServer[api.SnapshotChunk]) error {
	view := c.state.snapshotView()
	if view.secrets == nil {
		return status.Error(codes.Unavailable, "the cluster is still starting")
	}
	info := &api.SnapshotInfo{
		ClusterId:       view.secrets.GetClusterId(),
		Index:           view.index,
		Node:            c.id.Name,
		CreatedUnixNano: time.Now().UnixNano(),
		Version:         c.cfg.Version,
	}
	if err := stream.Send(&api.SnapshotChunk{Info: info}); err != nil {
		return err
	}
	w := &chunkSender{send: stream.Send, hash: sha256.New()}
	if err := writeSnapshot(w, view); err != nil {
		return status.Errorf(codes.Internal, "snapshot at index %d: %v", view.index, err)
	}
	c.log.Info("snapshot sent", "index", view.index, "bytes", w.size)
	return stream.Send(&api.SnapshotChunk{Size: uint64(w.size), Sha256: hex.EncodeToString(w.hash.Sum(nil))})
}

// chunkSender cuts what it is written into chunks of the stream.
type chunkSender struct {
	send func(*api.SnapshotChunk) error
	hash hash.Hash
	size int64
}

func (w *chunkSender) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		part := p[:min(len(p), snapshotChunkSize)]
		// The message may be read after Send returns: it owns its bytes.
		if err := w.send(&api.SnapshotChunk{Data: bytes.Clone(part)}); err != nil {
			return n, err
		}
		w.hash.Write(part)
		w.size += int64(len(part))
		n += len(part)
		p = p[len(part):]
	}
	return n, nil
}

// relaySnapshot passes the leader's snapshot stream on; started says
// whether anything reached the caller (then it must not be retried).
func (c *Cluster) relaySnapshot(ctx context.Context, addr string, req *api.SnapshotRequest, stream grpc.ServerStreamingServer[api.SnapshotChunk]) (bool, error) {
	cl, err := c.peers.client(addr)
	if err != nil {
		return false, err
	}
	fctx := metadata.AppendToOutgoingContext(ctx, forwardedKey, c.id.Name)
	rs, err := cl.Snapshot(fctx, req)
	if err != nil {
		return false, err
	}
	started := false
	for {
		ch, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			if !started {
				return false, err
			}
			return true, status.Errorf(codes.Aborted, "snapshot stream from the leader at %s broke: %v", addr, err)
		}
		started = true
		if err := stream.Send(ch); err != nil {
			return true, err
		}
	}
}

// ---------------------------------------------------------------- the file

// SaveSnapshot asks the cluster through cl for a snapshot of the store and
// writes it to path: atomically (a temporary file renamed into place once
// complete and verified) and readable by its owner only, since it holds the
// cluster's secrets.
func SaveSnapshot(ctx context.Context, cl api.ShoalClient, path string) (*SnapshotFileHeader, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs, err := cl.Snapshot(ctx, &api.SnapshotRequest{})
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	first, err := rs.Recv()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	info := first.GetInfo()
	if info == nil || info.ClusterId == "" {
		return nil, errors.New("snapshot: the server's first message does not describe the snapshot")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	// The header is written last, when the content is known good.
	if _, err := tmp.Write(make([]byte, snapshotHeaderSize)); err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, h), 1<<16)
	var size int64
	var trailer *api.SnapshotChunk
	for {
		ch, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot: after %d bytes: %w", size, err)
		}
		if trailer != nil {
			return nil, errors.New("snapshot: the server sent data after the checksum")
		}
		if _, err := bw.Write(ch.Data); err != nil {
			return nil, fmt.Errorf("snapshot file: %w", err)
		}
		size += int64(len(ch.Data))
		if ch.Sha256 != "" {
			trailer = ch
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	if trailer == nil {
		return nil, fmt.Errorf("snapshot: the stream ended after %d bytes without its checksum: incomplete", size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if trailer.Sha256 != sum || trailer.Size != uint64(size) {
		return nil, fmt.Errorf("snapshot: received %d bytes with SHA-256 %s, the server sent %d bytes with %s", size, sum, trailer.Size, trailer.Sha256)
	}
	content, count, err := scanSnapshotContent(io.NewSectionReader(tmp, snapshotHeaderSize, size))
	if err != nil {
		return nil, fmt.Errorf("snapshot: the content received does not decode: %w", err)
	}
	if content.Index != info.Index || content.GetSecrets().GetClusterId() != info.ClusterId {
		return nil, fmt.Errorf("snapshot: the content (index %d, cluster %s) does not match its description (index %d, cluster %s)",
			content.Index, content.GetSecrets().GetClusterId(), info.Index, info.ClusterId)
	}
	hdr := &SnapshotFileHeader{
		Format:       SnapshotFormat,
		ClusterID:    info.ClusterId,
		Index:        info.Index,
		Objects:      count,
		Size:         size,
		SHA256:       sum,
		CreatedAt:    time.Unix(0, info.CreatedUnixNano).UTC(),
		Node:         info.Node,
		ShoalVersion: info.Version,
		Secrets:      true,
	}
	block, err := encodeSnapshotHeader(hdr)
	if err != nil {
		return nil, err
	}
	if _, err := tmp.WriteAt(block, 0); err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		done = true
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	done = true
	syncDir(filepath.Dir(path))
	return hdr, nil
}

func encodeSnapshotHeader(hdr *SnapshotFileHeader) ([]byte, error) {
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("snapshot header: %w", err)
	}
	block := []byte(snapshotMagic + strconv.Itoa(hdr.Format) + "\n")
	block = append(block, js...)
	block = append(block, '\n')
	if len(block) > snapshotHeaderSize {
		return nil, fmt.Errorf("snapshot header: %d bytes, more than the %d of its block", len(block), snapshotHeaderSize)
	}
	pad := bytes.Repeat([]byte{' '}, snapshotHeaderSize-len(block))
	if len(pad) > 0 {
		pad[len(pad)-1] = '\n'
	}
	return append(block, pad...), nil
}

func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", path, ErrSnapshotCorrupt, fmt.Sprintf(format, args...))
}

// readSnapshotHeader reads and checks the header block of a snapshot file.
func readSnapshotHeader(f *os.File) (*SnapshotFileHeader, error) {
	path := f.Name()
	block := make([]byte, snapshotHeaderSize)
	if n, err := io.ReadFull(f, block); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, corrupt(path, "%d bytes, shorter than the header of a snapshot", n)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !bytes.HasPrefix(block, []byte(snapshotMagic)) {
		return nil, corrupt(path, "not a shoal snapshot (it does not start with %q)", strings.TrimSpace(snapshotMagic))
	}
	line, rest, ok := bytes.Cut(block[len(snapshotMagic):], []byte("\n"))
	format, err := strconv.Atoi(string(line))
	if !ok || err != nil {
		return nil, corrupt(path, "the header's first line names no format")
	}
	if format != SnapshotFormat {
		return nil, fmt.Errorf("%s: snapshot format %d; this shoal reads format %d", path, format, SnapshotFormat)
	}
	js, _, _ := bytes.Cut(rest, []byte("\n"))
	var hdr SnapshotFileHeader
	if err := json.Unmarshal(js, &hdr); err != nil {
		return nil, corrupt(path, "header: %v", err)
	}
	if hdr.Format != format || hdr.ClusterID == "" || hdr.Size < 0 || len(hdr.SHA256) != 2*sha256.Size {
		return nil, corrupt(path, "the header lacks its cluster ID, size or checksum")
	}
	return &hdr, nil
}

// VerifySnapshotFile checks a snapshot file completely, changing nothing:
// its header, its size, the checksum of its content, and that the content
// decodes into the objects and the cluster secrets the header announces.
func VerifySnapshotFile(path string) (*SnapshotFileHeader, error) {
	hdr, _, err := verifySnapshotFile(path)
	return hdr, err
}

func verifySnapshotFile(path string) (*SnapshotFileHeader, *storepb.SnapshotHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot file: %w", err)
	}
	defer f.Close()
	hdr, err := readSnapshotHeader(f)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot file: %w", err)
	}
	switch have := st.Size() - snapshotHeaderSize; {
	case have < hdr.Size:
		return nil, nil, corrupt(path, "truncated: %d bytes of content, the header says %d", have, hdr.Size)
	case have > hdr.Size:
		return nil, nil, corrupt(path, "%d bytes after the %d of content the header announces", have-hdr.Size, hdr.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, snapshotHeaderSize, hdr.Size)); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != hdr.SHA256 {
		return nil, nil, corrupt(path, "the content's SHA-256 is %s, the header says %s", sum, hdr.SHA256)
	}
	content, count, err := scanSnapshotContent(io.NewSectionReader(f, snapshotHeaderSize, hdr.Size))
	if err != nil {
		return nil, nil, corrupt(path, "%v", err)
	}
	sec := content.GetSecrets()
	switch {
	case content.Index != hdr.Index || count != hdr.Objects:
		return nil, nil, corrupt(path, "the content holds %d objects at index %d, the header says %d at %d", count, content.Index, hdr.Objects, hdr.Index)
	case sec.GetClusterId() != hdr.ClusterID:
		return nil, nil, corrupt(path, "the content is of cluster %q, the header says %q", sec.GetClusterId(), hdr.ClusterID)
	case len(sec.GetCaCert()) == 0 || len(sec.GetCaKey()) == 0 || len(sec.GetGossipKey()) == 0 || sec.GetJoinSecret() == "":
		return nil, nil, corrupt(path, "the content lacks the cluster's secrets (CA, gossip key, join secret)")
	}
	return hdr, content, nil
}

// scanSnapshotContent decodes FSM snapshot content without keeping the
// objects: its header, and how many objects follow. Anything after the last
// object is an error.
func scanSnapshotContent(r io.Reader) (*storepb.SnapshotHeader, uint64, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	opts := protodelim.UnmarshalOptions{MaxSize: 64 << 20}
	var hdr storepb.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return nil, 0, fmt.Errorf("content header: %w", err)
	}
	var n uint64
	for ; n < hdr.ObjectCount; n++ {
		var o api.Object
		if err := opts.UnmarshalFrom(br, &o); err != nil {
			return nil, 0, fmt.Errorf("object %d of %d: %w", n+1, hdr.ObjectCount, err)
		}
		r := o.Resource()
		if r == nil || r.GetMetadata().GetName() == "" {
			return nil, 0, fmt.Errorf("object %d of %d is empty", n+1, hdr.ObjectCount)
		}
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("data after the %d objects the content announces", hdr.ObjectCount)
	}
	return &hdr, n, nil
}

// ---------------------------------------------------------------- restore

// RestoreResult says what RestoreSnapshot made.
type RestoreResult struct {
	Snapshot   *SnapshotFileHeader
	DataDir    string
	NodeName   string
	NodeID     string
	APIAddress string
}

// RestoreSnapshot makes a new data directory (cfg.DataDir) from a snapshot
// file, offline: a node of the snapshot's cluster, with the same CA and
// secrets, that starts (`shoal agent --data-dir DIR`) as the single voter of
// its raft group with every object of the snapshot at its resourceVersion.
// The other nodes join it with the cluster's join token. cfg gives the new
// node's name, addresses and ports, as for --init.
//
// It refuses a file that is not intact and a data directory that is not
// empty; then it has changed nothing. The directory is built beside
// cfg.DataDir and renamed into place once complete.
func RestoreSnapshot(file string, cfg Config) (*RestoreResult, error) {
	cfg.setDefaults()
	if cfg.DataDir == "" {
		return nil, errors.New("restore: data directory required")
	}
	hdr, content, err := verifySnapshotFile(file)
	if err != nil {
		return nil, err
	}
	if err := checkRestoreTarget(cfg.DataDir); err != nil {
		return nil, err
	}
	parent := filepath.Dir(filepath.Clean(cfg.DataDir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	stage, err := os.MkdirTemp(parent, "."+filepath.Base(cfg.DataDir)+".restore-*")
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	placed := false
	defer func() {
		if !placed {
			os.RemoveAll(stage)
		}
	}()

	c := &Cluster{cfg: cfg, log: cfg.Logger}
	id, err := c.newIdentity()
	if err != nil {
		return nil, err
	}
	id.ClusterID = hdr.ClusterID
	c.id = id
	sec := content.GetSecrets()
	ca, err := LoadCA(sec.CaCert, sec.CaKey)
	if err != nil {
		return nil, fmt.Errorf("restore: the snapshot's cluster CA: %w", err)
	}
	keyPEM, csrPEM, err := NewNodeKey(id.Name, c.certIPs())
	if err != nil {
		return nil, err
	}
	certPEM, err := ca.SignNodeID(csrPEM, id.ID, id.Name, c.certIPs(), cfg.NodeCertValidity)
	if err != nil {
		return nil, err
	}
	if err := saveCredentials(stage, NodeCredentials{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: sec.CaCert}, sec.GossipKey); err != nil {
		return nil, err
	}
	if err := writeRestoredRaft(filepath.Join(stage, "raft"), file, hdr, id); err != nil {
		return nil, err
	}
	// node.json last: a data directory with it is a complete node.
	if err := saveIdentity(stage, id); err != nil {
		return nil, err
	}
	// An empty directory at DataDir is replaced (os.Remove removes only an
	// empty one: one that filled up since the check makes this fail).
	if err := os.Remove(cfg.DataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("restore: replace the empty %s: %w", cfg.DataDir, err)
	}
	if err := os.Rename(stage, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("restore: put the new data directory in place: %w", err)
	}
	placed = true
	syncDir(parent)
	c.log.Info("snapshot restored", "file", file, "cluster", hdr.ClusterID, "index", hdr.Index, "objects", hdr.Objects,
		"dir", cfg.DataDir, "node", id.Name, "id", id.ID)
	return &RestoreResult{Snapshot: hdr, DataDir: cfg.DataDir, NodeName: id.Name, NodeID: id.ID, APIAddress: id.apiAddr()}, nil
}

// checkRestoreTarget refuses a data directory that holds anything.
func checkRestoreTarget(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("restore: data directory: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "node.json")); err == nil {
		return fmt.Errorf("restore: %s already holds a node (node.json): restore into a new directory, or move this one away first", dir)
	}
	return fmt.Errorf("restore: %s is not empty (%s, ...): restore into a new or empty directory", dir, entries[0].Name())
}

// writeRestoredRaft makes a raft directory whose only state is a snapshot of
// the file's content at its index, with this node as the single voter.
func writeRestoredRaft(dir, file string, hdr *SnapshotFileHeader, id identity) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("restore: raft log store: %w", err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return fmt.Errorf("restore: raft snapshot store: %w", err)
	}
	// The transport only names the peers in the snapshot's metadata.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id.raftAddr()))
	defer trans.Close()
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id.ID), Address: raft.ServerAddress(id.raftAddr())}}}
	// Term 1: this raft group begins here; its first election makes term 2
	// at the latest.
	sink, err := snaps.Create(raft.SnapshotVersionMax, hdr.Index, 1, conf, hdr.Index, trans)
	if err != nil {
		return fmt.Errorf("restore: raft snapshot: %w", err)
	}
	f, err := os.Open(file)
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	// Checked again on the way: the file must not change after the check.
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(sink, h), io.NewSectionReader(f, snapshotHeaderSize, hdr.Size)); err != nil {
		sink.Cancel()
		return fmt.Errorf("restore: raft snapshot: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != hdr.SHA256 {
		sink.Cancel()
		return corrupt(file, "changed while it was restored")
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("restore: raft snapshot: %w", err)
	}
	return nil
}

// syncDir makes a rename in dir durable; a failure only weakens that.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// ---------------------------------------------------------------- force

// forceRecord is what --force-new-cluster leaves in the data directory.
type forceRecord struct {
	Time         time.Time `json:"time"`
	LastIndex    uint64    `json:"lastIndex"`
	LastTerm     uint64    `json:"lastTerm"`
	WasVoter     bool      `json:"wasVoter"`
	DroppedPeers []string  `json:"droppedPeers"`
	// DroppedNodes are revoked by the new cluster (revokeDroppedPeers).
	DroppedNodes []droppedNode `json:"droppedNodes,omitempty"`
}

type droppedNode struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// forceNewCluster rewrites this node's raft state so that it is the only
// voter of its cluster, keeping every entry of its log and snapshots
// (raft.RecoverCluster), for a cluster that lost the majority of its voters
// for good. It is one-shot: once applied, the flag is ignored with a warning
// while the record of it stays in the data directory.
func (c *Cluster) forceNewCluster() error {
	marker := filepath.Join(c.cfg.DataDir, forceMarkerName)
	if data, err := os.ReadFile(marker); err == nil {
		var rec forceRecord
		_ = json.Unmarshal(data, &rec)
		c.log.Warn("--force-new-cluster IGNORED: it was already applied to this data directory; remove the flag. "+
			"To force a new cluster again (the majority is lost again), delete "+marker+" first",
			"appliedAt", rec.Time, "atIndex", rec.LastIndex)
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--force-new-cluster: %w", err)
	}
	dir := filepath.Join(c.cfg.DataDir, "raft")
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err != nil {
		return fmt.Errorf("--force-new-cluster: %s holds no raft state (this node was not a replica of the store): run it on a node that was a voter", c.cfg.DataDir)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{c.log.With("component", "raft")}})
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("--force-new-cluster: raft log store: %w", err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
	if err != nil {
		return fmt.Errorf("--force-new-cluster: raft snapshot store: %w", err)
	}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("--force-new-cluster: raft state: %w", err)
	}
	if !has {
		return fmt.Errorf("--force-new-cluster: %s holds no raft state (this node was not a replica of the store): run it on a node that was a voter", c.cfg.DataDir)
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(c.id.raftAddr()))
	defer trans.Close()
	old, err := raft.GetConfiguration(raftConfig(c.id.ID, c.cfg.TrailingLogs, logger), &fsm{state: NewState()}, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("--force-new-cluster: read the raft configuration: %w", err)
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(c.id.ID), Address: raft.ServerAddress(c.id.raftAddr())}}}
	recovered := &fsm{state: NewState()}
	if err := raft.RecoverCluster(raftConfig(c.id.ID, c.cfg.TrailingLogs, logger), recovered, store, store, snaps, trans, conf); err != nil {
		return fmt.Errorf("--force-new-cluster: recover: %w", err)
	}
	names := map[string]string{} // node ID -> name, from the Node objects
	nodes, _ := recovered.state.List("Node", "", "")
	for _, r := range nodes {
		names[r.(*api.Node).GetStatus().GetNodeId()] = r.GetMetadata().GetName()
	}
	rec := forceRecord{Time: time.Now().UTC()}
	for _, s := range old.Servers {
		if string(s.ID) == c.id.ID {
			rec.WasVoter = s.Suffrage == raft.Voter
			continue
		}
		name := names[string(s.ID)]
		if name == "" {
			name = string(s.ID)
		}
		rec.DroppedPeers = append(rec.DroppedPeers, fmt.Sprintf("%s (%s, %s)", name, s.Address, strings.ToLower(s.Suffrage.String())))
		rec.DroppedNodes = append(rec.DroppedNodes, droppedNode{ID: string(s.ID), Name: name})
	}
	if list, err := snaps.List(); err == nil && len(list) > 0 {
		rec.LastIndex, rec.LastTerm = list[0].Index, list[0].Term
	}
	data, _ := json.MarshalIndent(rec, "", "  ")
	if err := WriteSecretFile(marker, data); err != nil {
		return fmt.Errorf("--force-new-cluster: record it: %w", err)
	}
	if !rec.WasVoter {
		c.log.Warn("FORCE-NEW-CLUSTER: this node was NOT a voter: its copy may lack the last writes the old cluster acknowledged")
	}
	c.log.Warn("FORCE-NEW-CLUSTER: this node is now the only voter of its cluster, with everything its log and snapshots held "+
		"(entries it had not yet seen committed included). The dropped nodes are revoked: this cluster refuses them. "+
		"Wipe their data directories and join them again with `shoal agent --join ... --token ...` (a new node ID). Remove --force-new-cluster from this node's command line.",
		"node", c.id.Name, "lastIndex", rec.LastIndex, "lastTerm", rec.LastTerm, "dropped", strings.Join(rec.DroppedPeers, ", "), "record", marker)
	return nil
}

// The nodes a --force-new-cluster on this node dropped are revoked, so that
// the new cluster refuses them for good. Dropped voters that come back with
// their old data still count each other as a majority of the old
// configuration and can elect a leader among themselves; that leader's
// heartbeats, with a higher term, would make this node step down and
// overwrite the writes taken since the recovery. Refused at the TLS
// handshake, they cannot reach it.

// refuseDroppedPeers puts the dropped nodes on this node's own list, at
// start, before raft and gossip run.
func (c *Cluster) refuseDroppedPeers() {
	rec, ok := c.forceRecord()
	if !ok {
		return
	}
	var list []*storepb.RevokedNode
	for _, d := range rec.DroppedNodes {
		list = append(list, &storepb.RevokedNode{NodeId: d.ID, Name: d.Name, RevokedUnixNano: rec.Time.UnixNano()})
	}
	if added := c.sec.live.addFetched(list); len(added) > 0 {
		c.log.Info("nodes dropped by --force-new-cluster are refused", "count", len(added))
	}
}

// revokeDroppedPeers writes the dropped nodes to the replicated list, as
// leader, where every node that joins later finds them.
func (c *Cluster) revokeDroppedPeers(ctx context.Context) {
	rec, ok := c.forceRecord()
	if !ok {
		return
	}
	for _, d := range rec.DroppedNodes {
		// The store's list, not this node's own: that has them from start.
		if c.state.Secrets() != nil && newRevokedSet(c.state.Secrets().GetRevokedNodes()).nodeRevoked(d.ID) {
			continue
		}
		if err := c.revokeNode(ctx, d.ID, d.Name); err != nil {
			if ctx.Err() == nil {
				c.log.Warn("revoke a node dropped by --force-new-cluster (tried again next term)", "node", d.Name, "err", err)
			}
			return
		}
		c.log.Warn("node dropped by --force-new-cluster revoked: wipe its data directory before it joins again", "node", d.Name, "id", d.ID)
	}
}

// forceRecord reads what --force-new-cluster left in the data directory.
func (c *Cluster) forceRecord() (forceRecord, bool) {
	data, err := os.ReadFile(filepath.Join(c.cfg.DataDir, forceMarkerName))
	if err != nil {
		return forceRecord{}, false
	}
	var rec forceRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		c.log.Warn("unreadable record of --force-new-cluster", "err", err)
		return forceRecord{}, false
	}
	return rec, true
}

// ---------------------------------------------------------------- nodes

// markVanishedNodes marks NotReady the Node objects that still say Ready
// though gossip has not known a node of that name since this node began to
// lead: after a restore or a forced new cluster, the old nodes are no
// members of the new gossip ring, and without this they would stay Ready
// and keep their pods for ever.
func (c *Cluster) markVanishedNodes(ctx context.Context) {
	c.mu.Lock()
	since := c.leaderSince
	c.mu.Unlock()
	if time.Since(since) < c.cfg.Stabilization {
		return // gossip is still finding the live nodes
	}
	known := map[string]bool{}
	for _, m := range c.members.Members() {
		known[m.Meta.Name] = true
	}
	nodes, _ := c.state.List("Node", "", "")
	for _, r := range nodes {
		n := r.(*api.Node)
		name := n.GetMetadata().GetName()
		// A Node without a member ID was never a gossip member (written
		// through the API, as scale tests' hollow nodes are): not ours to
		// judge.
		if known[name] || !nodeReady(n) || n.GetStatus().GetNodeId() == "" {
			continue
		}
		next := nodeStatusFor(n.GetStatus(), Member{ID: n.GetStatus().GetNodeId(), Meta: memberMeta{Name: name, API: n.GetStatus().GetApiEndpoint()}, Since: time.Now()}, RoleNone, time.Now())
		for _, cond := range next.Conditions {
			if cond.Type == "Ready" {
				cond.Reason = "NodeUnknown"
				cond.Message = "no node of this name has been seen since " + c.id.Name + " began to lead (the cluster was restored or recovered without it)"
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.write(wctx, &storepb.Txn{TimeUnixNano: time.Now().UnixNano(), Ops: []*storepb.Op{{
			Type: storepb.Op_PUT, StatusOnly: true, ResourceVersion: n.GetMetadata().GetResourceVersion(),
			Object: api.Wrap(&api.Node{Metadata: &api.ObjectMeta{Name: name}, Status: next}),
		}}})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				c.log.Debug("mark vanished node", "node", name, "err", err)
			}
			continue
		}
		c.log.Warn("node marked NotReady: not seen since this node began to lead", "node", name)
	}
}
