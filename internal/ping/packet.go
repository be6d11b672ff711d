package ping

import (
	"encoding/binary"
	"strconv"
)

// Offsets and sizes of the wire format; see the package documentation.
const (
	packetLen = 64 // every probe and reply has exactly this length
	magic     = "MCPING1\x00"
	offType   = 8            // 1 byte: msgType
	offKind   = 9            // 1 byte: kind
	offSeq    = 10           // 4 bytes: sequence number
	offNonce  = 14           // 8 bytes: the prober's per-run nonce
	offStamp  = 22           // 8 bytes: the prober's send time, unix nanoseconds
	headerLen = offStamp + 8 // the rest, up to packetLen, is zero padding
)

// msgType says whether a packet asks or answers.
type msgType uint8

const (
	typeRequest msgType = 1
	typeReply   msgType = 2
)

// kind says which path a probe took to the responder, and so which of the
// responder's sockets answers it.
type kind uint8

const (
	kindUnicast   kind = 1
	kindMulticast kind = 2
)

func (k kind) String() string {
	switch k {
	case kindUnicast:
		return "unicast"
	case kindMulticast:
		return "multicast"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// reason is why a packet was not accepted, for the counters of a Responder
// and a prober. reasonOK means accepted.
type reason uint8

const (
	reasonOK         reason = iota
	reasonShort             // fewer than packetLen bytes
	reasonLong              // more than packetLen bytes
	reasonMagic             // not our magic
	reasonType              // type is neither request nor reply
	reasonKind              // kind is neither unicast nor multicast
	reasonPadding           // a padding byte is not zero
	reasonDirection         // a reply where a request belongs, or the reverse
	reasonWrongKind         // a multicast probe on the unicast socket, or the reverse
	reasonSource            // the sender's address cannot be answered
	reasonSendFailed        // the kernel did not take the reply at once
	numReasons
)

var reasonNames = [numReasons]string{
	reasonOK:         "ok",
	reasonShort:      "short",
	reasonLong:       "long",
	reasonMagic:      "bad magic",
	reasonType:       "bad type",
	reasonKind:       "bad kind",
	reasonPadding:    "bad padding",
	reasonDirection:  "request and reply swapped",
	reasonWrongKind:  "wrong kind for socket",
	reasonSource:     "bad source",
	reasonSendFailed: "send failed",
}

func (r reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// header holds the fields of a packet.
type header struct {
	typ   msgType
	kind  kind
	seq   uint32
	nonce uint64
	stamp int64 // unix nanoseconds
}

// packet is a view of one probe or reply. It copies nothing; its getters
// may only be called on a packet that parse accepted or encode built.
type packet []byte

// parse validates b and returns it as a packet. It accepts exactly
// packetLen bytes with the magic, a known type and kind, and zero padding;
// anything else is refused with the reason, and a nil packet.
func parse(b []byte) (packet, reason) {
	switch {
	case len(b) < packetLen:
		return nil, reasonShort
	case len(b) > packetLen:
		return nil, reasonLong
	case string(b[:offType]) != magic:
		return nil, reasonMagic
	}
	if t := msgType(b[offType]); t != typeRequest && t != typeReply {
		return nil, reasonType
	}
	if k := kind(b[offKind]); k != kindUnicast && k != kindMulticast {
		return nil, reasonKind
	}
	for _, c := range b[headerLen:packetLen] {
		if c != 0 {
			return nil, reasonPadding
		}
	}
	return packet(b), reasonOK
}

func (p packet) typ() msgType  { return msgType(p[offType]) }
func (p packet) kind() kind    { return kind(p[offKind]) }
func (p packet) seq() uint32   { return binary.BigEndian.Uint32(p[offSeq:]) }
func (p packet) nonce() uint64 { return binary.BigEndian.Uint64(p[offNonce:]) }
func (p packet) stamp() int64  { return int64(binary.BigEndian.Uint64(p[offStamp:])) }

// setType rewrites the type in place; a responder turns a request into its
// reply this way, every other byte echoed.
func (p packet) setType(t msgType) { p[offType] = byte(t) }

func (p packet) header() header {
	return header{typ: p.typ(), kind: p.kind(), seq: p.seq(), nonce: p.nonce(), stamp: p.stamp()}
}

// encode writes h into the first packetLen bytes of b, padding included,
// and returns them. len(b) must be at least packetLen.
func encode(b []byte, h header) packet {
	p := packet(b[:packetLen])
	copy(p, magic)
	p[offType] = byte(h.typ)
	p[offKind] = byte(h.kind)
	binary.BigEndian.PutUint32(p[offSeq:], h.seq)
	binary.BigEndian.PutUint64(p[offNonce:], h.nonce)
	binary.BigEndian.PutUint64(p[offStamp:], uint64(h.stamp))
	clear(p[headerLen:])
	return p
}
