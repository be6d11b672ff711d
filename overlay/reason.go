package overlay

// Reason says why a received packet was dropped by a decoder. Reasons are
// counted, never logged per packet.
type Reason uint8

// Drop reasons of the decoders. OK means the packet was accepted.
const (
	OK                  Reason = iota
	ReasonTruncated            // shorter than the headers it announces
	ReasonIPHeader             // outer IPv4 header malformed: version, IHL or total length
	ReasonIPOptions            // outer IPv4 header carries options
	ReasonIPFragment           // outer IPv4 packet is a fragment
	ReasonIPProto              // outer IPv4 protocol is not the expected one
	ReasonGREVersion           // GRE version is not 0
	ReasonGREFlags             // GRE reserved flag bits or Reserved1 set (only C, K and S are accepted)
	ReasonGREProto             // GRE protocol type is not 0x6558
	ReasonGREChecksum          // GRE checksum (C flag) does not match
	ReasonGREKey               // GRE key missing, unexpected or different from the configured one
	ReasonVXLANFlags           // VXLAN header without the I flag
	ReasonVXLANReserved        // VXLAN reserved bits set
	ReasonVXLANVNI             // VXLAN VNI is not the community's
	ReasonInnerShort           // inner Ethernet frame shorter than 14 bytes
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK:                  "ok",
	ReasonTruncated:     "truncated",
	ReasonIPHeader:      "ip_header",
	ReasonIPOptions:     "ip_options",
	ReasonIPFragment:    "ip_fragment",
	ReasonIPProto:       "ip_proto",
	ReasonGREVersion:    "gre_version",
	ReasonGREFlags:      "gre_flags",
	ReasonGREProto:      "gre_proto",
	ReasonGREChecksum:   "gre_checksum",
	ReasonGREKey:        "gre_key",
	ReasonVXLANFlags:    "vxlan_flags",
	ReasonVXLANReserved: "vxlan_reserved",
	ReasonVXLANVNI:      "vxlan_vni",
	ReasonInnerShort:    "inner_short",
}

// String returns the reason's counter name, such as "gre_key".
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}
