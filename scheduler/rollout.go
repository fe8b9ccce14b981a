package scheduler

// The deployment rollout planner: a pure function from a Deployment and the
// pods it owns to the next step (pods to create, pods to delete, the status
// to record). It follows Kubernetes' deployment controller, simplified to
// pods without ReplicaSets: a pod belongs to the current revision when its
// pod-template-hash label equals the hash of spec.template.

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/api"
)

// LabelPodTemplateHash is the label carrying the hash of the pod template a
// pod was made from (Kubernetes' name).
const LabelPodTemplateHash = "pod-template-hash"

// AnnotationRevision is Kubernetes' deployment.kubernetes.io/revision.
const AnnotationRevision = "deployment.kubernetes.io/revision"

// Condition types, statuses and reasons, in Kubernetes' words.
const (
	rolloutCondAvailable   = "Available"
	rolloutCondProgressing = "Progressing"

	rolloutTrue    = "True"
	rolloutFalse   = "False"
	rolloutUnknown = "Unknown"

	rolloutReasonMinAvailable      = "MinimumReplicasAvailable"
	rolloutReasonMinUnavailable    = "MinimumReplicasUnavailable"
	rolloutReasonNewRSAvailable    = "NewReplicaSetAvailable"
	rolloutReasonRSUpdated         = "ReplicaSetUpdated"
	rolloutReasonDeadlineExceeded  = "ProgressDeadlineExceeded"
	rolloutReasonDeploymentPaused  = "DeploymentPaused"
	rolloutReasonDeploymentResumed = "DeploymentResumed"
)

// rolloutHashAlphabet is Kubernetes' "safe" alphabet for generated names:
// lowercase consonants and digits that cannot spell words.
const rolloutHashAlphabet = "bcdfghjklmnpqrstvwxz2456789"

const rolloutHashLen = 10

// TemplateHash returns a short stable hash (10 lowercase alphanumeric
// characters, DNS-label safe) of a pod template: equal templates give equal
// hashes. The pod-template-hash label itself, if present in the template's
// labels, is ignored. The template is marshalled deterministically and
// hashed with FNV-64a; since proto3 omits zero values, adding a field to the
// schema does not change the hash of templates that leave it unset.
func TemplateHash(t *api.PodTemplateSpec) string {
	c := &api.PodTemplateSpec{}
	if t != nil {
		c = proto.Clone(t).(*api.PodTemplateSpec)
	}
	if c.Metadata != nil {
		delete(c.Metadata.Labels, LabelPodTemplateHash)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		// Only invalid UTF-8 in a string field makes marshalling fail, and
		// the API never stores such a template; the text form is still
		// stable within one binary.
		b = []byte(fmt.Sprint(c))
	}
	h := fnv.New64a()
	h.Write(b)
	v := h.Sum64()
	out := make([]byte, rolloutHashLen)
	for i := range out {
		out[i] = rolloutHashAlphabet[v%uint64(len(rolloutHashAlphabet))]
		v /= uint64(len(rolloutHashAlphabet))
	}
	return string(out)
}

// RolloutPlan is what the deployment controller does next for one
// Deployment.
type RolloutPlan struct {
	Hash     string                // the current template's hash
	Create   int                   // how many pods of the current template to create now
	Delete   []*api.Pod            // pods to delete now (old template first, unavailable first, then newest)
	Status   *api.DeploymentStatus // the status to record
	Complete bool                  // every replica is of the current template and available, none extra
}

