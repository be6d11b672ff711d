package inet

import "testing"

// TestFloatCodes checks both widths against RFC values: every code decodes
// to a value that encodes back to it, the boundaries, and rounding down.
func TestFloatCodes(t *testing.T) {
	for _, c := range []struct {
		m        uint
		code     uint32
		value    int64
		encodeOf int64 // a value that must encode to code
	}{
		{4, 0, 0, 0}, {4, 127, 127, 127}, {4, 0x80, 128, 128}, {4, 0x81, 136, 143},
		{4, 0xff, 31744, 1 << 20}, {12, 0x7fff, 32767, 32767}, {12, 0x8000, 32768, 32775},
		{12, 0xffff, 8387584, 1 << 30},
	} {
		if got := DecodeFloat(c.code, c.m); got != c.value {
			t.Errorf("DecodeFloat(%#x, %d) = %d, want %d", c.code, c.m, got, c.value)
		}
		if got := EncodeFloat(c.encodeOf, c.m); got != c.code {
			t.Errorf("EncodeFloat(%d, %d) = %#x, want %#x", c.encodeOf, c.m, got, c.code)
		}
	}
	if EncodeFloat(-1, 4) != 0 {
		t.Error("a negative value does not encode as 0")
	}
	for _, m := range []uint{4, 12} {
		for c := uint32(0); c < 1<<(m+4); c++ {
			v := DecodeFloat(c, m)
			if back := EncodeFloat(v, m); back != c {
				t.Fatalf("m=%d: code %#x decodes to %d, which encodes to %#x", m, c, v, back)
			}
			if c > 0 && v <= DecodeFloat(c-1, m) {
				t.Fatalf("m=%d: code %#x decodes to %d, not above code %#x's", m, c, v, c-1)
			}
		}
	}
}
