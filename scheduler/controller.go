package scheduler

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
)

// Config tunes the leader's controllers.
type Config struct {
	// Strategy places pods: Spread (default) or Binpack. StrategyOf, when
	// set, is asked each round instead (the cluster's setting).
	Strategy   Strategy
	StrategyOf func() Strategy
	// NodeLostGrace is how long a node stays NotReady before the pods that
	// controllers own are replaced on other nodes (default 5 s).
	NodeLostGrace time.Duration
	// Resync bounds the time between two rounds when nothing changes, for
	// what depends on time alone (minReadySeconds, deadlines, the grace).
	Resync time.Duration
	// Metrics, when set, counts rounds and writes (see NewMetrics).
	Metrics *Metrics
}

func (c *Config) defaults() {
	if c.Strategy == "" {
		c.Strategy = Spread
	}
	if c.NodeLostGrace == 0 {
		c.NodeLostGrace = 5 * time.Second
	}
	if c.Resync == 0 {
		c.Resync = time.Second
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

// Labels and annotations the controllers put on what they make.
const (
	// LabelManagedBy marks an Endpoints object the endpoints controller
	// made, so that it is removed with its Service.
	LabelManagedBy    = "endpoints.shoal.dev/managed-by"
	managedByEndpoint = "endpoints-controller"
	// AnnotationDrain on a cordoned Node asks for its pods to move: `shoal
	// node drain` sets it, uncordon removes it.
	AnnotationDrain = "node.shoal.dev/drain"
	// drainingHash stands for the template hash of a pod on a draining
	// node: the rollout planner replaces it as if it were of an old
	// template, within maxSurge and maxUnavailable.
	drainingHash = "draining"
)

// Run runs the leader's controllers until ctx ends (the node stops
// leading): each round reads the whole state at one index, plans the
// scheduler, node lifecycle, deployments and endpoints over it, and
// writes what they decided; a round starts when the store changes, or
// after cfg.Resync.
func Run(ctx context.Context, st Store, cfg Config, log *slog.Logger) {
	cfg.defaults()
	r := &rounds{st: st, cfg: cfg, log: log, notReadySince: map[string]time.Time{}}
	var index uint64
	for {
		changed := st.Changed(index)
		idx, err := r.round(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("controllers: round failed", "err", err)
		}
		index = idx
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(cfg.Resync):
		}
	}
}

// rounds is the controllers' memory between rounds: only what is not in
// the store.
type rounds struct {
	st  Store
	cfg Config
	log *slog.Logger
	// notReadySince is when this leader first saw each node NotReady, for
	// nodes whose condition carries no usable transition time.
	notReadySince map[string]time.Time
	// placeStart is where the next sampled placement starts looking.
	placeStart int
}

// view is the state one round works on.
type view struct {
	nodes       []*api.Node
	pods        []*api.Pod
	deployments []*api.Deployment
	services    []*api.Service
	endpoints   []*api.Endpoints
	revisions   []*api.ControllerRevision
	events      []*api.Event

	deploymentsByUID map[string]*api.Deployment // built on first use
}

func (r *rounds) read() (*view, uint64) {
	v := &view{}
	objs, idx := r.st.List("Node", "Pod", "Deployment", "Service", "Endpoints", "ControllerRevision", "Event")
	for _, o := range objs {
		switch o := o.(type) {
		case *api.Node:
			v.nodes = append(v.nodes, o)
		case *api.Pod:
			v.pods = append(v.pods, o)
		case *api.Deployment:
			v.deployments = append(v.deployments, o)
		case *api.Service:
			v.services = append(v.services, o)
		case *api.Endpoints:
			v.endpoints = append(v.endpoints, o)
		case *api.ControllerRevision:
			v.revisions = append(v.revisions, o)
		case *api.Event:
			v.events = append(v.events, o)
		}
	}
	return v, idx
}

func (r *rounds) round(ctx context.Context) (uint64, error) {
	start := time.Now()
	m := r.cfg.Metrics
	defer func() {
		m.rounds.Inc()
		m.roundSeconds.Observe(time.Since(start).Seconds())
	}()
	v, idx := r.read()
	now := time.Now()
	rec := &recorder{}
	var ops []Op
	lost := r.planNodeLifecycle(v, now, rec)
	m.nodesLost.Add(float64(len(lost)))
	ops = append(ops, lost...)
	// Pods deleted this round are out of what the others see.
	gone := map[string]bool{}
	for _, op := range ops {
		if op.Delete != nil && op.Delete.Kind == "Pod" {
			gone[op.Delete.Namespace+"/"+op.Delete.Name] = true
		}
	}
	if len(gone) > 0 {
		kept := v.pods[:0:0]
		for _, p := range v.pods {
			if !gone[api.KeyOf(p)] {
				kept = append(kept, p)
			}
		}
		v.pods = kept
	}
	ops = append(ops, planDeployments(v, now, rec)...)
	strategy := r.cfg.Strategy
	if r.cfg.StrategyOf != nil {
		if s := r.cfg.StrategyOf(); s != "" {
			strategy = s
		}
	}
	bindings := planBindings(v, strategy, rec, &r.placeStart)
	ops = append(ops, bindings...)
	pending, unschedulable := 0, 0
	for _, p := range v.pods {
		if p.GetSpec().GetNodeName() == "" {
			pending++
			if c := podCondition(p, "PodScheduled"); c != nil && c.Status == "False" {
				unschedulable++
			}
		}
	}
	m.pending.Set(float64(pending))
	m.unschedulable.Set(float64(unschedulable))
	ops = append(ops, planEndpoints(v)...)
	ops = append(ops, planEvents(v.events, rec.events, now)...)
	if len(ops) == 0 {
		return idx, nil
	}
	errs, err := r.st.Write(ctx, ops)
	if err != nil {
		return idx, err
	}
	for i, e := range errs {
		outcome := "applied"
		if e != nil {
			// A conflict or a vanished object: the next round sees why.
			r.log.Debug("controllers: write not applied", "why", ops[i].Why, "err", e)
			outcome = "refused"
		}
		m.writes.WithLabelValues(opKind(ops[i]), outcome).Inc()
	}
	return idx, nil
}

// ---------------------------------------------------------------- node lifecycle

// nodeReadiness maps node names to Ready.
func nodeReadiness(nodes []*api.Node) map[string]bool {
	out := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		out[n.GetMetadata().GetName()] = isNodeReady(n)
	}
	return out
}

