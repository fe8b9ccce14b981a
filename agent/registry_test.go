package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/shoalproj/shoal/agent/runtime"
)

func TestLoadRegistryConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("mirrors:\n  docker.io: [\"http://10.0.0.5:5000\"]\ninsecure: [\"10.0.0.5:5000\"]\nauth:\n  r.example: {username: u, password: p}\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("mirror:\n  docker.io: []\n"), 0o600)

	cfg, err := LoadRegistryConfig(good, []string{"ghcr.io=https://m.example"}, []string{"m.example"})
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.RegistryConfig{
		Mirrors:  map[string][]string{"docker.io": {"http://10.0.0.5:5000"}, "ghcr.io": {"https://m.example"}},
		Insecure: []string{"10.0.0.5:5000", "m.example"},
		Auth:     map[string]runtime.BasicAuth{"r.example": {Username: "u", Password: "p"}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}
	for _, tc := range []struct {
		path, mirror, want string
	}{
		{bad, "", "unknown field"},
		{filepath.Join(dir, "missing.yaml"), "", "no such file"},
		{"", "docker.io", "REGISTRY=ENDPOINT"},
	} {
		var mirrors []string
		if tc.mirror != "" {
			mirrors = []string{tc.mirror}
		}
		if _, err := LoadRegistryConfig(tc.path, mirrors, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadRegistryConfig(%q, %q): %v, want an error about %q", tc.path, tc.mirror, err, tc.want)
		}
	}
}
