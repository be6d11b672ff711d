package overlay

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxGROSize is the largest segment size a UDP_GRO control message can
// carry: the kernel keeps it in 16 bits (gso_size of struct
// skb_shared_info).
const maxGROSize = 1<<16 - 1

// groSize returns the segment size of the UDP_GRO control message among
// the first n bytes of ctrl, as recvmsg(2) leaves them, or 0 if there is
// none, the first one is malformed, or a header before it is.
//
// The headers are read as the kernel lays out struct cmsghdr for this
// architecture (unix.Cmsghdr: a size_t length, 8 bytes on 64-bit and 4 on
// 32-bit, then the level and type), whatever the alignment of ctrl. It
// reads nothing past ctrl[:n] and allocates nothing.
func groSize(ctrl []byte, n int) int {
	n = min(n, len(ctrl))
	hdrLen := unix.CmsgLen(0) // where a message's data starts (CMSG_DATA)
	for off := 0; n-off >= hdrLen; {
		var h unix.Cmsghdr
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h)), ctrl[off:n])
		if uint64(h.Len) < uint64(hdrLen) || uint64(h.Len) > uint64(n-off) {
			return 0 // cmsg_len shorter than its header or past the end
		}
		l := int(h.Len)
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO {
			// The data is a C int, 4 bytes on every Linux ABI.
			if l-hdrLen < 4 {
				return 0
			}
			v := int32(binary.NativeEndian.Uint32(ctrl[off+hdrLen : off+hdrLen+4]))
			if v <= 0 || v > maxGROSize {
				return 0
			}
			return int(v)
		}
		// The next header starts at the length rounded up to the
		// alignment (CMSG_NXTHDR); l <= n-off, so this cannot overflow.
		off += unix.CmsgSpace(l - hdrLen)
	}
	return 0
}
