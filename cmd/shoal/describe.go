package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

func newDescribeCommand(g *globals) *cobra.Command {
	var selector string
	var all bool
	cmd := &cobra.Command{
		Use:   "describe KIND [NAME...] | KIND/NAME...",
		Short: "Show the details of objects",
		Example: `  shoal describe pod web-1
  shoal describe deploy/web
  shoal describe nodes`,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := parseTargets(args)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			var objs []json.RawMessage
			failed := false
			for _, t := range targets {
				ns := g.namespaceFor(t.kind, all)
				if len(t.names) == 0 {
					l, err := c.ListObjects(ctx, t.kind.Plural, ns, client.ListOptions{AllNamespaces: all, LabelSelector: selector})
					if err != nil {
						return err
					}
					objs = append(objs, l.Items...)
					continue
				}
				for _, name := range t.names {
					raw, err := c.Get(ctx, t.kind.Plural, g.namespaceFor(t.kind, false), name)
					var he *api.HTTPError
					if errors.As(err, &he) {
						fmt.Fprintln(errOut, he.Error())
						failed = true
						continue
					} else if err != nil {
						return err
					}
					objs = append(objs, raw)
				}
			}
			if len(objs) == 0 && !failed {
				fmt.Fprintln(errOut, noResources(targets, g.namespace, all))
			}
			for i, raw := range objs {
				r, _, err := decodeObject(raw)
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(out)
				}
				describe(ctx, out, c, r, now())
			}
			if failed {
				return errReported
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector, such as app=web")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "describe the objects of every namespace")
	return cmd
}

// describer writes "Key:  value" lines aligned in columns; nested sections
// are indented by two spaces a level.
type describer struct {
	tw *tabwriter.Writer
}

func (d *describer) line(level int, key string, value any) {
	fmt.Fprintf(d.tw, "%s%s:\t%v\n", strings.Repeat("  ", level), key, value)
}

// section writes a heading with nothing after it.
func (d *describer) section(level int, key string) {
	fmt.Fprintf(d.tw, "%s%s:\n", strings.Repeat("  ", level), key)
}

// raw writes a line of cells separated by tabs.
func (d *describer) raw(level int, cells ...string) {
	fmt.Fprintf(d.tw, "%s%s\n", strings.Repeat("  ", level), strings.Join(cells, "\t"))
}

// list writes a key with one value a line, or <none>.
func (d *describer) list(level int, key string, values []string) {
	if len(values) == 0 {
		d.line(level, key, "<none>")
		return
	}
	d.line(level, key, values[0])
	for _, v := range values[1:] {
		fmt.Fprintf(d.tw, "%s\t%s\n", strings.Repeat("  ", level), v)
	}
}

func (d *describer) labels(level int, key string, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = k + "=" + m[k]
	}
	d.list(level, key, vals)
}

// timestamp prints an RFC 3339 time as kubectl does, with its age.
func timestamp(ts string, at time.Time) string {
	t, ok := parseTime(ts)
	if !ok {
		return orNone(ts)
	}
	return fmt.Sprintf("%s (%s ago)", t.Format("Mon, 02 Jan 2006 15:04:05 -0700"), humanAge(at.Sub(t)))
}

func boolWord(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func valueString(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	case *structpb.Value_StringValue:
		return k.StringValue
	case nil:
		return ""
	}
	b, _ := v.MarshalJSON()
	return string(b)
}

