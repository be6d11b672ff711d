package overlay

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

// TestListenRefusesAForeignStoredSocket: a stored receive socket that is
// not of the kind and address asked for (here a UDP socket on another
// port, as after --vxlan-port changed) is refused with ErrNotOurSocket,
// and left to the caller, who opens a new one. It needs no root: the check
// comes before any raw socket is opened.
func TestListenRefusesAForeignStoredSocket(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("no UDP socket on loopback: %v", err)
	}
	defer pc.Close()
	f, err := pc.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	lo := netip.MustParseAddr("127.0.0.1")
	for _, c := range []struct {
		name string
		open func() (*Conn, error)
	}{
		{"vxlan, another port", func() (*Conn, error) { return ListenVXLAN(lo, port+1, Options{Receive: f}) }},
		{"vxlan, another address", func() (*Conn, error) { return ListenVXLAN(netip.MustParseAddr("127.0.0.2"), port, Options{Receive: f}) }},
		{"gre, a UDP socket", func() (*Conn, error) { return ListenGRE(lo, Options{Receive: f}) }},
	} {
		conn, err := c.open()
		if err == nil {
			conn.Close()
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !errors.Is(err, ErrNotOurSocket) {
			t.Errorf("%s: %v, want ErrNotOurSocket", c.name, err)
		}
	}
	// Refused, the stored socket is still the caller's.
	if _, err := f.Stat(); err != nil {
		t.Errorf("the refused socket was closed: %v", err)
	}
}
