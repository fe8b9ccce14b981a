package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	nslab "github.com/shoalproj/shoal/e2e/lab"
)

// hostShoal runs the CLI inside host i's namespace against that host's own
// API, so the answer is what host i's agent knows.
func hostShoal(l *nslab.Lab, i int, args ...string) (string, error) {
	args = append([]string{shoalBin, "--server", net.JoinHostPort(l.Host(i).IP, "7443")}, args...)
	return l.Run(i, args...)
}

// nodeStatusOn returns node's STATUS in host i's `node ls`.
func nodeStatusOn(l *nslab.Lab, i int, node string) (string, string) {
	out, err := hostShoal(l, i, "node", "ls")
	if err != nil {
		return "", fmt.Sprintf("host %d: %v: %s", i, err, out)
	}
	return parseNodeLs(out)[node][0], fmt.Sprintf("host %d:\n%s", i, out)
}

// waitStatusOnOthers waits until every host but skip sees node in status.
func waitStatusOnOthers(l *nslab.Lab, skip int, node, status string, timeout time.Duration) time.Duration {
	return l.WaitFor(timeout, fmt.Sprintf("%s %s on every other host", node, status), func() (bool, string) {
		var seen []string
		ok := true
		for i := range l.Hosts {
			if i+1 == skip {
				continue
			}
			st, out := nodeStatusOn(l, i+1, node)
			seen = append(seen, out)
			ok = ok && st == status
		}
		return ok, strings.Join(seen, "\n")
	})
}

// netnsAndBridges lists the namespaces and bridges on this machine.
func netnsAndBridges(t *testing.T) string {
	ns, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v %s", err, ns)
	}
	br, err := exec.Command("ip", "-br", "link", "show", "type", "bridge").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show type bridge: %v %s", err, br)
	}
	return string(ns) + string(br)
}

// TestLabNodeLoss is issue 4's proof on three hosts, run twice in a row:
// node ls from every host; a host killed (agent and containerd, -9) is
// NotReady on the others within 10 s and Ready again once restarted; a
// host cut off (its link down) is NotReady on the others and cannot write
// itself, and rejoins when healed; one-way and pair cuts; after each run
// no namespace or bridge of the lab is left.
func TestLabNodeLoss(t *testing.T) {
	nslab.RequireRoot(t)
	for round := 1; round <= 2; round++ {
		var id string
		t.Run(fmt.Sprintf("run%d", round), func(t *testing.T) {
			l := nslab.New(t, 3, nslab.Options{Bin: shoalBin})
			id = filepath.Base(l.Host(1).NetNS)
			nodeLossScenario(t, l)
		})
		if t.Failed() {
			return
		}
		left := netnsAndBridges(t)
		for _, name := range []string{id, strings.TrimSuffix(strings.TrimPrefix(id, "shlab-"), "-1")} {
			if strings.Contains(left, name) {
				t.Fatalf("run %d left %q behind:\n%s", round, name, left)
			}
		}
	}
}

