package main

// Printing objects: kubectl-style tables, ages, and the json, yaml and name
// output formats.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/shoalproj/shoal/api"
)

// now is the clock ages are measured against (tests fix it).
var now = time.Now

// decodeObject decodes an object as the API returns it into its typed form.
func decodeObject(raw json.RawMessage) (api.Resource, api.KindInfo, error) {
	var tm struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, api.KindInfo{}, fmt.Errorf("decode object: %w", err)
	}
	k, ok := api.LookupKind(tm.Kind)
	if !ok {
		return nil, api.KindInfo{}, fmt.Errorf("decode object: unknown kind %q", tm.Kind)
	}
	r := k.New()
	if err := api.UnmarshalJSON(raw, r); err != nil {
		return nil, api.KindInfo{}, fmt.Errorf("decode %s: %w", k.Kind, err)
	}
	return r, k, nil
}

// qualifiedKind is how kubectl names a kind in messages: pod, deployment.apps.
func qualifiedKind(k api.KindInfo) string {
	name := strings.ToLower(k.Kind)
	if group, _, ok := strings.Cut(k.APIVersion, "/"); ok {
		return name + "." + group
	}
	return name
}

// qualifiedPlural is the plural form kubectl uses in "not found" messages
// and with several kinds in one table: pods, deployments.apps.
func qualifiedPlural(k api.KindInfo) string {
	if group, _, ok := strings.Cut(k.APIVersion, "/"); ok {
		return k.Plural + "." + group
	}
	return k.Plural
}

// humanAge prints a duration the way kubectl's AGE column does: two
// significant units while they matter (3m20s, 5h12m, 3d4h), one after.
func humanAge(d time.Duration) string {
	if d < -time.Second {
		return "<invalid>"
	}
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 120:
		return fmt.Sprintf("%ds", s)
	case s < 10*60:
		if s%60 == 0 {
			return fmt.Sprintf("%dm", s/60)
		}
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	}
	m := s / 60
	switch {
	case m < 3*60:
		return fmt.Sprintf("%dm", m)
	}
	h := m / 60
	switch {
	case h < 8:
		if m%60 == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m%60)
	case h < 48:
		return fmt.Sprintf("%dh", h)
	case h < 8*24:
		if h%24 == 0 {
			return fmt.Sprintf("%dd", h/24)
		}
		return fmt.Sprintf("%dd%dh", h/24, h%24)
	}
	days := h / 24
	switch {
	case days < 2*365:
		return fmt.Sprintf("%dd", days)
	case days < 8*365:
		if days%365 == 0 {
			return fmt.Sprintf("%dy", days/365)
		}
		return fmt.Sprintf("%dy%dd", days/365, days%365)
	}
	return fmt.Sprintf("%dy", days/365)
}

func parseTime(ts string) (time.Time, bool) {
	if ts == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	return t, err == nil
}

