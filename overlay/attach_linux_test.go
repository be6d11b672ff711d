package overlay

import (
	"errors"
	"net/netip"
	"os"
	"testing"
)

// TestAttachTAPRefusesAnotherFile: a stored descriptor that is not a TAP
// (here /dev/null) is refused with ErrNotOurTAP, so the daemon ignores it
// and creates its TAP; AttachTAP consumes the file either way. No root:
// the check comes before any change to a device.
func TestAttachTAPRefusesAnotherFile(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Skipf("no %s: %v", os.DevNull, err)
	}
	_, err = AttachTAP(f, TAPConfig{Name: "mcbr-demo", Overlay: netip.MustParsePrefix("198.19.0.1/24")})
	if !errors.Is(err, ErrNotOurTAP) {
		t.Fatalf("AttachTAP(/dev/null) = %v, want ErrNotOurTAP", err)
	}
	if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("AttachTAP left the file open (Stat: %v)", err)
	}
}
