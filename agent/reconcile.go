package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/agent/runtime"
	"github.com/shoalproj/shoal/api"
)

// Labels the agent puts on every container it creates, besides the pod UID
// and container name the runtime records (runtime.LabelPodUID,
// runtime.LabelContainerName), so that an agent that restarts finds what
// runs and adopts it instead of starting it twice.
const (
	// LabelSpecHash identifies the container's spec (containerHash).
	LabelSpecHash = "shoal.spec-hash"
	// LabelRestart numbers the instances of one container: 0 for the first,
	// one more for each restart, so restart counts survive agent restarts.
	LabelRestart = "shoal.restart"
	// LabelGrace is the pod's termination grace period in seconds, for
	// stopping containers of a pod deleted while the agent was down.
	LabelGrace = "shoal.grace-seconds"
)

// containerHash identifies a container's spec: a change means replacing the
// container.
func containerHash(c *api.Container) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// observedContainer is one container instance as the runtime reports it.
type observedContainer struct {
	ID         string
	PodUID     string
	Name       string
	Hash       string
	Restart    int // LabelRestart
	Running    bool
	Exited     bool
	ExitCode   int32
	OOMKilled  bool
	ImageID    string
	StartedAt  time.Time
	FinishedAt time.Time
}

// observedFromLabels reads an instance's identity from its labels; ok is
// false for containers shoal did not create.
func observedFromLabels(id string, labels map[string]string) (observedContainer, bool) {
	o := observedContainer{ID: id, PodUID: labels[runtime.LabelPodUID], Name: labels[runtime.LabelContainerName], Hash: labels[LabelSpecHash]}
	if o.PodUID == "" || o.Name == "" {
		return o, false
	}
	o.Restart, _ = strconv.Atoi(labels[LabelRestart])
	return o, true
}

// Back-off between restarts of a crashing container, as Kubernetes does it:
// 10 s doubling to 5 min, reset once a container ran 10 min.
const (
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
	backoffReset = 10 * time.Minute
)

// restartDelay is how long after an instance exited the next may start.
func restartDelay(restarts int) time.Duration {
	d := backoffBase
	for i := 1; i < restarts && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// shouldRestart applies a pod's restartPolicy to an exited instance.
func shouldRestart(policy string, exitCode int32) bool {
	switch policy {
	case "Never":
		return false
	case "OnFailure":
		return exitCode != 0
	default: // Always
		return true
	}
}

// Action is one step the agent takes to bring its node to the desired
// state.
type Action struct {
	Kind      string // start, stop, remove
	PodUID    string
	Container string
	ID        string // stop, remove: the instance
	Restart   int    // start: the new instance's number
	Reason    string
}

// containerPlan is what reconcile decides for one desired container.
type containerPlan struct {
	// Latest is the newest instance of the current spec, if any.
	Latest *observedContainer
	// BackoffUntil is set while a crashed container waits to restart.
	BackoffUntil time.Time
}

// planPod compares one desired pod with the instances of its containers and
// returns the actions to take now, and per container what it decided (for
// status). Pure: the caller does the I/O.
func planPod(pod *api.Pod, instances []observedContainer, now time.Time) ([]Action, map[string]containerPlan) {
	uid := pod.GetMetadata().GetUid()
	byName := map[string][]observedContainer{}
	for _, o := range instances {
		byName[o.Name] = append(byName[o.Name], o)
	}
	var actions []Action
	plans := map[string]containerPlan{}
	desired := map[string]bool{}
	for _, c := range pod.GetSpec().GetContainers() {
		desired[c.Name] = true
		hash := containerHash(c)
		insts := byName[c.Name]
		sort.Slice(insts, func(i, j int) bool { return insts[i].Restart < insts[j].Restart })
		var latest *observedContainer
		next := 0
		for i := range insts {
			o := &insts[i]
			next = max(next, o.Restart+1)
			if o.Hash != hash {
				// An instance of an older spec: it goes.
				if o.Running {
					actions = append(actions, Action{Kind: "stop", PodUID: uid, Container: c.Name, ID: o.ID, Reason: "spec changed"})
				} else {
					actions = append(actions, Action{Kind: "remove", PodUID: uid, Container: c.Name, ID: o.ID, Reason: "spec changed"})
				}
				continue
			}
			latest = o
		}
		// Besides the latest, keep the newest exited instance of the current
		// spec (for logs --previous); older ones go.
		keptPrevious := false
		for i := len(insts) - 1; i >= 0; i-- {
			o := &insts[i]
			if o.Hash != hash || o == latest {
				continue
			}
			switch {
			case o.Running:
				actions = append(actions, Action{Kind: "stop", PodUID: uid, Container: c.Name, ID: o.ID, Reason: "duplicate"})
			case !keptPrevious:
				keptPrevious = true
			default:
				actions = append(actions, Action{Kind: "remove", PodUID: uid, Container: c.Name, ID: o.ID, Reason: "superseded"})
			}
		}
		plan := containerPlan{Latest: latest}
		switch {
		case latest == nil:
			actions = append(actions, Action{Kind: "start", PodUID: uid, Container: c.Name, Restart: next, Reason: "missing"})
		case latest.Running:
		case latest.Exited && shouldRestart(pod.GetSpec().GetRestartPolicy(), latest.ExitCode):
			restarts := latest.Restart + 1
			if latest.FinishedAt.Sub(latest.StartedAt) >= backoffReset {
				restarts = 1
			}
			until := latest.FinishedAt.Add(restartDelay(restarts))
			if now.Before(until) {
				plan.BackoffUntil = until
			} else {
				actions = append(actions, Action{Kind: "start", PodUID: uid, Container: c.Name, Restart: next, Reason: "restart"})
			}
		case !latest.Exited:
			// Created and not started (an agent that died in between).
			actions = append(actions, Action{Kind: "remove", PodUID: uid, Container: c.Name, ID: latest.ID, Reason: "never started"})
			plan.Latest = nil
			actions = append(actions, Action{Kind: "start", PodUID: uid, Container: c.Name, Restart: next, Reason: "missing"})
		}
		plans[c.Name] = plan
	}
	// Containers the spec no longer names.
	for name, insts := range byName {
		if desired[name] {
			continue
		}
		for _, o := range insts {
			kind := "remove"
			if o.Running {
				kind = "stop"
			}
			actions = append(actions, Action{Kind: kind, PodUID: uid, Container: name, ID: o.ID, Reason: "not in spec"})
		}
	}
	return actions, plans
}
