package netnsx

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestIntegrationCreateEnterDelete(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test must run")
		}
		t.Skip("needs root to create network namespaces: run as root, e.g. sudo make test")
	}
	name := fmt.Sprintf("mcx-%d", os.Getpid())
	h, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); Delete(name) })
	if !Exists(name) {
		t.Fatal("namespace not created")
	}
	var loUp bool
	if err := DoIn(h, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if !cur.Equal(h) {
			return fmt.Errorf("DoIn ran outside the namespace")
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		loUp = lo.Attrs().Flags&1 != 0
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !loUp {
		t.Error("loopback is not up in the new namespace")
	}
	if err := DoIn(h, func() error { panic("boom") }); err == nil {
		t.Error("a panic in DoIn was not returned as an error")
	}
	// A process started in the namespace is killed by Delete.
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := Start(cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for i := 0; i < 100; i++ {
		if ino, err := Inode(Dir + "/" + name); err == nil && len(Pids(fmt.Sprintf("net:[%d]", ino))) > 0 {
			break
		}
		exec.Command("sleep", "0.02").Run()
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("the process in the namespace survived Delete")
	}
	if Exists(name) {
		t.Error("namespace still exists")
	}
}
