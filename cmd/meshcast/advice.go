package main

import (
	"errors"

	"github.com/meshcast/meshcast/discovery"
	"github.com/meshcast/meshcast/overlay"
)

// flagAdvice returns what the user of `meshcast run` can do about err, in
// terms of its flags, for the typed errors of packages discovery and
// overlay, whose messages say what is wrong but name no flag. It returns ""
// for any other error.
func flagAdvice(err error) string {
	if err == nil {
		return ""
	}
	if le, ok := errors.AsType[*discovery.LocalError](err); ok {
		return localAdvice(le)
	}
	if _, ok := errors.AsType[*overlay.UnderlayNotAssignedError](err); ok {
		return "pass --local with one of this host's addresses, or fix the inventory"
	}
	if _, ok := errors.AsType[*overlay.PairVNIError](err); ok {
		return "use --kernel-vxlan hre, or another --vni"
	}
	switch {
	case errors.Is(err, discovery.ErrOpenInventory):
		return "check the --peers path"
	case errors.Is(err, overlay.ErrNoBridge):
		return "the running meshcast has no kernel bridge of that name to hand over: take over with its --tap and --dataplane, or start without --takeover"
	case errors.Is(err, overlay.ErrBridgeMismatch):
		return "the running meshcast built its bridge with other settings: take over with the same --encap, --vni, --kernel-vxlan, --vxlan-port, --gre-key and --local, or stop it and start without --takeover"
	case errors.Is(err, overlay.ErrNoGretap):
		return "use --encap vxlan, or the userspace dataplane"
	case errors.Is(err, overlay.ErrInterfaceExists):
		return "another meshcast may be running for this community, or pass --tap with another name"
	case errors.Is(err, overlay.ErrTAPBusy):
		return "stop that process, or pass --tap with another name"
	}
	return ""
}

// localAdvice is flagAdvice for discovery.FindLocal's error.
func localAdvice(le *discovery.LocalError) string {
	ambiguous := errors.Is(le, discovery.ErrLocalAmbiguous)
	switch {
	case ambiguous && le.Local.IsValid() && le.ManyCommunities():
		return "pass --community to choose one"
	case ambiguous && le.Local.IsValid():
		return "keep one line per instance in the inventory"
	case ambiguous && le.ManyCommunities():
		return "pass --local or --community to choose one"
	case ambiguous:
		return "pass --local to choose one"
	case le.Local.IsValid():
		return "pass --local with this node's underlay address, or add its line to the inventory"
	case le.NoHostAddrs:
		return "pass --local with this node's underlay address"
	default:
		return "pass --local with this node's underlay address, or fix the inventory"
	}
}

// offloadReason returns the reason offload name is off as meshcast shows
// it: the library's overlay.OffloadOffByConfig becomes the flag that did
// it (--offload off turns every offload off, --egress socket the AF_PACKET
// egress ones; the receive ring is on with --ingress packet), and any other reason is
// returned unchanged.
func offloadReason(name, reason string, cfg *runConfig) string {
	if reason != overlay.OffloadOffByConfig {
		return reason
	}
	if cfg != nil && !cfg.noOffload {
		switch {
		case (name == overlay.OffloadPacketTx || name == overlay.OffloadPacketGSO) && cfg.socketEgress:
			return "turned off by --egress socket"
		case name == overlay.OffloadPacketRx:
			return "off unless --ingress packet"
		}
	}
	return "turned off by --offload off"
}

// withAdvice appends err's flag advice, if any, to msg.
func withAdvice(msg string, err error) string {
	if a := flagAdvice(err); a != "" {
		return msg + ": " + a
	}
	return msg
}
