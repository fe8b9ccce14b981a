package scheduler

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/api"
)

// roT0 is "now" in the tests unless a case says otherwise.
var roT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// roOldHash is the pod-template-hash of pods made from an earlier template.
const roOldHash = "oldoldoldo"

func roTS(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func roTemplate(image string) *api.PodTemplateSpec {
	return &api.PodTemplateSpec{
		Metadata: &api.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:     &api.PodSpec{Containers: []*api.Container{{Name: "web", Image: image}}},
	}
}

func roDeployment(replicas int32, opts ...func(*api.Deployment)) *api.Deployment {
	d := &api.Deployment{
		Metadata: &api.ObjectMeta{Name: "web", Namespace: "default", Uid: "uid-web", Generation: 1},
		Spec: &api.DeploymentSpec{
			Replicas: proto.Int32(replicas),
			Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: roTemplate("nginx:1.27"),
		},
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

func roValue(v any) *structpb.Value {
	switch v := v.(type) {
	case nil:
		return nil
	case int:
		return structpb.NewNumberValue(float64(v))
	case float64:
		return structpb.NewNumberValue(v)
	case string:
		return structpb.NewStringValue(v)
	case bool:
		return structpb.NewBoolValue(v)
	}
	panic(fmt.Sprintf("roValue: %T", v))
}

// roRolling sets maxSurge and maxUnavailable (nil leaves one unset).
func roRolling(surge, unavailable any) func(*api.Deployment) {
	return func(d *api.Deployment) {
		d.Spec.Strategy = &api.DeploymentStrategy{Type: "RollingUpdate", RollingUpdate: &api.RollingUpdateDeployment{
			MaxSurge: roValue(surge), MaxUnavailable: roValue(unavailable)}}
	}
}

func roRecreate(d *api.Deployment) { d.Spec.Strategy = &api.DeploymentStrategy{Type: "Recreate"} }

func roPaused(d *api.Deployment) { d.Spec.Paused = true }

func roMinReady(s int32) func(*api.Deployment) {
	return func(d *api.Deployment) { d.Spec.MinReadySeconds = s }
}

func roDeadline(s int32) func(*api.Deployment) {
	return func(d *api.Deployment) { d.Spec.ProgressDeadlineSeconds = proto.Int32(s) }
}

func roImage(image string) func(*api.Deployment) {
	return func(d *api.Deployment) { d.Spec.Template = roTemplate(image) }
}

func roStatus(s *api.DeploymentStatus) func(*api.Deployment) {
	return func(d *api.Deployment) { d.Status = s }
}

// roPod is a pod of d, scheduled and running but not ready, created an hour
// before roT0 plus index minutes, so that a higher index is newer.
func roPod(hash, name string, index int, opts ...func(*api.Pod)) *api.Pod {
	p := &api.Pod{
		Metadata: &api.ObjectMeta{
			Name: name, Namespace: "default",
			Labels:            map[string]string{"app": "web", LabelPodTemplateHash: hash},
			CreationTimestamp: roTS(roT0.Add(-time.Hour + time.Duration(index)*time.Minute)),
			OwnerReferences:   []*api.OwnerReference{{Kind: "Deployment", Name: "web", Uid: "uid-web", Controller: true}},
		},
		Spec:   &api.PodSpec{NodeName: "node1", Containers: []*api.Container{{Name: "web", Image: "nginx"}}},
		Status: &api.PodStatus{Phase: "Running"},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func roReadySince(t time.Time) func(*api.Pod) {
	return func(p *api.Pod) {
		p.Status.Conditions = append(p.Status.Conditions,
			&api.PodCondition{Type: "Ready", Status: "True", LastTransitionTime: roTS(t)})
	}
}

// roReady: Ready for half an hour.
var roReady = roReadySince(roT0.Add(-30 * time.Minute))

func roPhase(phase string) func(*api.Pod) {
	return func(p *api.Pod) { p.Status.Phase = phase }
}

func roTerminating(p *api.Pod) { p.Metadata.DeletionTimestamp = roTS(roT0.Add(-5 * time.Second)) }

// roPods makes n pods prefix-1 .. prefix-n of the given hash.
func roPods(hash, prefix string, n int, opts ...func(*api.Pod)) []*api.Pod {
	var out []*api.Pod
	for i := 1; i <= n; i++ {
		out = append(out, roPod(hash, fmt.Sprintf("%s-%d", prefix, i), i, opts...))
	}
	return out
}

func roCurrent(d *api.Deployment) string { return TemplateHash(d.Spec.Template) }

func roNames(pods []*api.Pod) []string {
	out := []string{}
	for _, p := range pods {
		out = append(out, p.Metadata.Name)
	}
	return out
}

func roCond(s *api.DeploymentStatus, typ string) *api.DeploymentCondition {
	for _, c := range s.GetConditions() {
		if c.Type == typ {
			return c
		}
	}
	return nil
}

func TestTemplateHash(t *testing.T) {
	a, b := roTemplate("nginx:1.27"), roTemplate("nginx:1.27")
	ha := TemplateHash(a)
	if !regexp.MustCompile(`^[a-z0-9]{10}$`).MatchString(ha) {
		t.Fatalf("TemplateHash = %q, want 10 lowercase alphanumerics", ha)
	}
	if hb := TemplateHash(b); hb != ha {
		t.Errorf("equal templates: %q != %q", ha, hb)
	}
	if again := TemplateHash(a); again != ha {
		t.Errorf("not stable: %q then %q", ha, again)
	}
	if h := TemplateHash(roTemplate("nginx:1.28")); h == ha {
		t.Errorf("another image gave the same hash %q", h)
	}
	c := roTemplate("nginx:1.27")
	c.Metadata.Labels["tier"] = "front"
	if h := TemplateHash(c); h == ha {
		t.Errorf("another label gave the same hash %q", h)
	}

	// The hash label itself is ignored, and the template is not changed.
	withLabel := roTemplate("nginx:1.27")
	withLabel.Metadata.Labels[LabelPodTemplateHash] = "whatever"
	if h := TemplateHash(withLabel); h != ha {
		t.Errorf("with the hash label: %q, want %q", h, ha)
	}
	if withLabel.Metadata.Labels[LabelPodTemplateHash] != "whatever" {
		t.Error("TemplateHash changed its argument")
	}
	onlyLabel := &api.PodTemplateSpec{Metadata: &api.ObjectMeta{Labels: map[string]string{LabelPodTemplateHash: "x"}}}
	if h, want := TemplateHash(onlyLabel), TemplateHash(&api.PodTemplateSpec{Metadata: &api.ObjectMeta{}}); h != want {
		t.Errorf("template with only the hash label: %q, want the one with empty metadata %q", h, want)
	}

	// Map order does not matter.
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	m1, m2 := roTemplate("x"), roTemplate("x")
	for i := range keys {
		m1.Metadata.Labels[keys[i]] = "v" + keys[i]
		m2.Metadata.Labels[keys[len(keys)-1-i]] = "v" + keys[len(keys)-1-i]
	}
	for i := 0; i < 20; i++ {
		if TemplateHash(m1) != TemplateHash(m2) {
			t.Fatal("labels inserted in another order gave another hash")
		}
	}

	// nil is the empty template.
	if h, want := TemplateHash(nil), TemplateHash(&api.PodTemplateSpec{}); h != want || len(h) != 10 {
		t.Errorf("TemplateHash(nil) = %q, want %q", h, want)
	}

	// Invalid UTF-8 cannot be marshalled; the hash is still well formed.
	bad := roTemplate("nginx\xff")
	if h := TemplateHash(bad); len(h) != 10 || h != TemplateHash(roTemplate("nginx\xff")) || h == ha {
		t.Errorf("invalid UTF-8: %q", h)
	}

	// Golden: changing the algorithm would restart every deployment's
	// rollout after an upgrade. Change this value only on purpose.
	if ha != roGoldenHash {
		t.Errorf("TemplateHash(nginx:1.27 template) = %q, want %q", ha, roGoldenHash)
	}
}

const roGoldenHash = "6rpv4hg7w9"

func TestRolloutFenceposts(t *testing.T) {
	cases := []struct {
		replicas                   int
		surge, unavailable         any
		wantSurge, wantUnavailable int
	}{
		{6, "25%", "25%", 2, 1},     // 1.5 rounds up for surge, down for unavailable
		{10, nil, nil, 3, 2},        // defaults 25%
		{4, 1, 0, 1, 0},             // numbers
		{3, 0, 0, 0, 1},             // both zero: unavailable 1
		{3, "0%", "10%", 0, 1},      // both round to zero: unavailable 1
		{4, "abc", -1, 1, 1},        // malformed: 25%
		{4, 1.5, "150%", 1, 1},      // not whole, over 100% unavailable: 25%
		{4, "25", " 25%", 1, 1},     // no %, spaces: 25%
		{4, true, math.NaN(), 1, 1}, // wrong kinds: 25%
		{4, "150%", 10, 6, 4},       // surge may pass 100%; unavailable at most replicas
		{0, "25%", "25%", 0, 0},     // nothing to do for zero replicas
		{5, "99999999999%", 2, 2, 2},
	}
	for _, c := range cases {
		spec := roDeployment(int32(c.replicas), roRolling(c.surge, c.unavailable)).Spec
		s, u := rolloutFenceposts(spec, c.replicas)
		if s != c.wantSurge || u != c.wantUnavailable {
			t.Errorf("replicas %d surge %v unavailable %v: got surge %d unavailable %d, want %d %d",
				c.replicas, c.surge, c.unavailable, s, u, c.wantSurge, c.wantUnavailable)
		}
	}
	// No strategy at all: the defaults.
	if s, u := rolloutFenceposts(&api.DeploymentSpec{}, 8); s != 2 || u != 2 {
		t.Errorf("no strategy: %d %d, want 2 2", s, u)
	}
}

func TestPlanRolloutSteps(t *testing.T) {
	cur := roCurrent(roDeployment(1))
	cat := func(lists ...[]*api.Pod) []*api.Pod { return slices.Concat(lists...) }
	cases := []struct {
		name         string
		d            *api.Deployment
		pods         []*api.Pod
		now          time.Time // roT0 when zero
		wantCreate   int
		wantDelete   []string
		wantComplete bool
	}{
		{
			name:       "initial create with 25% surge: all replicas at once",
			d:          roDeployment(6),
			wantCreate: 6, wantDelete: []string{},
		},
		{
			name:       "initial create with maxSurge 1 maxUnavailable 0",
			d:          roDeployment(6, roRolling(1, 0)),
			wantCreate: 6, wantDelete: []string{},
		},
		{
			name:       "replicas unset means 1",
			d:          func() *api.Deployment { d := roDeployment(1); d.Spec.Replicas = nil; return d }(),
			wantCreate: 1, wantDelete: []string{},
		},
		{
			name:       "steady state: complete",
			d:          roDeployment(3),
			pods:       roPods(cur, "new", 3, roReady),
			wantCreate: 0, wantDelete: []string{}, wantComplete: true,
		},
		{
			name:       "scale up 3 to 5 within surge",
			d:          roDeployment(5),
			pods:       roPods(cur, "new", 3, roReady),
			wantCreate: 2, wantDelete: []string{},
		},
		{
			name: "scale up: terminating pods count against surge",
			d:    roDeployment(5, roRolling(1, 0)),
			pods: cat(roPods(cur, "new", 3, roReady),
				[]*api.Pod{roPod(cur, "gone-1", 4, roReady, roTerminating), roPod(cur, "gone-2", 5, roTerminating)}),
			wantCreate: 1, wantDelete: []string{},
		},
		{
			name: "scale down 5 to 3: not ready first, then newest",
			d:    roDeployment(3),
			pods: []*api.Pod{roPod(cur, "new-1", 1, roReady), roPod(cur, "new-2", 2), roPod(cur, "new-3", 3, roReady),
				roPod(cur, "new-4", 4, roReady), roPod(cur, "new-5", 5, roReady)},
			wantCreate: 0, wantDelete: []string{"new-2", "new-5"},
		},
		{
			name:       "scale to zero",
			d:          roDeployment(0),
			pods:       cat(roPods(roOldHash, "old", 1, roReady), roPods(cur, "new", 2, roReady)),
			wantCreate: 0, wantDelete: []string{"old-1", "new-2", "new-1"},
		},
		{
			name:       "zero replicas and no pods: complete",
			d:          roDeployment(0),
			wantCreate: 0, wantDelete: []string{}, wantComplete: true,
		},
		{
			name:       "surge 1 unavailable 0, 6 ready old: create 1, delete none",
			d:          roDeployment(6, roRolling(1, 0)),
			pods:       roPods(roOldHash, "old", 6, roReady),
			wantCreate: 1, wantDelete: []string{},
		},
		{
			name:       "surge 1 unavailable 0, the new pod not ready yet: wait",
			d:          roDeployment(6, roRolling(1, 0)),
			pods:       cat(roPods(roOldHash, "old", 6, roReady), roPods(cur, "new", 1)),
			wantCreate: 0, wantDelete: []string{},
		},
		{
			name:       "surge 1 unavailable 0, the new pod ready: delete the newest old",
			d:          roDeployment(6, roRolling(1, 0)),
			pods:       cat(roPods(roOldHash, "old", 6, roReady), roPods(cur, "new", 1, roReady)),
			wantCreate: 0, wantDelete: []string{"old-6"},
		},
		{
			name: "surge 1 unavailable 0, the old pod still terminating: wait",
			d:    roDeployment(6, roRolling(1, 0)),
			pods: cat(roPods(roOldHash, "old", 5, roReady), roPods(cur, "new", 1, roReady),
				[]*api.Pod{roPod(roOldHash, "old-6", 6, roReady, roTerminating)}),
			wantCreate: 0, wantDelete: []string{},
		},
		{
			name:       "surge 1 unavailable 0, the old pod gone: next new pod",
			d:          roDeployment(6, roRolling(1, 0)),
			pods:       cat(roPods(roOldHash, "old", 5, roReady), roPods(cur, "new", 1, roReady)),
			wantCreate: 1, wantDelete: []string{},
		},
		{
			name:       "25% of 6: surge 2 and unavailable 1",
			d:          roDeployment(6, roRolling("25%", "25%")),
			pods:       roPods(roOldHash, "old", 6, roReady),
			wantCreate: 2, wantDelete: []string{"old-6"},
		},
		{
			name:       "both zero: unavailable 1",
			d:          roDeployment(3, roRolling(0, 0)),
			pods:       roPods(roOldHash, "old", 3, roReady),
			wantCreate: 0, wantDelete: []string{"old-3"},
		},
		{
			name:       "both round to zero: unavailable 1",
			d:          roDeployment(3, roRolling("0%", "10%")),
			pods:       roPods(roOldHash, "old", 3, roReady),
			wantCreate: 0, wantDelete: []string{"old-3"},
		},
		{
			name:       "malformed values count as 25%",
			d:          roDeployment(4, roRolling("lots", -1)),
			pods:       roPods(roOldHash, "old", 4, roReady),
			wantCreate: 1, wantDelete: []string{"old-4"},
		},
		{
			name: "unhealthy old pods go first, within the budget",
			d:    roDeployment(4, roRolling(1, 1)),
			pods: []*api.Pod{roPod(roOldHash, "old-1", 1), roPod(roOldHash, "old-2", 2, roReady),
				roPod(roOldHash, "old-3", 3, roReady), roPod(roOldHash, "old-4", 4, roReady)},
			wantCreate: 1, wantDelete: []string{"old-1"},
		},
		{
			name: "unhealthy then available old pods, never below minAvailable",
			d:    roDeployment(3, roRolling(1, 1)),
			pods: []*api.Pod{roPod(roOldHash, "old-1", 1), roPod(roOldHash, "old-2", 2, roReady),
				roPod(roOldHash, "old-3", 3, roReady), roPod(cur, "new-1", 4, roReady)},
			wantCreate: 0, wantDelete: []string{"old-1", "old-3"},
		},
		{
			name: "no old pod deleted while only minAvailable are available",
			d:    roDeployment(4, roRolling(0, 2)),
			pods: cat(roPods(roOldHash, "old", 2, roReady),
				[]*api.Pod{roPod(cur, "new-1", 3), roPod(cur, "new-2", 4)}),
			wantCreate: 0, wantDelete: []string{},
		},
		{
			name: "scaled down mid-rollout: extra new pods and old pods go",
			d:    roDeployment(2, roRolling(1, 0)),
			pods: cat(roPods(roOldHash, "old", 2, roReady),
				[]*api.Pod{roPod(cur, "new-1", 3, roReady), roPod(cur, "new-2", 4, roReady), roPod(cur, "new-3", 5, roReady)}),
			wantCreate: 0, wantDelete: []string{"old-2", "old-1", "new-3"},
		},
		{
			name: "minReadySeconds: ready 5s ago is not available yet",
			d:    roDeployment(2, roRolling(1, 0), roMinReady(10)),
			pods: cat(roPods(roOldHash, "old", 2, roReady),
				[]*api.Pod{roPod(cur, "new-1", 3, roReadySince(roT0.Add(-5*time.Second)))}),
			wantCreate: 0, wantDelete: []string{},
		},
		{
			name: "minReadySeconds: ready 10s ago is available",
			d:    roDeployment(2, roRolling(1, 0), roMinReady(10)),
			pods: cat(roPods(roOldHash, "old", 2, roReady),
				[]*api.Pod{roPod(cur, "new-1", 3, roReadySince(roT0.Add(-10*time.Second)))}),
			wantCreate: 0, wantDelete: []string{"old-2"},
		},
		{
			name:       "minReadySeconds: complete only once available",
			d:          roDeployment(1, roMinReady(10)),
			pods:       []*api.Pod{roPod(cur, "new-1", 1, roReadySince(roT0.Add(-5*time.Second)))},
			wantCreate: 0, wantDelete: []string{}, wantComplete: false,
		},
		{
			name: "Failed and Succeeded pods are deleted and replaced",
			d:    roDeployment(3),
			pods: []*api.Pod{roPod(cur, "new-1", 1, roReady), roPod(cur, "new-2", 2, roPhase("Failed")),
				roPod(cur, "new-3", 3, roReady, roPhase("Succeeded"))},
			wantCreate: 2, wantDelete: []string{"new-3", "new-2"},
		},
		{
			name: "terminating pods are not deleted again, nor available",
			d:    roDeployment(3, roRolling(0, 1)),
			pods: cat(roPods(cur, "new", 2, roReady),
				[]*api.Pod{roPod(cur, "new-3", 3, roReady, roTerminating), roPod(cur, "new-4", 4, roPhase("Failed"), roTerminating)}),
			wantCreate: 0, wantDelete: []string{},
		},
		{
			name: "terminating pod replaced when surge allows",
			d:    roDeployment(3, roRolling(1, 0)),
			pods: cat(roPods(cur, "new", 2, roReady),
				[]*api.Pod{roPod(cur, "new-3", 3, roReady, roTerminating)}),
			wantCreate: 1, wantDelete: []string{},
		},
		{
			name: "Recreate: all old pods go, nothing created yet",
			d:    roDeployment(3, roRecreate),
			pods: cat(roPods(roOldHash, "old", 3, roReady),
				[]*api.Pod{roPod(roOldHash, "old-4", 4, roPhase("Failed"))}),
			wantCreate: 0, wantDelete: []string{"old-4", "old-3", "old-2", "old-1"},
		},
		{
			name:       "Recreate: waits for terminating old pods",
			d:          roDeployment(3, roRecreate),
			pods:       []*api.Pod{roPod(roOldHash, "old-1", 1, roReady, roTerminating)},
			wantCreate: 0, wantDelete: []string{},
		},
		{
			name:       "Recreate: old pods gone (failed ones do not count), create all",
			d:          roDeployment(3, roRecreate),
			pods:       []*api.Pod{roPod(roOldHash, "old-1", 1, roPhase("Failed"))},
			wantCreate: 3, wantDelete: []string{"old-1"},
		},
		{
			name:       "Recreate: complete",
			d:          roDeployment(2, roRecreate),
			pods:       roPods(cur, "new", 2, roReady),
			wantCreate: 0, wantDelete: []string{}, wantComplete: true,
		},
		{
			name: "paused mid-rollout: nothing, not even failed pods",
			d:    roDeployment(3, roPaused),
			pods: cat(roPods(roOldHash, "old", 3, roReady),
				[]*api.Pod{roPod(roOldHash, "old-4", 4, roPhase("Failed")), roPod(cur, "new-1", 5, roPhase("Failed"))}),
			wantCreate: 0, wantDelete: []string{},
		},
		{
			name:       "paused with a terminating old pod: nothing",
			d:          roDeployment(3, roPaused),
			pods:       cat(roPods(cur, "new", 1, roReady), []*api.Pod{roPod(roOldHash, "old-1", 2, roTerminating)}),
			wantCreate: 0, wantDelete: []string{},
		},
		{
			name:       "paused, every pod current: still scaled",
			d:          roDeployment(5, roPaused),
			pods:       roPods(cur, "new", 3, roReady),
			wantCreate: 2, wantDelete: []string{},
		},
		{
			name:       "paused and complete",
			d:          roDeployment(2, roPaused),
			pods:       roPods(cur, "new", 2, roReady),
			wantCreate: 0, wantDelete: []string{}, wantComplete: true,
		},
		{
			name:       "old pods left: not complete",
			d:          roDeployment(2, roRolling(1, 0)),
			pods:       cat(roPods(cur, "new", 2, roReady), roPods(roOldHash, "old", 1, roReady)),
			wantCreate: 0, wantDelete: []string{"old-1"},
		},
		{
			name:       "only terminating old pods left: complete",
			d:          roDeployment(2),
			pods:       cat(roPods(cur, "new", 2, roReady), roPods(roOldHash, "old", 1, roReady, roTerminating)),
			wantCreate: 0, wantDelete: []string{}, wantComplete: true,
		},
		{
			name:       "a failed pod left: not complete",
			d:          roDeployment(2, roRolling(0, 1)),
			pods:       cat(roPods(cur, "new", 2, roReady), []*api.Pod{roPod(cur, "new-3", 3, roPhase("Failed"))}),
			wantCreate: 0, wantDelete: []string{"new-3"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := c.now
			if now.IsZero() {
				now = roT0
			}
			before := proto.Clone(c.d)
			plan := PlanRollout(c.d, c.pods, now)
			if plan.Hash != cur {
				t.Errorf("Hash = %q, want %q", plan.Hash, cur)
			}
			if plan.Create != c.wantCreate {
				t.Errorf("Create = %d, want %d", plan.Create, c.wantCreate)
			}
			if got := roNames(plan.Delete); !slices.Equal(got, c.wantDelete) {
				t.Errorf("Delete = %v, want %v", got, c.wantDelete)
			}
			if plan.Complete != c.wantComplete {
				t.Errorf("Complete = %v, want %v", plan.Complete, c.wantComplete)
			}
			if plan.Status == nil || plan.Status.ObservedGeneration != 1 {
				t.Errorf("Status.ObservedGeneration: %v", plan.Status)
			}
			if !proto.Equal(before, c.d) {
				t.Error("PlanRollout changed the deployment")
			}
		})
	}
}

func TestPlanRolloutStatusCounts(t *testing.T) {
	d := roDeployment(4, roMinReady(10))
	d.Metadata.Generation = 7
	cur := roCurrent(d)
	pods := []*api.Pod{
		roPod(cur, "new-1", 1, roReady),
		roPod(cur, "new-2", 2, roReadySince(roT0.Add(-5*time.Second))), // ready, not available
		roPod(cur, "new-3", 3),                                         // not ready
		roPod(roOldHash, "old-1", 4, roReady),
		roPod(roOldHash, "old-2", 5, roReady),
		roPod(roOldHash, "old-3", 6, roReady, roTerminating),
		roPod(cur, "new-4", 7, roPhase("Failed")),
		nil,
	}
	s := PlanRollout(d, pods, roT0).Status
	want := &api.DeploymentStatus{ObservedGeneration: 7, Replicas: 5, UpdatedReplicas: 3, ReadyReplicas: 4,
		AvailableReplicas: 3, UnavailableReplicas: 1}
	got := proto.Clone(s).(*api.DeploymentStatus)
	got.Conditions = nil
	if !proto.Equal(got, want) {
		t.Errorf("status counts = %v, want %v", got, want)
	}
	// R=4, maxUnavailable 25% → 1: 3 available is the minimum.
	if c := roCond(s, "Available"); c == nil || c.Status != "True" || c.Reason != "MinimumReplicasAvailable" ||
		c.LastTransitionTime != roTS(roT0) || c.LastUpdateTime != roTS(roT0) {
		t.Errorf("Available = %v", c)
	}
	if len(s.Conditions) != 2 || s.Conditions[0].Type != "Available" || s.Conditions[1].Type != "Progressing" {
		t.Errorf("conditions = %v, want Available then Progressing", s.Conditions)
	}

	// One fewer available: False, and the transition time moves.
	d.Status = s
	pods[0] = roPod(cur, "new-1", 1)
	later := roT0.Add(time.Second) // new-2 still not available
	s2 := PlanRollout(d, pods, later).Status
	if c := roCond(s2, "Available"); c == nil || c.Status != "False" || c.Reason != "MinimumReplicasUnavailable" ||
		c.LastTransitionTime != roTS(later) {
		t.Errorf("Available after losing a pod = %v", c)
	}
	if s2.UnavailableReplicas != 2 || s2.AvailableReplicas != 2 {
		t.Errorf("counts after losing a pod: %v", s2)
	}

	// Recreate has no maxUnavailable: every replica must be available.
	r := roDeployment(2, roRecreate)
	rs := PlanRollout(r, []*api.Pod{roPod(roCurrent(r), "new-1", 1, roReady), roPod(roCurrent(r), "new-2", 2)}, roT0).Status
	if c := roCond(rs, "Available"); c == nil || c.Status != "False" {
		t.Errorf("Recreate with 1 of 2 available: Available = %v", c)
	}
}

func TestPlanRolloutProgressing(t *testing.T) {
	at := func(d time.Duration) string { return roTS(roT0.Add(d)) }
	cond := func(status, reason string, update, transition time.Duration) *api.DeploymentCondition {
		return &api.DeploymentCondition{Type: "Progressing", Status: status, Reason: reason, Message: "before",
			LastUpdateTime: at(update), LastTransitionTime: at(transition)}
	}
	// prev is a status that matches the pods as they are, so that only
	// the step itself can count as progress.
	prev := func(replicas, updated, ready, available int32, c *api.DeploymentCondition) *api.DeploymentStatus {
		s := &api.DeploymentStatus{ObservedGeneration: 1, Replicas: replicas, UpdatedReplicas: updated,
			ReadyReplicas: ready, AvailableReplicas: available}
		if c != nil {
			s.Conditions = []*api.DeploymentCondition{c}
		}
		return s
	}
	cur := roCurrent(roDeployment(1))
	complete3 := roPods(cur, "new", 3, roReady)
	// R=3, surge 1, unavailable 0: 3 old ready and 1 new that never gets ready.
	stuck := append(roPods(roOldHash, "old", 3, roReady), roPod(cur, "new-1", 4))
	type want struct {
		status, reason     string
		update, transition string
		message            string // checked when not empty
		create, deletes    int
	}
	cases := []struct {
		name string
		d    *api.Deployment
		pods []*api.Pod
		want want
	}{
		{
			name: "complete after progressing: transition kept",
			d:    roDeployment(3, roStatus(prev(3, 3, 2, 2, cond("True", "ReplicaSetUpdated", -100*time.Second, -900*time.Second)))),
			pods: complete3,
			want: want{status: "True", reason: "NewReplicaSetAvailable", update: at(0), transition: at(-900 * time.Second),
				message: `deployment "web" has successfully progressed`},
		},
		{
			name: "complete again: unchanged",
			d:    roDeployment(3, roStatus(prev(3, 3, 3, 3, cond("True", "NewReplicaSetAvailable", -50*time.Second, -60*time.Second)))),
			pods: complete3,
			want: want{status: "True", reason: "NewReplicaSetAvailable", update: at(-50 * time.Second), transition: at(-60 * time.Second),
				message: "before"},
		},
		{
			name: "a create is progress: lastUpdateTime now, transition kept",
			d: roDeployment(3, roRolling(1, 0),
				roStatus(prev(3, 0, 3, 3, cond("True", "ReplicaSetUpdated", -500*time.Second, -900*time.Second)))),
			pods: roPods(roOldHash, "old", 3, roReady),
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(0), transition: at(-900 * time.Second),
				message: `deployment "web" is progressing`, create: 1},
		},
		{
			name: "a delete is progress",
			d: roDeployment(3, roRolling(1, 0),
				roStatus(prev(4, 1, 4, 4, cond("True", "ReplicaSetUpdated", -599*time.Second, -900*time.Second)))),
			pods: append(roPods(roOldHash, "old", 3, roReady), roPod(cur, "new-1", 4, roReady)),
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(0), transition: at(-900 * time.Second), deletes: 1},
		},
		{
			name: "more available pods than recorded is progress",
			d: roDeployment(3, roRolling(1, 0), roMinReady(10),
				roStatus(prev(3, 1, 3, 2, cond("True", "ReplicaSetUpdated", -700*time.Second, -900*time.Second)))),
			pods: append(roPods(roOldHash, "old", 2, roReady), roPod(roOldHash, "old-3", 3, roReady, roTerminating),
				roPod(cur, "new-1", 4, roReadySince(roT0.Add(-10*time.Second)))),
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(0), transition: at(-900 * time.Second)},
		},
		{
			name: "fewer old pods than recorded is progress",
			d: roDeployment(3, roRolling(1, 0),
				roStatus(prev(4, 1, 3, 3, cond("True", "ReplicaSetUpdated", -700*time.Second, -900*time.Second)))),
			pods: append(roPods(roOldHash, "old", 2, roReady), roPod(roOldHash, "old-3", 3, roReady, roTerminating),
				roPod(cur, "new-1", 4)),
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(0), transition: at(-900 * time.Second)},
		},
		{
			name: "no progress within the deadline: unchanged",
			d: roDeployment(3, roRolling(1, 0),
				roStatus(prev(4, 1, 3, 3, cond("True", "ReplicaSetUpdated", -600*time.Second, -900*time.Second)))),
			pods: stuck,
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(-600 * time.Second), transition: at(-900 * time.Second)},
		},
		{
			name: "no progress past the deadline: ProgressDeadlineExceeded",
			d: roDeployment(3, roRolling(1, 0),
				roStatus(prev(4, 1, 3, 3, cond("True", "ReplicaSetUpdated", -601*time.Second, -900*time.Second)))),
			pods: stuck,
			want: want{status: "False", reason: "ProgressDeadlineExceeded", update: at(0), transition: at(0),
				message: `deployment "web" exceeded its progress deadline`},
		},
		{
			name: "deadline exceeded stays so",
			d: roDeployment(3, roRolling(1, 0),
				roStatus(prev(4, 1, 3, 3, cond("False", "ProgressDeadlineExceeded", -60*time.Second, -60*time.Second)))),
			pods: stuck,
			want: want{status: "False", reason: "ProgressDeadlineExceeded", update: at(-60 * time.Second), transition: at(-60 * time.Second)},
		},
		{
			name: "progress after the deadline: True again, new transition",
			d: roDeployment(3, roRolling(1, 0),
				roStatus(prev(4, 1, 3, 3, cond("False", "ProgressDeadlineExceeded", -60*time.Second, -60*time.Second)))),
			pods: append(roPods(roOldHash, "old", 3, roReady), roPod(cur, "new-1", 4, roReady)),
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(0), transition: at(0), deletes: 1},
		},
		{
			name: "custom deadline",
			d: roDeployment(3, roRolling(1, 0), roDeadline(30),
				roStatus(prev(4, 1, 3, 3, cond("True", "ReplicaSetUpdated", -31*time.Second, -900*time.Second)))),
			pods: stuck,
			want: want{status: "False", reason: "ProgressDeadlineExceeded", update: at(0), transition: at(0)},
		},
		{
			name: "no deadline (MaxInt32)",
			d: roDeployment(3, roRolling(1, 0), roDeadline(math.MaxInt32),
				roStatus(prev(4, 1, 3, 3, cond("True", "ReplicaSetUpdated", -1e6*time.Second, -1e6*time.Second)))),
			pods: stuck,
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(-1e6 * time.Second), transition: at(-1e6 * time.Second)},
		},
		{
			name: "replacing a failed pod is not progress",
			d: roDeployment(1, roRolling(1, 0),
				roStatus(prev(1, 0, 1, 1, cond("True", "ReplicaSetUpdated", -601*time.Second, -900*time.Second)))),
			pods: []*api.Pod{roPod(roOldHash, "old-1", 1, roReady), roPod(cur, "new-1", 2, roPhase("Failed"))},
			want: want{status: "False", reason: "ProgressDeadlineExceeded", update: at(0), transition: at(0), create: 1, deletes: 1},
		},
		{
			name: "first look without progress starts the clock",
			d:    roDeployment(3, roRolling(1, 0), roStatus(prev(4, 1, 3, 3, nil))),
			pods: stuck,
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(0), transition: at(0)},
		},
		{
			name: "complete earlier, a pod unready later: no deadline",
			d: roDeployment(3, roRolling(0, 1),
				roStatus(prev(3, 3, 3, 3, cond("True", "NewReplicaSetAvailable", -1e5*time.Second, -1e5*time.Second)))),
			pods: append(roPods(cur, "new", 2, roReady), roPod(cur, "new-3", 3)),
			want: want{status: "True", reason: "NewReplicaSetAvailable", update: at(-1e5 * time.Second), transition: at(-1e5 * time.Second)},
		},
		{
			name: "complete earlier, a new template: the clock starts",
			d: roDeployment(3,
				roStatus(prev(3, 0, 3, 3, cond("True", "NewReplicaSetAvailable", -1e5*time.Second, -1e5*time.Second)))),
			pods: append(roPods(roOldHash, "old", 3, roReady), roPods(cur, "gone", 1, roTerminating)...),
			want: want{status: "True", reason: "ReplicaSetUpdated", update: at(0), transition: at(-1e5 * time.Second)},
		},
		{
			name: "paused: Unknown DeploymentPaused",
			d: roDeployment(3, roPaused,
				roStatus(prev(3, 0, 3, 3, cond("True", "ReplicaSetUpdated", -10*time.Second, -900*time.Second)))),
			pods: roPods(roOldHash, "old", 3, roReady),
			want: want{status: "Unknown", reason: "DeploymentPaused", update: at(0), transition: at(0),
				message: `deployment "web" is paused`},
		},
		{
			name: "paused long: no deadline",
			d: roDeployment(3, roPaused,
				roStatus(prev(3, 0, 3, 3, cond("Unknown", "DeploymentPaused", -1e5*time.Second, -1e5*time.Second)))),
			pods: roPods(roOldHash, "old", 3, roReady),
			want: want{status: "Unknown", reason: "DeploymentPaused", update: at(-1e5 * time.Second), transition: at(-1e5 * time.Second)},
		},
		{
			name: "paused after the deadline: stays exceeded",
			d: roDeployment(3, roPaused,
				roStatus(prev(4, 1, 3, 3, cond("False", "ProgressDeadlineExceeded", -10*time.Second, -10*time.Second)))),
			pods: stuck,
			want: want{status: "False", reason: "ProgressDeadlineExceeded", update: at(-10 * time.Second), transition: at(-10 * time.Second)},
		},
		{
			name: "resumed without progress: Unknown DeploymentResumed, the clock restarts",
			d: roDeployment(3, roRolling(1, 0),
				roStatus(prev(4, 1, 3, 3, cond("Unknown", "DeploymentPaused", -1e5*time.Second, -1e5*time.Second)))),
			pods: stuck,
			want: want{status: "Unknown", reason: "DeploymentResumed", update: at(0), transition: at(-1e5 * time.Second),
				message: `deployment "web" is resumed`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := PlanRollout(c.d, c.pods, roT0)
			if plan.Create != c.want.create || len(plan.Delete) != c.want.deletes {
				t.Fatalf("Create %d Delete %v, want %d and %d pods", plan.Create, roNames(plan.Delete), c.want.create, c.want.deletes)
			}
			p := roCond(plan.Status, "Progressing")
			if p == nil {
				t.Fatal("no Progressing condition")
			}
			if p.Status != c.want.status || p.Reason != c.want.reason || p.LastUpdateTime != c.want.update ||
				p.LastTransitionTime != c.want.transition {
				t.Errorf("Progressing = %s/%s update %s transition %s, want %s/%s update %s transition %s",
					p.Status, p.Reason, p.LastUpdateTime, p.LastTransitionTime,
					c.want.status, c.want.reason, c.want.update, c.want.transition)
			}
			if c.want.message != "" && p.Message != c.want.message {
				t.Errorf("message = %q, want %q", p.Message, c.want.message)
			}
		})
	}
}

