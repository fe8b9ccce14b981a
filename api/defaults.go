package api

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Defaults, as Kubernetes fills them.
const (
	DefaultTerminationGracePeriodSeconds = 30
	DefaultReplicas                      = 1
	DefaultRevisionHistoryLimit          = 10
	DefaultProgressDeadlineSeconds       = 600
	DefaultMaxSurge                      = "25%"
	DefaultMaxUnavailable                = "25%"
	DefaultClientIPTimeoutSeconds        = 10800
	DefaultProbeTimeoutSeconds           = 1
	DefaultProbePeriodSeconds            = 10
	DefaultProbeSuccessThreshold         = 1
	DefaultProbeFailureThreshold         = 3
)

// Default fills the fields a user may leave out with Kubernetes' defaults:
// the namespace, the restart policy, the image pull policy, probe timings,
// replicas and rollout strategy, service type and target ports... It only
// fills what is empty, so applying it twice changes nothing.
func Default(r Resource) {
	switch o := r.(type) {
	case *Pod:
		if o == nil {
			return
		}
		o.Metadata = defaultMeta(o.Metadata, true)
		if o.Spec == nil {
			o.Spec = &PodSpec{}
		}
		defaultPodSpec(o.Spec)
	case *Deployment:
		if o == nil {
			return
		}
		o.Metadata = defaultMeta(o.Metadata, true)
		if o.Spec == nil {
			o.Spec = &DeploymentSpec{}
		}
		defaultDeploymentSpec(o.Spec)
	case *Service:
		if o == nil {
			return
		}
		o.Metadata = defaultMeta(o.Metadata, true)
		if o.Spec == nil {
			o.Spec = &ServiceSpec{}
		}
		defaultServiceSpec(o.Spec)
	case *Endpoints:
		if o == nil {
			return
		}
		o.Metadata = defaultMeta(o.Metadata, true)
		for _, s := range o.Subsets {
			for _, p := range s.GetPorts() {
				if p != nil && p.Protocol == "" {
					p.Protocol = "TCP"
				}
			}
		}
	case *Node:
		if o == nil {
			return
		}
		o.Metadata = defaultMeta(o.Metadata, false)
	case *ControllerRevision:
		if o == nil {
			return
		}
		o.Metadata = defaultMeta(o.Metadata, true)
	case *Event:
		if o == nil {
			return
		}
		o.Metadata = defaultMeta(o.Metadata, true)
		if o.Type == "" {
			o.Type = "Normal"
		}
	}
}

func defaultMeta(m *ObjectMeta, namespaced bool) *ObjectMeta {
	if m == nil {
		m = &ObjectMeta{}
	}
	if namespaced && m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
	return m
}

func defaultPodSpec(s *PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = "Always"
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = proto.Int32(DefaultTerminationGracePeriodSeconds)
	}
	for _, c := range s.Containers {
		if c == nil {
			continue
		}
		for _, p := range c.Ports {
			if p != nil && p.Protocol == "" {
				p.Protocol = "TCP"
			}
		}
		if c.ImagePullPolicy == "" && c.Image != "" {
			if imageIsLatest(c.Image) {
				c.ImagePullPolicy = "Always"
			} else {
				c.ImagePullPolicy = "IfNotPresent"
			}
		}
		defaultProbe(c.LivenessProbe)
		defaultProbe(c.ReadinessProbe)
		defaultProbe(c.StartupProbe)
	}
}

// imageIsLatest tells whether an image reference names the tag "latest",
// or no tag and no digest (which means latest).
func imageIsLatest(image string) bool {
	ref, _, hasDigest := strings.Cut(image, "@")
	tag := ""
	if colon := strings.LastIndexByte(ref, ':'); colon > strings.LastIndexByte(ref, '/') {
		tag = ref[colon+1:]
	}
	return tag == "latest" || (tag == "" && !hasDigest)
}

func defaultProbe(p *Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = DefaultProbeTimeoutSeconds
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = DefaultProbePeriodSeconds
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultProbeSuccessThreshold
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultProbeFailureThreshold
	}
	if h := p.HttpGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = "HTTP"
		}
	}
}

func defaultDeploymentSpec(s *DeploymentSpec) {
	if s.Replicas == nil {
		s.Replicas = proto.Int32(DefaultReplicas)
	}
	if s.Strategy == nil {
		s.Strategy = &DeploymentStrategy{}
	}
	if s.Strategy.Type == "" {
		s.Strategy.Type = "RollingUpdate"
	}
	if s.Strategy.Type == "RollingUpdate" {
		if s.Strategy.RollingUpdate == nil {
			s.Strategy.RollingUpdate = &RollingUpdateDeployment{}
		}
		ru := s.Strategy.RollingUpdate
		if ru.MaxSurge == nil {
			ru.MaxSurge = structpb.NewStringValue(DefaultMaxSurge)
		}
		if ru.MaxUnavailable == nil {
			ru.MaxUnavailable = structpb.NewStringValue(DefaultMaxUnavailable)
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = proto.Int32(DefaultRevisionHistoryLimit)
	}
	if s.ProgressDeadlineSeconds == nil {
		s.ProgressDeadlineSeconds = proto.Int32(DefaultProgressDeadlineSeconds)
	}
	if s.Template != nil {
		if s.Template.Spec == nil {
			s.Template.Spec = &PodSpec{}
		}
		defaultPodSpec(s.Template.Spec)
	}
}

func defaultServiceSpec(s *ServiceSpec) {
	if s.Type == "" {
		s.Type = "ClusterIP"
	}
	if s.SessionAffinity == "" {
		s.SessionAffinity = "None"
	}
	if s.SessionAffinity == "ClientIP" {
		if s.SessionAffinityConfig == nil {
			s.SessionAffinityConfig = &SessionAffinityConfig{}
		}
		if s.SessionAffinityConfig.ClientIp == nil {
			s.SessionAffinityConfig.ClientIp = &ClientIPConfig{}
		}
		if s.SessionAffinityConfig.ClientIp.TimeoutSeconds == nil {
			s.SessionAffinityConfig.ClientIp.TimeoutSeconds = proto.Int32(DefaultClientIPTimeoutSeconds)
		}
	}
	for _, p := range s.Ports {
		if p == nil {
			continue
		}
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		if p.Port != 0 && targetPortUnset(p.TargetPort) {
			p.TargetPort = structpb.NewNumberValue(float64(p.Port))
		}
	}
}

// targetPortUnset: no target port, or 0 or "", which Kubernetes also
// replaces with the port.
func targetPortUnset(v *structpb.Value) bool {
	switch k := v.GetKind().(type) {
	case nil:
		return true
	case *structpb.Value_NumberValue:
		return k.NumberValue == 0
	case *structpb.Value_StringValue:
		return k.StringValue == ""
	}
	return false
}