// PlanRollout plans one step for d given the pods it owns (the caller passes
// the pods whose controller owner reference names d's uid). Pods with a
// deletionTimestamp are terminating: never available, never deleted again,
// and only counted against maxSurge. Pods in phase Failed or Succeeded are
// dead: always deleted (and so replaced), and counted nowhere else. now is
// the current time; the function reads no other clock. It is
// level-triggered: called again after every change, it returns the next
// step.
//
// Strategies follow Kubernetes: RollingUpdate (the default) creates pods of
// the current template up to replicas+maxSurge pods in all and deletes old
// pods while at least replicas-maxUnavailable pods stay available, unhealthy
// old pods first; Recreate deletes every old pod and creates the new ones
// once no old pod is left, terminating ones included.
//
// spec.paused: while any pod of another template is left (active or
// terminating), a paused deployment is not touched at all: no creates, no
// deletes, not even of failed pods, and a change of replicas waits for the
// resume (Kubernetes would scale the old and new ReplicaSets
// proportionally; there are no ReplicaSets here to scale). When every pod
// is of the current template, a paused deployment is still scaled to
// replicas and its failed pods replaced, as in Kubernetes, since that
// makes no rollout progress.
//
// The status describes the pods as passed in (before this step's changes),
// as Kubernetes' does. Its Progressing condition is True/ReplicaSetUpdated
// with lastUpdateTime = now whenever the step makes progress (creates pods
// other than replacements of failed ones, deletes live pods, or the counts
// of updated, ready or available pods grew or of old pods shrank against
// d.status), True/NewReplicaSetAvailable once complete,
// False/ProgressDeadlineExceeded when spec.progressDeadlineSeconds (default
// 600; 2147483647 means none) passed since its lastUpdateTime without
// progress, and Unknown/DeploymentPaused while paused. Once a rollout
// completed, the deadline is not checked again until there is progress, so
// a pod turning unready later does not fail the deployment.
func PlanRollout(d *api.Deployment, pods []*api.Pod, now time.Time) RolloutPlan {
	spec := d.GetSpec()
	hash := TemplateHash(spec.GetTemplate())
	replicas := rolloutReplicas(spec)
	recreate := spec.GetStrategy().GetType() == "Recreate"
	surge, maxUnavailable := 0, 0
	if !recreate {
		surge, maxUnavailable = rolloutFenceposts(spec, replicas)
	}
	minAvailable := replicas - maxUnavailable
	minReady := time.Duration(max(spec.GetMinReadySeconds(), 0)) * time.Second

	var (
		newActive, oldActive, dead []*rolloutPod
		terminatingLive            int // terminating pods that are not dead
		oldTerminatingLive         int
		deadNew                    int
		ready, available           int
	)
	for _, p := range pods {
		if p == nil {
			continue
		}
		rp := classifyRolloutPod(p, hash, minReady, now)
		switch {
		case rp.dead:
			if !rp.terminating {
				dead = append(dead, rp)
				if rp.current {
					deadNew++
				}
			}
		case rp.terminating:
			terminatingLive++
			if !rp.current {
				oldTerminatingLive++
			}
		default:
			if rp.current {
				newActive = append(newActive, rp)
			} else {
				oldActive = append(oldActive, rp)
			}
			if rp.ready {
				ready++
			}
			if rp.available {
				available++
			}
		}
	}
	availableNew := 0
	for _, p := range newActive {
		if p.available {
			availableNew++
		}
	}

	// The step.
	var del []*rolloutPod
	create := 0
	oldLeft := len(oldActive) + oldTerminatingLive
	if !spec.GetPaused() || oldLeft == 0 {
		del = append(del, dead...)
		keep := newActive
		if len(keep) > replicas {
			sorted := rolloutSortForDeletion(keep)
			del = append(del, sorted[:len(sorted)-replicas]...)
			keep = sorted[len(sorted)-replicas:]
		}
		keepAvailable := 0
		for _, p := range keep {
			if p.available {
				keepAvailable++
			}
		}
		if recreate {
			del = append(del, oldActive...)
			if oldLeft == 0 {
				create = replicas - len(keep)
			}
		} else {
			// Scale up: pods of every template, terminating ones
			// included, stay within replicas + maxSurge.
			total := len(keep) + len(oldActive) + terminatingLive
			create = max(0, min(replicas+surge-total, replicas-len(keep)))
			if len(oldActive) > 0 {
				// Scale down old pods (Kubernetes' reconcileOldReplicaSets,
				// with the pods just created counted as new unavailable).
				totalActive := len(keep) + len(oldActive) + create
				newUnavailable := len(keep) - keepAvailable + create
				budget := totalActive - minAvailable - newUnavailable
				sorted := rolloutSortForDeletion(oldActive)
				availableOld := 0
				for _, p := range sorted {
					if p.available {
						availableOld++
					} else if budget > 0 {
						del = append(del, p) // unhealthy first
						budget--
					}
				}
				drop := min(budget, keepAvailable+availableOld-minAvailable)
				for _, p := range sorted {
					if drop <= 0 {
						break
					}
					if p.available {
						del = append(del, p)
						drop--
					}
				}
			}
		}
	}
	slices.SortStableFunc(del, rolloutDeleteOrder)

	complete := len(oldActive) == 0 && len(dead) == 0 && len(newActive) == replicas && availableNew == replicas

	// The status.
	prev := d.GetStatus()
	active := len(newActive) + len(oldActive)
	status := &api.DeploymentStatus{
		ObservedGeneration:  d.GetMetadata().GetGeneration(),
		Replicas:            int32(active),
		UpdatedReplicas:     int32(len(newActive)),
		ReadyReplicas:       int32(ready),
		AvailableReplicas:   int32(available),
		UnavailableReplicas: int32(max(0, replicas-available)),
	}
	progress := create > deadNew || len(del) > len(dead) ||
		status.UpdatedReplicas > prev.GetUpdatedReplicas() ||
		status.ReadyReplicas > prev.GetReadyReplicas() ||
		status.AvailableReplicas > prev.GetAvailableReplicas() ||
		status.Replicas-status.UpdatedReplicas < prev.GetReplicas()-prev.GetUpdatedReplicas()

	stamp := now.UTC().Format(time.RFC3339)
	name := d.GetMetadata().GetName()
	var availableCond *api.DeploymentCondition
	prevAvailable := rolloutFindCondition(prev, rolloutCondAvailable)
	if available >= minAvailable {
		availableCond = rolloutCondition(prevAvailable, rolloutCondAvailable, rolloutTrue, rolloutReasonMinAvailable,
			"Deployment has minimum availability.", stamp, false)
	} else {
		availableCond = rolloutCondition(prevAvailable, rolloutCondAvailable, rolloutFalse, rolloutReasonMinUnavailable,
			"Deployment does not have minimum availability.", stamp, false)
	}
	prevProgressing := rolloutFindCondition(prev, rolloutCondProgressing)
	progressing := func(status, reason, format string, touch bool) *api.DeploymentCondition {
		return rolloutCondition(prevProgressing, rolloutCondProgressing, status, reason, fmt.Sprintf(format, name), stamp, touch)
	}
	var progressingCond *api.DeploymentCondition
	deadline, hasDeadline := rolloutProgressDeadline(spec)
	switch {
	case spec.GetPaused():
		if prevProgressing.GetReason() == rolloutReasonDeadlineExceeded {
			progressingCond = proto.Clone(prevProgressing).(*api.DeploymentCondition)
		} else {
			progressingCond = progressing(rolloutUnknown, rolloutReasonDeploymentPaused, "deployment %q is paused", false)
		}
	case complete:
		progressingCond = progressing(rolloutTrue, rolloutReasonNewRSAvailable, "deployment %q has successfully progressed", false)
	case progress, prevProgressing == nil,
		prevProgressing.GetReason() == rolloutReasonNewRSAvailable && len(oldActive) > 0:
		// Progress, or the first look at this rollout: (re)start the clock.
		progressingCond = progressing(rolloutTrue, rolloutReasonRSUpdated, "deployment %q is progressing", true)
	case prevProgressing.GetReason() == rolloutReasonDeploymentPaused:
		progressingCond = progressing(rolloutUnknown, rolloutReasonDeploymentResumed, "deployment %q is resumed", true)
	case prevProgressing.GetReason() == rolloutReasonNewRSAvailable,
		prevProgressing.GetReason() == rolloutReasonDeadlineExceeded, !hasDeadline:
		progressingCond = proto.Clone(prevProgressing).(*api.DeploymentCondition)
	default:
		last, err := time.Parse(time.RFC3339, prevProgressing.GetLastUpdateTime())
		switch {
		case err != nil: // no usable time: start the clock now
			progressingCond = progressing(rolloutTrue, rolloutReasonRSUpdated, "deployment %q is progressing", true)
		case now.Sub(last) > deadline:
			progressingCond = progressing(rolloutFalse, rolloutReasonDeadlineExceeded, "deployment %q exceeded its progress deadline", true)
		default:
			progressingCond = proto.Clone(prevProgressing).(*api.DeploymentCondition)
		}
	}
	status.Conditions = []*api.DeploymentCondition{availableCond, progressingCond}

	plan := RolloutPlan{Hash: hash, Create: create, Status: status, Complete: complete}
	for _, p := range del {
		plan.Delete = append(plan.Delete, p.pod)
	}
	return plan
}

