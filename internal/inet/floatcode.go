package inet

import "math/bits"

// DecodeFloat returns the value a float code of IGMPv3 or MLDv2 stands for
// (RFC 3376 section 4.1.1, RFC 3810 sections 5.1.3 and 5.1.9), with m bits
// of mantissa: 4 for IGMPv3's Max Resp Code and QQIC and MLDv2's QQIC, 12
// for MLDv2's Maximum Response Code. A code below 1<<(m+3) is the value
// itself; from there on it is 1 bit set, 3 bits of exponent and m of
// mantissa, standing for (mantissa | 1<<m) << (exponent + 3).
func DecodeFloat(c uint32, m uint) int64 {
	if c < 1<<(m+3) {
		return int64(c)
	}
	exp := uint(c>>m) & 0x07
	mant := int64(c) & (1<<m - 1)
	return (mant | 1<<m) << (exp + 3)
}

// MaxFloat is the largest value a float code with m bits of mantissa stands
// for: 31744 for m = 4, 8387584 for m = 12.
func MaxFloat(m uint) int64 { return (1<<(m+1) - 1) << (7 + 3) }

// EncodeFloat returns the code for v, the inverse of DecodeFloat. Values
// below 1<<(m+3) are exact; larger ones are rounded down to the nearest
// value the format can represent, so a code never stands for more than was
// asked for; from MaxFloat(m) on it gives the largest code. Negative values
// give 0.
func EncodeFloat(v int64, m uint) uint32 {
	switch {
	case v < 0:
		return 0
	case v < 1<<(m+3):
		return uint32(v)
	case v >= MaxFloat(m):
		return 1<<(m+4) - 1
	}
	// The top m+1 bits are 1 and the mantissa, shifted left by exp+3.
	exp := bits.Len64(uint64(v)) - int(m) - 4
	mant := (v >> (exp + 3)) & (1<<m - 1)
	return 1<<(m+3) | uint32(exp)<<m | uint32(mant)
}
