package ping_test

import (
	"context"
	"log"
	"net/netip"
	"os"
	"time"

	"github.com/meshcast/meshcast/internal/ping"
)

// Every node answers probes on its TAP for as long as its daemon runs.
func ExampleListen() {
	r, err := ping.Listen("mcbr-demo", netip.MustParseAddr("198.19.0.1"), netip.Addr{}, 0) // the ping group and port
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	// ...
	answered, ignored := r.Stats()
	log.Printf("answered %d probes, ignored %d datagrams", answered, ignored)
}

// A node with an IPv6 overlay address answers on both families, on the
// ping groups DefaultGroup and DefaultGroup6.
func ExampleListenDual() {
	r, err := ping.ListenDual("mcbr-demo", netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("fd00:198:19::1"), 0)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
}

// One node probes its peers, unicast and multicast, and prints the result
// like omping.
func ExampleRun() {
	opts := ping.Options{
		Iface:    "mcbr-demo",
		Local:    netip.MustParseAddr("198.19.0.1"),
		Count:    5,
		Interval: time.Second,
	}
	peers := []ping.Target{
		{Name: "198.18.0.2", Overlay: netip.MustParseAddr("198.19.0.2")},
		{Name: "198.18.0.3", Overlay: netip.MustParseAddr("198.19.0.3")},
	}
	results, err := ping.Run(context.Background(), opts, peers)
	if err != nil {
		log.Fatal(err)
	}
	ping.Write(os.Stdout, results)
	if !ping.OK(results) {
		os.Exit(1)
	}
}

// Over IPv6: the local address and the targets' are the IPv6 overlay
// addresses, and the group is DefaultGroup6.
func ExampleRun_iPv6() {
	opts := ping.Options{Iface: "mcbr-demo", Local: netip.MustParseAddr("fd00:198:19::1")}
	peers := []ping.Target{{Name: "198.18.0.2", Overlay: netip.MustParseAddr("fd00:198:19::2")}}
	results, err := ping.Run(context.Background(), opts, peers)
	if err != nil {
		log.Fatal(err)
	}
	ping.Write(os.Stdout, results)
}
