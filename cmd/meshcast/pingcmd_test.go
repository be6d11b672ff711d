package main

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/ping"
)

// fakeDaemon serves st on a control socket, as a running daemon does, and
// returns the socket's path.
func fakeDaemon(t *testing.T, st control.State) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	srv, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve(func() control.State { return st })
	t.Cleanup(func() { srv.Close() })
	return path
}

// pingState is the status of a daemon with an IPv6 overlay address and
// two peers, one of them without.
func pingState() control.State {
	return control.State{
		Dataplane: "userspace", Community: "demo", TAP: "mcbr-demo",
		Local: "198.18.0.1", Overlay: "198.19.0.1/24", Overlay6: "fd00:198:19::1/64",
		Peers: []control.Peer{
			{Underlay: "198.18.0.2", Overlay: "198.19.0.2/24", Overlay6: "fd00:198:19::2/64"},
			{Underlay: "198.18.0.3", Overlay: "198.19.0.3/24"},
		},
		Ping: control.PingService{Group: ping.DefaultGroup, Port: ping.DefaultPort},
	}
}

func runPing(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(append([]string{"ping"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestPingFlags checks the usage errors of ping, --family's among them,
// and the runtime errors of a daemon that cannot ping over IPv6.
func TestPingFlags(t *testing.T) {
	sock := fakeDaemon(t, pingState())
	noV6 := pingState()
	noV6.Overlay6 = ""
	noPeers6 := pingState()
	noPeers6.Peers = noPeers6.Peers[1:]
	nowhere := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		stderr  string
		stdout  string
		noDaemo bool // the error comes before the daemon is asked
	}{
		{name: "family 5", args: []string{"--family", "5"}, code: exitUsage, stderr: "--family 5: want 4 (IPv4) or 6 (IPv6)", noDaemo: true},
		{name: "family 0", args: []string{"--family", "0"}, code: exitUsage, stderr: "--family 0", noDaemo: true},
		{name: "family not a number", args: []string{"--family", "inet6"}, code: exitUsage, stderr: "--family", noDaemo: true},
		{name: "IPv6 link-local group", args: []string{"--family", "6", "--group", "ff02::1"}, code: exitUsage,
			stderr: `--group "ff02::1" is not an IPv6 multicast address of scope wider than link-local, such as the default ff15::4d43:7069:6e67`, noDaemo: true},
		{name: "IPv6 interface-local group", args: []string{"--family", "6", "--group", "ff01::1"}, code: exitUsage, stderr: "scope wider than link-local", noDaemo: true},
		{name: "IPv4 group with family 6", args: []string{"--family", "6", "--group", ping.DefaultGroup}, code: exitUsage, stderr: "not an IPv6 multicast address", noDaemo: true},
		{name: "IPv6 unicast group", args: []string{"--family", "6", "--group", "fd00:198:19::9"}, code: exitUsage, stderr: "not an IPv6 multicast address", noDaemo: true},
		{name: "IPv6 group not an address", args: []string{"--family", "6", "--group", "ff15::x"}, code: exitUsage, stderr: `--group "ff15::x"`, noDaemo: true},
		{name: "IPv6 group given empty", args: []string{"--family", "6", "--group", ""}, code: exitUsage, stderr: `--group ""`, noDaemo: true},
		{name: "IPv6 group with family 4", args: []string{"--group", ping.DefaultGroup6}, code: exitUsage, stderr: `--group "ff15::4d43:7069:6e67" is not an IPv4 multicast address`},
		{name: "IPv6 group with explicit family 4", args: []string{"--family", "4", "--group", "ff05::1"}, code: exitUsage, stderr: "is not an IPv4 multicast address"},
		{name: "IPv4 unicast group", args: []string{"--group", "198.19.0.9"}, code: exitUsage, stderr: `--group "198.19.0.9" is not an IPv4 multicast address`},
		{name: "IPv4 group given empty", args: []string{"--group", ""}, code: exitUsage, stderr: `--group "" is not an IPv4 multicast address`},
		{name: "family 6, count 0", args: []string{"--family", "6", "--count", "0"}, code: exitUsage, stderr: "--count at least 1"},
		{name: "family 6, port", args: []string{"--family", "6", "--port", "70000"}, code: exitUsage, stderr: "--port must be 1-65535"},
		{name: "family 6, no IPv6 overlay", args: []string{"--family", "6", "--control", fakeDaemon(t, noV6)}, code: exitRuntime,
			stderr: "the daemon has no IPv6 overlay address"},
		{name: "family 6, no peer with IPv6", args: []string{"--family", "6", "--control", fakeDaemon(t, noPeers6)}, code: exitRuntime,
			stdout: "198.18.0.3 skipped: the peer has no IPv6 overlay address\nno peers with an IPv6 overlay address to ping\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--control") {
				args = append(args, "--control", sock)
				if tc.noDaemo {
					args[len(args)-1] = nowhere // never asked
				}
			}
			code, stdout, stderr := runPing(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr does not mention %q:\n%s", tc.stderr, stderr)
			}
			if stdout != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tc.stdout)
			}
		})
	}
}

// TestPingSkipsPeersWithoutIPv6 probes over IPv6 from ::1 on lo, as if it
// were the TAP: the peer with an IPv6 overlay address is probed (and
// unreachable from here), the other is listed as skipped before the
// results, and counts neither as a peer nor as a failure.
func TestPingSkipsPeersWithoutIPv6(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 on this host's loopback: %v", err)
	} else {
		c.Close()
	}
	st := pingState()
	st.TAP, st.Overlay6 = "lo", "::1/128"
	code, stdout, stderr := runPing(t, "--family", "6", "--count", "1", "--interval", "10ms", "--control", fakeDaemon(t, st))
	if code != exitRuntime {
		t.Errorf("exit %d, want %d (fd00:198:19::2 does not answer from here); stderr:\n%s", code, exitRuntime, stderr)
	}
	want := "198.18.0.3 skipped: the peer has no IPv6 overlay address\n" +
		"198.18.0.2 (fd00:198:19::2)   unicast, xmt/rcv/%loss = 1/0/100%\n" +
		"198.18.0.2 (fd00:198:19::2) multicast, xmt/rcv/%loss = 1/0/100%\n" +
		"1 peers: unicast ok for 0, multicast ok for 0\n" +
		"multicast loss to 1 peers not yet known as members of the ping group when probing began (MLD had not converged): 198.18.0.2 (fd00:198:19::2)\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	// Known as a member of the IPv6 group: no such last line.
	st.Groups = []control.Group{{Group: "ff15::4d43:7069:6e67", Peers: []string{"198.18.0.2"}}}
	_, stdout, _ = runPing(t, "--family", "6", "--count", "1", "--interval", "10ms", "--control", fakeDaemon(t, st))
	if strings.Contains(stdout, "not yet known") {
		t.Errorf("a member of the IPv6 ping group is named as not joined:\n%s", stdout)
	}
}

func TestPingHelp(t *testing.T) {
	code, stdout, _ := runPing(t, "--help")
	if code != exitOK {
		t.Fatalf("ping --help: exit %d", code)
	}
	for _, s := range []string{"--family", ping.DefaultGroup, ping.DefaultGroup6, "skipped"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("ping --help does not mention %s:\n%s", s, stdout)
		}
	}
}
