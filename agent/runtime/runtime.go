// Package runtime is the node's container runtime: the small interface
// through which the agent runs the containers of its pods, and its
// implementation on containerd.
//
// The agent decides what should run; a Runtime only does what it is told and
// reports what is there. Containers are found again by their labels, so an
// agent that restarts adopts what runs instead of starting it twice: every
// piece of state the agent needs after a restart (labels, log path, start and
// exit times, exit code, OOM kill) is kept by containerd, not in the agent's
// memory.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// PullPolicy says when PullImage contacts the registry, with Kubernetes'
// meaning of imagePullPolicy.
type PullPolicy string

const (
	// PullAlways resolves the reference at the registry every time and
	// fetches whatever is not already local.
	PullAlways PullPolicy = "Always"
	// PullIfNotPresent uses the local image when there is one.
	PullIfNotPresent PullPolicy = "IfNotPresent"
	// PullNever never contacts a registry: the image must have been pulled
	// or imported before.
	PullNever PullPolicy = "Never"
)

// Container states reported in ContainerStatus.State.
const (
	StateCreated = "created" // created, never started
	StateRunning = "running" // its main process runs
	StateExited  = "exited"  // its main process has exited; ExitCode says how
	StateUnknown = "unknown" // started once, but containerd no longer knows its process (host reboot, lost state)
)

// Labels the runtime puts on every container it creates, from the
// ContainerSpec fields of the same name. They are returned in
// ContainerStatus.Labels with the caller's own labels, so they can be used in
// List filters.
const (
	LabelPodUID        = "io.shoal.pod.uid"
	LabelPodName       = "io.shoal.pod.name"
	LabelPodNamespace  = "io.shoal.pod.namespace"
	LabelContainerName = "io.shoal.container.name"
)

// Mount is a bind mount of a host path into the container.
type Mount struct {
	// Source is the path on the host; it must exist.
	Source string
	// Target is the absolute path inside the container.
	Target   string
	ReadOnly bool
}

// ContainerSpec is everything the runtime needs to create one container of a
// pod. One spec gives one container instance: a restart of a pod's container
// is a new Create with a new LogPath.
type ContainerSpec struct {
	PodUID, PodName, PodNamespace string
	// Name is the container's name within its pod.
	Name string
	// Image is the image reference; it must be present (PullImage or
	// ImportImages first). Short names are normalised as Docker does
	// (busybox → docker.io/library/busybox:latest).
	Image string
	// Command replaces the image's ENTRYPOINT and Args its CMD, as in
	// Kubernetes: Command alone drops the image's CMD, Args alone keeps the
	// image's ENTRYPOINT.
	Command, Args []string
	// Env entries are "NAME=value"; they are added to the image's
	// environment, replacing variables of the same name.
	Env []string
	// WorkingDir replaces the image's working directory when set.
	WorkingDir string
	// NetNSPath is the network namespace to join (for example
	// /run/netns/NAME); "" runs in the host's network namespace.
	NetNSPath string
	// CPUMillis limits the CPU time (1000 = one CPU) through the CFS quota;
	// 0 is no limit.
	CPUMillis int64
	// MemoryBytes limits memory (swap included); 0 is no limit. A container
	// that goes over is OOM-killed and reported with OOMKilled.
	MemoryBytes int64
	Mounts      []Mount
	// Labels are kept on the containerd container and returned by Status
	// and List (the caller puts the pod UID, container name, spec hash
	// there). Keys starting with "io.shoal." are reserved.
	Labels map[string]string
	// LogPath is the file the container's stdout and stderr are appended
	// to, written by containerd's shim so that the output survives restarts
	// of the agent. "" discards the output.
	LogPath string
	// Hostname of the container ("" keeps the runtime's default).
	Hostname string
	// ResolvConfPath, when set, is bind-mounted at /etc/resolv.conf.
	ResolvConfPath string
}

