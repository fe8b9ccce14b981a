package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// Fuzz targets of the join handshake, through the real functions: the
// token a user pastes, the proof of its secret, the certificate request
// the cluster signs, the leader's Join handler, and the joining node's
// check of the cluster's CA against the token. No network is used for the
// handshake: FuzzJoinHandshake calls the handler in-process.

// FuzzParseJoinToken: any string gives a token or an error; a token prints
// back as itself; an error never repeats the secret.
func FuzzParseJoinToken(f *testing.F) {
	good := "SHOAL-1-" + tokenTestFP + "-" + tokenTestSecret
	for _, s := range []string{
		good, " " + good + "\n", strings.ToUpper(good), "SHOAL-1-" + strings.ToUpper(tokenTestFP) + "-" + tokenTestSecret,
		"", "SHOAL-", "SHOAL-1", "SHOAL-2-" + tokenTestFP + "-" + tokenTestSecret, "SHOAL-99999999999999999999-x-y",
		good + "-" + tokenTestSecret, "SHOAL-1--", "SHOAL-1-" + tokenTestFP + "-" + tokenTestSecret[:31] + "\u00e9",
		"SWMTKN-1-" + tokenTestFP + "-" + tokenTestSecret,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			msg := err.Error()
			if msg == "" {
				t.Fatalf("empty error for %q", s)
			}
			// Whatever could be a secret (a part with letters and digits)
			// is not repeated.
			for _, part := range strings.Split(strings.TrimSpace(s), "-") {
				if len(part) >= 8 && strings.ContainsAny(part, "0123456789") && strings.ContainsAny(strings.ToLower(part), tokenAlphabet[:26]) &&
					strings.Contains(msg, part) {
					t.Fatalf("error %q repeats %q of the token", msg, part)
				}
			}
			return
		}
		if len(tok.Fingerprint) != tokenFingerprintN || !tokenIsHex(tok.Fingerprint) {
			t.Fatalf("%q: fingerprint %q", s, tok.Fingerprint)
		}
		if len(tok.Secret) != tokenSecretN || !tokenIsSecretChars(tok.Secret) {
			t.Fatalf("%q: secret %q", s, tok.Secret)
		}
		again, err := ParseJoinToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("%q: %+v prints as %q, which parses as %+v, %v", s, tok, tok.String(), again, err)
		}
		if !strings.EqualFold(strings.TrimSpace(s), tok.String()) {
			t.Fatalf("%q parsed as a different token %q", s, tok.String())
		}
	})
}

// FuzzCheckJoinProof: a proof made with the secret over the request is
// accepted; any other proof, or any proof with an empty secret, is not.
func FuzzCheckJoinProof(f *testing.F) {
	csr := []byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n")
	f.Add(tokenTestSecret, csr, JoinProof(tokenTestSecret, csr))
	f.Add(tokenTestSecret, csr, JoinProof(tokenTestSecret, csr)[:31])
	f.Add("", csr, JoinProof("", csr))
	f.Add(tokenTestSecret, []byte{}, []byte{})
	f.Add("x", csr, append(JoinProof("x", csr), 0))
	f.Fuzz(func(t *testing.T, secret string, csr, proof []byte) {
		want := JoinProof(secret, csr)
		if len(want) != 32 {
			t.Fatalf("proof of %d bytes", len(want))
		}
		if got := CheckJoinProof(secret, csr, want); got != (secret != "") {
			t.Fatalf("own proof with secret %q: %v", secret, got)
		}
		ok := CheckJoinProof(secret, csr, proof)
		if ok != (secret != "" && bytes.Equal(proof, want)) {
			t.Fatalf("CheckJoinProof(%q, %q, %x) = %v, the proof is %x", secret, csr, proof, ok, want)
		}
		// The proof binds the request: another request needs another one.
		if ok && CheckJoinProof(secret, append(slices.Clone(csr), 'x'), proof) {
			t.Fatalf("proof %x also proves a changed request", proof)
		}
	})
}

// joinFuzzCA is one cluster CA for the PKI targets of a fuzz process.
var joinFuzzCA = sync.OnceValues(func() (*CA, error) { return NewCA("fuzz-cluster") })

