package replicate

import (
	"log/slog"
	"sync"
	"time"

	"github.com/meshcast/meshcast/overlay"
	"golang.org/x/sys/unix"
)

// FaultLogEvery is the shortest time between two warnings of one drop
// reason that means a local fault.
const FaultLogEvery = 10 * time.Second

// faultLog turns local faults (a copy the kernel refused to send, a frame
// the TAP refused) into rate-limited warnings: at most one line per reason
// per FaultLogEvery, giving the count since the last line and the errno of
// the last fault. Faults are rare, so a mutex is enough; the data path
// takes it only when the kernel refused something.
type faultLog struct {
	log   *slog.Logger
	every int64 // nanoseconds
	mu    sync.Mutex
	r     [numReasons]faultState
}

type faultState struct {
	pending uint64     // faults since the last line
	errno   unix.Errno // of the last fault
	last    int64      // when the last line was logged
	since   int64      // the first fault of pending
}

func newFaultLog(log *slog.Logger, every time.Duration) *faultLog {
	return &faultLog{log: log, every: int64(every)}
}

// note records n faults of reason r at now, the last with errno, and logs
// a line if none was logged for r in the last period.
func (f *faultLog) note(r Reason, n int, errno unix.Errno, now int64) {
	if n <= 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &f.r[r]
	if s.pending == 0 {
		s.since = now
	}
	s.pending += uint64(n)
	if errno != 0 {
		s.errno = errno
	}
	if s.last == 0 || now-s.last >= f.every {
		f.emit(r, now)
	}
}

// flush logs the faults that waited for their period to end. Run calls it
// periodically, so that a last burst of faults is never left unsaid.
func (f *faultLog) flush(now int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for r := range f.r {
		if s := &f.r[r]; s.pending > 0 && now-s.last >= f.every {
			f.emit(Reason(r), now)
		}
	}
}

func (f *faultLog) emit(r Reason, now int64) {
	s := &f.r[r]
	attrs := []any{"reason", r.String(), "count", s.pending, "errno", overlay.ErrnoName(s.errno), "err", s.errno.Error()}
	if s.last != 0 {
		attrs = append(attrs, "since", time.Duration(now-s.since).Round(time.Millisecond).String())
	}
	f.log.Warn(faultMessage[r], attrs...)
	s.pending, s.last = 0, now
}

var faultMessage = [numReasons]string{
	ReasonSendError: "the kernel refused copies for peers",
	ReasonTAPWrite:  "the TAP refused frames from peers",
}
