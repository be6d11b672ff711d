package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"time"
)

const (
	defaultPort  = 5000
	defaultCount = 10
	maxCount     = 100_000_000
	maxSize      = 65507 // the largest UDP payload over IPv4 (IPv6 allows more)
)

// sendConfig is the parsed command line of send.
type sendConfig struct {
	iface  string
	group  netip.Addr     // multicast destination, IPv4 or IPv6, or
	to     netip.AddrPort // unicast destination, IPv4
	port   int
	count  int
	rate   float64    // datagrams per second; 0 sends as fast as possible
	size   int        // UDP payload bytes
	source netip.Addr // local address to send from, of the destination's family
	ttl    int        // IP_MULTICAST_TTL, or IPV6_MULTICAST_HOPS for an IPv6 group
	json   bool
}

// dest returns the destination of every datagram.
func (c *sendConfig) dest() netip.AddrPort {
	if c.to.IsValid() {
		return c.to
	}
	return netip.AddrPortFrom(c.group, uint16(c.port))
}

// recvConfig is the parsed command line of recv.
type recvConfig struct {
	iface   string
	group   netip.Addr // IPv4 or IPv6; invalid: receive unicast (IPv4)
	source  netip.Addr // valid: source-specific join; of the group's family
	port    int
	count   int
	timeout time.Duration
	linger  time.Duration
	rcvbuf  int // socket receive buffer bytes; 0 keeps the kernel's default
	json    bool
}

// usageError reports a bad command line: it prints err and the flags, and
// returns exit status 2. A request for help (-h) returns 0.
func usageError(fs *flag.FlagSet, stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK // the flag package has printed the usage
	}
	fmt.Fprintf(stderr, "mcastprobe %s: %v\n", fs.Name(), err)
	fs.SetOutput(stderr)
	fs.Usage()
	return exitUsage
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage of mcastprobe %s:\n", name)
		fs.PrintDefaults()
	}
	return fs
}

// addrFlag is a flag holding an IPv4 or IPv6 address, without a zone: the
// interface is always --iface. Whether the family fits the other flags is
// checked after parsing.
type addrFlag struct{ a *netip.Addr }

func (f addrFlag) String() string {
	if f.a == nil || !f.a.IsValid() {
		return ""
	}
	return f.a.String()
}

func (f addrFlag) Set(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return err
	}
	switch {
	case a.Zone() != "":
		return fmt.Errorf("%s has a zone: give the interface with --iface", s)
	case a.Is4In6():
		return fmt.Errorf("%s is an IPv4-mapped IPv6 address: write it as %s", s, a.Unmap())
	}
	*f.a = a
	return nil
}

// family names the address family of a.
func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// checkSource validates --source against dst, the address it goes with
// (the group, or the unicast destination of send --to). Both must be of the
// same family; an IPv6 source must be a unicast address.
func checkSource(source, dst netip.Addr, dstFlag string) error {
	if !source.IsValid() {
		return nil
	}
	if source.Is4() != dst.Is4() {
		return fmt.Errorf("--source %s is an %s address but %s %s is %s: give both in the same family",
			source, family(source), dstFlag, dst, family(dst))
	}
	if source.Is6() && (source.IsMulticast() || source.IsUnspecified()) {
		return fmt.Errorf("--source %s is not an IPv6 unicast address", source)
	}
	return nil
}

// checkCommon validates the flags that send and recv share.
func checkCommon(port, count int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("--port %d: want 1 to 65535", port)
	}
	if count < 1 || count > maxCount {
		return fmt.Errorf("--count %d: want 1 to %d", count, maxCount)
	}
	return nil
}

