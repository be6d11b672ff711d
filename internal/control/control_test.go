package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeAndFetch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "demo.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v", di.Mode().Perm())
	}
	s.Serve(func() State {
		return State{Community: "demo", MTU: 1462, Peers: []Peer{{Underlay: "198.18.0.2", TxPackets: 7}}}
	})
	st, err := Fetch(context.Background(), path)
	if err != nil || st.Community != "demo" || st.MTU != 1462 || st.Peers[0].TxPackets != 7 {
		t.Fatalf("fetch: %+v %v", st, err)
	}
	// A second daemon is refused while the first answers.
	if _, err := Listen(path); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Listen: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("Close left the socket")
	}
	if _, err := Fetch(context.Background(), path); err == nil || !strings.Contains(err.Error(), "no meshcast is running") {
		t.Fatalf("fetch without daemon: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.sock")
	// A socket file nobody listens on, as a killed daemon leaves it.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s.Close()
}
