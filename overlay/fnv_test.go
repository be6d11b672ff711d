package overlay

import (
	"hash/fnv"
	"testing"
)

func TestFNV32aMatchesHashFNV(t *testing.T) {
	parts := [][]byte{nil, {0}, []byte("meshcast"), make([]byte, 300)}
	h := uint32(fnvOffset32)
	ref := fnv.New32a()
	for _, p := range parts {
		h = fnv32a(h, p)
		ref.Write(p)
		if h != ref.Sum32() {
			t.Fatalf("after %d bytes: %#x, hash/fnv %#x", len(p), h, ref.Sum32())
		}
	}
}
