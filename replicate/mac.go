package replicate

import (
	"sync"
	"time"
)

type macKey [6]byte

type macEntry struct {
	peer *Peer
	seen int64 // unix nanoseconds
}

// macTable maps the MAC addresses learned from peers to those peers. It is
// bounded: when full, expired entries are swept, and a new address that
// still finds no room is not learned (its frames are flooded instead).
type macTable struct {
	mu      sync.RWMutex
	m       map[macKey]macEntry
	max     int
	age     int64
	refresh int64
}

func newMACTable(max int, age time.Duration) *macTable {
	return &macTable{m: make(map[macKey]macEntry), max: max, age: int64(age), refresh: int64(time.Second)}
}

// lookup returns the live peer behind mac, or nil.
func (t *macTable) lookup(mac []byte, now int64) *Peer {
	t.mu.RLock()
	e, ok := t.m[macKey(mac)]
	t.mu.RUnlock()
	if !ok || now-e.seen > t.age || e.peer.removed.Load() {
		return nil
	}
	return e.peer
}

// learn records that mac sits behind p. It reports false when the table is
// full and the address could not be added.
func (t *macTable) learn(mac []byte, p *Peer, now int64) bool {
	k := macKey(mac)
	t.mu.RLock()
	e, ok := t.m[k]
	t.mu.RUnlock()
	if ok && e.peer == p && now-e.seen < t.refresh {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[k]; !ok && len(t.m) >= t.max {
		t.sweepLocked(now)
		if len(t.m) >= t.max {
			return false
		}
	}
	if p.removed.Load() {
		return true
	}
	t.m[k] = macEntry{peer: p, seen: now}
	return true
}

// sweep removes expired entries and those of removed peers.
func (t *macTable) sweep(now int64) {
	t.mu.Lock()
	t.sweepLocked(now)
	t.mu.Unlock()
}

func (t *macTable) sweepLocked(now int64) {
	for k, e := range t.m {
		if now-e.seen > t.age || e.peer.removed.Load() {
			delete(t.m, k)
		}
	}
}

func (t *macTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}
