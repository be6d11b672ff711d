package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
)

// The Open vSwitch path runs one ovsdb-server and one ovs-vswitchd per node
// with the userspace datapath (datapath_type=netdev: no kernel module),
// like the kernel path's design:
//
//	br-phy     eth0 as a port, holding the underlay address (userspace
//	           tunnels route and resolve ARP through an OVS bridge)
//	mcbr-demo  the overlay bridge, its internal port holding the overlay
//	           address; IGMP snooping on; one VXLAN or GRE port per peer,
//	           each protected (no forwarding between peers: split
//	           horizon) and flooding IGMP reports to the peers
//
// OVS has no IGMP querier, so the snooping table learns from the hosts'
// unsolicited reports; unregistered groups are flooded. OVS reads eth0
// through AF_PACKET, so transmit checksum offload is turned off on the
// veth pair for the run (DESIGN.md), and everything is put back when the
// daemons stop.

// ovsVNI is the VXLAN network identifier of the OVS path.
const ovsVNI = 4242

// ovsSchemaPaths are where distributions install the database schema.
var ovsSchemaPaths = []string{
	"/usr/share/openvswitch/vswitch.ovsschema",
	"/usr/local/share/openvswitch/vswitch.ovsschema",
}

// ovsAvailable reports whether the OVS programs and schema are installed,
// and if not, why.
func ovsAvailable() (schema string, why string) {
	for _, prog := range []string{"ovs-vswitchd", "ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ethtool"} {
		if _, err := exec.LookPath(prog); err != nil {
			if prog == "ovs-vswitchd" {
				return "", "ovs-vswitchd is not installed"
			}
			return "", prog + " is not installed (ovs-vswitchd is)"
		}
	}
	for _, p := range ovsSchemaPaths {
		if _, err := os.Stat(p); err == nil {
			return p, ""
		}
	}
	return "", "the Open vSwitch database schema (vswitch.ovsschema) is not installed"
}

// startOVS sets up Open vSwitch on the nodes of run, with a tunnel to every
// other node of peers: fills g.daemons with the ovs-vswitchd processes (the
// source's first), g.aux with the ovsdb-servers, and g.restore with what
// puts the testbed back.
func (r *runner) startOVS(ctx context.Context, g *group, run, peers []*nsNode) error {
	mtu := 1450
	tunType := "vxlan"
	if g.encap == "gre" {
		mtu, tunType = 1462, "gre"
	}
	if g.src.underlay.Is6() {
		mtu -= 20 // the outer IPv6 header
	}
	for _, n := range run {
		// Registered first: the restore must run even if the setup
		// fails half way.
		g.restore = append(g.restore, func() error { return r.restoreNode(n) })
	}
	for _, n := range run {
		dir := filepath.Join(r.tmp, fmt.Sprintf("ovs-n%d", n.index))
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		db := filepath.Join(dir, "conf.db")
		sock := "unix:" + filepath.Join(dir, "db.sock")
		if out, err := exec.CommandContext(ctx, "ovsdb-tool", "create", db, r.ovsSchema).CombinedOutput(); err != nil {
			return fmt.Errorf("ovsdb-tool create: %w%s", err, indentTail(string(out)))
		}
		env := []string{"OVS_RUNDIR=" + dir, "OVS_LOGDIR=" + dir, "OVS_DBDIR=" + dir, "OVS_SYSCONFDIR=" + dir}
		dbd, err := startDaemon(n, []string{"ovsdb-server", db, "--remote=p" + sock, "--unixctl=" + filepath.Join(dir, "ovsdb.ctl"),
			"-vconsole:warn", "-vsyslog:off"}, env)
		if err != nil {
			return err
		}
		g.aux = append(g.aux, dbd)
		if err := waitFile(ctx, filepath.Join(dir, "db.sock"), dbd, 10*time.Second); err != nil {
			return err
		}
		if err := vsctl(ctx, sock, "--no-wait", "init"); err != nil {
			return err
		}
		vsd, err := startDaemon(n, []string{"ovs-vswitchd", sock, "--unixctl=" + filepath.Join(dir, "vswitchd.ctl"),
			"-vconsole:warn", "-vsyslog:off"}, env)
		if err != nil {
			return err
		}
		g.daemons = append(g.daemons, vsd)

		args := []string{
			"add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev", "--",
			"add-port", "br-phy", nodeLink, "--",
			"add-br", overlayDev, "--", "set", "bridge", overlayDev, "datapath_type=netdev", "mcast_snooping_enable=true", "--",
			"set", "interface", overlayDev, "mtu_request=" + strconv.Itoa(mtu),
		}
		for _, peer := range peers {
			if peer == n {
				continue
			}
			port := fmt.Sprintf("t%d", peer.index)
			args = append(args, "--",
				"add-port", overlayDev, port, "--",
				"set", "port", port, "protected=true", "other_config:mcast-snooping-flood-reports=true", "--",
				"set", "interface", port, "type="+tunType, "options:remote_ip="+peer.underlay.String())
			if tunType == "vxlan" {
				args = append(args, "options:key="+strconv.Itoa(ovsVNI))
			}
		}
		if err := vsctl(ctx, sock, args...); err != nil {
			return fmt.Errorf("in %s: %w", n.name, err)
		}
		if err := r.addressOVS(n, mtu); err != nil {
			return fmt.Errorf("in %s: %w", n.name, err)
		}
	}
	return nil
}

