package bench

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// The group and port of the benchmark traffic.
var groupAddr = net.IPv4(239, 1, 2, 3)

const groupPort = 5001

// Every datagram starts with a header: magic, trial number, sequence
// number, send time (Unix nanoseconds, CLOCK_REALTIME). The rest of the
// payload is zeros.
const (
	payloadMagic = 0x6d636231 // "mcb1"
	headerLen    = 24
	// maxPayload fits the smaller overlay MTU (VXLAN over IPv4, 1450) with
	// the IPv4 and UDP headers.
	maxPayload = 1450 - 20 - 8
	// maxPayload6 is maxPayload over an IPv6 underlay, whose outer header
	// is 20 bytes longer: the VXLAN overlay MTU is 1430.
	maxPayload6 = maxPayload - 20
)

// maxPayloadOver returns the largest payload that fits the overlay MTU
// over the underlay family (Underlay4 or Underlay6).
func maxPayloadOver(underlay string) int {
	if underlay == Underlay6 {
		return maxPayload6
	}
	return maxPayload
}

// putHeader writes the header into b, which must hold headerLen bytes.
func putHeader(b []byte, trial uint32, seq uint64, sent time.Time) {
	binary.BigEndian.PutUint32(b[0:], payloadMagic)
	binary.BigEndian.PutUint32(b[4:], trial)
	binary.BigEndian.PutUint64(b[8:], seq)
	binary.BigEndian.PutUint64(b[16:], uint64(sent.UnixNano()))
}

// parseHeader reads a header written by putHeader; ok is false for
// anything else.
func parseHeader(b []byte) (trial uint32, seq uint64, sentNs int64, ok bool) {
	if len(b) < headerLen || binary.BigEndian.Uint32(b) != payloadMagic {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint64(b[8:]), int64(binary.BigEndian.Uint64(b[16:])), true
}

// parseBridgeInfo reads the output of `ip -d -j link show BRIDGE`: whether
// IGMP snooping and the bridge's own querier are on, and the query
// response interval (iproute2 prints it in centiseconds). A snooping
// bridge floods every group until its querier has been active for about
// the response interval.
func parseBridgeInfo(js []byte) (snooping, querier bool, response time.Duration, err error) {
	var links []struct {
		LinkInfo struct {
			Kind string `json:"info_kind"`
			Data struct {
				Snooping *int   `json:"mcast_snooping"`
				Querier  *int   `json:"mcast_querier"`
				Response *int64 `json:"mcast_query_response_intvl"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal(js, &links); err != nil {
		return false, false, 0, fmt.Errorf("bench: bridge details: %w", err)
	}
	if len(links) != 1 || links[0].LinkInfo.Kind != "bridge" {
		return false, false, 0, errors.New("bench: not a bridge")
	}
	d := links[0].LinkInfo.Data
	if d.Snooping == nil {
		return false, false, 0, errors.New("bench: bridge details lack mcast_snooping")
	}
	snooping = *d.Snooping != 0
	querier = d.Querier != nil && *d.Querier != 0
	response = 10 * time.Second // the kernel's default
	if d.Response != nil {
		response = time.Duration(*d.Response) * 10 * time.Millisecond
	}
	return snooping, querier, response, nil
}