// describe writes the description of one object.
func describe(ctx context.Context, w io.Writer, c *client.HTTPClient, r api.Resource, at time.Time) {
	d := &describer{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	defer d.tw.Flush()
	m := r.GetMetadata()
	k := api.MustKind(api.KindOf(r))
	d.line(0, "Name", m.GetName())
	if k.Namespaced {
		d.line(0, "Namespace", m.GetNamespace())
	}
	switch v := r.(type) {
	case *api.Pod:
		describePod(d, v, at)
	case *api.Deployment:
		describeMeta(d, m, at)
		describeDeployment(d, v, at)
	case *api.Service:
		describeMeta(d, m, at)
		describeService(ctx, d, c, v)
	case *api.Endpoints:
		describeMeta(d, m, at)
		describeEndpoints(d, v)
	case *api.Node:
		describeNode(ctx, d, c, v, at)
	}
	if m.GetDeletionTimestamp() != "" {
		d.line(0, "Terminating since", timestamp(m.GetDeletionTimestamp(), at))
	}
	describeEvents(ctx, d, c, r, k, at)
}

// describeEvents lists the events about r, as kubectl describe does.
func describeEvents(ctx context.Context, d *describer, c *client.HTTPClient, r api.Resource, k api.KindInfo, at time.Time) {
	if c == nil || k.Kind == "Event" {
		return
	}
	m := r.GetMetadata()
	ns := m.GetNamespace()
	if ns == "" {
		ns = api.DefaultNamespace
	}
	raws, err := c.List(ctx, "events", ns, false, "")
	if err != nil {
		d.line(0, "Events", "<unavailable: "+err.Error()+">")
		return
	}
	var evs []api.Resource
	for _, raw := range raws {
		o, _, err := decodeObject(raw)
		if err != nil {
			continue
		}
		e, ok := o.(*api.Event)
		ref := e.GetInvolvedObject()
		if ok && ref.GetKind() == k.Kind && ref.GetName() == m.GetName() && (ref.GetUid() == "" || ref.GetUid() == m.GetUid()) {
			evs = append(evs, e)
		}
	}
	if len(evs) == 0 {
		d.line(0, "Events", "<none>")
		return
	}
	sortEvents(evs)
	d.section(0, "Events")
	d.raw(1, "Type", "Reason", "Age", "From", "Message")
	d.raw(1, "----", "------", "---", "----", "-------")
	for _, o := range evs {
		e := o.(*api.Event)
		seen := age(e.GetLastTimestamp(), at)
		if e.GetCount() > 1 {
			seen = fmt.Sprintf("%s (x%d over %s)", seen, e.GetCount(), age(e.GetFirstTimestamp(), at))
		}
		d.raw(1, e.GetType(), e.GetReason(), seen, e.GetSource().GetComponent(), e.GetMessage())
	}
}

func describeMeta(d *describer, m *api.ObjectMeta, at time.Time) {
	d.labels(0, "Labels", m.GetLabels())
	d.labels(0, "Annotations", m.GetAnnotations())
	d.line(0, "CreationTimestamp", timestamp(m.GetCreationTimestamp(), at))
	d.line(0, "ResourceVersion", orNone(m.GetResourceVersion()))
	for _, o := range m.GetOwnerReferences() {
		if o.GetController() {
			d.line(0, "Controlled By", o.GetKind()+"/"+o.GetName())
		}
	}
}

func describePod(d *describer, p *api.Pod, at time.Time) {
	spec, st := p.GetSpec(), p.GetStatus()
	node := orNone(spec.GetNodeName())
	if st.GetHostIp() != "" {
		node += "/" + st.GetHostIp()
	}
	d.line(0, "Node", node)
	if st.GetStartTime() != "" {
		d.line(0, "Start Time", timestamp(st.GetStartTime(), at))
	}
	describeMeta(d, p.GetMetadata(), at)
	d.line(0, "Status", podStatus(p))
	if st.GetReason() != "" {
		d.line(0, "Reason", st.GetReason())
	}
	if st.GetMessage() != "" {
		d.line(0, "Message", st.GetMessage())
	}
	d.line(0, "IP", orNone(st.GetPodIp()))
	statuses := map[string]*api.ContainerStatus{}
	for _, cs := range st.GetContainerStatuses() {
		statuses[cs.GetName()] = cs
	}
	d.section(0, "Containers")
	for _, c := range spec.GetContainers() {
		describeContainer(d, 1, c, statuses[c.GetName()], at)
	}
	if len(st.GetConditions()) > 0 {
		d.section(0, "Conditions")
		d.raw(1, "Type", "Status", "Reason")
		for _, c := range st.GetConditions() {
			d.raw(1, c.GetType(), c.GetStatus(), c.GetReason())
		}
	}
	describeVolumes(d, spec.GetVolumes())
	d.labels(0, "Node-Selectors", spec.GetNodeSelector())
	var tols []string
	for _, t := range spec.GetTolerations() {
		s := t.GetKey()
		if t.GetOperator() == "Exists" && s == "" {
			s = "op=Exists"
		} else if t.GetValue() != "" {
			s += "=" + t.GetValue()
		}
		if t.GetEffect() != "" {
			s += ":" + t.GetEffect()
		}
		if t.TolerationSeconds != nil {
			s += fmt.Sprintf(" for %ds", t.GetTolerationSeconds())
		}
		tols = append(tols, s)
	}
	d.list(0, "Tolerations", tols)
}

func describeContainer(d *describer, level int, c *api.Container, cs *api.ContainerStatus, at time.Time) {
	d.section(level, c.GetName())
	l := level + 1
	if cs != nil && cs.GetContainerId() != "" {
		d.line(l, "Container ID", cs.GetContainerId())
	}
	d.line(l, "Image", c.GetImage())
	if cs != nil && cs.GetImageId() != "" {
		d.line(l, "Image ID", cs.GetImageId())
	}
	var ports []string
	for _, p := range c.GetPorts() {
		proto := p.GetProtocol()
		if proto == "" {
			proto = "TCP"
		}
		s := fmt.Sprintf("%d/%s", p.GetContainerPort(), proto)
		if p.GetName() != "" {
			s += " (" + p.GetName() + ")"
		}
		ports = append(ports, s)
	}
	d.line(l, "Ports", orNone(strings.Join(ports, ", ")))
	if len(c.GetCommand()) > 0 {
		d.list(l, "Command", c.GetCommand())
	}
	if len(c.GetArgs()) > 0 {
		d.list(l, "Args", c.GetArgs())
	}
	if cs != nil {
		describeState(d, l, "State", cs.GetState(), at)
		if ls := cs.GetLastState(); ls.GetRunning() != nil || ls.GetTerminated() != nil || ls.GetWaiting() != nil {
			describeState(d, l, "Last State", ls, at)
		}
		d.line(l, "Ready", boolWord(cs.GetReady()))
		d.line(l, "Restart Count", cs.GetRestartCount())
	}
	if res := c.GetResources(); len(res.GetLimits()) > 0 || len(res.GetRequests()) > 0 {
		for _, part := range []struct {
			name string
			m    map[string]string
		}{{"Limits", res.GetLimits()}, {"Requests", res.GetRequests()}} {
			if len(part.m) == 0 {
				continue
			}
			d.section(l, part.name)
			keys := make([]string, 0, len(part.m))
			for k := range part.m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				d.line(l+1, k, part.m[k])
			}
		}
	}
	for _, p := range []struct {
		name  string
		probe *api.Probe
	}{{"Liveness", c.GetLivenessProbe()}, {"Readiness", c.GetReadinessProbe()}, {"Startup", c.GetStartupProbe()}} {
		if p.probe != nil {
			d.line(l, p.name, probeString(p.probe))
		}
	}
	var env []string
	for _, e := range c.GetEnv() {
		env = append(env, e.GetName()+": "+e.GetValue())
	}
	if len(env) == 0 {
		d.line(l, "Environment", "<none>")
	} else {
		d.section(l, "Environment")
		for _, e := range env {
			d.raw(l+1, e)
		}
	}
	var mounts []string
	for _, m := range c.GetVolumeMounts() {
		s := m.GetMountPath() + " from " + m.GetName()
		if m.GetReadOnly() {
			s += " (ro)"
		} else {
			s += " (rw)"
		}
		mounts = append(mounts, s)
	}
	d.list(l, "Mounts", mounts)
}

