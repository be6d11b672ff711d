package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigErrors checks that every configuration mistake exits 2 with a
// message that says what to change. None of these needs root: each fails
// before the daemon touches the network.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "peers")
	os.WriteFile(good, []byte(demoInventory), 0o644)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("198.18.0.1 demo,198.19.0.1/24\n198.18.0.2 demo,198.19.0.2\n"), 0o644)
	long := filepath.Join(dir, "long")
	os.WriteFile(long, []byte("198.18.0.1 averylongcommunity,198.19.0.1/24\n"), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown status flag", []string{"status", "--bogus"}, "unknown flag"},
		{"unknown command", []string{"fly"}, "unknown command"},
		{"no peers", []string{"run"}, "--peers FILE or --discovery ec2 is required"},
		{"bad discovery", []string{"run", "--discovery", "dns"}, "use static or ec2"},
		{"static without peers", []string{"run", "--discovery", "static"}, "needs --peers"},
		{"ec2 with peers", []string{"run", "--discovery", "ec2", "--peers", good}, "drop it"},
		{"short interval", []string{"run", "--peers", good, "--interval", "10ms"}, "--interval"},
		{"overlay with static", []string{"run", "--peers", good, "--overlay", "198.19.0.1/24"}, "--discovery ec2"},
		{"bad overlay", []string{"run", "--discovery", "ec2", "--overlay", "198.19.0.1"}, "prefix"},
		{"IPv6 in --overlay", []string{"run", "--discovery", "ec2", "--overlay", "198.19.0.1/24,fd00::1/64"}, "an IPv6 one goes in the instance's tag"},
		{"empty tag key", []string{"run", "--discovery", "ec2", "--tag-key", ""}, "--tag-key"},
		{"unknown flag", []string{"run", "--peers", good, "--bogus"}, "unknown flag: --bogus"},
		{"stray argument", []string{"run", "--peers", good, "extra"}, "unexpected argument"},
		{"bad encap", []string{"run", "--peers", good, "--encap", "ipip"}, "use gre or vxlan"},
		{"bad local", []string{"run", "--peers", good, "--local", "nowhere"}, "not a unicast IPv4 or IPv6 address"},
		{"link-local local", []string{"run", "--peers", good, "--local", "fe80::1"}, "no link-local address"},
		{"bad underlay family", []string{"run", "--peers", good, "--underlay-family", "5"}, "write 4, 6 or auto"},
		{"local of the other family", []string{"run", "--peers", good, "--local", "fd00:198:18::1", "--underlay-family", "4"}, "is not of --underlay-family 4"},
		{"bad key", []string{"run", "--peers", good, "--gre-key", "-1"}, "--gre-key"},
		{"key with vxlan", []string{"run", "--peers", good, "--encap", "vxlan", "--gre-key", "5"}, "gre only"},
		{"vni with gre", []string{"run", "--peers", good, "--vni", "5"}, "vxlan only"},
		{"vni zero", []string{"run", "--peers", good, "--encap", "vxlan", "--vni", "0"}, "--vni"},
		{"vni too big", []string{"run", "--peers", good, "--encap", "vxlan", "--vni", "16777216"}, "--vni"},
		{"bad port", []string{"run", "--peers", good, "--vxlan-port", "70000"}, "--vxlan-port"},
		{"bad level", []string{"run", "--peers", good, "--log-level", "loud"}, "--log-level"},
		{"bad format", []string{"run", "--peers", good, "--log-format", "xml"}, "--log-format"},
		{"bad unregistered", []string{"run", "--peers", good, "--unregistered", "maybe"}, "use flood or drop"},
		{"negative fanout cap", []string{"run", "--peers", good, "--max-fanout", "-1"}, "--max-fanout"},
		{"negative rate limit", []string{"run", "--peers", good, "--rate-limit", "-5"}, "--rate-limit"},
		{"rate limit not a number", []string{"run", "--peers", good, "--rate-limit", "NaN"}, "--rate-limit"},
		{"limits with the kernel dataplane", []string{"run", "--peers", good, "--dataplane", "kernel", "--max-fanout", "2"}, "userspace dataplane"},
		{"bad offload", []string{"run", "--peers", good, "--offload", "maybe"}, "use on or off"},
		{"robustness zero", []string{"run", "--peers", good, "--igmp-robustness", "0"}, "--igmp-robustness"},
		{"robustness eight", []string{"run", "--peers", good, "--igmp-robustness", "8"}, "1 to 7"},
		{"negative interval", []string{"run", "--peers", good, "--igmp-query-interval", "-1s"}, "must be positive"},
		{"response not below query", []string{"run", "--peers", good, "--igmp-query-interval", "5s", "--igmp-response-interval", "5s"}, "less than --igmp-query-interval"},
		{"last member too long", []string{"run", "--peers", good, "--igmp-last-member-interval", "30s"}, "25.5s"},
		{"bad duration", []string{"run", "--peers", good, "--igmp-last-member-interval", "soon"}, "invalid argument"},
		{"zero cap", []string{"run", "--peers", good, "--igmp-max-groups", "0"}, "at least 1"},
		{"missing file", []string{"run", "--peers", filepath.Join(dir, "nope")}, "nope"},
		{"malformed line", []string{"run", "--peers", bad, "--local", "198.18.0.1"}, "bad:2:"},
		{"unknown community", []string{"run", "--peers", good, "--community", "other", "--local", "198.18.0.1"}, `community "other"`},
		{"local not listed", []string{"run", "--peers", good, "--local", "198.18.0.9"}, "198.18.0.9"},
		{"TAP name too long", []string{"run", "--peers", long, "--local", "198.18.0.1"}, "--tap"},
		{"TAP name given too long", []string{"run", "--peers", good, "--local", "198.18.0.1", "--tap", "a-very-long-tap-name"}, "15"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(c.args, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Errorf("stderr does not mention %q:\n%s", c.want, stderr.String())
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if Main([]string{"version"}, &out, &errb) != 0 || !strings.HasPrefix(out.String(), "meshcast ") {
		t.Fatalf("version: %q", out.String())
	}
	// --help of every command lists every flag.
	for cmd, flags := range map[string][]string{
		"run": {"--peers", "--discovery", "--local", "--community", "--encap", "--gre-key", "--vni", "--vxlan-port",
			"--tap", "--control", "--metrics", "--interval", "--unregistered", "--igmp-query-interval",
			"--igmp-response-interval", "--igmp-robustness", "--igmp-last-member-interval", "--log-level",
			"--log-format", "--config", "--tag-key", "--overlay", "--dataplane", "--kernel-vxlan",
			"--offload", "--egress", "--ingress", "--max-fanout", "--rate-limit"},
		"status": {"--json", "--control"},
		"ping":   {"--control", "--count", "--interval", "--group", "--port"},
	} {
		out.Reset()
		if code := Main([]string{cmd, "--help"}, &out, &errb); code != 0 {
			t.Fatalf("%s --help: exit %d", cmd, code)
		}
		for _, f := range flags {
			if !strings.Contains(out.String(), f) {
				t.Errorf("%s --help does not mention %s", cmd, f)
			}
		}
	}
	out.Reset()
	if Main([]string{"completion", "bash"}, &out, &errb) != 0 || !strings.Contains(out.String(), "meshcast") {
		t.Fatal("completion bash printed no script")
	}
	if Main(nil, &out, &errb) != 2 {
		t.Fatal("no command: want exit 2")
	}
}

func TestDefaultVNIStable(t *testing.T) {
	// Every node of a community, whatever its meshcast version, must derive
	// the same VNI: the value is pinned.
	if v := defaultVNI("demo"); v != 16594230 {
		t.Fatalf("defaultVNI(demo) = %d, want 16594230", v)
	}
	if defaultVNI("demo") == defaultVNI("demo2") {
		t.Fatal("two communities share a default VNI")
	}
	for _, c := range []string{"", "a", "demo", "x.y-z_1"} {
		if v := defaultVNI(c); v < 1 || v > 1<<24-1 {
			t.Fatalf("defaultVNI(%q) = %d", c, v)
		}
	}
}
