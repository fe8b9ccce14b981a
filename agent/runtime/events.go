package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	eventtypes "github.com/containerd/containerd/api/events"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
)

// How exits and OOM kills are known, also across restarts of the agent:
//
//   - One goroutine (monitor) follows containerd's /tasks/exit and /tasks/oom
//     events for the namespace from New to Close.
//   - A /tasks/oom event marks the container at once with a label
//     (io.shoal.runtime.oom-killed=true). Labels live in containerd's
//     database, so the mark survives the agent and containerd.
//   - An exit of a container's main process is recorded on the container
//     (exit code and time, and the OOM mark when the cgroup's oom_kill
//     counter, read through the shim's metrics, is above zero: this covers
//     an OOM event that comes after the exit or was never seen) and sent to
//     every Events subscriber. The cgroup exists until the task is deleted,
//     so the counter can be read after the exit.
//   - Each time the subscription is (re)established, for instance after
//     containerd restarted, the monitor first proves it live (it publishes
//     an event of its own and waits to receive it) and then sweeps: every
//     exited task whose exit is not recorded yet (it exited while no agent
//     or no subscription was there) is recorded and sent as if its event
//     had just arrived. No exit is lost, and none is recorded twice (the
//     recorded exit time tells).
//   - Status of an exited task not yet recorded asks the cgroup directly.

const (
	topicExit = "/tasks/exit"
	topicOOM  = "/tasks/oom"
	topicSync = "/shoal/runtime/sync"
)

// monitor follows containerd's events until Close, subscribing again (with
// back-off) when the stream breaks. live is closed once the first
// subscription is proven live.
func (r *Containerd) monitor(live chan struct{}) {
	defer r.wg.Done()
	backoff := 100 * time.Millisecond
	var once sync.Once
	markLive := func() { once.Do(func() { close(live) }) }
	for r.ctx.Err() == nil {
		start := time.Now()
		err := r.follow(markLive)
		if r.ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = 100 * time.Millisecond
		}
		r.log.Warn("containerd event stream ended; subscribing again", "err", err, "after", backoff)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// follow runs one subscription until it breaks.
func (r *Containerd) follow(markLive func()) error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	nsf := fmt.Sprintf("namespace==%q,", r.ns)
	evc, errc := r.client.Subscribe(ctx,
		nsf+fmt.Sprintf("topic==%q", topicExit),
		nsf+fmt.Sprintf("topic==%q", topicOOM),
		nsf+fmt.Sprintf("topic==%q", topicSync),
	)
	// The subscription is registered by containerd some time after
	// Subscribe returns; publish our own event until it comes back.
	token := newID()
	publish := func() error {
		return r.client.EventService().Publish(ctx, topicSync, &eventtypes.NamespaceUpdate{Name: token})
	}
	if err := publish(); err != nil {
		return fmt.Errorf("publish sync event: %w", err)
	}
	syncDeadline := time.NewTimer(10 * time.Second)
	defer syncDeadline.Stop()
	republish := time.NewTicker(50 * time.Millisecond)
	defer republish.Stop()
	synced := false
	for {
		select {
		case err := <-errc:
			if err == nil {
				err = errors.New("closed")
			}
			return err
		case <-syncDeadline.C:
			if !synced {
				return errors.New("own sync event not received within 10s")
			}
		case <-republish.C:
			if !synced {
				if err := publish(); err != nil {
					return fmt.Errorf("publish sync event: %w", err)
				}
			}
		case env, ok := <-evc:
			if !ok {
				return errors.New("event channel closed")
			}
			ev, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				r.log.Warn("undecodable event", "topic", env.Topic, "err", err)
				continue
			}
			switch e := ev.(type) {
			case *eventtypes.NamespaceUpdate:
				if env.Topic == topicSync && e.Name == token && !synced {
					synced = true
					republish.Stop()
					r.sweep(ctx)
					markLive()
				}
			case *eventtypes.TaskOOM:
				r.markOOM(ctx, e.ContainerID)
			case *eventtypes.TaskExit:
				if e.ID != e.ContainerID {
					continue // an exec'd process
				}
				at := time.Time{}
				if e.ExitedAt != nil {
					at = e.ExitedAt.AsTime()
				}
				r.recordExit(ctx, e.ContainerID, e.ExitStatus, at)
			}
		}
	}
}

// markOOM records an OOM kill on the container.
func (r *Containerd) markOOM(ctx context.Context, id string) {
	c, err := r.client.ContainerService().Get(ctx, id)
	if err != nil || c.Labels[labelManaged] != "true" {
		return
	}
	if err := r.setLabels(ctx, id, map[string]string{labelOOMKilled: "true"}); err != nil {
		r.log.Warn("OOM kill not recorded", "container", id, "err", err)
	}
}

func (r *Containerd) setLabels(ctx context.Context, id string, labels map[string]string) error {
	c := containers.Container{ID: id, Labels: labels}
	var paths []string
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	_, err := r.client.ContainerService().Update(ctx, c, paths...)
	return err
}

