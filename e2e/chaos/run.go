package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
)

// Kind is the kind of object the suite writes: ControllerRevisions without
// an owner, which no controller touches, with revision as the value.
const Kind = "ControllerRevision"

// FenceKey is the object written once the load and the faults are over:
// its resourceVersion is after every change of the run, so a watcher that
// saw it saw everything.
const FenceKey = "fence"

// Config describes one run.
type Config struct {
	Seed     uint64
	Duration time.Duration // of load and faults
	// Endpoints are the hosts' API addresses (host i at index i-1) and
	// NodeNames their node names.
	Endpoints []string
	NodeNames []string
	Client    *client.Config
	Cluster   Cluster
	// Faults restricts the kinds of fault injected (default: all).
	Faults []FaultKind
	// Namespace holds the run's objects; it must be empty.
	Namespace string
	Keys      int // objects written (default 12)
	Clients   int // writing and reading clients (default 5)
	Watchers  int // watchers (default 2)
	// OpTimeout bounds one request (default 4 s); a request that times out
	// has an unknown outcome.
	OpTimeout time.Duration
	// MaxOpsPerClient bounds the load in count as Duration bounds it in
	// time (default 200000).
	MaxOpsPerClient int
	// CheckTimeout bounds porcupine (default 2 min).
	CheckTimeout time.Duration
	// ReportDir receives the visualization of a history that fails the
	// check (default: the system's temporary directory).
	ReportDir string
	Logf      func(format string, args ...any)
}

func (c *Config) defaults() {
	if c.Keys == 0 {
		c.Keys = 12
	}
	if c.Clients == 0 {
		c.Clients = 5
	}
	if c.Watchers == 0 {
		c.Watchers = 2
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 4 * time.Second
	}
	if c.MaxOpsPerClient == 0 {
		c.MaxOpsPerClient = 200000
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 2 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// run is the state of one run.
type run struct {
	cfg   Config
	n     int
	conns []*grpc.ClientConn
	cls   []api.ShoalClient
	hist  *History
	keys  []string

	mu       sync.Mutex
	problems []string
	anomaly  int
}

func (r *run) logf(format string, args ...any) { r.cfg.Logf(format, args...) }

// problemf records a finding that fails the run.
func (r *run) problemf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.problems = append(r.problems, msg)
	r.mu.Unlock()
	r.logf("PROBLEM: %s", msg)
}

// dial connects to one node's API with the client configuration's mutual
// TLS, as api/client does, but with a short reconnect backoff so that a
// restarted node is used again within a second.
func dial(cfg *client.Config, endpoint string) (*grpc.ClientConn, error) {
	tlsCfg, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, err
	}
	tlsCfg.ServerName = host
	return grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(client.MaxMessageSize)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		// A paused or cut-off node's connections end within seconds (the
		// server accepts pings every 2 s or more).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 3 * time.Second, Timeout: 2 * time.Second, PermitWithoutStream: true}),
	)
}