// age is the AGE of a timestamp, <unknown> when there is none.
func age(ts string, at time.Time) string {
	t, ok := parseTime(ts)
	if !ok {
		return "<unknown>"
	}
	return humanAge(at.Sub(t))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// ---------------------------------------------------------------- tables

// table prints rows in columns like kubectl's: each column as wide as its
// widest cell plus three spaces, the last one unpadded. A table that goes
// on printing rows (get --watch) keeps the widths it started with, widening
// a column only when a cell does not fit.
type table struct {
	headers []string
	widths  []int
}

func newTable(headers []string) *table {
	return &table{headers: headers, widths: make([]int, len(headers))}
}

func (t *table) fit(row []string) {
	for i, c := range row {
		if i < len(t.widths) && len(c) > t.widths[i] {
			t.widths[i] = len(c)
		}
	}
}

// writeRow prints one row.
func (t *table) writeRow(w io.Writer, row []string) {
	t.fit(row)
	var b strings.Builder
	for i, c := range row {
		if i == len(row)-1 {
			b.WriteString(c)
			break
		}
		b.WriteString(c)
		pad := t.widths[i] + 3 - len(c)
		if min := 6 - len(c); pad < min {
			pad = min
		}
		b.WriteString(strings.Repeat(" ", pad))
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}

// write prints the header (unless noHeader) and the rows, sized to fit them.
func (t *table) write(w io.Writer, rows [][]string, noHeader bool) {
	for _, r := range rows {
		t.fit(r)
	}
	if !noHeader {
		t.fit(t.headers)
		t.writeRow(w, t.headers)
	}
	for _, r := range rows {
		t.writeRow(w, r)
	}
}

// tableOptions say which columns a table has.
type tableOptions struct {
	wide bool
	// namespace adds a NAMESPACE column first (lists across namespaces).
	namespace bool
	// kindPrefix names rows kind/name (a table of several kinds).
	kindPrefix bool
}

// headers returns the columns of a kind's table.
func headers(k api.KindInfo, o tableOptions) []string {
	var h []string
	switch k.Kind {
	case "Pod":
		h = []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
		if o.wide {
			h = append(h, "IP", "NODE")
		}
	case "Deployment":
		h = []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}
		if o.wide {
			h = append(h, "CONTAINERS", "IMAGES", "SELECTOR")
		}
	case "Service":
		h = []string{"NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"}
		if o.wide {
			h = append(h, "SELECTOR")
		}
	case "Endpoints":
		h = []string{"NAME", "ENDPOINTS", "AGE"}
	case "ControllerRevision":
		h = []string{"NAME", "CONTROLLER", "REVISION", "AGE"}
	case "Event":
		h = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}
	case "Node":
		h = []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"}
		if o.wide {
			h = append(h, "INTERNAL-IP")
		}
	default:
		h = []string{"NAME", "AGE"}
	}
	if o.namespace && k.Namespaced {
		h = append([]string{"NAMESPACE"}, h...)
	}
	return h
}

// row returns an object's cells, in the order of headers.
func row(r api.Resource, o tableOptions, at time.Time) []string {
	m := r.GetMetadata()
	k := api.MustKind(api.KindOf(r))
	name := m.GetName()
	if o.kindPrefix {
		name = qualifiedKind(k) + "/" + name
	}
	created := age(m.GetCreationTimestamp(), at)
	var cells []string
	switch v := r.(type) {
	case *api.Pod:
		cells = []string{name, podReady(v), podStatus(v), podRestarts(v, at), created}
		if o.wide {
			cells = append(cells, orNone(v.GetStatus().GetPodIp()), orNone(v.GetSpec().GetNodeName()))
		}
	case *api.Deployment:
		desired := int32(1)
		if v.GetSpec() != nil && v.GetSpec().Replicas != nil {
			desired = v.GetSpec().GetReplicas()
		}
		st := v.GetStatus()
		cells = []string{name,
			fmt.Sprintf("%d/%d", st.GetReadyReplicas(), desired),
			strconv.Itoa(int(st.GetUpdatedReplicas())),
			strconv.Itoa(int(st.GetAvailableReplicas())),
			created}
		if o.wide {
			var names, images []string
			for _, c := range v.GetSpec().GetTemplate().GetSpec().GetContainers() {
				names = append(names, c.GetName())
				images = append(images, c.GetImage())
			}
			cells = append(cells, orNone(strings.Join(names, ",")), orNone(strings.Join(images, ",")),
				orNone(formatSelector(v.GetSpec().GetSelector())))
		}
	case *api.Service:
		typ := v.GetSpec().GetType()
		if typ == "" {
			typ = "ClusterIP"
		}
		cells = []string{name, typ, orNone(v.GetSpec().GetClusterIp()), servicePorts(v), created}
		if o.wide {
			cells = append(cells, orNone(formatLabels(v.GetSpec().GetSelector())))
		}
	case *api.Endpoints:
		cells = []string{name, endpointsSummary(v), created}
	case *api.Event:
		seen := age(v.GetLastTimestamp(), at)
		if v.GetCount() > 1 {
			seen = fmt.Sprintf("%s (x%d over %s)", seen, v.GetCount(), age(v.GetFirstTimestamp(), at))
		}
		o := v.GetInvolvedObject()
		cells = []string{seen, v.GetType(), v.GetReason(), strings.ToLower(o.GetKind()) + "/" + o.GetName(), v.GetMessage()}
	case *api.ControllerRevision:
		owner := "<none>"
		for _, o := range v.GetMetadata().GetOwnerReferences() {
			if o.GetController() {
				owner = strings.ToLower(o.GetKind()) + ".apps/" + o.GetName()
			}
		}
		cells = []string{name, owner, strconv.FormatInt(v.GetRevision(), 10), created}
	case *api.Node:
		ip := ""
		for _, a := range v.GetStatus().GetAddresses() {
			if a.GetType() == "InternalIP" {
				ip = a.GetAddress()
				break
			}
		}
		cells = []string{name, nodeStatus(v), orNone(v.GetStatus().GetRaftRole()), created,
			orNone(v.GetStatus().GetNodeInfo().GetShoalVersion())}
		if o.wide {
			cells = append(cells, orNone(ip))
		}
	default:
		cells = []string{name, created}
	}
	if o.namespace && k.Namespaced {
		cells = append([]string{m.GetNamespace()}, cells...)
	}
	return cells
}

