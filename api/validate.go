package api

import (
	"fmt"
	"math"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
)

// FieldError is one problem of an object, at the path of the field:
// "spec.template.spec.containers[0].image: required".
type FieldError struct {
	Path    string // JSON path of the field; empty for the object as a whole
	Message string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// FieldErrors lists every problem of an object.
type FieldErrors []FieldError

func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// Validate checks an object as a user writes it (spec and metadata; status
// is the agents' and is not checked), after Default. Fields Default would
// fill may be left empty. The error, if any, is a FieldErrors naming every
// problem.
func Validate(r Resource) error {
	v := &validator{}
	switch o := r.(type) {
	case *Pod:
		if o == nil {
			return FieldErrors{{Message: "no object"}}
		}
		v.typeMeta(o.GetApiVersion(), o.GetKind(), "Pod")
		v.objectMeta(o.GetMetadata(), "Pod", checkDNS1123Subdomain)
		v.podSpec(o.GetSpec(), "spec")
	case *Deployment:
		if o == nil {
			return FieldErrors{{Message: "no object"}}
		}
		v.typeMeta(o.GetApiVersion(), o.GetKind(), "Deployment")
		v.objectMeta(o.GetMetadata(), "Deployment", checkDNS1123Subdomain)
		v.deploymentSpec(o.GetSpec())
	case *Service:
		if o == nil {
			return FieldErrors{{Message: "no object"}}
		}
		v.typeMeta(o.GetApiVersion(), o.GetKind(), "Service")
		v.objectMeta(o.GetMetadata(), "Service", checkDNS1035Label)
		v.serviceSpec(o.GetSpec())
	case *Endpoints:
		if o == nil {
			return FieldErrors{{Message: "no object"}}
		}
		v.typeMeta(o.GetApiVersion(), o.GetKind(), "Endpoints")
		v.objectMeta(o.GetMetadata(), "Endpoints", checkDNS1123Subdomain)
		v.endpoints(o)
	case *Node:
		if o == nil {
			return FieldErrors{{Message: "no object"}}
		}
		v.typeMeta(o.GetApiVersion(), o.GetKind(), "Node")
		v.objectMeta(o.GetMetadata(), "Node", checkDNS1123Subdomain)
		v.nodeSpec(o.GetSpec())
	case *ControllerRevision:
		if o == nil {
			return FieldErrors{{Message: "no object"}}
		}
		v.typeMeta(o.GetApiVersion(), o.GetKind(), "ControllerRevision")
		v.objectMeta(o.GetMetadata(), "ControllerRevision", checkDNS1123Subdomain)
		if o.GetRevision() < 1 {
			v.add("revision", "must be 1 or more, got %d", o.GetRevision())
		}
		if o.GetData() == nil {
			v.add("data", "required")
		} else {
			v.podSpec(o.GetData().GetSpec(), "data.spec")
		}
	case *Event:
		if o == nil {
			return FieldErrors{{Message: "no object"}}
		}
		v.typeMeta(o.GetApiVersion(), o.GetKind(), "Event")
		v.objectMeta(o.GetMetadata(), "Event", checkDNS1123Subdomain)
		if o.GetInvolvedObject().GetName() == "" {
			v.add("involvedObject.name", "required")
		}
		if o.GetReason() == "" {
			v.add("reason", "required")
		}
		if t := o.GetType(); t != "Normal" && t != "Warning" {
			v.add("type", "must be Normal or Warning, got %q", validTruncate(t))
		}
	default:
		return FieldErrors{{Message: fmt.Sprintf("%T is not a shoal object", r)}}
	}
	v.unknownFields(r.ProtoReflect(), "")
	if len(v.errs) == 0 {
		return nil
	}
	if v.dropped > 0 {
		v.errs = append(v.errs, FieldError{Message: fmt.Sprintf("and %d more errors", v.dropped)})
	}
	return v.errs
}

// validMaxErrors bounds the problems Validate reports of one object: an
// object with a hundred thousand wrong labels gets an error of a few
// kilobytes, not of megabytes.
const validMaxErrors = 100

type validator struct {
	errs    FieldErrors
	dropped int // problems found beyond validMaxErrors
}

func (v *validator) add(path, format string, args ...any) {
	if len(v.errs) >= validMaxErrors {
		v.dropped++
		return
	}
	v.errs = append(v.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// check records msg, the result of one of the check* functions, if any.
func (v *validator) check(path, msg string) {
	if msg != "" {
		v.add(path, "%s", msg)
	}
}

// oneOf checks that s is one of the allowed values; "" passes when
// emptyOK (a value Default fills).
func (v *validator) oneOf(path, s string, emptyOK bool, allowed ...string) {
	if s == "" && emptyOK {
		return
	}
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	if s == "" {
		v.add(path, "required: must be %s", validOrList(allowed))
		return
	}
	v.add(path, "unsupported value %q: must be %s", validTruncate(s), validOrList(allowed))
}

func validOrList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func (v *validator) portNumber(path string, n int32) {
	if n < 1 || n > 65535 {
		v.add(path, "must be between 1 and 65535, got %d", n)
	}
}

func (v *validator) nonNegative(path string, n int64) {
	if n < 0 {
		v.add(path, "must be greater than or equal to 0, got %d", n)
	}
}

// unknownFields refuses protobuf fields this server does not know, sent
// over gRPC by a newer client (or made up): kept, they would be stored
// unseen, and neither the JSON face nor validation would ever show them.
// A manifest cannot have any: DecodeManifests refuses unknown fields by
// name.
func (v *validator) unknownFields(m protoreflect.Message, path string) {
	if u := m.GetUnknown(); len(u) > 0 {
		var nums []string
		for len(u) > 0 {
			num, typ, n := protowire.ConsumeTag(u)
			if n < 0 {
				break
			}
			vn := protowire.ConsumeFieldValue(num, typ, u[n:])
			if vn < 0 {
				break
			}
			u = u[n+vn:]
			if len(nums) < 5 {
				nums = append(nums, strconv.Itoa(int(num)))
			}
		}
		what := "field (number"
		if len(nums) > 1 {
			what = "fields (numbers"
		}
		v.add(path, "unknown protobuf %s %s of %s): this server does not know it (is the client newer?)",
			what, strings.Join(nums, ", "), m.Descriptor().Name())
	}
	join := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := val.List()
			for i := 0; i < l.Len(); i++ {
				v.unknownFields(l.Get(i).Message(), fmt.Sprintf("%s[%d]", join(fd.JSONName()), i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			val.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				v.unknownFields(e.Message(), fmt.Sprintf("%s[%q]", join(fd.JSONName()), k.String()))
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			v.unknownFields(val.Message(), join(fd.JSONName()))
		}
		return true
	})
}

// ---------------------------------------------------------------- metadata

func (v *validator) typeMeta(apiVersion, kind, want string) {
	info := MustKind(want)
	if kind != "" && kind != want {
		v.add("kind", "must be %s, got %q", want, validTruncate(kind))
	}
	if apiVersion != "" && apiVersion != info.APIVersion && apiVersion != ShoalAPIVersion {
		v.add("apiVersion", "%q is not an apiVersion of %s: use %s (or %s)", validTruncate(apiVersion), want, info.APIVersion, ShoalAPIVersion)
	}
}

func (v *validator) objectMeta(m *ObjectMeta, kind string, checkName func(string) string) {
	info := MustKind(kind)
	if m.GetName() == "" {
		v.add("metadata.name", "required")
	} else {
		v.check("metadata.name", checkName(m.GetName()))
	}
	if info.Namespaced {
		if ns := m.GetNamespace(); ns != "" {
			v.check("metadata.namespace", checkDNS1123Label(ns))
		}
	} else if m.GetNamespace() != "" {
		v.add("metadata.namespace", "must be empty: a %s is not namespaced", kind)
	}
	v.labels("metadata.labels", m.GetLabels())
	v.annotations("metadata.annotations", m.GetAnnotations())
}

func sortedStringKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// labels checks a map of labels (or a selector, or a node selector).
func (v *validator) labels(path string, m map[string]string) {
	for _, k := range sortedStringKeys(m) {
		v.check(path, checkQualifiedName(k))
		if msg := checkLabelValue(m[k]); msg != "" {
			v.add(path, "key %q: %s", validTruncate(k), msg)
		}
	}
}

// validMaxAnnotationBytes is the largest total size of an object's
// annotations, as in Kubernetes.
const validMaxAnnotationBytes = 256 << 10

func (v *validator) annotations(path string, m map[string]string) {
	total := 0
	for _, k := range sortedStringKeys(m) {
		v.check(path, checkQualifiedName(k))
		total += len(k) + len(m[k])
	}
	if total > validMaxAnnotationBytes {
		v.add(path, "too long: %d bytes, at most %d", total, validMaxAnnotationBytes)
	}
}

func (v *validator) labelSelector(p string, s *LabelSelector) {
	v.labels(p+".matchLabels", s.GetMatchLabels())
	for i, r := range s.GetMatchExpressions() {
		rp := fmt.Sprintf("%s.matchExpressions[%d]", p, i)
		if r.GetKey() == "" {
			v.add(rp+".key", "required")
		} else {
			v.check(rp+".key", checkQualifiedName(r.GetKey()))
		}
		switch r.GetOperator() {
		case "In", "NotIn":
			if len(r.GetValues()) == 0 {
				v.add(rp+".values", "required when the operator is %s", r.GetOperator())
			}
			for j, val := range r.GetValues() {
				v.check(fmt.Sprintf("%s.values[%d]", rp, j), checkLabelValue(val))
			}
		case "Exists", "DoesNotExist":
			if len(r.GetValues()) > 0 {
				v.add(rp+".values", "must be empty when the operator is %s", r.GetOperator())
			}
		default:
			v.oneOf(rp+".operator", r.GetOperator(), false, "In", "NotIn", "Exists", "DoesNotExist")
		}
	}
}

// selectorMatchesLabels tells whether a label selector selects labels.
func selectorMatchesLabels(s *LabelSelector, labels map[string]string) bool {
	for k, want := range s.GetMatchLabels() {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	for _, r := range s.GetMatchExpressions() {
		val, has := labels[r.GetKey()]
		in := false
		for _, x := range r.GetValues() {
			if x == val {
				in = true
			}
		}
		switch r.GetOperator() {
		case "In":
			if !has || !in {
				return false
			}
		case "NotIn":
			if has && in {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- Pod

var supportedResources = []string{"cpu", "memory"}

func (v *validator) podSpec(s *PodSpec, p string) {
	if s == nil {
		s = &PodSpec{}
	}
	containers := s.GetContainers()
	if len(containers) == 0 {
		v.add(p+".containers", "required: a pod runs at least one container")
	}
	volumes := map[string]bool{}
	for i, vol := range s.GetVolumes() {
		v.volume(vol, fmt.Sprintf("%s.volumes[%d]", p, i), volumes)
	}
	names := map[string]bool{}
	portNames := map[string]bool{}
	hostPorts := map[string]bool{}
	for i, c := range containers {
		cp := fmt.Sprintf("%s.containers[%d]", p, i)
		v.container(c, cp, volumes)
		if n := c.GetName(); n != "" {
			if names[n] {
				v.add(cp+".name", "duplicate name %q", validTruncate(n))
			}
			names[n] = true
		}
		for j, port := range c.GetPorts() {
			pp := fmt.Sprintf("%s.ports[%d]", cp, j)
			if n := port.GetName(); n != "" {
				if portNames[n] {
					v.add(pp+".name", "duplicate port name %q", validTruncate(n))
				}
				portNames[n] = true
			}
			if hp := port.GetHostPort(); hp != 0 {
				proto := port.GetProtocol()
				if proto == "" {
					proto = "TCP"
				}
				key := fmt.Sprintf("%d/%s", hp, proto)
				if hostPorts[key] {
					v.add(pp+".hostPort", "duplicate host port %s", key)
				}
				hostPorts[key] = true
			}
		}
	}
	v.oneOf(p+".restartPolicy", s.GetRestartPolicy(), true, "Always", "OnFailure", "Never")
	if s.TerminationGracePeriodSeconds != nil {
		v.nonNegative(p+".terminationGracePeriodSeconds", int64(s.GetTerminationGracePeriodSeconds()))
	}
	if n := s.GetNodeName(); n != "" {
		v.check(p+".nodeName", checkDNS1123Subdomain(n))
	}
	if h := s.GetHostname(); h != "" {
		v.check(p+".hostname", checkDNS1123Label(h))
	}
	v.labels(p+".nodeSelector", s.GetNodeSelector())
	if a := s.GetAffinity(); a != nil {
		v.affinity(a, p+".affinity")
	}
	for i, t := range s.GetTolerations() {
		v.toleration(t, fmt.Sprintf("%s.tolerations[%d]", p, i))
	}
	for i, t := range s.GetTopologySpreadConstraints() {
		tp := fmt.Sprintf("%s.topologySpreadConstraints[%d]", p, i)
		if t.GetMaxSkew() <= 0 {
			v.add(tp+".maxSkew", "must be greater than 0, got %d", t.GetMaxSkew())
		}
		if t.GetTopologyKey() == "" {
			v.add(tp+".topologyKey", "required")
		} else {
			v.check(tp+".topologyKey", checkQualifiedName(t.GetTopologyKey()))
		}
		v.oneOf(tp+".whenUnsatisfiable", t.GetWhenUnsatisfiable(), false, "DoNotSchedule", "ScheduleAnyway")
		if t.GetLabelSelector() != nil {
			v.labelSelector(tp+".labelSelector", t.GetLabelSelector())
		}
	}
}

func (v *validator) volume(vol *Volume, p string, declared map[string]bool) {
	switch n := vol.GetName(); {
	case n == "":
		v.add(p+".name", "required")
	case declared[n]:
		v.add(p+".name", "duplicate name %q", validTruncate(n))
	default:
		v.check(p+".name", checkDNS1123Label(n))
		declared[n] = true
	}
	sources := 0
	if e := vol.GetEmptyDir(); e != nil {
		sources++
		v.oneOf(p+".emptyDir.medium", e.GetMedium(), true, "Memory")
		if l := e.GetSizeLimit(); l != "" {
			if _, err := ParseBytes(l); err != nil {
				v.add(p+".emptyDir.sizeLimit", "%v", err)
			}
		}
	}
	if h := vol.GetHostPath(); h != nil {
		sources++
		switch hp := h.GetPath(); {
		case hp == "":
			v.add(p+".hostPath.path", "required")
		case !path.IsAbs(hp):
			v.add(p+".hostPath.path", "must be an absolute path, got %q", validTruncate(hp))
		}
		v.oneOf(p+".hostPath.type", h.GetType(), true, "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")
	}
	if sources != 1 {
		v.add(p, "must specify exactly one of emptyDir, hostPath")
	}
}

func (v *validator) container(c *Container, p string, volumes map[string]bool) {
	if c.GetName() == "" {
		v.add(p+".name", "required")
	} else {
		v.check(p+".name", checkDNS1123Label(c.GetName()))
	}
	switch img := c.GetImage(); {
	case img == "":
		v.add(p+".image", "required")
	case strings.TrimSpace(img) != img:
		v.add(p+".image", "must not have leading or trailing whitespace")
	}
	v.oneOf(p+".imagePullPolicy", c.GetImagePullPolicy(), true, "Always", "IfNotPresent", "Never")
	for j, port := range c.GetPorts() {
		pp := fmt.Sprintf("%s.ports[%d]", p, j)
		v.portNumber(pp+".containerPort", port.GetContainerPort())
		if hp := port.GetHostPort(); hp != 0 {
			v.portNumber(pp+".hostPort", hp)
		}
		v.oneOf(pp+".protocol", port.GetProtocol(), true, "TCP", "UDP")
		if n := port.GetName(); n != "" {
			v.check(pp+".name", checkPortName(n))
		}
	}
	for j, e := range c.GetEnv() {
		ep := fmt.Sprintf("%s.env[%d].name", p, j)
		if e.GetName() == "" {
			v.add(ep, "required")
		} else {
			v.check(ep, checkEnvVarName(e.GetName()))
		}
	}
	v.resources(c.GetResources(), p+".resources")
	mountPaths := map[string]bool{}
	for j, m := range c.GetVolumeMounts() {
		mp := fmt.Sprintf("%s.volumeMounts[%d]", p, j)
		switch n := m.GetName(); {
		case n == "":
			v.add(mp+".name", "required")
		case !volumes[n]:
			v.add(mp+".name", "volume %q is not declared in the pod's volumes", validTruncate(n))
		}
		switch dst := m.GetMountPath(); {
		case dst == "":
			v.add(mp+".mountPath", "required")
		case !path.IsAbs(dst):
			v.add(mp+".mountPath", "must be an absolute path, got %q", validTruncate(dst))
		case mountPaths[path.Clean(dst)]:
			v.add(mp+".mountPath", "duplicate mount path %q", validTruncate(dst))
		default:
			mountPaths[path.Clean(dst)] = true
		}
	}
	v.probe(c.GetLivenessProbe(), p+".livenessProbe", c, true)
	v.probe(c.GetReadinessProbe(), p+".readinessProbe", c, false)
	v.probe(c.GetStartupProbe(), p+".startupProbe", c, true)
}

func (v *validator) resources(r *ResourceRequirements, p string) {
	parse := func(name, q string) (int64, error) {
		if name == "cpu" {
			return ParseCPU(q)
		}
		return ParseBytes(q)
	}
	values := func(m map[string]string, mp string) map[string]int64 {
		out := map[string]int64{}
		for _, name := range sortedStringKeys(m) {
			if name != "cpu" && name != "memory" {
				v.add(mp, "unsupported resource %q: shoal supports %s", validTruncate(name), validOrList(supportedResources))
				continue
			}
			n, err := parse(name, m[name])
			if err != nil {
				v.add(mp+"."+name, "%v", err)
				continue
			}
			out[name] = n
		}
		return out
	}
	limits := values(r.GetLimits(), p+".limits")
	requests := values(r.GetRequests(), p+".requests")
	for _, name := range supportedResources {
		l, hasLimit := limits[name]
		q, hasRequest := requests[name]
		if hasLimit && hasRequest && q > l {
			v.add(p+".requests."+name, "must be less than or equal to the %s limit of %s", name, r.GetLimits()[name])
		}
	}
}

func (v *validator) probe(pr *Probe, p string, c *Container, livenessLike bool) {
	if pr == nil {
		return
	}
	handlers := 0
	if e := pr.GetExec(); e != nil {
		handlers++
		if len(e.GetCommand()) == 0 {
			v.add(p+".exec.command", "required")
		}
	}
	if h := pr.GetHttpGet(); h != nil {
		handlers++
		v.probePort(h.GetPort(), p+".httpGet.port", c)
		v.oneOf(p+".httpGet.scheme", h.GetScheme(), true, "HTTP", "HTTPS")
		if hp := h.GetPath(); hp != "" && !strings.HasPrefix(hp, "/") {
			v.add(p+".httpGet.path", "must start with '/', got %q", validTruncate(hp))
		}
		for i, hdr := range h.GetHttpHeaders() {
			v.check(fmt.Sprintf("%s.httpGet.httpHeaders[%d].name", p, i), checkHTTPHeaderName(hdr.GetName()))
		}
	}
	if t := pr.GetTcpSocket(); t != nil {
		handlers++
		v.probePort(t.GetPort(), p+".tcpSocket.port", c)
	}
	if handlers != 1 {
		v.add(p, "must specify exactly one of exec, httpGet, tcpSocket")
	}
	v.nonNegative(p+".initialDelaySeconds", int64(pr.GetInitialDelaySeconds()))
	v.nonNegative(p+".timeoutSeconds", int64(pr.GetTimeoutSeconds()))
	v.nonNegative(p+".periodSeconds", int64(pr.GetPeriodSeconds()))
	v.nonNegative(p+".successThreshold", int64(pr.GetSuccessThreshold()))
	v.nonNegative(p+".failureThreshold", int64(pr.GetFailureThreshold()))
	if livenessLike && pr.GetSuccessThreshold() > 1 {
		v.add(p+".successThreshold", "must be 1 for a liveness or startup probe, got %d", pr.GetSuccessThreshold())
	}
}

// probePort checks the port of a probe: a number, or the name of one of
// the container's ports.
func (v *validator) probePort(port *structpb.Value, p string, c *Container) {
	switch k := port.GetKind().(type) {
	case nil:
		v.add(p, "required")
	case *structpb.Value_NumberValue:
		n := k.NumberValue
		if n != math.Trunc(n) || n < 1 || n > 65535 {
			v.add(p, "must be between 1 and 65535, got %v", n)
		}
	case *structpb.Value_StringValue:
		name := k.StringValue
		if msg := checkPortName(name); msg != "" {
			v.add(p, "%s", msg)
			return
		}
		for _, cp := range c.GetPorts() {
			if cp.GetName() == name {
				return
			}
		}
		v.add(p, "port %q is not one of the container's named ports", validTruncate(name))
	default:
		v.add(p, "must be a port number or a port name")
	}
}

func (v *validator) affinity(a *Affinity, p string) {
	if na := a.GetNodeAffinity(); na != nil {
		np := p + ".nodeAffinity"
		if req := na.GetRequiredDuringSchedulingIgnoredDuringExecution(); req != nil {
			rp := np + ".requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
			if len(req.GetNodeSelectorTerms()) == 0 {
				v.add(rp, "required: at least one term")
			}
			for i, t := range req.GetNodeSelectorTerms() {
				tp := fmt.Sprintf("%s[%d]", rp, i)
				if len(t.GetMatchExpressions()) == 0 {
					v.add(tp+".matchExpressions", "required: at least one requirement")
				}
				v.nodeSelectorTerm(t, tp)
			}
		}
		for i, pt := range na.GetPreferredDuringSchedulingIgnoredDuringExecution() {
			pp := fmt.Sprintf("%s.preferredDuringSchedulingIgnoredDuringExecution[%d]", np, i)
			v.weight(pp+".weight", pt.GetWeight())
			v.nodeSelectorTerm(pt.GetPreference(), pp+".preference")
		}
	}
	if pa := a.GetPodAntiAffinity(); pa != nil {
		ap := p + ".podAntiAffinity"
		for i, t := range pa.GetRequiredDuringSchedulingIgnoredDuringExecution() {
			v.podAffinityTerm(t, fmt.Sprintf("%s.requiredDuringSchedulingIgnoredDuringExecution[%d]", ap, i))
		}
		for i, wt := range pa.GetPreferredDuringSchedulingIgnoredDuringExecution() {
			wp := fmt.Sprintf("%s.preferredDuringSchedulingIgnoredDuringExecution[%d]", ap, i)
			v.weight(wp+".weight", wt.GetWeight())
			if wt.GetPodAffinityTerm() == nil {
				v.add(wp+".podAffinityTerm", "required")
				continue
			}
			v.podAffinityTerm(wt.GetPodAffinityTerm(), wp+".podAffinityTerm")
		}
	}
}

func (v *validator) weight(p string, w int32) {
	if w < 1 || w > 100 {
		v.add(p, "must be between 1 and 100, got %d", w)
	}
}

func (v *validator) podAffinityTerm(t *PodAffinityTerm, p string) {
	if t.GetTopologyKey() == "" {
		v.add(p+".topologyKey", "required")
	} else {
		v.check(p+".topologyKey", checkQualifiedName(t.GetTopologyKey()))
	}
	if t.GetLabelSelector() != nil {
		v.labelSelector(p+".labelSelector", t.GetLabelSelector())
	}
}

func (v *validator) nodeSelectorTerm(t *NodeSelectorTerm, p string) {
	for i, r := range t.GetMatchExpressions() {
		rp := fmt.Sprintf("%s.matchExpressions[%d]", p, i)
		if r.GetKey() == "" {
			v.add(rp+".key", "required")
		} else {
			v.check(rp+".key", checkQualifiedName(r.GetKey()))
		}
		switch op := r.GetOperator(); op {
		case "In", "NotIn":
			if len(r.GetValues()) == 0 {
				v.add(rp+".values", "required when the operator is %s", op)
			}
			for j, val := range r.GetValues() {
				v.check(fmt.Sprintf("%s.values[%d]", rp, j), checkLabelValue(val))
			}
		case "Exists", "DoesNotExist":
			if len(r.GetValues()) > 0 {
				v.add(rp+".values", "must be empty when the operator is %s", op)
			}
		case "Gt", "Lt":
			if len(r.GetValues()) != 1 {
				v.add(rp+".values", "must hold exactly one integer when the operator is %s", op)
			} else if _, err := strconv.ParseInt(r.GetValues()[0], 10, 64); err != nil {
				v.add(rp+".values[0]", "must be an integer when the operator is %s, got %q", op, validTruncate(r.GetValues()[0]))
			}
		default:
			v.oneOf(rp+".operator", op, false, "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
		}
	}
}

var validTaintEffects = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}

func (v *validator) toleration(t *Toleration, p string) {
	if t == nil {
		t = &Toleration{}
	}
	op := t.GetOperator()
	v.oneOf(p+".operator", op, true, "Exists", "Equal")
	if t.GetKey() == "" {
		if op != "Exists" {
			v.add(p+".operator", "must be Exists when the key is empty")
		}
	} else {
		v.check(p+".key", checkQualifiedName(t.GetKey()))
	}
	if op == "Exists" && t.GetValue() != "" {
		v.add(p+".value", "must be empty when the operator is Exists")
	} else if op != "Exists" {
		if msg := checkLabelValue(t.GetValue()); msg != "" {
			v.add(p+".value", "%s", msg)
		}
	}
	v.oneOf(p+".effect", t.GetEffect(), true, validTaintEffects...)
	if t.TolerationSeconds != nil && t.GetEffect() != "NoExecute" {
		v.add(p+".tolerationSeconds", "may only be set when the effect is NoExecute")
	}
}

// ---------------------------------------------------------------- Deployment

func (v *validator) deploymentSpec(s *DeploymentSpec) {
	if s == nil {
		s = &DeploymentSpec{}
	}
	if s.Replicas != nil {
		v.nonNegative("spec.replicas", int64(s.GetReplicas()))
	}
	sel := s.GetSelector()
	if len(sel.GetMatchLabels()) == 0 && len(sel.GetMatchExpressions()) == 0 {
		v.add("spec.selector", "required: a deployment selects its pods by label")
	} else {
		v.labelSelector("spec.selector", sel)
	}
	if t := s.GetTemplate(); t == nil {
		v.add("spec.template", "required")
	} else {
		labels := t.GetMetadata().GetLabels()
		v.labels("spec.template.metadata.labels", labels)
		if sel != nil && (len(sel.GetMatchLabels()) > 0 || len(sel.GetMatchExpressions()) > 0) && !selectorMatchesLabels(sel, labels) {
			v.add("spec.template.metadata.labels", "do not match spec.selector: the deployment would not own its pods")
		}
		v.podSpec(t.GetSpec(), "spec.template.spec")
		if rp := t.GetSpec().GetRestartPolicy(); rp != "" && rp != "Always" {
			v.add("spec.template.spec.restartPolicy", "must be Always in a deployment, got %q", validTruncate(rp))
		}
	}
	v.strategy(s.GetStrategy())
	v.nonNegative("spec.minReadySeconds", int64(s.GetMinReadySeconds()))
	if s.RevisionHistoryLimit != nil {
		v.nonNegative("spec.revisionHistoryLimit", int64(s.GetRevisionHistoryLimit()))
	}
	if s.ProgressDeadlineSeconds != nil {
		if d := s.GetProgressDeadlineSeconds(); d <= 0 {
			v.add("spec.progressDeadlineSeconds", "must be greater than 0, got %d", d)
		} else if d <= s.GetMinReadySeconds() {
			v.add("spec.progressDeadlineSeconds", "must be greater than minReadySeconds (%d), got %d", s.GetMinReadySeconds(), d)
		}
	}
}

func (v *validator) strategy(st *DeploymentStrategy) {
	typ := st.GetType()
	v.oneOf("spec.strategy.type", typ, true, "RollingUpdate", "Recreate")
	ru := st.GetRollingUpdate()
	if typ == "Recreate" {
		if ru != nil {
			v.add("spec.strategy.rollingUpdate", "may not be set when the strategy type is Recreate")
		}
		return
	}
	surge, surgeOK := v.intOrPercent("spec.strategy.rollingUpdate.maxSurge", ru.GetMaxSurge(), false)
	unavail, unavailOK := v.intOrPercent("spec.strategy.rollingUpdate.maxUnavailable", ru.GetMaxUnavailable(), true)
	if surgeOK && unavailOK && surge == 0 && unavail == 0 {
		v.add("spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when maxSurge is 0: the rollout could not make progress")
	}
}

// intOrPercent checks maxSurge or maxUnavailable: a non-negative integer
// or a percentage "25%". A nil value stands for the default, 25%. It
// returns the number (or percentage) and whether it is valid.
func (v *validator) intOrPercent(p string, val *structpb.Value, atMost100 bool) (int, bool) {
	switch k := val.GetKind().(type) {
	case nil:
		return 25, true
	case *structpb.Value_NumberValue:
		n := k.NumberValue
		if n != math.Trunc(n) || n < 0 || n > math.MaxInt32 {
			v.add(p, "must be a non-negative integer or a percentage, got %v", n)
			return 0, false
		}
		return int(n), true
	case *structpb.Value_StringValue:
		s := k.StringValue
		if !validPercentRe.MatchString(s) {
			v.add(p, "must be a non-negative integer or a percentage (e.g. \"25%%\"), got %q", validTruncate(s))
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
		if err != nil || (atMost100 && n > 100) {
			v.add(p, "must not be more than 100%%, got %q", validTruncate(s))
			return 0, false
		}
		return n, true
	}
	v.add(p, "must be a non-negative integer or a percentage")
	return 0, false
}

// ---------------------------------------------------------------- Service

func (v *validator) serviceSpec(s *ServiceSpec) {
	typ := s.GetType()
	if typ == "LoadBalancer" || typ == "ExternalName" {
		v.add("spec.type", "unsupported value %q: shoal supports ClusterIP and NodePort", validTruncate(typ))
	} else {
		v.oneOf("spec.type", typ, true, "ClusterIP", "NodePort")
	}
	headless := s.GetClusterIp() == "None"
	switch ip := s.GetClusterIp(); {
	case ip == "" || headless:
	default:
		if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() || a.IsUnspecified() {
			v.add("spec.clusterIP", "must be empty, None or an IPv4 address, got %q", validTruncate(ip))
		}
	}
	if headless && typ == "NodePort" {
		v.add("spec.clusterIP", "may not be None when the type is NodePort")
	}
	ports := s.GetPorts()
	if len(ports) == 0 && !headless {
		v.add("spec.ports", "required: a service exposes at least one port")
	}
	names := map[string]bool{}
	seen := map[string]bool{}
	for i, sp := range ports {
		pp := fmt.Sprintf("spec.ports[%d]", i)
		switch n := sp.GetName(); {
		case n == "" && len(ports) > 1:
			v.add(pp+".name", "required when the service has more than one port")
		case n == "":
		case names[n]:
			v.add(pp+".name", "duplicate name %q", validTruncate(n))
		default:
			v.check(pp+".name", checkDNS1123Label(n))
			names[n] = true
		}
		v.portNumber(pp+".port", sp.GetPort())
		proto := sp.GetProtocol()
		v.oneOf(pp+".protocol", proto, true, "TCP", "UDP")
		if proto == "" {
			proto = "TCP"
		}
		key := fmt.Sprintf("%d/%s", sp.GetPort(), proto)
		if seen[key] {
			v.add(pp, "duplicate port %s", key)
		}
		seen[key] = true
		switch k := sp.GetTargetPort().GetKind().(type) {
		case nil: // defaults to port
		case *structpb.Value_NumberValue:
			if n := k.NumberValue; n != math.Trunc(n) || n < 1 || n > 65535 {
				v.add(pp+".targetPort", "must be between 1 and 65535, got %v", n)
			}
		case *structpb.Value_StringValue:
			if msg := checkPortName(k.StringValue); msg != "" {
				v.add(pp+".targetPort", "%s", msg)
			}
		default:
			v.add(pp+".targetPort", "must be a port number or a port name")
		}
		if np := sp.GetNodePort(); np != 0 {
			if typ != "NodePort" {
				v.add(pp+".nodePort", "may only be set when the type is NodePort")
			} else if np < 0 || np > 65535 {
				v.add(pp+".nodePort", "must be between 1 and 65535, got %d", np)
			}
		}
	}
	v.labels("spec.selector", s.GetSelector())
	aff := s.GetSessionAffinity()
	v.oneOf("spec.sessionAffinity", aff, true, "None", "ClientIP")
	if cfg := s.GetSessionAffinityConfig(); cfg != nil {
		switch aff {
		case "ClientIP":
			if t := cfg.GetClientIp(); t != nil && t.TimeoutSeconds != nil {
				if n := t.GetTimeoutSeconds(); n < 1 || n > 86400 {
					v.add("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "must be between 1 and 86400, got %d", n)
				}
			}
		case "", "None":
			v.add("spec.sessionAffinityConfig", "may only be set when sessionAffinity is ClientIP")
		}
	}
}

// ---------------------------------------------------------------- Endpoints

func (v *validator) endpoints(e *Endpoints) {
	for i, s := range e.GetSubsets() {
		sp := fmt.Sprintf("subsets[%d]", i)
		if len(s.GetAddresses()) == 0 && len(s.GetNotReadyAddresses()) == 0 {
			v.add(sp, "must have addresses or notReadyAddresses")
		}
		for j, a := range s.GetAddresses() {
			v.endpointAddress(a, fmt.Sprintf("%s.addresses[%d]", sp, j))
		}
		for j, a := range s.GetNotReadyAddresses() {
			v.endpointAddress(a, fmt.Sprintf("%s.notReadyAddresses[%d]", sp, j))
		}
		names := map[string]bool{}
		for j, port := range s.GetPorts() {
			pp := fmt.Sprintf("%s.ports[%d]", sp, j)
			switch n := port.GetName(); {
			case n == "" && len(s.GetPorts()) > 1:
				v.add(pp+".name", "required when the subset has more than one port")
			case n == "":
			case names[n]:
				v.add(pp+".name", "duplicate name %q", validTruncate(n))
			default:
				v.check(pp+".name", checkDNS1123Label(n))
				names[n] = true
			}
			v.portNumber(pp+".port", port.GetPort())
			v.oneOf(pp+".protocol", port.GetProtocol(), true, "TCP", "UDP")
		}
	}
}

func (v *validator) endpointAddress(a *EndpointAddress, p string) {
	if a.GetIp() == "" {
		v.add(p+".ip", "required")
	} else {
		v.check(p+".ip", checkIP(a.GetIp()))
	}
	if h := a.GetHostname(); h != "" {
		v.check(p+".hostname", checkDNS1123Label(h))
	}
	if a.GetNodeName() != "" {
		v.check(p+".nodeName", checkDNS1123Subdomain(a.GetNodeName()))
	}
}

// ---------------------------------------------------------------- Node

func (v *validator) nodeSpec(s *NodeSpec) {
	if c := s.GetPodCidr(); c != "" {
		if _, err := netip.ParsePrefix(c); err != nil {
			v.add("spec.podCIDR", "%q is not a valid CIDR", validTruncate(c))
		}
	}
	seen := map[string]bool{}
	for i, t := range s.GetTaints() {
		tp := fmt.Sprintf("spec.taints[%d]", i)
		if t.GetKey() == "" {
			v.add(tp+".key", "required")
		} else {
			v.check(tp+".key", checkQualifiedName(t.GetKey()))
		}
		if msg := checkLabelValue(t.GetValue()); msg != "" {
			v.add(tp+".value", "%s", msg)
		}
		v.oneOf(tp+".effect", t.GetEffect(), false, validTaintEffects...)
		key := t.GetKey() + ":" + t.GetEffect()
		if seen[key] {
			v.add(tp, "duplicate taint %q with effect %s", validTruncate(t.GetKey()), t.GetEffect())
		}
		seen[key] = true
	}
}