// Run runs load, watchers and faults for cfg.Duration, heals the cluster,
// reads the final state from every node and checks everything. The error
// is for a run that could not be carried out; findings are in the
// report's Problems.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	r := &run{cfg: cfg, n: len(cfg.Endpoints), hist: NewHistory()}
	if r.n == 0 || len(cfg.NodeNames) != r.n || cfg.Cluster == nil || cfg.Client == nil {
		return nil, errors.New("chaos: endpoints, node names, cluster and client configuration required")
	}
	for i := range cfg.Keys {
		r.keys = append(r.keys, fmt.Sprintf("k%02d", i))
	}
	for _, ep := range cfg.Endpoints {
		cc, err := dial(cfg.Client, ep)
		if err != nil {
			return nil, fmt.Errorf("chaos: dial %s: %w", ep, err)
		}
		defer cc.Close()
		r.conns = append(r.conns, cc)
		r.cls = append(r.cls, api.NewShoalClient(cc))
	}
	rep := &Report{Seed: cfg.Seed, Hosts: r.n, Duration: cfg.Duration, Namespace: cfg.Namespace,
		Faults: map[FaultKind]int{}, FailedBy: map[string]int{}}
	inj := &injector{c: cfg.Cluster, r: r, counts: rep.Faults}

	if _, last, err := r.waitHealthy(ctx, recoverTimeout); err != nil {
		return nil, fmt.Errorf("chaos: the cluster is not healthy before the run: %v (last seen: %s)", err, last)
	}
	startRV, err := r.emptyNamespaceRV(ctx)
	if err != nil {
		return nil, err
	}
	rep.StartRV = startRV

	// Watchers, clients and faults.
	wctx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	watchers := make([]*watcher, cfg.Watchers)
	var wwg sync.WaitGroup
	for i := range watchers {
		w := &watcher{r: r, id: i, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(1000+i)))}
		w.lastRV.Store(startRV)
		watchers[i] = w
		wwg.Add(1)
		go func() { defer wwg.Done(); w.run(wctx, strconv.FormatUint(startRV, 10)) }()
	}
	deadline := time.Now().Add(cfg.Duration)
	lctx, stopLoad := context.WithDeadline(ctx, deadline)
	var cwg sync.WaitGroup
	for i := range cfg.Clients {
		c := &loadClient{r: r, id: i, node: i % r.n, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i))), lastRV: map[string]uint64{}}
		cwg.Add(1)
		go func() { defer cwg.Done(); c.run(lctx) }()
	}
	schedule := Schedule(cfg.Seed, r.n, cfg.Duration, cfg.Faults)
	inj.runSchedule(lctx, schedule, deadline)
	<-lctx.Done() // the load runs its whole duration
	stopLoad()
	rep.LoadTime = r.hist.Since(time.Now())
	cwg.Wait()
	if err := inj.healAll(); err != nil {
		r.problemf("%v", err)
	}
	rep.FaultLog = inj.applied
	rep.FaultsSkipped = inj.skipped

	// The end: every node serves consistent reads again.
	d, last, err := r.waitHealthy(ctx, recoverTimeout)
	if err != nil {
		r.problemf("after the run, healed, the cluster did not recover within %v: %v (last seen: %s)", recoverTimeout, err, last)
		return r.finish(rep, nil, nil, watchers), nil
	}
	r.logf("load stopped, every fault healed: every node serves consistent reads again after %v", d.Round(100*time.Millisecond))
	fenceRV, err := r.writeFence(ctx)
	if err != nil {
		r.problemf("fence write: %v", err)
		return r.finish(rep, nil, nil, watchers), nil
	}
	rep.FenceRV = fenceRV
	finals := r.finalReads(ctx)
	r.convergence(ctx, finals)

	// Watchers catch up to the fence, then stop.
	for _, w := range watchers {
		_, err := poll(ctx, 30*time.Second, func() (bool, string) {
			got := w.lastRV.Load()
			return got >= fenceRV, fmt.Sprintf("watcher %d at resourceVersion %d, fence at %d", w.id, got, fenceRV)
		})
		if err != nil {
			r.problemf("watcher %d did not see the fence: %v", w.id, err)
		}
	}
	stopWatchers()
	wwg.Wait()
	replay := r.replay(ctx, startRV, fenceRV)
	return r.finish(rep, finals, &replay, watchers), nil
}

// emptyNamespaceRV checks that the run's namespace is empty and returns
// the resourceVersion of that consistent list: the watches start there.
func (r *run) emptyNamespaceRV(ctx context.Context) (uint64, error) {
	var rv uint64
	_, err := poll(ctx, 30*time.Second, func() (bool, string) {
		qctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		defer cancel()
		list, err := r.cls[0].List(qctx, &api.ListRequest{Kind: Kind, Namespace: r.cfg.Namespace, Consistent: true})
		if err != nil {
			return false, ShortError(err)
		}
		if len(list.Items) != 0 {
			return false, fmt.Sprintf("namespace %s holds %d objects", r.cfg.Namespace, len(list.Items))
		}
		rv, err = strconv.ParseUint(list.ResourceVersion, 10, 64)
		return err == nil, "list resourceVersion " + list.ResourceVersion
	})
	if err != nil {
		return 0, fmt.Errorf("chaos: empty namespace %s: %v", r.cfg.Namespace, err)
	}
	return rv, nil
}

