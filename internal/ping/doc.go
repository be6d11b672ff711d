// Package ping is an end-to-end check of the overlay in the manner of
// omping, which needs no tool on the other side: every meshcast daemon runs
// a [Responder] on its own TAP, and [Run] probes the peers through the
// overlay, unicast to each peer's overlay address and multicast to the ping
// group ([DefaultGroup], port [DefaultPort]). `meshcast ping` is built on it.
//
// # Probing
//
// Each round, the prober sends one unicast probe to every target and a
// single multicast probe that every responder answers. Probes leave from
// the prober's overlay address on an ephemeral port, with multicast TTL
// (hop limit) 1 and loopback off, so the prober's own responder never
// hears its multicast probe (and replies from the prober's own address are
// ignored anyway). Replies are unicast, from the responder's overlay
// address and the ping port back to the probe's source. A reply is
// matched to its probe by the run's random nonce, the sequence number and
// the kind, and to its target by its source address; duplicates count
// once. Many probers, on one node or on many, can run at once.
//
// The overlay carries a multicast probe only to the peers that the
// prober's daemon knows as members of the ping group (to every peer while
// it knows none, under the default --unregistered flood). Right after
// daemons start, until IGMP (MLD for IPv6) has converged, some peers may
// not be known yet, and miss probes. Run does not wait for that; a caller
// that knows it, as `meshcast ping` does from the daemon's status, marks
// such targets [Target.NotJoined], and [Write] names those that lost
// multicast probes.
//
// [Write] prints the results like omping, and [OK] says whether every
// target answered both kinds.
//
// # IPv6
//
// A run probes in the family of its local address. Over IPv6 it probes the
// peers' IPv6 overlay addresses and the IPv6 ping group [DefaultGroup6]
// (ff15::4d43:7069:6e67: transient, site-local scope, "MCping" as its
// group ID), on the same port, with hop limit 1. An IPv6 ping group must
// have a scope wider than link-local ([ValidGroup6]): ff02::/16 goes to
// every peer whatever it joined. A node with an IPv6 overlay address runs
// one Responder for both families ([ListenDual]); its IPv6 sockets are
// bound to the TAP, which Linux needs to keep an IPv6 group joined on one
// interface from being heard on another. Everything else, the wire format
// included, is the same in both families.
//
// # Wire format
//
// Probes and replies are UDP datagrams of exactly 64 bytes. Integers are
// big-endian.
//
//	offset  size  field
//	     0     8  magic "MCPING1\x00"
//	     8     1  type: 1 request, 2 reply
//	     9     1  kind: 1 unicast, 2 multicast
//	    10     4  sequence number: the round, from 0
//	    14     8  nonce: random, one per run of a prober
//	    22     8  send timestamp: unix nanoseconds of the prober's clock
//	    30    34  padding: zero
//
// A reply is its request with the type set to 2; every other byte is
// echoed. Anything else is refused: another length, another magic, an
// unknown type or kind, or non-zero padding. A responder answers a request
// only on the socket of its kind (unicast probes on the overlay address,
// multicast probes on the group), and only to a unicast source with a
// non-zero port. A prober accepts a reply only if its nonce, sequence
// number, kind and timestamp are those of a probe it sent to the reply's
// source, from the ping port. It measures round trips with its own
// monotonic clock; the echoed timestamp only authenticates the reply.
//
// # Bounds
//
// A responder does one parse and at most one non-blocking send per
// datagram, and allocates nothing per datagram: a slow or vanished prober
// costs it dropped replies, counted, never a wait. Datagrams it does not
// answer are counted by [Responder.Stats].
package ping
