package inet

import (
	"math/rand/v2"
	"testing"
)

// naive sums 16-bit words one at a time, folding as it goes.
func naive(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = s&0xffff + s>>16
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestChecksumMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := Checksum(b), naive(b); got != want {
			t.Fatalf("len %d: %#04x, want %#04x", n, got, want)
		}
	}
	// RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
	if got := Fold(Sum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0)); got != 0xddf2 {
		t.Fatalf("RFC 1071 example: %#04x", got)
	}
}

func TestVerify(t *testing.T) {
	b := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2}
	c := Checksum(b)
	b[10], b[11] = byte(c>>8), byte(c)
	if !Verify(b) {
		t.Fatal("a header with its checksum does not verify")
	}
	b[0] ^= 1
	if Verify(b) {
		t.Fatal("a corrupted header verifies")
	}
}