// rolloutPod is one pod as the planner sees it.
type rolloutPod struct {
	pod         *api.Pod
	current     bool // made from the current template
	terminating bool // has a deletionTimestamp
	dead        bool // phase Failed or Succeeded
	scheduled   bool
	ready       bool
	available   bool
	created     time.Time
}

func classifyRolloutPod(p *api.Pod, hash string, minReady time.Duration, now time.Time) *rolloutPod {
	meta := p.GetMetadata()
	rp := &rolloutPod{
		pod:         p,
		current:     meta.GetLabels()[LabelPodTemplateHash] == hash,
		terminating: meta.GetDeletionTimestamp() != "",
		scheduled:   p.GetSpec().GetNodeName() != "",
	}
	switch p.GetStatus().GetPhase() {
	case "Failed", "Succeeded":
		rp.dead = true
	}
	rp.created, _ = time.Parse(time.RFC3339, meta.GetCreationTimestamp())
	if rp.dead || rp.terminating {
		return rp
	}
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() != "Ready" || c.GetStatus() != rolloutTrue {
			continue
		}
		rp.ready = true
		if minReady == 0 {
			rp.available = true
		} else if since, err := time.Parse(time.RFC3339, c.GetLastTransitionTime()); err == nil {
			rp.available = !now.Before(since.Add(minReady))
		}
		break
	}
	return rp
}

