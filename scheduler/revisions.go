package scheduler

import (
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/shoalproj/shoal/api"
)

// AnnotationChangeCause is Kubernetes' kubernetes.io/change-cause: copied
// from the Deployment onto the revision it makes, shown by rollout history.
const AnnotationChangeCause = "kubernetes.io/change-cause"

// defaultRevisionHistoryLimit is Kubernetes' default.
const defaultRevisionHistoryLimit = 10

// RevisionName is the name of the revision of d with template hash.
func RevisionName(d *api.Deployment, hash string) string {
	return d.GetMetadata().GetName() + "-" + hash
}

// OwnedBy reports whether r's controller owner is the object with uid.
func OwnedBy(m *api.ObjectMeta, uid string) bool {
	for _, o := range m.GetOwnerReferences() {
		if o.Controller && o.Uid == uid {
			return true
		}
	}
	return false
}

// planRevisions keeps d's revision history: the current template has a
// ControllerRevision numbered above every other (a template rolled out
// again, as by undo, moves to the top, as in Kubernetes), the Deployment's
// revision annotation names it, and beyond revisionHistoryLimit the oldest
// revisions that no pod runs are deleted. revs are the revisions d owns;
// podHashes counts d's pods per template hash.
func planRevisions(d *api.Deployment, hash string, revs []*api.ControllerRevision, podHashes map[string]int) []Op {
	key := api.KeyOf(d)
	var ops []Op
	var cur *api.ControllerRevision
	var top int64
	for _, r := range revs {
		if r.GetMetadata().GetName() == RevisionName(d, hash) {
			cur = r
		}
		top = max(top, r.GetRevision())
	}
	curRev := top
	switch {
	case cur == nil:
		curRev = top + 1
		ops = append(ops, Op{Put: newRevision(d, hash, curRev), Create: true, Why: "deployment " + key + ": revision " + strconv.FormatInt(curRev, 10)})
	case cur.GetRevision() < top:
		curRev = top + 1
		next := proto.Clone(cur).(*api.ControllerRevision)
		next.Revision = curRev
		ops = append(ops, Op{Put: next, ResourceVersion: cur.GetMetadata().GetResourceVersion(),
			Why: "deployment " + key + ": template of revision " + strconv.FormatInt(cur.GetRevision(), 10) + " is revision " + strconv.FormatInt(curRev, 10)})
	default:
		curRev = cur.GetRevision()
	}
	if want := strconv.FormatInt(curRev, 10); d.GetMetadata().GetAnnotations()[AnnotationRevision] != want {
		next := proto.Clone(d).(*api.Deployment)
		if next.Metadata.Annotations == nil {
			next.Metadata.Annotations = map[string]string{}
		}
		next.Metadata.Annotations[AnnotationRevision] = want
		next.Status = nil
		ops = append(ops, Op{Put: next, ResourceVersion: d.GetMetadata().GetResourceVersion(), Why: "deployment " + key + ": revision annotation"})
	}

	limit := defaultRevisionHistoryLimit
	if d.GetSpec().RevisionHistoryLimit != nil {
		limit = int(d.GetSpec().GetRevisionHistoryLimit())
	}
	var old []*api.ControllerRevision
	for _, r := range revs {
		if r != cur && podHashes[r.GetMetadata().GetLabels()[LabelPodTemplateHash]] == 0 {
			old = append(old, r)
		}
	}
	if over := len(old) - limit; over > 0 {
		sort.Slice(old, func(i, j int) bool { return old[i].GetRevision() < old[j].GetRevision() })
		for _, r := range old[:over] {
			m := r.GetMetadata()
			ops = append(ops, Op{Delete: &ObjectKey{Kind: "ControllerRevision", Namespace: m.GetNamespace(), Name: m.GetName()},
				ResourceVersion: m.GetResourceVersion(), Why: "deployment " + key + ": history beyond revisionHistoryLimit"})
		}
	}
	return ops
}

func newRevision(d *api.Deployment, hash string, revision int64) *api.ControllerRevision {
	m := d.GetMetadata()
	tpl := proto.Clone(d.GetSpec().GetTemplate()).(*api.PodTemplateSpec)
	labels := map[string]string{LabelPodTemplateHash: hash}
	for k, v := range tpl.GetMetadata().GetLabels() {
		labels[k] = v
	}
	var annotations map[string]string
	if cause := m.GetAnnotations()[AnnotationChangeCause]; cause != "" {
		annotations = map[string]string{AnnotationChangeCause: cause}
	}
	return &api.ControllerRevision{
		Metadata: &api.ObjectMeta{
			Name:        RevisionName(d, hash),
			Namespace:   m.GetNamespace(),
			Labels:      labels,
			Annotations: annotations,
			OwnerReferences: []*api.OwnerReference{{
				ApiVersion: "apps/v1", Kind: "Deployment", Name: m.GetName(), Uid: m.GetUid(), Controller: true,
			}},
		},
		Data:     tpl,
		Revision: revision,
	}
}
