package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MaxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ - 1).
const MaxIfNameLen = 15

// TAPConfig describes the TAP device of a community.
type TAPConfig struct {
	Name    string           // interface name, at most MaxIfNameLen bytes
	Overlay netip.Prefix     // the node's overlay address and prefix
	MTU     int              // the TAP MTU: underlay MTU minus the codec's Overhead
	MAC     net.HardwareAddr // nil means MACFor(Overlay.Addr())
}

// TAP is the device that holds a node's overlay address. Frames the local
// host sends are read from it; frames from peers are written to it. It is
// not persistent: closing it removes the interface.
//
// ReadBatch must not be called concurrently with itself; Write is safe for
// concurrent use.
type TAP struct {
	name string
	mac  net.HardwareAddr
	mtu  int
	ifc  *water.Interface
	file *os.File
	rc   syscall.RawConn

	// State of the batch read in progress, used by readFn.
	rbufs   [][]byte
	roffset int
	rsizes  []int
	rn      int
	rerr    error
	readFn  func(fd uintptr) bool
}

// ValidIfName reports whether name can be a Linux interface name, and why not.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > MaxIfNameLen:
		return fmt.Errorf("interface name %q is %d bytes; Linux allows at most %d", name, len(name), MaxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c == '/' || c == ':' || c >= 0x7f {
			return fmt.Errorf("interface name %q contains %q; use letters, digits, '-', '_' or '.'", name, c)
		}
	}
	return nil
}

// OpenTAP creates the TAP device, sets its MAC address, MTU and overlay
// address through netlink and brings it up. IPv6 is disabled on it: the
// overlay carries IPv4, and IPv6 neighbour discovery would only add
// multicast that every peer receives.
func OpenTAP(cfg TAPConfig) (*TAP, error) {
	if err := ValidIfName(cfg.Name); err != nil {
		return nil, err
	}
	if !cfg.Overlay.Addr().Is4() {
		return nil, fmt.Errorf("overlay address %v is not IPv4", cfg.Overlay)
	}
	mac := cfg.MAC
	if mac == nil {
		mac = MACFor(cfg.Overlay.Addr())
	}
	if _, err := netlink.LinkByName(cfg.Name); err == nil {
		return nil, fmt.Errorf("interface %s already exists: another meshcast may be running for this community, or pass --tap with another name", cfg.Name)
	}
	ifc, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: cfg.Name},
	})
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("TAP %s is held by another process: stop it or pass --tap with another name", cfg.Name)
		}
		return nil, fmt.Errorf("create TAP %s: %w (is /dev/net/tun present and are we root with CAP_NET_ADMIN?)", cfg.Name, err)
	}
	t := &TAP{name: cfg.Name, mac: mac, mtu: cfg.MTU, ifc: ifc}
	f, ok := ifc.ReadWriteCloser.(*os.File)
	if !ok {
		ifc.Close()
		return nil, errors.New("TAP device is not a file")
	}
	t.file = f
	if t.rc, err = f.SyscallConn(); err != nil {
		ifc.Close()
		return nil, fmt.Errorf("TAP %s: %w", cfg.Name, err)
	}
	t.readFn = t.readBatch
	if err := t.configure(cfg.Overlay); err != nil {
		ifc.Close()
		return nil, err
	}
	return t, nil
}

func (t *TAP) configure(overlay netip.Prefix) error {
	link, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("TAP %s: %w", t.name, err)
	}
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+t.name+"/disable_ipv6", []byte("1"), 0)
	if err := netlink.LinkSetHardwareAddr(link, t.mac); err != nil {
		return fmt.Errorf("TAP %s: set MAC %v: %w", t.name, t.mac, err)
	}
	if t.mtu > 0 {
		if err := netlink.LinkSetMTU(link, t.mtu); err != nil {
			return fmt.Errorf("TAP %s: set MTU %d: %w", t.name, t.mtu, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   overlay.Addr().AsSlice(),
		Mask: net.CIDRMask(overlay.Bits(), 32),
	}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("TAP %s: add address %v: %w", t.name, overlay, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("TAP %s: set up: %w", t.name, err)
	}
	return nil
}

// Name returns the interface name.
func (t *TAP) Name() string { return t.name }

// MAC returns the interface's MAC address. Do not modify it.
func (t *TAP) MAC() net.HardwareAddr { return t.mac }

// MTU returns the interface MTU.
func (t *TAP) MTU() int { return t.mtu }

// ReadBatch reads at least one frame, waiting for the first, and then as
// many more as are ready, up to len(bufs). Frame i is stored at
// bufs[i][offset:] and its length in sizes[i]. It returns the number of
// frames read. It requires len(sizes) >= len(bufs).
func (t *TAP) ReadBatch(bufs [][]byte, offset int, sizes []int) (int, error) {
	t.rbufs, t.roffset, t.rsizes, t.rn, t.rerr = bufs, offset, sizes, 0, nil
	err := t.rc.Read(t.readFn)
	t.rbufs, t.rsizes = nil, nil
	if t.rn > 0 {
		return t.rn, nil
	}
	if err != nil {
		return 0, err
	}
	return 0, t.rerr
}

func (t *TAP) readBatch(fd uintptr) bool {
	for t.rn < len(t.rbufs) {
		n, err := unix.Read(int(fd), t.rbufs[t.rn][t.roffset:])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return t.rn > 0
			}
			t.rerr = err
			return true
		}
		t.rsizes[t.rn] = n
		t.rn++
	}
	return true
}

// Write writes one Ethernet frame to the TAP, delivering it to the local
// host.
func (t *TAP) Write(frame []byte) (int, error) { return t.file.Write(frame) }

// Close closes the device, which removes the interface.
func (t *TAP) Close() error { return t.ifc.Close() }
