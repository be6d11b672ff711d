package main

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/meshcast/meshcast/internal/ping"
	"github.com/spf13/cobra"
)

func newPingCmd(stdout io.Writer) *cobra.Command {
	var cf controlFlags
	var count int
	var interval time.Duration
	var group string
	var port int
	cmd := &cobra.Command{
		Use:   "ping [--control PATH] [--count N] [--interval D] [--group G] [--port P]",
		Short: "Check unicast and multicast to every peer, end to end",
		Long: `Probe every peer of the running daemon, unicast to its overlay address and
multicast on the ping group, and print loss and round-trip times per peer, like
omping. Every meshcast daemon answers these probes through an ordinary socket
on its own TAP, so the probes cross the whole path, the remote kernel
included, and no tool is needed on the other side. Peers that lost multicast
probes while the daemon did not yet know them as members of the ping group
(IGMP still converging, as just after the daemons start) are named on a last
line.

Exit status: 0 when every peer answered both kinds of probe, 1 otherwise.`,
		Example: `  meshcast ping
  meshcast ping --count 20 --interval 200ms`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := cf.fetch(cmd.Context())
			if err != nil {
				return &exitError{code: exitRuntime, err: err}
			}
			local, err := netip.ParsePrefix(st.Overlay)
			if err != nil {
				return &exitError{code: exitRuntime, err: fmt.Errorf("daemon reports overlay %q: %v", st.Overlay, err)}
			}
			g := st.Ping.Group
			if cmd.Flags().Changed("group") || g == "" {
				g = group
			}
			grp, err := netip.ParseAddr(g)
			if err != nil || !grp.IsMulticast() {
				return &exitError{code: exitUsage, err: fmt.Errorf("--group %q is not an IPv4 multicast address", g)}
			}
			p := st.Ping.Port
			if cmd.Flags().Changed("port") || p == 0 {
				p = port
			}
			if p < 1 || p > 65535 || count < 1 || interval <= 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("--port must be 1-65535, --count at least 1 and --interval positive")}
			}
			// The peers the daemon does not yet know as members of the
			// ping group may miss multicast probes; the report names
			// those that did. The kernel dataplane lists no groups.
			joined := map[string]bool{}
			for _, g := range st.Groups {
				if g.Group == grp.String() {
					for _, p := range g.Peers {
						joined[p] = true
					}
				}
			}
			var targets []ping.Target
			for _, peer := range st.Peers {
				o, err := netip.ParsePrefix(peer.Overlay)
				if err != nil {
					continue
				}
				targets = append(targets, ping.Target{Name: peer.Underlay, Overlay: o.Addr(),
					NotJoined: st.Dataplane != "kernel" && !joined[peer.Underlay]})
			}
			if len(targets) == 0 {
				fmt.Fprintln(stdout, "no peers to ping")
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
	cmd.Flags().IntVar(&count, "count", 5, "probes of each kind per peer")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "time between probe rounds")
	cmd.Flags().StringVar(&group, "group", ping.DefaultGroup, "multicast `GROUP` of the probes")
	cmd.Flags().IntVar(&port, "port", ping.DefaultPort, "UDP `PORT` of the probes")
	return cmd
}
