package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func pkiTestCA(t *testing.T, id string) *CA {
	t.Helper()
	ca, err := NewCA(id)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", id, err)
	}
	return ca
}

func pkiTestParseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return cert
}

func TestPKINewCA(t *testing.T) {
	tests := []struct {
		id     string
		wantCN string
	}{
		{"0123456789abcdef", "shoal-ca-01234567"},
		{"abc", "shoal-ca-abc"},
		{"12345678", "shoal-ca-12345678"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			before := time.Now()
			ca := pkiTestCA(t, tt.id)
			c := ca.Cert
			if c.Subject.CommonName != tt.wantCN {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, tt.wantCN)
			}
			if !c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("IsCA = %v, BasicConstraintsValid = %v", c.IsCA, c.BasicConstraintsValid)
			}
			if c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("MaxPathLen = %d (zero %v), want 0", c.MaxPathLen, c.MaxPathLenZero)
			}
			if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
				t.Errorf("KeyUsage = %v", c.KeyUsage)
			}
			if life := c.NotAfter.Sub(before); life < 3649*24*time.Hour || life > 3651*24*time.Hour {
				t.Errorf("CA lives %v, want about 10 years", life)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v is not a positive 128-bit number", c.SerialNumber)
			}
			if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
				t.Errorf("public key %T is not ECDSA P-256", c.PublicKey)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("CA is not self-signed: %v", err)
			}
			if !bytes.Equal(pkiTestParseCert(t, ca.CertPEM).Raw, c.Raw) {
				t.Error("CertPEM does not hold Cert")
			}
		})
	}
	if _, err := NewCA(""); err == nil {
		t.Error("NewCA(\"\") succeeded, want an error")
	}
	a, b := pkiTestCA(t, "same"), pkiTestCA(t, "same")
	if a.Cert.SerialNumber.Cmp(b.Cert.SerialNumber) == 0 {
		t.Error("two CAs got the same serial number")
	}
}

func TestPKILoadCA(t *testing.T) {
	ca := pkiTestCA(t, "cluster-one")
	other := pkiTestCA(t, "cluster-two")

	pkcs8, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})

	keyPEM, csrPEM, err := NewNodeKey("node1", nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeCertPEM, err := ca.SignNode(csrPEM, "node1", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr string
	}{
		{"round trip", ca.CertPEM, ca.KeyPEM, ""},
		{"PKCS8 key", ca.CertPEM, pkcs8PEM, ""},
		{"key of another CA", ca.CertPEM, other.KeyPEM, "does not belong"},
		{"leaf certificate", nodeCertPEM, keyPEM, "not a CA"},
		{"no certificate", []byte("garbage"), ca.KeyPEM, "no PEM CERTIFICATE"},
		{"no key", ca.CertPEM, ca.CertPEM, "no PEM private key"},
		{"corrupt certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), ca.KeyPEM, "parsing certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadCA(tt.cert, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadCA error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadCA: %v", err)
			}
			if !bytes.Equal(got.Cert.Raw, ca.Cert.Raw) || !got.Key.Equal(ca.Key) {
				t.Fatal("loaded CA differs from the created one")
			}
			// The loaded CA signs certificates the original verifies.
			_, csr, err := NewNodeKey("node2", nil)
			if err != nil {
				t.Fatal(err)
			}
			certPEM, err := got.SignNode(csr, "node2", nil, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if err := pkiTestParseCert(t, certPEM).CheckSignatureFrom(ca.Cert); err != nil {
				t.Fatalf("certificate of the loaded CA does not verify: %v", err)
			}
		})
	}
}

