package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// TestIntegrationInventoryReload checks that a running daemon picks up
// inventory changes by itself when the file changes, on SIGHUP, and that a
// broken file keeps the running peers.
func TestIntegrationInventoryReload(t *testing.T) {
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, _ := binaries(t)
	lines := strings.SplitAfter(demoInventory, "\n")
	two := strings.Join(lines[:3], "") // the comment and nodes 1 and 2
	inv := filepath.Join(t.TempDir(), "peers")
	write := func(s string) {
		tmp := inv + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, inv); err != nil {
			t.Fatal(err)
		}
	}
	write(two)
	n := nt.Nodes()
	d1 := n[0].Start(t, bin, "run", "--peers", inv, "--local", "198.18.0.1", "--interval", "1h", "--control", ctlPath(t))
	if err := d1.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
		t.Fatal(err)
	}

	// The file changes: node 3 is added without any signal.
	changed := time.Now()
	write(demoInventory)
	if err := d1.WaitOutput("added=[198.18.0.3]", 5*time.Second); err != nil {
		t.Fatalf("file change not picked up: %v", err)
	}
	t.Logf("inventory change applied %v after the file was replaced", time.Since(changed).Round(10*time.Millisecond))

	// A broken file keeps the running peers.
	write(demoInventory + "198.18.0.9 demo,198.19.0.9\n")
	if err := d1.WaitOutput("keeping the current peers", 5*time.Second); err != nil {
		t.Fatalf("broken inventory not reported: %v", err)
	}
	if strings.Contains(d1.Output(), "removed=[") && !strings.Contains(d1.Output(), "removed=[]") {
		t.Fatal("a broken inventory removed peers")
	}

	// An edit that removes node 2 (picked up by the file watch), then
	// SIGHUP after one that adds it back.
	write(lines[0] + lines[1] + lines[3])
	if err := d1.WaitOutput("removed=[198.18.0.2]", 5*time.Second); err != nil {
		t.Fatalf("node 2 not removed: %v", err)
	}
	write(demoInventory)
	d1.Signal(syscall.SIGHUP)
	if err := d1.WaitOutput("SIGHUP: reloading", 5*time.Second); err != nil {
		t.Fatalf("SIGHUP not handled: %v", err)
	}
	if err := d1.WaitOutput("added=[198.18.0.2]", 5*time.Second); err != nil {
		t.Fatalf("reload did not add node 2 back: %v", err)
	}
	d1.Signal(syscall.SIGTERM)
	if code, err := d1.Wait(10 * time.Second); code != 0 || err != nil {
		t.Fatalf("exit %d %v", code, err)
	}
}