func nodeLossScenario(t *testing.T, l *nslab.Lab) {
	// Every host's own API lists the three nodes Ready.
	for i := 1; i <= 3; i++ {
		l.WaitFor(20*time.Second, fmt.Sprintf("3 Ready nodes in host %d's node ls", i), func() (bool, string) {
			out, err := hostShoal(l, i, "node", "ls")
			if err != nil {
				return false, out + err.Error()
			}
			ready, leaders, _, _ := countNodes(parseNodeLs(out))
			return ready == 3 && leaders == 1, out
		})
	}

	// A killed host goes NotReady on the others.
	killed := time.Now()
	l.KillHost(3)
	d := waitStatusOnOthers(l, 3, "lab-3", "NotReady", 10*time.Second)
	t.Logf("figure: host 3 killed (-9) → NotReady on hosts 1 and 2 after %v", time.Since(killed).Round(10*time.Millisecond))
	_ = d
	restarted := time.Now()
	l.Restart(3)
	waitStatusOnOthers(l, 0, "lab-3", "Ready", 30*time.Second)
	t.Logf("figure: host 3 restarted → Ready on every host after %v", time.Since(restarted).Round(10*time.Millisecond))

	// A host cut off is NotReady for the others and cannot write itself.
	manifest := filepath.Join(t.TempDir(), "cm.yaml")
	writePod := func(name string) {
		m := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  nodeName: no-such-node\n  containers:\n    - name: c\n      image: busybox:1.36\n", name)
		if err := os.WriteFile(manifest, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cut := time.Now()
	l.Cut(3)
	waitStatusOnOthers(l, 3, "lab-3", "NotReady", 10*time.Second)
	t.Logf("figure: host 3 cut off → NotReady on hosts 1 and 2 after %v", time.Since(cut).Round(10*time.Millisecond))
	writePod("written-while-cut")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	start := time.Now()
	out, err := l.Lab.Run(ctx, 3, shoalBin, "--server", net.JoinHostPort(l.Host(3).IP, "7443"), "apply", "-f", manifest)
	cancel()
	if err == nil || !strings.Contains(out, "no leader reachable") {
		t.Fatalf("a write through the cut-off host 3: want refused with \"no leader reachable\", got err %v:\n%s", err, out)
	}
	t.Logf("write through the cut-off host refused after %v: %s", time.Since(start).Round(10*time.Millisecond), strings.TrimSpace(out))
	// The majority side goes on accepting writes.
	writePod("written-by-majority")
	if out, err := hostShoal(l, 1, "apply", "-f", manifest); err != nil {
		t.Fatalf("write on the majority side: %v\n%s", err, out)
	}

	healed := time.Now()
	l.Heal(3)
	waitStatusOnOthers(l, 0, "lab-3", "Ready", 30*time.Second)
	t.Logf("figure: host 3 healed → Ready on every host after %v", time.Since(healed).Round(10*time.Millisecond))
	// It caught up: it has the majority's write, and not its own.
	l.WaitFor(20*time.Second, "host 3 has the majority's write and not its own", func() (bool, string) {
		out, err := hostShoal(l, 3, "get", "pods", "-o", "name")
		return err == nil && strings.Contains(out, "written-by-majority") && !strings.Contains(out, "written-while-cut"), out
	})
	writePod("written-after-heal")
	if out, err := hostShoal(l, 3, "apply", "-f", manifest); err != nil {
		t.Fatalf("write through host 3 after healing: %v\n%s", err, out)
	}

	// A pair cut: hosts 1 and 3 cannot talk, both still reach host 2, so
	// every node stays in the cluster (gossip probes go round through host 2).
	l.CutPair(1, 3)
	if _, err := l.Dial(context.Background(), 1, net.JoinHostPort(l.Host(3).IP, "7443")); err == nil {
		t.Fatal("host 1 reached host 3 across a pair cut")
	}
	if c, err := l.Dial(context.Background(), 1, net.JoinHostPort(l.Host(2).IP, "7443")); err != nil {
		t.Fatalf("host 1 does not reach host 2 with only 1-3 cut: %v", err)
	} else {
		c.Close()
	}
	l.HealCuts(1)
	// A one-way cut: host 3's packets to host 1 are dropped, host 1's to
	// host 3 are not.
	l.CutOneWay(3, 1)
	if _, err := l.Dial(context.Background(), 3, net.JoinHostPort(l.Host(1).IP, "7443")); err == nil {
		t.Fatal("host 3 reached host 1 across a one-way cut")
	}
	// Host 1's ping reaches host 3 (its echo counter moves), the reply
	// does not come back.
	echosBefore := icmpInEchos(t, l, 3)
	if out, err := l.Run(1, "ping", "-c", "1", "-W", "1", l.Host(3).IP); err == nil {
		t.Fatalf("a ping from 1 to 3 came back across 3→1 dropped:\n%s", out)
	}
	if after := icmpInEchos(t, l, 3); after <= echosBefore {
		t.Fatalf("host 3 did not receive host 1's ping across a 3→1 cut (InEchos %d → %d)", echosBefore, after)
	}
	if out, err := l.Run(3, "nft", "list", "table", "inet", "shoal_lab_cut"); err != nil || !strings.Contains(out, l.Host(1).IP) {
		t.Fatalf("host 3's cut table: %v\n%s", err, out)
	}
	l.HealCuts(3)
	l.WaitFor(10*time.Second, "host 3 reaches host 1 once the one-way cut is healed", func() (bool, string) {
		c, err := l.Dial(context.Background(), 3, net.JoinHostPort(l.Host(1).IP, "7443"))
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
	waitStatusOnOthers(l, 0, "lab-3", "Ready", 30*time.Second)
}

// icmpInEchos reads the ICMP echo requests host i has received, from its
// namespace's /proc/net/snmp.
func icmpInEchos(t *testing.T, l *nslab.Lab, i int) int {
	out, err := l.Run(i, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("host %d: /proc/net/snmp: %v", i, err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for k, n := range names {
			if n == "InEchos" && k < len(f) {
				v, err := strconv.Atoi(f[k])
				if err != nil {
					t.Fatalf("host %d: InEchos %q", i, f[k])
				}
				return v
			}
		}
	}
	t.Fatalf("host %d: no Icmp InEchos in /proc/net/snmp:\n%s", i, out)
	return 0
}
