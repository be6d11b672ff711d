package overlay

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestIntegrationDual checks a dual-stack node's underlay: a batch mixing
// IPv4 and IPv6 peers reaches both, each through its family's socket;
// ReadBatch returns what either family received; a deadline interrupts
// a waiting ReadBatch and the zero time lets it wait again; Close ends it.
func TestIntegrationDual(t *testing.T) {
	for _, codec := range []string{"gre", "vxlan"} {
		t.Run(codec, func(t *testing.T) {
			ns := newTestNS(t)
			a4, b4 := listenPairOpts(t, ns, codec, Options{Batch: 16})
			a6, b6 := listenPair6(t, ns, codec, Options{Batch: 16})
			d, err := NewDual(a4, a6)
			if err != nil {
				t.Fatal(err)
			}
			var c Codec = NewGRE(testKey, true)
			if codec == "vxlan" {
				c = NewVXLAN(testVNI, DefaultVXLANPort)
			}
			pkts, _ := encapFrames(c, 6)
			var msgs []Message
			for i, p := range pkts {
				dst := underlayB
				if i%2 == 1 {
					dst = underlay6B
				}
				msgs = append(msgs, Message{Buf: p, Addr: dst})
			}
			var failed int
			ns.do(t, func() (err error) {
				failed, err = d.WriteBatch(msgs)
				return err
			})
			if failed != 0 {
				t.Fatalf("WriteBatch: %d failed", failed)
			}
			for i, m := range msgs {
				if m.N != len(m.Buf) {
					t.Errorf("message %d to %v: N = %d", i, m.Addr, m.N)
				}
			}
			for _, r := range readN(t, b4, 3) {
				if r.addr != underlayA {
					t.Errorf("IPv4 peer got a packet from %v", r.addr)
				}
			}
			for _, r := range readN(t, b6, 3) {
				if r.addr != underlay6A {
					t.Errorf("IPv6 peer got a packet from %v", r.addr)
				}
			}
			// Warm, outside the namespace: the sockets are open.
			if a := testing.AllocsPerRun(100, func() { d.WriteBatch(msgs) }); a != 0 {
				t.Errorf("a mixed WriteBatch allocates %.1f", a)
			}

			// Both peers send; one reader gets both families.
			ns.do(t, func() error {
				if _, err := b4.WriteBatch([]Message{{Buf: pkts[0], Addr: underlayA}}); err != nil {
					return err
				}
				_, err := b6.WriteBatch([]Message{{Buf: pkts[1], Addr: underlay6A}})
				return err
			})
			from := map[string]int{}
			buf := make([]Message, 8)
			deadline := time.Now().Add(ioTimeout)
			for len(from) < 2 && time.Now().Before(deadline) {
				d.SetReadDeadline(deadline)
				n, err := d.ReadBatch(buf)
				if err != nil {
					t.Fatalf("ReadBatch: %v", err)
				}
				for _, m := range buf[:n] {
					from[m.Addr.String()]++
				}
			}
			if from[underlayB.String()] == 0 || from[underlay6B.String()] == 0 {
				t.Fatalf("ReadBatch returned packets from %v, want both families", from)
			}

			// A deadline in the past interrupts a waiting ReadBatch.
			d.SetReadDeadline(time.Time{})
			errc := make(chan error, 1)
			go func() { _, err := d.ReadBatch(buf); errc <- err }()
			time.Sleep(50 * time.Millisecond)
			d.SetReadDeadline(time.Unix(1, 0))
			select {
			case err := <-errc:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("interrupted ReadBatch: %v, want os.ErrDeadlineExceeded", err)
				}
			case <-time.After(ioTimeout):
				t.Fatal("SetReadDeadline did not interrupt ReadBatch")
			}
			// Cleared, it waits again, until Close.
			d.SetReadDeadline(time.Time{})
			go func() { _, err := d.ReadBatch(buf); errc <- err }()
			time.Sleep(50 * time.Millisecond)
			select {
			case err := <-errc:
				t.Fatalf("ReadBatch returned %v with no deadline and nothing to read", err)
			default:
			}
			d.Close()
			select {
			case err := <-errc:
				if err == nil {
					t.Fatal("ReadBatch after Close returned no error")
				}
			case <-time.After(ioTimeout):
				t.Fatal("Close did not end ReadBatch")
			}
		})
	}
}

// TestNewDualRefuses: a Dual needs a Conn of each family.
func TestNewDualRefuses(t *testing.T) {
	if d, err := NewDual(nil, nil); err == nil || d != nil {
		t.Fatalf("NewDual(nil, nil) = %v, %v; want an error", d, err)
	}
}
