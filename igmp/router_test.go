package igmp

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/inet"
)

// pimMsg builds a PIMv2 message of type typ with the given options (type,
// value pairs), its checksum filled in.
func pimMsg(typ uint8, opts ...[]byte) []byte {
	b := []byte{2<<4 | typ, 0, 0, 0}
	for _, o := range opts {
		b = append(b, o...)
	}
	binary.BigEndian.PutUint16(b[2:], inet.Checksum(b))
	return b
}

// pimOpt is one Hello option.
func pimOpt(typ uint16, val ...byte) []byte {
	o := binary.BigEndian.AppendUint16(nil, typ)
	o = binary.BigEndian.AppendUint16(o, uint16(len(val)))
	return append(o, val...)
}

func holdOpt(h uint16) []byte { return pimOpt(1, byte(h>>8), byte(h)) }

// ipFrame wraps payload in an Ethernet/IPv4 frame of protocol proto from
// src to dst, as BuildQueryFrame lays it out.
func ipFrame(proto uint8, src, dst netip.Addr, payload []byte) []byte {
	buf := make([]byte, FrameOverhead+len(payload))
	n := BuildQueryFrame(buf, testMAC, src, dst, payload)
	ip := inet.IPv4(buf[ethHeaderLen:])
	ip[inet.IPv4Proto] = proto
	ip.SetChecksum()
	return buf[:n]
}

func TestParsePIM(t *testing.T) {
	corrupt := func(b []byte, i int) []byte { b = slices.Clone(b); b[i] ^= 0x40; return b }
	register := pimMsg(PIMRegister, make([]byte, 4), []byte{0x45, 0, 0, 20})
	registerHeaderSum := slices.Clone(register)
	binary.BigEndian.PutUint16(registerHeaderSum[2:], 0)
	binary.BigEndian.PutUint16(registerHeaderSum[2:], inet.Checksum(registerHeaderSum[:8]))
	cases := []struct {
		name string
		b    []byte
		typ  uint8
		hold time.Duration
		ok   bool
	}{
		{"hello holdtime 105", pimMsg(PIMHello, holdOpt(105)), PIMHello, 105 * time.Second, true},
		{"hello holdtime 3 among options", pimMsg(PIMHello, pimOpt(20, 1, 2, 3, 4), holdOpt(3), pimOpt(19, 0, 0, 0, 1)), PIMHello, 3 * time.Second, true},
		{"hello without holdtime", pimMsg(PIMHello, pimOpt(20, 1, 2, 3, 4)), PIMHello, PIMDefaultHoldtime, true},
		{"hello without options", pimMsg(PIMHello), PIMHello, PIMDefaultHoldtime, true},
		{"hello goodbye", pimMsg(PIMHello, holdOpt(0)), PIMHello, 0, true},
		{"hello forever", pimMsg(PIMHello, holdOpt(0xffff)), PIMHello, HoldForever, true},
		{"join/prune", pimMsg(3, make([]byte, 8)), 3, 0, true},
		{"assert", pimMsg(5, make([]byte, 20)), 5, 0, true},
		{"register, checksum over the whole", register, PIMRegister, 0, true},
		{"register, checksum over the header", registerHeaderSum, PIMRegister, 0, true},
		{"empty", nil, 0, 0, false},
		{"3 bytes", pimMsg(PIMHello)[:3], 0, 0, false},
		{"version 1", func() []byte {
			b := pimMsg(PIMHello, holdOpt(105))
			b[0] = 1<<4 | PIMHello
			binary.BigEndian.PutUint16(b[2:], 0)
			binary.BigEndian.PutUint16(b[2:], inet.Checksum(b))
			return b
		}(), 0, 0, false},
		{"bad checksum", corrupt(pimMsg(PIMHello, holdOpt(105)), 9), 0, 0, false},
		{"bad checksum of a join", corrupt(pimMsg(3, make([]byte, 8)), 6), 0, 0, false},
		{"option past the end", pimMsg(PIMHello, pimOpt(20, 1, 2, 3, 4)[:6]), 0, 0, false},
		{"option header cut", pimMsg(PIMHello, []byte{0, 1, 0}), 0, 0, false},
		{"holdtime of 3 bytes", pimMsg(PIMHello, pimOpt(1, 0, 0, 5)), 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			typ, hold, ok := ParsePIM(tc.b)
			if ok != tc.ok || (ok && (typ != tc.typ || hold != tc.hold)) {
				t.Errorf("ParsePIM(% x) = %d, %v, %v; want %d, %v, %v", tc.b, typ, hold, ok, tc.typ, tc.hold, tc.ok)
			}
		})
	}
}

