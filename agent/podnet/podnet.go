// Package podnet gives each pod of a node its own network namespace and one
// IP from the node's pod subnet, wired with the standard CNI plugins
// (bridge + host-local + portmap + loopback) through libcni, and
// masquerades pod traffic leaving the cluster's pod network. SyncRoutes
// connects the node's pods to those of the other nodes: by routes to their
// pod subnets through their addresses (host-gw), or through a VXLAN
// overlay (shoal.vxlan) to nodes on no network this one shares, as
// Config.Mode says.
//
// Everything it makes is recorded under Config.StateDir, so that a new
// instance (after an agent restart) finds the pods set up by an earlier
// one, reports them with Status and List, and tears them down.
//
// The namespace an instance works in (its "host" namespace: the bridge,
// the port mappings, the masquerade table, the sysctls, the routes to
// other nodes and the overlay's device) is the network namespace of the
// OS thread that called New. In the agent that is the process's
// namespace; tests create a throwaway one.
package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoalproj/shoal/internal/netnsrun"
)

// PodRef names a pod. UID identifies it; Namespace and Name are carried
// for the plugins and for List.
type PodRef struct {
	UID       string
	Namespace string
	Name      string
}

func (p PodRef) String() string { return fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, p.UID) }

// PortMapping publishes a pod's port on the node (a container port with a
// hostPort). Protocol is TCP (default), UDP or SCTP, in any case. HostIP
// restricts the mapping to one of the node's addresses.
type PortMapping struct {
	HostPort      int
	ContainerPort int
	Protocol      string
	HostIP        string
}

// Attachment is a pod's place on the network.
type Attachment struct {
	// NetNSPath is the pod's network namespace, for the runtime to put the
	// pod's containers in (/run/netns/shoal-<uid>).
	NetNSPath string
	// IP is the pod's address on eth0; Gateway its default gateway (the
	// bridge).
	IP      net.IP
	Gateway net.IP
}

// Network is what the agent needs of the pod network.
type Network interface {
	// Setup creates the pod's network namespace and wires it: eth0 with an
	// IP from the node's pod subnet and a default route, lo up, and the
	// host ports mapped. For a pod already set up it returns the existing
	// attachment (its port mappings are not changed).
	Setup(ctx context.Context, pod PodRef, ports []PortMapping) (Attachment, error)
	// Teardown releases the pod's IP and port mappings and removes its
	// namespace. It is idempotent, and works from the state on disk after
	// a restart.
	Teardown(ctx context.Context, pod PodRef) error
	// Status reports the attachment of a pod set up earlier, by this
	// instance or by one before a restart; false when the pod is not (or
	// not completely) set up.
	Status(ctx context.Context, pod PodRef) (Attachment, bool, error)
	// List returns the pods that have (or may have left) a namespace:
	// every pod set up and not yet torn down, so leftovers can be cleaned.
	List(ctx context.Context) ([]PodRef, error)
}

// cleanupTimeout bounds the undoing of a Setup that failed, which does not
// use the caller's (possibly expired) context.
const cleanupTimeout = 30 * time.Second

// requiredPlugins are the CNI plugins the configuration list uses.
var requiredPlugins = []string{"bridge", "host-local", "portmap"}

// CNI is the Network of a node, built on libcni and the standard plugins.
type CNI struct {
	s      *settings
	hostNS netns.NsHandle
	cni    *libcni.CNIConfig
	list   *libcni.NetworkConfigList // with portmap, for pods with host ports
	plain  *libcni.NetworkConfigList // without
	locks  keyedMutex
	syncMu sync.Mutex // serialises SyncRoutes

	mu     sync.RWMutex // held for reading by every operation, for writing by Close
	closed bool
}

var _ Network = (*CNI)(nil)

