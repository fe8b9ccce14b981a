// Package nft is the kernel dataplane of lb: services programmed in one
// nftables table, in the manner of kube-proxy's nftables mode.
//
// The table (ip shoal-lb by default) holds:
//
//   - nat prerouting and output chains (priority dstnat) that jump to
//     "services", which dispatches on destination . protocol . port
//     through the verdict map @service-ips and, for addresses of the node
//     (fib daddr type local), on protocol . port through
//     @service-nodeports;
//   - one chain per service port (svc-<hash>-<ns>/<name>/<proto>/<port>)
//     that marks for masquerade what comes from outside the pod network
//     through this node (not the node's own connections: fib saddr type
//     local) and DNATs to "numgen inc (or random) mod N map @eps-…", the
//     port's endpoints by index; node port traffic enters through
//     ext-<hash>-…, which marks all but the node's own;
//   - for ClientIP affinity only, kube-proxy's layout: per-endpoint sets
//     (aff-<hash>-<timeout>) checked first, then "numgen … vmap @epc-…"
//     to one chain per endpoint (ep-<hash>-<ip>/<port>) that refreshes
//     the client's entry and DNATs;
//   - a nat postrouting chain that marks hairpin traffic (a pod reaching
//     itself: ip saddr . ip daddr in @hairpin) and masquerades marked
//     packets;
//   - filter chains on input, forward and output that reject new
//     connections to a VIP or node port with no endpoint, listed in
//     @no-endpoints and @no-endpoint-nodeports (TCP reset, ICMP port
//     unreachable otherwise), so clients fail fast instead of timing out.
//
// Without affinity there is no chain per endpoint: a third of the kernel
// objects of kube-proxy's layout, which is what lets a full sync of 1,000
// services × 10 endpoints take half a second.
//
// Sync renders the wanted table (render, a pure function), compares it
// with what the previous Sync applied (diff, pure too) and sends only the
// difference in one netlink transaction; after an error, or when the
// table was changed behind its back, the next Sync rebuilds the whole
// table, still in one transaction.
//
// Assumptions: net.ipv4.ip_forward is 1 in the namespace (the pod network
// sets it); when pods share a bridge, pod → VIP → pod on that bridge needs
// net.bridge.bridge-nf-call-iptables=1 so that the reply crosses the
// node's conntrack (also the pod network's job). The table is IPv4 only.
package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	mnl "github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoalproj/shoal/lb"
)

// DefaultTable is the table New uses when Config.Table is empty.
const DefaultTable = "shoal-lb"

