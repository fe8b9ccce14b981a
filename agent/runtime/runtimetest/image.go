// Package runtimetest has helpers for tests that run real containers: a
// busybox image made by hand from Debian's busybox-static, an in-process
// registry to pull it from, and a private containerd. Everything a helper
// creates is removed when the test ends, also when it fails.
package runtimetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shoalproj/shoal/lab/ociimage"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = ociimage.BusyboxPath

// ImageOptions change the image BuildImage makes.
type ImageOptions = ociimage.Options

// BuildBusyboxImage writes an OCI image layout archive of a busybox image
// named name (see ociimage.OCIArchive) and returns its path.
func BuildBusyboxImage(t testing.TB, name string) string {
	t.Helper()
	return BuildImage(t, name, ImageOptions{})
}

// BuildImage is BuildBusyboxImage with options.
func BuildImage(t testing.TB, name string, opts ImageOptions) string {
	t.Helper()
	RequireBusybox(t)
	archive, err := ociimage.OCIArchive(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, "image.tar", archive)
}

// BuildDockerArchive is BuildImage written as `docker save` writes, for
// testing imports of Docker archives.
func BuildDockerArchive(t testing.TB, name string, opts ImageOptions) string {
	t.Helper()
	RequireBusybox(t)
	archive, err := ociimage.DockerArchive(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, "docker-image.tar", archive)
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// RequireBusybox skips the test (fails it when CI is set) when Debian's
// busybox-static is not installed.
func RequireBusybox(t testing.TB) {
	t.Helper()
	if err := ociimage.CheckBusybox(); err != nil {
		missing(t, "%v", err)
	}
}

// missing skips, or fails when the environment variable CI is set: CI must
// have everything the tests need.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}