// rank orders pods for deletion, the least useful first (Kubernetes'
// ActivePods order, shortened): dead, unscheduled, not ready, ready but not
// yet available, available.
func (p *rolloutPod) rank() int {
	switch {
	case p.dead:
		return 0
	case !p.scheduled && !p.ready:
		return 1
	case !p.ready:
		return 2
	case !p.available:
		return 3
	}
	return 4
}

// rolloutDeleteOrder: old template first, then by rank, then newest first,
// then by name so that the order is stable.
func rolloutDeleteOrder(a, b *rolloutPod) int {
	if a.current != b.current {
		if !a.current {
			return -1
		}
		return 1
	}
	if ra, rb := a.rank(), b.rank(); ra != rb {
		return ra - rb
	}
	if c := b.created.Compare(a.created); c != 0 {
		return c
	}
	return strings.Compare(a.pod.GetMetadata().GetName(), b.pod.GetMetadata().GetName())
}

func rolloutSortForDeletion(pods []*rolloutPod) []*rolloutPod {
	sorted := slices.Clone(pods)
	slices.SortStableFunc(sorted, rolloutDeleteOrder)
	return sorted
}

// rolloutReplicas is spec.replicas, 1 when unset, never negative.
func rolloutReplicas(spec *api.DeploymentSpec) int {
	if spec == nil || spec.Replicas == nil {
		return api.DefaultReplicas
	}
	return max(int(spec.GetReplicas()), 0)
}

