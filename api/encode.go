package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"

	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// JSON and YAML output of objects and API messages. protojson writes field
// names as JSON names and leaves out unset fields, but varies its
// whitespace from run to run on purpose; the output here is re-formatted
// through encoding/json, so the same message always gives the same bytes.

var encodeJSONOptions = protojson.MarshalOptions{}

// MarshalJSON returns the compact JSON of a message. An object (a Pod,
// Deployment, ...) is written with its apiVersion and kind, as the API
// returns objects.
func MarshalJSON(m proto.Message) ([]byte, error) {
	b, err := encodeJSONOptions.Marshal(withTypeMeta(m))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MarshalJSONIndent is MarshalJSON indented by two spaces, ending with a
// newline, for people to read.
func MarshalJSONIndent(m proto.Message) ([]byte, error) {
	b, err := encodeJSONOptions.Marshal(withTypeMeta(m))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// MarshalYAML returns the YAML of a message, fields in the order of the
// schema (apiVersion, kind, metadata, spec, status), indented by two
// spaces. Strings that a YAML 1.1 reader (kubectl) would take for
// something else ("yes", "1.0") are quoted.
func MarshalYAML(m proto.Message) ([]byte, error) {
	b, err := encodeJSONOptions.Marshal(withTypeMeta(m))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	root, err := encodeYAMLNode(dec, tok)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// UnmarshalJSON reads a message as the API writes it. Fields it does not
// know are skipped, so that an older client reads what a newer server
// sends. (Manifests from users go through DecodeManifests, which is
// strict.)
func UnmarshalJSON(data []byte, m proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
}

// withTypeMeta returns m, or a copy of it with apiVersion and kind set
// when m is an object that lacks them. m itself is never changed: it may
// be shared.
func withTypeMeta(m proto.Message) proto.Message {
	r, ok := m.(Resource)
	if !ok || !m.ProtoReflect().IsValid() {
		return m
	}
	if kindName(r) == "" {
		return m
	}
	if apiVersion, kind := typeMeta(r); apiVersion != "" && kind != "" {
		return m
	}
	c := proto.Clone(m).(Resource)
	SetTypeMeta(c)
	return c
}

// encodeYAMLNode turns the JSON value starting at tok into a YAML node,
// keeping the order of object fields.
func encodeYAMLNode(dec *json.Decoder, tok json.Token) (*yaml.Node, error) {
	switch t := tok.(type) {
	case json.Delim:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		end := json.Delim(']')
		if t == '{' {
			n.Kind, n.Tag, end = yaml.MappingNode, "!!map", '}'
		}
		for {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			if tok == end {
				if len(n.Content) == 0 {
					n.Style = yaml.FlowStyle // [] and {}
				}
				return n, nil
			}
			child, err := encodeYAMLNode(dec, tok)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, child)
		}
	case string:
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t}
		if encodeYAML11NonString(t) {
			n.Style = yaml.DoubleQuotedStyle
		}
		return n, nil
	case json.Number:
		tag := "!!int"
		if bytes.ContainsAny([]byte(t), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(t)}, nil
	case bool:
		v := "false"
		if t {
			v = "true"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: v}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	if tok == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// encodeYAML11Re matches plain scalars YAML 1.1 reads as something other
// than a string, which YAML 1.2 (and so the encoder) reads as strings:
// booleans such as "yes" and "on", sexagesimal numbers such as "1:20",
// numbers with "_" or a leading "+" or ".".
var encodeYAML11Re = regexp.MustCompile(`^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|[-+]?(?:[0-9][0-9_]*)?\.?[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?0b[01_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?0[0-7_]+|=|~|null|Null|NULL)$`)

func encodeYAML11NonString(s string) bool {
	return s != "" && encodeYAML11Re.MatchString(s)
}
