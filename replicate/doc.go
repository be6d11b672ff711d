// Package replicate is meshcast's forwarding engine: the peer table, MAC
// learning, split horizon, per-subscriber fan-out and the counters.
//
// # Pipeline
//
//	TAP --ReadBatch--> egress: classify the destination MAC
//	      broadcast            -> every peer
//	      multicast            -> Snooping: member and router peers of the group
//	                              (every peer without snooping, or when unregistered
//	                              and flooded)
//	      unicast              -> learned MAC -> that peer; unknown -> every peer
//	   -> Encap once per frame; each copy differs only in its outer destination
//	   -> the copies queue up and go to WriteBatch at the end of the batch, or
//	      earlier when the queue (four batches of copies) is full; the underlay
//	      sends them in sendmmsg calls of up to its batch size --> underlay
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
// Per-packet problems are counted by reason (Drops) and never logged one by
// one. A drop that means a local fault (a copy the kernel refused to send,
// a frame the TAP refused) is also logged as a warning with its errno, at
// most once per reason per FaultLogEvery with the count since the last
// line. IGMP membership changes are logged by the snooping table.
package replicate