// New checks cfg, and prepares the calling thread's network namespace for
// pods: IP forwarding and bridge netfilter on, and the masquerade table
// (re)created. The bridge itself is created by the first Setup.
func New(ctx context.Context, cfg Config) (*CNI, error) {
	s, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	for _, p := range requiredPlugins {
		if _, err := invoke.FindInPath(p, s.PluginDirs); err != nil {
			return nil, fmt.Errorf("podnet: CNI plugin %q not found in %v (Debian's containernetworking-plugins installs them in /usr/lib/cni)", p, s.PluginDirs)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, fmt.Errorf("podnet: the portmap plugin needs the iptables command, not found in PATH: %w", err)
	}
	for _, d := range []string{s.ipamDir(), s.cacheDir(), s.podsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("podnet: create %s: %w", d, err)
		}
	}
	hostNS, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("podnet: open the host network namespace: %w", err)
	}
	n := &CNI{s: s, hostNS: hostNS}
	ok := false
	defer func() {
		if !ok {
			hostNS.Close()
		}
	}()
	if s.hostMTU, err = hostMTU(hostNS); err != nil {
		return nil, err
	}
	if s.MTU, err = podMTU(s.Mode, s.MTU, s.hostMTU); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		withPortmap bool
		to          **libcni.NetworkConfigList
	}{{true, &n.list}, {false, &n.plain}} {
		b, err := confList(s, l.withPortmap)
		if err != nil {
			return nil, fmt.Errorf("podnet: render CNI configuration: %w", err)
		}
		if *l.to, err = libcni.ConfListFromBytes(b); err != nil {
			return nil, fmt.Errorf("podnet: CNI configuration: %w", err)
		}
	}
	// An explicit exec: libcni otherwise creates one lazily on first use,
	// which races when pods are set up concurrently.
	n.cni = libcni.NewCNIConfigWithCacheDir(s.PluginDirs, s.cacheDir(), &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: cniversion.PluginDecoder{},
	})
	if err := netnsrun.Run(hostNS, enableForwarding); err != nil {
		return nil, err
	}
	if err := n.withNFT(func(c *nftables.Conn) error { return programMasq(c, s.podNet, s.clusterNet) }); err != nil {
		return nil, err
	}
	ok = true
	return n, nil
}

// Close removes what the instance set up on the host for all pods: the
// masquerade table, the routes to other nodes' pod subnets and the VXLAN
// overlay's device. Pods stay as they are: a new instance on the same
// StateDir takes them over (and its SyncRoutes puts the routes back).
func (n *CNI) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	err := n.withNFT(removeMasq)
	h, herr := netlink.NewHandleAt(n.hostNS)
	if herr == nil {
		herr = removeRoutes(h)
		h.Close()
	}
	if herr != nil {
		err = errors.Join(err, fmt.Errorf("podnet: remove the routes to other nodes' pods: %w", herr))
	}
	n.hostNS.Close()
	return err
}

// ConfList returns the CNI configuration list in use (JSON).
func (n *CNI) ConfList() []byte { return append([]byte(nil), n.list.Bytes...) }

var errClosed = errors.New("podnet: network is closed")

// begin starts an operation on pod: it holds the instance open and the
// pod's lock until the returned function is called.
func (n *CNI) begin(uid string) (func(), error) {
	n.mu.RLock()
	if n.closed {
		n.mu.RUnlock()
		return nil, errClosed
	}
	unlock := n.locks.lock(uid)
	return func() { unlock(); n.mu.RUnlock() }, nil
}

