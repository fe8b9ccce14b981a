package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// Limits on a manifest. A manifest is network input: each limit turns what
// would be an exhaustion of memory or stack into a clear error.
const (
	// MaxManifestBytes is the largest manifest DecodeManifests accepts.
	MaxManifestBytes = 8 << 20
	// MaxManifestDepth is the deepest nesting of objects and arrays.
	MaxManifestDepth = 64
	// MaxManifestObjects is the largest number of objects (documents, and
	// items of lists) in one manifest.
	MaxManifestObjects = 1000

	// manifestMaxNodes bounds the number of values (scalars, objects,
	// arrays) in a manifest, estimated before parsing: parsing costs a few
	// hundred bytes per value, whatever the size of the value.
	manifestMaxNodes = 500_000
	// manifestMaxAliasNodes bounds the values YAML aliases may expand to,
	// against "billion laughs" documents, and manifestMaxAliasBytes the
	// bytes of the strings (values and keys) they expand to: an anchored
	// long string repeated by aliases costs its length every time it is
	// written out again (as JSON, then as protobuf).
	manifestMaxAliasNodes = 100_000
	manifestMaxAliasBytes = MaxManifestBytes
	// manifestMaxErrors bounds the objects reported wrong, and
	// manifestMaxFieldErrors the problems reported per object.
	manifestMaxErrors      = 100
	manifestMaxFieldErrors = 20
)

// ManifestError is the error of one document of a manifest, or of one item
// of a list document.
type ManifestError struct {
	Document int // 1-based, counting non-empty documents
	Item     int // 1-based index in a list document; 0 when not in a list
	// The object, as far as it could be read: empty when unknown.
	Kind      string
	Namespace string
	Name      string
	// Fields lists the problems found in the object, each at its path.
	Fields FieldErrors
	// Err is a problem of the document as a whole (syntax, limits).
	Err error
}

func (e *ManifestError) Error() string {
	var b strings.Builder
	if e.Document > 0 {
		fmt.Fprintf(&b, "document %d", e.Document)
		if e.Item > 0 {
			fmt.Fprintf(&b, ", item %d", e.Item)
		}
	}
	if e.Kind != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("(" + e.Kind)
		if e.Name != "" {
			b.WriteString(" " + Key(e.Namespace, e.Name))
		}
		b.WriteByte(')')
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	switch {
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	case len(e.Fields) > 0:
		b.WriteString(e.Fields.Error())
	default:
		b.WriteString("invalid")
	}
	return b.String()
}

func (e *ManifestError) Unwrap() error {
	if e.Err != nil {
		return e.Err
	}
	if len(e.Fields) > 0 {
		return e.Fields
	}
	return nil
}

