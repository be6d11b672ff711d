package main

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/ping"
	"github.com/spf13/cobra"
)

func newPingCmd(stdout io.Writer) *cobra.Command {
	var cf controlFlags
	var family int
	var count int
	var interval time.Duration
	var group string
	var port int
	cmd := &cobra.Command{
		Use:   "ping [--control PATH] [--family 4|6] [--count N] [--interval D] [--group G] [--port P]",
		Short: "Check unicast and multicast to every peer, end to end",
		Long: `Probe every peer of the running daemon, unicast to its overlay address and
multicast on the ping group, and print loss and round-trip times per peer, like
omping. Every meshcast daemon answers these probes through an ordinary socket
on its own TAP, so the probes cross the whole path, the remote kernel
included, and no tool is needed on the other side. Peers that lost multicast
probes while the daemon did not yet know them as members of the ping group
(IGMP still converging, as just after the daemons start) are named on a last
line.

--family 6 probes over IPv6 instead: each peer's IPv6 overlay address, and
the IPv6 ping group ` + ping.DefaultGroup6 + ` (transient, site-local scope;
--group may name another IPv6 group of scope wider than link-local), on the
same port. Peers without an IPv6 overlay address are listed as skipped, and
do not count; it fails when this node's daemon has none. Every daemon with
an IPv6 overlay address answers on both families.

Exit status: 0 when every peer answered both kinds of probe, 1 otherwise.`,
		Example: `  meshcast ping
  meshcast ping --count 20 --interval 200ms
  meshcast ping --family 6`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if family != 4 && family != 6 {
				return &exitError{code: exitUsage, err: fmt.Errorf("--family %d: want 4 (IPv4) or 6 (IPv6)", family)}
			}
			v6 := family == 6
			var grp netip.Addr
			if v6 {
				// The IPv6 group is the default or --group: status
				// names the IPv4 one only.
				g := ping.DefaultGroup6
				if cmd.Flags().Changed("group") {
					g = group
				}
				var err error
				if grp, err = netip.ParseAddr(g); err != nil || !ping.ValidGroup6(grp) {
					return &exitError{code: exitUsage, err: fmt.Errorf("--group %q is not an IPv6 multicast address of scope wider than link-local, such as the default %s", g, ping.DefaultGroup6)}
				}
			}
			st, err := cf.fetch(cmd.Context())
			if err != nil {
				return &exitError{code: exitRuntime, err: err}
			}
			var local netip.Prefix
			if !v6 {
				local, err = netip.ParsePrefix(st.Overlay)
				if err != nil {
					return &exitError{code: exitRuntime, err: fmt.Errorf("daemon reports overlay %q: %v", st.Overlay, err)}
				}
				g := st.Ping.Group
				if cmd.Flags().Changed("group") {
					g = group
				} else if g == "" {
					g = ping.DefaultGroup
				}
				grp, err = netip.ParseAddr(g)
				if err != nil || !grp.IsMulticast() || !grp.Unmap().Is4() {
					return &exitError{code: exitUsage, err: fmt.Errorf("--group %q is not an IPv4 multicast address", g)}
				}
				grp = grp.Unmap()
			}
			p := st.Ping.Port
			if cmd.Flags().Changed("port") || p == 0 {
				p = port
			}
			if p < 1 || p > 65535 || count < 1 || interval <= 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("--port must be 1-65535, --count at least 1 and --interval positive")}
			}
			if v6 {
				if local, err = local6(st); err != nil {
					return &exitError{code: exitRuntime, err: err}
				}
			}
			// The peers the daemon does not yet know as members of the
			// ping group may miss multicast probes; the report names
			// those that did. The kernel dataplane lists no groups.
			joined := map[string]bool{}
			for _, g := range st.Groups {
				if a, err := netip.ParseAddr(g.Group); err == nil && a == grp {
					for _, p := range g.Peers {
						joined[p] = true
					}
				}
			}
			var targets []ping.Target
			skipped := 0
			for _, peer := range st.Peers {
				overlay := peer.Overlay
				if v6 {
					overlay = peer.Overlay6
					if overlay == "" {
						fmt.Fprintf(stdout, "%s skipped: the peer has no IPv6 overlay address\n", peer.Underlay)
						skipped++
						continue
					}
				}
				o, err := netip.ParsePrefix(overlay)
				if err != nil {
					continue
				}
				targets = append(targets, ping.Target{Name: peer.Underlay, Overlay: o.Addr(),
					NotJoined: st.Dataplane != "kernel" && !joined[peer.Underlay]})
			}
			if len(targets) == 0 {
				if skipped > 0 {
					fmt.Fprintln(stdout, "no peers with an IPv6 overlay address to ping")
				} else {
					fmt.Fprintln(stdout, "no peers to ping")
				}
				return &exitError{code: exitRuntime}
			}
			results, err := ping.Run(cmd.Context(), ping.Options{
				Iface: st.TAP, Local: local.Addr(), Group: grp, Port: p, Count: count, Interval: interval,
			}, targets)
			if err != nil {
				return &exitError{code: exitRuntime, err: err}
			}
			ping.Write(stdout, results)
			if !ping.OK(results) {
				return &exitError{code: exitRuntime}
			}
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().IntVar(&family, "family", 4, "address family of the probes: 4 (IPv4) or 6 (the IPv6 overlay addresses and the IPv6 ping group)")
	cmd.Flags().IntVar(&count, "count", 5, "probes of each kind per peer")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "time between probe rounds")
	cmd.Flags().StringVar(&group, "group", "", "multicast `GROUP` of the probes (default "+ping.DefaultGroup+", or "+ping.DefaultGroup6+" with --family 6)")
	cmd.Flags().IntVar(&port, "port", ping.DefaultPort, "UDP `PORT` of the probes")
	return cmd
}

// local6 returns the daemon's IPv6 overlay address from its status, or
// why it has none that ping can probe from.
func local6(st control.State) (netip.Prefix, error) {
	if st.Overlay6 == "" {
		return netip.Prefix{}, fmt.Errorf("the daemon has no IPv6 overlay address: give this node one after its IPv4 overlay in its inventory line or tag (such as demo,198.19.0.1/24,fd00:198:19::1/64), or ping with --family 4")
	}
	p, err := netip.ParsePrefix(st.Overlay6)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("daemon reports overlay6 %q: %v", st.Overlay6, err)
	}
	return p, nil
}
