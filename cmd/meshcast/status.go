package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/spf13/cobra"
)

// controlFlags are the flags that find a running daemon.
type controlFlags struct {
	path      string
	community string
}

func (c *controlFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.path, "control", "", "control socket `PATH` of the daemon (default /run/meshcast/COMMUNITY.sock)")
	cmd.Flags().StringVar(&c.community, "community", "", "community `NAME` whose daemon to ask (default: the only one running)")
}

// resolve finds the socket: --control, else --community's default, else the
// only socket in /run/meshcast.
func (c *controlFlags) resolve() (string, error) {
	if c.path != "" {
		return c.path, nil
	}
	if c.community != "" {
		return control.DefaultPath(c.community), nil
	}
	socks, _ := filepath.Glob(filepath.Join(filepath.Dir(control.DefaultPath("x")), "*.sock"))
	switch len(socks) {
	case 0:
		return "", fmt.Errorf("no meshcast is running: there is no control socket in %s (start one with meshcast run, or pass --control)", filepath.Dir(control.DefaultPath("x")))
	case 1:
		return socks[0], nil
	}
	return "", fmt.Errorf("several meshcast daemons run (%s): pass --community or --control", strings.Join(socks, ", "))
}

func (c *controlFlags) fetch(ctx context.Context) (control.State, error) {
	path, err := c.resolve()
	if err != nil {
		return control.State{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := control.Fetch(ctx, path)
	if errors.Is(err, control.ErrNotRunning) {
		return st, fmt.Errorf("%w: start it with meshcast run, or pass --control", err)
	}
	return st, err
}

func newStatusCmd(stdout io.Writer) *cobra.Command {
	var cf controlFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json] [--control PATH]",
		Short: "Show a running daemon's peers, groups and counters",
		Long: `Show what a running daemon is doing: its community, encapsulation, TAP and
addresses; its peers with their counters; the multicast groups with their
member peers (like 'bridge mdb show'); drops by reason; and the health of
discovery. --json prints the same as one JSON object for scripts.`,
		Example: `  meshcast status
  meshcast status --json | jq '.groups'
  meshcast status --community demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := cf.fetch(cmd.Context())
			if err != nil {
				return &exitError{code: exitRuntime, err: err}
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(stdout, st, time.Now())
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// printOffloads writes the offloads table: what is in use on this
// kernel, and why anything is off.
func printOffloads(w io.Writer, o control.Offloads) {
	if o.Kernel == "" {
		return
	}
	fmt.Fprintf(w, "\noffloads on Linux %s:\n", o.Kernel)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "offload\tin use\tfallbacks\treason")
	for _, x := range []struct {
		name string
		o    control.Offload
	}{{"tap_coalesce", o.TAPCoalesce}, {"udp_gso", o.UDPGSO}, {"udp_gro", o.UDPGRO}, {"af_packet_tx", o.PacketTx}, {"af_packet_gso", o.PacketGSO}, {"af_packet_rx", o.PacketRx}} {
		use := "no"
		if x.o.InUse {
			use = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", x.name, use, x.o.Fallbacks, x.o.Reason)
	}
	tw.Flush()
}

func ago(t *time.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	return now.Sub(*t).Round(100*time.Millisecond).String() + " ago"
}

// printStatus writes the state as aligned tables.
func printStatus(w io.Writer, st control.State, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	encap := st.Encap
	if st.VNI != 0 {
		encap = fmt.Sprintf("%s (vni %d, port %d)", st.Encap, st.VNI, st.Port)
	}
	fmt.Fprintf(tw, "community\t%s\n", st.Community)
	fmt.Fprintf(tw, "encap\t%s\n", encap)
	fmt.Fprintf(tw, "tap\t%s  mtu %d\n", st.TAP, st.MTU)
	local := st.Local
	if st.Local6 != "" {
		local += " " + st.Local6
	}
	if st.Overlay6 != "" {
		fmt.Fprintf(tw, "local\t%s  overlay %s  %s\n", local, st.Overlay, st.Overlay6)
	} else {
		fmt.Fprintf(tw, "local\t%s  overlay %s\n", local, st.Overlay)
	}
	if st.Family != "" {
		fmt.Fprintf(tw, "underlay family\t%s\n", st.Family)
	}
	fmt.Fprintf(tw, "uptime\t%s  (pid %d, version %s)\n", now.Sub(st.Started).Round(time.Second), st.PID, st.Version)
	d := st.Discovery
	fmt.Fprintf(tw, "discovery\t%s: last success %s, %d ok, %d failed (%d throttled)\n",
		d.Source, ago(d.LastSuccess, now), d.Successes, d.Failures, d.Throttled)
	if d.LastError != "" {
		fmt.Fprintf(tw, "\tlast error: %s\n", d.LastError)
	}
	for _, p := range d.Problems {
		fmt.Fprintf(tw, "\tleft out: %s\n", p)
	}
	q := "not querier (another querier is present)"
	if st.Querier.Active {
		q = "querier"
	}
	fmt.Fprintf(tw, "igmp\t%s, %d queries sent\n", q, st.Querier.Sent)
	if mq := st.MLDQuerier; mq != nil {
		q := "not querier (another querier is present)"
		if mq.Active {
			q = "querier"
		}
		fmt.Fprintf(tw, "mld\t%s, %d queries sent\n", q, mq.Sent)
	}
	tw.Flush()
	printOffloads(w, st.Offloads)

	fmt.Fprintf(w, "\npeers: %d\n", len(st.Peers))
	if len(st.Peers) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "underlay\toverlay\ttx packets\ttx bytes\trx packets\trx bytes\ttx errors\tlast seen\t")
		for _, p := range st.Peers {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", p.Underlay, p.Overlay,
				p.TxPackets, p.TxBytes, p.RxPackets, p.RxBytes, p.TxErrors, ago(p.LastSeen, now))
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\ngroups: %d\n", len(st.Groups))
	if len(st.Groups) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "group\tport\tmode\tversion\texpires\tsources")
		for _, g := range st.Groups {
			for _, m := range g.Members {
				src := strings.Join(m.Sources, ",")
				if len(m.Blocked) > 0 {
					src += " blocked:" + strings.Join(m.Blocked, ",")
				}
				ver := fmt.Sprintf("v%d", m.Version)
				if strings.Contains(g.Group, ":") {
					ver = "mld" + ver // MLDv1 or MLDv2, not IGMP's
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fs\t%s\n", g.Group, m.Port, m.Mode, ver, m.ExpiresSeconds, strings.TrimSpace(src))
			}
		}
		tw.Flush()
	}
	if len(st.RouterInfo) > 0 {
		fmt.Fprintf(w, "\nrouter peers: %d\n", len(st.RouterInfo))
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "peer\trouter\tlearned from\texpires")
		for _, r := range st.RouterInfo {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs\n", r.Peer, r.Router, strings.Join(r.Learned, ","), r.ExpiresSeconds)
		}
		tw.Flush()
	} else if len(st.Routers) > 0 {
		fmt.Fprintf(w, "\nrouter peers: %s\n", strings.Join(st.Routers, " "))
	}
	if st.HostRouter {
		fmt.Fprintf(w, "a multicast router runs on this host: peers' reports go into the TAP for it\n")
	}
	if len(st.Flooded) > 0 {
		fmt.Fprintf(w, "\nflooded (unregistered groups sent to every peer):\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "group\tframes\tcopies\tdrop would save\t")
		for _, f := range st.Flooded {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", f.Group, f.Frames, f.Copies, f.DropSave)
		}
		tw.Flush()
	}

	var reasons []string
	for k, v := range st.Drops {
		if v > 0 {
			reasons = append(reasons, k)
		}
	}
	sort.Strings(reasons)
	fmt.Fprintf(w, "\ndrops:")
	if len(reasons) == 0 {
		fmt.Fprintf(w, " none\n")
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range reasons {
		fmt.Fprintf(tw, "  %s\t%d\n", k, st.Drops[k])
	}
	tw.Flush()
}
