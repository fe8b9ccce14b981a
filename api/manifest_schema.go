package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The strict check of a decoded document against the protobuf schema:
// every field must be one of the message's, spelled with its JSON name,
// with a value of the field's JSON type. Kubernetes quantities may be
// written as numbers (cpu: 1); they are turned into strings here, so that
// protojson reads them. Nulls mean "unset" and are dropped.

// manifestQuantityFields are the string fields (or string maps) that hold
// Kubernetes quantities.
var manifestQuantityFields = map[protoreflect.FullName]bool{
	"shoal.v1.ResourceRequirements.limits":     true,
	"shoal.v1.ResourceRequirements.requests":   true,
	"shoal.v1.NodeStatus.capacity":             true,
	"shoal.v1.NodeStatus.allocatable":          true,
	"shoal.v1.EmptyDirVolumeSource.size_limit": true,
}

// schemaChecker walks a generic document along a message descriptor.
type schemaChecker struct {
	path    manifestPath
	errs    FieldErrors
	dropped int
}

func (c *schemaChecker) fail(msg string) {
	if len(c.errs) >= manifestMaxFieldErrors {
		c.dropped++
		return
	}
	c.errs = append(c.errs, FieldError{Path: c.path.String(), Message: msg})
}

func (c *schemaChecker) mismatch(want string, v any) {
	c.fail("expected " + want + ", got " + describeJSONValue(v))
}

// message checks an object against md and fixes it up in place.
func (c *schemaChecker) message(m map[string]any, md protoreflect.MessageDescriptor) {
	fields := md.Fields()
	for _, k := range sortedKeys(m) {
		v := m[k]
		fd := fields.ByJSONName(k)
		c.path.field(k)
		switch {
		case fd == nil:
			c.fail(manifestUnknownField(k, md))
			delete(m, k)
		case v == nil:
			delete(m, k) // null: unset
		default:
			m[k] = c.field(fd, v)
		}
		c.path.pop()
	}
}

// manifestUnknownField is the message for a field md does not have, with a
// hint when the name differs from one of md's only in its spelling
// (container_port, ContainerPort for containerPort).
func manifestUnknownField(name string, md protoreflect.MessageDescriptor) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if j := fields.Get(i).JSONName(); norm(j) == norm(name) {
			return fmt.Sprintf("unknown field (did you mean %q?)", j)
		}
	}
	return "unknown field"
}

func (c *schemaChecker) field(fd protoreflect.FieldDescriptor, v any) any {
	quantity := manifestQuantityFields[fd.FullName()]
	switch {
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			c.mismatch("an object", v)
			return v
		}
		kd, vd := fd.MapKey(), fd.MapValue()
		for _, k := range sortedKeys(m) {
			c.path.key(k)
			c.mapKey(kd, k)
			switch e := m[k]; {
			case e == nil && vd.Kind() == protoreflect.StringKind:
				m[k] = "" // as Kubernetes reads "key:" in a map of strings
			case e == nil:
				delete(m, k)
			default:
				m[k] = c.singular(vd, e, quantity)
			}
			c.path.pop()
		}
		return m
	case fd.IsList():
		a, ok := v.([]any)
		if !ok {
			c.mismatch("an array", v)
			return v
		}
		for i, e := range a {
			c.path.at(i)
			if e == nil {
				c.mismatch(manifestKindName(fd, quantity), e)
			} else {
				a[i] = c.singular(fd, e, quantity)
			}
			c.path.pop()
		}
		return a
	}
	return c.singular(fd, v, quantity)
}

