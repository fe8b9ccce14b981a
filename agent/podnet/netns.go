package podnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDirMu serialises ensureNetNSDir, so that two first calls do not
// both bind-mount the directory onto itself.
var netnsDirMu sync.Mutex

// ensureNetNSDir makes /run/netns exist as a shared mount point, as
// iproute2 does, so that a namespace unmounted here also disappears from
// mount namespaces (containers) that copied the mount.
func ensureNetNSDir(dir string) error {
	netnsDirMu.Lock()
	defer netnsDirMu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("podnet: create %s: %w", dir, err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("podnet: make %s shared: %w", dir, err)
	}
	// Not a mount point yet: bind it onto itself, then share it.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("podnet: bind %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("podnet: make %s shared: %w", dir, err)
	}
	return nil
}

// createNetNS creates a new network namespace and bind-mounts it at path
// (the file must not exist). The namespace lives as long as the mount.
func createNetNS(path string) error {
	if err := ensureNetNSDir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("podnet: network namespace %s already exists", path)
		}
		return fmt.Errorf("podnet: create mount point for the network namespace: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("podnet: read the thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("podnet: unshare network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		merr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if merr != nil {
			merr = fmt.Errorf("podnet: bind-mount network namespace at %s: %w", path, merr)
		}
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(merr, fmt.Errorf("podnet: return to the thread's network namespace: %w", err))
			return // the thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- merr
	}()
	if err := <-errc; err != nil {
		_ = removeNetNS(path)
		return err
	}
	return nil
}

// removeNetNS unmounts and deletes the namespace mounted at path. A path
// that is not there, or not mounted, is fine.
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("podnet: unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("podnet: remove %s: %w", path, err)
	}
	return nil
}

// netNSMounted says whether a network namespace is mounted at path.
func netNSMounted(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("podnet: statfs %s: %w", path, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
}

// pathExists says whether anything is at path.
func pathExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// loUp brings up lo in the namespace at path (what the CNI loopback
// plugin would do, without a process).
func loUp(path string) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("podnet: open %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("podnet: netlink in %s: %w", path, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("podnet: lo in %s: %w", path, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("podnet: lo up in %s: %w", path, err)
	}
	return nil
}