func describeState(d *describer, level int, key string, s *api.ContainerState, at time.Time) {
	switch {
	case s.GetRunning() != nil:
		d.line(level, key, "Running")
		d.line(level+1, "Started", timestamp(s.GetRunning().GetStartedAt(), at))
	case s.GetTerminated() != nil:
		t := s.GetTerminated()
		d.line(level, key, "Terminated")
		if t.GetReason() != "" {
			d.line(level+1, "Reason", t.GetReason())
		}
		if t.GetMessage() != "" {
			d.line(level+1, "Message", t.GetMessage())
		}
		d.line(level+1, "Exit Code", t.GetExitCode())
		if t.GetSignal() != 0 {
			d.line(level+1, "Signal", t.GetSignal())
		}
		d.line(level+1, "Started", timestamp(t.GetStartedAt(), at))
		d.line(level+1, "Finished", timestamp(t.GetFinishedAt(), at))
	case s.GetWaiting() != nil:
		d.line(level, key, "Waiting")
		if s.GetWaiting().GetReason() != "" {
			d.line(level+1, "Reason", s.GetWaiting().GetReason())
		}
		if s.GetWaiting().GetMessage() != "" {
			d.line(level+1, "Message", s.GetWaiting().GetMessage())
		}
	default:
		d.line(level, key, "<unknown>")
	}
}

// probeString sums up a probe as kubectl does:
// http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3
func probeString(p *api.Probe) string {
	var what string
	switch {
	case p.GetHttpGet() != nil:
		h := p.GetHttpGet()
		scheme := strings.ToLower(h.GetScheme())
		if scheme == "" {
			scheme = "http"
		}
		what = fmt.Sprintf("http-get %s://%s:%s%s", scheme, h.GetHost(), valueString(h.GetPort()), h.GetPath())
	case p.GetTcpSocket() != nil:
		what = fmt.Sprintf("tcp-socket %s:%s", p.GetTcpSocket().GetHost(), valueString(p.GetTcpSocket().GetPort()))
	case p.GetExec() != nil:
		what = "exec " + fmt.Sprintf("%q", p.GetExec().GetCommand())
	default:
		what = "unknown"
	}
	return fmt.Sprintf("%s delay=%ds timeout=%ds period=%ds #success=%d #failure=%d", what,
		p.GetInitialDelaySeconds(), p.GetTimeoutSeconds(), p.GetPeriodSeconds(), p.GetSuccessThreshold(), p.GetFailureThreshold())
}

