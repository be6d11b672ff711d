//go:build meshcast_faultinject

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/nstest"
	"github.com/meshcast/meshcast/overlay"
)

// faultBinary builds meshcast with the fault-injection seam
// (overlay.FaultEnv), which release builds do not have.
func faultBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "meshcast-fault")
	cmd := exec.Command(nstest.GoTool(), "build", "-tags", "meshcast_faultinject", "-o", out, "github.com/meshcast/meshcast/cmd/meshcast")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// TestIntegrationOffloadFault makes the kernel refuse an offload once, in
// running daemons, through the test-only seam: the receivers' first
// coalesced TAP write fails with EINVAL, as it does on Linux 6.1, and with
// VXLAN the sender's first segmentation-offload send fails with EINVAL
// too: through AF_PACKET (VIRTIO_NET_HDR_GSO_UDP_L4) by default, through
// the UDP socket (UDP_SEGMENT) with --egress socket. Every datagram must
// still arrive; each refused offload is counted once, off afterwards,
// logged once with its errno, and no frame is counted as dropped.
func TestIntegrationOffloadFault(t *testing.T) {
	for _, tt := range []struct {
		name, encap, sender string
		args                []string
	}{
		{"gre", "gre", "", nil},
		{"vxlan", "vxlan", overlay.OffloadPacketGSO, nil},
		{"vxlan-egress-socket", "vxlan", overlay.OffloadUDPGSO, []string{"--egress", "socket"}},
	} {
		t.Run(tt.name, func(t *testing.T) { testOffloadFault(t, tt.encap, tt.sender, tt.args) })
	}
}

// testOffloadFault runs the test with encap; sender names the offload the
// sender's fault refuses ("": none), and args are added to every
// daemon's.
func testOffloadFault(t *testing.T, encap, sender string, args []string) {
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	_, probe := binaries(t)
	bin := faultBinary(t)
	inv := filepath.Join(t.TempDir(), "peers")
	if err := os.WriteFile(inv, []byte(demoInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := nt.Nodes()
	socks := make([]string, 3)
	daemons := make([]*nstest.Proc, 3)
	for i, n := range nodes {
		fault := "tap_coalesce=EINVAL"
		if i == 0 && sender != "" {
			fault = sender + "=EINVAL"
		}
		socks[i] = ctlPath(t)
		daemons[i] = n.Start(t, "env", append([]string{overlay.FaultEnv + "=" + fault, bin, "run", "--peers", inv,
			"--local", n.Underlay.String(), "--encap", encap, "--control", socks[i]}, args...)...)
	}
	for i, d := range daemons {
		if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
			t.Fatalf("node %d did not start: %v\n%s", i+1, err, d.Output())
		}
	}
	if st := statusJSON(t, nodes[1], bin, socks[1]); !st.Offloads.TAPCoalesce.InUse {
		t.Skipf("this kernel (%s) takes no UDP segmentation frames on a TAP, so there is nothing to refuse: %s",
			st.Offloads.Kernel, st.Offloads.TAPCoalesce.Reason)
	}

	// Bursts: datagrams sent as fast as the sender can, so that the
	// receivers read several of one flow in a batch and coalesce them.
	const count = 3000
	var recvs []*nstest.Proc
	for _, n := range nodes[1:] {
		p := n.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
			"--count", strconv.Itoa(count), "--timeout", "30s", "--rcvbuf", strconv.Itoa(16<<20))
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("receiver on %s: %v\n%s", n, err, p.Output())
		}
		recvs = append(recvs, p)
	}
	// The sender's daemon learns both members before the burst.
	waitMembers(t, nodes[0], bin, socks[0], "239.1.2.3", 2)
	if out, err := nodes[0].Exec(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "0", "--size", "200"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	for i, p := range recvs {
		p.Wait(40 * time.Second)
		if got := received(t, p.Output()); got != count {
			t.Errorf("%s: node %d received %d/%d datagrams", encap, i+2, got, count)
		} else {
			t.Logf("%s: node %d received %d/%d datagrams", encap, i+2, got, count)
		}
	}

	check := func(i int, name string, o control.Offload, d *nstest.Proc) {
		t.Helper()
		t.Logf("node %d %s: %+v", i+1, name, o)
		if o.InUse || o.Fallbacks != 1 || !strings.Contains(o.Reason, "EINVAL") {
			t.Errorf("node %d %s after an injected EINVAL: %+v; want off, 1 fallback, the errno in the reason", i+1, name, o)
		}
		logged := strings.Count(d.Output(), "kernel refused an offload")
		if logged != 1 || !strings.Contains(d.Output(), "offload="+name) || !strings.Contains(d.Output(), "errno=EINVAL") {
			t.Errorf("node %d logged %d warnings of a refused offload, want 1 naming %s and EINVAL:\n%s", i+1, logged, name, d.Output())
		}
	}
	for i, n := range nodes {
		st := statusJSON(t, n, bin, socks[i])
		for _, r := range []string{"tap_write", "send_error"} {
			if st.Drops[r] != 0 {
				t.Errorf("node %d: %d drops %s", i+1, st.Drops[r], r)
			}
		}
		switch {
		case i > 0:
			check(i, overlay.OffloadTAPCoalesce, st.Offloads.TAPCoalesce, daemons[i])
		case sender == overlay.OffloadUDPGSO:
			check(i, sender, st.Offloads.UDPGSO, daemons[i])
		case sender == overlay.OffloadPacketGSO:
			check(i, sender, st.Offloads.PacketGSO, daemons[i])
		}
	}
}