// ContainerStatus is what the runtime knows about one container.
type ContainerStatus struct {
	ID string
	// PodUID, PodName, PodNamespace and Name echo the ContainerSpec.
	PodUID, PodName, PodNamespace, Name string
	// Labels are the caller's labels and the Label* constants above.
	Labels map[string]string
	// State is one of the State* constants.
	State string
	// PID of the main process on the host (0 when not started).
	PID uint32
	// ExitCode of the main process once exited; 128+n when killed by
	// signal n (137 for SIGKILL).
	ExitCode int32
	// OOMKilled is true when the kernel's OOM killer killed a process of
	// the container (it hit its memory limit).
	OOMKilled bool
	CreatedAt time.Time
	StartedAt time.Time
	// FinishedAt is when the main process exited.
	FinishedAt time.Time
	// Image is the image reference the container was created from and
	// ImageID the digest of that image's manifest (or index) at the time.
	Image   string
	ImageID string
	// LogPath is the ContainerSpec's LogPath.
	LogPath string
}

// EventType is the kind of an Event.
type EventType string

// EventExit reports that a container's main process exited.
const EventExit EventType = "exit"

// Event is something that happened to a container, sent by Events so that
// the agent reacts without polling.
type Event struct {
	Type        EventType
	ContainerID string
	// Labels of the container (nil when it was already removed).
	Labels     map[string]string
	ExitCode   int32
	OOMKilled  bool
	FinishedAt time.Time
}

// Runtime runs containers on one node.
type Runtime interface {
	// PullImage makes the image ref present according to policy and
	// returns its ID (the digest of its manifest or index). A failure to
	// pull returns a *PullError; policy Never with no local image returns
	// an error matching ErrImageNeverPull.
	PullImage(ctx context.Context, ref string, policy PullPolicy) (imageID string, err error)
	// ImportImages loads an OCI image layout or `docker save` archive
	// (the linux/amd64 content of it) and returns the names of the images
	// it held.
	ImportImages(ctx context.Context, r io.Reader) ([]string, error)
	// Create creates a container (not started) and returns its ID.
	Create(ctx context.Context, spec ContainerSpec) (id string, err error)
	// Start starts a created container.
	Start(ctx context.Context, id string) error
	// Stop sends the image's stop signal (SIGTERM by default), then
	// SIGKILL once grace has passed, and returns when the main process has
	// exited. Stopping a container that is not running does nothing.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Remove removes the container with its process (killed if it still
	// runs) and its root file system snapshot. The log file is left to the
	// caller.
	Remove(ctx context.Context, id string) error
	// Status reports one container.
	Status(ctx context.Context, id string) (ContainerStatus, error)
	// List reports the containers whose labels include all of
	// labelFilter (all containers for an empty filter), including those
	// created by an earlier process of the agent.
	List(ctx context.Context, labelFilter map[string]string) ([]ContainerStatus, error)
	// Exec runs cmd in the running container id with the given streams
	// (stdin may be nil; with tty, stderr is merged into stdout) and
	// returns its exit code.
	Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (exitCode int, err error)
	// Events streams container exits from now on until ctx ends or the
	// runtime is closed, when the channel is closed. Events are never
	// dropped for a slow reader. Exits from before the call (also those
	// while no agent ran) are not replayed: Status and List report them.
	Events(ctx context.Context) (<-chan Event, error)
	// Version is the version of the container runtime.
	Version(ctx context.Context) (string, error)
	// Close releases the connection; running containers keep running.
	Close() error
}

// ErrNotFound is matched (through IsNotFound) by the errors about a
// container that does not exist.
var ErrNotFound = errors.New("container not found")

// ErrImageNotPresent is returned by Create when the image has not been
// pulled or imported.
var ErrImageNotPresent = errors.New("image not present")

// ErrImageNeverPull is returned by PullImage with PullNever when the image
// is not present (Kubernetes' ErrImageNeverPull).
var ErrImageNeverPull = errors.New("image not present with pull policy Never")

// ErrInvalidImageName is returned for an image reference that cannot be
// parsed (Kubernetes' InvalidImageName).
var ErrInvalidImageName = errors.New("invalid image name")

// IsNotFound reports whether err says that a container does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// PullError is a failed pull. Message is what the registry said when it
// said something (for example "MANIFEST_UNKNOWN: manifest unknown"), else
// the cause as containerd reports it; the agent shows it as ErrImagePull.
type PullError struct {
	Ref     string
	Message string
	Err     error
}

func (e *PullError) Error() string {
	return fmt.Sprintf("pull %s: %s", e.Ref, e.Message)
}

func (e *PullError) Unwrap() error { return e.Err }
