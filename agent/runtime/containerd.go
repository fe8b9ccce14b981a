package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	clog "github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultNamespace is the containerd namespace shoal's containers live in.
const DefaultNamespace = "shoal"

// Labels kept by the runtime itself on the containerd container. They are
// the runtime's memory across agent restarts and are not shown in
// ContainerStatus.Labels.
const (
	internalPrefix  = "io.shoal.runtime."
	labelManaged    = "io.shoal.runtime.managed"     // "true" on every container made here
	labelLogPath    = "io.shoal.runtime.log-path"    // ContainerSpec.LogPath
	labelImageID    = "io.shoal.runtime.image-id"    // digest of the image at creation
	labelStartedAt  = "io.shoal.runtime.started-at"  // RFC 3339, set once started
	labelFinishedAt = "io.shoal.runtime.finished-at" // RFC 3339, set once the exit is recorded
	labelExitCode   = "io.shoal.runtime.exit-code"   // set with finished-at
	labelOOMKilled  = "io.shoal.runtime.oom-killed"  // "true" once an OOM kill was seen
)

// cfsPeriod is the CFS period used for CPU limits (100 ms, as Kubernetes).
const cfsPeriod = 100000

// Options configure a containerd Runtime.
type Options struct {
	// Address is containerd's socket (see EnsureContainerd).
	Address string
	// Namespace is the containerd namespace; "" is DefaultNamespace.
	Namespace string
	// Snapshotter; "" is containerd's default (overlayfs).
	Snapshotter string
	Registry    RegistryConfig
	Logger      *slog.Logger
}

// Containerd is the Runtime on containerd.
type Containerd struct {
	client      *client.Client
	ns          string
	snapshotter string
	log         *slog.Logger
	clog        *clog.Entry
	hosts       docker.RegistryHosts

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	pulls  map[string]*pullCall
	closed bool
}

var _ Runtime = (*Containerd)(nil)

// New connects to containerd and starts following its events. It returns
// once the event subscription is live, so no exit after New returns is
// missed.
func New(ctx context.Context, opts Options) (*Containerd, error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	hosts, err := opts.Registry.registryHosts()
	if err != nil {
		return nil, err
	}
	c, err := client.New(opts.Address, client.WithDefaultNamespace(opts.Namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", opts.Address, err)
	}
	cl := clientLogger(opts.Logger)
	rctx, cancel := context.WithCancel(namespaces.WithNamespace(withClientLogger(context.Background(), cl), opts.Namespace))
	r := &Containerd{
		client:      c,
		ns:          opts.Namespace,
		snapshotter: opts.Snapshotter,
		log:         opts.Logger.With("component", "runtime"),
		clog:        cl,
		hosts:       hosts,
		ctx:         rctx,
		cancel:      cancel,
		subs:        map[*subscriber]struct{}{},
		pulls:       map[string]*pullCall{},
	}
	vctx, vcancel := context.WithTimeout(ctx, 10*time.Second)
	defer vcancel()
	if _, err := c.Version(r.nsctx(vctx)); err != nil {
		cancel()
		c.Close()
		return nil, fmt.Errorf("containerd at %s: %w", opts.Address, err)
	}
	live := make(chan struct{})
	r.wg.Add(1)
	go r.monitor(live)
	select {
	case <-live:
	case <-vctx.Done():
		r.Close()
		return nil, fmt.Errorf("containerd at %s: events: %w", opts.Address, vctx.Err())
	}
	return r, nil
}

// nsctx puts the runtime's namespace on ctx.
func (r *Containerd) nsctx(ctx context.Context) context.Context {
	return withClientLogger(namespaces.WithNamespace(ctx, r.ns), r.clog)
}

// Version implements Runtime.
func (r *Containerd) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(r.nsctx(ctx))
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// Close implements Runtime.
func (r *Containerd) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return r.client.Close()
}

// ---- images

// pullCall is a pull in progress, shared by concurrent callers.
type pullCall struct {
	done chan struct{}
	id   string
	err  error
}

