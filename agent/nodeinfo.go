package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
)

// hostInfo reads what the node reports about itself: system facts and
// capacity.
func hostInfo(version string) (*api.NodeSystemInfo, map[string]string) {
	info := &api.NodeSystemInfo{
		OperatingSystem: runtime.GOOS,
		Architecture:    runtime.GOARCH,
		ShoalVersion:    version,
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info.KernelVersion = unix.ByteSliceToString(u.Release[:])
	}
	if id, err := os.ReadFile("/etc/machine-id"); err == nil {
		info.MachineId = strings.TrimSpace(string(id))
	}
	if f, err := os.Open("/etc/os-release"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "PRETTY_NAME="); ok {
				info.OsImage = strings.Trim(v, `"`)
			}
		}
		f.Close()
	}
	capacity := map[string]string{"cpu": strconv.Itoa(runtime.NumCPU())}
	if mem := memTotalKiB(); mem > 0 {
		capacity["memory"] = fmt.Sprintf("%dKi", mem)
	}
	return info, capacity
}

func memTotalKiB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// allocatableOf is capacity minus reserved, per resource, never below
// zero; quantities that do not parse leave the capacity as it is (the
// flags are checked at start).
func allocatableOf(capacity, reserved map[string]string) map[string]string {
	out := make(map[string]string, len(capacity))
	for k, v := range capacity {
		out[k] = v
	}
	if c, r, ok := parsePair(api.ParseCPU, capacity["cpu"], reserved["cpu"]); ok {
		out["cpu"] = fmt.Sprintf("%dm", max(c-r, 0))
	}
	if c, r, ok := parsePair(api.ParseBytes, capacity["memory"], reserved["memory"]); ok {
		out["memory"] = fmt.Sprintf("%dKi", max(c-r, 0)/1024)
	}
	return out
}

func parsePair(parse func(string) (int64, error), a, b string) (int64, int64, bool) {
	if a == "" || b == "" {
		return 0, 0, false
	}
	x, err1 := parse(a)
	y, err2 := parse(b)
	return x, y, err1 == nil && err2 == nil
}

// nodeAPI is the part of the API the agent uses to report its node.
type nodeAPI interface {
	Get(context.Context, *api.GetRequest) (*api.Object, error)
	Apply(context.Context, *api.ApplyRequest) (*api.ApplyResponse, error)
}

// reportNodeInfo writes the node's system facts and capacity into its Node
// object once the leader has created it. The leader writes the gossip and
// raft parts of the same status, so each side changes only its own fields,
// guarded by resourceVersion.
func reportNodeInfo(ctx context.Context, a nodeAPI, name, version string, reserved map[string]string) error {
	info, capacity := hostInfo(version)
	allocatable := allocatableOf(capacity, reserved)
	for {
		err := func() error {
			obj, err := a.Get(ctx, &api.GetRequest{Kind: "Node", Name: name})
			if err != nil {
				return err
			}
			node := obj.GetNode()
			st := proto.Clone(node.GetStatus()).(*api.NodeStatus)
			if st == nil {
				st = &api.NodeStatus{}
			}
			want := proto.Clone(st).(*api.NodeStatus)
			want.NodeInfo = info
			want.Capacity = capacity
			want.Allocatable = allocatable
			if proto.Equal(st, want) {
				return nil
			}
			_, err = a.Apply(ctx, &api.ApplyRequest{Status: true, Objects: []*api.Object{api.Wrap(&api.Node{
				Metadata: &api.ObjectMeta{Name: name, ResourceVersion: node.GetMetadata().GetResourceVersion()},
				Status:   want,
			})}})
			return err
		}()
		if err == nil {
			return nil
		}
		switch status.Code(err) {
		case codes.NotFound, codes.Aborted, codes.Unavailable, codes.DeadlineExceeded:
			// Not created yet, a concurrent status write, or no leader: again.
		default:
			return fmt.Errorf("report node info: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
