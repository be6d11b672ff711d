package nstest

import (
	"os/exec"
	"path"
	"path/filepath"
	"testing"
)

// BuildBinary builds the main package pkg (an import path such as
// "github.com/meshcast/meshcast/cmd/meshcast", or a path relative to the
// test's package directory) into a new directory from t.TempDir, and returns
// the binary's path. It fails the test if the build fails. It needs no root.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	name := path.Base(filepath.ToSlash(pkg))
	if name == "." || name == ".." || name == "/" {
		name = "main"
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(gobin, "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nstest: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}