// PullImage implements Runtime.
func (r *Containerd) PullImage(ctx context.Context, ref string, policy PullPolicy) (string, error) {
	ctx = r.nsctx(ctx)
	name, err := normalizeRef(ref)
	if err != nil {
		return "", err
	}
	switch policy {
	case PullNever, PullIfNotPresent:
		img, err := r.client.GetImage(ctx, name)
		if err == nil {
			if err := r.ensureUnpacked(ctx, img); err != nil {
				return "", err
			}
			return img.Target().Digest.String(), nil
		}
		if !errdefs.IsNotFound(err) {
			return "", err
		}
		if policy == PullNever {
			return "", fmt.Errorf("%s: %w", name, ErrImageNeverPull)
		}
	case PullAlways, "":
	default:
		return "", fmt.Errorf("unknown pull policy %q", policy)
	}

	r.mu.Lock()
	call, joined := r.pulls[name]
	if !joined {
		call = &pullCall{done: make(chan struct{})}
		r.pulls[name] = call
	}
	r.mu.Unlock()
	if !joined {
		// The pull is not bound to the first caller's context: others
		// may be waiting for it too.
		go func() {
			pctx, cancel := context.WithTimeout(r.ctx, 30*time.Minute)
			defer cancel()
			call.id, call.err = r.pull(pctx, name)
			r.mu.Lock()
			delete(r.pulls, name)
			r.mu.Unlock()
			close(call.done)
		}()
	}
	select {
	case <-call.done:
		return call.id, call.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (r *Containerd) pull(ctx context.Context, name string) (string, error) {
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: r.hosts})
	opts := []client.RemoteOpt{
		client.WithResolver(resolver),
		client.WithPullUnpack,
		client.WithPlatformMatcher(platforms.Default()),
	}
	if r.snapshotter != "" {
		opts = append(opts, client.WithPullSnapshotter(r.snapshotter))
	}
	start := time.Now()
	img, err := r.client.Pull(ctx, name, opts...)
	if err != nil {
		pe := &PullError{Ref: name, Message: err.Error(), Err: err}
		if errdefs.IsNotFound(err) || errdefs.IsUnauthorized(err) || errors.Is(err, docker.ErrInvalidAuthorization) {
			if m := registryMessage(ctx, r.hosts, name); m != "" {
				pe.Message = m + " (" + err.Error() + ")"
			}
		}
		return "", pe
	}
	r.log.Info("pulled image", "image", name, "id", img.Target().Digest, "took", time.Since(start).Round(time.Millisecond))
	return img.Target().Digest.String(), nil
}

func (r *Containerd) ensureUnpacked(ctx context.Context, img client.Image) error {
	ok, err := img.IsUnpacked(ctx, r.snapshotter)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Name(), err)
	}
	if ok {
		return nil
	}
	if err := img.Unpack(ctx, r.snapshotter); err != nil {
		return fmt.Errorf("unpack image %s: %w", img.Name(), err)
	}
	return nil
}

// ImportImages implements Runtime.
func (r *Containerd) ImportImages(ctx context.Context, rd io.Reader) ([]string, error) {
	ctx = r.nsctx(ctx)
	imgs, err := r.client.Import(ctx, rd, client.WithImportPlatform(platforms.Default()))
	if err != nil {
		return nil, fmt.Errorf("import images: %w", err)
	}
	if len(imgs) == 0 {
		return nil, errors.New("import images: the archive names no image (no io.containerd.image.name or org.opencontainers.image.ref.name annotation, no RepoTags)")
	}
	var names []string
	for _, m := range imgs {
		img := client.NewImageWithPlatform(r.client, m, platforms.Default())
		if err := r.ensureUnpacked(ctx, img); err != nil {
			return names, err
		}
		names = append(names, m.Name)
	}
	return names, nil
}