func describeVolumes(d *describer, vols []*api.Volume) {
	if len(vols) == 0 {
		d.line(0, "Volumes", "<none>")
		return
	}
	d.section(0, "Volumes")
	for _, v := range vols {
		d.section(1, v.GetName())
		switch {
		case v.GetEmptyDir() != nil:
			d.line(2, "Type", "EmptyDir (a temporary directory that shares a pod's lifetime)")
			d.line(2, "Medium", v.GetEmptyDir().GetMedium())
			d.line(2, "SizeLimit", orNone(v.GetEmptyDir().GetSizeLimit()))
		case v.GetHostPath() != nil:
			d.line(2, "Type", "HostPath (bare host directory volume)")
			d.line(2, "Path", v.GetHostPath().GetPath())
			d.line(2, "HostPathType", v.GetHostPath().GetType())
		}
	}
}

func describeDeployment(d *describer, dep *api.Deployment, at time.Time) {
	spec, st := dep.GetSpec(), dep.GetStatus()
	d.line(0, "Selector", orNone(formatSelector(spec.GetSelector())))
	desired := int32(1)
	if spec.Replicas != nil {
		desired = spec.GetReplicas()
	}
	d.line(0, "Replicas", fmt.Sprintf("%d desired | %d updated | %d total | %d available | %d unavailable",
		desired, st.GetUpdatedReplicas(), st.GetReplicas(), st.GetAvailableReplicas(), st.GetUnavailableReplicas()))
	strategy := spec.GetStrategy().GetType()
	if strategy == "" {
		strategy = "RollingUpdate"
	}
	d.line(0, "StrategyType", strategy)
	d.line(0, "MinReadySeconds", spec.GetMinReadySeconds())
	if strategy == "RollingUpdate" {
		ru := spec.GetStrategy().GetRollingUpdate()
		mu, ms := valueString(ru.GetMaxUnavailable()), valueString(ru.GetMaxSurge())
		if mu == "" {
			mu = "25%"
		}
		if ms == "" {
			ms = "25%"
		}
		d.line(0, "RollingUpdateStrategy", fmt.Sprintf("%s max unavailable, %s max surge", mu, ms))
	}
	if spec.GetPaused() {
		d.line(0, "Paused", "True")
	}
	d.section(0, "Pod Template")
	tmpl := spec.GetTemplate()
	d.labels(1, "Labels", tmpl.GetMetadata().GetLabels())
	d.section(1, "Containers")
	for _, c := range tmpl.GetSpec().GetContainers() {
		describeContainer(d, 2, c, nil, at)
	}
	if len(st.GetConditions()) > 0 {
		d.section(0, "Conditions")
		d.raw(1, "Type", "Status", "Reason")
		for _, c := range st.GetConditions() {
			d.raw(1, c.GetType(), c.GetStatus(), c.GetReason())
		}
	}
	d.line(0, "ObservedGeneration", st.GetObservedGeneration())
}

func describeService(ctx context.Context, d *describer, c *client.HTTPClient, s *api.Service) {
	spec := s.GetSpec()
	d.line(0, "Selector", orNone(formatLabels(spec.GetSelector())))
	typ := spec.GetType()
	if typ == "" {
		typ = "ClusterIP"
	}
	d.line(0, "Type", typ)
	d.line(0, "IP", orNone(spec.GetClusterIp()))
	for _, p := range spec.GetPorts() {
		proto := p.GetProtocol()
		if proto == "" {
			proto = "TCP"
		}
		name := p.GetName()
		if name == "" {
			name = "<unset>"
		}
		d.line(0, "Port", fmt.Sprintf("%s  %d/%s", name, p.GetPort(), proto))
		target := valueString(p.GetTargetPort())
		if target == "" {
			target = strconv.Itoa(int(p.GetPort()))
		}
		d.line(0, "TargetPort", target+"/"+proto)
		if p.GetNodePort() != 0 {
			d.line(0, "NodePort", fmt.Sprintf("%s  %d/%s", name, p.GetNodePort(), proto))
		}
	}
	if c != nil {
		eps := "<none>"
		if raw, err := c.Get(ctx, "endpoints", s.GetMetadata().GetNamespace(), s.GetMetadata().GetName()); err == nil {
			if r, _, err := decodeObject(raw); err == nil {
				if ep, ok := r.(*api.Endpoints); ok {
					eps = endpointsSummary(ep)
				}
			}
		}
		d.line(0, "Endpoints", eps)
	}
	affinity := spec.GetSessionAffinity()
	if affinity == "" {
		affinity = "None"
	}
	d.line(0, "Session Affinity", affinity)
}