func podReady(p *api.Pod) string {
	total := len(p.GetSpec().GetContainers())
	if n := len(p.GetStatus().GetContainerStatuses()); n > total {
		total = n
	}
	ready := 0
	for _, cs := range p.GetStatus().GetContainerStatuses() {
		if cs.GetReady() {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, total)
}

// podStatus is the STATUS column, by kubectl's rules: the pod's reason or
// phase, overridden by what a container is waiting for or ended with, and
// Terminating while the pod is being deleted.
func podStatus(p *api.Pod) string {
	st := p.GetStatus()
	reason := st.GetPhase()
	if st.GetReason() != "" {
		reason = st.GetReason()
	}
	running := false
	for _, cs := range st.GetContainerStatuses() {
		s := cs.GetState()
		switch {
		case s.GetWaiting() != nil && s.GetWaiting().GetReason() != "":
			reason = s.GetWaiting().GetReason()
		case s.GetTerminated() != nil && s.GetTerminated().GetReason() != "":
			reason = s.GetTerminated().GetReason()
		case s.GetTerminated() != nil:
			if sig := s.GetTerminated().GetSignal(); sig != 0 {
				reason = fmt.Sprintf("Signal:%d", sig)
			} else {
				reason = fmt.Sprintf("ExitCode:%d", s.GetTerminated().GetExitCode())
			}
		case cs.GetReady() && s.GetRunning() != nil:
			running = true
		}
	}
	if reason == "Completed" && running {
		reason = "Running"
	}
	if p.GetMetadata().GetDeletionTimestamp() != "" {
		reason = "Terminating"
	}
	if reason == "" {
		reason = "Pending"
	}
	return reason
}

// podRestarts is the RESTARTS column: the sum over containers, with how
// long ago the last one ended, as kubectl shows it ("3 (2m ago)").
func podRestarts(p *api.Pod, at time.Time) string {
	total := 0
	var last time.Time
	for _, cs := range p.GetStatus().GetContainerStatuses() {
		total += int(cs.GetRestartCount())
		if t, ok := parseTime(cs.GetLastState().GetTerminated().GetFinishedAt()); ok && t.After(last) {
			last = t
		}
	}
	if total > 0 && !last.IsZero() {
		return fmt.Sprintf("%d (%s ago)", total, humanAge(at.Sub(last)))
	}
	return strconv.Itoa(total)
}

func servicePorts(s *api.Service) string {
	var parts []string
	for _, p := range s.GetSpec().GetPorts() {
		proto := p.GetProtocol()
		if proto == "" {
			proto = "TCP"
		}
		if p.GetNodePort() != 0 {
			parts = append(parts, fmt.Sprintf("%d:%d/%s", p.GetPort(), p.GetNodePort(), proto))
		} else {
			parts = append(parts, fmt.Sprintf("%d/%s", p.GetPort(), proto))
		}
	}
	return orNone(strings.Join(parts, ","))
}

// endpointsSummary lists the ready addresses as ip:port, the first three and
// then how many more, as kubectl does.
func endpointsSummary(e *api.Endpoints) string {
	var all []string
	for _, ss := range e.GetSubsets() {
		for _, a := range ss.GetAddresses() {
			if len(ss.GetPorts()) == 0 {
				all = append(all, a.GetIp())
				continue
			}
			for _, p := range ss.GetPorts() {
				all = append(all, fmt.Sprintf("%s:%d", a.GetIp(), p.GetPort()))
			}
		}
	}
	if len(all) == 0 {
		return "<none>"
	}
	if len(all) > 3 {
		return strings.Join(all[:3], ",") + fmt.Sprintf(" + %d more...", len(all)-3)
	}
	return strings.Join(all, ",")
}

// nodeStatus is Ready or NotReady from the Ready condition (Unknown when
// there is none), with SchedulingDisabled when the node is cordoned.
func nodeStatus(n *api.Node) string {
	s := "Unknown"
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			if c.GetStatus() == "True" {
				s = "Ready"
			} else {
				s = "NotReady"
			}
		}
	}
	if n.GetSpec().GetUnschedulable() {
		s += ",SchedulingDisabled"
	}
	return s
}

