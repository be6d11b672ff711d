package replicate

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/overlay"
)

// stateRig returns a snooping engine with the peers of infos (flood policy
// for unregistered groups) whose log goes to the returned buffer.
func stateRig(t testing.TB, infos []PeerInfo) (*snoopRig, *bytes.Buffer) {
	t.Helper()
	r := newSnoopRig(t, 0, UnregisteredFlood)
	var buf bytes.Buffer
	r.e.log = slog.New(slog.NewTextHandler(&buf, nil))
	r.e.faults = newFaultLog(r.e.log, FaultLogEvery)
	if _, _, err := r.e.SetPeers(infos); err != nil {
		t.Fatal(err)
	}
	return r, &buf
}

// learn has peer i send a frame from mac to the local host at now.
func (r *snoopRig) learn(t testing.TB, i int, mac net.HardwareAddr, now int64) {
	t.Helper()
	buf, n := frame(localMAC, mac, 10)
	if !r.fromPeer(i, buf, n, now) {
		t.Fatalf("frame from peer %d dropped: %v", i, r.e.Drops())
	}
}

// unicastTo sends a unicast frame from the TAP to dst at now and returns
// where its copies went.
func unicastTo(e *Engine, dst net.HardwareAddr, now int64) map[netip.Addr]int {
	w := &capture{keep: true}
	g := e.newEgress(8)
	g.now = now
	buf, n := frame(dst, localMAC, 10)
	g.forward(buf, n, w)
	g.flush(w)
	return w.to()
}

func only(p netip.Addr) map[netip.Addr]int { return map[netip.Addr]int{p: 1} }

func peerInfo(i int) PeerInfo {
	return PeerInfo{
		Underlay: underlay(i),
		Overlay:  netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 0, byte(i)}), 24),
		ID:       "peer" + string(rune('0'+i)),
	}
}

func jsonRoundTrip(t testing.TB, s EngineState) (EngineState, []byte) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out EngineState
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out, b
}

type counters struct {
	peers  []PeerStats
	drops  map[string]uint64
	cum    []uint64
	count  uint64
	sum    uint64
	flood  []FloodCount
	macLen int
}

func snapshot(r *snoopRig) counters {
	c := counters{peers: r.e.Peers(), drops: r.e.Drops(), flood: r.s.Flooded(), macLen: r.e.macs.len()}
	c.cum, c.count, c.sum = r.e.Fanout()
	return c
}

var (
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	macC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0c}
	macD = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0d}
)