// Config configures a Dataplane.
type Config struct {
	// ClusterCIDR is the pod network (e.g. 10.244.0.0/16): traffic to a
	// VIP from outside it is masqueraded.
	ClusterCIDR netip.Prefix
	// ServiceCIDR is the range of the VIPs (e.g. 10.96.0.0/16), routed
	// to the dummy link so that the node itself can reach them.
	ServiceCIDR netip.Prefix
	// NodeIP, when valid, is the source address of the node's own
	// connections to VIPs (the service route's preferred source): an
	// address every endpoint can answer, whatever other addresses the
	// host has. It must be an address of the host.
	NodeIP netip.Addr
	// Balance is lb.RoundRobin (the default, numgen inc) or lb.Random
	// (numgen random); anything else is an error.
	Balance lb.Balance
	// NetNS is the network namespace to program (0 or -1: the one of the
	// thread calling New). New takes its own copy of the handle.
	NetNS netns.NsHandle
	// Table is the nftables table (family ip) the dataplane owns;
	// DefaultTable when empty.
	Table string
	// Logger receives the dataplane's logs; slog.Default() when nil.
	Logger *slog.Logger
	// Registerer registers the metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Dataplane programs a node's services into nftables. It implements
// lb.Dataplane; its methods may be called from several goroutines.
type Dataplane struct {
	table       string
	rcfg        renderConfig
	serviceCIDR netip.Prefix
	nodeIP      netip.Addr
	log         *slog.Logger
	met         *metrics
	reg         prometheus.Registerer

	mu     sync.Mutex
	ns     netns.NsHandle // our own handle, closed by Close
	conn   *nftables.Conn // lasting; redialled after a failed transaction
	sock   *mnl.Conn      // conn's socket, for its buffers and deadlines
	nl     *netlink.Handle
	closed bool
	// applied is what the last successful Sync (or New) put in the
	// kernel; dirty says the kernel may hold something else, so that the
	// next Sync rebuilds the table rather than patch it.
	applied  *desc
	dirty    bool
	warnings map[string]bool // logged already; logged again once gone and back
}

var _ lb.Dataplane = (*Dataplane)(nil)

// flushTimeout bounds one transaction when the context has no deadline:
// the kernel answers in milliseconds, so reaching it means something is
// wrong with the socket.
const flushTimeout = time.Minute

// checkTimeout bounds the check that the table is intact.
const checkTimeout = 10 * time.Second

// New checks cfg, creates the table in cfg.NetNS (replacing one a crashed
// agent left), the dummy link and the route for the service CIDR.
func New(cfg Config) (*Dataplane, error) {
	if !cfg.ClusterCIDR.IsValid() || !cfg.ClusterCIDR.Addr().Is4() {
		return nil, fmt.Errorf("nft: cluster CIDR %q: an IPv4 prefix is required", cfg.ClusterCIDR)
	}
	if !cfg.ServiceCIDR.IsValid() || !cfg.ServiceCIDR.Addr().Is4() {
		return nil, fmt.Errorf("nft: service CIDR %q: an IPv4 prefix is required", cfg.ServiceCIDR)
	}
	rcfg := renderConfig{clusterCIDR: cfg.ClusterCIDR.Masked(), fullyRandom: true}
	switch cfg.Balance {
	case "", lb.RoundRobin:
	case lb.Random:
		rcfg.random = true
	default:
		return nil, fmt.Errorf("nft: balance %q: the kernel dataplane does %q or %q only", cfg.Balance, lb.RoundRobin, lb.Random)
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	d := &Dataplane{
		table:       cfg.Table,
		rcfg:        rcfg,
		serviceCIDR: cfg.ServiceCIDR.Masked(),
		nodeIP:      cfg.NodeIP,
		log:         cfg.Logger.With("table", cfg.Table),
		met:         met,
		reg:         cfg.Registerer,
		warnings:    map[string]bool{},
	}
	if err := d.open(cfg.NetNS); err != nil {
		d.release()
		d.unregister()
		return nil, fmt.Errorf("nft: %w", err)
	}
	if err := d.create(); err != nil {
		d.release()
		d.unregister()
		return nil, fmt.Errorf("nft: %w", err)
	}
	return d, nil
}

// open takes a handle on the namespace and opens the netlink sockets.
func (d *Dataplane) open(ns netns.NsHandle) error {
	if ns <= 0 {
		h, err := netns.Get()
		if err != nil {
			return fmt.Errorf("open the current network namespace: %w", err)
		}
		d.ns = h
	} else {
		// Our own copy: the caller may close theirs.
		fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("network namespace handle %d: %w", int(ns), err)
		}
		d.ns = netns.NsHandle(fd)
	}
	h, err := netlink.NewHandleAt(d.ns)
	if err != nil {
		return fmt.Errorf("netlink in the network namespace: %w", err)
	}
	d.nl = h
	return d.dial()
}

func (d *Dataplane) dial() error {
	var sock *mnl.Conn
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(d.ns)),
		nftables.WithSockOptions(func(nc *mnl.Conn) error {
			sock = nc
			// Errors without the whole request echoed back: a failed
			// batch of thousands of messages would otherwise be echoed
			// in full.
			return nc.SetOption(mnl.CapAcknowledge, true)
		}))
	if err != nil {
		return fmt.Errorf("open nftables netlink socket: %w", err)
	}
	d.conn, d.sock = c, sock
	return nil
}

// redial replaces the socket: after a failed or interrupted transaction
// it may still hold acknowledgements the next one would take for its own.
func (d *Dataplane) redial() error {
	if d.conn != nil {
		d.conn.CloseLasting()
		d.conn, d.sock = nil, nil
	}
	return d.dial()
}

