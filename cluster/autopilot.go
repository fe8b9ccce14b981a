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
	LeaderSince time.Time
	// Unreachable are the servers raft currently fails to reach from the
	// leader: not promoted, however alive gossip still thinks them.
	Unreachable   map[string]bool
	Now           time.Time
	Stabilization time.Duration
	// PromoteAfter is how long a non-voter must have been up before it
	// becomes a voter.
	PromoteAfter time.Duration
	MaxReplicas  int
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
// period, then remove what is gone, and demote only while every voter is
// up, so that no change needs a majority the cluster does not have. The
// leader is never demoted or removed. The changes come in the order they
// must be made.
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
	voters, liveVoters, replicas := 0, 0, 0
	allVotersAlive := true
	var promotable, nonvoters, removals, demotable []raftServer
	for _, s := range sortedServers(in.Servers) {
		if failed(s.ID) {
			removals = append(removals, s)
			continue
		}
		replicas++ // a server briefly down keeps its place
		switch {
		case s.Voter:
			voters++
			if !alive(s.ID) {
				allVotersAlive = false
				continue
			}
			liveVoters++
			if s.ID != in.LeaderID {
				demotable = append(demotable, s)
			}
		case alive(s.ID):
			nonvoters = append(nonvoters, s)
			if in.Now.Sub(members[s.ID].Since) >= in.PromoteAfter && !in.Unreachable[s.ID] {
				promotable = append(promotable, s)
			}
		}
	}

	// 1. Promote one non-voter that has been up a while (and in the
	// configuration since an earlier round, so raft has been replicating
	// to it) when voters are missing.
	if voters < target && len(promotable) > 0 {
		s := promotable[0]
		changes = append(changes, raftChange{Op: "promote", ID: s.ID, Address: s.Address})
		voters++
		liveVoters++
		nonvoters = removeServer(nonvoters, s.ID)
	}
	// 2. Remove what has been gone past the stabilisation period. Taking a
	// dead voter out never lowers the live voters, so a configuration that
	// has its majority keeps it.
	for _, s := range removals {
		changes = append(changes, raftChange{Op: "remove", ID: s.ID, Address: s.Address})
	}
	// 3. Demote when the cluster shrank, only while every voter is up: a
	// change commits only with a majority of the new configuration.
	for i := len(demotable) - 1; i >= 0 && voters > target && allVotersAlive; i-- {
		if liveVoters-1 <= (voters-1)/2 {
			break
		}
		s := demotable[i]
		changes = append(changes, raftChange{Op: "demote", ID: s.ID, Address: s.Address})
		voters--
		liveVoters--
		nonvoters = append(nonvoters, s)
	}
	// 4. Add live nodes outside the configuration as non-voters while there
	// is room; they are promoted on a later round once they hold the log.
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
	// 5. Too many replicas: drop live non-voters beyond the bound (their
	// nodes keep working through another replica's API).
	for i := len(nonvoters) - 1; i >= 0 && replicas > in.MaxReplicas; i-- {
		changes = append(changes, raftChange{Op: "remove", ID: nonvoters[i].ID, Address: nonvoters[i].Address})
		replicas--
	}
	return changes
}

func removeServer(list []raftServer, id string) []raftServer {
	out := list[:0:0]
	for _, s := range list {
		if s.ID != id {
			out = append(out, s)
		}
	}
	return out
}

func sortedServers(s []raftServer) []raftServer {
	out := append([]raftServer(nil), s...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func sortMembers(m []Member) {
	sort.Slice(m, func(i, j int) bool { return m[i].ID < m[j].ID })
}