// joinFuzzCSRs are certificate requests of every kind the signer meets.
func joinFuzzCSRs(f *testing.F) [][]byte {
	f.Helper()
	_, good, err := NewNodeKey("node-1", []net.IP{net.ParseIP("10.0.0.1")})
	if err != nil {
		f.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	weak, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "weak"}}, rsaKey)
	if err != nil {
		f.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	small, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "p224"}}, p224)
	if err != nil {
		f.Fatal(err)
	}
	block, _ := pem.Decode(good)
	tampered := slices.Clone(block.Bytes)
	tampered[len(tampered)/2] ^= 1
	ca, err := joinFuzzCA()
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{
		good,
		pem.EncodeToMemory(&pem.Block{Type: pkiPEMCSR, Bytes: weak}),
		pem.EncodeToMemory(&pem.Block{Type: pkiPEMCSR, Bytes: small}),
		pem.EncodeToMemory(&pem.Block{Type: pkiPEMCSR, Bytes: tampered}),
		pem.EncodeToMemory(&pem.Block{Type: pkiPEMCSR, Bytes: block.Bytes[:len(block.Bytes)/2]}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}),
		ca.CertPEM,
		block.Bytes, // DER without PEM
		{},
	}
}

// joinFuzzCheckNodeCert checks a certificate the CA signed for a request:
// the CA's, for the request's key, named as asked, for servers and clients.
func joinFuzzCheckNodeCert(t *testing.T, ca *CA, certPEM, csrPEM []byte, name string, ip net.IP) *x509.Certificate {
	t.Helper()
	cert, err := pkiParseCertPEM(certPEM)
	if err != nil {
		t.Fatalf("signed certificate does not parse: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Fatalf("signed certificate does not verify for %v: %v", usage, err)
		}
	}
	csr, err := pkiParseCSR(csrPEM)
	if err != nil {
		t.Fatalf("a request the CA signed does not parse: %v", err)
	}
	if pub, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		t.Fatal("signed certificate is not for the request's key")
	}
	if gotName, isNode, isAdmin := PeerIdentity(cert); gotName != name || !isNode || isAdmin {
		t.Fatalf("signed certificate is of %q node=%v admin=%v, want node %q", gotName, isNode, isAdmin, name)
	}
	if cert.IsCA {
		t.Fatal("signed certificate is a CA")
	}
	if ip != nil && !ip.IsUnspecified() && !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
		t.Fatalf("signed certificate has IPs %v, not %v", cert.IPAddresses, ip)
	}
	return cert
}

// FuzzSignNodeCSR feeds arbitrary certificate requests, names and
// addresses to the CA: it signs only a well-signed request for a strong
// key and a valid name, and the certificate says what the CA decided, not
// what the request asked.
func FuzzSignNodeCSR(f *testing.F) {
	csrs := joinFuzzCSRs(f)
	for i, csr := range csrs {
		f.Add(csr, fmt.Sprintf("node-%d", i), "10.0.0.1")
	}
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n\n-----END CERTIFICATE REQUEST-----\n"), "n", "::1")
	f.Add(csrs[0], "", "")
	f.Add(csrs[0], strings.Repeat("a", 254), "0.0.0.0")
	f.Add(csrs[0], "10.1.2.3", "10.1.2.3")
	f.Add(csrs[0], "bad name/../x", "fe80::1%eth0")
	f.Fuzz(func(t *testing.T, csrPEM []byte, name, addr string) {
		ca, err := joinFuzzCA()
		if err != nil {
			t.Fatal(err)
		}
		ip := net.ParseIP(addr)
		cert, err := ca.SignNode(csrPEM, name, []net.IP{ip}, time.Hour)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			if pkiCheckName("node", name) == nil {
				if csr, perr := pkiParseCSR(csrPEM); perr == nil && pkiCheckPublicKey(csr.PublicKey) == nil {
					t.Fatalf("a valid request for %q refused: %v", name, err)
				}
			}
			return
		}
		if pkiCheckName("node", name) != nil {
			t.Fatalf("signed for the invalid name %q", name)
		}
		joinFuzzCheckNodeCert(t, ca, cert, csrPEM, name, ip)
	})
}

// joinFuzzNode is a running single-node cluster, leader of itself, whose
// Join handler the handshake target calls in-process. It is started once
// per fuzz process, on a loopback address of its own.
type joinFuzzNode struct {
	c      *Cluster
	secret string
	ca     *CA
}

var (
	joinFuzzOnce sync.Once
	joinFuzzN    *joinFuzzNode
	joinFuzzErr  error
)

func joinFuzzStart(t *testing.T) *joinFuzzNode {
	joinFuzzOnce.Do(func() { joinFuzzN, joinFuzzErr = joinFuzzStartNode() })
	if joinFuzzErr != nil {
		t.Fatalf("starting the node: %v", joinFuzzErr)
	}
	return joinFuzzN
}