func TestPKISignNode(t *testing.T) {
	ca := pkiTestCA(t, "cluster-one")
	keyPEM, csrPEM, err := NewNodeKey("node1", []net.IP{net.ParseIP("192.168.56.11")})
	if err != nil {
		t.Fatal(err)
	}
	ips := []net.IP{net.ParseIP("192.168.56.11"), net.ParseIP("fd00::11"), net.IPv4zero, nil, net.ParseIP("127.0.0.1")}
	certPEM, err := ca.SignNode(csrPEM, "node1", ips, 24*time.Hour)
	if err != nil {
		t.Fatalf("SignNode: %v", err)
	}
	cert := pkiTestParseCert(t, certPEM)

	if cert.Subject.CommonName != "node1" || !slices.Equal(cert.Subject.Organization, []string{OrgNodes}) {
		t.Errorf("subject = %v, want CN=node1 O=%s", cert.Subject, OrgNodes)
	}
	if cert.IsCA {
		t.Error("node certificate is a CA")
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want server and client auth", cert.ExtKeyUsage)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digital signature", cert.KeyUsage)
	}
	var gotIPs []string
	for _, ip := range cert.IPAddresses {
		gotIPs = append(gotIPs, ip.String())
	}
	slices.Sort(gotIPs)
	wantIPs := []string{"127.0.0.1", "192.168.56.11", "::1", "fd00::11"}
	if !slices.Equal(gotIPs, wantIPs) {
		t.Errorf("IP SANs = %v, want %v", gotIPs, wantIPs)
	}
	if !slices.Equal(cert.DNSNames, []string{"node1", "localhost"}) {
		t.Errorf("DNS SANs = %v, want [node1 localhost]", cert.DNSNames)
	}
	if life := time.Until(cert.NotAfter); life < 23*time.Hour || life > 24*time.Hour {
		t.Errorf("certificate lives %v more, want about 24h", life)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("certificate does not match the node key: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, host := range []string{"node1", "localhost", "192.168.56.11", "127.0.0.1", "::1", "fd00::11"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("verify for %s, usage %v: %v", host, usage, err)
			}
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.0.0.1"}); err == nil {
		t.Error("certificate verifies for an address it does not name")
	}
	name, isNode, isAdmin := PeerIdentity(cert)
	if name != "node1" || !isNode || isAdmin {
		t.Errorf("PeerIdentity = %q, %v, %v; want node1, true, false", name, isNode, isAdmin)
	}
}

