// Package inet holds what meshcast's IPv4, GRE, UDP and IGMP code share:
// the Internet checksum (RFC 1071) and a byte view of the IPv4 header
// (IPv4).
package inet

import "encoding/binary"

// Sum adds b to acc as big-endian 16-bit words, padding an odd final byte
// with zero, without folding the carries. Sums of consecutive pieces of
// even length add up.
func Sum(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// Fold reduces a sum to 16 bits with end-around carry.
func Fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// Checksum returns the checksum of b, folded and complemented, ready to
// store in a header whose checksum field was zero when b was summed.
func Checksum(b []byte) uint16 { return ^Fold(Sum(b, 0)) }

// Verify reports whether b, its checksum field included, sums to all ones.
func Verify(b []byte) bool { return Fold(Sum(b, 0)) == 0xffff }
