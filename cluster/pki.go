package cluster

// The cluster's public key infrastructure: one self-signed CA per cluster,
// created by `shoal agent --init`, which signs a certificate for every node
// (server and client auth, organisation shoal:nodes) and for administrators
// (client auth only, organisation shoal:admins). Every key is ECDSA P-256.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Organisations carried in the Subject of the certificates the cluster CA
// issues; they tell what kind of party presents a certificate.
const (
	OrgNodes  = "shoal:nodes"
	OrgAdmins = "shoal:admins"
)

const (
	// pkiCAValidity is the lifetime of a cluster CA.
	pkiCAValidity = 10 * 365 * 24 * time.Hour
	// pkiBackdate moves NotBefore into the past so that a certificate is
	// valid at once on a node whose clock is slightly behind the issuer's;
	// at most a tenth of the certificate's validity, so that the lifetime a
	// renewal threshold is measured against stays close to the validity.
	pkiBackdate = 5 * time.Minute
	// pkiNodeIDPrefix starts the URI SAN that carries a node's ID in its
	// certificate (urn:shoal:node:<id>): the revocation list names node IDs,
	// which, unlike names, are never reused.
	pkiNodeIDPrefix = "shoal:node:"
	// pkiMaxNameLen bounds node and admin names (the length of a DNS name).
	pkiMaxNameLen = 253

	pkiPEMCert     = "CERTIFICATE"
	pkiPEMECKey    = "EC PRIVATE KEY"
	pkiPEMPKCS8Key = "PRIVATE KEY"
	pkiPEMCSR      = "CERTIFICATE REQUEST"
)

// CA is the cluster's certificate authority: its certificate and private key,
// parsed and as PEM.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed CA for the cluster clusterID, valid for ten
// years, which can sign leaf certificates only (MaxPathLen 0).
func NewCA(clusterID string) (*CA, error) {
	if clusterID == "" {
		return nil, errors.New("cannot create the cluster CA: cluster ID is empty")
	}
	short := clusterID
	if len(short) > 8 {
		short = short[:8]
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the cluster CA key: %w", err)
	}
	serial, err := pkiSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "shoal-ca-" + short},
		NotBefore:             now.Add(-pkiBackdate),
		NotAfter:              now.Add(pkiCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the cluster CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the new cluster CA certificate: %w", err)
	}
	keyPEM, err := pkiEncodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: pkiPEMCert, Bytes: der}),
		KeyPEM:  keyPEM,
	}, nil
}

// LoadCA parses a CA written by NewCA (or any ECDSA CA): the certificate must
// be a CA allowed to sign certificates and the key must be its private key.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := pkiParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA certificate: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, errors.New("cluster CA certificate is not a CA certificate")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("cluster CA certificate may not sign certificates (no certSign key usage)")
	}
	key, err := pkiParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA key: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("cluster CA key does not belong to the cluster CA certificate")
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: slices.Clone(certPEM),
		KeyPEM:  slices.Clone(keyPEM),
	}, nil
}

// NewNodeKey creates a node's private key and a certificate signing request
// for it with CN nodeName and the given IP addresses. The CA decides what the
// certificate finally names (see SignNode); the request mainly proves that its
// sender holds the key.
func NewNodeKey(nodeName string, ips []net.IP) (keyPEM, csrPEM []byte, err error) {
	if err := pkiCheckName("node", nodeName); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the node key: %w", err)
	}
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: nodeName},
		IPAddresses: pkiUsableIPs(ips),
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the node's certificate request: %w", err)
	}
	keyPEM, err = pkiEncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: pkiPEMCSR, Bytes: der}), nil
}

// SignNode issues a node certificate for the key in csrPEM after checking the
// request's signature. The certificate is named by the arguments, not by the
// request: CN nodeName, O shoal:nodes, server and client auth, and as subject
// alternative names the given IPs, 127.0.0.1, ::1, nodeName and localhost.
// Its lifetime is validity, cut to the CA's own expiry. The certificate
// carries no node ID; the cluster signs with SignNodeID.
func (ca *CA) SignNode(csrPEM []byte, nodeName string, ips []net.IP, validity time.Duration) (certPEM []byte, err error) {
	return ca.SignNodeID(csrPEM, "", nodeName, ips, validity)
}

// SignNodeID is SignNode for the node with ID nodeID, which the certificate
// carries as the URI urn:shoal:node:<nodeID> (see NodeIDOf), so that
// revoking the node revokes every certificate it was ever given.
func (ca *CA) SignNodeID(csrPEM []byte, nodeID, nodeName string, ips []net.IP, validity time.Duration) (certPEM []byte, err error) {
	if validity <= 0 {
		return nil, fmt.Errorf("cannot sign a certificate for node %q: validity must be positive, got %v", nodeName, validity)
	}
	now := time.Now()
	return ca.signNodeWindow(csrPEM, nodeID, nodeName, ips, now.Add(-min(pkiBackdate, validity/10)), now.Add(validity))
}

