package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/meshcast/meshcast/internal/netnsx"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces live, as with `ip netns add`.
const netnsDir = netnsx.Dir

// skipHint is the message of every skip by RequireRoot.
const skipHint = "needs root and network namespaces: run as root, e.g. sudo make test"

var (
	rootOnce sync.Once
	rootErr  error // nil when namespaces can be created
)

// RequireRoot skips the test unless the process can create named network
// namespaces and run `ip netns exec`. It tries once per process: it checks
// that the effective user is root and that the ip command exists, then
// creates and deletes a probe namespace, and skips if that fails with EPERM
// or EACCES (other failures are left for NewNet to report). When the
// environment variable CI is "true", RequireRoot fails the test instead of
// skipping it (see SkipOrFail).
func RequireRoot(t testing.TB) {
	t.Helper()
	rootOnce.Do(func() { rootErr = probeRoot() })
	if rootErr == nil {
		return
	}
	SkipOrFail(t, "%s (%v)", skipHint, rootErr)
}

// CI reports whether the environment variable CI is "true": the tests run
// where everything they need is expected to be present.
func CI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test with a message saying what it lacks, or, when
// CI reports true, fails it with that message instead: there, a skip
// would hide that the test never ran. Use it for a missing privilege, tool
// or kernel feature that CI is expected to have, never for a condition
// that is expected on some machines CI runs on.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI=true, so this is a failure, not a skip)", msg)
	}
	t.Skip(msg)
}

func probeRoot() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("running as uid %d", uid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("the ip command (iproute2) is missing: %w", err)
	}
	name := newPrefix() + "probe"
	h, err := createNamespace(name)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("creating a network namespace: %w", err)
		}
		// Any other failure is not about privileges: do not hide it
		// behind a skip; NewNet will report it.
		return nil
	}
	h.Close()
	_ = deleteNamespace(name)
	return nil
}

// newPrefix returns a fresh name prefix "mc<pid base 36>-<4 hex>-".
func newPrefix() string {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return "mc" + strconv.FormatInt(int64(os.Getpid()), 36) + "-" + hex.EncodeToString(b[:]) + "-"
}

// staleName matches the namespace names made by newPrefix; the first group is
// the pid of the process that made it.
var staleName = regexp.MustCompile(`^mc([0-9a-z]+)-[0-9a-f]{4}-[a-z0-9]+$`)

var sweepOnce sync.Once

// sweepStale deletes namespaces left behind by test processes that died
// without running their cleanup (for example killed by go test -timeout).
// A namespace is stale when its name carries the pid of a process that no
// longer exists. Errors are ignored: sweeping is best effort.
func sweepStale(logf func(string, ...any)) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.ParseInt(m[1], 36, 32)
		if err != nil || int(pid) == os.Getpid() {
			continue
		}
		if err := unix.Kill(int(pid), 0); err == nil || errors.Is(err, unix.EPERM) {
			continue // its owner is alive
		}
		if err := deleteNamespace(e.Name()); err == nil {
			logf("nstest: removed stale namespace %s of dead process %d", e.Name(), pid)
		}
	}
}

func createNamespace(name string) (netns.NsHandle, error) { return netnsx.Create(name) }
func deleteNamespace(name string) error                   { return netnsx.Delete(name) }
func nsExists(name string) bool                           { return netnsx.Exists(name) }
func nsInode(path string) (uint64, error)                 { return netnsx.Inode(path) }
func killNamespaceProcs(ino uint64)                       { netnsx.KillProcs(ino) }
func namespacePids(want string) []int                     { return netnsx.Pids(want) }
func doIn(ns netns.NsHandle, fn func() error) error       { return netnsx.DoIn(ns, fn) }
func startCmd(cmd *exec.Cmd) error                        { return netnsx.Start(cmd) }

// quoteArgs renders a command line for messages.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
