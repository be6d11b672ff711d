package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestDaemonDeps keeps the daemon, which runs with CAP_NET_ADMIN, free of
// the bench harness and its charting code (gonum.org/v1/plot, fonts, PDF):
// those belong to meshcast-bench. It needs the go command, not root.
func TestDaemonDeps(t *testing.T) {
	// go test puts its own GOROOT/bin first on the PATH of the test.
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to list the dependencies with")
	}
	const pkg = "github.com/meshcast/meshcast/cmd/meshcast"
	out, err := exec.Command(goCmd, "list", "-deps", pkg).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatalf("go list -deps %s listed nothing", pkg)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "gonum.org/") || d == "github.com/meshcast/meshcast/bench" {
			t.Errorf("meshcast links %s: the bench harness and its charts belong to meshcast-bench (cmd/meshcast-bench)", d)
		}
	}
}
