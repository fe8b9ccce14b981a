package podnet

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
)

// Defaults for Config fields left empty.
const (
	DefaultBridgeName  = "shoal0"
	DefaultClusterCIDR = "10.244.0.0/16"
	DefaultStateDir    = "/var/lib/shoal"
	// DefaultMTU is used when Config.MTU is 0 and the host has no default
	// route to take the MTU from.
	DefaultMTU = 1500
	// DefaultMode is the mode of a Config that names none.
	DefaultMode = ModeAuto
)

// The modes of the pod network across nodes (Config.Mode).
const (
	// ModeHostGW routes each other node's pod subnet straight to that
	// node's address: every node must be on a directly connected network
	// of every other (one link, or one L2 segment).
	ModeHostGW = "host-gw"
	// ModeVXLAN carries all traffic to other nodes' pods in the VXLAN
	// overlay (device shoal.vxlan, UDP 4789), whatever lies between them.
	ModeVXLAN = "vxlan"
	// ModeAuto decides per node: host-gw to a node on a directly connected
	// network, the overlay to any other.
	ModeAuto = "auto"
)

// Modes lists the valid values of Config.Mode ("" is ModeAuto).
var Modes = []string{ModeAuto, ModeHostGW, ModeVXLAN}

// DefaultPluginDirs are searched for the CNI plugin binaries when
// Config.PluginDirs is empty: Debian's containernetworking-plugins first,
// then the upstream location.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Pod subnets are refused outside these prefix lengths: a node subnet is
// "a /24-ish": big enough for a useful number of pods, small enough that a
// cluster CIDR holds many nodes.
const (
	minPodPrefix = 16
	maxPodPrefix = 28
	minMTU       = 576
	maxMTU       = 65535
)

// Names fixed by this package.
const (
	networkName  = "shoal" // the CNI network name (host-local keeps its state under it)
	podIfName    = "eth0"  // the pod's interface
	cniVersion   = "1.0.0" // spoken by Debian's plugins 1.1.1 and libcni
	netnsDir     = "/run/netns"
	netnsPrefix  = "shoal-"
	uidNameChars = 12 // how much of the pod UID names its namespace
)

// Config configures the pod network of one node.
type Config struct {
	// PodCIDR is this node's pod subnet (a /24 by default), from its Node
	// object's spec.podCIDR. Required.
	PodCIDR string
	// BridgeName is the host bridge the pods hang off. Default shoal0.
	BridgeName string
	// PluginDirs are searched for the CNI plugins. Default DefaultPluginDirs.
	PluginDirs []string
	// StateDir is the agent's data directory; host-local's IPAM state, the
	// CNI result cache and this package's pod records live in
	// StateDir/podnet. Default /var/lib/shoal.
	StateDir string
	// MTU of the bridge and the pods' interfaces. 0 takes the MTU of the
	// host's default-route interface (DefaultMTU when there is none), less
	// the overlay's 50 bytes in the modes that may use the overlay (vxlan
	// and auto). An MTU set here must fit the overlay in those modes.
	MTU int
	// ClusterCIDR is the whole pod network; traffic from pods to addresses
	// outside it is masqueraded. Default 10.244.0.0/16.
	ClusterCIDR string
	// Mode is how pods reach the pods of other nodes: ModeAuto (the
	// default when empty), ModeHostGW or ModeVXLAN.
	Mode string
	// NodeIP is this node's address (its Node's InternalIP): the local end
	// of the VXLAN overlay, from which the other nodes' VTEP entries for
	// this node derive. Required in vxlan mode; in auto mode a node that
	// has none can only reach the nodes on its own networks.
	NodeIP string
}

// settings is a Config checked and completed with its defaults, with the
// CIDRs parsed.
type settings struct {
	Config
	podNet     *net.IPNet
	clusterNet *net.IPNet
	gateway    net.IP
	nodeIP     net.IP // nil when Config.NodeIP is empty
	// hostMTU is the MTU of the host's default-route link, measured by
	// New (0 before).
	hostMTU int
}

func (s *settings) podnetDir() string { return filepath.Join(s.StateDir, "podnet") }
func (s *settings) ipamDir() string   { return filepath.Join(s.podnetDir(), "ipam") }
func (s *settings) cacheDir() string  { return filepath.Join(s.podnetDir(), "cni-cache") }
func (s *settings) podsDir() string   { return filepath.Join(s.podnetDir(), "pods") }

