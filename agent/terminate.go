package agent

import (
	"context"
	"time"

	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/api"
)

// A pod deleted gracefully stays in the store, Terminating, until its
// node has stopped it. The endpoints controller takes it out of its
// Services at once; its node waits until it sees that (plus a margin for
// the other nodes' load balancers to follow) before it sends SIGTERM, so
// that no new connection reaches a pod that is stopping. The wait is
// bounded by the pod's grace period.

// endpointsMargin is how long after this node saw a terminating pod leave
// the endpoints it still waits: the other nodes get the same change from
// their watch at about the same time and program it within milliseconds.
const endpointsMargin = 500 * time.Millisecond

// drainDelayWithoutLB is the wait when this node runs no load balancer and
// so cannot see the endpoints.
const drainDelayWithoutLB = time.Second

// drainWait is how much longer a terminating pod must keep running
// before it is stopped: zero once nothing should send it new traffic or
// its grace is spent waiting. seen is when this node first saw the pod
// terminating, gone when it first saw the pod's address out of every
// Service's endpoints (zero: not yet). Pure.
func drainWait(now, seen, gone time.Time, inEndpoints, haveLB bool, grace time.Duration) time.Duration {
	limit := seen.Add(grace)
	var until time.Time
	switch {
	case !haveLB:
		until = seen.Add(drainDelayWithoutLB)
	case inEndpoints || gone.IsZero():
		until = limit
		if !now.Before(until) {
			return 0
		}
		// Not drained yet: look again soon.
		return min(until.Sub(now), 100*time.Millisecond)
	default:
		until = gone.Add(endpointsMargin)
	}
	if until.After(limit) {
		until = limit
	}
	if d := until.Sub(now); d > 0 {
		return d
	}
	return 0
}

// deletionGrace is the grace a terminating pod was given.
func deletionGrace(pod *api.Pod) time.Duration {
	if g := pod.GetMetadata().DeletionGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return graceOf(pod)
}

// terminatePod stops a pod marked for deletion once it is out of its
// Services' endpoints, and then removes it from the store.
func (m *podManager) terminatePod(ctx context.Context, pod *api.Pod, containers []runtime.ContainerStatus) {
	uid := pod.GetMetadata().GetUid()
	now := time.Now()
	grace := deletionGrace(pod)
	m.mu.Lock()
	t := m.terminating[uid]
	if t == nil {
		t = &terminationState{seen: now}
		m.terminating[uid] = t
	}
	m.mu.Unlock()
	ip := pod.GetStatus().GetPodIp()
	inEndpoints := false
	if m.endpointsHave != nil && ip != "" {
		inEndpoints = m.endpointsHave(ip)
		if !inEndpoints && t.gone.IsZero() {
			t.gone = now
		}
	}
	if wait := drainWait(now, t.seen, t.gone, inEndpoints, m.endpointsHave != nil, grace); wait > 0 {
		time.AfterFunc(wait, m.kick)
		return
	}
	if !m.cleanPodWithGrace(ctx, uid, containers, grace) {
		return // again on the next round
	}
	// Gone from the node: now from the store, unless the name was taken by
	// another pod meanwhile.
	meta := pod.GetMetadata()
	cur, err := m.api.Get(ctx, &api.GetRequest{Kind: "Pod", Namespace: meta.GetNamespace(), Name: meta.GetName()})
	if err != nil || cur.GetPod().GetMetadata().GetUid() != uid {
		return
	}
	zero := int64(0)
	_, err = m.api.Delete(ctx, &api.DeleteRequest{Kind: "Pod", Namespace: meta.GetNamespace(), Name: meta.GetName(),
		ResourceVersion: cur.GetPod().GetMetadata().GetResourceVersion(), GracePeriodSeconds: &zero})
	if err != nil {
		m.log.Info("remove stopped pod; retrying", "pod", api.KeyOf(pod), "err", err)
		time.AfterFunc(200*time.Millisecond, m.kick)
		return
	}
	m.log.Info("pod terminated and removed", "pod", api.KeyOf(pod), "after", time.Since(t.seen).Round(time.Millisecond))
}

// terminationState is what the node saw of a terminating pod.
type terminationState struct {
	seen, gone time.Time
}
