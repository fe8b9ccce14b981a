package scheduler

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/shoalproj/shoal/api"
)

func revDeployment(annotation string, limit *int32) *api.Deployment {
	d := &api.Deployment{
		Metadata: &api.ObjectMeta{Name: "web", Namespace: "default", Uid: "u1", ResourceVersion: "9"},
		Spec: &api.DeploymentSpec{RevisionHistoryLimit: limit, Template: &api.PodTemplateSpec{
			Metadata: &api.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec:     &api.PodSpec{Containers: []*api.Container{{Name: "c", Image: "busybox"}}},
		}},
	}
	if annotation != "" {
		d.Metadata.Annotations = map[string]string{AnnotationRevision: annotation}
	}
	return d
}

func rev(hash string, n int64) *api.ControllerRevision {
	return &api.ControllerRevision{
		Metadata: &api.ObjectMeta{Name: "web-" + hash, Namespace: "default", ResourceVersion: fmt.Sprint(n),
			Labels: map[string]string{LabelPodTemplateHash: hash}},
		Revision: n,
	}
}

// describeOps renders ops compactly: create:NAME@REV, move:NAME@REV,
// annotate:REV, delete:NAME.
func describeOps(ops []Op) string {
	var out []string
	for _, op := range ops {
		switch {
		case op.Delete != nil:
			out = append(out, "delete:"+op.Delete.Name)
		case op.Create:
			r := op.Put.(*api.ControllerRevision)
			out = append(out, fmt.Sprintf("create:%s@%d", r.Metadata.Name, r.Revision))
		default:
			switch o := op.Put.(type) {
			case *api.ControllerRevision:
				out = append(out, fmt.Sprintf("move:%s@%d", o.Metadata.Name, o.Revision))
			case *api.Deployment:
				out = append(out, "annotate:"+o.Metadata.Annotations[AnnotationRevision])
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestPlanRevisions(t *testing.T) {
	two := int32(2)
	tests := []struct {
		name   string
		d      *api.Deployment
		hash   string
		revs   []*api.ControllerRevision
		pods   map[string]int
		want   string
		wantNo bool
	}{
		{name: "first revision", d: revDeployment("", nil), hash: "h1",
			want: "annotate:1 create:web-h1@1"},
		{name: "settled", d: revDeployment("1", nil), hash: "h1", revs: []*api.ControllerRevision{rev("h1", 1)},
			want: ""},
		{name: "new template", d: revDeployment("1", nil), hash: "h2", revs: []*api.ControllerRevision{rev("h1", 1)},
			want: "annotate:2 create:web-h2@2"},
		{name: "undo moves the old template to the top", d: revDeployment("2", nil), hash: "h1",
			revs: []*api.ControllerRevision{rev("h1", 1), rev("h2", 2)},
			want: "annotate:3 move:web-h1@3"},
		{name: "history trimmed to the limit, oldest without pods first", d: revDeployment("5", &two), hash: "h5",
			revs: []*api.ControllerRevision{rev("h1", 1), rev("h2", 2), rev("h3", 3), rev("h4", 4), rev("h5", 5)},
			pods: map[string]int{"h1": 1, "h5": 3},
			want: "delete:web-h2"},
		{name: "limit 0 keeps only what runs", d: revDeployment("3", new(int32)), hash: "h3",
			revs: []*api.ControllerRevision{rev("h1", 1), rev("h2", 2), rev("h3", 3)},
			pods: map[string]int{"h2": 1, "h3": 1},
			want: "delete:web-h1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ops := planRevisions(tc.d, tc.hash, tc.revs, tc.pods)
			if got := describeOps(ops); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for _, op := range ops {
				if r, ok := op.Put.(*api.ControllerRevision); ok && op.Create {
					if r.Data == nil || r.Data.Spec.Containers[0].Image != "busybox" || !OwnedBy(r.Metadata, "u1") ||
						r.Metadata.Labels[LabelPodTemplateHash] != tc.hash || r.Metadata.Labels["app"] != "web" {
						t.Fatalf("revision %+v", r)
					}
				}
				if dd, ok := op.Put.(*api.Deployment); ok && (op.ResourceVersion != "9" || dd.Status != nil) {
					t.Fatalf("the annotation write must name the deployment's resourceVersion and carry no status: %+v", op)
				}
			}
		})
	}
}