// poll calls cond every 100 ms until it holds or timeout passes, and
// returns how long that took; the error says what cond last saw.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, string)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("not within %v; last seen: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%v; last seen: %s", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// leader asks every node who leads and returns the leader's host number,
// or 0 when they do not agree on one.
func (r *run) leader(ctx context.Context) (int, string) {
	votes := map[string]int{}
	var seen []string
	for i, cl := range r.cls {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		v, err := cl.Version(qctx, &api.VersionRequest{})
		cancel()
		if err != nil {
			seen = append(seen, fmt.Sprintf("host %d: %s", i+1, ShortError(err)))
			continue
		}
		seen = append(seen, fmt.Sprintf("host %d: leader %q", i+1, v.Leader))
		if v.Leader != "" {
			votes[v.Leader]++
		}
	}
	for name, n := range votes {
		if n*2 > r.n {
			for i, nn := range r.cfg.NodeNames {
				if nn == name {
					return i + 1, strings.Join(seen, "; ")
				}
			}
		}
	}
	return 0, strings.Join(seen, "; ")
}

// waitHealthy polls until every node names the same leader and serves a
// consistent read.
func (r *run) waitHealthy(ctx context.Context, timeout time.Duration) (time.Duration, string, error) {
	var last string
	d, err := poll(ctx, timeout, func() (bool, string) {
		var seen []string
		leaders := map[string]bool{}
		ok := true
		for i, cl := range r.cls {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			v, err := cl.Version(qctx, &api.VersionRequest{})
			cancel()
			if err != nil {
				seen = append(seen, fmt.Sprintf("host %d: version: %s", i+1, ShortError(err)))
				ok = false
				continue
			}
			leaders[v.Leader] = true
			qctx, cancel = context.WithTimeout(ctx, 3*time.Second)
			_, err = cl.Get(qctx, &api.GetRequest{Kind: Kind, Namespace: r.cfg.Namespace, Name: "health", Consistent: true})
			cancel()
			if err != nil && status.Code(err) != codes.NotFound {
				seen = append(seen, fmt.Sprintf("host %d (leader %q): consistent read: %s", i+1, v.Leader, ShortError(err)))
				ok = false
				continue
			}
			seen = append(seen, fmt.Sprintf("host %d: leader %q", i+1, v.Leader))
		}
		last = strings.Join(seen, "; ")
		return ok && len(leaders) == 1 && !leaders[""], last
	})
	return d, last, err
}

// object is the stored form of key = value, naming rv when it is set.
func (r *run) object(key string, value int64, rv uint64) *api.Object {
	cr := &api.ControllerRevision{
		ApiVersion: "apps/v1",
		Kind:       Kind,
		Metadata:   &api.ObjectMeta{Name: key, Namespace: r.cfg.Namespace},
		Data: &api.PodTemplateSpec{Spec: &api.PodSpec{Containers: []*api.Container{
			{Name: "c", Image: "busybox:1.36"},
		}}},
		Revision: value,
	}
	if rv != 0 {
		cr.Metadata.ResourceVersion = strconv.FormatUint(rv, 10)
	}
	return api.Wrap(cr)
}

// revisionOf reads the value and resourceVersion of a returned object.
func revisionOf(o *api.Object) (int64, uint64, string, error) {
	cr := o.GetControllerRevision()
	if cr == nil {
		return 0, 0, "", fmt.Errorf("no ControllerRevision in %v", o)
	}
	rv, err := strconv.ParseUint(cr.GetMetadata().GetResourceVersion(), 10, 64)
	if err != nil {
		return 0, 0, "", fmt.Errorf("resourceVersion %q: %v", cr.GetMetadata().GetResourceVersion(), err)
	}
	return cr.GetRevision(), rv, cr.GetMetadata().GetName(), nil
}

