package cluster

// Owner-only files: everything in a node's data directory that holds a
// secret (keys, the gossip key, raft's log and snapshots, which carry the
// cluster CA's key and the join secret) is readable by its owner alone:
// files 0600, directories 0700. WriteSecretFile writes shoal's own files
// that way; raft's snapshot store, which makes 0755 directories and 0644
// files, is wrapped here.

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// ownerOnlySnapshots is raft's file snapshot store, with every snapshot
// directory and file made owner-only as soon as it is created and again
// once it is complete.
type ownerOnlySnapshots struct {
	*raft.FileSnapshotStore
	dir string // the directory the store was opened on (it adds "snapshots")
}

// newOwnerOnlySnapshots wraps a file snapshot store opened on dir, and
// makes what it holds already (at least its directory) owner-only.
func newOwnerOnlySnapshots(store *raft.FileSnapshotStore, dir string) (ownerOnlySnapshots, error) {
	if err := ownerOnly(filepath.Join(dir, "snapshots")); err != nil {
		return ownerOnlySnapshots{}, fmt.Errorf("raft snapshot store: %w", err)
	}
	return ownerOnlySnapshots{FileSnapshotStore: store, dir: dir}, nil
}

func (s ownerOnlySnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	if err := ownerOnly(filepath.Join(s.dir, "snapshots")); err != nil {
		sink.Cancel()
		return nil, err
	}
	return ownerOnlySink{SnapshotSink: sink, root: filepath.Join(s.dir, "snapshots")}, nil
}

type ownerOnlySink struct {
	raft.SnapshotSink
	root string
}

func (s ownerOnlySink) Close() error {
	if err := s.SnapshotSink.Close(); err != nil {
		return err
	}
	return ownerOnly(s.root)
}

// ownerOnly takes the group's and others' permissions away from root and
// everything below it.
func ownerOnly(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed meanwhile (raft reaps old snapshots)
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if info.Mode()&0o077 == 0 || info.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		if err := os.Chmod(path, info.Mode().Perm()&0o700); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("make %s owner-only: %w", path, err)
		}
		return nil
	})
}
