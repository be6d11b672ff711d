package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"send"},
		{"send", "--nope"},
		{"send", "--group", "239.1.2.3"},
		{"send", "--group", "10.0.0.1", "--iface", "lo"},
		{"send", "--group", "239.1.2.3", "--iface", "lo", "--to", "127.0.0.1:5"},
		{"send", "--to", "127.0.0.1"},
		{"send", "--to", "239.1.2.3:5000"},
		{"send", "--to", "127.0.0.1:5", "--count", "0"},
		{"send", "--to", "127.0.0.1:5", "--size", "3"},
		{"send", "--to", "127.0.0.1:5", "--size", "70000"},
		{"send", "--to", "127.0.0.1:5", "--rate", "-1"},
		{"send", "--to", "127.0.0.1:5", "--ttl", "256"},
		{"send", "--to", "127.0.0.1:5", "extra"},
		{"send", "--group", "239.1.2.3", "--iface", "lo", "--port", "0"},
		{"recv", "--group", "239.1.2.3"},
		{"recv", "--source", "10.0.0.1"},
		{"recv", "--port", "70000"},
		{"recv", "--timeout", "0s"},
		{"recv", "--timeout", "soon"},
		{"recv", "--linger", "-1s"},
		{"recv", "--count", "-3"},
		{"recv", "--group", "239.1.2.3", "--iface", "lo", "--source", "239.1.2.4"},
		// IPv6.
		{"send", "--group", "ff0e::1:2:3"},
		{"send", "--group", "fd00:198:19::1", "--iface", "lo"},
		{"send", "--group", "ff02::1%lo", "--iface", "lo"},
		{"send", "--group", "::ffff:239.1.2.3", "--iface", "lo"},
		{"send", "--group", "ff0e::1:2:3", "--iface", "lo", "--source", "ff0e::1"},
		{"send", "--group", "ff0e::1:2:3", "--iface", "lo", "--source", "::"},
		{"send", "--group", "ff0e::1:2:3", "--iface", "lo", "--ttl", "256"},
		{"send", "--to", "[fd00:198:19::1]:5000"},
		{"recv", "--group", "ff3e::8000:1"},
		{"recv", "--group", "fe80::1", "--iface", "lo"},
		{"recv", "--source", "fd00:198:19::1"},
		{"recv", "--group", "ff3e::8000:1", "--iface", "lo", "--source", "ff3e::8000:2"},
		{"recv", "--group", "ff3e::8000:1", "--iface", "lo", "--source", "::"},
		{"recv", "--group", "ff3e::8000:1", "--iface", "lo", "--source", "fe80::1%lo"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("mcastprobe %s: exit %d, want %d; stderr:\n%s", strings.Join(args, " "), code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), "mcastprobe") {
			t.Errorf("mcastprobe %s: no message; stderr %q", strings.Join(args, " "), stderr.String())
		}
	}
	for _, args := range [][]string{{"help"}, {"send", "-h"}, {"recv", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
			t.Errorf("mcastprobe %s: exit %d, want 0", strings.Join(args, " "), code)
		}
	}
}

