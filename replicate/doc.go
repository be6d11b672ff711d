// Package replicate is meshcast's forwarding engine: the peer table, MAC
// learning, split horizon, per-subscriber fan-out and the counters.
//
// # Pipeline
//
//	TAP --ReadBatch--> egress: classify the destination MAC
//	      broadcast, multicast -> Decider (every peer until IGMP snooping prunes)
//	      unicast              -> learned MAC -> that peer; unknown -> every peer
//	   -> Encap once per frame; each copy differs only in its outer destination
//	   -> one WriteBatch (sendmmsg) for all copies of the batch --> underlay
//
//	underlay --ReadBatch--> ingress: outer source must be a current peer
//	   -> Decap and validate -> learn the source MAC -> TAP
//	   never sent on to another peer: the mesh is full, so split horizon
//	   alone keeps it loop-free.
//
// One goroutine runs each direction. The peer set is an immutable snapshot
// behind an atomic pointer, replaced copy-on-write by SetPeers, so neither
// direction takes a lock for it. The MAC table is a map under a read-write
// lock that ingress writes only when an entry is new, moved or a second old.
//
// Per-packet problems are counted by reason (Drops), never logged.
package replicate
