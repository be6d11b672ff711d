package bench

import (
	"cmp"
	"slices"
	"strings"
)

// capabilities are what the machine and the binary offer.
type capabilities struct {
	Dataplane   bool   // `meshcast run --help` mentions --dataplane
	KernelVXLAN bool   // ... and --kernel-vxlan
	Gretap      bool   // the kernel can create gretap links
	OVS         bool   // Open vSwitch is installed
	OVSWhy      string // if not, why
}

// probeHelp reads the capabilities of a binary from its `run --help`.
func probeHelp(help string) capabilities {
	return capabilities{
		Dataplane:   strings.Contains(help, "--dataplane"),
		KernelVXLAN: strings.Contains(help, "--kernel-vxlan"),
	}
}

// planPaths decides which of the requested paths run with each
// encapsulation, and why the others do not.
func planPaths(paths, encaps []string, c capabilities) (run map[string][]string, skipped []Skip) {
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
			case e == "gre" && !c.Gretap:
				skip(p, e, "this kernel has no gretap (no GRE module); the kernel path is compared with VXLAN only")
				continue
			}
			run[e] = append(run[e], p)
		}
	}
	return run, skipped
}

// daemonArgs returns the arguments of `meshcast run` for a node on path.
func daemonArgs(path, encap, inventory, local, control, queryInterval, responseInterval string) []string {
	args := []string{"run", "--peers", inventory, "--local", local, "--encap", encap, "--control", control,
		"--igmp-query-interval", queryInterval, "--igmp-response-interval", responseInterval}
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
