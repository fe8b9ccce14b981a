// Package ociimage makes small container images without a registry or a
// build tool: one layer holding Debian's busybox-static (/bin/busybox and a
// symlink per applet) plus any files given, written as an OCI image layout
// archive (what containerd's import and `shoal image load` take) or as
// `docker save` writes. The lab uses it to give its hosts the example's
// image; tests use it for images they pull from a registry of their own.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// Options change the image that is made.
type Options struct {
	// Files are added to the root file system: path → content (mode 0644,
	// or 0755 under a bin directory).
	Files map[string]string
	// Entrypoint and Cmd of the image; Cmd defaults to ["sh"].
	Entrypoint, Cmd []string
	// Env is added to PATH.
	Env []string
	// WorkingDir defaults to "/".
	WorkingDir string
	// StopSignal, e.g. "SIGINT"; "" leaves the default (SIGTERM).
	StopSignal string
}

// CheckBusybox says what is wrong when Debian's busybox-static is not
// installed (a dynamically linked busybox cannot run in a one-layer image).
func CheckBusybox() error {
	f, err := elf.Open(BusyboxPath)
	if err != nil {
		return fmt.Errorf("busybox-static is not installed (%w): apt-get install busybox-static", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: install busybox-static, not busybox", BusyboxPath)
		}
	}
	return nil
}

// OCIArchive returns an OCI image layout archive of a busybox image named
// name (a reference; it is normalised, busybox:t →
// docker.io/library/busybox:t). Its one layer has /bin/busybox with a
// symlink for each applet (sh, httpd, wget, sleep, cat, nc, nslookup, ...),
// /etc/passwd, /etc/group and /tmp. The name is in the index annotation
// io.containerd.image.name, which containerd's import and `ctr image
// import` use. The same options give the same digests.
func OCIArchive(name string, opts Options) ([]byte, error) {
	if err := CheckBusybox(); err != nil {
		return nil, err
	}
	b, err := buildImage(name, opts)
	if err != nil {
		return nil, fmt.Errorf("build image %s: %w", name, err)
	}
	return b, nil
}

// DockerArchive is OCIArchive written as `docker save` writes (a
// manifest.json with RepoTags, the config, the layer as a plain tar).
func DockerArchive(name string, opts Options) ([]byte, error) {
	if err := CheckBusybox(); err != nil {
		return nil, err
	}
	img, err := makeImage(name, opts)
	if err != nil {
		return nil, fmt.Errorf("build image %s: %w", name, err)
	}
	configHex := strings.TrimPrefix(blob{data: img.config}.digest(), "sha256:")
	layerHex := strings.TrimPrefix(img.diffID, "sha256:")
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configHex + ".json",
		"RepoTags": []string{reference.FamiliarString(img.named)},
		"Layers":   []string{layerHex + "/layer.tar"},
	}})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	tw := tarWriter{tar.NewWriter(&out)}
	for _, step := range []func() error{
		func() error { return tw.dir(layerHex + "/") },
		func() error { return tw.file(layerHex+"/layer.tar", img.layer) },
		func() error { return tw.file(configHex+".json", img.config) },
		func() error { return tw.file("manifest.json", manifest) },
		tw.Close,
	} {
		if err := step(); err != nil {
			return nil, fmt.Errorf("build image %s: %w", name, err)
		}
	}
	return out.Bytes(), nil
}

var applets struct {
	sync.Once
	list []string
	err  error
}

func busyboxApplets() ([]string, error) {
	applets.Do(func() {
		out, err := exec.Command(BusyboxPath, "--list").Output()
		if err != nil {
			applets.err = fmt.Errorf("%s --list: %w", BusyboxPath, err)
			return
		}
		for _, a := range strings.Fields(string(out)) {
			if a != "busybox" && !strings.Contains(a, "/") {
				applets.list = append(applets.list, a)
			}
		}
		sort.Strings(applets.list)
	})
	return applets.list, applets.err
}

// epoch is the time stamp of every file in the image, so that the same
// content gives the same digests.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

type blob struct {
	mediaType string
	data      []byte
}

func (b blob) digest() string {
	s := sha256.Sum256(b.data)
	return "sha256:" + hex.EncodeToString(s[:])
}

func (b blob) descriptor() map[string]any {
	return map[string]any{"mediaType": b.mediaType, "digest": b.digest(), "size": len(b.data)}
}

// imageParts is an image before it is written in one archive format or
// another.
type imageParts struct {
	named  reference.Named
	layer  []byte // uncompressed
	diffID string
	config []byte
}

