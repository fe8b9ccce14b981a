package e2e

// The claims of SECURITY.md, checked on real `shoal agent` processes: the
// join secret stays out of the logs, the data directory and the client
// configuration are owner-only, and `shoal node rm` locks the removed node
// out even when it comes back with its data directory.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSecurityRealAgents(t *testing.T) {
	l := newLab(t)
	first, join := l.initCluster("sec1", "127.0.48.11")
	l.start("sec2", "127.0.48.12", join...)
	// sec3 reads its token from a file: it is not in the process list.
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(join[3]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := l.start("sec3", "127.0.48.13", join[0], join[1], "--token-file", tokenFile)
	waitFor(t, 60*time.Second, "3 Ready nodes, one leader", func() (bool, string) {
		out, err := l.shoal("node", "ls")
		if err != nil {
			return false, out
		}
		ready, leaders, _, _ := countNodes(parseNodeLs(out))
		return ready == 3 && leaders == 1, out
	})
	initToken := join[len(join)-1]
	rotatedOut, err := l.shoal("token", "--rotate")
	if err != nil {
		t.Fatalf("token --rotate: %v\n%s", err, rotatedOut)
	}
	rotated := strings.TrimSpace(strings.SplitN(rotatedOut, "\n", 2)[0])
	// A join with the rotated-out token is refused (and logged as such).
	refused := l.start("sec9", "127.0.48.19", "--join", first.apiAddr(), "--token", initToken)
	select {
	case <-refused.exited:
	case <-time.After(40 * time.Second):
		t.Fatal("the agent with a rotated-out token did not exit")
	}

	t.Run("join secret not in the process list with --token-file", func(t *testing.T) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", third.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(cmdline), initToken) || !strings.Contains(string(cmdline), "--token-file") {
			t.Errorf("sec3's command line: %q", strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	})

	t.Run("join secret not in logs", func(t *testing.T) {
		secrets := map[string]string{"init token": initToken, "rotated token": rotated}
		for name, tok := range map[string]string{"init": initToken, "rotated": rotated} {
			parts := strings.Split(tok, "-")
			if len(parts) != 4 {
				t.Fatalf("%s token %q is not SHOAL-1-<fingerprint>-<secret>", name, tok)
			}
			secrets[name+" secret"] = parts[3]
		}
		for _, a := range l.agents {
			data, err := os.ReadFile(a.logPath)
			if err != nil {
				t.Fatal(err)
			}
			for what, s := range secrets {
				if strings.Contains(string(data), s) {
					t.Errorf("the log of %s contains the %s", a.name, what)
				}
			}
		}
		// --init prints the join line once, on standard output: asked for.
		if !strings.Contains(first.stdout.String(), initToken) {
			t.Errorf("--init did not print the join line on standard output:\n%s", first.stdout.String())
		}
		if !strings.Contains(refused.logTail(5), "secret") {
			t.Errorf("the refused join does not say why:\n%s", refused.logTail(5))
		}
	})

	t.Run("data directory owner-only", func(t *testing.T) {
		for _, a := range l.agents[:3] {
			info, err := os.Stat(a.dataDir)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", a.dataDir, info.Mode().Perm())
			}
			n := 0
			for _, sub := range []string{"tls", "raft", "gossip.key", "node.json", "peers.json"} {
				err := filepath.WalkDir(filepath.Join(a.dataDir, sub), func(path string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					info, err := d.Info()
					if err != nil {
						return err
					}
					want := fs.FileMode(0o600)
					if d.IsDir() {
						want = 0o700
					}
					if info.Mode().Perm() != want {
						t.Errorf("%s: mode %v, want %v", path, info.Mode().Perm(), want)
					}
					n++
					return nil
				})
				if err != nil {
					t.Errorf("%s: %v", a.name, err)
				}
			}
			t.Logf("%s: %d entries owner-only", a.name, n)
		}
		info, err := os.Stat(l.clientConf)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("client configuration (admin key): %v %v, want mode 0600", info.Mode(), err)
		}
	})

	t.Run("admin-cert issues a working certificate, and revokes it", func(t *testing.T) {
		conf := filepath.Join(l.dir, "alice.config")
		out, err := l.shoal("admin-cert", "alice", "--out", conf, "--validity", "1h")
		if err != nil {
			t.Fatalf("admin-cert: %v\n%s", err, out)
		}
		info, err := os.Stat(conf)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", conf, info.Mode(), err)
		}
		if out, err := l.shoal("--config", conf, "node", "ls"); err != nil || !strings.Contains(out, "sec1") {
			t.Fatalf("node ls with alice's configuration: %v\n%s", err, out)
		}
		// Revoked, alice's configuration stops working; alice cannot
		// revoke herself.
		if out, err := l.shoal("--config", conf, "admin-cert", "revoke", "alice"); err == nil || !strings.Contains(out, "lock you out") {
			t.Fatalf("alice revoking herself: %v\n%s", err, out)
		}
		if out, err := l.shoal("admin-cert", "revoke", "alice"); err != nil || !strings.Contains(out, `Revoked the certificates of admin "alice"`) {
			t.Fatalf("admin-cert revoke alice: %v\n%s", err, out)
		}
		waitFor(t, 10*time.Second, "alice's configuration refused", func() (bool, string) {
			out, err := l.shoal("--config", conf, "node", "ls")
			return err != nil, out
		})
	})

	t.Run("node rm locks the node out", func(t *testing.T) {
		third.kill()
		waitFor(t, 30*time.Second, "sec3 removed (once the others see it gone)", func() (bool, string) {
			out, err := l.shoal("node", "rm", "sec3")
			return err == nil, out
		})
		// Its credentials, used from elsewhere, are refused.
		cert, err := tls.LoadX509KeyPair(filepath.Join(third.dataDir, "tls/node.crt"), filepath.Join(third.dataDir, "tls/node.key"))
		if err != nil {
			t.Fatal(err)
		}
		caPEM, err := os.ReadFile(filepath.Join(third.dataDir, "tls/ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		}}}
		waitFor(t, 10*time.Second, "sec1 refuses sec3's certificate", func() (bool, string) {
			resp, err := hc.Get("https://" + first.apiAddr() + "/v1/nodes")
			if err != nil {
				return true, ""
			}
			resp.Body.Close()
			return false, fmt.Sprintf("answered %s", resp.Status)
		})
		// It comes back with its data directory: raft and gossip refuse it.
		third.restart(l.clientConf)
		waitFor(t, 30*time.Second, "the others refuse the returning sec3 (in their logs)", func() (bool, string) {
			var seen []string
			for _, a := range l.agents[:2] {
				data, _ := os.ReadFile(a.logPath)
				for _, line := range strings.Split(string(data), "\n") {
					if strings.Contains(line, "refused a revoked node") && strings.Contains(line, "where=gossip") {
						seen = append(seen, line)
					}
				}
			}
			return len(seen) > 0, third.logTail(10)
		})
		// ... and it learns from them that it was removed, and stops.
		waitFor(t, 30*time.Second, "the returning sec3 fences itself (in its log)", func() (bool, string) {
			data, _ := os.ReadFile(third.logPath)
			return strings.Contains(string(data), "FENCED") && strings.Contains(string(data), "was removed from the cluster"), third.logTail(10)
		})
		out, err := l.shoal("node", "ls")
		if err != nil {
			t.Fatalf("node ls: %v\n%s", err, out)
		}
		if _, ok := parseNodeLs(out)["sec3"]; ok {
			t.Fatalf("the removed sec3 is listed again:\n%s", out)
		}
		t.Logf("node ls after sec3 came back:\n%s", out)
	})
}