// roCluster applies plans the way a controller and the agents would, one
// step at a time: a deleted pod is terminating for one step and then gone;
// a created pod becomes Ready at the step after its creation unless
// neverReady.
type roCluster struct {
	t          *testing.T
	d          *api.Deployment
	pods       []*api.Pod
	now        time.Time
	created    int
	deleted    int
	neverReady bool
}

func (c *roCluster) step() RolloutPlan {
	c.t.Helper()
	plan := PlanRollout(c.d, c.pods, c.now)
	for _, del := range plan.Delete {
		found := false
		for _, p := range c.pods {
			if p == del {
				found = true
				if p.Metadata.DeletionTimestamp != "" {
					c.t.Fatalf("%s: %s deleted again", c.now, p.Metadata.Name)
				}
				p.Metadata.DeletionTimestamp = roTS(c.now)
			}
		}
		if !found {
			c.t.Fatalf("%s: deleted %s which is not one of the pods", c.now, del.Metadata.Name)
		}
		c.deleted++
	}
	for i := 0; i < plan.Create; i++ {
		c.created++
		c.pods = append(c.pods, &api.Pod{
			Metadata: &api.ObjectMeta{Name: fmt.Sprintf("new-%d", c.created),
				Labels:            map[string]string{"app": "web", LabelPodTemplateHash: plan.Hash},
				CreationTimestamp: roTS(c.now)},
			Spec:   &api.PodSpec{NodeName: "node1"},
			Status: &api.PodStatus{Phase: "Pending"},
		})
	}
	c.d.Status = plan.Status
	return plan
}

