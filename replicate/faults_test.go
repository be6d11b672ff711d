package replicate

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/overlay"
	"golang.org/x/sys/unix"
)

// lines returns the log lines written to buf so far, and empties it.
func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestFaultLogRateLimited(t *testing.T) {
	var buf bytes.Buffer
	f := newFaultLog(slog.New(slog.NewTextHandler(&buf, nil)), FaultLogEvery)
	sec := int64(time.Second)
	t0 := 1000 * sec

	// The first fault of a reason is logged at once, with its errno.
	f.note(ReasonTAPWrite, 3, unix.EINVAL, t0)
	got := lines(&buf)
	if len(got) != 1 || !strings.Contains(got[0], "reason=tap_write") || !strings.Contains(got[0], "count=3") ||
		!strings.Contains(got[0], "errno=EINVAL") || !strings.Contains(got[0], `err="invalid argument"`) {
		t.Fatalf("first fault: %q", got)
	}
	// More within the period: nothing, for this reason; another reason
	// has its own period.
	for i := range 9 {
		f.note(ReasonTAPWrite, 2, unix.EIO, t0+int64(i+1)*sec)
	}
	f.note(ReasonSendError, 1, unix.EHOSTUNREACH, t0+sec)
	got = lines(&buf)
	if len(got) != 1 || !strings.Contains(got[0], "reason=send_error") || !strings.Contains(got[0], "errno=EHOSTUNREACH") {
		t.Fatalf("within the period: %q", got)
	}
	f.flush(t0 + 9*sec)
	if got := lines(&buf); len(got) != 0 {
		t.Fatalf("flush within the period logged %q", got)
	}
	// After the period, one line with the count since the last line and
	// the last errno.
	f.flush(t0 + 10*sec)
	got = lines(&buf)
	if len(got) != 1 || !strings.Contains(got[0], "count=18") || !strings.Contains(got[0], "errno=EIO") ||
		!strings.Contains(got[0], "since=") {
		t.Fatalf("after the period: %q", got)
	}
	f.flush(t0 + 30*sec)
	if got := lines(&buf); len(got) != 0 {
		t.Fatalf("nothing pending, yet %q", got)
	}
	// A fault after a quiet period is logged at once again.
	f.note(ReasonTAPWrite, 1, unix.EINVAL, t0+40*sec)
	if got := lines(&buf); len(got) != 1 || !strings.Contains(got[0], "count=1") {
		t.Fatalf("after a quiet period: %q", got)
	}
	// At most one line per reason per period, however many faults.
	for i := range 1000 {
		f.note(ReasonTAPWrite, 1, unix.EINVAL, t0+40*sec+int64(i)*int64(time.Millisecond))
	}
	if got := lines(&buf); len(got) != 0 {
		t.Fatalf("1000 faults in 1 s after a line: %d lines", len(got))
	}
}

// TestSendErrorLogged checks that a copy the kernel refuses is counted and
// logged with its errno.
func TestSendErrorLogged(t *testing.T) {
	var buf bytes.Buffer
	e, err := New(Config{Codec: overlay.NewGRE(0, false), LocalMAC: localMAC, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.SetPeers(peerInfos(2)); err != nil {
		t.Fatal(err)
	}
	w := &capture{refuse: map[netip.Addr]bool{underlay(3): true}}
	g := e.newEgress(8)
	g.now = time.Now().UnixNano()
	b, n := frame(mcastMAC, localMAC, 10)
	g.forward(b, n, w)
	g.flush(w)
	got := lines(&buf)
	if e.Drops()["send_error"] != 1 || len(got) != 1 || !strings.Contains(got[0], "reason=send_error") ||
		!strings.Contains(got[0], "errno=EHOSTUNREACH") {
		t.Fatalf("drops %v, log %q", e.Drops(), got)
	}
}