// DecodeManifests decodes the objects of a manifest: YAML (documents
// separated by "---"; empty documents are skipped) or JSON (an object, a
// sequence of objects, or a list {"kind": "List", "items": [...]}; lists
// work in YAML too). A manifest without objects gives none, and no error.
//
// Each object must name its apiVersion and kind, and may only hold fields
// shoal knows, spelled with their JSON names, with values of the right
// type: anything else is refused with its path. Objects are neither
// defaulted nor validated: see Default and Validate.
//
// The error of a document is a *ManifestError; when several documents are
// wrong, the error joins theirs (errors.Join), one per line.
func DecodeManifests(data []byte) ([]Resource, error) {
	if len(data) > MaxManifestBytes {
		return nil, &ManifestError{Err: fmt.Errorf("manifest is %d bytes, more than the limit of %d bytes (8 MiB)", len(data), MaxManifestBytes)}
	}
	if n := manifestNodeBound(data); n > manifestMaxNodes {
		return nil, &ManifestError{Err: fmt.Errorf("manifest is too complex: up to %d values, more than the limit of %d", n, manifestMaxNodes)}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	d := &manifestDecoder{}
	var err error
	if manifestLooksLikeJSON(data) {
		err = d.decodeJSON(data)
		var se *manifestJSONSyntaxError
		if errors.As(err, &se) && manifestIsYAML(data) {
			// A YAML flow mapping starts with "{" too.
			d = &manifestDecoder{}
			err = d.decodeYAML(data)
		}
	} else {
		err = d.decodeYAML(data)
	}
	switch {
	case err == errManifestStop:
		d.errs = append(d.errs, fmt.Errorf("stopped after %d wrong objects", len(d.errs)))
	case err != nil:
		d.errs = append(d.errs, err)
	}
	if len(d.errs) == 1 {
		return nil, d.errs[0]
	}
	if len(d.errs) > 1 {
		return nil, errors.Join(d.errs...)
	}
	return d.out, nil
}

// manifestDecoder turns documents into objects.
type manifestDecoder struct {
	docs    int // non-empty documents seen
	objects int // objects seen, in documents and lists
	out     []Resource
	errs    []error
}

// manifestJSONSyntaxError is a JSON syntax error, after which the
// manifest is tried as YAML.
type manifestJSONSyntaxError struct{ msg string }

func (e *manifestJSONSyntaxError) Error() string { return e.msg }

// errManifestStop stops the decoding after too many wrong objects.
var errManifestStop = errors.New("too many errors")

// fail records the error of an object; after manifestMaxErrors of them it
// returns errManifestStop.
func (d *manifestDecoder) fail(e *ManifestError) error {
	d.errs = append(d.errs, e)
	if len(d.errs) >= manifestMaxErrors {
		return errManifestStop
	}
	return nil
}

// manifestLooksLikeJSON tells whether data starts like a JSON document.
func manifestLooksLikeJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// manifestIsYAML tells whether data parses as YAML.
func manifestIsYAML(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := yamlDecodeNode(dec, &n)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// manifestNodeBound returns an upper bound of the number of values a
// manifest can hold, whether YAML or JSON: every value but the first of a
// document starts a line or follows one of , [ { : ? or "- ".
func manifestNodeBound(data []byte) int {
	n := 1
	for i, c := range data {
		switch c {
		case '\n', ',', '[', '{', ':', '?':
			n++
		case '-':
			if i+1 == len(data) || data[i+1] == ' ' || data[i+1] == '\n' || data[i+1] == '\t' || data[i+1] == '\r' {
				n++
			}
		}
	}
	return n
}

// decodeYAML decodes a stream of YAML documents, one at a time.
func (d *manifestDecoder) decodeYAML(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	aliasBudget, aliasBytes := manifestMaxAliasNodes, manifestMaxAliasBytes
	for {
		var root yaml.Node
		err := yamlDecodeNode(dec, &root)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if strings.Contains(err.Error(), "exceeded max depth") {
				// The parser's own limit (10000 levels), far beyond ours.
				err = fmt.Errorf("yaml: nested deeper than %d levels", MaxManifestDepth)
			}
			return &ManifestError{Document: d.docs + 1, Err: err}
		}
		if manifestYAMLEmpty(&root) {
			continue
		}
		d.docs++
		c := &yamlConverter{aliasBudget: aliasBudget, aliasBytes: aliasBytes}
		v, err := c.value(&root)
		aliasBudget, aliasBytes = c.aliasBudget, c.aliasBytes
		if err != nil {
			return &ManifestError{Document: d.docs, Err: err}
		}
		if err := d.document(v); err != nil {
			return err
		}
	}
}

// yamlDecodeNode parses the next document; a panic of the parser on
// hostile input becomes an error.
func yamlDecodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	return dec.Decode(n)
}

// manifestYAMLEmpty tells whether a YAML document holds nothing (only
// comments, or an explicit null).
func manifestYAMLEmpty(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true
		}
		n = n.Content[0]
	}
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// decodeJSON decodes a JSON value, or several one after the other.
func (d *manifestDecoder) decodeJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		c := &jsonConverter{dec: dec, data: data}
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &ManifestError{Document: d.docs + 1, Err: c.syntaxError(err)}
		}
		v, err := c.value(tok)
		if err != nil {
			return &ManifestError{Document: d.docs + 1, Err: err}
		}
		if v == nil {
			continue
		}
		d.docs++
		if err := d.document(v); err != nil {
			return err
		}
	}
}