func describeEndpoints(d *describer, e *api.Endpoints) {
	if len(e.GetSubsets()) == 0 {
		d.line(0, "Subsets", "<none>")
		return
	}
	d.section(0, "Subsets")
	for _, ss := range e.GetSubsets() {
		var ready, notReady []string
		for _, a := range ss.GetAddresses() {
			ready = append(ready, a.GetIp())
		}
		for _, a := range ss.GetNotReadyAddresses() {
			notReady = append(notReady, a.GetIp())
		}
		d.line(1, "Addresses", orNone(strings.Join(ready, ",")))
		d.line(1, "NotReadyAddresses", orNone(strings.Join(notReady, ",")))
		d.section(1, "Ports")
		d.raw(2, "Name", "Port", "Protocol")
		d.raw(2, "----", "----", "--------")
		for _, p := range ss.GetPorts() {
			d.raw(2, orNone(p.GetName()), strconv.Itoa(int(p.GetPort())), p.GetProtocol())
		}
	}
}

func describeNode(ctx context.Context, d *describer, c *client.HTTPClient, n *api.Node, at time.Time) {
	st := n.GetStatus()
	d.line(0, "Roles", orNone(st.GetRaftRole()))
	describeMeta(d, n.GetMetadata(), at)
	d.line(0, "Node ID", orNone(st.GetNodeId()))
	d.line(0, "API Endpoint", orNone(st.GetApiEndpoint()))
	var taints []string
	for _, t := range n.GetSpec().GetTaints() {
		s := t.GetKey()
		if t.GetValue() != "" {
			s += "=" + t.GetValue()
		}
		taints = append(taints, s+":"+t.GetEffect())
	}
	d.list(0, "Taints", taints)
	d.line(0, "Unschedulable", n.GetSpec().GetUnschedulable())
	d.line(0, "PodCIDR", orNone(n.GetSpec().GetPodCidr()))
	d.section(0, "Conditions")
	d.raw(1, "Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message")
	d.raw(1, "----", "------", "-----------------", "------------------", "------", "-------")
	for _, c := range st.GetConditions() {
		d.raw(1, c.GetType(), c.GetStatus(), orNone(c.GetLastHeartbeatTime()), orNone(c.GetLastTransitionTime()), c.GetReason(), c.GetMessage())
	}
	d.section(0, "Addresses")
	for _, a := range st.GetAddresses() {
		d.line(1, a.GetType(), a.GetAddress())
	}
	for _, part := range []struct {
		name string
		m    map[string]string
	}{{"Capacity", st.GetCapacity()}, {"Allocatable", st.GetAllocatable()}} {
		d.section(0, part.name)
		keys := make([]string, 0, len(part.m))
		for k := range part.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.line(1, k, part.m[k])
		}
	}
	info := st.GetNodeInfo()
	d.section(0, "System Info")
	d.line(1, "Machine ID", info.GetMachineId())
	d.line(1, "Kernel Version", info.GetKernelVersion())
	d.line(1, "OS Image", info.GetOsImage())
	d.line(1, "Operating System", info.GetOperatingSystem())
	d.line(1, "Architecture", info.GetArchitecture())
	d.line(1, "Container Runtime Version", info.GetContainerRuntimeVersion())
	d.line(1, "Shoal Version", info.GetShoalVersion())
	if c == nil {
		return
	}
	l, err := c.ListObjects(ctx, "pods", "", client.ListOptions{AllNamespaces: true, NodeName: n.GetMetadata().GetName()})
	if err != nil {
		return
	}
	d.line(0, "Pods", fmt.Sprintf("(%d in total)", len(l.Items)))
	if len(l.Items) > 0 {
		d.raw(1, "Namespace", "Name", "Status", "Age")
		d.raw(1, "---------", "----", "------", "---")
		for _, raw := range l.Items {
			r, _, err := decodeObject(raw)
			p, ok := r.(*api.Pod)
			if err != nil || !ok {
				continue
			}
			d.raw(1, p.GetMetadata().GetNamespace(), p.GetMetadata().GetName(), podStatus(p), age(p.GetMetadata().GetCreationTimestamp(), at))
		}
	}
}