// TestStateRoundTrip hands a busy engine's state through JSON to a new
// engine that has forwarded meanwhile: every counter adds up, and the MAC
// addresses are learned behind the same peers.
func TestStateRoundTrip(t *testing.T) {
	old, _ := stateRig(t, peerInfos(3)) // peers 198.18.0.2-4
	t0 := time.Now().Add(-time.Minute)
	ns := t0.UnixNano()
	old.learn(t, 3, remoteMAC, ns)
	old.learn(t, 4, macB, ns+int64(time.Second))
	g1 := netip.MustParseAddr("239.1.1.1")
	for range 2 {
		buf, n := mcastData(overlayLocal, g1)
		old.egress(buf, n, ns)
	}
	if got := unicastTo(old.e, remoteMAC, ns); !maps.Equal(got, only(underlay(3))) {
		t.Fatalf("old engine: unicast went to %v", got)
	}
	// Drops of the engine, of the decoder and of the snooping; a send
	// error.
	old.e.receive(underlay(99), encapFrom(old.codec, underlay(99), make([]byte, 60)), ns)
	old.e.newEgress(8).forward(make([]byte, BufSize), 10, &capture{})
	bad := v2Report(g1)
	bad[2] ^= 0xff
	rb, rn := igmpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 0x0e}, netip.MustParseAddr("198.19.0.2"), g1, bad)
	old.fromPeer(2, rb, rn, ns)
	g := old.e.newEgress(8)
	g.now = ns
	buf, n := frame(bcastMAC, localMAC, 10)
	w := &capture{refuse: map[netip.Addr]bool{underlay(4): true}}
	g.forward(buf, n, w)
	g.flush(w)

	was := snapshot(old)
	for _, name := range []string{"not_peer", "runt", "igmp_checksum", "send_error"} {
		if was.drops[name] == 0 {
			t.Fatalf("setup: no %s drop: %v", name, was.drops)
		}
	}
	if len(was.flood) == 0 || was.peers[2].TxErrors == 0 || was.peers[1].RxPackets == 0 {
		t.Fatalf("setup: %+v", was)
	}

	st, raw := jsonRoundTrip(t, old.e.Export(time.Now()))
	for _, key := range []string{`"macs"`, `"mac":"02:6d:c6:13:00:02"`, `"peer":"198.18.0.3"`, `"peers"`, `"198.18.0.4"`,
		`"tx_packets"`, `"tx_bytes"`, `"tx_errors"`, `"rx_packets"`, `"rx_bytes"`, `"last_seen"`, `"drops"`, `"not_peer"`,
		`"fanout"`, `"bounds"`, `"counts"`, `"sum"`, `"flooded"`, `"group":"239.1.1.1"`, `"drop_save"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("JSON lacks %s: %s", key, raw)
		}
	}

	// The new engine forwards before the state arrives.
	next, logBuf := stateRig(t, peerInfos(3))
	buf, n = mcastData(overlayLocal, g1)
	next.egress(buf, n, time.Now().UnixNano())
	next.e.receive(underlay(99), encapFrom(next.codec, underlay(99), make([]byte, 60)), time.Now().UnixNano())
	next.learn(t, 2, macC, time.Now().UnixNano())
	meanwhile := snapshot(next)

	if err := next.e.Import(st, time.Now()); err != nil {
		t.Fatal(err)
	}
	now := snapshot(next)
	for i, p := range now.peers {
		a, b := was.peers[i], meanwhile.peers[i]
		want := PeerStats{Underlay: p.Underlay, Overlay: p.Overlay, ID: p.ID,
			TxPackets: a.TxPackets + b.TxPackets, TxBytes: a.TxBytes + b.TxBytes,
			RxPackets: a.RxPackets + b.RxPackets, RxBytes: a.RxBytes + b.RxBytes,
			TxErrors: a.TxErrors + b.TxErrors, LastSeen: max(a.LastSeen, b.LastSeen)}
		if p != want {
			t.Errorf("peer %v: %+v, want %+v", p.Underlay, p, want)
		}
	}
	refused := next.s.Table.Refused()
	for name, v := range now.drops {
		want := was.drops[name] + meanwhile.drops[name]
		if _, ok := refused[name]; ok {
			want = meanwhile.drops[name] // the IGMP table's: package igmp's to hand over
		}
		if v != want {
			t.Errorf("drop %s = %d, want %d", name, v, want)
		}
	}
	for i := range now.cum {
		if now.cum[i] != was.cum[i]+meanwhile.cum[i] {
			t.Errorf("fanout cumulative %v, want %v + %v", now.cum, was.cum, meanwhile.cum)
			break
		}
	}
	if now.count != was.count+meanwhile.count || now.sum != was.sum+meanwhile.sum {
		t.Errorf("fanout count %d sum %d, want %d %d", now.count, now.sum, was.count+meanwhile.count, was.sum+meanwhile.sum)
	}
	if want := mergeFlood(was.flood, meanwhile.flood); !slices.Equal(now.flood, want) || now.flood[0].Frames != 3 {
		t.Errorf("flooded %+v, want %+v", now.flood, want)
	}

	// The learned addresses: each goes to its one peer.
	ts := time.Now().UnixNano()
	for mac, p := range map[string]netip.Addr{remoteMAC.String(): underlay(3), macB.String(): underlay(4), macC.String(): underlay(2)} {
		hw, _ := net.ParseMAC(mac)
		if got := unicastTo(next.e, hw, ts); !maps.Equal(got, only(p)) {
			t.Errorf("unicast to %s went to %v, want %v only", mac, got, p)
		}
	}
	if got := unicastTo(next.e, macD, ts); len(got) != 3 {
		t.Errorf("unicast to an unknown MAC went to %v, want every peer", got)
	}
	// Handed on again, the addresses keep their times.
	again := next.e.Export(time.Now())
	for _, m := range st.MACs {
		i := slices.IndexFunc(again.MACs, func(x MACState) bool { return x.MAC == m.MAC })
		if i < 0 || again.MACs[i].Peer != m.Peer || !again.MACs[i].LastSeen.Equal(m.LastSeen) {
			t.Errorf("MAC %+v exported again as %+v", m, again.MACs)
		}
	}
	if l := logBuf.String(); !strings.Contains(l, "peers=3 peers_absent=0 macs=3 ") {
		t.Errorf("log: %s", l)
	}
}

// TestImportSkipsAbsentPeers: only the peers of the new process get their
// counters and their MAC addresses back.
func TestImportSkipsAbsentPeers(t *testing.T) {
	old, _ := stateRig(t, peerInfos(3)) // 198.18.0.2-4
	ns := time.Now().UnixNano()
	old.learn(t, 2, macB, ns)
	old.learn(t, 3, remoteMAC, ns)
	old.learn(t, 4, macC, ns)
	st, _ := jsonRoundTrip(t, old.e.Export(time.Now()))

	next, logBuf := stateRig(t, []PeerInfo{peerInfo(2), peerInfo(5)})
	if err := next.e.Import(st, time.Now()); err != nil {
		t.Fatal(err)
	}
	ps := next.e.Peers()
	if ps[0].Underlay != underlay(2) || ps[0].RxPackets != 1 || ps[0].LastSeen != ns || ps[1].RxPackets != 0 || ps[1].LastSeen != 0 {
		t.Errorf("peers %+v", ps)
	}
	if n := next.e.macs.len(); n != 1 {
		t.Errorf("%d MACs learned, want 1", n)
	}
	now := time.Now().UnixNano()
	if got := unicastTo(next.e, macB, now); !maps.Equal(got, only(underlay(2))) {
		t.Errorf("unicast to the present peer's MAC went to %v", got)
	}
	for _, mac := range []net.HardwareAddr{remoteMAC, macC} {
		if got := unicastTo(next.e, mac, now); len(got) != 2 {
			t.Errorf("unicast to %v, an absent peer's MAC, went to %v, want every peer", mac, got)
		}
	}
	if l := logBuf.String(); !strings.Contains(l, "peers=1 peers_absent=2 macs=1 macs_peer_absent=2 macs_expired=0") {
		t.Errorf("log: %s", l)
	}
}

// TestImportSkipsExpiredMACs: an address older than the MAC age is not
// learned; one from the future ages from now.
func TestImportSkipsExpiredMACs(t *testing.T) {
	e, err := New(Config{Codec: overlay.NewGRE(0, false), LocalMAC: localMAC, MACAge: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	e.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	e.SetPeers(peerInfos(2))
	now := time.Now()
	peer := underlay(2).String()
	st := EngineState{MACs: []MACState{
		{MAC: "02:00:00:00:00:0a", Peer: peer, LastSeen: now.Add(-2 * time.Minute)},
		{MAC: "02:00:00:00:00:0b", Peer: peer, LastSeen: now.Add(-30 * time.Second)},
		{MAC: "02:00:00:00:00:0c", Peer: peer, LastSeen: now.Add(time.Hour)},
		{MAC: "02:00:00:00:00:0d", Peer: peer}, // zero time
	}}
	st, _ = jsonRoundTrip(t, st)
	if err := e.Import(st, now); err != nil {
		t.Fatal(err)
	}
	ns := now.UnixNano()
	at := func(mac string, d time.Duration) map[netip.Addr]int {
		hw, _ := net.ParseMAC(mac)
		return unicastTo(e, hw, ns+int64(d))
	}
	for _, c := range []struct {
		mac  string
		at   time.Duration
		peer bool // to peer 2 only, else flooded
	}{
		{"02:00:00:00:00:0a", 0, false},
		{"02:00:00:00:00:0d", 0, false},
		{"02:00:00:00:00:0b", 0, true},
		{"02:00:00:00:00:0b", 31 * time.Second, false},
		{"02:00:00:00:00:0c", 59 * time.Second, true},
		{"02:00:00:00:00:0c", 61 * time.Second, false},
	} {
		got := at(c.mac, c.at)
		if want := only(underlay(2)); c.peer != maps.Equal(got, want) || (!c.peer && len(got) != 2) {
			t.Errorf("%s at now+%v went to %v (learned: %v)", c.mac, c.at, got, c.peer)
		}
	}
	if l := logBuf.String(); !strings.Contains(l, "macs=2 macs_peer_absent=0 macs_expired=2") {
		t.Errorf("log: %s", l)
	}
}

// TestImportMACTableCap: the table's bound holds; the newest addresses
// fill it.
func TestImportMACTableCap(t *testing.T) {
	e, err := New(Config{Codec: overlay.NewGRE(0, false), LocalMAC: localMAC, MACTable: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.SetPeers(peerInfos(2))
	now := time.Now()
	// Learned meanwhile.
	in, n := frame(localMAC, macD, 10)
	e.receive(underlay(3), encapFrom(e.codec, underlay(3), in[overlay.Headroom:overlay.Headroom+n]), now.UnixNano())
	var st EngineState
	for i := range 5 {
		st.MACs = append(st.MACs, MACState{MAC: net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}.String(),
			Peer: underlay(2).String(), LastSeen: now.Add(-time.Duration(i) * time.Second)})
	}
	if err := e.Import(st, now); err != nil {
		t.Fatal(err)
	}
	if n := e.macs.len(); n != 3 {
		t.Fatalf("%d MACs, want the cap of 3", n)
	}
	for _, c := range []struct {
		mac  net.HardwareAddr
		peer netip.Addr
	}{{macD, underlay(3)}, {net.HardwareAddr{2, 0, 0, 0, 1, 0}, underlay(2)}, {net.HardwareAddr{2, 0, 0, 0, 1, 1}, underlay(2)}} {
		if p := e.macs.lookup(c.mac, now.UnixNano()); p == nil || p.Underlay != c.peer {
			t.Errorf("%v: %v, want %v", c.mac, p, c.peer)
		}
	}
}

// TestImportKeepsLaterLearning: an address the new engine learned after
// the state's time stays where it is; an older one moves.
func TestImportKeepsLaterLearning(t *testing.T) {
	r, _ := stateRig(t, peerInfos(2)) // 198.18.0.2-3
	now := time.Now()
	r.learn(t, 2, remoteMAC, now.UnixNano())
	r.learn(t, 2, macB, now.Add(-10*time.Second).UnixNano())
	st := EngineState{MACs: []MACState{
		{MAC: remoteMAC.String(), Peer: underlay(3).String(), LastSeen: now.Add(-time.Second)},
		{MAC: strings.ToUpper(macB.String()), Peer: underlay(3).String(), LastSeen: now.Add(-time.Second)},
		// The same address, older: the newer entry wins.
		{MAC: strings.ReplaceAll(macB.String(), ":", "-"), Peer: underlay(2).String(), LastSeen: now.Add(-5 * time.Second)},
	}}
	if err := r.e.Import(st, now); err != nil {
		t.Fatal(err)
	}
	if got := unicastTo(r.e, remoteMAC, now.UnixNano()); !maps.Equal(got, only(underlay(2))) {
		t.Errorf("address learned since went to %v, want 198.18.0.2", got)
	}
	if got := unicastTo(r.e, macB, now.UnixNano()); !maps.Equal(got, only(underlay(3))) {
		t.Errorf("address learned before went to %v, want 198.18.0.3", got)
	}
}

// TestImportCountersAdd: counters add to those counted meanwhile; a
// peer's last seen time is the later one, and not in the future.
func TestImportCountersAdd(t *testing.T) {
	r, _ := stateRig(t, peerInfos(2))
	now := time.Now()
	r.learn(t, 2, remoteMAC, now.UnixNano())
	r.e.drops[ReasonRunt].Add(4)
	before := r.e.Peers()
	st := EngineState{
		Peers: map[string]PeerCounters{
			"198.18.0.2": {TxPackets: 10, TxBytes: 1000, TxErrors: 1, RxPackets: 20, RxBytes: 2000, LastSeen: now.Add(-time.Hour)},
			"198.18.0.3": {TxPackets: 7, LastSeen: now.Add(time.Hour)},
		},
		Drops: map[string]uint64{"runt": 3, "not_peer": 2, "a_reason_of_another_version": 9, "igmp_checksum": 5},
	}
	for range 2 {
		if err := r.e.Import(st, now); err != nil {
			t.Fatal(err)
		}
	}
	ps := r.e.Peers()
	if p := ps[0]; p.TxPackets != 20 || p.TxBytes != 2000 || p.TxErrors != 2 || p.RxPackets != before[0].RxPackets+40 ||
		p.RxBytes != before[0].RxBytes+4000 || p.LastSeen != now.UnixNano() {
		t.Errorf("peer 2: %+v", p)
	}
	if p := ps[1]; p.TxPackets != 14 || p.LastSeen != now.UnixNano() {
		t.Errorf("peer 3: %+v (last seen in the future not clamped to now?)", p)
	}
	d := r.e.Drops()
	if d["runt"] != 10 || d["not_peer"] != 4 || d["igmp_checksum"] != 10 {
		t.Errorf("drops %v", d)
	}
	if _, ok := d["a_reason_of_another_version"]; ok {
		t.Errorf("unknown reason imported")
	}
}

// TestImportFanoutOtherBounds: a histogram with other bounds lands in the
// first bucket that holds each of its buckets.
func TestImportFanoutOtherBounds(t *testing.T) {
	r, _ := stateRig(t, peerInfos(1))
	st := EngineState{Fanout: FanoutState{Bounds: []float64{0, 1, 3, 10}, Counts: []uint64{1, 2, 3, 4, 5}, Sum: 100}}
	if err := r.e.Import(st, time.Now()); err != nil {
		t.Fatal(err)
	}
	cum, count, sum := r.e.Fanout()
	// bounds 0 1 2 4 8 16 ...: 0 -> 0, 1 -> 1, 3 -> 4, 10 -> 16, beyond -> beyond.
	want := []uint64{1, 3, 3, 6, 6, 10, 10, 10, 10, 10, 10, 10}
	if !slices.Equal(cum, want) || count != 15 || sum != 100 {
		t.Errorf("cumulative %v count %d sum %d, want %v 15 100", cum, count, sum, want)
	}
}

// TestImportRejectsMalformed: a malformed entry is an error naming it, and
// nothing is imported.
func TestImportRejectsMalformed(t *testing.T) {
	now := time.Now()
	valid := func() EngineState {
		return EngineState{
			MACs:    []MACState{{MAC: "02:00:00:00:00:01", Peer: "198.18.0.2", LastSeen: now}},
			Peers:   map[string]PeerCounters{"198.18.0.2": {TxPackets: 1}},
			Drops:   map[string]uint64{"runt": 1},
			Fanout:  FanoutState{Bounds: []float64{0, 1}, Counts: []uint64{1, 1, 1}, Sum: 3},
			Flooded: []FloodState{{Group: "239.1.1.1", Frames: 1, Copies: 2}},
		}
	}
	for _, c := range []struct {
		name   string
		change func(*EngineState)
		names  string
	}{
		{"short MAC", func(s *EngineState) { s.MACs[0].MAC = "02:00:00:00:00" }, `MAC entry 0 ("02:00:00:00:00")`},
		{"EUI-64", func(s *EngineState) { s.MACs[0].MAC = "02:00:00:00:00:00:00:01" }, `MAC entry 0 ("02:00:00:00:00:00:00:01"): 8 bytes`},
		{"multicast MAC", func(s *EngineState) { s.MACs[0].MAC = "01:00:5e:00:00:01" }, `MAC entry 0 ("01:00:5e:00:00:01"): a multicast`},
		{"MAC's peer", func(s *EngineState) { s.MACs[0].Peer = "198.18.0.300" }, `MAC entry 0 ("02:00:00:00:00:01"): peer "198.18.0.300"`},
		{"empty peer", func(s *EngineState) { s.MACs[0].Peer = "" }, `peer ""`},
		{"peer key", func(s *EngineState) { s.Peers["peer2"] = PeerCounters{} }, `peer "peer2"`},
		{"flood group", func(s *EngineState) { s.Flooded[0].Group = "239.1.1" }, `flooded entry 0 ("239.1.1")`},
		{"unicast group", func(s *EngineState) { s.Flooded[0].Group = "10.0.0.1" }, `flooded entry 0 ("10.0.0.1"): not an IPv4 or IPv6 multicast group`},
		{"fanout counts", func(s *EngineState) { s.Fanout.Counts = s.Fanout.Counts[:2] }, `fanout: 2 counts for 2 bounds`},
		{"fanout bounds", func(s *EngineState) { s.Fanout.Bounds = []float64{1, 1} }, `fanout: bound 1`},
		{"fanout sum alone", func(s *EngineState) { s.Fanout = FanoutState{Sum: 1} }, `fanout: 0 counts`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, _ := stateRig(t, peerInfos(1))
			fresh, _ := json.Marshal(r.e.Export(now))
			s := valid()
			c.change(&s)
			err := r.e.Import(s, now)
			if err == nil || !strings.Contains(err.Error(), c.names) {
				t.Fatalf("error %v, want one naming %s", err, c.names)
			}
			if after, _ := json.Marshal(r.e.Export(now)); !bytes.Equal(after, fresh) {
				t.Errorf("a refused state changed the engine:\n%s\n%s", fresh, after)
			}
		})
	}
	r, _ := stateRig(t, peerInfos(1))
	if err := r.e.Import(valid(), now); err != nil {
		t.Fatalf("valid state: %v", err)
	}
}

// TestExportDropNames: the state holds every drop counter Engine.Drops
// reports but those of the IGMP table.
func TestExportDropNames(t *testing.T) {
	r, _ := stateRig(t, peerInfos(1))
	exported := r.e.Export(time.Now()).Drops
	refused := r.s.Table.Refused()
	for name := range r.e.Drops() {
		_, inState := exported[name]
		_, inTable := refused[name]
		if inState == inTable {
			t.Errorf("drop %s: in the state %v, in the IGMP table %v", name, inState, inTable)
		}
	}
	if len(exported)+len(refused) != len(r.e.Drops()) {
		t.Errorf("%d exported + %d refused names, Drops has %d", len(exported), len(refused), len(r.e.Drops()))
	}
	plain := newTestEngine(t, overlay.NewGRE(0, false), 1)
	if got, want := slices.Sorted(maps.Keys(plain.Export(time.Now()).Drops)), slices.Sorted(maps.Keys(plain.Drops())); !slices.Equal(got, want) {
		t.Errorf("without snooping: exported %v, Drops %v", got, want)
	}
}

// TestImportFloodedCap: handed-over flood counts share the bound of
// FloodGroups groups with those counted since.
func TestImportFloodedCap(t *testing.T) {
	r, _ := stateRig(t, peerInfos(2))
	var st EngineState
	for i := range FloodGroups {
		st.Flooded = append(st.Flooded, FloodState{Group: netip.AddrFrom4([4]byte{239, 3, byte(i >> 8), byte(i)}).String(), Frames: 1, Copies: 2, DropSave: 2})
	}
	st.Flooded = append(st.Flooded, FloodState{Frames: 5, Copies: 10, DropSave: 10}) // FloodOther
	if err := r.e.Import(st, time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	for _, g := range []string{"239.1.1.1", "239.3.0.7"} {
		buf, n := mcastData(overlayLocal, netip.MustParseAddr(g))
		r.egress(buf, n, now)
	}
	got := r.s.Flooded()
	if len(got) != FloodGroups+1 {
		t.Fatalf("%d entries, want %d", len(got), FloodGroups+1)
	}
	if last := got[len(got)-1]; last != (FloodCount{Group: FloodOther, Frames: 6, Copies: 12, DropSave: 12}) {
		t.Errorf("FloodOther %+v", last)
	}
	if i := slices.IndexFunc(got, func(c FloodCount) bool { return c.Group == netip.MustParseAddr("239.3.0.7") }); i < 0 || got[i].Frames != 2 {
		t.Errorf("239.3.0.7 not added to: %+v", got)
	}
	// Without a Snooping the flood counts are left out.
	plain := newTestEngine(t, overlay.NewGRE(0, false), 1)
	plain.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := plain.Import(st, time.Now()); err != nil {
		t.Fatal(err)
	}
	if f := plain.Export(time.Now()).Flooded; f != nil {
		t.Errorf("engine without snooping exports flooded %v", f)
	}
}

// TestImportWhileForwarding imports while both directions forward (run it
// with -race): nothing counted is lost.
func TestImportWhileForwarding(t *testing.T) {
	r, _ := stateRig(t, peerInfos(3))
	st := EngineState{
		Peers:   map[string]PeerCounters{"198.18.0.2": {TxPackets: 1000, RxPackets: 1000}},
		Flooded: []FloodState{{Group: "239.9.9.9", Frames: 1000, Copies: 3000}},
		MACs:    []MACState{{MAC: macB.String(), Peer: "198.18.0.3", LastSeen: time.Now()}},
	}
	const frames = 500
	var wg sync.WaitGroup
	wg.Go(func() {
		g := r.e.newEgress(64)
		w := &capture{}
		for i := range frames {
			g.now = time.Now().UnixNano()
			buf, n := mcastData(overlayLocal, netip.AddrFrom4([4]byte{239, 9, 9, byte(i % 16)}))
			g.forward(buf, n, w)
			buf, n = frame(macB, localMAC, 10)
			g.forward(buf, n, w)
			g.flush(w)
		}
	})
	wg.Go(func() {
		for i := range frames {
			buf, n := frame(localMAC, net.HardwareAddr{2, 0, 0, 0, 2, byte(i)}, 10)
			r.fromPeer(2, buf, n, time.Now().UnixNano())
		}
	})
	if err := r.e.Import(st, time.Now()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	p := r.e.Peers()[0]
	if p.RxPackets != 1000+frames || p.TxPackets < 1000+frames {
		t.Errorf("peer 2: %+v", p)
	}
	var floodFrames uint64
	for _, f := range r.s.Flooded() {
		floodFrames += f.Frames
	}
	if floodFrames != 1000+frames {
		t.Errorf("%d flooded frames, want %d", floodFrames, 1000+frames)
	}
}

// FuzzEngineImport: no state, however malformed, makes Import panic or
// break the engine's bounds; a refused state changes nothing; what Export
// returns, Import takes.
func FuzzEngineImport(f *testing.F) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	{
		r, _ := stateRig(f, peerInfos(3))
		ns := now.Add(-time.Second).UnixNano()
		r.learn(f, 2, remoteMAC, ns)
		r.learn(f, 3, macB, ns)
		buf, n := mcastData(overlayLocal, netip.MustParseAddr("239.1.1.1"))
		r.egress(buf, n, ns)
		b, _ := json.Marshal(r.e.Export(now))
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"macs":[{"mac":"02:00:00:00:00:01","peer":"198.18.0.2","last_seen":"2030-01-02T03:04:00Z"},{"mac":"02:00:00:00:00:02","peer":"198.18.0.2","last_seen":"9999-12-31T23:59:59Z"},{"mac":"02:00:00:00:00:03","peer":"198.18.0.3","last_seen":"0001-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"peers":{"198.18.0.2":{"tx_packets":18446744073709551615,"last_seen":"1600-01-01T00:00:00Z"},"::ffff:198.18.0.3":{"rx_bytes":1}},"drops":{"runt":1,"":2}}`))
	f.Add([]byte(`{"fanout":{"bounds":[-1,0.5,1e300],"counts":[1,2,3,4],"sum":5},"flooded":[{"group":"","frames":1},{"group":"239.1.1.1","frames":2},{"group":"239.1.1.1","copies":2}]}`))
	const macCap = 4
	age := time.Minute
	newEngine := func(t *testing.T) (*Engine, *Snooping) {
		s := &Snooping{Table: igmp.NewTable(igmp.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})}
		e, err := New(Config{Codec: overlay.NewGRE(0, false), LocalMAC: localMAC, MACTable: macCap, MACAge: age, Snoop: s,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.SetPeers(peerInfos(2)); err != nil {
			t.Fatal(err)
		}
		return e, s
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var st EngineState
		if json.Unmarshal(data, &st) != nil {
			return
		}
		e, s := newEngine(t)
		fresh, _ := json.Marshal(e.Export(now))
		err := e.Import(st, now)
		if err != nil {
			if after, _ := json.Marshal(e.Export(now)); !bytes.Equal(after, fresh) {
				t.Fatalf("refused state (%v) changed the engine", err)
			}
			return
		}
		if n := e.macs.len(); n > macCap {
			t.Fatalf("%d MACs, cap %d", n, macCap)
		}
		for k, m := range e.macs.m {
			if m.peer == nil || m.peer.removed.Load() || isMulticastMAC(k[:]) || k == e.localMAC {
				t.Fatalf("MAC %x behind %v", k, m.peer)
			}
			if d := now.UnixNano() - m.seen; d < 0 || d > int64(age) {
				t.Fatalf("MAC %x seen %v before now", k, time.Duration(d))
			}
		}
		if n := len(s.Flooded()); n > FloodGroups+1 {
			t.Fatalf("%d flood entries", n)
		}
		for _, p := range e.Peers() {
			if p.LastSeen < 0 || p.LastSeen > now.UnixNano() {
				t.Fatalf("peer %v last seen %d", p.Underlay, p.LastSeen)
			}
		}
		out, _ := jsonRoundTrip(t, e.Export(now))
		e2, _ := newEngine(t)
		if err := e2.Import(out, now); err != nil {
			t.Fatalf("exported state refused: %v", err)
		}
	})
}