func isNodeReady(n *api.Node) bool {
	for _, c := range n.GetStatus().GetConditions() {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// planNodeLifecycle deletes the controller-owned pods of nodes NotReady
// for longer than the grace, so that their controllers replace them on
// other nodes; when such a node returns, its agent finds them gone and
// stops them. Bare pods stay bound to their node: nothing would recreate
// them, and they run again when it returns.
func (r *rounds) planNodeLifecycle(v *view, now time.Time, rec *recorder) []Op {
	lost := map[string]time.Duration{}
	nodes := map[string]*api.Node{}
	for _, n := range v.nodes {
		name := n.GetMetadata().GetName()
		nodes[name] = n
		if isNodeReady(n) {
			delete(r.notReadySince, name)
			continue
		}
		since, ok := r.notReadySince[name]
		if !ok {
			since = now
			r.notReadySince[name] = now
			rec.record(n, "Warning", "NodeNotReady", "node "+name+" is not ready: "+readyMessage(n))
		}
		if t, ok := readyTransition(n); ok && t.Before(since) {
			since = t
		}
		if d := now.Sub(since); d >= r.cfg.NodeLostGrace {
			lost[name] = d
		}
	}
	if len(lost) == 0 {
		return nil
	}
	var ops []Op
	replaced := map[string][]string{}
	for _, p := range v.pods {
		node := p.GetSpec().GetNodeName()
		// A controller's pods are replaced elsewhere; a pod that was
		// already terminating will never be stopped by its node: removed.
		terminating := p.GetMetadata().GetDeletionTimestamp() != ""
		if _, ok := lost[node]; !ok || (ownerOf(p) == "" && !terminating) {
			continue
		}
		ops = append(ops, deletePod(p, false, fmt.Sprintf("node %s lost: replace pod %s", node, api.KeyOf(p))))
		replaced[node] = append(replaced[node], p.GetMetadata().GetName())
	}
	for node, names := range replaced {
		sort.Strings(names)
		rec.record(nodes[node], "Warning", "NodeLost", fmt.Sprintf("node %s not ready for %v: deleted %d pods for their controllers to replace elsewhere: %s",
			node, lost[node].Round(time.Second), len(names), strings.Join(names, ", ")))
	}
	return ops
}

// readyMessage is the message of a node's Ready condition.
func readyMessage(n *api.Node) string {
	for _, c := range n.GetStatus().GetConditions() {
		if c.Type == "Ready" {
			return c.Message
		}
	}
	return "no Ready condition"
}

func readyTransition(n *api.Node) (time.Time, bool) {
	for _, c := range n.GetStatus().GetConditions() {
		if c.Type == "Ready" && c.LastTransitionTime != "" {
			t, err := time.Parse(time.RFC3339, c.LastTransitionTime)
			return t, err == nil
		}
	}
	return time.Time{}, false
}

// deletePod deletes p: gracefully (it turns Terminating, leaves its
// Services' endpoints, and its node stops it and removes it) or, for a
// pod whose node is gone, at once.
func deletePod(p *api.Pod, graceful bool, why string) Op {
	m := p.GetMetadata()
	return Op{Delete: &ObjectKey{Kind: "Pod", Namespace: m.GetNamespace(), Name: m.GetName()},
		ResourceVersion: m.GetResourceVersion(), Graceful: graceful, Why: why}
}

// ---------------------------------------------------------------- deployments

// controllerUID is the uid of the Deployment that controls m, or "".
func controllerUID(m *api.ObjectMeta) string {
	for _, o := range m.GetOwnerReferences() {
		if o.Controller && o.Kind == "Deployment" {
			return o.Uid
		}
	}
	return ""
}

// planDeployments runs one rollout step per Deployment, keeps its revision
// history, and removes the pods and revisions whose Deployment is gone.
func planDeployments(v *view, now time.Time, rec *recorder) []Op {
	byUID := map[string][]*api.Pod{}
	for _, p := range v.pods {
		if uid := controllerUID(p.GetMetadata()); uid != "" {
			byUID[uid] = append(byUID[uid], p)
		}
	}
	revsByUID := map[string][]*api.ControllerRevision{}
	for _, r := range v.revisions {
		if uid := controllerUID(r.GetMetadata()); uid != "" {
			revsByUID[uid] = append(revsByUID[uid], r)
		}
	}
	draining := map[string]bool{}
	for _, n := range v.nodes {
		if n.GetSpec().GetUnschedulable() && n.GetMetadata().GetAnnotations()[AnnotationDrain] == "true" {
			draining[n.GetMetadata().GetName()] = true
		}
	}
	var ops []Op
	live := map[string]bool{}
	creates := 0
	for _, d := range v.deployments {
		uid := d.GetMetadata().GetUid()
		live[uid] = true
		plan := PlanRollout(d, asDrained(byUID[uid], draining), now)
		key := api.KeyOf(d)
		hashes := map[string]int{}
		for _, p := range byUID[uid] {
			hashes[p.GetMetadata().GetLabels()[LabelPodTemplateHash]]++
		}
		ops = append(ops, planRevisions(d, plan.Hash, revsByUID[uid], hashes)...)
		// The rest of a large scale-up comes in the next rounds.
		plan.Create = min(plan.Create, max(maxCreatesPerRound-creates, 0))
		creates += plan.Create
		for range plan.Create {
			ops = append(ops, Op{Put: newPodFor(d, plan.Hash), Create: true, Why: "deployment " + key + ": create pod"})
		}
		if plan.Create > 0 {
			rec.record(d, "Normal", "SuccessfulCreate", fmt.Sprintf("created %d pods of template %s", plan.Create, plan.Hash))
		}
		var deleted []string
		for _, p := range plan.Delete {
			ops = append(ops, deletePod(p, true, "deployment "+key+": delete pod "+p.GetMetadata().GetName()))
			deleted = append(deleted, p.GetMetadata().GetName())
		}
		if len(deleted) > 0 {
			rec.record(d, "Normal", "SuccessfulDelete", fmt.Sprintf("deleted %d pods: %s", len(deleted), strings.Join(deleted, ", ")))
		}
		if was, now := progressReason(d.GetStatus()), progressReason(plan.Status); was != now {
			switch now {
			case "ProgressDeadlineExceeded":
				rec.record(d, "Warning", now, fmt.Sprintf("rollout of template %s made no progress within its deadline", plan.Hash))
			case "NewReplicaSetAvailable":
				rec.record(d, "Normal", "RolloutComplete", fmt.Sprintf("template %s rolled out: %d replicas available", plan.Hash, plan.Status.GetAvailableReplicas()))
			}
		}
		if plan.Status != nil && !proto.Equal(plan.Status, d.GetStatus()) {
			next := proto.Clone(d).(*api.Deployment)
			next.Status = plan.Status
			ops = append(ops, Op{Put: next, StatusOnly: true, Why: "deployment " + key + ": status"})
		}
	}
	for uid, pods := range byUID {
		if live[uid] {
			continue
		}
		for _, p := range pods {
			if p.GetMetadata().GetDeletionTimestamp() != "" {
				continue // on its way out
			}
			ops = append(ops, deletePod(p, true, "owner deployment gone: delete pod "+api.KeyOf(p)))
		}
	}
	for uid, revs := range revsByUID {
		if live[uid] {
			continue
		}
		for _, r := range revs {
			m := r.GetMetadata()
			ops = append(ops, Op{Delete: &ObjectKey{Kind: "ControllerRevision", Namespace: m.GetNamespace(), Name: m.GetName()},
				ResourceVersion: m.GetResourceVersion(), Why: "owner deployment gone: delete revision " + api.KeyOf(r)})
		}
	}
	return ops
}

// progressReason is the reason of a Deployment status's Progressing
// condition.
func progressReason(st *api.DeploymentStatus) string {
	for _, c := range st.GetConditions() {
		if c.Type == "Progressing" {
			return c.Reason
		}
	}
	return ""
}

// asDrained returns pods with those on draining nodes relabelled as of no
// current template (copies; the others as they are).
func asDrained(pods []*api.Pod, draining map[string]bool) []*api.Pod {
	if len(draining) == 0 {
		return pods
	}
	out := make([]*api.Pod, len(pods))
	for i, p := range pods {
		out[i] = p
		if draining[p.GetSpec().GetNodeName()] {
			c := proto.Clone(p).(*api.Pod)
			c.Metadata.Labels[LabelPodTemplateHash] = drainingHash
			out[i] = c
		}
	}
	return out
}

// newPodFor makes a pod of d's template: named DEPLOYMENT-HASH-XXXXX like
// Kubernetes' pods, labelled with the template hash, owned by d.
func newPodFor(d *api.Deployment, hash string) *api.Pod {
	tpl := d.GetSpec().GetTemplate()
	m := d.GetMetadata()
	labels := map[string]string{}
	for k, val := range tpl.GetMetadata().GetLabels() {
		labels[k] = val
	}
	labels[LabelPodTemplateHash] = hash
	var annotations map[string]string
	if a := tpl.GetMetadata().GetAnnotations(); len(a) > 0 {
		annotations = map[string]string{}
		for k, val := range a {
			annotations[k] = val
		}
	}
	spec := proto.Clone(tpl.GetSpec()).(*api.PodSpec)
	return &api.Pod{
		Metadata: &api.ObjectMeta{
			Name:        fmt.Sprintf("%s-%s-%s", m.GetName(), hash, randomSuffix(5)),
			Namespace:   m.GetNamespace(),
			Labels:      labels,
			Annotations: annotations,
			OwnerReferences: []*api.OwnerReference{{
				ApiVersion: "apps/v1", Kind: "Deployment", Name: m.GetName(), Uid: m.GetUid(), Controller: true,
			}},
		},
		Spec: spec,
	}
}

// randomSuffix is n characters from Kubernetes' alphabet for generated
// names (no vowels, no look-alikes).
func randomSuffix(n int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// ---------------------------------------------------------------- binding

// planBindings places every pending pod, oldest first, over one snapshot
// of the nodes that is updated with each placement (the scheduler never
// re-reads a node per pod); an unplaceable pod gets a PodScheduled=False
// condition with the reasons, written only when they change.
// Bounds of one round's work: a round that planned 100,000 creates or
// bindings would write them all before the next round could start; capped,
// writing one batch overlaps planning the next, and every write finishes
// well within the store's write deadline.
const (
	maxCreatesPerRound  = 5000
	maxBindingsPerRound = 5000
)

func planBindings(v *view, strategy Strategy, rec *recorder, start *int) []Op {
	var pending []*api.Pod
	states := map[string]*NodeState{}
	var nodes []*NodeState
	for _, n := range v.nodes {
		s := &NodeState{Node: n}
		states[n.GetMetadata().GetName()] = s
		nodes = append(nodes, s)
	}
	for _, p := range v.pods {
		if p.GetMetadata().GetDeletionTimestamp() != "" {
			continue
		}
		if node := p.GetSpec().GetNodeName(); node != "" {
			if s := states[node]; s != nil {
				s.Pods = append(s.Pods, p)
			}
			continue
		}
		pending = append(pending, p)
	}
	// Oldest first; the keys are made once, not per comparison.
	keys := make(map[*api.Pod]string, len(pending))
	for _, p := range pending {
		keys[p] = p.GetMetadata().GetCreationTimestamp() + "\x00" + api.KeyOf(p)
	}
	sort.SliceStable(pending, func(i, j int) bool { return keys[pending[i]] < keys[pending[j]] })
	if len(pending) > maxBindingsPerRound {
		pending = pending[:maxBindingsPerRound]
	}
	var ops []Op
	placed := map[*api.Deployment]map[string]int{}
	for _, p := range pending {
		// start carries over between pods and rounds, so successive
		// pods sample different nodes.
		node, nextStart, err := PlaceSampled(p, nodes, strategy, *start)
		*start = nextStart
		if err != nil {
			cond := &api.PodCondition{Type: "PodScheduled", Status: "False", Reason: "Unschedulable", Message: err.Error()}
			if cur := podCondition(p, "PodScheduled"); cur != nil && cur.Status == cond.Status && cur.Message == cond.Message {
				continue
			}
			next := proto.Clone(p).(*api.Pod)
			if next.Status == nil {
				next.Status = &api.PodStatus{}
			}
			if next.Status.Phase == "" {
				next.Status.Phase = "Pending"
			}
			cond.LastTransitionTime = time.Now().UTC().Format(time.RFC3339)
			setPodCondition(next.Status, cond)
			ops = append(ops, Op{Put: next, StatusOnly: true, Why: "pod " + api.KeyOf(p) + ": unschedulable"})
			rec.record(p, "Warning", "FailedScheduling", cond.Message)
			continue
		}
		next := proto.Clone(p).(*api.Pod)
		next.Spec.NodeName = node
		ops = append(ops, Op{Put: next, ResourceVersion: p.GetMetadata().GetResourceVersion(),
			Why: "bind pod " + api.KeyOf(p) + " to " + node})
		states[node].Pods = append(states[node].Pods, next)
		owner := ownerDeployment(p, v)
		if owner == nil {
			rec.record(p, "Normal", "Scheduled", "assigned "+api.KeyOf(p)+" to "+node)
			continue
		}
		if placed[owner] == nil {
			placed[owner] = map[string]int{}
		}
		placed[owner][node]++
	}
	// One event per Deployment and round, not one per pod.
	for d, perNode := range placed {
		var parts []string
		total := 0
		for node, n := range perNode {
			parts = append(parts, fmt.Sprintf("%d on %s", n, node))
			total += n
		}
		sort.Strings(parts)
		rec.record(d, "Normal", "Scheduled", fmt.Sprintf("scheduled %d pods: %s", total, strings.Join(parts, ", ")))
	}
	return ops
}

// ownerDeployment finds the Deployment that controls p in the view.
func ownerDeployment(p *api.Pod, v *view) *api.Deployment {
	uid := controllerUID(p.GetMetadata())
	if uid == "" {
		return nil
	}
	if v.deploymentsByUID == nil {
		v.deploymentsByUID = make(map[string]*api.Deployment, len(v.deployments))
		for _, d := range v.deployments {
			v.deploymentsByUID[d.GetMetadata().GetUid()] = d
		}
	}
	return v.deploymentsByUID[uid]
}

func podCondition(p *api.Pod, typ string) *api.PodCondition {
	for _, c := range p.GetStatus().GetConditions() {
		if c.Type == typ {
			return c
		}
	}
	return nil
}

func setPodCondition(st *api.PodStatus, c *api.PodCondition) {
	for i, cur := range st.Conditions {
		if cur.Type == c.Type {
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// ---------------------------------------------------------------- endpoints

// planEndpoints keeps each selector Service's Endpoints equal to its ready
// pods, and removes the Endpoints the controller made for Services that
// are gone.
func planEndpoints(v *view) []Op {
	ready := nodeReadiness(v.nodes)
	nodeReady := func(n string) bool { return ready[n] }
	podsByNS := map[string][]*api.Pod{}
	for _, p := range v.pods {
		ns := p.GetMetadata().GetNamespace()
		podsByNS[ns] = append(podsByNS[ns], p)
	}
	existing := map[string]*api.Endpoints{}
	for _, e := range v.endpoints {
		existing[api.KeyOf(e)] = e
	}
	services := map[string]bool{}
	var ops []Op
	for _, s := range v.services {
		key := api.KeyOf(s)
		services[key] = true
		want := DesiredEndpoints(s, podsByNS[s.GetMetadata().GetNamespace()], nodeReady)
		if want == nil {
			continue // no selector: the user's Endpoints stay
		}
		if want.Metadata.Labels == nil {
			want.Metadata.Labels = map[string]string{}
		}
		want.Metadata.Labels[LabelManagedBy] = managedByEndpoint
		cur := existing[key]
		if cur != nil && EndpointsEqual(cur, want) && cur.GetMetadata().GetLabels()[LabelManagedBy] == managedByEndpoint {
			continue
		}
		op := Op{Put: want, Why: "endpoints " + key}
		if cur == nil {
			op.Create = true
		} else {
			op.ResourceVersion = cur.GetMetadata().GetResourceVersion()
		}
		ops = append(ops, op)
	}
	for key, e := range existing {
		if services[key] || e.GetMetadata().GetLabels()[LabelManagedBy] != managedByEndpoint {
			continue
		}
		m := e.GetMetadata()
		ops = append(ops, Op{Delete: &ObjectKey{Kind: "Endpoints", Namespace: m.GetNamespace(), Name: m.GetName()},
			ResourceVersion: m.GetResourceVersion(), Why: "service gone: delete endpoints " + key})
	}
	return ops
}