func TestPKISignNodeNameIsAnAddress(t *testing.T) {
	ca := pkiTestCA(t, "cluster-one")
	_, csr, err := NewNodeKey("10.1.2.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignNode(csr, "10.1.2.3", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := pkiTestParseCert(t, certPEM)
	if !slices.Equal(cert.DNSNames, []string{"localhost"}) {
		t.Errorf("DNS SANs = %v, want [localhost]", cert.DNSNames)
	}
	if err := cert.VerifyHostname("10.1.2.3"); err != nil {
		t.Errorf("VerifyHostname(10.1.2.3): %v", err)
	}
}

func TestPKISignNodeValidityCappedByCA(t *testing.T) {
	ca := pkiTestCA(t, "cluster-one")
	_, csr, err := NewNodeKey("node1", nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignNode(csr, "node1", nil, 20*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := pkiTestParseCert(t, certPEM).NotAfter; !got.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter = %v, want the CA's %v", got, ca.Cert.NotAfter)
	}
}

func TestPKISignNodeRefuses(t *testing.T) {
	ca := pkiTestCA(t, "cluster-one")
	_, csrPEM, err := NewNodeKey("node1", nil)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(csrPEM)

	// Flip a bit of the signature, which is the last field of the request.
	tamperedSig := slices.Clone(block.Bytes)
	tamperedSig[len(tamperedSig)-1] ^= 0x01
	// Change a byte of the subject (the CN "node1" becomes "nodf1") without
	// re-signing.
	tamperedBody := slices.Clone(block.Bytes)
	i := bytes.Index(tamperedBody, []byte("node1"))
	if i < 0 {
		t.Fatal("CN not found in CSR")
	}
	tamperedBody[i+3]++

	enc := func(der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	tests := []struct {
		name     string
		csr      []byte
		nodeName string
		validity time.Duration
		wantErr  string
	}{
		{"empty name", csrPEM, "", time.Hour, "node name is empty"},
		{"name with space", csrPEM, "node 1", time.Hour, "only letters, digits"},
		{"name too long", csrPEM, strings.Repeat("a", 254), time.Hour, "at most 253"},
		{"zero validity", csrPEM, "node1", 0, "validity must be positive"},
		{"tampered signature", enc(tamperedSig), "node1", time.Hour, "signature is invalid"},
		{"tampered subject", enc(tamperedBody), "node1", time.Hour, "signature is invalid"},
		{"not PEM", []byte("hello"), "node1", time.Hour, "no PEM CERTIFICATE REQUEST"},
		{"certificate instead of CSR", ca.CertPEM, "node1", time.Hour, "no PEM CERTIFICATE REQUEST"},
		{"garbage DER", enc([]byte{0x30, 0x03, 1, 2, 3}), "node1", time.Hour, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := ca.SignNode(tt.csr, tt.nodeName, nil, tt.validity)
			if err == nil {
				t.Fatalf("SignNode succeeded (%d bytes), want an error containing %q", len(cert), tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SignNode error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestPKIIssueAdmin(t *testing.T) {
	ca := pkiTestCA(t, "cluster-one")
	certPEM, keyPEM, err := ca.IssueAdmin("alice", 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueAdmin: %v", err)
	}
	cert := pkiTestParseCert(t, certPEM)
	if cert.Subject.CommonName != "alice" || !slices.Equal(cert.Subject.Organization, []string{OrgAdmins}) {
		t.Errorf("subject = %v, want CN=alice O=%s", cert.Subject, OrgAdmins)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want client auth only", cert.ExtKeyUsage)
	}
	if len(cert.IPAddresses)+len(cert.DNSNames) != 0 {
		t.Errorf("admin certificate has SANs %v %v", cert.IPAddresses, cert.DNSNames)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("certificate does not match key: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate does not verify as a client: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("admin certificate verifies as a server")
	}
	for _, bad := range []string{"", "al ice", "x/y"} {
		if _, _, err := ca.IssueAdmin(bad, time.Hour); err == nil {
			t.Errorf("IssueAdmin(%q) succeeded", bad)
		}
	}
	if _, _, err := ca.IssueAdmin("alice", -time.Hour); err == nil {
		t.Error("IssueAdmin with negative validity succeeded")
	}
}

func TestPKIPeerIdentity(t *testing.T) {
	ca := pkiTestCA(t, "cluster-one")
	adminPEM, _, err := ca.IssueAdmin("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, csr, err := NewNodeKey("node7", nil)
	if err != nil {
		t.Fatal(err)
	}
	nodePEM, err := ca.SignNode(csr, "node7", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		cert             *x509.Certificate
		wantName         string
		wantNode, wantAd bool
	}{
		{"node", pkiTestParseCert(t, nodePEM), "node7", true, false},
		{"admin", pkiTestParseCert(t, adminPEM), "alice", false, true},
		{"CA", ca.Cert, ca.Cert.Subject.CommonName, false, false},
		{"nil", nil, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, isNode, isAdmin := PeerIdentity(tt.cert)
			if name != tt.wantName || isNode != tt.wantNode || isAdmin != tt.wantAd {
				t.Errorf("PeerIdentity = %q, %v, %v; want %q, %v, %v", name, isNode, isAdmin, tt.wantName, tt.wantNode, tt.wantAd)
			}
		})
	}
}

func TestPKIFingerprint(t *testing.T) {
	ca := pkiTestCA(t, "cluster-one")
	fp := Fingerprint(ca.Cert.Raw)
	sum := sha256.Sum256(ca.Cert.Raw)
	if fp != hex.EncodeToString(sum[:]) {
		t.Errorf("Fingerprint = %s, want the hex SHA-256 of the DER", fp)
	}
	if len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Errorf("Fingerprint %q is not 64 lowercase hex characters", fp)
	}
	if Fingerprint(pkiTestCA(t, "cluster-two").Cert.Raw) == fp {
		t.Error("two CAs have the same fingerprint")
	}
}

func TestPKIGossipKey(t *testing.T) {
	a, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("key lengths %d, %d; want 32", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Error("two gossip keys are equal")
	}
}

func TestPKIWriteSecretFile(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	path := filepath.Join(dir, "node.key")

	if err := WriteSecretFile(path, []byte("first")); err != nil {
		t.Fatalf("WriteSecretFile: %v", err)
	}
	for _, d := range []string{filepath.Join(root, "a"), dir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, fi.Mode().Perm())
		}
	}

	// Replacing a file that was readable by others leaves a 0600 file.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretFile(path, []byte("second")); err != nil {
		t.Fatalf("WriteSecretFile over an existing file: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "second" {
		t.Errorf("content = %q, want %q", got, "second")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only node.key (no temporary files left)", names)
	}

	// A path whose parent is a file cannot be written.
	if err := WriteSecretFile(filepath.Join(path, "x"), []byte("x")); err == nil {
		t.Error("WriteSecretFile under a regular file succeeded")
	}
}

func TestPKINewNodeKey(t *testing.T) {
	keyPEM, csrPEM, err := NewNodeKey("node1", []net.IP{net.ParseIP("10.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pkiParseCSR(csrPEM)
	if err != nil {
		t.Fatalf("CSR does not parse or verify: %v", err)
	}
	if csr.Subject.CommonName != "node1" {
		t.Errorf("CSR CN = %q", csr.Subject.CommonName)
	}
	key, err := pkiParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if key.Curve != elliptic.P256() || !key.PublicKey.Equal(csr.PublicKey) {
		t.Error("key is not the P-256 key of the CSR")
	}
	if _, _, err := NewNodeKey("", nil); err == nil {
		t.Error("NewNodeKey with an empty name succeeded")
	}
}
