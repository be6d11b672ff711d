package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	underlay6A = netip.MustParseAddr("fd00:198:18::1")
	underlay6B = netip.MustParseAddr("fd00:198:18::2")
)

// addLoopback6 turns IPv6 on for lo and adds the addresses as /64s
// without duplicate address detection.
func (ns *testNS) addLoopback6(t testing.TB, addrs ...netip.Addr) {
	t.Helper()
	ns.do(t, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/lo/disable_ipv6", []byte("0"), 0); err != nil {
			return err
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		for _, a := range addrs {
			ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(64, 128)}
			if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: ipn, Flags: unix.IFA_F_NODAD}); err != nil {
				return fmt.Errorf("add %v to lo: %w", ipn, err)
			}
		}
		return nil
	})
}

// listenPair6 opens a Conn of the codec with opts on each IPv6 underlay
// address.
func listenPair6(t testing.TB, ns *testNS, codec string, opts Options) (a, b *Conn) {
	t.Helper()
	ns.addLoopback6(t, underlay6A, underlay6B)
	return listenPairAt(t, ns, codec, opts, underlay6A, underlay6B)
}

// captureLo opens an AF_PACKET socket on lo that receives the IPv6
// packets of the namespace, for gopacket to decode.
func captureLo(t testing.TB, ns *testNS) int {
	t.Helper()
	var fd int
	ns.do(t, func() error {
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IPV6)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: lo.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(ioTimeout / time.Nanosecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestIntegrationIPv6Underlay sends frames over an IPv6 underlay with
// each codec, with and without offloads, and checks that every one
// arrives from the sender's address, and, with gopacket as the oracle,
// that the packets on the wire are IPv6 with next header GRE (47) or UDP
// to port 4789 with a valid checksum.
func TestIntegrationIPv6Underlay(t *testing.T) {
	for _, codec := range []string{"gre", "vxlan"} {
		for _, noOffload := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/offload=%v", codec, !noOffload), func(t *testing.T) {
				ns := newTestNS(t)
				a, b := listenPair6(t, ns, codec, Options{Batch: 16, NoOffload: noOffload})
				var c Codec = NewGRE(testKey, true)
				if codec == "vxlan" {
					c = NewVXLAN(testVNI, DefaultVXLANPort)
				}
				for _, o := range a.Offloads() {
					// lo is not Ethernet: AF_PACKET egress is off and
					// says so, as over IPv4; the receive ring is not
					// used over IPv6.
					if o.Name == OffloadPacketRx && (o.InUse || (!noOffload && o.Reason != OffloadNoIPv6)) {
						t.Errorf("offload %s over IPv6: in use %v, reason %q", o.Name, o.InUse, o.Reason)
					}
					if (o.Name == OffloadPacketTx || o.Name == OffloadPacketGSO) && (o.InUse || (!noOffload && !strings.Contains(o.Reason, "not Ethernet"))) {
						t.Errorf("offload %s over IPv6 on lo: in use %v, reason %q", o.Name, o.InUse, o.Reason)
					}
					if codec == "vxlan" && (o.Name == OffloadUDPGSO || o.Name == OffloadUDPGRO) && o.InUse == noOffload {
						t.Errorf("offload %s over IPv6: in use %v with NoOffload %v", o.Name, o.InUse, noOffload)
					}
				}
				capfd := captureLo(t, ns)

				// Distinct frames, and a run of one flow of one size
				// (one segmentation-offload send where it is on).
				const n = 40
				pkts, frames := encapFrames(c, 10)
				for i := range n - 10 {
					f := testFrame(400, 2000)
					binary.BigEndian.PutUint32(f[len(f)-4:], uint32(i))
					frames = append(frames, f)
					pkts = append(pkts, c.Encap(withHeadroom(f), len(f)))
				}
				msgs := make([]Message, n)
				for i := range msgs {
					msgs[i] = Message{Buf: pkts[i], Addr: underlay6B}
				}
				before := loTx(t, ns)
				var failed int
				ns.do(t, func() (err error) {
					failed, err = a.WriteBatch(msgs)
					return err
				})
				if failed != 0 {
					t.Fatalf("WriteBatch: %d failed", failed)
				}
				// Segmentation offload sends the run of 30 as one
				// packet (lo passes it on unsplit).
				packets := loTx(t, ns) - before
				t.Logf("%d copies left as %d packets", n, packets)
				if codec == "vxlan" && !noOffload && packets > 12 {
					t.Errorf("%d packets for %d copies with segmentation offload over IPv6", packets, n)
				}
				got := readN(t, b, n)
				seen := make([]bool, len(frames))
				for i, m := range got {
					if m.addr != underlay6A {
						t.Errorf("message %d from %v, want %v", i, m.addr, underlay6A)
					}
					inner, r := c.DecapIPv6(m.buf)
					if r != OK {
						t.Fatalf("message %d (%d bytes): DecapIPv6: %v", i, len(m.buf), r)
					}
					found := false
					for k, f := range frames {
						if !seen[k] && bytes.Equal(inner, f) {
							seen[k], found = true, true
							break
						}
					}
					if !found {
						t.Errorf("message %d carries a frame of %d bytes that was not sent, or twice", i, len(inner))
					}
				}

				// The first packet on lo, decoded by gopacket.
				buf := make([]byte, 64<<10)
				for {
					k, _, err := unix.Recvfrom(capfd, buf, 0)
					if err != nil {
						t.Fatalf("capture on lo: %v", err)
					}
					pkt := gopacket.NewPacket(buf[:k], layers.LayerTypeEthernet, gopacket.Default)
					ip, _ := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
					if ip == nil || !ip.SrcIP.Equal(underlay6A.AsSlice()) {
						continue // such as neighbour discovery
					}
					if !ip.DstIP.Equal(underlay6B.AsSlice()) {
						t.Fatalf("outer destination %v, want %v", ip.DstIP, underlay6B)
					}
					if codec == "gre" {
						if ip.NextHeader != layers.IPProtocolGRE {
							t.Fatalf("next header %v, want GRE", ip.NextHeader)
						}
						gre, _ := pkt.Layer(layers.LayerTypeGRE).(*layers.GRE)
						if gre == nil || gre.Protocol != layers.EthernetTypeTransparentEthernetBridging || !gre.KeyPresent || gre.Key != testKey {
							t.Fatalf("gopacket GRE %+v", gre)
						}
						if int(ip.Length) != len(ip.Payload) || pkt.Layer(layers.LayerTypeEthernet) == nil {
							t.Fatalf("IPv6 payload length %d for %d bytes", ip.Length, len(ip.Payload))
						}
						break
					}
					udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
					if ip.NextHeader != layers.IPProtocolUDP || udp == nil || udp.DstPort != DefaultVXLANPort {
						t.Fatalf("next header %v, UDP %+v", ip.NextHeader, udp)
					}
					if udp.Checksum == 0 {
						t.Fatalf("UDP over IPv6 without a checksum")
					}
					// The checksum over the pseudo-header (RFC 8200
					// section 8.1) must verify. Through the flow
					// sockets (offload on) lo leaves it to the
					// device, as a NIC would fill it in: the capture
					// sees it unfinished.
					if noOffload && !verifyUDP6(ip.SrcIP, ip.DstIP, ip.Payload) {
						t.Fatalf("UDP checksum %#04x does not verify", udp.Checksum)
					}
					if vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN); vx == nil || vx.VNI != testVNI || !vx.ValidIDFlag {
						t.Fatalf("gopacket VXLAN %+v", vx)
					}
					break
				}
			})
		}
	}
}