// ---- containers

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Create implements Runtime.
func (r *Containerd) Create(ctx context.Context, spec ContainerSpec) (string, error) {
	ctx = r.nsctx(ctx)
	name, err := normalizeRef(spec.Image)
	if err != nil {
		return "", err
	}
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return "", fmt.Errorf("%s: %w", name, ErrImageNotPresent)
		}
		return "", err
	}
	if err := r.ensureUnpacked(ctx, img); err != nil {
		return "", err
	}
	ispec, err := img.Spec(ctx)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", name, err)
	}
	argv := commandLine(ispec.Config.Entrypoint, ispec.Config.Cmd, spec.Command, spec.Args)
	if len(argv) == 0 {
		return "", fmt.Errorf("container %q: no command: the image %s has neither ENTRYPOINT nor CMD and the spec gives none", spec.Name, name)
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Target) {
			return "", fmt.Errorf("container %q: mount target %q is not absolute", spec.Name, m.Target)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return "", fmt.Errorf("container %q: mount source: %w", spec.Name, err)
		}
	}
	if spec.LogPath != "" && !filepath.IsAbs(spec.LogPath) {
		return "", fmt.Errorf("container %q: log path %q is not absolute", spec.Name, spec.LogPath)
	}

	labels := map[string]string{}
	for k, v := range spec.Labels {
		if strings.HasPrefix(k, internalPrefix) {
			return "", fmt.Errorf("container %q: label %q: the prefix %s is reserved", spec.Name, k, internalPrefix)
		}
		labels[k] = v
	}
	for k, v := range map[string]string{
		LabelPodUID: spec.PodUID, LabelPodName: spec.PodName, LabelPodNamespace: spec.PodNamespace,
		LabelContainerName: spec.Name, labelLogPath: spec.LogPath,
	} {
		if v != "" {
			labels[k] = v
		}
	}
	labels[labelManaged] = "true"
	labels[labelImageID] = img.Target().Digest.String()

	specOpts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithProcessArgs(argv...),
	}
	if len(spec.Env) > 0 {
		specOpts = append(specOpts, oci.WithEnv(spec.Env))
	}
	if spec.WorkingDir != "" {
		specOpts = append(specOpts, oci.WithProcessCwd(spec.WorkingDir))
	}
	if spec.Hostname != "" {
		specOpts = append(specOpts, oci.WithHostname(spec.Hostname))
	}
	if spec.NetNSPath != "" {
		specOpts = append(specOpts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNSPath}))
	} else {
		specOpts = append(specOpts, oci.WithHostNamespace(specs.NetworkNamespace))
	}
	if spec.MemoryBytes > 0 {
		specOpts = append(specOpts, oci.WithMemoryLimit(uint64(spec.MemoryBytes)))
		if swapLimitSupported() {
			// Memory and swap together may not exceed the limit: no swap.
			specOpts = append(specOpts, oci.WithMemorySwap(spec.MemoryBytes))
		}
	}
	if spec.CPUMillis > 0 {
		specOpts = append(specOpts, oci.WithCPUCFS(cpuQuota(spec.CPUMillis), cfsPeriod))
	}
	// The container sees its own cgroups read-only at /sys/fs/cgroup, as
	// under Kubernetes (runtimes read their limits there).
	mounts := []specs.Mount{{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}}}
	for _, m := range spec.Mounts {
		mounts = append(mounts, bindMount(m.Source, m.Target, m.ReadOnly))
	}
	if spec.ResolvConfPath != "" {
		if _, err := os.Stat(spec.ResolvConfPath); err != nil {
			return "", fmt.Errorf("container %q: resolv.conf: %w", spec.Name, err)
		}
		mounts = append(mounts, bindMount(spec.ResolvConfPath, "/etc/resolv.conf", false))
	}
	specOpts = append(specOpts, oci.WithMounts(mounts))

	id := newID()
	opts := []client.NewContainerOpts{
		client.WithImage(img),
		client.WithImageStopSignal(img, "SIGTERM"),
	}
	if r.snapshotter != "" {
		opts = append(opts, client.WithSnapshotter(r.snapshotter))
	}
	opts = append(opts,
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(specOpts...),
		client.WithAdditionalContainerLabels(labels),
	)
	if _, err := r.client.NewContainer(ctx, id, opts...); err != nil {
		// A failed NewContainer may have left the snapshot behind.
		_ = r.client.SnapshotService(r.snapshotterName()).Remove(ctx, id)
		return "", fmt.Errorf("create container %q: %w", spec.Name, err)
	}
	return id, nil
}

func (r *Containerd) snapshotterName() string {
	if r.snapshotter != "" {
		return r.snapshotter
	}
	return "overlayfs"
}

// commandLine applies Kubernetes' rules for command and args over an
// image's ENTRYPOINT and CMD.
func commandLine(entrypoint, cmd, command, args []string) []string {
	switch {
	case len(command) > 0:
		return append(append([]string{}, command...), args...)
	case len(args) > 0:
		return append(append([]string{}, entrypoint...), args...)
	default:
		return append(append([]string{}, entrypoint...), cmd...)
	}
}

// cpuQuota is the CFS quota per cfsPeriod for a limit in millicores; the
// kernel refuses less than 1 ms.
func cpuQuota(millis int64) int64 {
	return max(millis*cfsPeriod/1000, 1000)
}

func bindMount(source, target string, ro bool) specs.Mount {
	opts := []string{"rbind", "rprivate"}
	if ro {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	return specs.Mount{Type: "bind", Source: source, Destination: target, Options: opts}
}

var swapOnce struct {
	sync.Once
	ok bool
}

// swapLimitSupported reports whether the memory cgroup can limit swap: on
// cgroup v2 always, on v1 only when the kernel accounts swap (memsw files).
// Setting a swap limit runc cannot apply would fail every start.
func swapLimitSupported() bool {
	swapOnce.Do(func() {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
			swapOnce.ok = true
			return
		}
		_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		swapOnce.ok = err == nil
	})
	return swapOnce.ok
}