// rolloutProgressDeadline is spec.progressDeadlineSeconds (600 s when unset
// or not positive); false when it is math.MaxInt32, Kubernetes' "no
// deadline".
func rolloutProgressDeadline(spec *api.DeploymentSpec) (time.Duration, bool) {
	s := int32(api.DefaultProgressDeadlineSeconds)
	if spec.GetProgressDeadlineSeconds() > 0 {
		s = spec.GetProgressDeadlineSeconds()
	}
	if s == math.MaxInt32 {
		return 0, false
	}
	return time.Duration(s) * time.Second, true
}

// rolloutFenceposts resolves maxSurge and maxUnavailable against replicas
// (Kubernetes' ResolveFenceposts and MaxUnavailable): surge rounds up,
// unavailable rounds down, both zero makes unavailable 1, and unavailable is
// at most replicas. A missing or malformed value counts as the default, 25%.
func rolloutFenceposts(spec *api.DeploymentSpec, replicas int) (surge, unavailable int) {
	ru := spec.GetStrategy().GetRollingUpdate()
	surge = rolloutScaled(ru.GetMaxSurge(), replicas, true)
	unavailable = rolloutScaled(ru.GetMaxUnavailable(), replicas, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, min(unavailable, replicas)
}

// rolloutScaled is an int-or-percent value resolved against total. For
// maxUnavailable (roundUp false) a percentage above 100 is malformed, as
// validation says.
func rolloutScaled(v *structpb.Value, total int, roundUp bool) int {
	n, percent, ok := rolloutIntOrPercent(v, !roundUp)
	if !ok {
		n, percent = 25, true
	}
	if !percent {
		return int(n)
	}
	scaled := n * int64(total)
	if roundUp {
		return int((scaled + 99) / 100)
	}
	return int(scaled / 100)
}

// rolloutIntOrPercent parses a non-negative integer (a whole JSON number up
// to 2^31-1) or a percentage "25%"; ok is false when v is missing or
// malformed.
func rolloutIntOrPercent(v *structpb.Value, atMost100 bool) (n int64, percent, ok bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		f := k.NumberValue
		if f != math.Trunc(f) || f < 0 || f > math.MaxInt32 { // NaN fails the first test
			return 0, false, false
		}
		return int64(f), false, true
	case *structpb.Value_StringValue:
		digits, found := strings.CutSuffix(k.StringValue, "%")
		if !found || digits == "" || strings.Trim(digits, "0123456789") != "" {
			return 0, false, false
		}
		p, err := strconv.ParseInt(digits, 10, 32)
		if err != nil || (atMost100 && p > 100) {
			return 0, false, false
		}
		return p, true, true
	}
	return 0, false, false
}

func rolloutFindCondition(s *api.DeploymentStatus, typ string) *api.DeploymentCondition {
	for _, c := range s.GetConditions() {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}

// rolloutCondition is the condition to record given the previous one of
// that type. As Kubernetes' SetDeploymentCondition: the same status and
// reason keep the previous condition unchanged, unless touch asks to move
// lastUpdateTime to now; the same status keeps lastTransitionTime.
func rolloutCondition(prev *api.DeploymentCondition, typ, status, reason, message, now string, touch bool) *api.DeploymentCondition {
	if prev != nil && prev.GetStatus() == status && prev.GetReason() == reason && !touch {
		return proto.Clone(prev).(*api.DeploymentCondition)
	}
	c := &api.DeploymentCondition{Type: typ, Status: status, Reason: reason, Message: message,
		LastUpdateTime: now, LastTransitionTime: now}
	if prev != nil && prev.GetStatus() == status && prev.GetLastTransitionTime() != "" {
		c.LastTransitionTime = prev.GetLastTransitionTime()
	}
	return c
}
