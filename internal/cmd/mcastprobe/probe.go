package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The payload of every datagram: a magic number, then the sequence number,
// then filler up to --size.
const (
	magic     = "MCP1"
	headerLen = len(magic) + 8
)

// encode writes the header for seq into b, which has at least headerLen
// bytes.
func encode(b []byte, seq uint64) {
	copy(b, magic)
	binary.BigEndian.PutUint64(b[len(magic):], seq)
}

// decode returns the sequence number in payload b, and false if b is not a
// probe datagram.
func decode(b []byte) (uint64, bool) {
	if len(b) < headerLen || string(b[:len(magic)]) != magic {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[len(magic):]), true
}

// control returns a socket option hook that binds the socket to iface, if
// any; sets a receive buffer of rcvbuf bytes, if not 0, so that a receiver
// that the scheduler holds up for a while loses nothing; and for multicast
// receivers delivers only the groups joined on this socket (IP_MULTICAST_ALL
// off, or IPV6_MULTICAST_ALL for a "udp6" socket; Linux otherwise delivers
// any group that any socket on the host joined).
func control(iface string, multicast bool, rcvbuf int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var opErr error
		err := c.Control(func(fd uintptr) {
			if rcvbuf > 0 {
				// SO_RCVBUFFORCE may exceed net.core.rmem_max, but needs
				// CAP_NET_ADMIN; without it, take what SO_RCVBUF gives.
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
				}
			}
			if iface != "" {
				if err := unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface); err != nil {
					opErr = fmt.Errorf("binding to device %s: %w", iface, err)
					return
				}
			}
			if multicast && network == "udp6" {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_MULTICAST_ALL, 0); err != nil {
					opErr = fmt.Errorf("IPV6_MULTICAST_ALL: %w", err)
					return
				}
			} else if multicast {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
					opErr = fmt.Errorf("IP_MULTICAST_ALL: %w", err)
					return
				}
			}
			if multicast {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
					opErr = fmt.Errorf("SO_REUSEADDR: %w", err)
				}
			}
		})
		if err != nil {
			return err
		}
		return opErr
	}
}