// tick moves time on: terminating pods vanish, pods created before become
// ready.
func (c *roCluster) tick(d time.Duration) {
	c.now = c.now.Add(d)
	var kept []*api.Pod
	for _, p := range c.pods {
		if p.Metadata.DeletionTimestamp != "" && p.Metadata.DeletionTimestamp < roTS(c.now.Add(-d)) {
			continue // deleted before the last step: gone
		}
		if !c.neverReady && p.Status.Phase == "Pending" {
			p.Status.Phase = "Running"
			p.Status.Conditions = []*api.PodCondition{{Type: "Ready", Status: "True", LastTransitionTime: roTS(c.now)}}
		}
		kept = append(kept, p)
	}
	c.pods = kept
}

func (c *roCluster) count(pred func(*api.Pod) bool) int {
	n := 0
	for _, p := range c.pods {
		if pred(p) {
			n++
		}
	}
	return n
}

func roIsAvailable(p *api.Pod) bool {
	return p.Metadata.DeletionTimestamp == "" && len(p.Status.Conditions) > 0 && p.Status.Conditions[0].Status == "True"
}

func TestPlanRolloutConverges(t *testing.T) {
	cases := []struct {
		name      string
		d         *api.Deployment
		surge     int // the most pods (not failed) there may be above replicas
		minAvail  int // the fewest available pods during the rollout
		wantSteps int
	}{
		{"surge 1 unavailable 0", roDeployment(3, roRolling(1, 0)), 1, 3, 9},
		{"25% of 4", roDeployment(4), 1, 3, 7},
		{"surge 0 unavailable 1", roDeployment(3, roRolling(0, 1)), 0, 2, 10},
		{"surge 100%", roDeployment(3, roRolling("100%", 0)), 3, 3, 3},
		{"Recreate", roDeployment(3, roRecreate), 0, 0, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			replicas := int(tc.d.Spec.GetReplicas())
			tc.d.Spec.Template = roTemplate("nginx:1.28")
			c := &roCluster{t: t, d: tc.d, now: roT0, pods: roPods(roOldHash, "old", replicas, roReady)}
			recreate := tc.d.Spec.Strategy.GetType() == "Recreate"
			for step := 1; step <= 30; step++ {
				plan := c.step()
				live := c.count(func(p *api.Pod) bool { return true })
				if live > replicas+tc.surge {
					t.Fatalf("step %d: %d pods, more than %d+%d", step, live, replicas, tc.surge)
				}
				if avail := c.count(roIsAvailable); avail < tc.minAvail {
					t.Fatalf("step %d: %d available pods, fewer than %d", step, avail, tc.minAvail)
				}
				if recreate && plan.Create > 0 && c.count(func(p *api.Pod) bool {
					return p.Metadata.Labels[LabelPodTemplateHash] == roOldHash
				}) > 0 {
					t.Fatalf("step %d: Recreate created pods while old ones remain", step)
				}
				if plan.Complete {
					if step != tc.wantSteps {
						t.Errorf("complete after %d steps, want %d", step, tc.wantSteps)
					}
					newReady := c.count(func(p *api.Pod) bool {
						return roIsAvailable(p) && p.Metadata.Labels[LabelPodTemplateHash] == plan.Hash
					})
					if newReady != replicas || c.created != replicas || c.deleted != replicas {
						t.Errorf("complete with %d new available, %d created, %d deleted; want %d each",
							newReady, c.created, c.deleted, replicas)
					}
					if p := roCond(plan.Status, "Progressing"); p.GetReason() != "NewReplicaSetAvailable" {
						t.Errorf("complete but Progressing = %v", p)
					}
					// Settled: the next step does nothing.
					c.tick(time.Minute)
					if again := c.step(); !again.Complete || again.Create != 0 || len(again.Delete) != 0 {
						t.Errorf("after completion: %+v", again)
					}
					return
				}
				c.tick(time.Minute)
			}
			t.Fatal("not complete after 30 steps")
		})
	}
}