func parseSend(args []string, stderr io.Writer) (*sendConfig, int) {
	c := &sendConfig{}
	fs := newFlagSet("send", stderr)
	fs.StringVar(&c.iface, "iface", "", "send out of this `interface` (required with --group)")
	fs.Var(addrFlag{&c.group}, "group", "send to this IPv4 or IPv6 multicast `group`")
	to := fs.String("to", "", "send unicast to `ADDR:PORT` instead of a group")
	fs.IntVar(&c.port, "port", defaultPort, "destination UDP `port` for --group")
	fs.IntVar(&c.count, "count", defaultCount, "number of datagrams `N`")
	fs.Float64Var(&c.rate, "rate", 1000, "datagrams per second, 0 for as fast as possible")
	fs.IntVar(&c.size, "size", 64, fmt.Sprintf("UDP payload `bytes`, %d to %d", headerLen, maxSize))
	fs.Var(addrFlag{&c.source}, "source", "bind to this local source `address`, of the destination's family")
	fs.IntVar(&c.ttl, "ttl", 1, "multicast TTL (the hop limit for an IPv6 group)")
	fs.BoolVar(&c.json, "json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return nil, usageError(fs, stderr, err)
	}
	err := func() error {
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		switch {
		case *to != "" && c.group.IsValid():
			return errors.New("give either --group or --to, not both")
		case *to != "":
			ap, err := netip.ParseAddrPort(*to)
			if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
				return fmt.Errorf("--to %q: want an IPv4 ADDR:PORT", *to)
			}
			if ap.Addr().IsMulticast() {
				return fmt.Errorf("--to %s is a multicast address: use --group", ap.Addr())
			}
			c.to = ap
			c.port = int(ap.Port())
			if err := checkSource(c.source, ap.Addr(), "--to"); err != nil {
				return err
			}
		case c.group.IsValid():
			if !c.group.IsMulticast() {
				return fmt.Errorf("--group %s is not a multicast address", c.group)
			}
			if c.iface == "" {
				return errors.New("--group needs --iface")
			}
			if err := checkSource(c.source, c.group, "--group"); err != nil {
				return err
			}
		default:
			return errors.New("give --group (with --iface) or --to")
		}
		if err := checkCommon(c.port, c.count); err != nil {
			return err
		}
		if c.rate < 0 || c.rate != c.rate {
			return fmt.Errorf("--rate %v: want 0 or more", c.rate)
		}
		if c.size < headerLen || c.size > maxSize {
			return fmt.Errorf("--size %d: want %d to %d", c.size, headerLen, maxSize)
		}
		if c.ttl < 0 || c.ttl > 255 {
			return fmt.Errorf("--ttl %d: want 0 to 255", c.ttl)
		}
		if c.source.IsValid() && c.source.IsMulticast() {
			return fmt.Errorf("--source %s is a multicast address", c.source)
		}
		return nil
	}()
	if err != nil {
		return nil, usageError(fs, stderr, err)
	}
	return c, exitOK
}

func parseRecv(args []string, stderr io.Writer) (*recvConfig, int) {
	c := &recvConfig{}
	fs := newFlagSet("recv", stderr)
	fs.StringVar(&c.iface, "iface", "", "join the group on (and receive only from) this `interface`")
	fs.Var(addrFlag{&c.group}, "group", "join this IPv4 or IPv6 multicast `group`; without it, receive unicast")
	fs.Var(addrFlag{&c.source}, "source", "with --group: a source-specific join for this `source` only, of the group's family")
	fs.IntVar(&c.port, "port", defaultPort, "UDP `port` to receive on")
	fs.IntVar(&c.count, "count", defaultCount, "number of datagrams `N` expected (sequence numbers 0 to N-1)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "give up this long after the start")
	fs.DurationVar(&c.linger, "linger", 0, "after all N arrived, keep counting duplicates this long")
	fs.IntVar(&c.rcvbuf, "rcvbuf", 4<<20, "socket receive buffer `bytes`, 0 for the kernel's default")
	fs.BoolVar(&c.json, "json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return nil, usageError(fs, stderr, err)
	}
	err := func() error {
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		if c.group.IsValid() {
			if !c.group.IsMulticast() {
				return fmt.Errorf("--group %s is not a multicast address", c.group)
			}
			if c.iface == "" {
				return errors.New("--group needs --iface")
			}
			if err := checkSource(c.source, c.group, "--group"); err != nil {
				return err
			}
		} else if c.source.IsValid() {
			return errors.New("--source needs --group")
		}
		if c.source.IsValid() && c.source.IsMulticast() {
			return fmt.Errorf("--source %s is a multicast address", c.source)
		}
		if err := checkCommon(c.port, c.count); err != nil {
			return err
		}
		if c.timeout <= 0 {
			return fmt.Errorf("--timeout %v: want more than 0", c.timeout)
		}
		if c.rcvbuf < 0 {
			return fmt.Errorf("--rcvbuf %d: want 0 or more", c.rcvbuf)
		}
		if c.linger < 0 {
			return fmt.Errorf("--linger %v: want 0 or more", c.linger)
		}
		return nil
	}()
	if err != nil {
		return nil, usageError(fs, stderr, err)
	}
	return c, exitOK
}
