package cluster

import (
	"sort"
	"time"
)

// Raft roles as Node objects show them.
const (
	RoleLeader   = "leader"
	RoleVoter    = "voter"
	RoleNonvoter = "nonvoter"
	RoleNone     = "none"
)

// raftServer is one entry of the raft configuration.
type raftServer struct {
	ID      string
	Address string
	Voter   bool
}

// autopilotInput is what the leader knows when it plans raft membership.
type autopilotInput struct {
	Servers  []raftServer
	Members  []Member
	LeaderID string
	// LeaderSince is when this leader took over: a server that gossip has
	// not seen since then counts as gone from that moment.
	LeaderSince   time.Time
	Now           time.Time
	Stabilization time.Duration
	MaxReplicas   int
}

// raftChange is one step toward the planned membership.
type raftChange struct {
	Op      string // add-nonvoter, promote, demote, remove
	ID      string
	Address string
}

// targetVoters is the number of voters for a cluster of n nodes: always odd,
// 1 below 3 nodes, 3 below 5, then 5.
func targetVoters(n int) int {
	switch {
	case n >= 5:
		return 5
	case n >= 3:
		return 3
	default:
		return 1
	}
}

// planRaftMembership decides how the raft configuration should change, the
// way Consul's autopilot does: keep an odd number of voters sized to the
// cluster, fill the remaining replica places with non-voters, promote a
// healthy non-voter to replace a voter gone longer than the stabilisation
// period, then remove what is gone. The leader is never demoted or removed.
// The changes come in the order they must be made.
func planRaftMembership(in autopilotInput) []raftChange {
	members := map[string]Member{}
	for _, m := range in.Members {
		members[m.ID] = m
	}
	alive := func(id string) bool { m, ok := members[id]; return ok && m.Alive }
	failed := func(id string) bool {
		if id == in.LeaderID {
			return false
		}
		m, ok := members[id]
		if !ok {
			return in.Now.Sub(in.LeaderSince) >= in.Stabilization
		}
		return !m.Alive && in.Now.Sub(m.Since) >= in.Stabilization
	}

	inConfig := map[string]raftServer{}
	for _, s := range in.Servers {
		inConfig[s.ID] = s
	}
	// The cluster's size: every node known and not given up on.
	known := map[string]bool{}
	for _, m := range in.Members {
		if !failed(m.ID) {
			known[m.ID] = true
		}
	}
	for _, s := range in.Servers {
		if !failed(s.ID) {
			known[s.ID] = true
		}
	}
	target := targetVoters(len(known))
	for target > 1 && target > in.MaxReplicas {
		target -= 2 // voters are replicas too, and stay odd
	}

	var changes []raftChange
	voters := 0
	var nonvoters, removals []raftServer
	var demotable []raftServer
	for _, s := range sortedServers(in.Servers) {
		switch {
		case failed(s.ID):
			removals = append(removals, s)
		case s.Voter:
			voters++
			if s.ID != in.LeaderID && alive(s.ID) {
				demotable = append(demotable, s)
			}
		case alive(s.ID):
			nonvoters = append(nonvoters, s)
		}
	}
	replicas := voters + len(nonvoters)

	// Promote caught-up non-voters (they are in the configuration, so raft
	// has been replicating to them) until there are enough voters.
	for len(nonvoters) > 0 && voters < target {
		s := nonvoters[0]
		nonvoters = nonvoters[1:]
		changes = append(changes, raftChange{Op: "promote", ID: s.ID, Address: s.Address})
		voters++
	}
	// Too many voters (the cluster shrank): demote, keeping the leader.
	for i := len(demotable) - 1; i >= 0 && voters > target; i-- {
		s := demotable[i]
		changes = append(changes, raftChange{Op: "demote", ID: s.ID, Address: s.Address})
		voters--
		nonvoters = append(nonvoters, s)
	}
	for _, s := range removals {
		changes = append(changes, raftChange{Op: "remove", ID: s.ID, Address: s.Address})
	}
	// Add live nodes outside the configuration as non-voters while there is
	// room; they are promoted on a later round once they hold the log.
	for _, m := range in.Members {
		if replicas >= in.MaxReplicas {
			break
		}
		if _, ok := inConfig[m.ID]; ok || !m.Alive || m.Meta.Raft == "" {
			continue
		}
		changes = append(changes, raftChange{Op: "add-nonvoter", ID: m.ID, Address: m.Meta.Raft})
		replicas++
	}
	// Too many replicas: drop non-voters beyond the bound (their nodes keep
	// working through another replica's API).
	for i := len(nonvoters) - 1; i >= 0 && replicas > in.MaxReplicas; i-- {
		changes = append(changes, raftChange{Op: "remove", ID: nonvoters[i].ID, Address: nonvoters[i].Address})
		replicas--
	}
	return changes
}

func sortedServers(s []raftServer) []raftServer {
	out := append([]raftServer(nil), s...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func sortMembers(m []Member) {
	sort.Slice(m, func(i, j int) bool { return m[i].ID < m[j].ID })
}
