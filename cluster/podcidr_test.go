package cluster

import (
	"strings"
	"testing"
)

func TestAllocateNodeSubnet(t *testing.T) {
	for _, tc := range []struct {
		name, cluster string
		used          []string
		want, err     string
	}{
		{name: "first", cluster: "10.244.0.0/16", want: "10.244.0.0/24"},
		{name: "next free", cluster: "10.244.0.0/16", used: []string{"10.244.0.0/24", "10.244.1.0/24"}, want: "10.244.2.0/24"},
		{name: "a hole is reused", cluster: "10.244.0.0/16", used: []string{"10.244.0.0/24", "10.244.2.0/24"}, want: "10.244.1.0/24"},
		{name: "garbage in use is ignored", cluster: "10.244.0.0/16", used: []string{"", "nonsense"}, want: "10.244.0.0/24"},
		{name: "full", cluster: "10.0.0.0/23", used: []string{"10.0.0.0/24", "10.0.1.0/24"}, err: "full"},
		{name: "too small", cluster: "10.0.0.0/24", err: "must be /23 or larger"},
		{name: "host bits", cluster: "10.244.1.0/16", err: "host bits"},
		{name: "not a CIDR", cluster: "10.244.0.0", err: "pod CIDR"},
		{name: "IPv6", cluster: "fd00::/64", err: "IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := allocateNodeSubnet(tc.cluster, tc.used)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want an error about %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
