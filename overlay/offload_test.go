package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRefusesOffload(t *testing.T) {
	for _, c := range []struct {
		errno unix.Errno
		want  bool
	}{
		{unix.EINVAL, true}, // Linux 6.1: a GSO_UDP_L4 frame written to a TAP
		{unix.EIO, true},    // UDP_SEGMENT through a device without checksum offload
		{unix.EOPNOTSUPP, true},
		{unix.EMSGSIZE, true},
		{errnoENOTSUPP, true},
		{unix.EHOSTUNREACH, false}, // a destination, not the offload
		{unix.ENETUNREACH, false},
		{unix.ECONNREFUSED, false},
		{unix.ENOBUFS, false}, // a full queue: sending again would not help
		{unix.EAGAIN, false},
		{unix.EPERM, false},
	} {
		if got := refusesOffload(c.errno); got != c.want {
			t.Errorf("refusesOffload(%s) = %v, want %v", ErrnoName(c.errno), got, c.want)
		}
	}
}

func TestErrno(t *testing.T) {
	if got := ErrnoName(unix.EINVAL); got != "EINVAL" {
		t.Errorf("ErrnoName(EINVAL) = %q", got)
	}
	if got := ErrnoName(errnoENOTSUPP); got != "ENOTSUPP" {
		t.Errorf("ErrnoName(524) = %q", got)
	}
	if got := ErrnoName(unix.Errno(4000)); got != "errno 4000" {
		t.Errorf("ErrnoName(4000) = %q", got)
	}
	wrapped := fmt.Errorf("TUNSETOFFLOAD: %w", unix.EINVAL)
	if Errno(wrapped) != unix.EINVAL || Errno(errors.New("x")) != 0 || Errno(nil) != 0 {
		t.Error("Errno does not find the errno inside an error")
	}
	msg := probeError("TUNSETOFFLOAD TUN_F_USO4", unix.EINVAL, "Linux 6.2")
	for _, want := range []string{"TUNSETOFFLOAD TUN_F_USO4: invalid argument", "(EINVAL)", "on Linux " + KernelRelease(), "needs Linux 6.2"} {
		if !strings.Contains(msg, want) {
			t.Errorf("probeError = %q, want it to contain %q", msg, want)
		}
	}
	if KernelRelease() == "" || KernelRelease() == "unknown" {
		t.Errorf("KernelRelease() = %q", KernelRelease())
	}
}

// TestOffloadFallBack checks the life of an offload: in use after its
// probe, then refused by the kernel: off, counted each time, warned once.
func TestOffloadFallBack(t *testing.T) {
	var buf bytes.Buffer
	o := newOffload(OffloadUDPGSO, slog.New(slog.NewTextHandler(&buf, nil)))
	o.enable()
	if s := o.Status(); !s.InUse || s.Reason != "" || s.Fallbacks != 0 || s.Name != OffloadUDPGSO {
		t.Fatalf("after enable: %+v", s)
	}
	o.fallBack("sendmmsg with UDP_SEGMENT", unix.EIO)
	o.fallBack("sendmmsg with UDP_SEGMENT", unix.EIO)
	s := o.Status()
	if s.InUse || s.Fallbacks != 2 || !strings.Contains(s.Reason, "EIO") || !strings.Contains(s.Reason, KernelRelease()) {
		t.Fatalf("after two fallbacks: %+v", s)
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, buf.String())
	}
	for _, want := range []string{"offload=udp_gso", "errno=EIO", "kernel=" + KernelRelease()} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("warning lacks %q: %s", want, buf.String())
		}
	}
	var nilOff *Offload
	if nilOff.InUse() {
		t.Error("a nil Offload is in use")
	}
}