// load returns the container id, or an error matching ErrNotFound.
func (r *Containerd) load(ctx context.Context, id string) (client.Container, error) {
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return c, nil
}

// Start implements Runtime.
func (r *Containerd) Start(ctx context.Context, id string) error {
	ctx = r.nsctx(ctx)
	c, err := r.load(ctx, id)
	if err != nil {
		return err
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return err
	}
	creator := cio.NullIO
	if p := labels[labelLogPath]; p != "" {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("start %s: log directory: %w", id, err)
		}
		creator = cio.LogFile(p)
	}
	task, err := c.NewTask(ctx, creator)
	if errdefs.IsAlreadyExists(err) {
		// An agent that died between creating the task and starting it
		// left it created: start that one. Any other state means the
		// container ran already; a container runs once.
		task, err = c.Task(ctx, nil)
		if err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		st, err := task.Status(ctx)
		if err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		if st.Status != client.Created {
			return fmt.Errorf("start %s: already started, now %s (a container runs once; create a new one): %w", id, st.Status, errdefs.ErrAlreadyExists)
		}
	} else if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	// The time before Start: the process may have exited by the time
	// Start returns.
	startedAt := time.Now()
	if err := task.Start(ctx); err != nil {
		_, _ = task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
		return fmt.Errorf("start %s: %w", id, err)
	}
	if _, err := c.SetLabels(ctx, map[string]string{labelStartedAt: startedAt.UTC().Format(time.RFC3339Nano)}); err != nil {
		r.log.Warn("start time not recorded", "container", id, "err", err)
	}
	return nil
}

// Stop implements Runtime.
func (r *Containerd) Stop(ctx context.Context, id string, grace time.Duration) error {
	ctx = r.nsctx(ctx)
	c, err := r.load(ctx, id)
	if err != nil {
		return err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil // never started, or its process is gone
		}
		return err
	}
	st, err := task.Status(ctx)
	if err != nil {
		return err
	}
	if st.Status == client.Stopped {
		return nil
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	exited, err := task.Wait(wctx)
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	sig, err := client.GetStopSignal(ctx, c, syscall.SIGTERM)
	if err != nil {
		sig = syscall.SIGTERM
	}
	if grace > 0 {
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("stop %s: %w", id, err)
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exited:
			return nil
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: not exited after SIGKILL: %w", id, ctx.Err())
	}
}

// Remove implements Runtime.
func (r *Containerd) Remove(ctx context.Context, id string) error {
	ctx = r.nsctx(ctx)
	c, err := r.load(ctx, id)
	if err != nil {
		return err
	}
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove %s: %w", id, err)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: %w", id, ErrNotFound)
		}
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}

// ---- status

// Status implements Runtime.
func (r *Containerd) Status(ctx context.Context, id string) (ContainerStatus, error) {
	ctx = r.nsctx(ctx)
	c, err := r.client.ContainerService().Get(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return ContainerStatus{}, fmt.Errorf("container %s: %w", id, ErrNotFound)
		}
		return ContainerStatus{}, err
	}
	var proc *tasktypes.Process
	resp, err := r.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	switch {
	case err == nil:
		proc = resp.Process
	case !errdefs.IsNotFound(errgrpc.ToNative(err)):
		return ContainerStatus{}, err
	}
	st := r.status(ctx, c, proc)
	return st, nil
}

// List implements Runtime.
func (r *Containerd) List(ctx context.Context, labelFilter map[string]string) ([]ContainerStatus, error) {
	ctx = r.nsctx(ctx)
	cs, err := r.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q==true", labelManaged))
	if err != nil {
		return nil, err
	}
	resp, err := r.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, err
	}
	procs := map[string]*tasktypes.Process{}
	for _, p := range resp.Tasks {
		procs[p.ID] = p
	}
	var out []ContainerStatus
	for _, c := range cs {
		if !matchLabels(c.Labels, labelFilter) {
			continue
		}
		out = append(out, r.status(ctx, c, procs[c.ID]))
	}
	return out, nil
}

