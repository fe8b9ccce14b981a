// Package client holds what a program needs to talk to a shoal cluster: the
// client configuration file and connections over gRPC and HTTP.
package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// Config is the client configuration file (~/.shoal/config, or
// $SHOAL_CONFIG), written by `shoal agent --init` and `shoal lab up`.
type Config struct {
	// Server is the API endpoint (host:port) the client talks to.
	Server string `json:"server"`
	// Servers are further endpoints, tried in order when Server does not answer.
	Servers []string `json:"servers,omitempty"`
	// CA is the cluster CA certificate (PEM) that server certificates chain to.
	CA string `json:"ca"`
	// Cert and Key are the client's certificate and private key (PEM).
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// DefaultConfigPath returns $SHOAL_CONFIG, or ~/.shoal/config.
func DefaultConfigPath() string {
	if p := os.Getenv("SHOAL_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".shoal", "config")
}

// LoadConfig reads a client configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no client configuration at %s (written by `shoal agent --init`; set SHOAL_CONFIG to use another)", path)
		}
		return nil, fmt.Errorf("read client configuration: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("client configuration %s: %w", path, err)
	}
	if c.Server == "" || c.CA == "" || c.Cert == "" || c.Key == "" {
		return nil, fmt.Errorf("client configuration %s: server, ca, cert and key are all required", path)
	}
	return &c, nil
}

// Save writes the configuration with owner-only permissions, creating its
// directory.
func (c *Config) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save client configuration: %w", err)
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("save client configuration: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save client configuration: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save client configuration: %w", err)
	}
	return nil
}

// TLSConfig returns the mutual-TLS client configuration: the client
// certificate, and server certificates verified against the cluster CA.
func (c *Config) TLSConfig() (*tls.Config, error) {
	cert, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CA)) {
		return nil, errors.New("client configuration: ca holds no PEM certificate")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
		// Nodes are reached by address; every node certificate names its
		// addresses, and ServerName is set per endpoint by the dialer.
	}, nil
}
