package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/fakeaws"
	"github.com/meshcast/meshcast/internal/nstest"
)

// ec2Env serves a fake EC2 API and IMDS from the hub namespace on the
// underlay (198.18.0.254) and returns the environment that points a
// daemon's AWS SDK at it. IMDS answers each node as the instance whose
// private address is the node's underlay address.
func ec2Env(t *testing.T, nt *nstest.Net) (*fakeaws.Server, []string) {
	t.Helper()
	if out, err := nt.Hub.Exec(t, "ip", "addr", "add", "198.18.0.254/24", "dev", nstest.BridgeName); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	fake := fakeaws.New("us-east-1")
	var l net.Listener
	if err := nt.Hub.Do(func() (err error) {
		l, err = net.Listen("tcp4", "198.18.0.254:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fake.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	endpoint := "http://" + l.Addr().String()
	return fake, []string{
		"AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL_EC2=" + endpoint,
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + endpoint,
		"AWS_ACCESS_KEY_ID=AKIDMESHCASTTEST",
		"AWS_SECRET_ACCESS_KEY=secret",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_CA_BUNDLE=",
		"HOME=" + t.TempDir(),
	}
}

func ec2Instance(k int) fakeaws.Instance {
	return fakeaws.Instance{
		ID:        fmt.Sprintf("i-%017x", k),
		PrivateIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(k)}),
		VPC:       "vpc-0123456789abcdef0",
		Tags:      map[string]string{"multicast": fmt.Sprintf("demo,198.19.0.%d/24", k)},
	}
}

// rxStarts polls a node's underlay receive counter and returns when it
// first grows by at least min packets within 100 ms, or false after
// timeout. A counter it cannot read fails the test.
func rxStarts(t *testing.T, n *nstest.Node, min uint64, timeout time.Duration) (time.Time, bool) {
	t.Helper()
	prev := n.MustCounters(t, nstest.NodeLink)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		cur := n.MustCounters(t, nstest.NodeLink)
		if cur.Sub(prev).RxPackets >= min {
			return time.Now(), true
		}
		prev = cur
	}
	return time.Time{}, false
}

// rxStops polls until a node's underlay receive counter grows by less than
// min packets per 100 ms, and returns when. A counter it cannot read fails
// the test: read as zeros, it would look stopped.
func rxStops(t *testing.T, n *nstest.Node, min uint64, timeout time.Duration) (time.Time, bool) {
	t.Helper()
	prev := n.MustCounters(t, nstest.NodeLink)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		cur := n.MustCounters(t, nstest.NodeLink)
		if cur.Sub(prev).RxPackets < min {
			return time.Now(), true
		}
		prev = cur
	}
	return time.Time{}, false
}

// TestIntegrationEC2Discovery runs three daemons with --discovery ec2
// against a fake EC2 endpoint. They form the mesh from their tags; a
// fourth instance added to EC2 receives traffic within one interval; one
// terminated stops receiving; and a stream between the others loses no
// packet during both changes.
func TestIntegrationEC2Discovery(t *testing.T) {
	nt := nstest.NewNet(t, 3)
	nstest.LeakCheck(t)
	bin, probe := binaries(t)
	fake, env := ec2Env(t, nt)
	const interval = 2 * time.Second
	start := func(n *nstest.Node) *nstest.Proc {
		args := append(append([]string{}, env...), bin, "run", "--discovery", "ec2", "--control", ctlPath(t),
			"--interval", interval.String(), "--igmp-last-member-interval", "500ms")
		p := n.Start(t, "env", args...)
		if err := p.WaitOutput("meshcast forwarding", 20*time.Second); err != nil {
			t.Fatalf("%s did not start: %v\n%s", n, err, p.Output())
		}
		return p
	}
	for k := 1; k <= 3; k++ {
		fake.Put(ec2Instance(k))
	}
	nodes := nt.Nodes()
	for _, n := range nodes {
		start(n)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]

	// B and C join; A streams for 14 s at 500/s while the community
	// changes; B must get every datagram.
	const count = 7000
	recvB := b.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--timeout", "40s")
	recvC := c.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--timeout", "40s")
	for _, p := range []*nstest.Proc{recvB, recvC} {
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	sender := a.Start(t, probe, "send", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", strconv.Itoa(count), "--rate", "500", "--size", "100")
	if _, ok := rxStarts(t, c, 20, 5*time.Second); !ok {
		t.Fatal("the mesh formed by EC2 discovery carries no multicast to C")
	}

	// A fourth instance joins EC2 and the group.
	d := nt.AddNode(t)
	added := time.Now()
	fake.Put(ec2Instance(4))
	start(d)
	recvD := d.Start(t, probe, "recv", "--iface", "mcbr-demo", "--group", "239.1.2.3", "--port", "5000",
		"--count", "1000000", "--timeout", "60s")
	if err := recvD.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	joined, ok := rxStarts(t, d, 20, 15*time.Second)
	if !ok {
		t.Fatal("the added instance never received the stream")
	}
	joinTook := joined.Sub(added)
	t.Logf("added instance receives the stream %v after it appeared in EC2 (interval %v)", joinTook.Round(10*time.Millisecond), interval)

	// C is terminated: A stops sending to it.
	time.Sleep(time.Second)
	terminated := time.Now()
	fake.SetState(ec2Instance(3).ID, "terminated")
	stopped, ok := rxStops(t, c, 10, 15*time.Second)
	if !ok {
		t.Fatal("the terminated instance kept receiving")
	}
	leaveTook := stopped.Sub(terminated)
	t.Logf("terminated instance stops receiving %v after EC2 reports it (interval %v)", leaveTook.Round(10*time.Millisecond), interval)

	sender.Wait(40 * time.Second)
	recvB.Wait(40 * time.Second)
	gotB := received(t, recvB.Output())
	t.Logf("B received %d/%d datagrams of the stream during both changes (lost %d)", gotB, count, count-gotB)
	if gotB != count {
		t.Errorf("B lost %d datagrams while the community changed", count-gotB)
	}
	// One interval with its jitter, the IGMP exchange (the solicited
	// query's last member interval) and the polling.
	limit := interval*11/10 + time.Second + 500*time.Millisecond
	if joinTook > limit {
		t.Errorf("the added instance waited %v for traffic, want within %v", joinTook, limit)
	}
	if leaveTook > interval*11/10+500*time.Millisecond {
		t.Errorf("the terminated instance received for %v, want within one interval", leaveTook)
	}
}
