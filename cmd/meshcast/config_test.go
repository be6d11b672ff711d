package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/replicate"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFilePrecedence: the file sets what the command line leaves
// alone; the command line wins where both speak.
func TestConfigFilePrecedence(t *testing.T) {
	peers := writeFile(t, "peers", demoInventory)
	conf := writeFile(t, "meshcast.yaml", `# meshcast configuration
peers: `+peers+`
encap: vxlan
vni: 4242
igmp-query-interval: 30s
igmp-robustness: 3
unregistered: drop
log-level: debug
metrics: 127.0.0.1:9977
`)
	cfg, err := parseRun([]string{"--config", conf, "--encap", "vxlan", "--log-level", "warn", "--igmp-robustness", "4"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.peersFile != peers || cfg.encap != "vxlan" || cfg.vni != 4242 || !cfg.hasVNI {
		t.Errorf("file values not applied: %+v", cfg)
	}
	if cfg.igmp.QueryInterval != 30*time.Second || cfg.unregistered != replicate.UnregisteredDrop || cfg.metrics != "127.0.0.1:9977" {
		t.Errorf("file values not applied: %+v", cfg)
	}
	if cfg.logLevel.String() != "WARN" || cfg.igmp.Robustness != 4 {
		t.Errorf("command line did not win: level %v robustness %d", cfg.logLevel, cfg.igmp.Robustness)
	}
}

func TestConfigFileErrors(t *testing.T) {
	peers := writeFile(t, "peers", demoInventory)
	cases := []struct {
		name, body, want string
	}{
		{"unknown key", "peers: " + peers + "\nencapsulation: gre\n", `:2: unknown key "encapsulation"`},
		{"config in config", "config: other.yaml\n", `unknown key "config"`},
		{"list value", "peers: [a, b]\n", "takes one value"},
		{"bad value", "peers: " + peers + "\nigmp-robustness: many\n", ":2: igmp-robustness"},
		{"not a mapping", "- encap\n", "want a mapping"},
		{"bad yaml", "peers: [\n", "meshcast.yaml"},
		{"duplicate key", "encap: gre\nencap: vxlan\n", "already defined"},
		{"checked after merge", "peers: " + peers + "\nencap: ipip\n", "use gre or vxlan"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := writeFile(t, "meshcast.yaml", c.body)
			_, err := parseRun([]string{"--config", conf})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := parseRun([]string{"--config", "/nonexistent/meshcast.yaml"}); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Fatalf("missing file: %v", err)
	}
	// An empty file changes nothing.
	conf := writeFile(t, "empty.yaml", "")
	if _, err := parseRun([]string{"--config", conf, "--peers", peers}); err != nil {
		t.Fatal(err)
	}
}

// FuzzConfigFile feeds arbitrary files to the config parser: it never
// panics, and anything it refuses is a configuration error (exit 2) that
// names the file.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"", "encap: vxlan\n", "peers: /etc/meshcast/peers\nigmp-robustness: 3\n", "- a\n- b\n",
		"encap: gre\nencap: vxlan\n", "unknown: 1\n", "peers: [a]\n", "a: {b: c}\n", "\xff\xfe", "key: |\n  multi\n  line\n",
		"&a x: *a\n", "log-level: debug # comment\n",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := parseRun([]string{"--config", path})
		if err == nil {
			return
		}
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}
