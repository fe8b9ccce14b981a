package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/api"
)

// containerName picks the container a logs or exec call means: the one
// named, or the only one.
func containerName(pod *api.Pod, name string) (string, error) {
	cs := pod.GetSpec().GetContainers()
	if name == "" {
		if len(cs) == 1 {
			return cs[0].Name, nil
		}
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		return "", status.Errorf(codes.InvalidArgument, "pod %s has %d containers %v: name one (-c)", pod.GetMetadata().GetName(), len(cs), names)
	}
	for _, c := range cs {
		if c.Name == name {
			return name, nil
		}
	}
	return "", status.Errorf(codes.NotFound, "pod %s has no container %q", pod.GetMetadata().GetName(), name)
}

// instances returns a container's instances, newest first.
func (m *podManager) instances(ctx context.Context, pod *api.Pod, name string) ([]runtime.ContainerStatus, error) {
	cs, err := m.rt.List(ctx, map[string]string{runtime.LabelPodUID: pod.GetMetadata().GetUid(), runtime.LabelContainerName: name})
	if err != nil {
		return nil, err
	}
	restart := func(c runtime.ContainerStatus) int {
		o, _ := observedFromLabels(c.ID, c.Labels)
		return o.Restart
	}
	sort.Slice(cs, func(i, j int) bool { return restart(cs[i]) > restart(cs[j]) })
	return cs, nil
}

// Logs writes a container's output from its log file, following it while
// the container runs when asked to.
func (m *podManager) Logs(ctx context.Context, pod *api.Pod, container string, previous, follow bool, tailLines int, w io.Writer) error {
	name, err := containerName(pod, container)
	if err != nil {
		return err
	}
	insts, err := m.instances(ctx, pod, name)
	if err != nil {
		return err
	}
	i := 0
	if previous {
		i = 1
	}
	if len(insts) <= i {
		what := "has not started yet"
		if previous {
			what = "has no previous instance (it never restarted)"
		}
		return status.Errorf(codes.NotFound, "container %s of pod %s %s", name, pod.GetMetadata().GetName(), what)
	}
	inst := insts[i]
	f, err := os.Open(inst.LogPath)
	if err != nil {
		return status.Errorf(codes.NotFound, "logs of container %s: %v", name, err)
	}
	defer f.Close()
	if tailLines > 0 {
		if err := seekTail(f, tailLines); err != nil {
			return err
		}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if !follow || previous {
			return nil
		}
		// At the end: done once the instance has exited and all is read.
		st, serr := m.rt.Status(ctx, inst.ID)
		if serr != nil || st.State != runtime.StateRunning {
			// The shim copies output to the file on its own and may still
			// be at it: read on until the file has been quiet a moment.
			for quiet := time.Now().Add(500 * time.Millisecond); time.Now().Before(quiet); {
				n2, _ := f.Read(buf)
				if n2 == 0 {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if _, werr := w.Write(buf[:n2]); werr != nil {
					return werr
				}
				quiet = time.Now().Add(500 * time.Millisecond)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// seekTail positions f at the start of its last n lines.
func seekTail(f *os.File, n int) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	const block = 8 << 10
	lines := 0
	for off := size; off > 0; {
		start := max(off-block, 0)
		b := make([]byte, off-start)
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] == '\n' && start+int64(i) != size-1 {
				lines++
				if lines == n {
					_, err := f.Seek(start+int64(i)+1, io.SeekStart)
					return err
				}
			}
		}
		off = start
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}

// Exec runs a command in a container's running instance.
func (m *podManager) Exec(ctx context.Context, pod *api.Pod, container string, cmd []string, tty bool, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	name, err := containerName(pod, container)
	if err != nil {
		return 0, err
	}
	insts, err := m.instances(ctx, pod, name)
	if err != nil {
		return 0, err
	}
	if len(insts) == 0 || insts[0].State != runtime.StateRunning {
		return 0, status.Errorf(codes.FailedPrecondition, "container %s of pod %s is not running", name, pod.GetMetadata().GetName())
	}
	code, err := m.rt.Exec(ctx, insts[0].ID, cmd, stdin, stdout, stderr, tty)
	if err != nil {
		return code, status.Errorf(codes.Unknown, "exec %q: %v", cmd, err)
	}
	return code, nil
}

// ImportImages loads an image archive into the node's runtime.
func (m *podManager) ImportImages(ctx context.Context, r io.Reader) ([]string, error) {
	return m.rt.ImportImages(ctx, r)
}
