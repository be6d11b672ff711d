package control

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// TestNonRootRejected runs a client as the user nobody. With the socket's
// own mode (0600) the kernel refuses it; with the socket opened to everyone
// (mode 0666, directory 0755) the daemon still answers 403. Needs root.
func TestNonRootRejected(t *testing.T) {
	if path := os.Getenv("MESHCAST_CONTROL_CLIENT"); path != "" {
		t.Skip("the client half runs in TestNonRootClient")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run a client as another user (CI=true, so this is a failure, not a skip)")
		}
		t.Skip("needs root to run a client as another user")
	}
	dir, err := os.MkdirTemp("", "meshcast-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A copy of this test binary that nobody may run.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(dir, "client")
	if err := os.WriteFile(client, self, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "run", "demo.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Serve(func() State { return State{Community: "demo"} })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func() string {
		cmd := exec.Command(client, "-test.run=^TestNonRootClient$", "-test.v")
		cmd.Env = append(os.Environ(), "MESHCAST_CONTROL_CLIENT="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	out := asNobody()
	t.Logf("socket mode 0600:\n%s", out)
	if !strings.Contains(out, "permission denied") {
		t.Errorf("as nobody, socket mode 0600: want permission denied, got:\n%s", out)
	}
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	out = asNobody()
	t.Logf("socket mode 0666:\n%s", out)
	if !strings.Contains(out, "answers root only") {
		t.Errorf("as nobody, socket mode 0666: want the daemon's refusal, got:\n%s", out)
	}
	// Root is still answered.
	if st, err := Fetch(context.Background(), path); err != nil || st.Community != "demo" {
		t.Errorf("as root: %+v %v", st, err)
	}
}

// TestNonRootClient is the client half of TestNonRootRejected.
func TestNonRootClient(t *testing.T) {
	path := os.Getenv("MESHCAST_CONTROL_CLIENT")
	if path == "" {
		t.Skip("run by TestNonRootRejected")
	}
	_, err := Fetch(context.Background(), path)
	t.Logf("uid %d: fetch: %v", os.Geteuid(), err)
}
