package agent

import (
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/shoalproj/shoal/agent/runtime"
)

// registryFile is the agent's registry configuration file
// (--registry-config):
//
//	mirrors:
//	  docker.io: ["http://10.0.0.5:5000"]
//	insecure: ["10.0.0.5:5000"]
//	auth:
//	  registry.example.com: {username: ci, password: secret}
type registryFile struct {
	Mirrors  map[string][]string `json:"mirrors,omitempty"`
	Insecure []string            `json:"insecure,omitempty"`
	Auth     map[string]struct {
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"auth,omitempty"`
}

// LoadRegistryConfig reads a registry configuration file and adds the
// mirrors (REGISTRY=ENDPOINT) and plain-HTTP hosts given as flags.
func LoadRegistryConfig(path string, mirrors, insecure []string) (runtime.RegistryConfig, error) {
	cfg := runtime.RegistryConfig{Mirrors: map[string][]string{}, Auth: map[string]runtime.BasicAuth{}}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("registry configuration: %w", err)
		}
		var f registryFile
		if err := yaml.UnmarshalStrict(data, &f); err != nil {
			return cfg, fmt.Errorf("registry configuration %s: %w", path, err)
		}
		for host, eps := range f.Mirrors {
			cfg.Mirrors[host] = append(cfg.Mirrors[host], eps...)
		}
		cfg.Insecure = append(cfg.Insecure, f.Insecure...)
		for host, a := range f.Auth {
			cfg.Auth[host] = runtime.BasicAuth{Username: a.Username, Password: a.Password}
		}
	}
	for _, m := range mirrors {
		host, ep, ok := strings.Cut(m, "=")
		if !ok || host == "" || ep == "" {
			return cfg, fmt.Errorf("--registry-mirror %q: want REGISTRY=ENDPOINT, e.g. docker.io=http://10.0.0.5:5000", m)
		}
		cfg.Mirrors[host] = append(cfg.Mirrors[host], ep)
	}
	cfg.Insecure = append(cfg.Insecure, insecure...)
	return cfg, nil
}
