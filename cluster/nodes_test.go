package cluster

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
)

func TestNodeStatusFor(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	since := now.Add(-90 * time.Second)
	old := "2025-01-01T00:00:00Z"
	member := func(alive bool) Member {
		return Member{ID: "id-1", Meta: memberMeta{Name: "node1", API: "192.168.56.11:7443", Raft: "192.168.56.11:7947"},
			Gossip: "192.168.56.11:7946", Alive: alive, Since: since}
	}
	ready := func(status, reason, msg, beat, trans string) *api.NodeCondition {
		return &api.NodeCondition{Type: "Ready", Status: status, Reason: reason, Message: msg, LastHeartbeatTime: beat, LastTransitionTime: trans}
	}
	aliveMsg, deadMsg := "gossip reports the node alive", "gossip reports the node unreachable"
	nowS, sinceS := now.Format(time.RFC3339), since.Format(time.RFC3339)
	pressure := &api.NodeCondition{Type: "MemoryPressure", Status: "False", LastTransitionTime: old}
	disk := &api.NodeCondition{Type: "DiskPressure", Status: "False", LastTransitionTime: old}
	agentFields := func(conds ...*api.NodeCondition) *api.NodeStatus {
		return &api.NodeStatus{
			Capacity: map[string]string{"cpu": "4", "memory": "8Gi"}, Allocatable: map[string]string{"cpu": "3500m"},
			NodeInfo:  &api.NodeSystemInfo{KernelVersion: "6.18", Architecture: "amd64"},
			Addresses: []*api.NodeAddress{{Type: "InternalIP", Address: "10.9.9.9"}},
			RaftRole:  RoleVoter, NodeId: "stale", ApiEndpoint: "10.9.9.9:7443",
			Conditions: conds,
		}
	}

	cases := []struct {
		name      string
		cur       *api.NodeStatus
		m         Member
		role      string
		wantConds []*api.NodeCondition
		keepAgent bool // capacity, allocatable and nodeInfo come from cur
	}{
		{name: "new live node", m: member(true), role: RoleLeader,
			wantConds: []*api.NodeCondition{ready("True", "NodeAlive", aliveMsg, nowS, sinceS)}},
		{name: "new unreachable node", m: member(false), role: RoleNone,
			wantConds: []*api.NodeCondition{ready("False", "NodeUnreachable", deadMsg, nowS, sinceS)}},
		{name: "still alive: the condition and its times are kept", m: member(true), role: RoleVoter,
			cur:       &api.NodeStatus{Conditions: []*api.NodeCondition{ready("True", "NodeAlive", "older wording", old, old)}},
			wantConds: []*api.NodeCondition{ready("True", "NodeAlive", "older wording", old, old)}},
		{name: "still unreachable: times kept", m: member(false), role: RoleNone,
			cur:       &api.NodeStatus{Conditions: []*api.NodeCondition{ready("False", "NodeUnreachable", deadMsg, old, old)}},
			wantConds: []*api.NodeCondition{ready("False", "NodeUnreachable", deadMsg, old, old)}},
		{name: "alive to unreachable: transition when gossip saw it, heartbeat now", m: member(false), role: RoleVoter,
			cur:       &api.NodeStatus{Conditions: []*api.NodeCondition{ready("True", "NodeAlive", aliveMsg, old, old)}},
			wantConds: []*api.NodeCondition{ready("False", "NodeUnreachable", deadMsg, nowS, sinceS)}},
		{name: "unreachable to alive", m: member(true), role: RoleNonvoter,
			cur:       &api.NodeStatus{Conditions: []*api.NodeCondition{ready("False", "NodeUnreachable", deadMsg, old, old)}},
			wantConds: []*api.NodeCondition{ready("True", "NodeAlive", aliveMsg, nowS, sinceS)}},
		{name: "a Ready written by someone else is taken over", m: member(true), role: RoleVoter,
			cur:       &api.NodeStatus{Conditions: []*api.NodeCondition{ready("Unknown", "", "", "", "")}},
			wantConds: []*api.NodeCondition{ready("True", "NodeAlive", aliveMsg, nowS, sinceS)}},
		{name: "other conditions are kept, in place", m: member(true), role: RoleVoter,
			cur:       &api.NodeStatus{Conditions: []*api.NodeCondition{pressure, ready("True", "NodeAlive", aliveMsg, old, old), disk}},
			wantConds: []*api.NodeCondition{pressure, ready("True", "NodeAlive", aliveMsg, old, old), disk}},
		{name: "Ready is added after the other conditions", m: member(false), role: RoleNone,
			cur:       &api.NodeStatus{Conditions: []*api.NodeCondition{pressure}},
			wantConds: []*api.NodeCondition{pressure, ready("False", "NodeUnreachable", deadMsg, nowS, sinceS)}},
		{name: "what the agent reports is kept, what gossip and raft say is replaced", m: member(true), role: RoleNonvoter,
			cur:       agentFields(ready("True", "NodeAlive", aliveMsg, old, old)),
			wantConds: []*api.NodeCondition{ready("True", "NodeAlive", aliveMsg, old, old)}, keepAgent: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before *api.NodeStatus
			if tc.cur != nil {
				before = proto.Clone(tc.cur).(*api.NodeStatus)
			}
			got := nodeStatusFor(tc.cur, tc.m, tc.role, now)
			if tc.cur != nil && !proto.Equal(tc.cur, before) {
				t.Errorf("nodeStatusFor changed its input:\n got %v\nwant %v", tc.cur, before)
			}
			wantAddrs := []*api.NodeAddress{{Type: "InternalIP", Address: "192.168.56.11"}, {Type: "Hostname", Address: "node1"}}
			if len(got.Addresses) != 2 || !proto.Equal(got.Addresses[0], wantAddrs[0]) || !proto.Equal(got.Addresses[1], wantAddrs[1]) {
				t.Errorf("addresses %v, want %v", got.Addresses, wantAddrs)
			}
			if got.NodeId != "id-1" || got.ApiEndpoint != "192.168.56.11:7443" || got.RaftRole != tc.role {
				t.Errorf("nodeID %q apiEndpoint %q role %q", got.NodeId, got.ApiEndpoint, got.RaftRole)
			}
			if len(got.Conditions) != len(tc.wantConds) {
				t.Fatalf("conditions %v, want %v", got.Conditions, tc.wantConds)
			}
			for i := range got.Conditions {
				if !proto.Equal(got.Conditions[i], tc.wantConds[i]) {
					t.Errorf("condition %d: %v, want %v", i, got.Conditions[i], tc.wantConds[i])
				}
			}
			if tc.keepAgent {
				want := agentFields()
				if !proto.Equal(&api.NodeStatus{Capacity: got.Capacity, Allocatable: got.Allocatable, NodeInfo: got.NodeInfo},
					&api.NodeStatus{Capacity: want.Capacity, Allocatable: want.Allocatable, NodeInfo: want.NodeInfo}) {
					t.Errorf("agent-reported fields lost: %v", got)
				}
			}
			// The leader reconciles every second: with nothing new from
			// gossip, the next status must be equal, or it writes forever.
			again := nodeStatusFor(got, tc.m, tc.role, now.Add(time.Minute))
			if !proto.Equal(again, got) {
				t.Errorf("a later round changes the status:\n got %v\nwant %v", again, got)
			}
		})
	}
}