func joinFuzzStartNode() (*joinFuzzNode, error) {
	dir, err := os.MkdirTemp("", "shoal-joinfuzz-")
	if err != nil {
		return nil, err
	}
	var c *Cluster
	// Fuzz workers are processes of their own: each takes an address of
	// its own, the next one if that is in use.
	for i := 0; i < 8 && c == nil; i++ {
		addr := fmt.Sprintf("127.0.77.%d", 1+(os.Getpid()+i)%250)
		c, err = Start(context.Background(), Config{
			DataDir: filepath.Join(dir, fmt.Sprint(i)), NodeName: "leader", AdvertiseAddr: addr, Init: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}
	if c == nil {
		os.RemoveAll(dir)
		return nil, err
	}
	joinFuzzCleanup = func() {
		c.Close()
		os.RemoveAll(dir)
		joinFuzzOnce, joinFuzzN, joinFuzzErr, joinFuzzCleanup = sync.Once{}, nil, nil, func() {}
	}
	// --init writes the secrets once the node leads.
	deadline := time.After(30 * time.Second)
	for c.state.Secrets() == nil || !c.isLeader() {
		select {
		case <-c.state.changedAfter(c.state.Index()):
		case <-deadline:
			return nil, fmt.Errorf("node leads %v, holds secrets %v after 30 s", c.isLeader(), c.state.Secrets() != nil)
		}
	}
	ca, sec, err := c.caFromState()
	if err != nil {
		return nil, err
	}
	// A live node that holds a name, to be taken into account.
	c.members.mu.Lock()
	c.members.members["id-taken"] = &Member{ID: "id-taken", Meta: memberMeta{Name: "taken"}, Alive: true, Since: time.Now()}
	c.members.mu.Unlock()
	return &joinFuzzNode{c: c, secret: sec.JoinSecret, ca: ca}, nil
}

// joinFuzzCleanup stops the node of joinFuzzStart, if it started; the
// target's Cleanup runs it.
var joinFuzzCleanup = func() {}

// FuzzJoinHandshake calls the leader's Join handler with arbitrary
// requests. proofMode picks the proof: the one given, the right one for
// the request (so that the fuzzer reaches the checks behind the secret),
// or one made with another secret. Only a request with the right proof,
// an IP address and valid names is admitted, and what it gets is a
// certificate of the cluster's CA for its own key; every refusal is
// PermissionDenied, InvalidArgument or AlreadyExists, and never repeats
// the secret.
func FuzzJoinHandshake(f *testing.F) {
	csrs := joinFuzzCSRs(f)
	for i, csr := range csrs {
		f.Add("id-"+fmt.Sprint(i), "node-1", false, csr, []byte{}, "10.0.0.2", byte(1))
	}
	f.Add("id-x", "node-1", true, csrs[0], []byte("not a proof"), "10.0.0.2", byte(0))
	f.Add("id-x", "node-1", true, csrs[0], []byte{}, "10.0.0.2", byte(2))
	f.Add("id-x", "taken", false, csrs[0], []byte{}, "10.0.0.3", byte(1))
	f.Add("id-x", "taken", true, csrs[0], []byte{}, "10.0.0.3", byte(1))
	f.Add("id-taken", "again", false, csrs[0], []byte{}, "fe80::1", byte(1))
	f.Add("", "node", false, csrs[0], []byte{}, "10.0.0.4", byte(1))
	f.Add("id-y", "Node_1", false, csrs[0], []byte{}, "10.0.0.4", byte(1))
	f.Add("id-y", "node", false, csrs[0], []byte{}, "not an address", byte(1))
	f.Add("id y/..", "node", false, csrs[0], []byte{}, "::", byte(1))
	f.Cleanup(func() { joinFuzzCleanup() })
	f.Fuzz(func(t *testing.T, nodeID, nodeName string, explicit bool, csr, proof []byte, addr string, proofMode byte) {
		n := joinFuzzStart(t)
		rightProof := JoinProof(n.secret, csr)
		switch proofMode % 3 {
		case 1:
			proof = rightProof
		case 2:
			proof = JoinProof(tokenTestSecret, csr)
		}
		req := &api.JoinRequest{NodeId: nodeID, NodeName: nodeName, NameExplicit: explicit, Csr: csr, Proof: proof, AdvertiseAddr: addr}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := (&joinServer{c: n.c}).Join(ctx, req)
		rightSecret := bytes.Equal(proof, rightProof)
		if err != nil {
			st, _ := status.FromError(err)
			switch st.Code() {
			case codes.PermissionDenied, codes.InvalidArgument, codes.AlreadyExists:
			default:
				t.Fatalf("Join refused with %v: %v", st.Code(), err)
			}
			if !rightSecret && st.Code() != codes.PermissionDenied {
				t.Fatalf("a wrong proof was refused as %v, not PermissionDenied: %v", st.Code(), err)
			}
			if strings.Contains(st.Message(), n.secret) {
				t.Fatalf("refusal repeats the secret: %v", err)
			}
			return
		}
		if !rightSecret {
			t.Fatalf("admitted %+v with a wrong proof", req)
		}
		ip := net.ParseIP(addr)
		if ip == nil {
			t.Fatalf("admitted the address %q", addr)
		}
		wantNames := []string{nodeName, nodeName + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())}
		if !slices.Contains(wantNames, resp.NodeName) || (explicit && resp.NodeName != nodeName) {
			t.Fatalf("node %q (explicit %v) admitted as %q", nodeName, explicit, resp.NodeName)
		}
		if resp.NodeName == "taken" {
			t.Fatal("admitted under the name of a live node")
		}
		cert := joinFuzzCheckNodeCert(t, n.ca, resp.Certificate, csr, resp.NodeName, ip)
		if id := NodeIDOf(cert); id != nodeID {
			t.Fatalf("certificate carries node ID %q, want %q", id, nodeID)
		}
		if !bytes.Equal(resp.CaCertificate, n.ca.CertPEM) || len(resp.GossipKey) != 32 || resp.ClusterId == "" {
			t.Fatalf("admitted without the cluster's CA, gossip key and ID: %d bytes of CA, %d of key, ID %q",
				len(resp.CaCertificate), len(resp.GossipKey), resp.ClusterId)
		}
	})
}

// FuzzJoinPinnedCA feeds the joining node's check of the cluster (the
// verification of JoinClientTLS) arbitrary certificate chains: it accepts
// only a node certificate that verifies against a CA certificate in the
// chain whose fingerprint is the token's.
func FuzzJoinPinnedCA(f *testing.F) {
	ca, err := joinFuzzCA()
	if err != nil {
		f.Fatal(err)
	}
	_, csr, err := NewNodeKey("node-1", nil)
	if err != nil {
		f.Fatal(err)
	}
	leafPEM, err := ca.SignNode(csr, "node-1", []net.IP{net.ParseIP("10.0.0.1")}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	leaf, _ := pem.Decode(leafPEM)
	adminPEM, _, err := ca.IssueAdmin("admin", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	admin, _ := pem.Decode(adminPEM)
	other, err := NewCA("other")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(leaf.Bytes, ca.Cert.Raw, true)
	f.Add(leaf.Bytes, ca.Cert.Raw, false)
	f.Add(admin.Bytes, ca.Cert.Raw, true)
	f.Add(leaf.Bytes, other.Cert.Raw, true)
	f.Add(ca.Cert.Raw, ca.Cert.Raw, true)
	f.Add(leaf.Bytes[:len(leaf.Bytes)-3], ca.Cert.Raw, true)
	f.Add([]byte{}, []byte{}, true)
	f.Fuzz(func(t *testing.T, leafDER, caDER []byte, pinSecond bool) {
		// The token pins the fingerprint of the real CA, or of whatever the
		// second certificate is: an attacker who controls the token is
		// out of scope, one who controls the chain is not.
		fp := Fingerprint(ca.Cert.Raw)
		if pinSecond {
			fp = Fingerprint(caDER)
		}
		cfg := JoinClientTLS(strings.ToUpper(fp))
		err := cfg.VerifyPeerCertificate([][]byte{leafDER, caDER}, nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		pinned, perr := x509.ParseCertificate(caDER)
		if Fingerprint(leafDER) == fp {
			pinned, perr = x509.ParseCertificate(leafDER)
		}
		if perr != nil || !pinned.IsCA || (Fingerprint(caDER) != fp && Fingerprint(leafDER) != fp) {
			t.Fatalf("accepted a chain without the pinned CA %s", fp)
		}
		cert, err := x509.ParseCertificate(leafDER)
		if err != nil {
			t.Fatalf("accepted a leaf that does not parse: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(pinned)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Fatalf("accepted a leaf the pinned CA did not sign: %v", err)
		}
		if _, isNode, _ := PeerIdentity(cert); !isNode {
			t.Fatal("accepted a certificate that is not a node's")
		}
	})
}
