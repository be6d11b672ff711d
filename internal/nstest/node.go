package nstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ExecTimeout bounds every Node.Exec.
const ExecTimeout = 2 * time.Minute

// A Node is one network namespace of a Net: an instance on the underlay, or
// the hub. Its methods are safe for concurrent use.
type Node struct {
	// Name is the namespace name, for `ip netns exec NAME` or `ip -n NAME`.
	Name string
	// Underlay is the node's IPv4 address on NodeLink; invalid for the hub
	// and in a Net built with UnderlayIPv6.
	Underlay netip.Addr
	// Underlay6 is the node's IPv6 address on NodeLink; invalid for the
	// hub and in a Net built with UnderlayIPv4 (as by NewNet).
	Underlay6 netip.Addr
	// Index is K in the underlay addresses 198.18.0.K and
	// fd00:198:18::K (K in hex there); 0 for the hub.
	Index int

	net    *Net
	ns     netns.NsHandle // open until cleanup
	mu     sync.Mutex     // serializes handle
	handle *netlink.Handle
}

func (n *Node) String() string { return n.Name }

// Exec runs the command args inside the namespace (with `ip netns exec`, so
// /sys shows the namespace's devices), waits at most ExecTimeout, and
// returns its standard output and error together. The error, if any,
// includes the command line and the end of the output.
func (n *Node) Exec(t testing.TB, args ...string) (string, error) {
	t.Helper()
	if len(args) == 0 {
		return "", errors.New("nstest: Exec: no command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := startCmd(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %v: %w", ExecTimeout, err)
		}
		err = fmt.Errorf("in %s: %s: %w%s", n.Name, quoteArgs(args), err, tail(out.String()))
	}
	return out.String(), err
}

// tail returns the last lines of out, formatted to end an error message.
func tail(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	const max = 2000
	if len(out) > max {
		out = "..." + out[len(out)-max:]
	}
	return "\n" + out
}

// Start starts the program name with args in the background inside the
// namespace, with its standard output and error going to a buffer (see
// Proc.Output). The process is stopped in t.Cleanup, SIGTERM first, and its
// output is logged there if the test failed. A process built with the race
// detector that reported a data race fails the test there too. Start fails
// the test if the program cannot be started.
func (n *Node) Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	argv := append([]string{name}, args...)
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("nstest: in %s: starting %s: %v", n.Name, quoteArgs(argv), err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, argv...)...)
	p := &Proc{node: n, argv: argv, cmd: cmd, done: make(chan struct{})}
	p.out.changed = make(chan struct{})
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	// A child the process leaves behind may hold its output open: do not
	// let that keep Wait from returning once the process itself exits.
	cmd.WaitDelay = time.Second
	if err := startCmd(cmd); err != nil {
		t.Fatalf("nstest: in %s: starting %s: %v", n.Name, quoteArgs(argv), err)
	}
	go p.wait()
	if n.net != nil {
		n.net.addProc(p)
	}
	t.Cleanup(func() {
		code, err := p.stop()
		if strings.Contains(p.Output(), raceReport) {
			t.Errorf("in %s: %s reported a data race (its output follows)", n.Name, quoteArgs(argv))
		}
		if t.Failed() {
			status := fmt.Sprintf("exit status %d", code)
			if err != nil {
				status = err.Error()
			}
			t.Logf("in %s: %s (%s) output:\n%s", n.Name, quoteArgs(argv), status, p.Output())
		}
	})
	return p
}

// Do runs fn with the calling thread's network namespace set to the node's,
// and returns fn's error. fn runs on a new goroutine that locks its OS thread
// and never unlocks it, so the runtime discards the thread afterwards and no
// other goroutine ever runs in the namespace by accident. Goroutines that fn
// starts do not inherit the namespace. Sockets opened by fn stay in the
// namespace after Do returns. A panic in fn is returned as an error; fn must
// not call t.FailNow or t.Fatal.
func (n *Node) Do(fn func() error) error {
	return doIn(n.ns, fn)
}

// nl runs fn with the node's netlink handle, which works in the node's
// namespace from any thread.
func (n *Node) nl(fn func(h *netlink.Handle) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.handle == nil {
		return fmt.Errorf("nstest: %s has no netlink handle", n.Name)
	}
	return fn(n.handle)
}

// Link returns the link named ifname in the namespace.
func (n *Node) Link(ifname string) (netlink.Link, error) {
	var l netlink.Link
	err := n.nl(func(h *netlink.Handle) error {
		var err error
		l, err = h.LinkByName(ifname)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("in %s: link %s: %w", n.Name, ifname, err)
	}
	return l, nil
}

// Counters are the statistics of one interface, as `ip -s link` shows them.
type Counters struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
	RxErrors, TxErrors   uint64
	RxDropped, TxDropped uint64
	Multicast            uint64 // multicast packets received
}

// Sub returns c - prev, field by field: the traffic between two readings.
func (c Counters) Sub(prev Counters) Counters {
	return Counters{
		RxPackets: c.RxPackets - prev.RxPackets, TxPackets: c.TxPackets - prev.TxPackets,
		RxBytes: c.RxBytes - prev.RxBytes, TxBytes: c.TxBytes - prev.TxBytes,
		RxErrors: c.RxErrors - prev.RxErrors, TxErrors: c.TxErrors - prev.TxErrors,
		RxDropped: c.RxDropped - prev.RxDropped, TxDropped: c.TxDropped - prev.TxDropped,
		Multicast: c.Multicast - prev.Multicast,
	}
}

// MustCounters reads the statistics of interface ifname in the namespace
// and fails the test if it cannot: a check that nothing arrived must not
// read an unreadable counter as zero.
func (n *Node) MustCounters(t testing.TB, ifname string) Counters {
	t.Helper()
	c, err := n.Counters(ifname)
	if err != nil {
		t.Fatalf("nstest: counters of %s: %v", ifname, err)
	}
	return c
}

// Counters reads the statistics of interface ifname in the namespace.
func (n *Node) Counters(ifname string) (Counters, error) {
	l, err := n.Link(ifname)
	if err != nil {
		return Counters{}, err
	}
	s := l.Attrs().Statistics
	if s == nil {
		return Counters{}, fmt.Errorf("in %s: link %s has no statistics", n.Name, ifname)
	}
	return Counters{
		RxPackets: s.RxPackets, TxPackets: s.TxPackets,
		RxBytes: s.RxBytes, TxBytes: s.TxBytes,
		RxErrors: s.RxErrors, TxErrors: s.TxErrors,
		RxDropped: s.RxDropped, TxDropped: s.TxDropped,
		Multicast: s.Multicast,
	}, nil
}

// RxPackets returns the received-packets counter of interface ifname.
func (n *Node) RxPackets(ifname string) (uint64, error) {
	c, err := n.Counters(ifname)
	return c.RxPackets, err
}

// TxPackets returns the transmitted-packets counter of interface ifname.
func (n *Node) TxPackets(ifname string) (uint64, error) {
	c, err := n.Counters(ifname)
	return c.TxPackets, err
}
