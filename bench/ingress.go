package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// The nftables objects of the source measure, in each subscriber's
// namespace: table netdev nftTable, whose chain on eth0's ingress counts
// the stream's copies in the named counter nftCounter and drops them.
const (
	nftTable   = "mcb"
	nftCounter = "stream"
	// featureUSO is ethtool's name of UDP segmentation offload.
	featureUSO = "tx-udp-segmentation"
)

// Encapsulation overheads in front of the inner UDP payload: outer IPv4
// (20), then VXLAN's UDP (8) and header (8), or GRE's header without key
// (4); then the inner Ethernet (14), IPv4 (20) and UDP (8) headers. Over
// an IPv6 underlay the outer header is 40 bytes: outer6 more.
const (
	vxlanOverhead = 20 + 8 + 8 + 14 + 20 + 8
	greOverhead   = 20 + 4 + 14 + 20 + 8
	outer6        = 40 - 20
)

// wireLen is the IP length (IPv4 total length, or IPv6 header plus payload
// length) of one copy of a datagram of payload bytes over the underlay
// family (Underlay4 or Underlay6): what an ingress hook counts per copy.
func wireLen(encap, underlay string, payload int) int {
	n := vxlanOverhead + payload
	if encap == "gre" {
		n = greOverhead + payload
	}
	if underlay == Underlay6 {
		n += outer6
	}
	return n
}

// ingressRuleset returns the nftables ruleset (for nft -f) that counts and
// drops, on eth0's ingress, the copies of the stream (inner destination
// groupAddr:groupPort) that the source (underlay address src) sends to dst,
// encapsulated in encap, over IPv4 or, when src and dst are IPv6
// addresses, over IPv6 (the netdev family sees both). The inner headers
// are matched at their offsets from the outer transport header: VXLAN's
// UDP header, or the GRE header, with or without a key; the same offsets
// over either family. Everything else passes: IGMP, ARP, neighbour
// discovery, the daemons' own traffic.
func ingressRuleset(encap string, src, dst netip.Addr) string {
	g := groupAddr.To4()
	group := fmt.Sprintf("0x%02x%02x%02x%02x", g[0], g[1], g[2], g[3])
	// The outer header: the addresses, and GRE's protocol number (the
	// IPv6 next header: meshcast sends no extension headers).
	outer, greProto := fmt.Sprintf("ip saddr %s ip daddr %s", src, dst), "ip protocol 47"
	if src.Is6() {
		outer, greProto = fmt.Sprintf("ip6 saddr %s ip6 daddr %s", src, dst), "ip6 nexthdr 47"
	}
	// inner is the offset in bytes of the inner IPv4 header from the
	// outer transport header; the rule matches its destination (+16) and
	// the inner UDP destination port (+22).
	rule := func(match string, inner int) string {
		return fmt.Sprintf("\t\t%s %s @th,%d,32 %s @th,%d,16 %d counter name %q drop\n",
			outer, match, (inner+16)*8, group, (inner+22)*8, groupPort, nftCounter)
	}
	var rules string
	if encap == "gre" {
		// Flags 0 (4-byte header) or K (8 bytes), protocol 0x6558
		// (Ethernet), then the inner Ethernet header.
		rules = rule(greProto+" @th,0,32 0x00006558", 4+14) +
			rule(greProto+" @th,0,32 0x20006558", 8+14)
	} else {
		rules = rule("udp dport 4789", 8+8+14)
	}
	return fmt.Sprintf(`table netdev %s {
	counter %s {
	}
	chain ingress {
		type filter hook ingress device %q priority -500; policy accept;
%s	}
}
`, nftTable, nftCounter, nodeLink, rules)
}

// parseNftCounter reads the packets and bytes of the one counter in the
// output of `nft -j list counter FAMILY TABLE NAME`.
func parseNftCounter(js []byte) (packets, bytes uint64, err error) {
	var out struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
				Bytes   uint64 `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(js, &out); err != nil {
		return 0, 0, fmt.Errorf("bench: nft counter: %w", err)
	}
	for _, o := range out.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, o.Counter.Bytes, nil
		}
	}
	return 0, 0, errors.New("bench: nft printed no counter")
}

// ethtoolFeature finds feature in the output of `ethtool -k DEV`: whether
// it is on, and whether it is fixed (cannot be changed).
func ethtoolFeature(out, feature string) (on, fixed, ok bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		name, val, found := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !found || name != feature {
			continue
		}
		val = strings.TrimSpace(val)
		return strings.HasPrefix(val, "on"), strings.Contains(val, "[fixed]"), true
	}
	return false, false, false
}

// tallyIngress fills in s's counts of a source trial in which sent
// datagrams went out, from the subscribers' counters before sending (c0),
// at the on-time point (c1) and once nothing more arrived (c2). Each
// subscriber counts for at most sent in the loss, so that copies one gets
// twice do not hide copies another missed.
func tallyIngress(s *Sample, sent uint64, c0, c1, c2 []ingressCount) {
	s.Sent = sent
	s.OnTime, s.Delivered, s.IngressBytes, s.PerApp = 0, 0, 0, nil
	var capped uint64
	for i := range c0 {
		on := c1[i].packets - c0[i].packets
		s.OnTime += on
		capped += min(on, sent)
		n := c2[i].packets - c0[i].packets
		s.PerApp = append(s.PerApp, n)
		s.Delivered += n
		s.IngressBytes += c2[i].bytes - c0[i].bytes
	}
	s.Loss = Loss(float64(capped), float64(sent)*float64(len(c0)))
}
