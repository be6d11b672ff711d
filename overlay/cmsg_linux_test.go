package overlay

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message as the kernel writes it: a header laid
// out as this architecture's struct cmsghdr, the data, and the padding up
// to the next header.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := unix.Cmsghdr{Level: level, Type: typ}
	h.SetLen(unix.CmsgLen(len(data)))
	putCmsghdr(b, h)
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func putCmsghdr(b []byte, h unix.Cmsghdr) {
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h)))
}

// groMsg is the UDP_GRO control message of a datagram coalesced from
// segments of seg bytes.
func groMsg(seg int32) []byte {
	var d [4]byte
	binary.NativeEndian.PutUint32(d[:], uint32(seg))
	return cmsg(unix.SOL_UDP, unix.UDP_GRO, d[:])
}

// withLen returns a copy of the control message m with its cmsg_len set to
// l; l < 0 sets the largest value a size_t holds.
func withLen(m []byte, l int) []byte {
	m = bytes.Clone(m)
	var h unix.Cmsghdr
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h)), m)
	if l < 0 {
		h.Len = 0
		h.Len-- // 2^64-1 on 64-bit, 2^32-1 on 32-bit
	} else {
		h.SetLen(l)
	}
	putCmsghdr(m, h)
	return m
}

type groSizeCase struct {
	name string
	ctrl []byte
	n    int // -1: len(ctrl)
	want int
}

func groSizeCases() []groSizeCase {
	gro := groMsg(1400)
	hdr := unix.CmsgLen(0)
	return []groSizeCase{
		{"none", nil, -1, 0},
		{"gro", gro, -1, 1400},
		{"gro without trailing padding", gro, unix.CmsgLen(4), 1400},
		{"gro smallest", groMsg(1), -1, 1},
		{"gro largest", groMsg(maxGROSize), -1, maxGROSize},
		{"gro zero", groMsg(0), -1, 0},
		{"gro negative", groMsg(-1), -1, 0},
		{"gro over 16 bits", groMsg(maxGROSize + 1), -1, 0},
		{"after SCM_RIGHTS with padding", concat(unix.UnixRights(3), gro), -1, 1400},
		{"after a one-byte message", concat(cmsg(unix.SOL_IP, unix.IP_TTL, []byte{64}), gro), -1, 1400},
		{"after an empty message", concat(cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, nil), gro), -1, 1400},
		{"first gro wins", concat(groMsg(1200), gro), -1, 1200},
		{"short gro data", concat(cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{1, 2}), gro), -1, 0},
		{"other level", cmsg(unix.SOL_IP, unix.UDP_GRO, gro[hdr:hdr+4]), -1, 0},
		{"other type", cmsg(unix.SOL_UDP, unix.UDP_SEGMENT, gro[hdr:hdr+4]), -1, 0},
		{"n cuts the data", gro, unix.CmsgLen(4) - 1, 0},
		{"n cuts the header", gro, hdr - 1, 0},
		{"n past the buffer", gro, 1 << 20, 1400},
		{"n negative", gro, -5, 0},
		{"trailing bytes shorter than a header", concat(gro, []byte{1, 2, 3}), -1, 1400},
		{"len shorter than a header", withLen(gro, hdr-1), -1, 0},
		{"len zero", withLen(gro, 0), -1, 0},
		{"len past n", withLen(gro, len(gro)+1), -1, 0},
		{"len largest", withLen(gro, -1), -1, 0},
		{"bad len before gro", concat(withLen(cmsg(unix.SOL_IP, unix.IP_TTL, []byte{64}), 2), gro), -1, 0},
		{"runt", []byte{1, 2, 3}, -1, 0},
	}
}

func concat(ms ...[]byte) []byte { return bytes.Join(ms, nil) }