// signNodeWindow signs a node certificate valid from notBefore to notAfter
// (cut to the CA's expiry); tests use it to make expired certificates.
func (ca *CA) signNodeWindow(csrPEM []byte, nodeID, nodeName string, ips []net.IP, notBefore, notAfter time.Time) (certPEM []byte, err error) {
	if err := pkiCheckName("node", nodeName); err != nil {
		return nil, err
	}
	var uris []*url.URL
	if nodeID != "" {
		if err := pkiCheckName("node ID", nodeID); err != nil {
			return nil, err
		}
		uris = []*url.URL{{Scheme: "urn", Opaque: pkiNodeIDPrefix + nodeID}}
	}
	csr, err := pkiParseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("cannot sign a certificate for node %q: %w", nodeName, err)
	}
	if err := pkiCheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("cannot sign a certificate for node %q: %w", nodeName, err)
	}

	allIPs := pkiUsableIPs(ips)
	dnsNames := []string{nodeName, "localhost"}
	if ip := net.ParseIP(nodeName); ip != nil {
		// A node named by its address is reached by that address.
		allIPs = append(allIPs, ip)
		dnsNames = []string{"localhost"}
	} else if nodeName == "localhost" {
		dnsNames = []string{"localhost"}
	}
	allIPs = pkiDedupIPs(append(allIPs, net.IPv4(127, 0, 0, 1), net.IPv6loopback))

	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: nodeName, Organization: []string{OrgNodes}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: allIPs,
		DNSNames:    dnsNames,
		URIs:        uris,
	}
	der, err := ca.pkiIssue(tmpl, csr.PublicKey, notBefore, notAfter)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of node %q: %w", nodeName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pkiPEMCert, Bytes: der}), nil
}

// IssueAdmin creates a key and a client certificate for an administrator
// (CN name, O shoal:admins, client auth only).
func (ca *CA) IssueAdmin(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("cannot issue a certificate for admin %q: validity must be positive, got %v", name, validity)
	}
	now := time.Now()
	return ca.issueAdminWindow(name, now.Add(-min(pkiBackdate, validity/10)), now.Add(validity))
}

// issueAdminWindow is IssueAdmin with a certificate valid from notBefore to
// notAfter (cut to the CA's expiry); tests use it to make expired ones.
func (ca *CA) issueAdminWindow(name string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if err := pkiCheckName("admin", name); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the admin key: %w", err)
	}
	der, err := ca.pkiIssue(pkiAdminTemplate(name), &key.PublicKey, notBefore, notAfter)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the certificate of admin %q: %w", name, err)
	}
	keyPEM, err = pkiEncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pkiPEMCert, Bytes: der}), keyPEM, nil
}

// SignAdmin issues an administrator certificate, as IssueAdmin does, for
// the key in csrPEM (whose holder keeps the key to itself). notBeforeAfter,
// when set, is the name's last revocation: the certificate is made valid
// only from just after it, so that it is not taken for one the revocation
// covers (those are valid from before it).
func (ca *CA) SignAdmin(csrPEM []byte, name string, validity time.Duration, notBeforeAfter time.Time) (certPEM []byte, err error) {
	if err := pkiCheckName("admin", name); err != nil {
		return nil, err
	}
	if validity <= 0 {
		return nil, fmt.Errorf("cannot sign a certificate for admin %q: validity must be positive, got %v", name, validity)
	}
	csr, err := pkiParseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("cannot sign a certificate for admin %q: %w", name, err)
	}
	if err := pkiCheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("cannot sign a certificate for admin %q: %w", name, err)
	}
	now := time.Now()
	// Certificates keep whole seconds: compare what will be written.
	notBefore := now.Add(-min(pkiBackdate, validity/10)).Truncate(time.Second)
	if !notBeforeAfter.IsZero() && !notBefore.After(notBeforeAfter) {
		notBefore = notBeforeAfter.Truncate(time.Second).Add(time.Second)
	}
	der, err := ca.pkiIssue(pkiAdminTemplate(name), csr.PublicKey, notBefore, now.Add(validity))
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of admin %q: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pkiPEMCert, Bytes: der}), nil
}