// exec sends one operation to one node and returns what it was told.
func (r *run) exec(ctx context.Context, cl api.ShoalClient, in Input) (Output, error) {
	check := func(o *api.Object, wantValue bool) (Output, error) {
		v, rv, name, err := revisionOf(o)
		if err != nil {
			return Output{}, fmt.Errorf("%w: %v", errBadAnswer, err)
		}
		if name != in.Key {
			return Output{}, fmt.Errorf("%w: asked for %s, got %s", errBadAnswer, in.Key, name)
		}
		if wantValue && v != in.Value {
			return Output{}, fmt.Errorf("%w: wrote %d to %s, the answer holds %d", errBadAnswer, in.Value, in.Key, v)
		}
		return Output{Result: ResOK, RV: rv, Value: v}, nil
	}
	switch in.Kind {
	case OpCreate, OpPut, OpCAS:
		var rv uint64
		if in.Kind == OpCAS {
			rv = in.ExpectRV
		}
		resp, err := cl.Apply(ctx, &api.ApplyRequest{Objects: []*api.Object{r.object(in.Key, in.Value, rv)}, CreateOnly: in.Kind == OpCreate})
		if err != nil {
			return Output{}, err
		}
		if len(resp.Objects) != 1 || len(resp.Failures) != 0 {
			return Output{}, fmt.Errorf("%w: apply answered %d objects and %d failures", errBadAnswer, len(resp.Objects), len(resp.Failures))
		}
		return check(resp.Objects[0], true)
	case OpDelete:
		req := &api.DeleteRequest{Kind: Kind, Namespace: r.cfg.Namespace, Name: in.Key}
		if in.ExpectRV != 0 {
			req.ResourceVersion = strconv.FormatUint(in.ExpectRV, 10)
		}
		resp, err := cl.Delete(ctx, req)
		if err != nil {
			return Output{}, err
		}
		return check(resp.GetObject(), false)
	case OpGet, OpLocalGet:
		o, err := cl.Get(ctx, &api.GetRequest{Kind: Kind, Namespace: r.cfg.Namespace, Name: in.Key, Consistent: in.Kind == OpGet})
		if err != nil {
			return Output{}, err
		}
		return check(o, false)
	}
	return Output{}, fmt.Errorf("unknown op %v", in.Kind)
}

var errBadAnswer = errors.New("bad answer")

// do runs one operation through host node (0-based) and records it. It
// returns the recorded op and the error class.
func (r *run) do(client, node int, in Input) (Op, ErrorClass) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.OpTimeout)
	defer cancel()
	call := r.hist.Now()
	out, err := r.exec(ctx, r.cls[node], in)
	ret := r.hist.Now()
	op := Op{Client: client, Node: node + 1, Input: in, Output: out, Call: call, Return: ret}
	cls := ErrorClass(-1)
	if err != nil {
		op.Why = ShortError(err)
		cls = ClassifyError(err)
		switch {
		case errors.Is(err, errBadAnswer):
			r.problemf("client %d via host %d: %s: %v", client, node+1, describeOp(in, Output{Result: ResUnknown}), err)
			cls = ErrUnknown
			op.Output = Output{Result: ResUnknown}
		case cls == ErrInvalid:
			r.problemf("client %d via host %d: %s refused as invalid: %v", client, node+1, describeOp(in, Output{}), err)
			op.Dropped = true
		case cls == ErrNotFound:
			op.Output = Output{Result: ResNotFound}
		case cls == ErrExists:
			op.Output = Output{Result: ResExists}
		case cls == ErrConflict:
			op.Output = Output{Result: ResConflict}
		case cls == ErrNoEffect:
			op.Dropped = true
		default:
			op.Output = Output{Result: ResUnknown}
		}
		if !in.Kind.IsWrite() && op.Output.Result != ResNotFound {
			// A read without an answer constrains nothing.
			op.Dropped = true
			op.Output = Output{Result: ResOK}
		}
	}
	if (in.Kind == OpCreate || in.Kind == OpPut) && op.Output.Result == ResNotFound {
		r.problemf("client %d: %s answered not found", client, describeOp(in, Output{}))
	}
	r.hist.Add(op)
	return op, cls
}

