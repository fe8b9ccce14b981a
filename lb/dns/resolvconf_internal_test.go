package dns

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Loopback resolvers are kept: the agent shares the host's network
	// namespace, where they answer.
	p := write("stub", "# systemd-resolved\nnameserver 127.0.0.53\nnameserver 2001:db8::1\nsearch example\noptions edns0\n")
	got, err := upstreamsFromResolvConf(p)
	if want := []string{"127.0.0.53:53", "[2001:db8::1]:53"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	if got, err := upstreamsFromResolvConf(write("none", "search example\n")); err == nil {
		t.Errorf("no nameserver: got %q, want an error", got)
	}
	if got, err := upstreamsFromResolvConf(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("missing file: got %q, want an error", got)
	}
}