// TestMixedFamilies checks that a --source of the other family than the
// group (or --to) is a usage error that says so.
func TestMixedFamilies(t *testing.T) {
	for _, args := range [][]string{
		{"send", "--group", "ff0e::1:2:3", "--iface", "lo", "--source", "198.18.0.1"},
		{"send", "--group", "239.1.2.3", "--iface", "lo", "--source", "fd00:198:19::1"},
		{"send", "--to", "127.0.0.1:5", "--source", "::1"},
		{"recv", "--group", "ff3e::8000:1", "--iface", "lo", "--source", "198.18.0.1"},
		{"recv", "--group", "232.1.2.3", "--iface", "lo", "--source", "fd00:198:19::1"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("mcastprobe %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
		if !strings.Contains(stderr.String(), "same family") {
			t.Errorf("mcastprobe %s: stderr does not explain the mixed families:\n%s", strings.Join(args, " "), stderr.String())
		}
	}
}

// TestParseGroups checks the command lines with a group that are valid:
// IPv4 as before, and IPv6 of any scope, link-local (ff02::) included.
func TestParseGroups(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		group, dest string
		source      string
		ttl         int
	}{
		{args: []string{"--group", "239.1.2.3", "--source", "198.18.0.1"}, group: "239.1.2.3", dest: "239.1.2.3:5000", source: "198.18.0.1", ttl: 1},
		{args: []string{"--group", "ff0e::1:2:3"}, group: "ff0e::1:2:3", dest: "[ff0e::1:2:3]:5000", ttl: 1},
		{args: []string{"--group", "ff02::1:2:3", "--port", "6000"}, group: "ff02::1:2:3", dest: "[ff02::1:2:3]:6000", ttl: 1},
		{args: []string{"--group", "ff3e::8000:1", "--source", "fd00:198:19::1", "--ttl", "8"}, group: "ff3e::8000:1", dest: "[ff3e::8000:1]:5000", source: "fd00:198:19::1", ttl: 8},
		{args: []string{"--group", "ff02::1:2:3", "--source", "fe80::1"}, group: "ff02::1:2:3", dest: "[ff02::1:2:3]:5000", source: "fe80::1", ttl: 1},
	} {
		var stderr bytes.Buffer
		args := append([]string{"--iface", "eth0"}, tc.args...)
		sc, code := parseSend(args, &stderr)
		if sc == nil {
			t.Errorf("send %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
		} else if sc.group.String() != tc.group || sc.dest().String() != tc.dest || sc.ttl != tc.ttl ||
			(tc.source == "") == sc.source.IsValid() || tc.source != "" && sc.source.String() != tc.source {
			t.Errorf("send %s: group %v, dest %v, source %v, ttl %d; want %s, %s, %q, %d",
				strings.Join(args, " "), sc.group, sc.dest(), sc.source, sc.ttl, tc.group, tc.dest, tc.source, tc.ttl)
		}

		stderr.Reset()
		args = append([]string{"--iface", "eth0"}, tc.args...)
		if i := indexOf(args, "--ttl"); i >= 0 {
			args = append(args[:i:i], args[i+2:]...) // recv has no --ttl
		}
		rc, code := parseRecv(args, &stderr)
		if rc == nil {
			t.Errorf("recv %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
		} else if rc.group.String() != tc.group || rc.iface != "eth0" ||
			(tc.source == "") == rc.source.IsValid() || tc.source != "" && rc.source.String() != tc.source {
			t.Errorf("recv %s: group %v, source %v; want %s, %q", strings.Join(args, " "), rc.group, rc.source, tc.group, tc.source)
		}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestCodec(t *testing.T) {
	for _, seq := range []uint64{0, 1, 999, 1 << 40} {
		b := make([]byte, headerLen+5)
		encode(b, seq)
		if got, ok := decode(b); !ok || got != seq {
			t.Errorf("decode(encode(%d)) = %d, %v", seq, got, ok)
		}
		if _, ok := decode(b[:headerLen-1]); ok {
			t.Errorf("decode of %d bytes succeeded", headerLen-1)
		}
	}
	if _, ok := decode([]byte("XXXX\x00\x00\x00\x00\x00\x00\x00\x01")); ok {
		t.Error("decode with a bad magic succeeded")
	}
}

func FuzzDecode(f *testing.F) {
	b := make([]byte, headerLen)
	encode(b, 7)
	f.Add(b)
	f.Add([]byte("MCP1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, ok := decode(b)
		if !ok {
			return
		}
		again := make([]byte, len(b))
		copy(again, b)
		encode(again, seq)
		if !bytes.Equal(again, b) {
			t.Fatalf("encode(decode(%x)) = %x", b, again)
		}
	})
}

// syncBuffer is a bytes.Buffer that is safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startRecv runs recv in the background and waits for its "ready" line.
func startRecv(t *testing.T, ctx context.Context, args ...string) (stdout *syncBuffer, code <-chan int) {
	t.Helper()
	stdout = &syncBuffer{}
	stderr := &syncBuffer{}
	c := make(chan int, 1)
	go func() { c <- run(ctx, append([]string{"recv"}, args...), stdout, stderr) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stdout.String(), "ready\n") {
		if time.Now().After(deadline) {
			t.Fatalf("recv %v not ready; stderr:\n%s", args, stderr.String())
		}
		select {
		case code := <-c:
			t.Fatalf("recv %v exited %d before ready; stderr:\n%s", args, code, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return stdout, c
}

// freePort returns a UDP port on loopback that is free right now.
func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func sendTo(t *testing.T, port int, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"send", "--to", fmt.Sprintf("127.0.0.1:%d", port)}, args...)
	if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("mcastprobe %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func wait(t *testing.T, code <-chan int) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("recv did not finish")
		return -1
	}
}

// The tests below send unicast on loopback and need no privileges.

func TestLoopback(t *testing.T) {
	port := freePort(t)
	out, code := startRecv(t, context.Background(), "--port", fmt.Sprint(port), "--count", "200", "--timeout", "10s")
	if got := sendTo(t, port, "--count", "200", "--rate", "0", "--size", "100"); got != fmt.Sprintf("sent 200/200 to 127.0.0.1:%d\n", port) {
		t.Errorf("send printed %q", got)
	}
	if c := wait(t, code); c != exitOK {
		t.Errorf("recv exit %d", c)
	}
	if want := "ready\nreceived 200/200 lost 0 dup 0\n"; out.String() != want {
		t.Errorf("recv printed %q, want %q", out.String(), want)
	}
}

func TestLoopbackLossAndJSON(t *testing.T) {
	port := freePort(t)
	out, code := startRecv(t, context.Background(), "--port", fmt.Sprint(port), "--count", "20", "--timeout", "1s", "--json")
	sendTo(t, port, "--count", "10", "--rate", "0")
	if c := wait(t, code); c != exitFailure {
		t.Errorf("recv exit %d, want %d", c, exitFailure)
	}
	line, _ := strings.CutPrefix(out.String(), "ready\n")
	var res recvResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("recv --json printed %q: %v", out.String(), err)
	}
	if res.Received != 10 || res.Expected != 20 || res.Lost != 10 || res.Dup != 0 || len(res.Sources) != 1 {
		t.Errorf("result %+v", res)
	}
}

func TestLoopbackDuplicates(t *testing.T) {
	port := freePort(t)
	out, code := startRecv(t, context.Background(), "--port", fmt.Sprint(port), "--count", "5", "--linger", "2s")
	sendTo(t, port, "--count", "5", "--rate", "0")
	sendTo(t, port, "--count", "5", "--rate", "0")
	if c := wait(t, code); c != exitOK {
		t.Errorf("recv exit %d", c)
	}
	if want := "ready\nreceived 5/5 lost 0 dup 5\n"; out.String() != want {
		t.Errorf("recv printed %q, want %q", out.String(), want)
	}
}

func TestLoopbackInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out, code := startRecv(t, ctx, "--port", fmt.Sprint(freePort(t)), "--count", "5", "--timeout", "1m")
	start := time.Now()
	cancel()
	if c := wait(t, code); c != exitFailure {
		t.Errorf("recv exit %d, want %d", c, exitFailure)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("recv took %v to stop", time.Since(start))
	}
	if want := "ready\nreceived 0/5 lost 5 dup 0\n"; out.String() != want {
		t.Errorf("recv printed %q, want %q", out.String(), want)
	}
}

func TestMissingInterface(t *testing.T) {
	for _, group := range []string{"239.1.2.3", "ff0e::1:2:3"} {
		t.Run(group, func(t *testing.T) {
			if netip.MustParseAddr(group).Is6() {
				requireIPv6(t)
			}
			for _, cmd := range []string{"send", "recv"} {
				var stdout, stderr bytes.Buffer
				args := []string{cmd, "--iface", "nosuchif0", "--group", group, "--count", "1"}
				if code := run(context.Background(), args, &stdout, &stderr); code != exitFailure {
					t.Errorf("%s: exit %d, want %d; stderr %q", strings.Join(args, " "), code, exitFailure, stderr.String())
				}
				if !strings.Contains(stderr.String(), "nosuchif0") {
					t.Errorf("%s: stderr %q does not name the interface", strings.Join(args, " "), stderr.String())
				}
			}
		})
	}
}

// requireIPv6 skips the test if this host cannot open IPv6 sockets.
func requireIPv6(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 on this host: %v", err)
	}
	c.Close()
}

// TestMulticastAll checks that a multicast receiver's socket gets only the
// groups it joined: IP_MULTICAST_ALL, or IPV6_MULTICAST_ALL, is 0.
func TestMulticastAll(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		level, opt    int
		name          string
	}{
		{"udp4", "127.0.0.1:0", unix.SOL_IP, unix.IP_MULTICAST_ALL, "IP_MULTICAST_ALL"},
		{"udp6", "[::1]:0", unix.SOL_IPV6, unix.IPV6_MULTICAST_ALL, "IPV6_MULTICAST_ALL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.network == "udp6" {
				requireIPv6(t)
			}
			for _, multicast := range []bool{false, true} {
				lc := net.ListenConfig{Control: control("", multicast, 0)}
				c, err := lc.ListenPacket(context.Background(), tc.network, tc.addr)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := c.(*net.UDPConn).SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var got int
				var gerr error
				if err := raw.Control(func(fd uintptr) {
					got, gerr = unix.GetsockoptInt(int(fd), tc.level, tc.opt)
				}); err != nil || gerr != nil {
					t.Fatal(err, gerr)
				}
				c.Close()
				// Linux's default is 1; a multicast receiver turns it off.
				if want := map[bool]int{false: 1, true: 0}[multicast]; got != want {
					t.Errorf("%s socket, multicast %v: %s = %d, want %d", tc.network, multicast, tc.name, got, want)
				}
			}
		})
	}
}

func TestReceiveBuffer(t *testing.T) {
	const want = 1 << 20
	lc := net.ListenConfig{Control: control("", false, want)}
	c, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	// Linux reports twice the size asked for (the bookkeeping overhead).
	if got < want {
		if os.Geteuid() != 0 {
			t.Skipf("SO_RCVBUF is %d: without root, net.core.rmem_max caps it", got)
		}
		t.Errorf("SO_RCVBUF = %d, want at least %d", got, want)
	}
}
