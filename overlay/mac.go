package overlay

import (
	"net"
	"net/netip"
)

// MACFor returns the TAP MAC address meshcast uses for an overlay IPv4
// address: 02:6d followed by the four address bytes. It is locally
// administered and unicast, and it stays the same across restarts, so the
// ARP caches of peers remain valid when a daemon comes back.
func MACFor(overlay netip.Addr) net.HardwareAddr {
	a := overlay.As4()
	return net.HardwareAddr{0x02, 0x6d, a[0], a[1], a[2], a[3]}
}