// document decodes one non-empty document: an object or a list of them.
// Problems of objects are collected in d.errs; the error returned stops
// the decoding (a limit).
func (d *manifestDecoder) document(v any) error {
	switch v := v.(type) {
	case []any: // a JSON array of objects
		return d.list(v, "", "")
	case map[string]any:
		kind, _ := v["kind"].(string)
		_, hasItems := v["items"]
		if kind == "List" || (kind == "" && hasItems) || (strings.HasSuffix(kind, "List") && isKindName(strings.TrimSuffix(kind, "List"))) {
			return d.listDocument(v, kind)
		}
		return d.object(v, 0, "", "")
	default:
		return d.fail(&ManifestError{Document: d.docs, Err: fmt.Errorf("expected an object, got %s", describeJSONValue(v))})
	}
}

func isKindName(kind string) bool {
	k, ok := LookupKind(kind)
	return ok && k.Kind == kind
}

// listDocument decodes {"apiVersion": "v1", "kind": "List", "items": [...]}
// and the typed lists the API returns (PodList, ...), whose items may
// omit their apiVersion and kind.
func (d *manifestDecoder) listDocument(v map[string]any, kind string) error {
	var errs FieldErrors
	for _, k := range sortedKeys(v) {
		switch k {
		case "apiVersion", "kind":
			if _, ok := v[k].(string); !ok && v[k] != nil {
				errs = append(errs, FieldError{k, "expected a string, got " + describeJSONValue(v[k])})
			}
		case "metadata":
			if _, ok := v[k].(map[string]any); !ok && v[k] != nil {
				errs = append(errs, FieldError{k, "expected an object, got " + describeJSONValue(v[k])})
			}
		case "items":
		default:
			errs = append(errs, FieldError{k, "unknown field"})
		}
	}
	items, ok := v["items"].([]any)
	if !ok && v["items"] != nil {
		errs = append(errs, FieldError{"items", "expected an array, got " + describeJSONValue(v["items"])})
	}
	if len(errs) > 0 {
		return d.fail(&ManifestError{Document: d.docs, Kind: kind, Fields: errs})
	}
	itemKind, itemVersion := "", ""
	if kind != "List" && kind != "" {
		itemKind = strings.TrimSuffix(kind, "List")
		itemVersion, _ = v["apiVersion"].(string)
	}
	return d.list(items, itemKind, itemVersion)
}

func (d *manifestDecoder) list(items []any, kind, apiVersion string) error {
	for i, item := range items {
		m, ok := item.(map[string]any)
		if !ok {
			if err := d.fail(&ManifestError{Document: d.docs, Item: i + 1, Err: fmt.Errorf("expected an object, got %s", describeJSONValue(item))}); err != nil {
				return err
			}
			continue
		}
		if err := d.object(m, i+1, kind, apiVersion); err != nil {
			return err
		}
	}
	return nil
}

// object decodes one object. kind and apiVersion, when set, are those of
// the typed list holding it.
func (d *manifestDecoder) object(v map[string]any, item int, kind, apiVersion string) error {
	d.objects++
	if kind != "" {
		if _, ok := v["kind"]; !ok {
			v["kind"] = kind
		}
		if _, ok := v["apiVersion"]; !ok && apiVersion != "" {
			v["apiVersion"] = apiVersion
		}
	}
	me := &ManifestError{Document: d.docs, Item: item}
	if meta, ok := v["metadata"].(map[string]any); ok {
		me.Name, _ = meta["name"].(string)
		me.Namespace, _ = meta["namespace"].(string)
	}
	if kind, ok := v["kind"].(string); ok && isKindName(kind) {
		me.Kind = kind
		if MustKind(kind).Namespaced && me.Namespace == "" {
			me.Namespace = DefaultNamespace
		}
	}
	if d.objects > MaxManifestObjects {
		me.Err = fmt.Errorf("manifest has more than %d objects", MaxManifestObjects)
		return me
	}
	info, errs := manifestTypeMeta(v)
	if len(errs) > 0 {
		me.Fields = errs
		return d.fail(me)
	}
	r := info.New()
	if r.ProtoReflect().Descriptor().Fields().ByJSONName("status") == nil && manifestEmpty(v["status"]) {
		// kubectl writes "status: {loadBalancer: {}}" into the Services it
		// generates: a status with nothing in it is no field shoal lacks.
		delete(v, "status")
	}
	c := &schemaChecker{}
	c.message(v, r.ProtoReflect().Descriptor())
	if len(c.errs) > 0 {
		me.Fields = c.errs
		if c.dropped > 0 {
			me.Fields = append(me.Fields, FieldError{"", fmt.Sprintf("and %d more errors", c.dropped)})
		}
		return d.fail(me)
	}
	js, err := json.Marshal(v)
	if err != nil {
		me.Err = err
		return d.fail(me)
	}
	if err := protojson.Unmarshal(js, r); err != nil {
		me.Err = err
		return d.fail(me)
	}
	d.out = append(d.out, r)
	return nil
}