// formatLabels prints a label map as k=v,k=v sorted by key.
func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func formatSelector(s *api.LabelSelector) string {
	parts := []string{}
	if l := formatLabels(s.GetMatchLabels()); l != "" {
		parts = append(parts, l)
	}
	for _, e := range s.GetMatchExpressions() {
		switch e.GetOperator() {
		case "In", "NotIn":
			parts = append(parts, fmt.Sprintf("%s %s (%s)", e.GetKey(), strings.ToLower(e.GetOperator()), strings.Join(e.GetValues(), ",")))
		case "Exists":
			parts = append(parts, e.GetKey())
		case "DoesNotExist":
			parts = append(parts, "!"+e.GetKey())
		}
	}
	return strings.Join(parts, ",")
}

// ---------------------------------------------------------------- formats

// checkOutput refuses an output format the command does not print.
func checkOutput(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	var names []string
	for _, a := range allowed {
		if a != "" {
			names = append(names, a)
		}
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: %s", format, strings.Join(names, ","))
}

// writeJSON prints JSON re-indented for humans; the content is unchanged.
func writeJSON(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "    "); err != nil {
		return fmt.Errorf("print json: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// writeYAML prints JSON as YAML (keys sorted, as kubectl prints them).
func writeYAML(w io.Writer, raw []byte) error {
	y, err := yaml.JSONToYAML(raw)
	if err != nil {
		return fmt.Errorf("print yaml: %w", err)
	}
	_, err = w.Write(y)
	return err
}

// listJSON encodes a list as the API returns it.
func listJSON(items []json.RawMessage, resourceVersion string) ([]byte, error) {
	if items == nil {
		items = []json.RawMessage{}
	}
	return json.Marshal(struct {
		Items           []json.RawMessage `json:"items"`
		ResourceVersion string            `json:"resourceVersion,omitempty"`
	}{items, resourceVersion})
}

// writeObjects prints objects in a non-table format: one object alone, or a
// list when single is false.
func writeObjects(w io.Writer, format string, items []json.RawMessage, resourceVersion string, single bool) error {
	switch format {
	case "name":
		for _, raw := range items {
			r, k, err := decodeObject(raw)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s/%s\n", qualifiedKind(k), r.GetMetadata().GetName())
		}
		return nil
	case "json", "yaml":
		var data []byte
		if single && len(items) == 1 {
			data = items[0]
		} else {
			var err error
			if data, err = listJSON(items, resourceVersion); err != nil {
				return err
			}
		}
		if format == "json" {
			return writeJSON(w, data)
		}
		return writeYAML(w, data)
	}
	return fmt.Errorf("unknown output format %q", format)
}

// sortEvents orders events oldest first by when they last happened, as
// kubectl does.
func sortEvents(objs []api.Resource) {
	sort.SliceStable(objs, func(i, j int) bool {
		a, _ := objs[i].(*api.Event)
		b, _ := objs[j].(*api.Event)
		return a.GetLastTimestamp() < b.GetLastTimestamp()
	})
}
