package runtimetest

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// registryAuth remembers the credentials of the registries started with
// StartRegistryWithAuth, so that PushImage can use them.
var registryAuth sync.Map // host → authn.Basic

// StartRegistry runs an OCI registry (go-containerregistry's, blobs in
// memory) on 127.0.0.1 at a random port over plain HTTP until the test ends,
// and returns its host:port.
func StartRegistry(t testing.TB) string {
	t.Helper()
	return serveRegistry(t, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
}

// StartRegistryWithAuth is StartRegistry with HTTP basic authentication:
// every API request without these credentials gets 401 and the registry
// API's UNAUTHORIZED error.
func StartRegistryWithAuth(t testing.TB, user, password string) string {
	t.Helper()
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="shoal-test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`)
			return
		}
		inner.ServeHTTP(w, r)
	})
	host := serveRegistry(t, h)
	registryAuth.Store(host, authn.Basic{Username: user, Password: password})
	t.Cleanup(func() { registryAuth.Delete(host) })
	return host
}

func serveRegistry(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	})
	return ln.Addr().String()
}

// PushImage pushes the (first) image of an OCI archive, as BuildImage
// writes it, to host as repoTag ("test/busybox:v1"), over plain HTTP.
func PushImage(t testing.TB, host, repoTag, ociArchive string) {
	t.Helper()
	dir := t.TempDir()
	if err := untar(ociArchive, dir); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	if len(im.Manifests) == 0 {
		t.Fatalf("push %s: %s holds no image", repoTag, ociArchive)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := []remote.Option{remote.WithContext(ctx)}
	if a, ok := registryAuth.Load(host); ok {
		b := a.(authn.Basic)
		opts = append(opts, remote.WithAuth(&b))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push %s to %s: %v", repoTag, host, err)
	}
}

// untar extracts a tar of regular files and directories into dir.
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("%s: entry %q leaves the directory", archive, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.Create(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}