// manifestEmpty tells whether v holds no value: null, or objects of
// nothing but empty objects.
func manifestEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case map[string]any:
		for _, e := range v {
			if !manifestEmpty(e) {
				return false
			}
		}
		return true
	}
	return false
}

// manifestTypeMeta checks apiVersion and kind and returns the kind.
func manifestTypeMeta(v map[string]any) (KindInfo, FieldErrors) {
	var errs FieldErrors
	apiVersion, av := v["apiVersion"].(string)
	kind, kv := v["kind"].(string)
	switch {
	case v["apiVersion"] == nil || apiVersion == "" && av:
		errs = append(errs, FieldError{"apiVersion", "required"})
	case !av:
		errs = append(errs, FieldError{"apiVersion", "expected a string, got " + describeJSONValue(v["apiVersion"])})
	}
	switch {
	case v["kind"] == nil || kind == "" && kv:
		errs = append(errs, FieldError{"kind", "required"})
		return KindInfo{}, errs
	case !kv:
		errs = append(errs, FieldError{"kind", "expected a string, got " + describeJSONValue(v["kind"])})
		return KindInfo{}, errs
	}
	info, ok := LookupKind(kind)
	if !ok || info.Kind != kind {
		var names []string
		for _, k := range Kinds() {
			names = append(names, k.Kind)
		}
		msg := fmt.Sprintf("unknown kind %q: shoal serves %s", kind, strings.Join(names, ", "))
		if ok {
			msg = fmt.Sprintf("unknown kind %q (did you mean %q?)", kind, info.Kind)
		}
		errs = append(errs, FieldError{"kind", msg})
		return KindInfo{}, errs
	}
	if av && apiVersion != "" && apiVersion != info.APIVersion && apiVersion != ShoalAPIVersion {
		errs = append(errs, FieldError{"apiVersion", fmt.Sprintf("%q is not an apiVersion of %s: use %s (or %s)", apiVersion, kind, info.APIVersion, ShoalAPIVersion)})
	}
	return info, errs
}

// ---------------------------------------------------------------- paths

// manifestPath is the path of the value being looked at, kept as a stack
// and rendered only for an error: "spec.containers[0].image".
type manifestPath []manifestPathElem

type manifestPathElem struct {
	name  string
	index int // ≥ 0: an array index; -1: a field; -2: a map key
}

func (p *manifestPath) field(name string) { *p = append(*p, manifestPathElem{name: name, index: -1}) }
func (p *manifestPath) key(name string)   { *p = append(*p, manifestPathElem{name: name, index: -2}) }
func (p *manifestPath) at(i int)          { *p = append(*p, manifestPathElem{index: i}) }
func (p *manifestPath) pop()              { *p = (*p)[:len(*p)-1] }

func (p manifestPath) String() string {
	var b strings.Builder
	for _, e := range p {
		switch {
		case e.index >= 0:
			b.WriteString("[" + strconv.Itoa(e.index) + "]")
		case e.index == -2 && !manifestSimpleKey(e.name):
			b.WriteString("[" + strconv.Quote(e.name) + "]")
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(e.name)
		}
	}
	return b.String()
}

