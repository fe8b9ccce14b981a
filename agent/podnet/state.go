package podnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// podRecord is this package's note of a pod it set up, written before the
// namespace is created and removed after it is gone, so that everything
// Setup made can be found and undone after a restart.
type podRecord struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	NetNS     string `json:"netns"`
}

func (r podRecord) ref() PodRef { return PodRef{UID: r.UID, Namespace: r.Namespace, Name: r.Name} }

func recordPath(dir, uid string) string { return filepath.Join(dir, uid+".json") }

func writeRecord(dir string, r podRecord) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("podnet: create %s: %w", dir, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+r.UID+".*")
	if err != nil {
		return fmt.Errorf("podnet: write pod record: %w", err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), recordPath(dir, r.UID))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("podnet: write pod record: %w", werr)
	}
	return nil
}

// readRecord returns the pod's record, or nil when there is none.
func readRecord(dir, uid string) (*podRecord, error) {
	b, err := os.ReadFile(recordPath(dir, uid))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("podnet: read pod record: %w", err)
	}
	var r podRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("podnet: pod record %s: %w", recordPath(dir, uid), err)
	}
	return &r, nil
}

func removeRecord(dir, uid string) error {
	if err := os.Remove(recordPath(dir, uid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("podnet: remove pod record: %w", err)
	}
	return nil
}

// listRecords returns every pod record in dir, sorted by UID.
func listRecords(dir string) ([]podRecord, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("podnet: list pod records: %w", err)
	}
	var out []podRecord
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		r, err := readRecord(dir, strings.TrimSuffix(name, ".json"))
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, nil
}
