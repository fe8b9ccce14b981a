package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

// getObject reads one object of the kind T with a consistent read.
func getObject[T api.Resource](ctx context.Context, c *client.HTTPClient, plural, ns, name string) (T, error) {
	var zero T
	raw, err := c.GetConsistent(ctx, plural, ns, name)
	if err != nil {
		return zero, err
	}
	r, _, err := decodeObject(raw)
	if err != nil {
		return zero, err
	}
	obj, ok := r.(T)
	if !ok {
		return zero, fmt.Errorf("%s/%s: the server sent a %s", plural, name, api.KindOf(r))
	}
	return obj, nil
}

// updateObject reads an object, changes it and writes it back with the
// resourceVersion it read (a change made in between is a conflict, not
// overwritten), reading again after a conflict. The status is left out:
// a spec write keeps the stored one.
func updateObject[T api.Resource](ctx context.Context, c *client.HTTPClient, plural, ns, name string, change func(T)) error {
	var err error
	for range 5 {
		var obj T
		if obj, err = getObject[T](ctx, c, plural, ns, name); err != nil {
			return err
		}
		change(obj)
		m := obj.ProtoReflect()
		if fd := m.Descriptor().Fields().ByName(protoreflect.Name("status")); fd != nil {
			m.Clear(fd)
		}
		var body []byte
		if body, err = api.MarshalJSON(obj); err != nil {
			return err
		}
		if _, err = c.Apply(ctx, body, client.ApplyOptions{}); err == nil || !isConflict(err) {
			return err
		}
	}
	return err
}

// isConflict reports a resourceVersion conflict from the API.
func isConflict(err error) bool {
	var he *api.HTTPError
	return errors.As(err, &he) && he.Code == http.StatusConflict && he.Reason == "Conflict"
}
