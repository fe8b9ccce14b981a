package cluster

import "github.com/shoalproj/shoal/api"

// PENDING: replaced by api.Default + api.Validate once they land.
func defaultAndValidate(r api.Resource) error {
	if r.GetMetadata().GetNamespace() == "" && api.MustKind(api.KindOf(r)).Namespaced {
		r.GetMetadata().Namespace = api.DefaultNamespace
	}
	return nil
}
