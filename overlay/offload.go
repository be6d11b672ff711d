package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The kernel offloads meshcast may use, by the names that status, the
// metrics and the log give them.
const (
	// OffloadTAPCoalesce: WriteBatch hands the TAP a run of datagrams of
	// one UDP flow as one VIRTIO_NET_HDR_GSO_UDP_L4 frame (Linux 6.2).
	OffloadTAPCoalesce = "tap_coalesce"
	// OffloadUDPGSO: VXLAN copies to one peer leave as one UDP_SEGMENT
	// send (Linux 4.18).
	OffloadUDPGSO = "udp_gso"
	// OffloadUDPGRO: the VXLAN receive socket coalesces the datagrams of
	// one sender (UDP_GRO, Linux 5.0).
	OffloadUDPGRO = "udp_gro"
	// OffloadPacketTx: copies to peers whose next hop is resolved leave
	// through an AF_PACKET socket on the underlay interface, with an
	// outer header meshcast writes, instead of the IP output path.
	// Fallbacks counts the copies that socket refused and that were sent
	// again through the IP sockets.
	OffloadPacketTx = "af_packet_tx"
	// OffloadPacketGSO: the VXLAN copies of one flow to one peer in a
	// batch leave through AF_PACKET as one VIRTIO_NET_HDR_GSO_UDP_L4
	// packet, which the kernel or the NIC splits (Linux 6.2).
	OffloadPacketGSO = "af_packet_gso"
)

// OffloadOffByConfig is the OffloadStatus.Reason of an offload that the
// configuration turned off (Options.NoOffload, TAPConfig.NoCoalesce).
const OffloadOffByConfig = "turned off by configuration"

// OffloadNoIPv6 is the OffloadStatus.Reason of the GRE receive ring
// (OffloadPacketRx) over an IPv6 underlay, where meshcast does not use it:
// the packets arrive through the IPv6 socket, which loses none of them.
// AF_PACKET egress (OffloadPacketTx, OffloadPacketGSO) works over IPv6 as
// over IPv4.
const OffloadNoIPv6 = "not used over an IPv6 underlay: packets arrive through the IPv6 socket"

// OffloadStatus is a snapshot of one offload.
type OffloadStatus struct {
	Name  string
	InUse bool
	// Reason says why the offload is off: turned off by configuration
	// (OffloadOffByConfig), refused by the kernel's probe, or refused by
	// the kernel in use (with the errno). It is empty while the offload is
	// in use.
	Reason string
	// Fallbacks counts the batches the kernel refused with the offload
	// that were sent again without it.
	Fallbacks uint64
}

// Offload is the state of one kernel offload on one device or socket:
// whether meshcast uses it, and if not, why. Probes decide it at open; a
// kernel that refuses the offload later switches it off for good. It is
// safe for concurrent use.
type Offload struct {
	name      string
	on        atomic.Bool
	why       atomic.Pointer[string]
	fallbacks atomic.Uint64
	log       *slog.Logger
	warned    sync.Once
}

func newOffload(name string, log *slog.Logger) *Offload {
	if log == nil {
		log = slog.Default()
	}
	return &Offload{name: name, log: log}
}

// enable marks the offload in use.
func (o *Offload) enable() {
	o.why.Store(nil)
	o.on.Store(true)
}

// disable marks the offload off for reason, at open.
func (o *Offload) disable(reason string) {
	o.on.Store(false)
	o.why.Store(&reason)
}

// InUse reports whether the offload is in use.
func (o *Offload) InUse() bool { return o != nil && o.on.Load() }

// Status returns a snapshot of the offload.
func (o *Offload) Status() OffloadStatus {
	s := OffloadStatus{Name: o.name, InUse: o.on.Load(), Fallbacks: o.fallbacks.Load()}
	if p := o.why.Load(); p != nil && !s.InUse {
		s.Reason = *p
	}
	return s
}

// fallBack records that the kernel refused the offload with errno in op,
// after the refused batch was sent again without it: it counts the
// fallback, switches the offload off, and logs one warning.
func (o *Offload) fallBack(op string, errno unix.Errno) {
	o.fallbacks.Add(1)
	reason := fmt.Sprintf("%s refused with %s (%v) on Linux %s; sent without the offload since",
		op, ErrnoName(errno), errno, KernelRelease())
	o.disable(reason)
	o.warned.Do(func() {
		o.log.Warn("kernel refused an offload: falling back without it, no datagram lost",
			"offload", o.name, "op", op, "errno", ErrnoName(errno), "err", errno.Error(), "kernel", KernelRelease())
	})
}

// refusesOffload reports whether errno, returned for a write or send that
// used an offload, may mean that the kernel does not take the offload, so
// that the same data may still go through without it. Errors that
// concern a destination (unreachable, refused) or a full queue (ENOBUFS)
// do not.
func refusesOffload(errno unix.Errno) bool {
	switch errno {
	case unix.EINVAL, unix.EIO, unix.EOPNOTSUPP, unix.EMSGSIZE, unix.ENOPROTOOPT,
		unix.EPROTONOSUPPORT, unix.ENOSYS, errnoENOTSUPP:
		return true
	}
	return false
}

// errnoENOTSUPP is the kernel's internal ENOTSUPP (524), which some paths
// leak to user space.
const errnoENOTSUPP = unix.Errno(524)

// KernelRelease returns the running kernel's release, as uname -r prints
// it.
var KernelRelease = sync.OnceValue(func() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
})

// ErrnoName returns the symbolic name of an errno, such as "EINVAL", or
// its number where it has none.
func ErrnoName(errno unix.Errno) string {
	if errno == errnoENOTSUPP {
		return "ENOTSUPP"
	}
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return fmt.Sprintf("errno %d", uintptr(errno))
}

// Errno returns the errno inside err, or 0.
func Errno(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// probeError describes a refused probe: the operation, its errno, and
// the kernel release that first has the feature.
func probeError(op string, err error, needs string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", op, err)
	if e := Errno(err); e != 0 {
		fmt.Fprintf(&b, " (%s)", ErrnoName(e))
	}
	fmt.Fprintf(&b, " on Linux %s", KernelRelease())
	if needs != "" {
		fmt.Fprintf(&b, "; needs %s", needs)
	}
	return b.String()
}
