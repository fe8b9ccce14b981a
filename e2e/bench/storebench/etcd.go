package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const (
	etcdClientPort = "2379"
	etcdPeerPort   = "2380"
)

// etcdMember is one etcd process.
type etcdMember struct {
	name    string
	ip      string
	dataDir string
	proc    *proc
	id      uint64 // raft member ID, learned once it answers
}

func (m *etcdMember) endpoint(scheme string) string {
	return scheme + "://" + net.JoinHostPort(m.ip, etcdClientPort)
}

// etcdCluster is a group of etcd members on loopback.
type etcdCluster struct {
	name    string
	members []*etcdMember
	scheme  string
	tls     *tls.Config // client TLS; nil without -etcd-tls
	value   func(seq uint64) string
}

// etcdPKI is a CA and the certificates every member and client use.
type etcdPKI struct {
	dir            string
	ca, cert, key  string // files: CA, server+peer cert, its key
	client         *tls.Config
	clientCertFile string
}

// newEtcdPKI makes a CA, one certificate for all members (their IPs as
// names, usable as server and as client for peer links), and a client
// certificate, with ECDSA P-256 keys like shoal's.
func newEtcdPKI(dir string, ips []string) (*etcdPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "storebench etcd CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	issue := func(serial int64, cn string, ipList []net.IP) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: ipList,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
	}
	// Peers dial from 127.0.0.1 (etcd binds no source address), and etcd
	// checks a peer's certificate against the address it comes from.
	ipList := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, ip := range ips {
		ipList = append(ipList, net.ParseIP(ip))
	}
	srvCert, srvKey, err := issue(2, "etcd", ipList)
	if err != nil {
		return nil, err
	}
	cliCert, cliKey, err := issue(3, "storebench", nil)
	if err != nil {
		return nil, err
	}
	p := &etcdPKI{dir: dir, ca: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "etcd.crt"), key: filepath.Join(dir, "etcd.key")}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	for path, data := range map[string][]byte{p.ca: caPEM, p.cert: srvCert, p.key: srvKey} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	pair, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	p.client = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return p, nil
}

// etcdPorts lists what the members will listen on.
func etcdPorts(ips []string) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, etcdClientPort), net.JoinHostPort(ip, etcdPeerPort))
	}
	return out
}

// etcdVersion is what `etcd --version` says, on one line.
func etcdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "etcd Version: "); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}

// startEtcd starts a cluster of one member per address, with fsync on (the
// default), and waits until every member sees a leader and a write passes.
func startEtcd(ctx context.Context, ps *procs, o *options, name string, ips []string, pki *etcdPKI, valueSize int) (*etcdCluster, error) {
	ec := &etcdCluster{name: name, scheme: "http"}
	if pki != nil {
		ec.scheme = "https"
		ec.tls = pki.client
	}
	var initial []string
	for i, ip := range ips {
		m := &etcdMember{name: fmt.Sprintf("%s-m%d", name, i+1), ip: ip, dataDir: filepath.Join(ps.root, fmt.Sprintf("%s-m%d", name, i+1))}
		ec.members = append(ec.members, m)
		initial = append(initial, m.name+"="+ec.scheme+"://"+net.JoinHostPort(ip, etcdPeerPort))
	}
	for _, m := range ec.members {
		peer := ec.scheme + "://" + net.JoinHostPort(m.ip, etcdPeerPort)
		argv := []string{o.etcdBin,
			"--name", m.name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.endpoint(ec.scheme),
			"--advertise-client-urls", m.endpoint(ec.scheme),
			"--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", name + "-" + filepath.Base(ps.root),
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		}
		if pki != nil {
			argv = append(argv,
				"--cert-file", pki.cert, "--key-file", pki.key, "--trusted-ca-file", pki.ca, "--client-cert-auth",
				"--peer-cert-file", pki.cert, "--peer-key-file", pki.key, "--peer-trusted-ca-file", pki.ca, "--peer-client-cert-auth")
		}
		var err error
		if m.proc, err = ps.start(m.name, nil, nil, argv...); err != nil {
			return nil, err
		}
	}
	ec.value = func(seq uint64) string { return padding(valueSize, seq) }
	dctx, cancel := context.WithTimeout(ctx, o.readyTimeout)
	defer cancel()
	if err := ec.waitReady(dctx, o.readyTimeout); err != nil {
		return nil, err
	}
	return ec, nil
}

func (ec *etcdCluster) newClient(endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         ec.tls,
		Logger:      zap.NewNop(),
	})
}

// waitReady waits until every member answers with the same leader and a
// write through the leader succeeds.
func (ec *etcdCluster) waitReady(ctx context.Context, limit time.Duration) error {
	last := "nothing yet"
	for {
		ok, seen := ec.readyOnce(ctx)
		if ok {
			return nil
		}
		last = seen
		for _, m := range ec.members {
			if m.proc.exited() {
				return fmt.Errorf("etcd %s exited: %v; last seen: %s", m.name, m.proc.err, last)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready within %v; last seen: %s", ec.name, limit, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (ec *etcdCluster) readyOnce(ctx context.Context) (bool, string) {
	li, err := ec.leader(ctx)
	if err != nil {
		return false, err.Error()
	}
	cli, err := ec.newClient(ec.members[li].endpoint(ec.scheme))
	if err != nil {
		return false, err.Error()
	}
	defer cli.Close()
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cli.Put(qctx, "/storebench/ready", "1"); err != nil {
		return false, "put: " + err.Error()
	}
	return true, ""
}

// leader returns the index of the member that leads, when all live members
// agree on one.
func (ec *etcdCluster) leader(ctx context.Context) (int, error) {
	var eps []string
	for _, m := range ec.members {
		if !m.proc.exited() {
			eps = append(eps, m.endpoint(ec.scheme))
		}
	}
	if len(eps) == 0 {
		return -1, errors.New("no member runs")
	}
	cli, err := ec.newClient(eps...)
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	var leader uint64
	var seen []string
	for _, m := range ec.members {
		if m.proc.exited() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(qctx, m.endpoint(ec.scheme))
		cancel()
		if err != nil {
			return -1, fmt.Errorf("status of %s: %w", m.name, err)
		}
		m.id = st.Header.MemberId
		seen = append(seen, fmt.Sprintf("%s: id %x leader %x", m.name, st.Header.MemberId, st.Leader))
		if st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return -1, fmt.Errorf("no agreed leader: %s", strings.Join(seen, ", "))
		}
		leader = st.Leader
	}
	for i, m := range ec.members {
		if m.id == leader && !m.proc.exited() {
			return i, nil
		}
	}
	return -1, fmt.Errorf("leader %x is not a live member: %s", leader, strings.Join(seen, ", "))
}

// etcdWriter is one client with its own connection to one member.
type etcdWriter struct {
	ec  *etcdCluster
	cli *clientv3.Client
}

func (ec *etcdCluster) newWriter(ctx context.Context, member int) (writer, error) {
	cli, err := ec.newClient(ec.members[member].endpoint(ec.scheme))
	if err != nil {
		return nil, err
	}
	// Make the connection before the clock runs.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Get(qctx, "/storebench/ready"); err != nil {
		cli.Close()
		return nil, fmt.Errorf("%s: %w", ec.members[member].name, err)
	}
	return &etcdWriter{ec: ec, cli: cli}, nil
}

func (w *etcdWriter) write(ctx context.Context, key string, seq uint64) error {
	_, err := w.cli.Put(ctx, "/storebench/"+key, w.ec.value(seq))
	return err
}

func (w *etcdWriter) close() { w.cli.Close() }