func TestPutPIMHello(t *testing.T) {
	for _, h := range []time.Duration{0, 3 * time.Second, 105 * time.Second, HoldForever} {
		b := make([]byte, 10)
		n := PutPIMHello(b, h)
		typ, hold, ok := ParsePIM(b[:n])
		if !ok || typ != PIMHello || hold != h {
			t.Errorf("PutPIMHello(%v) parses as %d, %v, %v", h, typ, hold, ok)
		}
	}
}

func TestParseMRD(t *testing.T) {
	adv := make([]byte, 8)
	PutMRDAdvertisement(adv, 5*time.Second, 125*time.Second, 2)
	zero := make([]byte, 8)
	PutMRDAdvertisement(zero, 0, 125*time.Second, 2)
	short := func(typ uint8) []byte {
		b := []byte{typ, 0, 0, 0}
		setChecksum(b)
		return b
	}
	bad := slices.Clone(adv)
	bad[5] ^= 1
	cases := []struct {
		name string
		b    []byte
		typ  uint8
		hold time.Duration
		r    Reason
	}{
		{"advertisement", adv, TypeMRDAdvertisement, 15 * time.Second, OK},
		{"advertisement with interval 0", zero, TypeMRDAdvertisement, 3 * MRDDefaultInterval, OK},
		{"solicitation", short(TypeMRDSolicitation), TypeMRDSolicitation, 0, OK},
		{"termination", short(TypeMRDTermination), TypeMRDTermination, 0, OK},
		{"advertisement of 4 bytes", short(TypeMRDAdvertisement), 0, 0, Truncated},
		{"termination of 3 bytes", short(TypeMRDTermination)[:3], 0, 0, Truncated},
		{"bad checksum", bad, 0, 0, BadChecksum},
		{"a query", make([]byte, 8), 0, 0, UnknownType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			typ, hold, r := ParseMRD(tc.b)
			if r != tc.r || typ != tc.typ || hold != tc.hold {
				t.Errorf("ParseMRD(% x) = %#x, %v, %v; want %#x, %v, %v", tc.b, typ, hold, r, tc.typ, tc.hold, tc.r)
			}
		})
	}
	if _, r := Parse(adv); r != UnknownType {
		t.Errorf("Parse(MRD advertisement) = %v, want UnknownType: MRD is ParseMRD's", r)
	}
}

func TestPIMFromFrameAndSetSource(t *testing.T) {
	src := mustAddr("198.19.0.3")
	hello := pimMsg(PIMHello, holdOpt(105))
	f := ipFrame(ProtoPIM, src, AllPIMRouters, hello)
	gs, gd, b, ok := PIMFromFrame(f)
	if !ok || gs != src || gd != AllPIMRouters || !slices.Equal(b, hello) {
		t.Fatalf("PIMFromFrame = %v %v % x %v", gs, gd, b, ok)
	}
	if _, _, _, ok := FromFrame(f); ok {
		t.Error("FromFrame took a PIM frame for IGMP")
	}
	if _, _, _, ok := PIMFromFrame(ipFrame(ProtoIGMP, src, AllHosts, make([]byte, 8))); ok {
		t.Error("PIMFromFrame took an IGMP frame")
	}
	bad := slices.Clone(f)
	bad[ethHeaderLen+inet.IPv4TTL] ^= 1 // header checksum no longer verifies
	if _, _, _, ok := PIMFromFrame(bad); ok {
		t.Error("PIMFromFrame took a header whose checksum fails")
	}

	// SetSource rewrites the source and keeps the header valid.
	q := make([]byte, QueryV3HeaderLen)
	PutQueryV3(q, netip.Addr{}, time.Second, false, 2, 125*time.Second, nil)
	qf := ipFrame(ProtoIGMP, netip.IPv4Unspecified(), AllRouters, q)
	SetSource(qf, mustAddr("198.19.0.2"))
	gs, gd, b, ok = FromFrame(qf)
	if !ok || gs != mustAddr("198.19.0.2") || gd != AllRouters || !slices.Equal(b, q) {
		t.Fatalf("after SetSource: FromFrame = %v %v % x %v", gs, gd, b, ok)
	}
}