func TestGROSize(t *testing.T) {
	for _, tc := range groSizeCases() {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			if n == -1 {
				n = len(tc.ctrl)
			}
			if got := groSize(tc.ctrl, n); got != tc.want {
				t.Errorf("groSize = %d, want %d", got, tc.want)
			}
			// The same bytes at an odd address: the parser makes no
			// assumption about alignment.
			odd := make([]byte, len(tc.ctrl)+1)[1:]
			copy(odd, tc.ctrl)
			if got := groSize(odd, n); got != tc.want {
				t.Errorf("at an odd address: groSize = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestGROSizeAllocs(t *testing.T) {
	ctrl := concat(unix.UnixRights(3), groMsg(1400))
	if a := testing.AllocsPerRun(100, func() { groSize(ctrl, len(ctrl)) }); a != 0 {
		t.Errorf("%v allocations per groSize", a)
	}
}

// TestKernelLayouts checks the structures meshcast hands the kernel
// against the sizes the kernel's ABI gives them on this architecture.
func TestKernelLayouts(t *testing.T) {
	word := unsafe.Sizeof(uintptr(0)) // size_t and pointers
	// struct cmsghdr: size_t cmsg_len; int cmsg_level; int cmsg_type.
	if unix.SizeofCmsghdr != word+8 || uintptr(unix.CmsgLen(0)) != word+8 {
		t.Errorf("struct cmsghdr: SizeofCmsghdr %d, CmsgLen(0) %d; want %d", unix.SizeofCmsghdr, unix.CmsgLen(0), word+8)
	}
	// struct mmsghdr: struct msghdr msg_hdr; unsigned int msg_len; padded
	// to the alignment of struct msghdr, that of a pointer.
	var m mmsghdr
	want := (unix.SizeofMsghdr + 4 + word - 1) &^ (word - 1)
	if unsafe.Sizeof(m) != want || unsafe.Offsetof(m.len) != unix.SizeofMsghdr {
		t.Errorf("struct mmsghdr: size %d, msg_len at %d; want size %d, msg_len at %d",
			unsafe.Sizeof(m), unsafe.Offsetof(m.len), want, unix.SizeofMsghdr)
	}
}

// FuzzGROSize feeds the UDP_GRO control-message parser arbitrary bytes and
// lengths. The result is a valid segment size or 0, depends on nothing
// past n nor on the alignment of ctrl, and agrees with the parser of
// golang.org/x/sys/unix wherever that one accepts the input.
func FuzzGROSize(f *testing.F) {
	for _, tc := range groSizeCases() {
		n := tc.n
		if n == -1 {
			n = len(tc.ctrl)
		}
		f.Add(tc.ctrl, n)
	}
	f.Fuzz(func(t *testing.T, ctrl []byte, n int) {
		got := groSize(ctrl, n)
		if got < 0 || got > maxGROSize {
			t.Fatalf("segment size %d out of range", got)
		}
		m := max(0, min(n, len(ctrl)))
		if got > 0 && m < unix.CmsgLen(4) {
			t.Fatalf("segment size %d from %d bytes", got, m)
		}

		odd := make([]byte, len(ctrl)+1)[1:]
		copy(odd, ctrl)
		for i := m; i < len(odd); i++ {
			odd[i] ^= 0xff // past n: must not be read
		}
		if g := groSize(odd, n); g != got {
			t.Fatalf("groSize = %d, but %d with the bytes past n changed or at an odd address", got, g)
		}

		msgs, err := unix.ParseSocketControlMessage(ctrl[:m])
		if err != nil {
			return
		}
		want := 0
		for _, msg := range msgs {
			if msg.Header.Level != unix.SOL_UDP || msg.Header.Type != unix.UDP_GRO {
				continue
			}
			if len(msg.Data) >= 4 {
				if v := int32(binary.NativeEndian.Uint32(msg.Data)); v > 0 && v <= maxGROSize {
					want = int(v)
				}
			}
			break
		}
		if got != want {
			t.Fatalf("groSize = %d; the messages %+v give %d", got, msgs, want)
		}
	})
}