// verifyUDP6 checks a UDP datagram's checksum over the IPv6 pseudo-header.
func verifyUDP6(src, dst net.IP, udp []byte) bool {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.To16())
	add(dst.To16())
	var l [8]byte
	binary.BigEndian.PutUint32(l[0:4], uint32(len(udp)))
	l[7] = ProtoUDP
	add(l[:])
	add(udp)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

// TestIntegrationIPv6UnderlayReuse checks that a stored IPv6 receive
// socket is taken back by a Conn of the same address and kind, and
// refused with ErrNotOurSocket for another address.
func TestIntegrationIPv6UnderlayReuse(t *testing.T) {
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			ns := newTestNS(t)
			a, _ := listenPair6(t, ns, codec, Options{NoOffload: true})
			open := func(addr netip.Addr, f *os.File) (*Conn, error) {
				if codec == "gre" {
					return ListenGRE(addr, Options{Receive: f, NoOffload: true})
				}
				return ListenVXLAN(addr, DefaultVXLANPort, Options{Receive: f, NoOffload: true})
			}
			ns.do(t, func() error {
				f := dupFile(t, a.ReceiveConn(), "stored")
				defer f.Close()
				if c, err := open(underlay6B, f); !errors.Is(err, ErrNotOurSocket) {
					if c != nil {
						c.Close()
					}
					return fmt.Errorf("a socket of %v for %v: %v, want ErrNotOurSocket", underlay6A, underlay6B, err)
				}
				c, err := open(underlay6A, f)
				if err != nil {
					return fmt.Errorf("taking back the IPv6 socket: %w", err)
				}
				return c.Close()
			})
		})
	}
}