// recordExit records the exit of a container's main process and tells the
// subscribers, once per exit.
func (r *Containerd) recordExit(ctx context.Context, id string, code uint32, at time.Time) {
	ev := Event{Type: EventExit, ContainerID: id, ExitCode: int32(code), FinishedAt: at}
	c, err := r.client.ContainerService().Get(ctx, id)
	switch {
	case errdefs.IsNotFound(err):
		// Removed already (Remove kills and deletes): still an exit.
		r.broadcast(ev)
		return
	case err != nil:
		r.log.Warn("exit not recorded", "container", id, "err", err)
		r.broadcast(ev)
		return
	}
	if c.Labels[labelManaged] != "true" {
		return
	}
	atText := at.UTC().Format(time.RFC3339Nano)
	if c.Labels[labelFinishedAt] == atText {
		return // recorded by a sweep already
	}
	ev.Labels = labelsOf(c.Labels)
	ev.OOMKilled = c.Labels[labelOOMKilled] == "true" || r.oomKills(ctx, id) > 0
	labels := map[string]string{
		labelFinishedAt: atText,
		labelExitCode:   strconv.FormatUint(uint64(code), 10),
	}
	if ev.OOMKilled {
		labels[labelOOMKilled] = "true"
	}
	if err := r.setLabels(ctx, id, labels); err != nil && !errdefs.IsNotFound(err) {
		r.log.Warn("exit not recorded", "container", id, "err", err)
	}
	r.broadcast(ev)
}

// sweep records the exits that happened while nobody listened.
func (r *Containerd) sweep(ctx context.Context) {
	cs, err := r.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q==true", labelManaged))
	if err != nil {
		r.log.Warn("exit sweep: list containers", "err", err)
		return
	}
	resp, err := r.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		r.log.Warn("exit sweep: list tasks", "err", err)
		return
	}
	procs := map[string]*tasktypes.Process{}
	for _, p := range resp.Tasks {
		procs[p.ID] = p
	}
	for _, c := range cs {
		p := procs[c.ID]
		if p == nil || p.Status != tasktypes.Status_STOPPED || p.ExitedAt == nil {
			continue
		}
		at := p.ExitedAt.AsTime()
		if c.Labels[labelFinishedAt] == at.UTC().Format(time.RFC3339Nano) {
			continue
		}
		r.recordExit(ctx, c.ID, p.ExitStatus, at)
	}
}

// oomKills is the number of OOM kills in the container's memory cgroup, read
// through the shim's metrics (cgroup v1 memory.oom_control or v2
// memory.events); 0 when unknown.
func (r *Containerd) oomKills(ctx context.Context, id string) uint64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := r.client.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: []string{"id==" + id}})
	if err != nil {
		r.log.Debug("no metrics", "container", id, "err", errgrpc.ToNative(err))
		return 0
	}
	for _, m := range resp.Metrics {
		if m.ID != id || m.Data == nil {
			continue
		}
		v, err := typeurl.UnmarshalAny(m.Data)
		if err != nil {
			continue
		}
		switch s := v.(type) {
		case *cgroup1stats.Metrics:
			if s.MemoryOomControl != nil {
				return s.MemoryOomControl.OomKill
			}
		case *cgroup2stats.Metrics:
			if s.MemoryEvents != nil {
				return s.MemoryEvents.OomKill
			}
		}
	}
	return 0
}

// ---- subscribers

// subscriber is one Events caller: an unbounded queue in front of its
// channel, so that a slow reader never makes the monitor drop or block.
type subscriber struct {
	mu    sync.Mutex
	queue []Event
	wake  chan struct{}
	out   chan Event
	ctx   context.Context
}

// Events implements Runtime.
func (r *Containerd) Events(ctx context.Context) (<-chan Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("runtime closed")
	}
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	s := &subscriber{wake: make(chan struct{}, 1), out: make(chan Event), ctx: sctx}
	r.subs[s] = struct{}{}
	go func() {
		defer close(s.out)
		defer stop()
		defer cancel()
		for {
			s.mu.Lock()
			var next *Event
			if len(s.queue) > 0 {
				e := s.queue[0]
				s.queue = s.queue[1:]
				next = &e
			}
			s.mu.Unlock()
			if next == nil {
				select {
				case <-s.wake:
					continue
				case <-sctx.Done():
					r.mu.Lock()
					delete(r.subs, s)
					r.mu.Unlock()
					return
				}
			}
			select {
			case s.out <- *next:
			case <-sctx.Done():
				r.mu.Lock()
				delete(r.subs, s)
				r.mu.Unlock()
				return
			}
		}
	}()
	return s.out, nil
}

func (r *Containerd) broadcast(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.subs {
		if s.ctx.Err() != nil {
			continue
		}
		e := ev
		e.Labels = labelsOf(ev.Labels)
		s.mu.Lock()
		s.queue = append(s.queue, e)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}
