package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/distribution/reference"
)

// RegistryConfig is how the node reaches image registries.
type RegistryConfig struct {
	// Mirrors maps a registry host (as in the image reference: "docker.io",
	// "ghcr.io", "10.0.0.5:5000") to mirror endpoints tried in order before
	// the registry itself. An endpoint is a URL ("http://10.0.0.5:5000",
	// "https://mirror.example/some/prefix") or a bare host[:port], spoken to
	// over HTTPS unless it is listed in Insecure. A mirror is trusted to
	// resolve tags, as containerd's hosts.toml does for private mirrors.
	Mirrors map[string][]string
	// Insecure lists hosts spoken to over plain HTTP. An entry without a
	// port matches the host on any port.
	Insecure []string
	// Auth gives credentials per host (registry or mirror host; "docker.io"
	// also covers registry-1.docker.io). They answer both Basic and Bearer
	// token challenges.
	Auth map[string]BasicAuth
}

// BasicAuth is a user name and password for a registry.
type BasicAuth struct {
	Username, Password string
}

// dockerHubHost is where the Docker Hub's registry API really answers.
const dockerHubHost = "registry-1.docker.io"

func (c RegistryConfig) insecure(host string) bool {
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	for _, e := range c.Insecure {
		if e == host || e == hostname {
			return true
		}
	}
	return false
}

func (c RegistryConfig) credentials(host string) (string, string, error) {
	if a, ok := c.Auth[host]; ok {
		return a.Username, a.Password, nil
	}
	switch host {
	case dockerHubHost:
		if a, ok := c.Auth["docker.io"]; ok {
			return a.Username, a.Password, nil
		}
	case "docker.io":
		if a, ok := c.Auth[dockerHubHost]; ok {
			return a.Username, a.Password, nil
		}
	}
	return "", "", nil
}

// endpoint turns a mirror endpoint into scheme, host and API path.
func (c RegistryConfig) endpoint(ep string) (scheme, host, path string, err error) {
	raw := ep
	if !strings.Contains(raw, "://") {
		h := raw
		if i := strings.IndexByte(h, '/'); i >= 0 {
			h = h[:i]
		}
		scheme := "https"
		if c.insecure(h) {
			scheme = "http"
		}
		raw = scheme + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", fmt.Errorf("mirror endpoint %q: %w", ep, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", "", fmt.Errorf("mirror endpoint %q: scheme must be http or https", ep)
	}
	if u.Host == "" {
		return "", "", "", fmt.Errorf("mirror endpoint %q: no host", ep)
	}
	path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(path, "/v2") {
		path += "/v2"
	}
	return u.Scheme, u.Host, path, nil
}

// registryHosts is the resolver's hosts function for this configuration:
// the mirrors of a registry first (pull and resolve), then the registry
// itself (pull, resolve, push).
func (c RegistryConfig) registryHosts() (docker.RegistryHosts, error) {
	// Check every endpoint once, so that a typo fails at start-up rather
	// than at the first pull.
	for reg, eps := range c.Mirrors {
		for _, ep := range eps {
			if _, _, _, err := c.endpoint(ep); err != nil {
				return nil, fmt.Errorf("registry %s: %w", reg, err)
			}
		}
	}
	httpClient := &http.Client{Transport: docker.DefaultHTTPTransport(nil)}
	authorizer := docker.NewDockerAuthorizer(
		docker.WithAuthClient(httpClient),
		docker.WithAuthCreds(c.credentials),
	)
	return func(refHost string) ([]docker.RegistryHost, error) {
		var hosts []docker.RegistryHost
		for _, ep := range c.Mirrors[refHost] {
			scheme, host, path, err := c.endpoint(ep)
			if err != nil {
				return nil, err
			}
			hosts = append(hosts, docker.RegistryHost{
				Client:       httpClient,
				Authorizer:   authorizer,
				Host:         host,
				Scheme:       scheme,
				Path:         path,
				Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
			})
		}
		host := refHost
		if host == "docker.io" {
			host = dockerHubHost
		}
		scheme := "https"
		if c.insecure(refHost) || c.insecure(host) {
			scheme = "http"
		}
		hosts = append(hosts, docker.RegistryHost{
			Client:       httpClient,
			Authorizer:   authorizer,
			Host:         host,
			Scheme:       scheme,
			Path:         "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush,
		})
		return hosts, nil
	}, nil
}

// normalizeRef gives the full form of an image reference
// (busybox → docker.io/library/busybox:latest).
func normalizeRef(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrInvalidImageName, ref, err)
	}
	return named.String(), nil
}

// registryErrors is the error body of the registry API.
type registryErrors struct {
	Errors []struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail,omitempty"`
	} `json:"errors"`
}

func (e registryErrors) String() string {
	var parts []string
	for _, x := range e.Errors {
		s := x.Code
		if x.Message != "" {
			if s != "" {
				s += ": "
			}
			s += x.Message
		}
		if d := strings.TrimSpace(string(x.Detail)); d != "" && d != "null" && d != "{}" && d != `""` {
			s += " (" + d + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// registryMessage asks the registry for the manifest of ref with a GET and
// returns the error it answers with, if any. containerd resolves tags with
// HEAD, whose answers carry no body, so a missing image would otherwise be
// reported as a bare "not found" without the registry's own words. Best
// effort: "" when nothing better than containerd's error could be had.
func registryMessage(ctx context.Context, hosts docker.RegistryHosts, ref string) string {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return ""
	}
	refHost := reference.Domain(named)
	object := "latest"
	if d, ok := named.(reference.Digested); ok {
		object = d.Digest().String()
	} else if t, ok := named.(reference.Tagged); ok {
		object = t.Tag()
	}
	hs, err := hosts(refHost)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var msgs []string
	for _, h := range hs {
		if !h.Capabilities.Has(docker.HostCapabilityResolve) {
			continue
		}
		u := url.URL{Scheme: h.Scheme, Host: h.Host, Path: h.Path + "/" + reference.Path(named) + "/manifests/" + object}
		if h.Host != refHost && !(refHost == "docker.io" && h.Host == dockerHubHost) {
			u.RawQuery = url.Values{"ns": {refHost}}.Encode()
		}
		if m := fetchRegistryError(ctx, h, u.String()); m != "" {
			msgs = append(msgs, m)
		}
	}
	return strings.Join(msgs, "; ")
}

func fetchRegistryError(ctx context.Context, h docker.RegistryHost, u string) string {
	for attempt := 0; attempt < 2; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return ""
		}
		req.Header.Set("Accept", strings.Join([]string{
			"application/vnd.oci.image.index.v1+json",
			"application/vnd.oci.image.manifest.v1+json",
			"application/vnd.docker.distribution.manifest.list.v2+json",
			"application/vnd.docker.distribution.manifest.v2+json",
		}, ", "))
		if h.Authorizer != nil {
			if err := h.Authorizer.Authorize(ctx, req); err != nil {
				return ""
			}
		}
		client := h.Client
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Do(req)
		if err != nil {
			return ""
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && h.Authorizer != nil {
			if err := h.Authorizer.AddResponses(ctx, []*http.Response{resp}); err == nil {
				continue
			}
		}
		if resp.StatusCode < 400 {
			return ""
		}
		var re registryErrors
		if json.Unmarshal(body, &re) == nil && len(re.Errors) > 0 {
			return fmt.Sprintf("%s: %s", h.Host, re.String())
		}
		return fmt.Sprintf("%s: %s", h.Host, resp.Status)
	}
	return ""
}