// ifaceNameRe is what the kernel (and the bridge plugin) accept as a link
// name, minus characters that only invite trouble.
var ifaceNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,14}$`)

// resolve checks cfg and fills in the defaults. MTU 0 stays 0 here: it is
// resolved against the host's routes by New.
func resolve(cfg Config) (*settings, error) {
	s := &settings{Config: cfg}
	if s.BridgeName == "" {
		s.BridgeName = DefaultBridgeName
	}
	if !ifaceNameRe.MatchString(s.BridgeName) {
		return nil, fmt.Errorf("podnet: bridge name %q is not a valid interface name (1-15 of a-z A-Z 0-9 _ . -)", s.BridgeName)
	}
	if len(s.PluginDirs) == 0 {
		s.PluginDirs = append([]string(nil), DefaultPluginDirs...)
	}
	if s.StateDir == "" {
		s.StateDir = DefaultStateDir
	}
	abs, err := filepath.Abs(s.StateDir)
	if err != nil {
		return nil, fmt.Errorf("podnet: state dir %q: %w", s.StateDir, err)
	}
	s.StateDir = abs
	if s.MTU != 0 && (s.MTU < minMTU || s.MTU > maxMTU) {
		return nil, fmt.Errorf("podnet: MTU %d out of range [%d, %d] (0 takes the host's)", s.MTU, minMTU, maxMTU)
	}
	if s.ClusterCIDR == "" {
		s.ClusterCIDR = DefaultClusterCIDR
	}
	s.clusterNet, err = parseNetwork("cluster CIDR", s.ClusterCIDR)
	if err != nil {
		return nil, err
	}
	if s.PodCIDR == "" {
		return nil, fmt.Errorf("podnet: pod CIDR is required (the node's spec.podCIDR)")
	}
	s.podNet, err = parseNetwork("pod CIDR", s.PodCIDR)
	if err != nil {
		return nil, err
	}
	podOnes, _ := s.podNet.Mask.Size()
	if podOnes < minPodPrefix || podOnes > maxPodPrefix {
		return nil, fmt.Errorf("podnet: pod CIDR %s: a node's pod subnet must be between /%d and /%d (a /24 by default)", s.PodCIDR, minPodPrefix, maxPodPrefix)
	}
	clusterOnes, _ := s.clusterNet.Mask.Size()
	if !s.clusterNet.Contains(s.podNet.IP) || podOnes < clusterOnes {
		return nil, fmt.Errorf("podnet: pod CIDR %s is not inside the cluster CIDR %s", s.PodCIDR, s.ClusterCIDR)
	}
	switch s.Mode {
	case "":
		s.Mode = DefaultMode
	case ModeAuto, ModeHostGW, ModeVXLAN:
	default:
		return nil, fmt.Errorf("podnet: pod network mode %q: want one of %s", s.Mode, strings.Join(Modes, ", "))
	}
	if s.NodeIP != "" {
		ip := net.ParseIP(strings.TrimSpace(s.NodeIP))
		if ip == nil || ip.To4() == nil || ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() {
			return nil, fmt.Errorf("podnet: node IP %q: not a usable IPv4 address of this node", s.NodeIP)
		}
		s.nodeIP = ip.To4()
		s.NodeIP = s.nodeIP.String()
	}
	if s.Mode == ModeVXLAN && s.nodeIP == nil {
		return nil, fmt.Errorf("podnet: mode %s needs the node's address (NodeIP): it is the local end of the overlay", ModeVXLAN)
	}
	s.gateway = firstHost(s.podNet)
	s.PodCIDR = s.podNet.String()
	s.ClusterCIDR = s.clusterNet.String()
	return s, nil
}

// parseNetwork parses an IPv4 network address in CIDR notation and refuses
// one with host bits set.
func parseNetwork(what, cidr string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(strings.TrimSpace(cidr))
	if err != nil {
		return nil, fmt.Errorf("podnet: %s %q: not an address/prefix (e.g. 10.244.1.0/24)", what, cidr)
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("podnet: %s %q: only IPv4 is supported", what, cidr)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("podnet: %s %q has host bits set; did you mean %s?", what, cidr, n)
	}
	n.IP = n.IP.To4()
	return n, nil
}

// firstHost is the network address plus one: the pods' gateway, which the
// bridge carries.
func firstHost(n *net.IPNet) net.IP {
	ip := append(net.IP(nil), n.IP.To4()...)
	ip[3]++
	return ip
}

// NetNSName names the network namespace of the pod with this UID:
// shoal-<first 12 characters of the UID>.
func NetNSName(uid string) string {
	if len(uid) > uidNameChars {
		uid = uid[:uidNameChars]
	}
	return netnsPrefix + uid
}

// NetNSPath is where the namespace of the pod with this UID is mounted.
func NetNSPath(uid string) string { return filepath.Join(netnsDir, NetNSName(uid)) }

// uidRe is what a pod UID may hold: it becomes the CNI container ID, a
// file name under the state directory and part of the namespace's name.
var uidRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

func checkPod(pod PodRef) error {
	if pod.UID == "" {
		return fmt.Errorf("podnet: pod %s/%s has no UID", pod.Namespace, pod.Name)
	}
	if len(pod.UID) > 128 || !uidRe.MatchString(pod.UID) {
		return fmt.Errorf("podnet: pod UID %q: only letters, digits, '_', '.', '-' (at most 128)", pod.UID)
	}
	return nil
}

// portMapEntry is one entry of the portMappings capability, as the portmap
// plugin reads it.
type portMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// portMappings checks the pod's port mappings and turns them into portmap's
// form. A mapping without a host port publishes nothing and is dropped, as
// a Kubernetes containerPort without hostPort.
func portMappings(ports []PortMapping) ([]portMapEntry, error) {
	var out []portMapEntry
	seen := map[string]bool{}
	for i, p := range ports {
		if p.HostPort == 0 {
			continue
		}
		if p.HostPort < 0 || p.HostPort > 65535 {
			return nil, fmt.Errorf("podnet: ports[%d].hostPort %d out of range 1-65535", i, p.HostPort)
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("podnet: ports[%d].containerPort %d out of range 1-65535", i, p.ContainerPort)
		}
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return nil, fmt.Errorf("podnet: ports[%d].protocol %q: want TCP, UDP or SCTP", i, p.Protocol)
		}
		hostIP := ""
		if p.HostIP != "" {
			ip := net.ParseIP(p.HostIP)
			if ip == nil || ip.To4() == nil {
				return nil, fmt.Errorf("podnet: ports[%d].hostIP %q: not an IPv4 address", i, p.HostIP)
			}
			if !ip.IsUnspecified() {
				hostIP = ip.String()
			}
		}
		key := fmt.Sprintf("%s/%s:%d", proto, hostIP, p.HostPort)
		if seen[key] {
			return nil, fmt.Errorf("podnet: ports[%d]: host port %d/%s is mapped twice", i, p.HostPort, proto)
		}
		seen[key] = true
		out = append(out, portMapEntry{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: hostIP})
	}
	return out, nil
}

// confList renders the CNI network configuration list for s: a bridge with
// host-local IPAM over the node's pod subnet, and, withPortmap, portmap for
// host ports. Each plugin is a process per pod on ADD and on DEL, so pods
// without host ports do without portmap, and the pod's lo is brought up in
// process rather than by the loopback plugin. s.MTU must be resolved.
func confList(s *settings, withPortmap bool) ([]byte, error) {
	type route struct {
		Dst string `json:"dst"`
	}
	type rng struct {
		Subnet  string `json:"subnet"`
		Gateway string `json:"gateway"`
	}
	type ipam struct {
		Type    string  `json:"type"`
		DataDir string  `json:"dataDir"`
		Ranges  [][]rng `json:"ranges"`
		Routes  []route `json:"routes"`
	}
	type bridge struct {
		Type        string `json:"type"`
		Bridge      string `json:"bridge"`
		IsGateway   bool   `json:"isGateway"`
		IPMasq      bool   `json:"ipMasq"`
		HairpinMode bool   `json:"hairpinMode"`
		MTU         int    `json:"mtu,omitempty"`
		IPAM        ipam   `json:"ipam"`
	}
	type portmap struct {
		Type         string          `json:"type"`
		Capabilities map[string]bool `json:"capabilities"`
		SNAT         bool            `json:"snat"`
	}
	list := struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []any  `json:"plugins"`
	}{
		CNIVersion: cniVersion,
		Name:       networkName,
		Plugins: []any{
			bridge{
				Type:        "bridge",
				Bridge:      s.BridgeName,
				IsGateway:   true,
				IPMasq:      false, // masquerade is ours: only traffic leaving the cluster CIDR
				HairpinMode: true,
				MTU:         s.MTU,
				IPAM: ipam{
					Type:    "host-local",
					DataDir: s.ipamDir(),
					Ranges:  [][]rng{{{Subnet: s.PodCIDR, Gateway: s.gateway.String()}}},
					Routes:  []route{{Dst: "0.0.0.0/0"}},
				},
			},
		},
	}
	if withPortmap {
		list.Plugins = append(list.Plugins, portmap{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}, SNAT: true})
	}
	return json.MarshalIndent(list, "", "  ")
}

// podMTU is the MTU of the bridge and the pods in mode, from the MTU the
// Config sets (0: none) and the host's: the host's own in host-gw mode;
// where the overlay may carry pod traffic (vxlan, auto), the host's less
// what the overlay costs, so that a full-sized pod packet still fits once
// encapsulated. A set MTU too big for the overlay is refused rather than
// left to lose big packets.
func podMTU(mode string, configured, host int) (int, error) {
	overlay := host - vxlanOverhead
	if configured == 0 {
		if mode == ModeHostGW {
			return host, nil
		}
		return overlay, nil
	}
	if mode != ModeHostGW && configured > overlay {
		return 0, fmt.Errorf("podnet: MTU %d does not fit the VXLAN overlay that mode %s may use: at most %d (the host's %d less %d); leave MTU 0, or use mode %s",
			configured, mode, overlay, host, vxlanOverhead, ModeHostGW)
	}
	return configured, nil
}