// manifestSimpleKey tells whether a map key can be written after a dot.
func manifestSimpleKey(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- YAML

// yamlConverter turns a YAML node into a generic value: map[string]any,
// []any, string, json.Number, bool or nil.
type yamlConverter struct {
	path        manifestPath
	depth       int
	inAlias     int
	aliasBudget int // values aliases may still expand to
	aliasBytes  int // bytes of strings aliases may still expand to
}

func (c *yamlConverter) errorf(n *yaml.Node, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if p := c.path.String(); p != "" {
		msg = p + ": " + msg
	}
	return fmt.Errorf("yaml: line %d: %s", n.Line, msg)
}

func (c *yamlConverter) value(n *yaml.Node) (any, error) {
	if c.inAlias > 0 {
		c.aliasBudget--
		if c.aliasBudget < 0 {
			return nil, c.errorf(n, "aliases expand to more than %d values", manifestMaxAliasNodes)
		}
		if n.Kind == yaml.ScalarNode {
			if err := c.spendAliasBytes(n, len(n.Value)); err != nil {
				return nil, err
			}
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.value(n.Content[0])
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, c.errorf(n, "unknown alias %q", n.Value)
		}
		c.inAlias++
		v, err := c.value(n.Alias)
		c.inAlias--
		return v, err
	case yaml.ScalarNode:
		return c.scalar(n)
	case yaml.MappingNode:
		if t := n.ShortTag(); t != "!!map" {
			return nil, c.errorf(n, "unsupported YAML tag %s", n.Tag)
		}
		if err := c.enter(n); err != nil {
			return nil, err
		}
		defer func() { c.depth-- }()
		return c.mapping(n)
	case yaml.SequenceNode:
		if t := n.ShortTag(); t != "!!seq" {
			return nil, c.errorf(n, "unsupported YAML tag %s", n.Tag)
		}
		if err := c.enter(n); err != nil {
			return nil, err
		}
		defer func() { c.depth-- }()
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			c.path.at(i)
			v, err := c.value(e)
			c.path.pop()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, c.errorf(n, "unexpected YAML node")
}

func (c *yamlConverter) enter(n *yaml.Node) error {
	c.depth++
	if c.depth > MaxManifestDepth {
		return c.errorf(n, "nested deeper than %d levels", MaxManifestDepth)
	}
	return nil
}

func (c *yamlConverter) mapping(n *yaml.Node) (map[string]any, error) {
	out := make(map[string]any, len(n.Content)/2)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind == yaml.ScalarNode && kn.ShortTag() == "!!merge" {
			merges = append(merges, vn)
			continue
		}
		key, err := c.key(kn)
		if err != nil {
			return nil, err
		}
		if c.inAlias > 0 || kn.Kind == yaml.AliasNode {
			// A key repeated through an alias is written out again too.
			if err := c.spendAliasBytes(kn, len(key)); err != nil {
				return nil, err
			}
		}
		if _, dup := out[key]; dup {
			c.path.key(key)
			err := c.errorf(kn, "duplicate field")
			c.path.pop()
			return nil, err
		}
		c.path.key(key)
		v, err := c.value(vn)
		c.path.pop()
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	// "<<: *base" merges the keys of other mappings; the mapping's own keys
	// win, then the first merged mapping that has the key.
	for _, m := range merges {
		var sources []*yaml.Node
		if m.Kind == yaml.SequenceNode {
			sources = m.Content
		} else {
			sources = []*yaml.Node{m}
		}
		for _, s := range sources {
			v, err := c.value(s)
			if err != nil {
				return nil, err
			}
			mm, ok := v.(map[string]any)
			if !ok {
				return nil, c.errorf(s, "a merge (<<) needs a mapping, got %s", describeJSONValue(v))
			}
			for k, v := range mm {
				if _, ok := out[k]; !ok {
					out[k] = v
				}
			}
		}
	}
	return out, nil
}

// spendAliasBytes counts n bytes of strings expanded from an alias.
func (c *yamlConverter) spendAliasBytes(n *yaml.Node, bytes int) error {
	c.aliasBytes -= bytes
	if c.aliasBytes < 0 {
		return c.errorf(n, "aliases expand to more than %d bytes (%d MiB) of strings", manifestMaxAliasBytes, manifestMaxAliasBytes>>20)
	}
	return nil
}

// key returns the text of a mapping key; keys are scalars.
func (c *yamlConverter) key(n *yaml.Node) (string, error) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return "", c.errorf(n, "a mapping key must be a string")
	}
	if n.ShortTag() == "!!null" && n.Value == "" {
		return "", c.errorf(n, "a mapping key must not be empty")
	}
	return n.Value, nil
}