func TestPlanRolloutNeverReadyStopsAtDeadline(t *testing.T) {
	d := roDeployment(3, roRolling(1, 0), roImage("nginx:broken"))
	c := &roCluster{t: t, d: d, now: roT0, pods: roPods(roOldHash, "old", 3, roReady), neverReady: true}
	var exceededAt time.Time
	for step := 0; step <= 20; step++ { // a step a minute for 20 minutes
		plan := c.step()
		if len(plan.Delete) != 0 {
			t.Fatalf("minute %d: deleted %v", step, roNames(plan.Delete))
		}
		if plan.Complete {
			t.Fatalf("minute %d: complete", step)
		}
		p := roCond(plan.Status, "Progressing")
		if p.Status == "False" && exceededAt.IsZero() {
			exceededAt = c.now
			if p.Reason != "ProgressDeadlineExceeded" || p.Message != `deployment "web" exceeded its progress deadline` {
				t.Errorf("Progressing = %v", p)
			}
		}
		if !exceededAt.IsZero() && (p.Status != "False" || p.LastTransitionTime != roTS(exceededAt)) {
			t.Errorf("minute %d: Progressing = %v after the deadline", step, p)
		}
		if a := roCond(plan.Status, "Available"); a.Status != "True" {
			t.Errorf("minute %d: Available = %v", step, a)
		}
		c.tick(time.Minute)
	}
	// Progress last at minute 1 (the new pod appeared in the status), so
	// the deadline of 600 s passed at minute 12 (11 min > 10 min).
	if want := roT0.Add(12 * time.Minute); !exceededAt.Equal(want) {
		t.Errorf("deadline exceeded at %v, want %v", exceededAt, want)
	}
	if c.created != 1 || c.deleted != 0 {
		t.Errorf("created %d and deleted %d pods, want 1 and 0", c.created, c.deleted)
	}
	if old := c.count(func(p *api.Pod) bool { return p.Metadata.Labels[LabelPodTemplateHash] == roOldHash && roIsAvailable(p) }); old != 3 {
		t.Errorf("%d old pods serving, want 3", old)
	}

	// Fixing the image starts a new rollout: the stuck pod goes first.
	d.Spec.Template = roTemplate("nginx:fixed")
	plan := c.step()
	if got := roNames(plan.Delete); !slices.Equal(got, []string{"new-1"}) || plan.Create != 0 {
		t.Errorf("after the fix: create %d delete %v, want 0 and [new-1]", plan.Create, got)
	}
	if p := roCond(plan.Status, "Progressing"); p.Status != "True" || p.Reason != "ReplicaSetUpdated" || p.LastUpdateTime != roTS(c.now) {
		t.Errorf("after the fix: Progressing = %v", p)
	}
}

func TestPlanRolloutNilSafe(t *testing.T) {
	for _, d := range []*api.Deployment{nil, {}, {Spec: &api.DeploymentSpec{}}} {
		plan := PlanRollout(d, []*api.Pod{nil, {}}, roT0)
		if plan.Status == nil || len(plan.Hash) != 10 {
			t.Errorf("PlanRollout(%v) = %+v", d, plan)
		}
		// replicas default to 1 and the strategy to 25%: surge 1,
		// unavailable 0. The pod without labels is old and not ready: it
		// stays until the surge pod is available.
		if plan.Create != 1 || len(plan.Delete) != 0 {
			t.Errorf("PlanRollout(%v): create %d delete %d, want 1 and 0", d, plan.Create, len(plan.Delete))
		}
	}
	if !strings.HasPrefix(AnnotationRevision, "deployment.kubernetes.io/") {
		t.Error(AnnotationRevision)
	}
}
