package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// TestIntegrationStartupChecks checks the one clear error of each start-up
// problem, and that none leaves anything behind.
func TestIntegrationStartupChecks(t *testing.T) {
	nt := nstest.NewNet(t, 1)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "peers")
	os.WriteFile(inv, []byte(demoInventory), 0o644)
	n := nt.Node(1)
	sock := filepath.Join(dir, "demo.sock")
	run := func(args ...string) (string, int) {
		out, err := n.Exec(t, args...)
		return out, exitCode(err)
	}

	// Without CAP_NET_ADMIN and CAP_NET_RAW.
	if _, err := exec.LookPath("setpriv"); err == nil {
		out, code := run("setpriv", "--inh-caps=-all", "--bounding-set=-net_admin,-net_raw", bin,
			"run", "--peers", inv, "--local", "198.18.0.1", "--control", sock)
		if code != exitRuntime || !strings.Contains(out, "CAP_NET_ADMIN and CAP_NET_RAW") {
			t.Errorf("without capabilities: exit %d\n%s", code, out)
		}
	} else {
		t.Log("setpriv not installed: the capability check is not exercised")
	}

	// The underlay address is not on this host.
	out, code := run(bin, "run", "--peers", inv, "--local", "198.18.0.2", "--control", sock)
	if code != exitUsage || !strings.Contains(out, "198.18.0.2 is not assigned to any interface") {
		t.Errorf("foreign underlay: exit %d\n%s", code, out)
	}

	// The TAP name is taken by another interface.
	if out, err := n.Exec(t, "ip", "tuntap", "add", "mode", "tap", "name", "mcbr-demo"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, code = run(bin, "run", "--peers", inv, "--local", "198.18.0.1", "--control", sock)
	if code != exitUsage || !strings.Contains(out, "mcbr-demo already exists") {
		t.Errorf("TAP name taken: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("a refused start left its control socket")
	}
	n.Exec(t, "ip", "link", "del", "mcbr-demo")

	// A clean run: SIGTERM removes the TAP and the socket.
	d := n.Start(t, bin, "run", "--peers", inv, "--local", "198.18.0.1", "--control", sock)
	if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v, mode %v (want 0600)", err, fi.Mode().Perm())
	}
	d.Signal(syscall.SIGTERM)
	if code, err := d.Wait(10 * time.Second); code != 0 || err != nil {
		t.Fatalf("exit %d %v", code, err)
	}
	links, _ := n.Exec(t, "ip", "-o", "link", "show")
	if strings.Contains(links, "mcbr-demo") {
		t.Errorf("TAP left after SIGTERM:\n%s", links)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("control socket left after SIGTERM")
	}
}

// TestIntegrationConfigReload changes the config file under a running
// daemon: SIGHUP applies the reloadable settings, names the others, and a
// broken file keeps the running ones.
func TestIntegrationConfigReload(t *testing.T) {
	nt := nstest.NewNet(t, 1)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "peers")
	os.WriteFile(inv, []byte(demoInventory), 0o644)
	conf := filepath.Join(dir, "meshcast.yaml")
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "peers: " + inv + "\nlocal: 198.18.0.1\ncontrol: " + filepath.Join(dir, "demo.sock") + "\n"
	write(base + "log-level: info\nunregistered: flood\n")
	d := nt.Node(1).Start(t, bin, "run", "--config", conf)
	if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	write(base + "log-level: debug\nunregistered: drop\ninterval: 30s\nencap: vxlan\n")
	d.Signal(syscall.SIGHUP)
	for _, want := range []string{"setting=log-level", "setting=unregistered", "setting=interval", "need a restart"} {
		if err := d.WaitOutput(want, 5*time.Second); err != nil {
			t.Errorf("after SIGHUP: %v", err)
		}
	}
	write(base + "log-level: loud\n")
	d.Signal(syscall.SIGHUP)
	if err := d.WaitOutput("config not reloaded", 5*time.Second); err != nil {
		t.Errorf("broken config: %v", err)
	}
	d.Signal(syscall.SIGTERM)
	if code, err := d.Wait(10 * time.Second); code != 0 || err != nil {
		t.Fatalf("exit %d %v", code, err)
	}
}