func matchLabels(labels, filter map[string]string) bool {
	for k, v := range filter {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// status puts together what containerd knows of a container and its task
// (proc nil when it has none).
func (r *Containerd) status(ctx context.Context, c containers.Container, proc *tasktypes.Process) ContainerStatus {
	l := c.Labels
	st := ContainerStatus{
		ID:           c.ID,
		PodUID:       l[LabelPodUID],
		PodName:      l[LabelPodName],
		PodNamespace: l[LabelPodNamespace],
		Name:         l[LabelContainerName],
		Labels:       publicLabels(l),
		Image:        c.Image,
		ImageID:      l[labelImageID],
		LogPath:      l[labelLogPath],
		CreatedAt:    c.CreatedAt,
		StartedAt:    parseTime(l[labelStartedAt]),
		OOMKilled:    l[labelOOMKilled] == "true",
	}
	if proc == nil {
		switch {
		case l[labelFinishedAt] != "":
			st.State = StateExited
			st.FinishedAt = parseTime(l[labelFinishedAt])
			code, _ := strconv.ParseInt(l[labelExitCode], 10, 32)
			st.ExitCode = int32(code)
		case l[labelStartedAt] != "":
			st.State = StateUnknown
		default:
			st.State = StateCreated
		}
		return st
	}
	st.PID = proc.Pid
	switch proc.Status {
	case tasktypes.Status_CREATED:
		st.State = StateCreated
	case tasktypes.Status_RUNNING, tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
		st.State = StateRunning
	case tasktypes.Status_STOPPED:
		st.State = StateExited
		st.ExitCode = int32(proc.ExitStatus)
		if proc.ExitedAt != nil {
			st.FinishedAt = proc.ExitedAt.AsTime()
		}
		if !st.OOMKilled && l[labelFinishedAt] == "" {
			// The exit is not recorded yet (the event is on its way):
			// ask the cgroup.
			st.OOMKilled = r.oomKills(ctx, c.ID) > 0
		}
	default:
		st.State = StateUnknown
	}
	return st
}

// publicLabels drops the runtime's and containerd's own bookkeeping
// labels.
func publicLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		if !strings.HasPrefix(k, internalPrefix) && !strings.HasPrefix(k, "io.containerd.") {
			out[k] = v
		}
	}
	return out
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// ---- exec

// Exec implements Runtime.
func (r *Containerd) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error) {
	ctx = r.nsctx(ctx)
	if len(cmd) == 0 {
		return -1, errors.New("exec: no command")
	}
	c, err := r.load(ctx, id)
	if err != nil {
		return -1, err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return -1, fmt.Errorf("exec in %s: container is not running", id)
		}
		return -1, err
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return -1, err
	}
	pspec := *spec.Process
	pspec.Args = cmd
	pspec.Terminal = tty
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	var in *eofReader
	if stdin != nil {
		in = &eofReader{r: stdin, eof: make(chan struct{})}
	}
	streamOpts := []cio.Opt{}
	if in != nil {
		streamOpts = append(streamOpts, cio.WithStreams(in, stdout, stderr))
	} else {
		streamOpts = append(streamOpts, cio.WithStreams(nil, stdout, stderr))
	}
	if tty {
		streamOpts = append(streamOpts, cio.WithTerminal)
	}
	execID := "exec-" + newID()[:16]
	proc, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(streamOpts...))
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	cleanup := context.WithoutCancel(ctx)
	defer func() {
		if pio := proc.IO(); pio != nil {
			// Let the output drain, without waiting forever for a
			// background child that keeps it open.
			drained := make(chan struct{})
			go func() { pio.Wait(); close(drained) }()
			select {
			case <-drained:
			case <-time.After(5 * time.Second):
			}
		}
		dctx, cancel := context.WithTimeout(cleanup, 10*time.Second)
		defer cancel()
		_, _ = proc.Delete(dctx, client.WithProcessKill)
	}()
	// Waiting is not bound to ctx: when ctx ends, the process is killed
	// and its real exit still comes.
	wctx, wcancel := context.WithCancel(cleanup)
	defer wcancel()
	exitc, err := proc.Wait(wctx)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	if err := proc.Start(ctx); err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	if in != nil {
		finished := make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-in.eof:
				// Tell the shim stdin is done so that the process
				// sees end of file.
				_ = proc.CloseIO(cleanup, client.WithStdinCloser)
			case <-finished:
			}
		}()
	}
	select {
	case st := <-exitc:
		code, _, err := st.Result()
		if err != nil {
			return -1, fmt.Errorf("exec in %s: %w", id, err)
		}
		return int(code), nil
	case <-ctx.Done():
		kctx, cancel := context.WithTimeout(cleanup, 5*time.Second)
		defer cancel()
		_ = proc.Kill(kctx, syscall.SIGKILL)
		return -1, ctx.Err()
	}
}

// eofReader tells when its reader has reached its end.
type eofReader struct {
	r    io.Reader
	once sync.Once
	eof  chan struct{}
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

// labelsOf returns a copy of a container's public labels.
func labelsOf(l map[string]string) map[string]string {
	if l == nil {
		return nil
	}
	return maps.Clone(publicLabels(l))
}
