package api

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Found by FuzzApplyRequestProto (testdata/fuzz/FuzzApplyRequestProto/
// 6634c843344a9b2b): an object sent over gRPC with a protobuf field this
// server does not know passed validation and would have been stored with
// it, where no one could see it: the JSON face leaves unknown fields out.
// Manifests refuse unknown fields by name; gRPC now refuses them too.
func TestValidateRefusesUnknownProtoFields(t *testing.T) {
	unknown := protowire.AppendTag(nil, 99, protowire.BytesType)
	unknown = protowire.AppendString(unknown, "from the future")
	for _, tc := range []struct {
		name string
		set  func(p *Pod)
		want string
	}{
		{"in the object", func(p *Pod) { p.ProtoReflect().SetUnknown(unknown) }, "unknown protobuf field (number 99 of Pod)"},
		{"in metadata", func(p *Pod) { p.Metadata.ProtoReflect().SetUnknown(unknown) }, "metadata: unknown protobuf field (number 99 of ObjectMeta)"},
		{"in a container", func(p *Pod) { p.Spec.Containers[0].ProtoReflect().SetUnknown(unknown) }, "spec.containers[0]: unknown protobuf field (number 99 of Container)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pod{Metadata: &ObjectMeta{Name: "p"}, Spec: &PodSpec{Containers: []*Container{{Name: "c", Image: "i"}}}}
			Default(p)
			if err := Validate(p); err != nil {
				t.Fatalf("valid pod: %v", err)
			}
			tc.set(p)
			// As the server receives it: through the wire format.
			data, err := proto.Marshal(Wrap(p))
			if err != nil {
				t.Fatal(err)
			}
			o := &Object{}
			if err := proto.Unmarshal(data, o); err != nil {
				t.Fatal(err)
			}
			err = Validate(o.Resource())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// Found by FuzzApplyRequestProto (testdata/fuzz/FuzzApplyRequestProto/
// ed160302272d564e): the API writes 64-bit integers as JSON strings (the
// protobuf JSON mapping: metadata.deletionGracePeriodSeconds of a pod
// being deleted, a ControllerRevision's revision), and the manifest
// decoder refused them as "expected an integer, got string": what
// `shoal get -o json` or `-o yaml` printed could not be applied again.
func TestDecodeInt64WrittenAsString(t *testing.T) {
	grace := int64(48)
	objs := []Resource{
		&Pod{Metadata: &ObjectMeta{Name: "p", Namespace: "default", DeletionTimestamp: "2024-01-02T03:04:05Z", DeletionGracePeriodSeconds: &grace},
			Spec: &PodSpec{Containers: []*Container{{Name: "c", Image: "i"}}}},
		&ControllerRevision{Metadata: &ObjectMeta{Name: "web-1", Namespace: "default"}, Revision: 1 << 40,
			Data: &PodTemplateSpec{Spec: &PodSpec{Containers: []*Container{{Name: "c", Image: "i"}}}}},
	}
	for _, o := range objs {
		SetTypeMeta(o)
		for _, marshal := range []func(proto.Message) ([]byte, error){MarshalJSON, MarshalYAML} {
			text, err := marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeManifests(text)
			if err != nil {
				t.Fatalf("%s does not decode: %v", text, err)
			}
			if len(back) != 1 || !proto.Equal(back[0], o) {
				t.Fatalf("%s decodes as %v", text, back)
			}
		}
	}
	// As a number, as people write it; a string only in the form the API
	// writes.
	for in, want := range map[string]string{
		`{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"r"},"revision":7}`:     "",
		`{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"r"},"revision":"7"}`:   "",
		`{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"r"},"revision":"07"}`:  `revision: expected an integer, got string "07"`,
		`{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"r"},"revision":"1e2"}`: `revision: expected an integer, got string "1e2"`,
		`{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"r"},"revision":" 7"}`:  `revision: expected an integer, got string " 7"`,
	} {
		_, err := DecodeManifests([]byte(in))
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}
