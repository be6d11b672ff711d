package nstest_test

import (
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
)

// A typical integration test: two nodes, a receiver started in the
// background on one, a command run on the other, and a counter read.
func Example() {
	_ = func(t *testing.T) {
		nstest.LeakCheck(t)
		nt := nstest.NewNet(t, 2) // skips without root, fails with CI=true
		a, b := nt.Node(1), nt.Node(2)

		probe := nstest.BuildBinary(t, "github.com/meshcast/meshcast/internal/cmd/mcastprobe")
		recv := b.Start(t, probe, "recv", "--iface", nstest.NodeLink, "--group", "239.1.2.3", "--count", "10")
		if err := recv.WaitOutput("ready\n", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if out, err := a.Exec(t, probe, "send", "--iface", nstest.NodeLink, "--group", "239.1.2.3", "--count", "10"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if code, err := recv.Wait(10 * time.Second); code != 0 || err != nil {
			t.Fatalf("recv: exit %d, %v\n%s", code, err, recv.Output())
		}
		rx, err := b.RxPackets(nstest.NodeLink)
		if err != nil || rx < 10 {
			t.Errorf("%s received %d packets, %v", nstest.NodeLink, rx, err)
		}
	}
}

// An IPv6-only underlay: node K has fd00:198:18::K on NodeLink and no IPv4
// address.
func ExampleNewNetWith() {
	_ = func(t *testing.T) {
		nstest.LeakCheck(t)
		nt := nstest.NewNetWith(t, 2, nstest.Options{Underlay: nstest.UnderlayIPv6})
		a, b := nt.Node(1), nt.Node(2)
		if out, err := a.Exec(t, "ping", "-6", "-c", "1", "-W", "2", b.Underlay6.String()); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
}
