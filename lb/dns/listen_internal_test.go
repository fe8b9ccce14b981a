package dns

import (
	"context"
	"net"
	"testing"
)

func TestListenPortZeroSharesThePort(t *testing.T) {
	pc, ln, err := listen(context.Background(), "127.0.53.60:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	defer ln.Close()
	u, tc := pc.LocalAddr().(*net.UDPAddr), ln.Addr().(*net.TCPAddr)
	if u.Port == 0 || u.Port != tc.Port {
		t.Errorf("udp %v and tcp %v: want one port for both", u, tc)
	}
}