func TestRouterSourceString(t *testing.T) {
	for s, want := range map[RouterSource]string{RouterQuery: "query", RouterPIM: "pim", RouterMRD: "mrd", NumRouterSources: "unknown"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

// TestHeardRouter: a router port learned from a PIM Hello lasts its
// holdtime, one learned from a query the OQPI, one learned both ways the
// longer; a goodbye forgets what PIM taught, and MRD's termination what
// MRD taught. Lookup gives the router ports every group, registered or
// not.
func TestHeardRouter(t *testing.T) {
	tb := newTestTable(Config{})
	r1 := mustAddr("198.19.0.2")
	tb.HeardRouter(peer2, r1, RouterPIM, 105*time.Second, at(0))
	if !tb.HasRouters() {
		t.Fatal("HasRouters false after a PIM Hello")
	}
	want := []RouterState{{Port: peer2, Router: r1, Learned: []RouterSource{RouterPIM}, Expires: 105 * time.Second}}
	if got := tb.Routers(at(0)); !routersEqual(got, want) {
		t.Fatalf("Routers = %+v, want %+v", got, want)
	}
	for _, g := range []netip.Addr{grp1, grp2} {
		if got, reg := tb.Lookup(g, s1, nil); reg || !slices.Equal(got, []Port{peer2}) {
			t.Errorf("Lookup(unregistered %v) = %v, %v; want the router port", g, got, reg)
		}
	}
	tb.Handle(peer3, v2msg(t, TypeV2Report, grp1), at(0), nil)
	if got, reg := tb.Lookup(grp1, s1, nil); !reg || !slices.Equal(got, []Port{peer3, peer2}) {
		t.Errorf("Lookup(registered) = %v, %v; want the member then the router port", got, reg)
	}

	// The holdtime runs out.
	tb.Expire(at(105*time.Second - time.Millisecond))
	if !tb.HasRouters() {
		t.Fatal("router port gone before its holdtime")
	}
	tb.Expire(at(105 * time.Second))
	if tb.HasRouters() || len(tb.Routers(at(105*time.Second))) != 0 {
		t.Fatal("router port still there after its holdtime")
	}

	// Learned both ways: it lasts as long as the longer, and the ways
	// still in force are listed.
	tb.HeardRouter(peer2, r1, RouterPIM, 3*time.Second, at(200*time.Second))
	tb.HeardQuery(peer2, r1, at(200*time.Second))
	want = []RouterState{{Port: peer2, Router: r1, Learned: []RouterSource{RouterQuery, RouterPIM}, Expires: oqpi}}
	if got := tb.Routers(at(200 * time.Second)); !routersEqual(got, want) {
		t.Fatalf("Routers = %+v, want %+v", got, want)
	}
	tb.Expire(at(203 * time.Second))
	want = []RouterState{{Port: peer2, Router: r1, Learned: []RouterSource{RouterQuery}, Expires: oqpi - 3*time.Second}}
	if got := tb.Routers(at(203 * time.Second)); !routersEqual(got, want) {
		t.Fatalf("after the holdtime: Routers = %+v, want %+v", got, want)
	}
	tb.Expire(at(200*time.Second + oqpi))
	if tb.HasRouters() {
		t.Fatal("router port still there after the OQPI")
	}

	// A goodbye (holdtime 0) forgets PIM's part only.
	tb.HeardRouter(peer3, r1, RouterPIM, 105*time.Second, at(600*time.Second))
	tb.HeardRouter(peer3, r1, RouterMRD, 60*time.Second, at(600*time.Second))
	tb.HeardRouter(peer3, r1, RouterPIM, 0, at(601*time.Second))
	want = []RouterState{{Port: peer3, Router: r1, Learned: []RouterSource{RouterMRD}, Expires: 59 * time.Second}}
	if got := tb.Routers(at(601 * time.Second)); !routersEqual(got, want) {
		t.Fatalf("after a goodbye: Routers = %+v, want %+v", got, want)
	}
	tb.HeardRouter(peer3, r1, RouterMRD, 0, at(602*time.Second)) // MRD termination
	if tb.HasRouters() {
		t.Fatal("router port still there after PIM's goodbye and MRD's termination")
	}
	tb.HeardRouter(peer3, r1, RouterMRD, 0, at(603*time.Second)) // nothing to forget
	if tb.HasRouters() {
		t.Fatal("a termination made a router port")
	}

	// Ignored: the local port, 0.0.0.0, an IPv6 address that is not
	// link-local (MLD routers query from link-local ones), an unknown way.
	tb.HeardRouter(LocalPort, r1, RouterPIM, time.Minute, at(700*time.Second))
	tb.HeardRouter(peer1, netip.IPv4Unspecified(), RouterPIM, time.Minute, at(700*time.Second))
	tb.HeardRouter(peer1, mustAddr("2001:db8::1"), RouterPIM, time.Minute, at(700*time.Second))
	tb.HeardRouter(peer1, r1, NumRouterSources, time.Minute, at(700*time.Second))
	if tb.HasRouters() {
		t.Fatalf("router ports %+v from what must be ignored", tb.Routers(at(700*time.Second)))
	}

	// HoldForever never runs out; RemovePort still forgets it.
	tb.HeardRouter(peer1, r1, RouterPIM, HoldForever, at(800*time.Second))
	tb.Expire(at(800*time.Second + 100*365*24*time.Hour))
	if !tb.HasRouters() {
		t.Fatal("a router port of holdtime 0xffff expired")
	}
	tb.RemovePort(peer1)
	if tb.HasRouters() {
		t.Fatal("RemovePort left the router port")
	}
}

func routersEqual(a, b []RouterState) bool {
	return slices.EqualFunc(a, b, func(x, y RouterState) bool {
		return x.Port == y.Port && x.Router == y.Router && slices.Equal(x.Learned, y.Learned) && x.Expires == y.Expires
	})
}

// TestHeardRouterZeroAllocs: refreshing a known router port, as every
// PIM Hello and query of a router does, allocates nothing.
func TestHeardRouterZeroAllocs(t *testing.T) {
	tb := newTestTable(Config{})
	r1 := mustAddr("198.19.0.2")
	tb.HeardRouter(peer2, r1, RouterPIM, 105*time.Second, at(0))
	tb.HeardQuery(peer2, r1, at(0))
	now := at(time.Second)
	if a := testing.AllocsPerRun(1000, func() {
		tb.HeardRouter(peer2, r1, RouterPIM, 105*time.Second, now)
		tb.HeardQuery(peer2, r1, now)
		_ = tb.HasRouters()
	}); a != 0 {
		t.Fatalf("refreshing a router port allocates %.1f", a)
	}
	f := ipFrame(ProtoPIM, r1, AllPIMRouters, pimMsg(PIMHello, holdOpt(105)))
	if a := testing.AllocsPerRun(1000, func() {
		_, _, b, _ := PIMFromFrame(f)
		ParsePIM(b)
	}); a != 0 {
		t.Fatalf("finding and parsing a PIM Hello allocates %.1f", a)
	}
}

// FuzzParsePIM: ParsePIM never panics, accepts only version 2 messages
// whose checksum verifies, and a holdtime only for a Hello.
func FuzzParsePIM(f *testing.F) {
	f.Add(pimMsg(PIMHello, holdOpt(105)))
	f.Add(pimMsg(PIMHello, pimOpt(20, 1, 2, 3, 4), holdOpt(0xffff)))
	f.Add(pimMsg(PIMHello))
	f.Add(pimMsg(PIMRegister, make([]byte, 8)))
	f.Add(pimMsg(3, make([]byte, 8)))
	f.Add([]byte{0x20, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(b []byte) {
			typ, hold, ok := ParsePIM(b)
			if !ok {
				if typ != 0 || hold != 0 {
					t.Fatalf("refused % x but returned %d, %v", b, typ, hold)
				}
				return
			}
			if len(b) < 4 || b[0]>>4 != 2 || typ != b[0]&0x0f {
				t.Fatalf("accepted % x as type %d", b, typ)
			}
			if !inet.Verify(b) && !(typ == PIMRegister && inet.Verify(b[:8])) {
				t.Fatalf("accepted % x whose checksum fails", b)
			}
			if typ != PIMHello && hold != 0 {
				t.Fatalf("type %d with holdtime %v", typ, hold)
			}
			if hold < 0 || (hold != HoldForever && hold > 0xfffe*time.Second) {
				t.Fatalf("holdtime %v", hold)
			}
		}
		check(data)
		// Most mutations break the checksum: fix it to reach the
		// option walk.
		if len(data) >= 4 {
			b := slices.Clone(data)
			binary.BigEndian.PutUint16(b[2:], 0)
			binary.BigEndian.PutUint16(b[2:], inet.Checksum(b))
			check(b)
		}
	})
}

// FuzzParseMRD: ParseMRD never panics and accepts only MRD types whose
// checksum verifies, at their least length.
func FuzzParseMRD(f *testing.F) {
	adv := make([]byte, 8)
	PutMRDAdvertisement(adv, 20*time.Second, 125*time.Second, 2)
	f.Add(adv)
	f.Add([]byte{TypeMRDTermination, 0, 0xcd, 0xff})
	f.Add([]byte{TypeMRDSolicitation, 0, 0xce, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(b []byte) {
			typ, hold, r := ParseMRD(b)
			if r != OK {
				if typ != 0 || hold != 0 || r >= NumReasons {
					t.Fatalf("refused % x with %v but returned %#x, %v", b, r, typ, hold)
				}
				return
			}
			if !IsMRD(b) || typ != b[0] || !inet.Verify(b) {
				t.Fatalf("accepted % x as %#x", b, typ)
			}
			if (typ == TypeMRDAdvertisement) != (hold > 0) || hold > 3*255*time.Second {
				t.Fatalf("type %#x with hold %v", typ, hold)
			}
		}
		check(data)
		if len(data) >= 4 {
			b := slices.Clone(data)
			setChecksum(b)
			check(b)
		}
	})
}