// create makes the empty table (no services) and the link. The masquerade
// is fully random (source ports chosen at random, avoiding clashes when
// many clients are masqueraded) unless the kernel refuses it.
func (d *Dataplane) create() error {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	want, _, _ := render(d.rcfg, nil)
	if err := d.transact(ctx, true, diff(nil, want)); err != nil {
		// An old kernel without fully-random masquerade is the likely
		// cause; if it is not, the second try fails too and says why.
		d.log.Warn("nft: creating the table failed; trying again without masquerade fully-random", "err", err)
		d.rcfg.fullyRandom = false
		want, _, _ = render(d.rcfg, nil)
		if err := d.transact(ctx, true, diff(nil, want)); err != nil {
			return fmt.Errorf("create table %s: %w", d.table, err)
		}
	}
	d.applied = want
	if err := ensureLink(d.nl, d.serviceCIDR, d.nodeIP); err != nil {
		return errors.Join(err, d.deleteTable(ctx))
	}
	return nil
}

// Sync makes the table match services: only what changed since the last
// successful Sync is sent, in one transaction. After a failure the next
// Sync rebuilds the whole table.
func (d *Dataplane) Sync(ctx context.Context, services []lb.Service) error {
	start := time.Now()
	nports := 0
	for i := range services {
		nports += len(services[i].Ports)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	outcome, err := d.sync(ctx, services)
	d.met.syncs.WithLabelValues(outcome).Inc()
	d.met.syncSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("nft: sync %d service ports: %w", nports, err)
	}
	return nil
}

func (d *Dataplane) sync(ctx context.Context, services []lb.Service) (string, error) {
	if d.closed {
		return outcomeFailed, errors.New("dataplane closed")
	}
	if err := ctx.Err(); err != nil {
		return outcomeFailed, err
	}
	want, warnings, err := render(d.rcfg, services)
	if err != nil {
		return outcomeInvalid, err
	}
	d.logWarnings(warnings)

	if !d.dirty && !d.intact() {
		d.dirty = true
	}
	full := d.dirty
	var ops []op
	if full {
		ops = diff(nil, want)
	} else {
		ops = diff(d.applied, want)
	}
	outcome := outcomeUnchanged
	if full || len(ops) > 0 {
		outcome = outcomeIncremental
		if full {
			outcome = outcomeFull
		}
		t0 := time.Now()
		if err := d.transact(ctx, full, ops); err != nil {
			d.dirty = true
			return outcomeFailed, err
		}
		level := slog.LevelDebug
		if full {
			level = slog.LevelInfo
		}
		d.log.Log(ctx, level, "nft: table synced", "full", full, "operations", len(ops),
			"service_ports", want.servicePorts, "endpoints", want.endpoints, "transaction", time.Since(t0))
	}
	stale := staleConntrack(d.applied, want)
	d.applied, d.dirty = want, false
	d.met.servicePorts.Set(float64(want.servicePorts))
	d.met.endpoints.Set(float64(want.endpoints))

	// The table is right from here on; what follows repairs the host
	// around it, and its failure does not make the table dirty.
	var errs []error
	if !stale.empty() {
		n, err := deleteStale(d.nl, stale)
		d.met.conntrack.Add(float64(n))
		if err != nil {
			errs = append(errs, fmt.Errorf("delete stale UDP conntrack entries: %w", err))
		} else if n > 0 {
			d.log.Debug("nft: stale UDP conntrack entries deleted", "entries", n)
		}
	}
	if err := ensureLink(d.nl, d.serviceCIDR, d.nodeIP); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return outcomeFailed, errors.Join(errs...)
	}
	return outcome, nil
}

// intact says whether the table is still there with as many chains and
// sets as the last Sync left: a cheap check (one netlink round trip) that
// catches "nft flush ruleset" or a hand-deleted chain, which the cached
// rendering alone would never see.
func (d *Dataplane) intact() bool {
	if d.conn == nil {
		return false // a failed redial: the next transaction dials again
	}
	if err := d.sock.SetDeadline(time.Now().Add(checkTimeout)); err != nil {
		return false
	}
	t, err := d.conn.ListTableOfFamily(d.table, nftables.TableFamilyIPv4)
	if err != nil {
		d.log.Warn("nft: table missing, rebuilding it", "err", err)
		return false
	}
	// google/nftables reads NFTA_TABLE_USE in host order; the kernel
	// sends it in network order.
	use := int(binary.BigEndian.Uint32(binaryutil.NativeEndian.PutUint32(t.Use)))
	if want := d.applied.objects(); use != want {
		d.log.Warn("nft: table changed behind shoal's back, rebuilding it", "objects", use, "want", want)
		return false
	}
	return true
}