func (c *yamlConverter) scalar(n *yaml.Node) (any, error) {
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return nil, nil
	case "!!str", "!!timestamp", "!!binary":
		return n.Value, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, c.errorf(n, "invalid boolean %q", n.Value)
		}
		return b, nil
	case "!!int":
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			if u, uerr := strconv.ParseUint(n.Value, 0, 64); uerr == nil {
				return json.Number(strconv.FormatUint(u, 10)), nil
			}
			return nil, c.errorf(n, "invalid or out of range integer %s", n.Value)
		}
		return json.Number(strconv.FormatInt(i, 10)), nil
	case "!!float":
		if manifestJSONNumber(n.Value) {
			return json.Number(n.Value), nil // keep "0.5" and "1e3" as written
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, c.errorf(n, "invalid number %q", n.Value)
		}
		s := strconv.FormatFloat(f, 'g', -1, 64)
		if !manifestJSONNumber(s) {
			return nil, c.errorf(n, "%s is not a finite number", n.Value)
		}
		return json.Number(s), nil
	default:
		return nil, c.errorf(n, "unsupported YAML tag %s", n.Tag)
	}
}

// manifestJSONNumber tells whether s is a number as JSON writes them.
func manifestJSONNumber(s string) bool {
	i := 0
	digits := func() int {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - j
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	n := digits()
	if n == 0 || (n > 1 && s[start] == '0') {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// ---------------------------------------------------------------- JSON

// jsonConverter reads one JSON value from a token stream into a generic
// value, refusing duplicate keys and deep nesting.
type jsonConverter struct {
	dec   *json.Decoder
	data  []byte
	path  manifestPath
	depth int
}

// line returns the line of the decoder's position.
func (c *jsonConverter) line(offset int64) int {
	if offset > int64(len(c.data)) {
		offset = int64(len(c.data))
	}
	return bytes.Count(c.data[:offset], []byte("\n")) + 1
}

func (c *jsonConverter) errorf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if p := c.path.String(); p != "" {
		msg = p + ": " + msg
	}
	return fmt.Errorf("json: line %d: %s", c.line(c.dec.InputOffset()), msg)
}

func (c *jsonConverter) syntaxError(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &manifestJSONSyntaxError{"json: unexpected end of input"}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &manifestJSONSyntaxError{fmt.Sprintf("json: line %d: %s", c.line(se.Offset), se.Error())}
	}
	return &manifestJSONSyntaxError{"json: " + err.Error()}
}

func (c *jsonConverter) next() (json.Token, error) {
	tok, err := c.dec.Token()
	if err != nil {
		return nil, c.syntaxError(err)
	}
	return tok, nil
}

func (c *jsonConverter) value(tok json.Token) (any, error) {
	switch t := tok.(type) {
	case json.Delim:
		c.depth++
		defer func() { c.depth-- }()
		if c.depth > MaxManifestDepth {
			return nil, c.errorf("nested deeper than %d levels", MaxManifestDepth)
		}
		if t == '[' {
			out := []any{}
			for i := 0; ; i++ {
				tok, err := c.next()
				if err != nil {
					return nil, err
				}
				if tok == json.Delim(']') {
					return out, nil
				}
				c.path.at(i)
				v, err := c.value(tok)
				c.path.pop()
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
		}
		out := map[string]any{}
		for {
			tok, err := c.next()
			if err != nil {
				return nil, err
			}
			if tok == json.Delim('}') {
				return out, nil
			}
			key, _ := tok.(string)
			if _, dup := out[key]; dup {
				c.path.key(key)
				err := c.errorf("duplicate field")
				c.path.pop()
				return nil, err
			}
			tok, err = c.next()
			if err != nil {
				return nil, err
			}
			c.path.key(key)
			v, err := c.value(tok)
			c.path.pop()
			if err != nil {
				return nil, err
			}
			out[key] = v
		}
	case string, bool, json.Number, nil:
		return t, nil
	}
	return nil, c.errorf("unexpected JSON token %v", tok)
}

// ---------------------------------------------------------------- helpers

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describeJSONValue describes a generic value for an error message:
// `string "three"`, `number 1.5`, `object`.
func describeJSONValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case json.Number:
		return "number " + manifestTruncate(string(v))
	case string:
		return "string " + strconv.Quote(manifestTruncate(v))
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func manifestTruncate(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut-- // do not split a UTF-8 sequence
	}
	return s[:cut] + "..."
}
