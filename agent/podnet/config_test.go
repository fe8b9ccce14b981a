package podnet

import (
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables/expr"
)

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means valid
		check   func(t *testing.T, s *settings)
	}{
		{
			name: "defaults",
			cfg:  Config{PodCIDR: "10.244.3.0/24"},
			check: func(t *testing.T, s *settings) {
				if s.BridgeName != "shoal0" || s.ClusterCIDR != "10.244.0.0/16" || s.StateDir != "/var/lib/shoal" || s.MTU != 0 {
					t.Errorf("defaults not applied: %+v", s.Config)
				}
				if !reflect.DeepEqual(s.PluginDirs, []string{"/usr/lib/cni", "/opt/cni/bin"}) {
					t.Errorf("plugin dirs %v", s.PluginDirs)
				}
				if s.gateway.String() != "10.244.3.1" {
					t.Errorf("gateway %s, want 10.244.3.1", s.gateway)
				}
				if s.ipamDir() != "/var/lib/shoal/podnet/ipam" || s.cacheDir() != "/var/lib/shoal/podnet/cni-cache" {
					t.Errorf("dirs %s %s", s.ipamDir(), s.cacheDir())
				}
			},
		},
		{
			name: "explicit",
			cfg:  Config{PodCIDR: "172.20.16.0/20", ClusterCIDR: "172.20.0.0/14", BridgeName: "br-pods", StateDir: "/tmp/x/../y", MTU: 1450, PluginDirs: []string{"/p"}},
			check: func(t *testing.T, s *settings) {
				if s.StateDir != "/tmp/y" || s.MTU != 1450 || s.BridgeName != "br-pods" || s.gateway.String() != "172.20.16.1" {
					t.Errorf("got %+v gw %s", s.Config, s.gateway)
				}
			},
		},
		{name: "pod CIDR equal to the cluster CIDR", cfg: Config{PodCIDR: "10.244.0.0/16"}},
		{name: "smallest pod subnet", cfg: Config{PodCIDR: "10.244.1.16/28"}},
		{name: "missing pod CIDR", cfg: Config{}, wantErr: "pod CIDR is required"},
		{name: "garbage", cfg: Config{PodCIDR: "10.244.1.0"}, wantErr: "not an address/prefix"},
		{name: "host bits", cfg: Config{PodCIDR: "10.244.1.7/24"}, wantErr: "host bits set; did you mean 10.244.1.0/24"},
		{name: "outside the cluster", cfg: Config{PodCIDR: "10.245.1.0/24"}, wantErr: "not inside the cluster CIDR 10.244.0.0/16"},
		{name: "larger than the cluster", cfg: Config{PodCIDR: "10.240.0.0/16", ClusterCIDR: "10.244.0.0/17"}, wantErr: "not inside the cluster CIDR"},
		{name: "too big for a node", cfg: Config{PodCIDR: "10.0.0.0/8", ClusterCIDR: "10.0.0.0/8"}, wantErr: "between /16 and /28"},
		{name: "too small for a node", cfg: Config{PodCIDR: "10.244.1.0/30"}, wantErr: "between /16 and /28"},
		{name: "IPv6 pod CIDR", cfg: Config{PodCIDR: "fd00:10:244:1::/64"}, wantErr: "only IPv4"},
		{name: "bad cluster CIDR", cfg: Config{PodCIDR: "10.244.1.0/24", ClusterCIDR: "10.244.0.1/16"}, wantErr: "cluster CIDR \"10.244.0.1/16\" has host bits"},
		{name: "bridge name too long", cfg: Config{PodCIDR: "10.244.1.0/24", BridgeName: "a-very-long-bridge"}, wantErr: "not a valid interface name"},
		{name: "bridge name with slash", cfg: Config{PodCIDR: "10.244.1.0/24", BridgeName: "br/0"}, wantErr: "not a valid interface name"},
		{name: "MTU too small", cfg: Config{PodCIDR: "10.244.1.0/24", MTU: 100}, wantErr: "MTU 100 out of range"},
		{name: "MTU negative", cfg: Config{PodCIDR: "10.244.1.0/24", MTU: -1}, wantErr: "out of range"},
		{name: "mode auto by default", cfg: Config{PodCIDR: "10.244.1.0/24"},
			check: func(t *testing.T, s *settings) {
				if s.Mode != ModeAuto || s.nodeIP != nil || s.NodeIP != "" {
					t.Errorf("mode %q node IP %v", s.Mode, s.nodeIP)
				}
			}},
		{name: "mode host-gw", cfg: Config{PodCIDR: "10.244.1.0/24", Mode: "host-gw"}},
		{name: "mode vxlan with a node IP", cfg: Config{PodCIDR: "10.244.1.0/24", Mode: "vxlan", NodeIP: " 192.168.56.11 "},
			check: func(t *testing.T, s *settings) {
				if s.Mode != ModeVXLAN || s.NodeIP != "192.168.56.11" || len(s.nodeIP) != 4 {
					t.Errorf("mode %q node IP %q %v", s.Mode, s.NodeIP, s.nodeIP)
				}
			}},
		{name: "mode auto with a node IP", cfg: Config{PodCIDR: "10.244.1.0/24", Mode: "auto", NodeIP: "10.0.0.1"}},
		{name: "mode vxlan without a node IP", cfg: Config{PodCIDR: "10.244.1.0/24", Mode: "vxlan"}, wantErr: "mode vxlan needs the node's address (NodeIP)"},
		{name: "unknown mode", cfg: Config{PodCIDR: "10.244.1.0/24", Mode: "overlay"}, wantErr: `pod network mode "overlay": want one of auto, host-gw, vxlan`},
		{name: "mode in capitals", cfg: Config{PodCIDR: "10.244.1.0/24", Mode: "VXLAN", NodeIP: "10.0.0.1"}, wantErr: "want one of"},
		{name: "node IP not an address", cfg: Config{PodCIDR: "10.244.1.0/24", NodeIP: "node1"}, wantErr: `node IP "node1": not a usable IPv4 address`},
		{name: "node IP IPv6", cfg: Config{PodCIDR: "10.244.1.0/24", NodeIP: "fd00::1"}, wantErr: "not a usable IPv4 address"},
		{name: "node IP unspecified", cfg: Config{PodCIDR: "10.244.1.0/24", NodeIP: "0.0.0.0"}, wantErr: "not a usable IPv4 address"},
		{name: "node IP loopback", cfg: Config{PodCIDR: "10.244.1.0/24", NodeIP: "127.0.0.1"}, wantErr: "not a usable IPv4 address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := resolve(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestNetNSName(t *testing.T) {
	for _, tc := range []struct{ uid, want string }{
		{"3f1c2a9e-7b4d-4c1e-9f0a-2b3c4d5e6f70", "shoal-3f1c2a9e-7b4"},
		{"abcdef123456", "shoal-abcdef123456"},
		{"abc", "shoal-abc"},
	} {
		if got := NetNSName(tc.uid); got != tc.want {
			t.Errorf("NetNSName(%q) = %q, want %q", tc.uid, got, tc.want)
		}
		if got := NetNSPath(tc.uid); got != "/run/netns/"+tc.want {
			t.Errorf("NetNSPath(%q) = %q", tc.uid, got)
		}
		if len(NetNSName(tc.uid)) > 18 {
			t.Errorf("name %q too long", NetNSName(tc.uid))
		}
	}
}

func TestCheckPod(t *testing.T) {
	for _, tc := range []struct {
		pod     PodRef
		wantErr string
	}{
		{PodRef{UID: "3f1c2a9e-7b4d-4c1e-9f0a-2b3c4d5e6f70", Namespace: "default", Name: "web"}, ""},
		{PodRef{Namespace: "default", Name: "web"}, "has no UID"},
		{PodRef{UID: "../etc"}, "only letters"},
		{PodRef{UID: "a b"}, "only letters"},
		{PodRef{UID: strings.Repeat("a", 129)}, "at most 128"},
	} {
		err := checkPod(tc.pod)
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkPod(%+v) = %v, want %q", tc.pod, err, tc.wantErr)
		}
	}
}

