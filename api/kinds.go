package api

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

//go:generate protoc -I. -I/usr/include --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative shoal.proto

// Resource is any top-level object: it has metadata.
type Resource interface {
	proto.Message
	GetMetadata() *ObjectMeta
}

// KindInfo describes one kind of object and the names the CLI and the HTTP
// API know it by.
type KindInfo struct {
	Kind       string // Pod
	APIVersion string // v1, apps/v1
	Plural     string // pods: the HTTP path segment
	Aliases    []string
	Namespaced bool
	New        func() Resource
}

// ShoalAPIVersion is shoal's own apiVersion, accepted for every kind.
const ShoalAPIVersion = "shoal/v1"

// DefaultNamespace is the namespace of namespaced objects that name none.
const DefaultNamespace = "default"

// kindTable is the fixed table of kinds; nothing writes it.
var kindTable = []KindInfo{
	{Kind: "Node", APIVersion: "v1", Plural: "nodes", Aliases: []string{"node", "no"}, Namespaced: false, New: func() Resource { return &Node{} }},
	{Kind: "Pod", APIVersion: "v1", Plural: "pods", Aliases: []string{"pod", "po"}, Namespaced: true, New: func() Resource { return &Pod{} }},
	{Kind: "Deployment", APIVersion: "apps/v1", Plural: "deployments", Aliases: []string{"deployment", "deploy"}, Namespaced: true, New: func() Resource { return &Deployment{} }},
	{Kind: "Service", APIVersion: "v1", Plural: "services", Aliases: []string{"service", "svc"}, Namespaced: true, New: func() Resource { return &Service{} }},
	{Kind: "Endpoints", APIVersion: "v1", Plural: "endpoints", Aliases: []string{"endpoint", "ep"}, Namespaced: true, New: func() Resource { return &Endpoints{} }},
	{Kind: "Event", APIVersion: "v1", Plural: "events", Aliases: []string{"event", "ev"}, Namespaced: true, New: func() Resource { return &Event{} }},
	{Kind: "ControllerRevision", APIVersion: "apps/v1", Plural: "controllerrevisions", Aliases: []string{"controllerrevision", "revision", "revisions"}, Namespaced: true, New: func() Resource { return &ControllerRevision{} }},
}

// Kinds lists every kind the API serves, in a stable order.
func Kinds() []KindInfo {
	return append([]KindInfo(nil), kindTable...)
}

// LookupKind finds a kind by its name, plural or alias, in any case.
func LookupKind(name string) (KindInfo, bool) {
	for _, k := range kindTable {
		if name == k.Kind || strings.EqualFold(name, k.Kind) || strings.EqualFold(name, k.Plural) {
			return k, true
		}
		for _, a := range k.Aliases {
			if strings.EqualFold(name, a) {
				return k, true
			}
		}
	}
	return KindInfo{}, false
}

// MustKind returns the KindInfo of a canonical kind name; it panics on a
// name that is not one, which is a programming error.
func MustKind(kind string) KindInfo {
	k, ok := LookupKind(kind)
	if !ok {
		panic("unknown kind " + kind)
	}
	return k
}

// KindOf returns the canonical kind of an object.
func KindOf(r Resource) string {
	if k := kindName(r); k != "" {
		return k
	}
	panic(fmt.Sprintf("KindOf: %T is not a shoal object", r))
}

// kindName is KindOf, or "" for a message that is no top-level object
// (a PodTemplateSpec has metadata too).
func kindName(r Resource) string {
	switch r.(type) {
	case *Pod:
		return "Pod"
	case *Deployment:
		return "Deployment"
	case *Service:
		return "Service"
	case *Endpoints:
		return "Endpoints"
	case *Node:
		return "Node"
	case *ControllerRevision:
		return "ControllerRevision"
	case *Event:
		return "Event"
	}
	return ""
}

// Wrap puts an object into the Object envelope.
func Wrap(r Resource) *Object {
	switch o := r.(type) {
	case *Pod:
		return &Object{Object: &Object_Pod{Pod: o}}
	case *Deployment:
		return &Object{Object: &Object_Deployment{Deployment: o}}
	case *Service:
		return &Object{Object: &Object_Service{Service: o}}
	case *Endpoints:
		return &Object{Object: &Object_Endpoints{Endpoints: o}}
	case *Node:
		return &Object{Object: &Object_Node{Node: o}}
	case *ControllerRevision:
		return &Object{Object: &Object_ControllerRevision{ControllerRevision: o}}
	case *Event:
		return &Object{Object: &Object_Event{Event: o}}
	}
	panic(fmt.Sprintf("Wrap: %T is not a shoal object", r))
}

// Resource returns the object inside the envelope, or nil when it is empty.
func (o *Object) Resource() Resource {
	switch v := o.GetObject().(type) {
	case *Object_Pod:
		return v.Pod
	case *Object_Deployment:
		return v.Deployment
	case *Object_Service:
		return v.Service
	case *Object_Endpoints:
		return v.Endpoints
	case *Object_Node:
		return v.Node
	case *Object_ControllerRevision:
		return v.ControllerRevision
	case *Object_Event:
		return v.Event
	}
	return nil
}

// Key is the store key of an object: "namespace/name", or "name" for
// cluster-wide kinds.
func Key(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// KeyOf returns the store key of an object.
func KeyOf(r Resource) string {
	m := r.GetMetadata()
	return Key(m.GetNamespace(), m.GetName())
}

// SetTypeMeta fills apiVersion and kind with the kind's canonical values, as
// the API returns objects.
func SetTypeMeta(r Resource) {
	k := MustKind(KindOf(r))
	setTypeMeta(r, k.APIVersion, k.Kind)
}

// typeMeta reads an object's apiVersion and kind fields (every kind has
// them, by the same names).
func typeMeta(r Resource) (apiVersion, kind string) {
	m := r.ProtoReflect()
	fields := m.Descriptor().Fields()
	return m.Get(fields.ByName("api_version")).String(), m.Get(fields.ByName("kind")).String()
}

func setTypeMeta(r Resource, apiVersion, kind string) {
	m := r.ProtoReflect()
	fields := m.Descriptor().Fields()
	m.Set(fields.ByName("api_version"), protoreflect.ValueOfString(apiVersion))
	m.Set(fields.ByName("kind"), protoreflect.ValueOfString(kind))
}