// addressOVS moves the underlay address from eth0 to br-phy, puts the
// overlay address on mcbr-demo, and turns off transmit checksum offload on
// both ends of the node's veth.
func (r *runner) addressOVS(n *nsNode, mtu int) error {
	if err := ethtoolTx(n.name, nodeLink, "off"); err != nil {
		return err
	}
	if err := ethtoolTx(r.tb.hub.name, fmt.Sprintf("p%d", n.index), "off"); err != nil {
		return err
	}
	eth, err := n.h.LinkByName(nodeLink)
	if err != nil {
		return err
	}
	under := underlayNetlinkAddr(n.underlay)
	if err := n.h.AddrDel(eth, under); err != nil {
		return fmt.Errorf("removing %s from %s: %w", n.underlay, nodeLink, err)
	}
	phy, err := n.h.LinkByName("br-phy")
	if err != nil {
		return err
	}
	if n.underlay.Is6() {
		if err := n.h.LinkSetDown(phy); err != nil {
			return err
		}
		if err := n.enableIPv6("br-phy"); err != nil {
			return err
		}
	}
	if err := n.h.AddrAdd(phy, under); err != nil {
		return fmt.Errorf("adding %s to br-phy: %w", n.underlay, err)
	}
	if err := n.h.LinkSetUp(phy); err != nil {
		return err
	}
	ovl, err := n.h.LinkByName(overlayDev)
	if err != nil {
		return err
	}
	if err := n.h.LinkSetMTU(ovl, mtu); err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.overlay.Addr().AsSlice(), Mask: net.CIDRMask(n.overlay.Bits(), 32)}}
	if err := n.h.AddrAdd(ovl, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", n.overlay, overlayDev, err)
	}
	return n.h.LinkSetUp(ovl)
}

// restoreNode puts node n back as newTestbed made it, once OVS has
// stopped: no OVS links, the underlay address on eth0, offloads on, not
// promiscuous.
func (r *runner) restoreNode(n *nsNode) error {
	var errs []error
	for _, name := range []string{overlayDev, "br-phy", "ovs-netdev"} {
		if l, err := n.h.LinkByName(name); err == nil {
			errs = append(errs, n.h.LinkDel(l))
		}
	}
	eth, err := n.h.LinkByName(nodeLink)
	if err != nil {
		return err
	}
	errs = append(errs,
		n.h.AddrReplace(eth, underlayNetlinkAddr(n.underlay)),
		n.h.SetPromiscOff(eth),
		n.h.LinkSetUp(eth),
		ethtoolTx(n.name, nodeLink, "on"),
		ethtoolTx(r.tb.hub.name, fmt.Sprintf("p%d", n.index), "on"))
	return errors.Join(errs...)
}

// vsctl runs ovs-vsctl against the database at db (which waits for
// ovs-vswitchd to apply the change, unless args say --no-wait).
func vsctl(ctx context.Context, db string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	argv := append([]string{"--db=" + db, "--timeout=20"}, args...)
	if out, err := exec.CommandContext(ctx, "ovs-vsctl", argv...).CombinedOutput(); err != nil {
		return fmt.Errorf("ovs-vsctl %s: %w%s", args[0], err, indentTail(string(out)))
	}
	return nil
}

// ethtoolTx sets transmit checksum offload of dev in namespace ns.
func ethtoolTx(ns, dev, onOff string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", onOff).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ethtool -K %s tx %s in %s: %w%s", dev, onOff, ns, err, indentTail(string(out)))
	}
	return nil
}

// waitFile waits until path exists, or d exits, or timeout passes.
func waitFile(ctx context.Context, path string, d *daemon, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if d.exited() {
			return d.exitError()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v%s", path, timeout, indentTail(d.out.String()))
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}