func TestPortMappings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []PortMapping
		want    []portMapEntry
		wantErr string
	}{
		{name: "none"},
		{name: "no host port is not published", in: []PortMapping{{ContainerPort: 80}}},
		{
			name: "normalised",
			in: []PortMapping{
				{HostPort: 8080, ContainerPort: 80},
				{HostPort: 5353, ContainerPort: 53, Protocol: "UDP", HostIP: "0.0.0.0"},
				{HostPort: 8443, ContainerPort: 443, Protocol: "tcp", HostIP: "192.0.2.10"},
				{HostPort: 8080, ContainerPort: 80, Protocol: "UDP"},
			},
			want: []portMapEntry{
				{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
				{HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
				{HostPort: 8443, ContainerPort: 443, Protocol: "tcp", HostIP: "192.0.2.10"},
				{HostPort: 8080, ContainerPort: 80, Protocol: "udp"},
			},
		},
		{name: "host port range", in: []PortMapping{{HostPort: 70000, ContainerPort: 80}}, wantErr: "ports[0].hostPort 70000"},
		{name: "container port missing", in: []PortMapping{{HostPort: 8080}}, wantErr: "ports[0].containerPort 0"},
		{name: "protocol", in: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "icmp"}}, wantErr: "want TCP, UDP or SCTP"},
		{name: "host IP", in: []PortMapping{{HostPort: 1, ContainerPort: 1, HostIP: "nope"}}, wantErr: "not an IPv4 address"},
		{name: "twice", in: []PortMapping{{HostPort: 80, ContainerPort: 1}, {HostPort: 80, ContainerPort: 2, Protocol: "TCP"}}, wantErr: "mapped twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := portMappings(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConfList(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		mtu  int
		want string
	}{
		{
			name: "node subnet",
			cfg:  Config{PodCIDR: "10.244.7.0/24", StateDir: "/var/lib/shoal"},
			mtu:  1400,
			want: `{
			  "cniVersion": "1.0.0", "name": "shoal",
			  "plugins": [
			    {"type": "bridge", "bridge": "shoal0", "isGateway": true, "ipMasq": false, "hairpinMode": true, "mtu": 1400,
			     "ipam": {"type": "host-local", "dataDir": "/var/lib/shoal/podnet/ipam",
			              "ranges": [[{"subnet": "10.244.7.0/24", "gateway": "10.244.7.1"}]],
			              "routes": [{"dst": "0.0.0.0/0"}]}},
			    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
			  ]}`,
		},
		{
			name: "other bridge and subnet",
			cfg:  Config{PodCIDR: "172.16.32.0/20", ClusterCIDR: "172.16.0.0/12", BridgeName: "pods", StateDir: "/data"},
			mtu:  9000,
			want: `{
			  "cniVersion": "1.0.0", "name": "shoal",
			  "plugins": [
			    {"type": "bridge", "bridge": "pods", "isGateway": true, "ipMasq": false, "hairpinMode": true, "mtu": 9000,
			     "ipam": {"type": "host-local", "dataDir": "/data/podnet/ipam",
			              "ranges": [[{"subnet": "172.16.32.0/20", "gateway": "172.16.32.1"}]],
			              "routes": [{"dst": "0.0.0.0/0"}]}},
			    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
			  ]}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := resolve(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			s.MTU = tc.mtu
			b, err := confList(s, true)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("conflist:\n%s\nwant:\n%s", b, tc.want)
			}
			list, err := libcni.ConfListFromBytes(b)
			if err != nil {
				t.Fatalf("libcni refuses it: %v", err)
			}
			var types []string
			for _, p := range list.Plugins {
				types = append(types, p.Network.Type)
			}
			if strings.Join(types, ",") != "bridge,portmap" || list.Name != "shoal" || list.CNIVersion != "1.0.0" {
				t.Errorf("libcni reads %s %s %v", list.Name, list.CNIVersion, types)
			}
			if !list.Plugins[1].Network.Capabilities["portMappings"] {
				t.Error("portmap lacks the portMappings capability")
			}
		})
	}
}

func TestMasqExprs(t *testing.T) {
	_, pod, _ := net.ParseCIDR("10.244.7.0/24")
	_, cluster, _ := net.ParseCIDR("10.244.0.0/16")
	got := masqExprs(pod, cluster)
	want := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 244, 7, 0}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{10, 244, 0, 0}},
		&expr.Counter{},
		&expr.Masq{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("masquerade rule:\n got %#v\nwant %#v", got, want)
	}
}

func TestAttachmentFrom(t *testing.T) {
	ipnet := func(s string) net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return *n
	}
	ifaces := []*types100.Interface{
		{Name: "shoal0"},
		{Name: "veth1234"},
		{Name: "eth0", Sandbox: "/run/netns/shoal-x"},
	}
	for _, tc := range []struct {
		name    string
		res     *types100.Result
		want    Attachment
		wantErr bool
	}{
		{
			name: "eth0 in the sandbox",
			res: &types100.Result{CNIVersion: "1.0.0", Interfaces: ifaces, IPs: []*types100.IPConfig{
				{Interface: types100.Int(0), Address: ipnet("10.244.7.1/24")},
				{Interface: types100.Int(2), Address: ipnet("fd00::5/64")},
				{Interface: types100.Int(2), Address: ipnet("10.244.7.5/24"), Gateway: net.ParseIP("10.244.7.1")},
			}},
			want: Attachment{NetNSPath: "/p", IP: net.IP{10, 244, 7, 5}, Gateway: net.IP{10, 244, 7, 1}},
		},
		{
			name: "no interface index",
			res: &types100.Result{CNIVersion: "1.0.0", IPs: []*types100.IPConfig{
				{Address: ipnet("10.244.7.9/24"), Gateway: net.ParseIP("10.244.7.1")},
			}},
			want: Attachment{NetNSPath: "/p", IP: net.IP{10, 244, 7, 9}, Gateway: net.IP{10, 244, 7, 1}},
		},
		{
			name: "only the host side",
			res: &types100.Result{CNIVersion: "1.0.0", Interfaces: ifaces, IPs: []*types100.IPConfig{
				{Interface: types100.Int(0), Address: ipnet("10.244.7.1/24")},
				{Interface: types100.Int(7), Address: ipnet("10.244.7.2/24")},
			}},
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := attachmentFrom(tc.res, "/p")
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.NetNSPath != tc.want.NetNSPath || !got.IP.Equal(tc.want.IP) || !got.Gateway.Equal(tc.want.Gateway) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestKeyedMutexForgets(t *testing.T) {
	var k keyedMutex
	u1 := k.lock("a")
	u2 := k.lock("b")
	u1()
	u3 := k.lock("a")
	u3()
	u2()
	if len(k.m) != 0 {
		t.Errorf("%d keys remembered after all unlocked", len(k.m))
	}
}

func TestConfListWithoutHostPorts(t *testing.T) {
	s, err := resolve(Config{PodCIDR: "10.244.7.0/24", StateDir: "/var/lib/shoal"})
	if err != nil {
		t.Fatal(err)
	}
	s.MTU = 1500
	b, err := confList(s, false)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Plugins) != 1 || got.Plugins[0].Type != "bridge" {
		t.Fatalf("without host ports only the bridge plugin runs: %s", b)
	}
}