// mapKey checks a map key of a non-string key type.
func (c *schemaChecker) mapKey(kd protoreflect.FieldDescriptor, k string) {
	var err error
	switch kd.Kind() {
	case protoreflect.StringKind:
		return
	case protoreflect.BoolKind:
		_, err = strconv.ParseBool(k)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		_, err = strconv.ParseInt(k, 10, 32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		_, err = strconv.ParseInt(k, 10, 64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		_, err = strconv.ParseUint(k, 10, 32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		_, err = strconv.ParseUint(k, 10, 64)
	}
	if err != nil {
		c.fail(fmt.Sprintf("invalid key %q: expected %s", k, kd.Kind()))
	}
}

// manifestKindName names the JSON type a field wants, for messages.
func manifestKindName(fd protoreflect.FieldDescriptor, quantity bool) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if quantity {
			return "a quantity (a string or a number)"
		}
		return "a string"
	case protoreflect.BytesKind:
		return "a base64 string"
	case protoreflect.BoolKind:
		return "a boolean"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	case protoreflect.EnumKind:
		return "a string"
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if fd.Message().FullName() == "google.protobuf.Value" {
			return "an integer or a string"
		}
		return "an object"
	}
	return "an integer"
}

func (c *schemaChecker) singular(fd protoreflect.FieldDescriptor, v any, quantity bool) any {
	switch fd.Kind() {
	case protoreflect.StringKind:
		switch x := v.(type) {
		case string:
			return x
		case json.Number:
			if quantity {
				return string(x) // cpu: 1, memory: 1e9
			}
		}
		c.mismatch(manifestKindName(fd, quantity), v)
	case protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			c.mismatch("a base64 string", v)
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			c.mismatch("a boolean", v)
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		c.integer(v, math.MinInt32, math.MaxInt32)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		c.integer(v, 0, math.MaxUint32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if s, ok := v.(string); ok {
			// The API's own output writes 64-bit integers as strings (the
			// protobuf JSON mapping does): read them back.
			if i, err := strconv.ParseInt(s, 10, 64); err != nil || strconv.FormatInt(i, 10) != s {
				c.mismatch("an integer", v)
			}
			return v
		}
		c.integer(v, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if s, ok := v.(string); ok {
			if u, err := strconv.ParseUint(s, 10, 64); err != nil || strconv.FormatUint(u, 10) != s {
				c.mismatch("an integer", v)
			}
			return v
		}
		c.unsigned64(v)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if _, ok := v.(json.Number); !ok {
			c.mismatch("a number", v)
		}
	case protoreflect.EnumKind:
		switch v.(type) {
		case string:
		case json.Number:
			c.integer(v, math.MinInt32, math.MaxInt32)
		default:
			c.mismatch("a string", v)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		md := fd.Message()
		switch name := md.FullName(); {
		case name == "google.protobuf.Value":
			// int-or-string: targetPort, maxSurge, probe ports.
			switch n := v.(type) {
			case string:
			case json.Number:
				if _, err := strconv.ParseInt(string(n), 10, 64); err != nil && strings.ContainsAny(string(n), ".eE") {
					c.mismatch("an integer or a string", v)
				} else {
					c.integer(v, math.MinInt32, math.MaxInt32)
				}
			default:
				c.mismatch("an integer or a string", v)
			}
			return v
		case strings.HasPrefix(string(name), "google.protobuf."):
			return v // other well-known types: protojson checks them
		}
		m, ok := v.(map[string]any)
		if !ok {
			c.mismatch("an object", v)
			return v
		}
		c.message(m, md)
		return m
	}
	return v
}

// integer checks that v is an integer in [min, max].
func (c *schemaChecker) integer(v any, min, max int64) bool {
	n, ok := v.(json.Number)
	if !ok {
		c.mismatch("an integer", v)
		return false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		if _, ferr := strconv.ParseFloat(string(n), 64); ferr == nil && strings.ContainsAny(string(n), ".eE") {
			c.mismatch("an integer", v)
			return false
		}
		c.fail(fmt.Sprintf("integer %s is out of range [%d, %d]", manifestTruncate(string(n)), min, max))
		return false
	}
	if i < min || i > max {
		c.fail(fmt.Sprintf("integer %d is out of range [%d, %d]", i, min, max))
		return false
	}
	return true
}

func (c *schemaChecker) unsigned64(v any) {
	n, ok := v.(json.Number)
	if !ok {
		c.mismatch("an integer", v)
		return
	}
	if _, err := strconv.ParseUint(string(n), 10, 64); err != nil {
		if strings.ContainsAny(string(n), ".eE") {
			c.mismatch("an integer", v)
			return
		}
		c.fail(fmt.Sprintf("integer %s is out of range [0, %d]", manifestTruncate(string(n)), uint64(math.MaxUint64)))
	}
}