// sendResult is what send prints.
type sendResult struct {
	Sent           int     `json:"sent"`
	Count          int     `json:"count"`
	Errors         int     `json:"errors"`
	Bytes          int     `json:"bytes"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Destination    string  `json:"destination"`
}

func send(ctx context.Context, cfg *sendConfig, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "mcastprobe send: %v\n", err)
		return exitFailure
	}
	dest := cfg.dest()
	network, laddr := "udp4", "0.0.0.0:0"
	if dest.Addr().Is6() {
		network, laddr = "udp6", "[::]:0"
	}
	if cfg.source.IsValid() {
		src := cfg.source
		if src.Is6() && src.IsLinkLocalUnicast() {
			// Binding to a link-local address needs its interface.
			src = src.WithZone(cfg.iface)
		}
		laddr = netip.AddrPortFrom(src, 0).String()
	}
	// A multicast sender names its interface with IP_MULTICAST_IF; a
	// unicast one with --iface is bound to it.
	bindIface := ""
	if cfg.to.IsValid() {
		bindIface = cfg.iface
	}
	lc := net.ListenConfig{Control: control(bindIface, false, 0)}
	c, err := lc.ListenPacket(ctx, network, laddr)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	var ifi *net.Interface
	if cfg.group.IsValid() {
		if ifi, err = net.InterfaceByName(cfg.iface); err != nil {
			return fail(fmt.Errorf("--iface %s: %w", cfg.iface, err))
		}
	}
	var write func(b []byte, dst net.Addr) error
	if network == "udp4" {
		pc := ipv4.NewPacketConn(c)
		if ifi != nil {
			if err := pc.SetMulticastInterface(ifi); err != nil {
				return fail(fmt.Errorf("IP_MULTICAST_IF %s: %w", cfg.iface, err))
			}
			if err := pc.SetMulticastTTL(cfg.ttl); err != nil {
				return fail(fmt.Errorf("IP_MULTICAST_TTL: %w", err))
			}
			if err := pc.SetMulticastLoopback(false); err != nil {
				return fail(fmt.Errorf("IP_MULTICAST_LOOP: %w", err))
			}
		}
		write = func(b []byte, dst net.Addr) error {
			_, err := pc.WriteTo(b, nil, dst)
			return err
		}
	} else {
		pc := ipv6.NewPacketConn(c)
		if ifi != nil {
			if err := pc.SetMulticastInterface(ifi); err != nil {
				return fail(fmt.Errorf("IPV6_MULTICAST_IF %s: %w", cfg.iface, err))
			}
			// Unlike an IPv4 TTL of 0, a hop limit of 0 does not keep
			// the datagrams on this host: Linux still sends them on the
			// link (where no router forwards them).
			if err := pc.SetMulticastHopLimit(cfg.ttl); err != nil {
				return fail(fmt.Errorf("IPV6_MULTICAST_HOPS: %w", err))
			}
			if err := pc.SetMulticastLoopback(false); err != nil {
				return fail(fmt.Errorf("IPV6_MULTICAST_LOOP: %w", err))
			}
		}
		write = func(b []byte, dst net.Addr) error {
			_, err := pc.WriteTo(b, nil, dst)
			return err
		}
	}
	dst := net.UDPAddrFromAddrPort(dest)

	buf := make([]byte, cfg.size)
	for i := headerLen; i < len(buf); i++ {
		buf[i] = byte(i)
	}
	res := sendResult{Count: cfg.count, Destination: dst.String()}
	var firstErr error
	start := time.Now()
	var interval time.Duration
	if cfg.rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.rate)
	}
	for seq := 0; seq < cfg.count && ctx.Err() == nil; seq++ {
		if interval > 0 {
			// Pace against the absolute schedule, so short sleeps that
			// overshoot are made up for by the next datagrams.
			if d := time.Until(start.Add(time.Duration(seq) * interval)); d > 0 {
				time.Sleep(d)
			}
		}
		encode(buf, uint64(seq))
		if err := writeRetry(write, buf, dst); err != nil {
			res.Errors++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		res.Sent++
		res.Bytes += len(buf)
	}
	res.ElapsedSeconds = time.Since(start).Seconds()
	if firstErr != nil {
		fmt.Fprintf(stderr, "mcastprobe send: %d errors, the first: %v\n", res.Errors, firstErr)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "mcastprobe send: interrupted")
	}
	if cfg.json {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintf(stdout, "sent %d/%d to %s\n", res.Sent, res.Count, res.Destination)
	}
	if res.Sent != cfg.count {
		return exitFailure
	}
	return exitOK
}

// writeRetry sends b to dst with write, retrying for up to a second while
// the kernel reports a full queue.
func writeRetry(write func(b []byte, dst net.Addr) error, b []byte, dst net.Addr) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := write(b, dst)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// recvResult is what recv prints.
type recvResult struct {
	Received       int      `json:"received"`
	Expected       int      `json:"expected"`
	Lost           int      `json:"lost"`
	Dup            int      `json:"dup"`
	Reordered      int      `json:"reordered"` // arrived after a higher sequence number
	Invalid        int      `json:"invalid"`   // not a probe datagram, or a sequence number >= N
	Bytes          int      `json:"bytes"`
	ElapsedSeconds float64  `json:"elapsed_seconds"`
	Sources        []string `json:"sources"` // senders of valid datagrams
}

func recv(ctx context.Context, cfg *recvConfig, stdout, stderr io.Writer) int {
	start := time.Now()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "mcastprobe recv: %v\n", err)
		return exitFailure
	}
	multicast := cfg.group.IsValid()
	network := "udp4"
	laddr := netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(cfg.port))
	if multicast {
		// Bound to the group, the socket gets only that group's datagrams.
		// A group of link-local scope (ff02::) needs an interface for the
		// bind: the socket is bound to --iface before.
		laddr = netip.AddrPortFrom(cfg.group, uint16(cfg.port))
		if cfg.group.Is6() {
			network = "udp6"
		}
	}
	lc := net.ListenConfig{Control: control(cfg.iface, multicast, cfg.rcvbuf)}
	c, err := lc.ListenPacket(ctx, network, laddr.String())
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if multicast {
		ifi, err := net.InterfaceByName(cfg.iface)
		if err != nil {
			return fail(fmt.Errorf("--iface %s: %w", cfg.iface, err))
		}
		group := &net.UDPAddr{IP: cfg.group.AsSlice()}
		var source *net.UDPAddr
		if cfg.source.IsValid() {
			source = &net.UDPAddr{IP: cfg.source.AsSlice()}
		}
		if network == "udp4" {
			pc := ipv4.NewPacketConn(c)
			if source != nil {
				err = pc.JoinSourceSpecificGroup(ifi, group, source)
			} else {
				err = pc.JoinGroup(ifi, group)
			}
		} else {
			// MCAST_JOIN_SOURCE_GROUP or MCAST_JOIN_GROUP: the kernel
			// reports the join in MLDv2, an INCLUDE record for the one
			// source, or EXCLUDE {} for any source.
			pc := ipv6.NewPacketConn(c)
			if source != nil {
				err = pc.JoinSourceSpecificGroup(ifi, group, source)
			} else {
				err = pc.JoinGroup(ifi, group)
			}
		}
		if err != nil {
			return fail(fmt.Errorf("joining %s on %s: %w", cfg.group, cfg.iface, err))
		}
	}
	fmt.Fprintln(stdout, "ready")

	// A signal ends the wait: unblock the read.
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()

	seen := make([]bool, cfg.count)
	res := recvResult{Expected: cfg.count, Sources: []string{}}
	sources := map[string]bool{}
	var maxSeq uint64
	deadline := start.Add(cfg.timeout)
	buf := make([]byte, 65536)
	for ctx.Err() == nil {
		if err := c.SetReadDeadline(deadline); err != nil {
			return fail(err)
		}
		if ctx.Err() != nil {
			break // the signal came between the check and SetReadDeadline
		}
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			return fail(err)
		}
		seq, ok := decode(buf[:n])
		if !ok || seq >= uint64(cfg.count) {
			res.Invalid++
			continue
		}
		if !sources[from.String()] {
			sources[from.String()] = true
			res.Sources = append(res.Sources, from.String())
		}
		if seen[seq] {
			res.Dup++
			continue
		}
		seen[seq] = true
		res.Received++
		res.Bytes += n
		if seq < maxSeq {
			res.Reordered++
		}
		maxSeq = max(maxSeq, seq)
		if res.Received == cfg.count {
			if cfg.linger == 0 {
				break
			}
			// Complete: count duplicates for --linger more, then stop.
			deadline = time.Now().Add(cfg.linger)
		}
	}
	res.ElapsedSeconds = time.Since(start).Seconds()
	res.Lost = res.Expected - res.Received
	if cfg.json {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintf(stdout, "received %d/%d lost %d dup %d\n", res.Received, res.Expected, res.Lost, res.Dup)
	}
	if res.Received != res.Expected {
		return exitFailure
	}
	return exitOK
}
