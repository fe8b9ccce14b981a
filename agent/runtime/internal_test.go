package runtime

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
)

func TestRegistryHosts(t *testing.T) {
	cfg := RegistryConfig{
		Mirrors: map[string][]string{
			"docker.io":     {"http://10.0.0.5:5000", "mirror.example/prefix/", "https://secure.example/v2"},
			"ghcr.io":       {"10.0.0.6"},
			"private:5000":  {"10.0.0.7:5001"},
			"nomirrors.org": nil,
		},
		Insecure: []string{"10.0.0.6", "10.0.0.7:5001", "private:5000", "plain.example"},
		Auth:     map[string]BasicAuth{"docker.io": {"hub", "pw"}, "10.0.0.5:5000": {"m", "mpw"}},
	}
	hosts, err := cfg.registryHosts()
	if err != nil {
		t.Fatal(err)
	}
	type host struct{ scheme, host, path, caps string }
	caps := func(h docker.RegistryHost) string {
		s := ""
		if h.Capabilities.Has(docker.HostCapabilityPull) {
			s += "pull,"
		}
		if h.Capabilities.Has(docker.HostCapabilityResolve) {
			s += "resolve,"
		}
		if h.Capabilities.Has(docker.HostCapabilityPush) {
			s += "push,"
		}
		return s
	}
	for _, tc := range []struct {
		ref  string
		want []host
	}{
		{"docker.io", []host{
			{"http", "10.0.0.5:5000", "/v2", "pull,resolve,"},
			{"https", "mirror.example", "/prefix/v2", "pull,resolve,"},
			{"https", "secure.example", "/v2", "pull,resolve,"},
			{"https", "registry-1.docker.io", "/v2", "pull,resolve,push,"},
		}},
		{"ghcr.io", []host{
			{"http", "10.0.0.6", "/v2", "pull,resolve,"},
			{"https", "ghcr.io", "/v2", "pull,resolve,push,"},
		}},
		{"private:5000", []host{
			{"http", "10.0.0.7:5001", "/v2", "pull,resolve,"},
			{"http", "private:5000", "/v2", "pull,resolve,push,"},
		}},
		{"plain.example:8080", []host{{"http", "plain.example:8080", "/v2", "pull,resolve,push,"}}},
		{"quay.io", []host{{"https", "quay.io", "/v2", "pull,resolve,push,"}}},
	} {
		hs, err := hosts(tc.ref)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		var got []host
		for _, h := range hs {
			got = append(got, host{h.Scheme, h.Host, h.Path, caps(h)})
			if h.Client == nil || h.Authorizer == nil {
				t.Errorf("%s: host %s without client or authorizer", tc.ref, h.Host)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.ref, got, tc.want)
		}
	}
	for _, tc := range []struct{ host, user, pass string }{
		{"docker.io", "hub", "pw"},
		{"registry-1.docker.io", "hub", "pw"},
		{"10.0.0.5:5000", "m", "mpw"},
		{"ghcr.io", "", ""},
	} {
		u, p, err := cfg.credentials(tc.host)
		if err != nil || u != tc.user || p != tc.pass {
			t.Errorf("credentials(%s) = %q %q %v, want %q %q", tc.host, u, p, err, tc.user, tc.pass)
		}
	}
}

func TestRegistryConfigRejectsBadMirror(t *testing.T) {
	for _, ep := range []string{"ftp://x", "http://", "http://[::1"} {
		cfg := RegistryConfig{Mirrors: map[string][]string{"docker.io": {ep}}}
		if _, err := cfg.registryHosts(); err == nil {
			t.Errorf("mirror %q accepted", ep)
		}
	}
}

func TestCommandLine(t *testing.T) {
	ep, cmd := []string{"/entry", "-x"}, []string{"serve"}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image", nil, nil, []string{"/entry", "-x", "serve"}},
		{"args", nil, []string{"a"}, []string{"/entry", "-x", "a"}},
		{"command", []string{"sh"}, nil, []string{"sh"}},
		{"both", []string{"sh", "-c"}, []string{"echo"}, []string{"sh", "-c", "echo"}},
	} {
		if got := commandLine(ep, cmd, tc.command, tc.args); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := commandLine(nil, nil, nil, nil); len(got) != 0 {
		t.Errorf("nothing: %v", got)
	}
}

func TestCPUQuota(t *testing.T) {
	for millis, want := range map[int64]int64{1000: 100000, 500: 50000, 250: 25000, 2500: 250000, 1: 1000, 5: 1000, 15: 1500} {
		if got := cpuQuota(millis); got != want {
			t.Errorf("cpuQuota(%d) = %d, want %d", millis, got, want)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                   "docker.io/library/busybox:latest",
		"busybox:1.36":              "docker.io/library/busybox:1.36",
		"me/app":                    "docker.io/me/app:latest",
		"127.0.0.1:5000/x/y:v1":     "127.0.0.1:5000/x/y:v1",
		"ghcr.io/a/b@sha256:" + h64: "ghcr.io/a/b@sha256:" + h64,
	} {
		got, err := normalizeRef(in)
		if err != nil || got != want {
			t.Errorf("normalizeRef(%q) = %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Busybox", "a b", "x:y:z"} {
		if _, err := normalizeRef(bad); !errors.Is(err, ErrInvalidImageName) {
			t.Errorf("normalizeRef(%q): %v, want ErrInvalidImageName", bad, err)
		}
	}
}

const h64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestRegistryErrors(t *testing.T) {
	for body, want := range map[string]string{
		`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v9"}}]}`: `MANIFEST_UNKNOWN: manifest unknown ({"Tag":"v9"})`,
		`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`:      "UNAUTHORIZED: authentication required",
		`{"errors":[{"code":"A"},{"code":"B","message":"b"}]}`:                                        "A; B: b",
	} {
		var e registryErrors
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatal(err)
		}
		if got := e.String(); got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
}

func TestPublicLabels(t *testing.T) {
	got := publicLabels(map[string]string{
		"app": "web", LabelPodUID: "u", labelLogPath: "/x", labelOOMKilled: "true",
		"io.containerd.image.config.stop-signal": "SIGTERM",
	})
	if len(got) != 2 || got["app"] != "web" || got[LabelPodUID] != "u" {
		t.Errorf("publicLabels = %v", got)
	}
}
