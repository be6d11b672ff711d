package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"testing"
)

// GoTool returns the go command: the one on PATH, else /usr/local/go/bin/go.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// Build builds the main package pkg into the file out.
func Build(pkg, out string) error {
	cmd := exec.Command(GoTool(), "build", "-o", out, pkg)
	// As make builds them: static, and able to change every thread's
	// capabilities.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// BuildBinary builds the main package pkg (an import path such as
// "github.com/meshcast/meshcast/cmd/meshcast", or a path relative to the
// test's package directory) into a new directory from t.TempDir, and returns
// the binary's path. It fails the test if the build fails. It needs no root.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	name := path.Base(filepath.ToSlash(pkg))
	if name == "." || name == ".." || name == "/" {
		name = "main"
	}
	out := filepath.Join(t.TempDir(), name)
	if err := Build(pkg, out); err != nil {
		t.Fatalf("nstest: %v", err)
	}
	return out
}
