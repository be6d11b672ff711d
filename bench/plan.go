package bench

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// capabilities are what the machine and the binary offer.
type capabilities struct {
	Dataplane      bool   // `meshcast run --help` mentions --dataplane
	KernelVXLAN    bool   // ... and --kernel-vxlan
	UnderlayFamily bool   // ... and --underlay-family: it tunnels over IPv6
	Gretap         bool   // the kernel can create gretap links
	IP6Gretap      bool   // the kernel can create ip6gretap links
	OVS            bool   // Open vSwitch is installed
	OVSWhy         string // if not, why
}

// probeHelp reads the capabilities of a binary from its `run --help`.
func probeHelp(help string) capabilities {
	return capabilities{
		Dataplane:      strings.Contains(help, "--dataplane"),
		KernelVXLAN:    strings.Contains(help, "--kernel-vxlan"),
		UnderlayFamily: strings.Contains(help, "--underlay-family"),
	}
}

// planPaths decides which of the requested paths run with each
// encapsulation over the underlay family (Underlay4 or Underlay6), and why
// the others do not.
func planPaths(paths, encaps []string, underlay string, c capabilities) (run map[string][]string, skipped []Skip) {
	run = map[string][]string{}
	skip := func(path, encap, reason string) {
		s := Skip{Path: path, Encap: encap, Reason: reason}
		if !slices.Contains(skipped, s) {
			skipped = append(skipped, s)
		}
	}
	for _, p := range AllPaths {
		if !slices.Contains(paths, p) {
			continue
		}
		for _, e := range encaps {
			switch {
			case p == PathUserspace:
			case p == PathOVS && !c.OVS:
				skip(p, "", cmp.Or(c.OVSWhy, "ovs-vswitchd is not installed"))
				continue
			case p == PathOVS:
			case !c.Dataplane:
				skip(p, "", "the binary's `run --help` lacks --dataplane: the kernel dataplane has not landed in this build; running the userspace path only")
				continue
			case !c.KernelVXLAN:
				skip(p, "", "the binary's `run --help` lacks --kernel-vxlan")
				continue
			case e == "gre" && p == PathKernelHRE:
				skip(p, e, "head-end replication is a VXLAN mode")
				continue
			case e == "gre" && underlay == Underlay6 && !c.IP6Gretap:
				skip(p, e, "over the IPv6 underlay: this kernel has no ip6gretap (no ip6_gre module); the kernel path is compared with VXLAN only")
				continue
			case e == "gre" && underlay != Underlay6 && !c.Gretap:
				skip(p, e, "this kernel has no gretap (no GRE module); the kernel path is compared with VXLAN only")
				continue
			}
			run[e] = append(run[e], p)
		}
	}
	return run, skipped
}

// underlayAddr returns node K's underlay address in family (Underlay4 or
// Underlay6): 198.18.0.K or fd00:198:18::K.
func underlayAddr(family string, k int) netip.Addr {
	if family == Underlay6 {
		return netip.AddrFrom16([16]byte{0: 0xfd, 2: 0x01, 3: 0x98, 5: 0x18, 15: byte(k)})
	}
	return netip.AddrFrom4([4]byte{198, 18, 0, byte(k)})
}

// daemonArgs returns the arguments of `meshcast run` for a node on path
// whose underlay address is local; over an IPv6 one they say
// --underlay-family 6.
func daemonArgs(path, encap, inventory string, local netip.Addr, control, queryInterval, responseInterval string) []string {
	args := []string{"run", "--peers", inventory, "--local", local.String(), "--encap", encap, "--control", control,
		"--igmp-query-interval", queryInterval, "--igmp-response-interval", responseInterval}
	if local.Is6() {
		args = append(args, "--underlay-family", Underlay6)
	}
	switch path {
	case PathKernelPair, PathKernelHRE:
		args = append(args, "--dataplane", "kernel")
		if encap == "vxlan" {
			mode := "pair"
			if path == PathKernelHRE {
				mode = "hre"
			}
			args = append(args, "--kernel-vxlan", mode)
		}
	}
	return args
}
