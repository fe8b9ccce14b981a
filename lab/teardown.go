package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// recordDir holds one file per live lab, so that a lab whose test process
// died without cleaning up (a go test timeout, SIGKILL) is torn down by the
// next lab that starts.
const recordDir = "/run/shoal-e2e-lab"

// record is everything teardown needs; it is written before anything is
// created, and rewritten as things are added.
type record struct {
	ID         string       `json:"id"`
	OwnerPID   int          `json:"ownerPid"`
	OwnerStart string       `json:"ownerStart"` // field 22 of /proc/PID/stat
	Dir        string       `json:"dir"`
	Bridge     string       `json:"bridge"`
	Subnet     string       `json:"subnet"`
	ClientConf string       `json:"clientConfig"`
	Hosts      []hostRecord `json:"hosts"`

	// path is where the record is kept: recordDir/ID.json for a lab owned
	// by a test process, next to the lab's directory for `shoal lab`.
	path string
}

type hostRecord struct {
	NetNS   string `json:"netns"`
	Veth    string `json:"veth"`
	DataDir string `json:"dataDir"`
}

func (r *record) save() error {
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.path)
}

// loadRecord reads the record at path.
func loadRecord(path string) (*record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil || r.ID == "" {
		return nil, fmt.Errorf("lab: record %s is damaged: %v", path, err)
	}
	r.path = path
	return &r, nil
}

// procStart returns the start time of a process (to tell a reused PID).
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// sweepStale tears down the labs whose test process is gone.
func sweepStale(logf func(string, ...any)) {
	files, _ := filepath.Glob(filepath.Join(recordDir, "*.json"))
	for _, f := range files {
		r, err := loadRecord(f)
		if err != nil {
			continue
		}
		if st := procStart(r.OwnerPID); st != "" && st == r.OwnerStart {
			continue // its owner still runs
		}
		logf("lab: tearing down lab %s left by process %d", r.ID, r.OwnerPID)
		for _, err := range teardown(r, logf) {
			logf("lab: stale %s: %v", r.ID, err)
		}
	}
}

// teardown removes everything the lab made, from its record alone: the
// processes of every host (agent, containerd, shims, containers), the pod
// namespaces the agents recorded, the host namespaces, veths and bridge,
// the mounts under the lab directory and the directory. It returns what it
// could not remove.
func teardown(r *record, logf func(string, ...any)) []error {
	var errs []error
	for _, h := range r.Hosts {
		errs = append(errs, teardownHost(h, logf)...)
	}
	if r.Bridge != "" {
		if err := deleteLink(r.Bridge); err != nil {
			errs = append(errs, err)
		}
		if err := removeForward(r.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if r.Dir != "" {
		for _, m := range Mounts(r.Dir) {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("lab: unmount %s: %w", m, err))
			}
		}
		if left := Mounts(r.Dir); len(left) > 0 {
			errs = append(errs, fmt.Errorf("lab: still mounted under %s: %v", r.Dir, left))
		} else if err := os.RemoveAll(r.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if r.ClientConf != "" {
		if err := os.Remove(r.ClientConf); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, leftovers(r)...)
	if len(errs) == 0 {
		os.Remove(r.path)
		if filepath.Dir(r.path) == recordDir {
			os.Remove(recordDir) // only when no other lab is recorded
		}
	}
	return errs
}

// leftovers checks that nothing of the lab remains: its namespaces, links,
// processes (any whose command line names its directory) and mounts.
func leftovers(r *record) []error {
	var errs []error
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.Contains(e.Name(), r.ID) {
			errs = append(errs, fmt.Errorf("lab: left behind: netns %s", e.Name()))
		}
	}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			if strings.Contains(l.Attrs().Name, r.ID) {
				errs = append(errs, fmt.Errorf("lab: left behind: link %s", l.Attrs().Name))
			}
		}
	}
	if r.Dir != "" {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(r.Dir+"/")) {
				errs = append(errs, fmt.Errorf("lab: left behind: process %s: %s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
			}
		}
		if m := Mounts(r.Dir); len(m) > 0 {
			errs = append(errs, fmt.Errorf("lab: left behind: mounts %v", m))
		}
	}
	return errs
}