// pkiAdminTemplate names an administrator: CN name, O shoal:admins, client
// authentication only.
func pkiAdminTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{OrgAdmins}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// pkiIssue fills in serial and validity (notBefore to notAfter, cut to the
// CA's own expiry) and signs tmpl for pub with the CA.
func (ca *CA) pkiIssue(tmpl *x509.Certificate, pub crypto.PublicKey, notBefore, notAfter time.Time) ([]byte, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("the cluster CA is not loaded")
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("certificate would expire (%s) before it is valid (%s)",
			notAfter.UTC().Format(time.RFC3339), notBefore.UTC().Format(time.RFC3339))
	}
	serial, err := pkiSerial()
	if err != nil {
		return nil, err
	}
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !ca.Cert.NotAfter.After(time.Now()) {
		return nil, fmt.Errorf("the cluster CA expired on %s", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
}

// Fingerprint is the lowercase hex SHA-256 of a certificate's DER encoding,
// the form a join token pins the cluster CA with.
func Fingerprint(caCertDER []byte) string {
	sum := sha256.Sum256(caCertDER)
	return hex.EncodeToString(sum[:])
}

// PeerIdentity tells who a verified certificate issued by the cluster CA
// belongs to: its common name, and whether it is a node's or an admin's.
// A nil certificate is nobody.
func PeerIdentity(cert *x509.Certificate) (name string, isNode, isAdmin bool) {
	if cert == nil {
		return "", false, false
	}
	return cert.Subject.CommonName,
		slices.Contains(cert.Subject.Organization, OrgNodes),
		slices.Contains(cert.Subject.Organization, OrgAdmins)
}

// NodeIDOf returns the node ID a node certificate carries (see SignNodeID),
// or "" for a certificate without one.
func NodeIDOf(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	for _, u := range cert.URIs {
		if u.Scheme == "urn" && strings.HasPrefix(u.Opaque, pkiNodeIDPrefix) {
			return strings.TrimPrefix(u.Opaque, pkiNodeIDPrefix)
		}
	}
	return ""
}

// NewGossipKey returns a random 32-byte key, which makes memberlist encrypt
// gossip with AES-256.
func NewGossipKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating the gossip key: %w", err)
	}
	return key, nil
}

// WriteSecretFile replaces path with data atomically: readers see either the
// old or the new content, never a partial file. The file has mode 0600;
// missing parent directories are created with mode 0700.
func WriteSecretFile(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating directory for %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// Make the rename durable; not every file system can sync a directory,
	// and the file itself is already written, so a failure here is ignored.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// pkiSerial returns a random positive 128-bit serial number.
func pkiSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generating a certificate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// pkiCheckName accepts names usable as a certificate's CN and, for nodes, as
// a DNS name: 1 to 253 characters of letters, digits, '-', '.' and '_'.
func pkiCheckName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	if len(name) > pkiMaxNameLen {
		return fmt.Errorf("%s name is %d characters long, at most %d are allowed", kind, len(name), pkiMaxNameLen)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
		default:
			return fmt.Errorf("%s name %q contains %q: only letters, digits, '-', '.' and '_' are allowed", kind, name, r)
		}
	}
	return nil
}

// pkiCheckPublicKey refuses keys too weak or of a kind shoal does not use.
func pkiCheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			return fmt.Errorf("certificate request's ECDSA key is too small (%d bits)", k.Curve.Params().BitSize)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("certificate request's RSA key is too small (%d bits)", k.N.BitLen())
		}
	default:
		return fmt.Errorf("certificate request has an unsupported key type %T", pub)
	}
	return nil
}

// pkiUsableIPs drops nil and unspecified addresses (0.0.0.0, ::), which no
// one dials, and stores IPv4 addresses in their 4-byte form.
func pkiUsableIPs(ips []net.IP) []net.IP {
	out := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		if len(ip) == 0 || ip.IsUnspecified() {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		out = append(out, slices.Clone(ip))
	}
	return out
}

func pkiDedupIPs(ips []net.IP) []net.IP {
	out := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !slices.ContainsFunc(out, ip.Equal) {
			out = append(out, ip)
		}
	}
	return out
}

func pkiEncodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pkiPEMECKey, Bytes: der}), nil
}

// pkiParseCertPEM returns the first certificate in data.
func pkiParseCertPEM(data []byte) (*x509.Certificate, error) {
	certs, err := pkiParseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// pkiParseCertsPEM returns every certificate in data, in order; blocks of
// other types are skipped, and there must be at least one certificate.
func pkiParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pkiPEMCert {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// pkiParseKeyPEM reads an ECDSA private key in SEC 1 or PKCS #8 form.
func pkiParseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key block found")
		}
		switch block.Type {
		case pkiPEMECKey:
			key, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing EC private key: %w", err)
			}
			return key, nil
		case pkiPEMPKCS8Key:
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing PKCS #8 private key: %w", err)
			}
			key, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("private key is %T, want ECDSA", k)
			}
			return key, nil
		}
	}
}

// pkiParseCSR decodes a PEM certificate request and checks that it is signed
// by the key it carries.
func pkiParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != pkiPEMCSR {
		return nil, errors.New("no PEM CERTIFICATE REQUEST block found")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate request is malformed: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request's signature is invalid (tampered with, or not signed by its own key): %w", err)
	}
	return csr, nil
}
