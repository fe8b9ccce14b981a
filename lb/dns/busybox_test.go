package dns_test

import (
	"context"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shoalproj/shoal/lb"
	shoaldns "github.com/shoalproj/shoal/lb/dns"
)

// busyboxPath is Debian's busybox-static, the userland of the e2e tests'
// images.
const busyboxPath = "/bin/busybox"

// needRoot skips a test that needs root or a program, or fails it when CI
// is set (CI installs the programs and runs as root).
func needRoot(t *testing.T, programs ...string) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root"
	}
	for _, p := range programs {
		if _, err := os.Stat(p); err != nil && why == "" {
			why = "needs " + p + " (apt-get install busybox-static)"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("dns: this test %s; CI is set, so it fails instead of skipping", why)
	}
	t.Skipf("dns: skipped: this test %s", why)
}

// nslookup runs busybox nslookup with args, chrooted into root when root
// is not "", and returns its output and exit error.
func nslookup(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	bin := busyboxPath
	if root != "" {
		bin = "/bin/busybox" // inside the chroot
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"nslookup"}, args...)...)
	if root != "" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		cmd.Dir = "/"
	}
	out, err := cmd.CombinedOutput()
	t.Logf("busybox nslookup %s (chroot %q): %v\n%s", strings.Join(args, " "), root, err, out)
	return string(out), err
}

// podRoot makes a root file system like a busybox-only pod's: busybox and
// the /etc/resolv.conf ResolvConf writes, nothing else (no NSS, no libc
// configuration).
func podRoot(t *testing.T, resolvConf []byte) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.Open(busyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(root, "bin", "busybox"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "resolv.conf"), resolvConf, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestBusyboxNslookup checks the server against the resolver the e2e
// pods have: busybox's own nslookup. Busybox 1.35 reads `search` from
// /etc/resolv.conf only when no server is given on its command line, and
// then asks NAME.DOMAIN for every search domain (never the bare name,
// whatever ndots says), prints each answer and exits 1 when any of them
// failed. So the bare name is checked in a root made like a pod's, by the
// address in the output, not by the exit status.
func TestBusyboxNslookup(t *testing.T) {
	needRoot(t, busyboxPath)
	// Port 53: a resolv.conf nameserver has no port.
	const ip = "127.0.53.53"
	addr := ip + ":53"
	s := newServer(t, shoaldns.Config{Upstreams: []string{}})
	s.Set([]lb.Service{webService})
	serve(t, s, addr)

	out, err := nslookup(t, "", "web.default.svc.cluster.local", ip)
	if err != nil || !strings.Contains(out, "Address: 10.96.0.10") {
		t.Errorf("full name with the server given: %v\n%s", err, out)
	}

	out, err = nslookup(t, "", "-type=srv", "_http._tcp.web.default.svc.cluster.local", ip)
	if err != nil || !strings.Contains(out, "service = 0 100 80 web.default.svc.cluster.local") {
		t.Errorf("SRV with the server given: %v\n%s", err, out)
	}
	out, err = nslookup(t, "", "10.96.0.10", ip)
	if err != nil || !strings.Contains(out, "name = web.default.svc.cluster.local") {
		t.Errorf("PTR with the server given: %v\n%s", err, out)
	}

	// With the server given, busybox ignores the search path: the bare
	// name is asked as is, outside the cluster domain, and refused.
	out, _ = nslookup(t, "", "web", ip)
	if strings.Contains(out, "10.96.0.10") {
		t.Errorf("bare name with the server given resolved: busybox applies search after all?\n%s", out)
	}

	root := podRoot(t, shoaldns.ResolvConf(netip.MustParseAddr(ip), "default", ""))
	out, _ = nslookup(t, root, "web")
	if !strings.Contains(out, "Name:\tweb.default.svc.cluster.local\nAddress: 10.96.0.10") {
		t.Errorf("bare name through the search path of ResolvConf: not resolved\n%s", out)
	}
}