func makeImage(name string, opts Options) (*imageParts, error) {
	named, err := reference.ParseDockerRef(name)
	if err != nil {
		return nil, fmt.Errorf("image name: %w", err)
	}
	layer, err := rootfsTar(opts.Files)
	if err != nil {
		return nil, err
	}
	diffID := blob{data: layer}.digest()
	cmd := opts.Cmd
	if cmd == nil && opts.Entrypoint == nil {
		cmd = []string{"sh"}
	}
	wd := opts.WorkingDir
	if wd == "" {
		wd = "/"
	}
	cfg := map[string]any{
		"Env":        append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, opts.Env...),
		"WorkingDir": wd,
	}
	if cmd != nil {
		cfg["Cmd"] = cmd
	}
	if opts.Entrypoint != nil {
		cfg["Entrypoint"] = opts.Entrypoint
	}
	if opts.StopSignal != "" {
		cfg["StopSignal"] = opts.StopSignal
	}
	config, err := json.Marshal(map[string]any{
		"created":      epoch.Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history":      []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "shoal: busybox-static"}},
	})
	if err != nil {
		return nil, err
	}
	return &imageParts{named: named, layer: layer, diffID: diffID, config: config}, nil
}

// tarWriter writes an archive's regular files and directories.
type tarWriter struct{ *tar.Writer }

func (w tarWriter) file(name string, data []byte) error {
	if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

func (w tarWriter) dir(name string) error {
	return w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch})
}

func buildImage(name string, opts Options) ([]byte, error) {
	img, err := makeImage(name, opts)
	if err != nil {
		return nil, err
	}
	named, layer, config := img.named, img.layer, img.config
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(layer); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	layerBlob := blob{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", data: gz.Bytes()}
	configBlob := blob{mediaType: "application/vnd.oci.image.config.v1+json", data: config}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configBlob.descriptor(),
		"layers":        []any{layerBlob.descriptor()},
	})
	if err != nil {
		return nil, err
	}
	manifestBlob := blob{mediaType: "application/vnd.oci.image.manifest.v1+json", data: manifest}
	md := manifestBlob.descriptor()
	md["platform"] = map[string]string{"architecture": "amd64", "os": "linux"}
	annotations := map[string]string{"io.containerd.image.name": named.String()}
	if tagged, ok := named.(reference.Tagged); ok {
		annotations["org.opencontainers.image.ref.name"] = tagged.Tag()
	}
	md["annotations"] = annotations
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{md},
	})
	if err != nil {
		return nil, err
	}

	var out bytes.Buffer
	tw := tarWriter{tar.NewWriter(&out)}
	if err := tw.dir("blobs/"); err != nil {
		return nil, err
	}
	if err := tw.dir("blobs/sha256/"); err != nil {
		return nil, err
	}
	if err := tw.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := tw.file("index.json", index); err != nil {
		return nil, err
	}
	for _, b := range []blob{layerBlob, configBlob, manifestBlob} {
		if err := tw.file("blobs/sha256/"+strings.TrimPrefix(b.digest(), "sha256:"), b.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// rootfsTar is the image's one layer, uncompressed.
func rootfsTar(files map[string]string) ([]byte, error) {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, err
	}
	list, err := busyboxApplets()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	dir := func(name string, mode int64) error {
		if dirs[name] {
			return nil
		}
		dirs[name] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o755}, {"root", 0o700}, {"sys", 0o755}, {"tmp", 0o1777}, {"var", 0o755}, {"usr", 0o755}, {"usr/bin", 0o755}, {"sbin", 0o755}} {
		if err := dir(d.name, d.mode); err != nil {
			return nil, err
		}
	}
	if err := file("bin/busybox", 0o755, bb); err != nil {
		return nil, err
	}
	for _, a := range list {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")); err != nil {
		return nil, err
	}
	if err := file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		clean := strings.TrimPrefix(path.Clean("/"+n), "/")
		if clean == "" {
			return nil, fmt.Errorf("bad file name %q", n)
		}
		parts := strings.Split(clean, "/")
		for i := 1; i < len(parts); i++ {
			if err := dir(strings.Join(parts[:i], "/"), 0o755); err != nil {
				return nil, err
			}
		}
		mode := int64(0o644)
		if strings.Contains("/"+path.Dir(clean)+"/", "/bin/") {
			mode = 0o755
		}
		if err := file(clean, mode, []byte(files[n])); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