// Setup implements Network.
func (n *CNI) Setup(ctx context.Context, pod PodRef, ports []PortMapping) (Attachment, error) {
	if err := checkPod(pod); err != nil {
		return Attachment{}, err
	}
	pm, err := portMappings(ports)
	if err != nil {
		return Attachment{}, err
	}
	end, err := n.begin(pod.UID)
	if err != nil {
		return Attachment{}, err
	}
	defer end()

	if att, ok, err := n.status(pod); err != nil {
		return Attachment{}, err
	} else if ok {
		return att, nil
	}
	// Leftovers of an interrupted Setup or Teardown go first.
	if err := n.teardown(ctx, pod); err != nil {
		return Attachment{}, fmt.Errorf("podnet: clear what remains of pod %s: %w", pod, err)
	}

	path := NetNSPath(pod.UID)
	if err := writeRecord(n.s.podsDir(), podRecord{UID: pod.UID, Namespace: pod.Namespace, Name: pod.Name, NetNS: path}); err != nil {
		return Attachment{}, err
	}
	if err := createNetNS(path); err != nil {
		_ = removeRecord(n.s.podsDir(), pod.UID)
		return Attachment{}, err
	}
	rt := n.runtimeConf(pod, path)
	list := n.plain
	if len(pm) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": pm}
		list = n.list
	}
	var res types.Result
	err = loUp(path)
	if err == nil {
		err = netnsrun.Run(n.hostNS, func() error {
			var err error
			res, err = n.cni.AddNetworkList(ctx, list, rt)
			return err
		})
	}
	var att Attachment
	if err == nil {
		att, err = attachmentFrom(res, path)
	}
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if terr := n.teardown(cctx, pod); terr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", terr))
		}
		return Attachment{}, fmt.Errorf("podnet: set up pod %s: %w", pod, err)
	}
	return att, nil
}

// Teardown implements Network.
func (n *CNI) Teardown(ctx context.Context, pod PodRef) error {
	if err := checkPod(pod); err != nil {
		return err
	}
	end, err := n.begin(pod.UID)
	if err != nil {
		return err
	}
	defer end()
	if err := n.teardown(ctx, pod); err != nil {
		return fmt.Errorf("podnet: tear down pod %s: %w", pod, err)
	}
	return nil
}

// teardown undoes whatever Setup left of pod: CNI DEL (with the
// configuration cached at ADD, so a changed Config still deletes what the
// old one made), then the namespace, then the record. When DEL fails
// everything stays, for a later Teardown to retry.
func (n *CNI) teardown(ctx context.Context, pod PodRef) error {
	rec, err := readRecord(n.s.podsDir(), pod.UID)
	if err != nil {
		return err
	}
	rt := n.runtimeConf(pod, "")
	cachedConf, cachedRT, err := n.cni.GetNetworkListCachedConfig(n.list, rt)
	if err != nil {
		return fmt.Errorf("read the CNI cache: %w", err)
	}
	if rec == nil && cachedConf == nil {
		return nil // nothing of this pod here
	}
	list := n.list
	if cachedConf != nil {
		if l, err := libcni.ConfListFromBytes(cachedConf); err == nil {
			list = l
		}
		rt = cachedRT
	}
	rt.NetNS = ""
	if rec != nil {
		mounted, err := netNSMounted(rec.NetNS)
		if err != nil {
			return err
		}
		if mounted {
			rt.NetNS = rec.NetNS
		}
	}
	if err := netnsrun.Run(n.hostNS, func() error { return n.cni.DelNetworkList(ctx, list, rt) }); err != nil {
		return err
	}
	if rec != nil {
		if err := removeNetNS(rec.NetNS); err != nil {
			return err
		}
	}
	return removeRecord(n.s.podsDir(), pod.UID)
}

// Status implements Network.
func (n *CNI) Status(ctx context.Context, pod PodRef) (Attachment, bool, error) {
	if err := checkPod(pod); err != nil {
		return Attachment{}, false, err
	}
	end, err := n.begin(pod.UID)
	if err != nil {
		return Attachment{}, false, err
	}
	defer end()
	return n.status(pod)
}

// status reports the pod as set up when its record, its mounted namespace
// and its cached CNI result are all there.
func (n *CNI) status(pod PodRef) (Attachment, bool, error) {
	rec, err := readRecord(n.s.podsDir(), pod.UID)
	if err != nil || rec == nil {
		return Attachment{}, false, err
	}
	mounted, err := netNSMounted(rec.NetNS)
	if err != nil || !mounted {
		return Attachment{}, false, err
	}
	res, err := n.cni.GetNetworkListCachedResult(n.list, n.runtimeConf(pod, rec.NetNS))
	if err != nil {
		return Attachment{}, false, fmt.Errorf("podnet: read the CNI cache of pod %s: %w", pod, err)
	}
	if res == nil {
		return Attachment{}, false, nil
	}
	att, err := attachmentFrom(res, rec.NetNS)
	if err != nil {
		return Attachment{}, false, err
	}
	return att, true, nil
}

