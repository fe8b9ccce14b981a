package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoalproj/shoal/api"
)

// probeResult follows one probe's outcomes with Kubernetes' thresholds: the
// result turns true after successThreshold successes in a row and false
// after failureThreshold failures in a row.
type probeResult struct {
	ok        bool
	successes int
	failures  int
}

// observe records one outcome and reports whether the result changed.
func (r *probeResult) observe(success bool, successThreshold, failureThreshold int32) bool {
	if success {
		r.failures = 0
		r.successes++
		if !r.ok && int32(r.successes) >= max(successThreshold, 1) {
			r.ok = true
			return true
		}
		return false
	}
	r.successes = 0
	r.failures++
	if r.ok && int32(r.failures) >= max(failureThreshold, 1) {
		r.ok = false
		return true
	}
	return false
}

// probeTarget is what a probe runs against.
type probeTarget struct {
	podIP     string
	container *api.Container
	exec      func(ctx context.Context, cmd []string) (int, error)
	http      *http.Client
}

// probePort resolves a probe's port: a number, or the name of one of the
// container's ports.
func probePort(v *structpb.Value, c *api.Container) (int, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return int(k.NumberValue), nil
	case *structpb.Value_StringValue:
		if n, err := strconv.Atoi(k.StringValue); err == nil {
			return n, nil
		}
		for _, p := range c.GetPorts() {
			if p.Name == k.StringValue {
				return int(p.ContainerPort), nil
			}
		}
		return 0, fmt.Errorf("no container port named %q", k.StringValue)
	}
	return 0, fmt.Errorf("probe port missing")
}

// runProbe runs one probe once: nil is success.
func runProbe(ctx context.Context, p *api.Probe, t probeTarget) error {
	timeout := time.Duration(max(p.GetTimeoutSeconds(), 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.GetExec() != nil:
		code, err := t.exec(ctx, p.GetExec().GetCommand())
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exit code %d", code)
		}
		return nil
	case p.GetHttpGet() != nil:
		g := p.GetHttpGet()
		port, err := probePort(g.Port, t.container)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = t.podIP
		}
		scheme := strings.ToLower(g.Scheme)
		if scheme == "" {
			scheme = "http"
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, strconv.Itoa(port))+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "shoal-probe/1")
		for _, h := range g.HttpHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		resp, err := t.http.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	case p.GetTcpSocket() != nil:
		port, err := probePort(p.GetTcpSocket().Port, t.container)
		if err != nil {
			return err
		}
		host := p.GetTcpSocket().Host
		if host == "" {
			host = t.podIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return fmt.Errorf("probe has no handler")
}

// newProbeHTTPClient keeps no connections between probes, as kubelet does.
func newProbeHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// containerProbes runs a running container's probes until ctx ends: the
// startup probe first, then liveness and readiness. It reports readiness
// changes through setReady and a failed liveness or startup probe through
// kill, which stops the container so that its restart policy applies.
func containerProbes(ctx context.Context, c *api.Container, t probeTarget, setReady func(bool), kill func(reason string)) {
	every := func(p *api.Probe) time.Duration { return time.Duration(max(p.GetPeriodSeconds(), 1)) * time.Second }
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if p := c.StartupProbe; p != nil {
		if !wait(time.Duration(p.InitialDelaySeconds) * time.Second) {
			return
		}
		for failures := 0; ; {
			if runProbe(ctx, p, t) == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if failures++; int32(failures) >= max(p.GetFailureThreshold(), 1) {
				kill("startup probe failed")
				return
			}
			if !wait(every(p)) {
				return
			}
		}
	}
	done := make(chan struct{}, 2)
	if p := c.LivenessProbe; p != nil {
		go func() {
			defer func() { done <- struct{}{} }()
			if !wait(time.Duration(p.InitialDelaySeconds) * time.Second) {
				return
			}
			r := probeResult{ok: true}
			for {
				if r.observe(runProbe(ctx, p, t) == nil, 1, p.GetFailureThreshold()) && !r.ok {
					if ctx.Err() == nil {
						kill("liveness probe failed")
					}
					return
				}
				if !wait(every(p)) {
					return
				}
			}
		}()
	} else {
		done <- struct{}{}
	}
	if p := c.ReadinessProbe; p != nil {
		go func() {
			defer func() { done <- struct{}{} }()
			if !wait(time.Duration(p.InitialDelaySeconds) * time.Second) {
				return
			}
			var r probeResult
			setReady(false)
			// Until the first success, probe again soon rather than a
			// whole period later: a server that takes 50 ms to listen
			// should not keep its pod out of service for 10 s.
			// successThreshold still counts the same probes.
			soon, everReady := 50*time.Millisecond, false
			for {
				if r.observe(runProbe(ctx, p, t) == nil, p.GetSuccessThreshold(), p.GetFailureThreshold()) {
					setReady(r.ok)
				}
				everReady = everReady || r.ok
				next := every(p)
				if !everReady && soon < next {
					next, soon = soon, soon*2
				}
				if !wait(next) {
					return
				}
			}
		}()
	} else {
		setReady(true)
		done <- struct{}{}
	}
	<-done
	<-done
}
