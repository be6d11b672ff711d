package overlay

import (
	"encoding/binary"

	"github.com/meshcast/meshcast/internal/inet"
)

// The virtio-net header that precedes every frame on the TAP device
// (struct virtio_net_hdr of linux/virtio_net.h, in the host's byte order).
const (
	// VnetHdrLen is the length of the header.
	VnetHdrLen = 10

	vnetNeedsCsum = 1 // flags: the checksum at csum_start+csum_offset is partial
	vnetGSONone   = 0
	vnetGSOUDPL4  = 5 // VIRTIO_NET_HDR_GSO_UDP_L4: segment as UDP datagrams

	// MaxCoalesce is the most datagrams WriteBatch puts in one frame: the
	// kernel's UDP_MAX_SEGMENTS (64 before Linux 6.1).
	MaxCoalesce = 64
	// maxCoalescedLen bounds the IPv4 total length of a coalesced frame.
	maxCoalescedLen = 65535

	ipUDPHdrs = EthHeaderLen + IPv4HeaderLen + UDPHeaderLen // 42
)

var zeroVnet [VnetHdrLen]byte

// finishVnet takes a virtio-net header and the frame behind it, as read
// from the TAP, and returns the frame's length. The device asks for no
// offloads, so the header should be empty; if the kernel still left a
// checksum partial, finishVnet completes it, and a segmentation-offload
// frame, which cannot be forwarded as it is, gets length 0 (a runt for the
// caller to count).
func finishVnet(b []byte) int {
	if len(b) < VnetHdrLen {
		return 0
	}
	frame := b[VnetHdrLen:]
	if b[1] != vnetGSONone {
		return 0
	}
	if b[0]&vnetNeedsCsum != 0 {
		start := int(binary.NativeEndian.Uint16(b[6:8]))
		at := start + int(binary.NativeEndian.Uint16(b[8:10]))
		if start < len(frame) && at+2 <= len(frame) && at >= start {
			c := inet.Checksum(frame[start:])
			if c == 0 && at-start == 6 { // UDP sends a zero sum as all ones
				c = 0xffff
			}
			binary.BigEndian.PutUint16(frame[at:], c)
		}
	}
	return len(frame)
}

// simpleUDP reports whether frame is an Ethernet frame holding one whole
// IPv4 UDP datagram with no IP options, not a fragment, with a valid IP
// header checksum and a valid (or absent) UDP checksum, and returns its
// UDP payload length. Only such datagrams are coalesced: the kernel then
// rebuilds their headers, so anything it would have checked is checked
// here first.
func simpleUDP(frame []byte) (payload int, ok bool) {
	if len(frame) < ipUDPHdrs || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return 0, false
	}
	ip := inet.IPv4(frame[EthHeaderLen:])
	if ip.Check() != inet.IPv4OK || ip.HeaderLen() != IPv4HeaderLen || ip.Protocol() != ProtoUDP ||
		ip.IsFragment() || ip.TotalLen() < IPv4HeaderLen+UDPHeaderLen || !ip.HeaderChecksumOK() {
		return 0, false
	}
	udp := ip.Payload()
	if int(binary.BigEndian.Uint16(udp[4:6])) != len(udp) {
		return 0, false
	}
	if binary.BigEndian.Uint16(udp[6:8]) != 0 {
		acc := inet.Sum(ip.Addrs(), uint64(ProtoUDP)+uint64(len(udp)))
		if inet.Fold(inet.Sum(udp, acc)) != 0xffff {
			return 0, false
		}
	}
	return len(udp) - UDPHeaderLen, true
}

// sameFlow reports whether b can follow a in one coalesced frame: the same
// Ethernet header, the same IPv4 header but for total length, ID and
// checksum, and the same UDP ports.
func sameFlow(a, b []byte) bool {
	// Ethernet (14), then IPv4 version/IHL and TOS (2).
	if string(a[:EthHeaderLen+2]) != string(b[:EthHeaderLen+2]) {
		return false
	}
	const ip = EthHeaderLen
	// Flags (DF), TTL and protocol; addresses; ports.
	return a[ip+inet.IPv4FlagsFrag] == b[ip+inet.IPv4FlagsFrag] && a[ip+inet.IPv4TTL] == b[ip+inet.IPv4TTL] &&
		a[ip+inet.IPv4Proto] == b[ip+inet.IPv4Proto] &&
		string(a[ip+inet.IPv4Src:ip+inet.IPv4Dst+4]) == string(b[ip+inet.IPv4Src:ip+inet.IPv4Dst+4]) &&
		string(a[ip+IPv4HeaderLen:ip+IPv4HeaderLen+4]) == string(b[ip+IPv4HeaderLen:ip+IPv4HeaderLen+4])
}

// udpRun returns how many frames from the start of frames can go to the
// kernel as one UDP segmentation-offload frame, and the segment size: the
// first frame's payload length. Every datagram of the run has that length
// but the last, which may be shorter. A result below 2 means: write
// frames[0] on its own.
func udpRun(frames [][]byte) (n, segment int) {
	if len(frames) < 2 {
		return len(frames), 0
	}
	first := frames[0]
	seg, ok := simpleUDP(first)
	if !ok || seg == 0 {
		return 1, 0
	}
	total := IPv4HeaderLen + UDPHeaderLen + seg
	n = 1
	for n < len(frames) && n < MaxCoalesce {
		f := frames[n]
		p, ok := simpleUDP(f)
		if !ok || p == 0 || p > seg || total+p > maxCoalescedLen || !sameFlow(first, f) {
			break
		}
		total += p
		n++
		if p < seg {
			break // a shorter datagram ends the run
		}
	}
	return n, seg
}

// buildCoalesced writes into dst the virtio-net header and the frame that
// carries the datagrams of frames (a run found by udpRun with segment
// size seg) as one UDP segmentation-offload frame, and returns its length.
// dst must hold VnetHdrLen + ipUDPHdrs + the payloads.
func buildCoalesced(dst []byte, frames [][]byte, seg int) int {
	first := frames[0]
	h := dst[:VnetHdrLen]
	h[0], h[1] = vnetNeedsCsum, vnetGSOUDPL4
	binary.NativeEndian.PutUint16(h[2:4], ipUDPHdrs)
	binary.NativeEndian.PutUint16(h[4:6], uint16(seg))
	binary.NativeEndian.PutUint16(h[6:8], EthHeaderLen+IPv4HeaderLen)
	binary.NativeEndian.PutUint16(h[8:10], 6)
	out := dst[VnetHdrLen:]
	copy(out, first[:ipUDPHdrs])
	at := ipUDPHdrs
	for _, f := range frames {
		at += copy(out[at:], inet.IPv4(f[EthHeaderLen:]).Payload()[UDPHeaderLen:])
	}
	ip := inet.IPv4(out[EthHeaderLen:])
	ip.SetTotalLen(at - EthHeaderLen)
	ip.SetChecksum()
	udpLen := at - EthHeaderLen - IPv4HeaderLen
	u := ip[IPv4HeaderLen:]
	binary.BigEndian.PutUint16(u[4:6], uint16(udpLen))
	// A partial checksum holds the pseudo-header sum, not complemented.
	binary.BigEndian.PutUint16(u[6:8], inet.Fold(inet.Sum(ip.Addrs(), uint64(ProtoUDP)+uint64(udpLen))))
	return VnetHdrLen + at
}