// TestNodeStatusForTimes: times are RFC 3339 in UTC whatever the local
// zone, and the API address may be IPv6.
func TestNodeStatusForTimes(t *testing.T) {
	zone := time.FixedZone("UTC+5", 5*3600)
	cases := []struct {
		name      string
		api       string
		since     time.Time
		now       time.Time
		wantHost  string
		wantTrans string
		wantBeat  string
	}{
		{"local zone", "10.0.0.1:7443", time.Date(2025, 3, 1, 17, 0, 0, 0, zone), time.Date(2025, 3, 1, 17, 30, 0, 0, zone),
			"10.0.0.1", "2025-03-01T12:00:00Z", "2025-03-01T12:30:00Z"},
		{"IPv6", "[fd00::1]:7443", time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), time.Date(2025, 3, 1, 12, 0, 1, 0, time.UTC),
			"fd00::1", "2025-03-01T12:00:00Z", "2025-03-01T12:00:01Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := Member{ID: "x", Meta: memberMeta{Name: "x", API: tc.api}, Alive: true, Since: tc.since}
			got := nodeStatusFor(nil, m, RoleNone, tc.now)
			c := got.Conditions[0]
			if got.Addresses[0].Address != tc.wantHost || c.LastTransitionTime != tc.wantTrans || c.LastHeartbeatTime != tc.wantBeat {
				t.Errorf("host %q transition %q heartbeat %q; want %q %q %q", got.Addresses[0].Address, c.LastTransitionTime, c.LastHeartbeatTime, tc.wantHost, tc.wantTrans, tc.wantBeat)
			}
		})
	}
}