// loadClient is one client of the load: it works through one node and
// moves to the next when that one fails it, as a client with several
// endpoints does.
type loadClient struct {
	r      *run
	id     int
	node   int
	rng    *rand.Rand
	seq    int64
	lastRV map[string]uint64 // what this client last learnt of each key
}

func (c *loadClient) value() int64 {
	c.seq++
	return int64(c.id+1)<<32 | c.seq
}

func (c *loadClient) run(ctx context.Context) {
	r := c.r
	for n := 0; n < r.cfg.MaxOpsPerClient && ctx.Err() == nil; n++ {
		key := r.keys[c.rng.IntN(len(r.keys))]
		p := c.rng.IntN(100)
		var cls ErrorClass
		switch {
		case p < 12:
			cls = c.one(Input{Kind: OpCreate, Key: key, Value: c.value()})
		case p < 27:
			cls = c.one(Input{Kind: OpPut, Key: key, Value: c.value()})
		case p < 52:
			// Read-modify-write: a consistent read, then a write naming
			// the version read.
			op, cl := c.op(Input{Kind: OpGet, Key: key})
			cls = cl
			switch {
			case op.Dropped:
			case op.Output.Result == ResNotFound:
				cls = c.one(Input{Kind: OpCreate, Key: key, Value: c.value()})
			case op.Output.Result == ResOK:
				if c.rng.IntN(5) == 0 {
					cls = c.one(Input{Kind: OpDelete, Key: key, ExpectRV: op.Output.RV})
				} else {
					cls = c.one(Input{Kind: OpCAS, Key: key, Value: c.value(), ExpectRV: op.Output.RV})
				}
			}
		case p < 62:
			// A write naming the version this client last learnt (from
			// its own last write, as a controller does): stale when
			// another client changed the object since.
			rv := c.lastRV[key]
			if rv == 0 {
				rv = 1 + uint64(c.rng.IntN(1000))
			}
			cls = c.one(Input{Kind: OpCAS, Key: key, Value: c.value(), ExpectRV: rv})
		case p < 72:
			var rv uint64
			if c.rng.IntN(2) == 0 {
				rv = c.lastRV[key]
			}
			cls = c.one(Input{Kind: OpDelete, Key: key, ExpectRV: rv})
		case p < 82:
			cls = c.one(Input{Kind: OpLocalGet, Key: key})
		default:
			cls = c.one(Input{Kind: OpGet, Key: key})
		}
		if cls == ErrNoEffect || cls == ErrUnknown {
			// A short pause before the next try elsewhere, so that a
			// client without any reachable node does not spin.
			t := time.NewTimer(20 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

func (c *loadClient) one(in Input) ErrorClass {
	_, cls := c.op(in)
	return cls
}

// op runs in through the client's node, learns from the answer, and
// moves to the next node when this one did not answer.
func (c *loadClient) op(in Input) (Op, ErrorClass) {
	op, cls := c.r.do(c.id, c.node, in)
	switch {
	case op.Dropped && cls != ErrNoEffect && cls != ErrUnknown:
	case cls == ErrNoEffect || cls == ErrUnknown:
		c.node = (c.node + 1) % c.r.n
	case op.Output.Result == ResOK && in.Kind == OpDelete:
		delete(c.lastRV, in.Key)
	case op.Output.Result == ResOK:
		c.lastRV[in.Key] = op.Output.RV
	}
	return op, cls
}

// writeFence writes the fence object through the nodes in turn until one
// write is acknowledged, and returns its resourceVersion.
func (r *run) writeFence(ctx context.Context) (uint64, error) {
	var rv uint64
	seq := int64(0)
	node := 0
	_, err := poll(ctx, 30*time.Second, func() (bool, string) {
		seq++
		op, _ := r.do(fenceClient(r), node, Input{Kind: OpPut, Key: FenceKey, Value: 1<<40 | seq})
		if op.Output.Result == ResOK && !op.Dropped {
			rv = op.Output.RV
			return true, ""
		}
		node = (node + 1) % r.n
		return false, op.Why
	})
	return rv, err
}

func fenceClient(r *run) int { return r.cfg.Clients }

// finalState is what a consistent read found for one key.
type finalState struct {
	Exists bool
	Value  int64
	RV     uint64
}

func (f finalState) String() string {
	if !f.Exists {
		return "absent"
	}
	return fmt.Sprintf("%d@%d", f.Value, f.RV)
}

// finalReads reads every key with a consistent read through every node
// (recorded in the history) and checks that all nodes answer the same.
// It returns the state, by key.
func (r *run) finalReads(ctx context.Context) map[string]finalState {
	keys := append(append([]string(nil), r.keys...), FenceKey)
	var per []map[string]finalState
	for round := 1; round <= 3; round++ {
		per = make([]map[string]finalState, r.n)
		for node := range r.n {
			got := map[string]finalState{}
			per[node] = got
			_, err := poll(ctx, 30*time.Second, func() (bool, string) {
				for _, k := range keys {
					if _, done := got[k]; done {
						continue
					}
					op, _ := r.do(fenceClient(r)+1+node, node, Input{Kind: OpGet, Key: k})
					if op.Dropped {
						return false, k + ": " + op.Why
					}
					got[k] = finalState{Exists: op.Output.Result == ResOK, Value: op.Output.Value, RV: op.Output.RV}
				}
				return true, ""
			})
			if err != nil {
				r.problemf("final consistent reads through host %d: %v", node+1, err)
			}
		}
		diff := differ(per, keys)
		if diff == "" {
			return per[0]
		}
		if round == 3 {
			r.problemf("nodes answer different final states to consistent reads: %s", diff)
		}
	}
	return per[0]
}

func differ(per []map[string]finalState, keys []string) string {
	var out []string
	for _, k := range keys {
		var vals []string
		same := true
		for i, m := range per {
			vals = append(vals, fmt.Sprintf("host %d: %v", i+1, m[k]))
			same = same && m[k] == per[0][k]
		}
		if !same {
			out = append(out, k+" ("+strings.Join(vals, ", ")+")")
		}
	}
	return strings.Join(out, "; ")
}

// convergence waits until every node's own replica (a default, local read)
// holds the final state.
func (r *run) convergence(ctx context.Context, finals map[string]finalState) {
	keys := make([]string, 0, len(finals))
	for k := range finals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for node, cl := range r.cls {
		_, err := poll(ctx, 30*time.Second, func() (bool, string) {
			for _, k := range keys {
				qctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
				o, err := cl.Get(qctx, &api.GetRequest{Kind: Kind, Namespace: r.cfg.Namespace, Name: k})
				cancel()
				got := finalState{}
				switch {
				case status.Code(err) == codes.NotFound:
				case err != nil:
					return false, fmt.Sprintf("%s: %s", k, ShortError(err))
				default:
					v, rv, _, perr := revisionOf(o)
					if perr != nil {
						return false, perr.Error()
					}
					got = finalState{Exists: true, Value: v, RV: rv}
				}
				if got != finals[k] {
					return false, fmt.Sprintf("%s: local %v, consistent %v", k, got, finals[k])
				}
			}
			return true, ""
		})
		if err != nil {
			r.problemf("host %d's replica did not converge to the final state: %v", node+1, err)
		}
	}
}
