// Command mcastprobe is an ordinary IP multicast application for demos and
// integration tests: one side sends numbered UDP datagrams, the other counts
// which of them arrived.
//
// Usage:
//
//	mcastprobe send --iface IF --group 239.1.2.3 [--port 5000] [--count N]
//	                [--rate PPS] [--size BYTES] [--source ADDR] [--ttl N]
//	mcastprobe send --to ADDR:PORT [--iface IF] [--count N] ...
//	mcastprobe recv --iface IF --group 239.1.2.3 [--source S] [--port 5000]
//	                [--count N] [--timeout 10s] [--linger D] [--rcvbuf BYTES] [--json]
//	mcastprobe recv --port 5000 [--iface IF] ...
//
// --group is an IPv4 or an IPv6 multicast address (such as ff0e::1:2:3 or
// ff3e::8000:1); --source must be of the same family as --group (or --to),
// and an IPv6 --source a unicast address. --to and recv without --group are
// IPv4 only.
//
// send sends datagrams carrying the sequence numbers 0 to N-1, at most
// --rate per second, out of interface --iface (IP_MULTICAST_IF, TTL 1,
// loopback off; for an IPv6 group IPV6_MULTICAST_IF, hop limit --ttl,
// IPV6_MULTICAST_LOOP off), or unicast to --to. It prints "sent S/N" and
// exits 0 if every datagram was sent.
//
// recv joins --group on --iface (a source-specific join with --source; for
// an IPv6 group MCAST_JOIN_SOURCE_GROUP, which the kernel reports as an
// MLDv2 INCLUDE record), or without --group receives unicast on --port, and
// prints a line "ready" once it can receive. It counts distinct sequence numbers in [0, N) until it has
// all N or --timeout has passed since the start, waits --linger longer to
// catch duplicates, and prints
//
//	received R/N lost L dup D
//
// or, with --json, one JSON object. It exits 0 if R == N and 1 otherwise.
// SIGINT and SIGTERM end the wait early and still print the result.
//
// Both exit 2 on a usage error, and 1 on any other failure.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure, or datagrams missing
	exitUsage   = 2
)

const usage = `usage:
  mcastprobe send --iface IF --group GROUP [--port P] [--count N] [--rate PPS] [--size BYTES] [--source ADDR] [--ttl N] [--json]
  mcastprobe send --to ADDR:PORT [--iface IF] [--count N] [--rate PPS] [--size BYTES] [--source ADDR] [--json]
  mcastprobe recv --iface IF --group GROUP [--source S] [--port P] [--count N] [--timeout D] [--linger D] [--rcvbuf BYTES] [--json]
  mcastprobe recv --port P [--iface IF] [--count N] [--timeout D] [--linger D] [--rcvbuf BYTES] [--json]
run "mcastprobe send -h" or "mcastprobe recv -h" for the flags.
`

// run is the whole program; main only adds the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "mcastprobe: missing command\n"+usage)
		return exitUsage
	}
	switch args[0] {
	case "send":
		cfg, code := parseSend(args[1:], stderr)
		if cfg == nil {
			return code
		}
		return send(ctx, cfg, stdout, stderr)
	case "recv":
		cfg, code := parseRecv(args[1:], stderr)
		if cfg == nil {
			return code
		}
		return recv(ctx, cfg, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "mcastprobe: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
}