// List implements Network.
func (n *CNI) List(ctx context.Context) ([]PodRef, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return nil, errClosed
	}
	recs, err := listRecords(n.s.podsDir())
	if err != nil {
		return nil, err
	}
	out := make([]PodRef, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.ref())
	}
	return out, nil
}

// argValueRe is what may go into CNI_ARGS (K=V;K=V) as a value.
var argValueRe = regexp.MustCompile(`^[a-zA-Z0-9_.\-]+$`)

func (n *CNI) runtimeConf(pod PodRef, netnsPath string) *libcni.RuntimeConf {
	args := [][2]string{{"IgnoreUnknown", "1"}}
	for _, kv := range [][2]string{
		{"K8S_POD_NAMESPACE", pod.Namespace},
		{"K8S_POD_NAME", pod.Name},
		{"K8S_POD_UID", pod.UID},
	} {
		if argValueRe.MatchString(kv[1]) {
			args = append(args, kv)
		}
	}
	return &libcni.RuntimeConf{
		ContainerID: pod.UID,
		NetNS:       netnsPath,
		IfName:      podIfName,
		Args:        args,
	}
}

// attachmentFrom picks the pod's IPv4 address on eth0 out of a CNI result.
func attachmentFrom(res types.Result, netnsPath string) (Attachment, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return Attachment{}, fmt.Errorf("podnet: CNI result: %w", err)
	}
	for _, ipc := range r.IPs {
		ip := ipc.Address.IP.To4()
		if ip == nil {
			continue
		}
		if ipc.Interface != nil {
			i := *ipc.Interface
			if i < 0 || i >= len(r.Interfaces) || r.Interfaces[i].Sandbox == "" || r.Interfaces[i].Name != podIfName {
				continue
			}
		}
		return Attachment{NetNSPath: netnsPath, IP: ip, Gateway: ipc.Gateway.To4()}, nil
	}
	return Attachment{}, fmt.Errorf("podnet: the CNI result has no IPv4 address on the pod's %s", podIfName)
}

// withNFT runs fn with an nftables connection in the host namespace.
func (n *CNI) withNFT(fn func(*nftables.Conn) error) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.hostNS)))
	if err != nil {
		return fmt.Errorf("podnet: nftables: %w", err)
	}
	return fn(c)
}

// hostMTU is the smallest MTU of the links the namespace's IPv4 default
// routes use; DefaultMTU when it has none.
func hostMTU(ns netns.NsHandle) (int, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return 0, fmt.Errorf("podnet: netlink: %w", err)
	}
	defer h.Close()
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("podnet: list routes: %w", err)
	}
	mtu := 0
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		idx := []int{r.LinkIndex}
		for _, nh := range r.MultiPath {
			idx = append(idx, nh.LinkIndex)
		}
		for _, i := range idx {
			if i == 0 {
				continue
			}
			l, err := h.LinkByIndex(i)
			if err != nil {
				continue
			}
			if m := l.Attrs().MTU; m > 0 && (mtu == 0 || m < mtu) {
				mtu = m
			}
		}
	}
	if mtu < minMTU {
		mtu = DefaultMTU
	}
	return mtu, nil
}

// enableForwarding turns on, in the current thread's network namespace,
// IPv4 forwarding (pods reach beyond the bridge) and bridge netfilter
// (traffic between pods on the bridge passes the nat hooks, which pod →
// service → pod on one node needs).
func enableForwarding() error {
	for _, k := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"} {
		p := "/proc/sys/" + k
		if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
			if errors.Is(err, os.ErrNotExist) && k != "net/ipv4/ip_forward" {
				return fmt.Errorf("podnet: %s is missing: load the br_netfilter module", p)
			}
			return fmt.Errorf("podnet: enable %s: %w", p, err)
		}
	}
	return nil
}

// keyedMutex is a mutex per key, forgotten when nobody holds or waits.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu  sync.Mutex
	ref int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.ref++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.ref--; e.ref == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
