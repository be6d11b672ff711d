package overlay

// fnvOffset32 is the offset basis of 32-bit FNV-1a.
const fnvOffset32 = 2166136261

// fnv32a continues the 32-bit FNV-1a hash h over b: fnv32a(fnvOffset32, b)
// is what hash/fnv's New32a sums for b. It needs no hash.Hash value, so
// the data path hashes without allocating.
func fnv32a(h uint32, b []byte) uint32 {
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}
