package lab

import (
	"context"
	"net"
	"os"
	"testing"
	"time"
)

// TestLabCutHeal brings up two hosts, checks that host 1 reaches host 2's
// API, cuts host 2 off and heals it. It needs root and $SHOAL_BIN.
func TestLabCutHeal(t *testing.T) {
	RequireRoot(t)
	if os.Getenv("SHOAL_BIN") == "" {
		t.Skip("set SHOAL_BIN to the shoal binary")
	}
	l := New(t, 2, Options{})
	reach := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := l.Dial(ctx, 1, net.JoinHostPort(l.Host(2).IP, "7443"))
		if err == nil {
			c.Close()
		}
		return err
	}
	l.WaitFor(10*time.Second, "host 1 reaches host 2's API", func() (bool, string) {
		err := reach()
		return err == nil, ""
	})
	l.Cut(2)
	l.WaitFor(10*time.Second, "host 2 unreachable once cut", func() (bool, string) {
		err := reach()
		return err != nil, "still reached"
	})
	if out, err := l.Run(2, "ip", "-br", "link", "show", "eth0"); err != nil {
		t.Fatalf("run on host 2: %v %s", err, out)
	}
	l.Heal(2)
	l.WaitFor(10*time.Second, "host 2 reachable again once healed", func() (bool, string) {
		err := reach()
		return err == nil, ""
	})
}