// transact sends ops in one transaction; full replaces the table first.
func (d *Dataplane) transact(ctx context.Context, full bool, ops []op) error {
	return d.transactWith(ctx, func(x *txn) error {
		if full {
			x.replaceTable()
		}
		return x.apply(ops)
	})
}

// transactWith sends what build queues in one transaction, bounded by
// ctx.
func (d *Dataplane) transactWith(ctx context.Context, build func(*txn) error) (err error) {
	if d.conn == nil {
		if err := d.dial(); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			// Queued messages or unread acks must not leak into the next
			// transaction.
			if rerr := d.redial(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	x := newTxn(d.conn, d.table)
	if err := build(x); err != nil {
		return err
	}
	if err := d.sizeBuffers(x.msgs); err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(flushTimeout)
	}
	if err := d.sock.SetDeadline(deadline); err != nil {
		return fmt.Errorf("set netlink deadline: %w", err)
	}
	// Cancelling ctx interrupts the wait for the kernel's answers; once
	// Flush is back, a late cancellation must not touch the socket, which
	// the next call uses.
	sock := d.sock
	var mu sync.Mutex
	flushing := true
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if flushing {
			sock.SetDeadline(time.Unix(1, 0))
		}
	})
	err = d.conn.Flush()
	mu.Lock()
	flushing = false
	mu.Unlock()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("transaction of %d messages: %w (%w)", x.msgs, ctx.Err(), err)
		}
		return fmt.Errorf("transaction of %d messages: %w", x.msgs, err)
	}
	return nil
}

// Per message of a transaction: the request (the largest, a rule with a
// numgen map, is under 1 KiB) and its acknowledgement (a small skb whose
// truesize is under 1 KiB). The kernel handles the whole batch before
// answering, so the receive buffer must hold every ack at once, as nft
// itself sizes it.
const (
	bytesPerMsg = 1024
	minSockBuf  = 1 << 20
)

// sizeBuffers grows the socket's buffers for a transaction of n messages
// (the FORCE variants pass the system maximums, which root may).
func (d *Dataplane) sizeBuffers(n int) error {
	size := max(n*bytesPerMsg, minSockBuf)
	raw, err := d.sock.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	cerr := raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], size); err != nil {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], size); err != nil {
					serr = err
				}
			}
		}
	})
	if err := errors.Join(cerr, serr); err != nil {
		return fmt.Errorf("size netlink socket buffers: %w", err)
	}
	return nil
}

func (d *Dataplane) logWarnings(ws []string) {
	now := make(map[string]bool, len(ws))
	for _, w := range ws {
		now[w] = true
		if !d.warnings[w] {
			d.log.Warn("nft: " + w)
		}
	}
	d.warnings = now
}

// deleteTable removes the table, if there.
func (d *Dataplane) deleteTable(ctx context.Context) error {
	if err := d.transactWith(ctx, func(x *txn) error { x.deleteTable(); return nil }); err != nil {
		return fmt.Errorf("delete table %s: %w", d.table, err)
	}
	return nil
}

// Close removes the table, the dummy link and its route, releases the
// dataplane's sockets and namespace handle, and unregisters its metrics.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	var errs []error
	if err := d.deleteTable(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := removeLink(d.nl); err != nil {
		errs = append(errs, err)
	}
	d.release()
	d.unregister()
	if len(errs) > 0 {
		return fmt.Errorf("nft: close: %w", errors.Join(errs...))
	}
	return nil
}

// release closes the sockets and the namespace handle.
func (d *Dataplane) release() {
	if d.conn != nil {
		d.conn.CloseLasting()
		d.conn, d.sock = nil, nil
	}
	if d.nl != nil {
		d.nl.Close()
		d.nl = nil
	}
	if d.ns > 0 {
		d.ns.Close()
		d.ns = -1
	}
}

// unregister takes the metrics off the registry, so that a new
// dataplane can register its own.
func (d *Dataplane) unregister() {
	if d.reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{d.met.syncSeconds, d.met.syncs, d.met.servicePorts, d.met.endpoints, d.met.conntrack} {
		d.reg.Unregister(c)
	}
}
