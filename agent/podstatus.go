package agent

import (
	"fmt"
	"sort"
	"time"

	"github.com/shoalproj/shoal/api"
)

// waitingState is why a container that is not running waits, when the agent
// knows better than "ContainerCreating" (an image that cannot be pulled).
type waitingState struct {
	Reason  string // ErrImagePull, ImagePullBackOff, CreateContainerError
	Message string
}

// podObservation is everything the agent knows about one pod on its node.
type podObservation struct {
	Instances []observedContainer      // every instance of its containers
	Plans     map[string]containerPlan // from planPod
	Waiting   map[string]waitingState  // by container name
	Ready     map[string]bool          // readiness probe results, by container name
	PodIP     string
	HostIP    string
	StartTime time.Time
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func terminatedState(o *observedContainer) *api.ContainerState {
	reason := "Completed"
	switch {
	case o.OOMKilled:
		reason = "OOMKilled"
	case o.ExitCode != 0:
		reason = "Error"
	}
	return &api.ContainerState{Terminated: &api.ContainerStateTerminated{
		ExitCode:    o.ExitCode,
		Reason:      reason,
		StartedAt:   rfc3339(o.StartedAt),
		FinishedAt:  rfc3339(o.FinishedAt),
		ContainerId: "containerd://" + o.ID,
	}}
}

// podStatus computes a pod's status from what the agent observed, the way
// Kubernetes' kubelet reports it. Pure; conditions keep their transition
// times from prev when unchanged.
func podStatus(pod *api.Pod, obs podObservation, prev *api.PodStatus, now time.Time) *api.PodStatus {
	st := &api.PodStatus{PodIp: obs.PodIP, HostIp: obs.HostIP, StartTime: rfc3339(obs.StartTime)}
	byName := map[string][]*observedContainer{}
	for i := range obs.Instances {
		o := &obs.Instances[i]
		byName[o.Name] = append(byName[o.Name], o)
	}
	running, succeeded, failed, waiting := 0, 0, 0, 0
	allReady := len(pod.GetSpec().GetContainers()) > 0
	for _, c := range pod.GetSpec().GetContainers() {
		cs := &api.ContainerStatus{Name: c.Name, Image: c.Image}
		insts := byName[c.Name]
		sort.Slice(insts, func(i, j int) bool { return insts[i].Restart < insts[j].Restart })
		plan := obs.Plans[c.Name]
		latest := plan.Latest
		if latest != nil {
			cs.RestartCount = int32(latest.Restart)
			cs.ContainerId = "containerd://" + latest.ID
			cs.ImageId = latest.ImageID
			// The instance before the latest, if kept: lastState.
			for i := len(insts) - 1; i >= 0; i-- {
				if insts[i].ID != latest.ID && insts[i].Exited && insts[i].Restart < latest.Restart {
					cs.LastState = terminatedState(insts[i])
					break
				}
			}
		}
		switch {
		case latest != nil && latest.Running:
			cs.State = &api.ContainerState{Running: &api.ContainerStateRunning{StartedAt: rfc3339(latest.StartedAt)}}
			cs.Started = true
			ready, probed := obs.Ready[c.Name]
			cs.Ready = ready || (!probed && c.ReadinessProbe == nil && c.StartupProbe == nil)
			running++
		case !plan.BackoffUntil.IsZero():
			// Crashed, waiting to restart: the last run is lastState.
			cs.LastState = terminatedState(latest)
			cs.State = &api.ContainerState{Waiting: &api.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container %s", plan.BackoffUntil.Sub(latest.FinishedAt).Round(time.Second), c.Name),
			}}
			running++ // the pod still runs this container, between attempts
		case latest != nil && latest.Exited:
			cs.State = terminatedState(latest)
			if latest.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		default:
			w, ok := obs.Waiting[c.Name]
			if !ok {
				w = waitingState{Reason: "ContainerCreating"}
			}
			cs.State = &api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: w.Reason, Message: w.Message}}
			waiting++
		}
		if !cs.Ready {
			allReady = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	n := len(pod.GetSpec().GetContainers())
	switch {
	case waiting > 0 && running == 0 && succeeded+failed == 0:
		st.Phase = "Pending"
	case running > 0 || waiting > 0:
		st.Phase = "Running"
	case failed > 0:
		st.Phase = "Failed"
	case succeeded == n:
		st.Phase = "Succeeded"
	default:
		st.Phase = "Running"
	}
	cond := func(typ string, ok bool, reason string) *api.PodCondition {
		status := "False"
		if ok {
			status = "True"
			reason = ""
		}
		c := &api.PodCondition{Type: typ, Status: status, Reason: reason, LastTransitionTime: rfc3339(now)}
		for _, p := range prev.GetConditions() {
			if p.Type == typ && p.Status == status {
				c.LastTransitionTime = p.LastTransitionTime
			}
		}
		return c
	}
	st.Conditions = []*api.PodCondition{
		cond("PodScheduled", true, ""),
		cond("Initialized", true, ""),
		cond("ContainersReady", allReady, "ContainersNotReady"),
		cond("Ready", allReady, "ContainersNotReady"),
	}
	return st
}