func teardownHost(h hostRecord, logf func(string, ...any)) []error {
	var errs []error
	nsPath := filepath.Join("/run/netns", h.NetNS)
	hostIno, _ := netnsInode(nsPath)
	// The agent first, so that it does not recreate what is removed.
	killAgents(h.DataDir)
	podNS := podNetNS(h.DataDir)
	var podInos []uint64
	for _, p := range podNS {
		if ino, err := netnsInode(p); err == nil {
			podInos = append(podInos, ino)
		}
	}
	sock := filepath.Join(h.DataDir, "containerd", "containerd.sock")
	removeContainers(sock, logf)
	stopContainerd(h.DataDir)
	KillShims(h.DataDir, logf)
	// Whatever still runs in the host's or its pods' namespaces.
	inos := append([]uint64{}, podInos...)
	if hostIno != 0 {
		inos = append(inos, hostIno)
	}
	killInNetNS(inos, logf)
	for _, p := range podNS {
		if err := removeNetNSMount(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteLink(h.Veth); err != nil {
		errs = append(errs, err)
	}
	if err := removeNetNSMount(nsPath); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// agentPIDFile is where the lab notes the PID of a host's agent.
func agentPIDFile(dataDir string) string { return dataDir + ".agent.pid" }

// killAgents kills the recorded agent of dataDir, checking its cmdline.
func killAgents(dataDir string) {
	if pid := pidFromFile(agentPIDFile(dataDir), dataDir); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
}

// pidFromFile reads a PID file and returns the PID if that process's
// command line mentions want, 0 otherwise.
func pidFromFile(path, want string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmd, []byte(want)) {
		return 0
	}
	return pid
}

func waitGone(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		// A zombie of ours is reaped by its Wait goroutine.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			s := string(st)
			if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// podNetNS lists the pod namespaces the host's agent recorded (its podnet
// state files), only those under /run/netns/shoal-.
func podNetNS(dataDir string) []string {
	files, _ := filepath.Glob(filepath.Join(dataDir, "podnet", "pods", "*.json"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rec struct {
			NetNS string `json:"netns"`
		}
		if json.Unmarshal(b, &rec) != nil {
			continue
		}
		if strings.HasPrefix(rec.NetNS, "/run/netns/shoal-") && !strings.Contains(rec.NetNS[len("/run/netns/"):], "/") {
			out = append(out, rec.NetNS)
		}
	}
	return out
}

// removeContainers deletes every task and container of a containerd that
// still answers at sock.
func removeContainers(sock string, logf func(string, ...any)) {
	if _, err := os.Stat(sock); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(sock, client.WithTimeout(3*time.Second))
	if err != nil {
		return
	}
	defer c.Close()
	if _, err := c.Version(ctx); err != nil {
		return
	}
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		logf("lab: cleanup: namespaces of %s: %v", sock, err)
		return
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		cs, err := c.Containers(nctx)
		if err != nil {
			continue
		}
		for _, ctr := range cs {
			if task, err := ctr.Task(nctx, nil); err == nil {
				if _, err := task.Delete(nctx, client.WithProcessKill); err != nil {
					logf("lab: cleanup: task %s: %v", ctr.ID(), err)
				}
			}
			if err := ctr.Delete(nctx, client.WithSnapshotCleanup); err != nil {
				logf("lab: cleanup: container %s: %v", ctr.ID(), err)
			}
		}
	}
}

// stopContainerd ends the containerd the host's agent started (its PID
// file is under the data directory): SIGTERM, SIGKILL after 5 s.
func stopContainerd(dataDir string) {
	pid := pidFromFile(filepath.Join(dataDir, "containerd", "containerd.pid"), filepath.Join(dataDir, "containerd"))
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	waitGone(pid, 5*time.Second)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 2*time.Second)
}

// killContainerd kills the host's containerd at once.
func killContainerd(dataDir string) {
	pid := pidFromFile(filepath.Join(dataDir, "containerd", "containerd.pid"), filepath.Join(dataDir, "containerd"))
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
}

// KillShims kills the shims serving the containerd whose root is under
// dataDir/containerd, and the container processes they leave (a container
// process only while its cgroup still names it, not a reused pid).
func KillShims(dataDir string, logf func(string, ...any)) {
	pidFiles, _ := filepath.Glob(filepath.Join(dataDir, "containerd", "state", "io.containerd.runtime.v2.task", "*", "*", "init.pid"))
	for _, pf := range pidFiles {
		b, err := os.ReadFile(pf)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		id := filepath.Base(filepath.Dir(pf))
		ns := filepath.Base(filepath.Dir(filepath.Dir(pf)))
		if cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil && bytes.Contains(cg, []byte("/"+ns+"/"+id)) {
			logf("lab: cleanup: killing container process %d (%s)", pid, id)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, []byte(dataDir+"/")) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		logf("lab: cleanup: killing shim %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// killInNetNS kills every process whose network namespace is one of inos.
func killInNetNS(inos []uint64, logf func(string, ...any)) {
	if len(inos) == 0 {
		return
	}
	want := map[uint64]bool{}
	for _, i := range inos {
		want[i] = true
	}
	for range 3 {
		found := 0
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			var st unix.Stat_t
			if unix.Stat(d+"/ns/net", &st) != nil || !want[st.Ino] {
				continue
			}
			pid, err := strconv.Atoi(filepath.Base(d))
			if err != nil || pid == os.Getpid() {
				continue
			}
			found++
			cmd, _ := os.ReadFile(d + "/cmdline")
			logf("lab: cleanup: killing %d left in a lab namespace: %s", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if found == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
