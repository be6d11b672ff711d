package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces live, as with `ip netns add`.
const netnsDir = "/run/netns"

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
// skipping it.
func RequireRoot(t testing.TB) {
	t.Helper()
	rootOnce.Do(func() { rootErr = probeRoot() })
	if rootErr == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so this is a failure, not a skip): %v", skipHint, rootErr)
	}
	t.Skipf("%s (%v)", skipHint, rootErr)
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

// createNamespace creates the named namespace name, brings up its loopback
// and disables IPv6 in it. The calling goroutine is not affected. It works
// like `ip netns add`: a new namespace bind-mounted on /run/netns/NAME.
func createNamespace(name string) (netns.NsHandle, error) {
	path := filepath.Join(netnsDir, name)
	created := false // whether path is ours to remove on failure
	h := netns.None()
	err := onDiscardedThread(func() error {
		if err := os.MkdirAll(netnsDir, 0o755); err != nil {
			return err
		}
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		// The thread is discarded anyway; moving it back matters only if
		// the runtime keeps it, as it does the main thread.
		defer func() { _ = netns.Set(orig) }()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL, 0o444)
		if err != nil {
			return err
		}
		f.Close()
		created = true
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting %s: %w", path, err)
		}
		if h, err = netns.Get(); err != nil {
			return err
		}
		// This thread is in the new namespace, so /proc/sys/net shows it.
		for _, p := range []string{"all", "default"} {
			f := "/proc/sys/net/ipv6/conf/" + p + "/disable_ipv6"
			if err := os.WriteFile(f, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("disabling IPv6: %w", err)
			}
		}
		return setLinkUp("lo")
	})
	if err != nil {
		if h.IsOpen() {
			h.Close()
		}
		if created {
			_ = deleteNamespace(name)
		}
		return netns.None(), err
	}
	return h, nil
}

// deleteNamespace kills every process left in the namespace and removes its
// name. The links in it go away with the last reference to the namespace.
func deleteNamespace(name string) error {
	path := filepath.Join(netnsDir, name)
	if ino, err := nsInode(path); err == nil {
		killNamespaceProcs(ino)
	}
	// Like netns.DeleteNamed, but also removes a name that was never
	// mounted (a creation that failed half way).
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting namespace %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("namespace %s still exists after deletion", name)
	}
	return nil
}

// nsExists reports whether the named namespace exists.
func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// nsInode returns the inode number identifying the namespace at path.
func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// killNamespaceProcs sends SIGKILL to every process (other than this one)
// whose network namespace has inode ino, and waits up to 5 s for them to go.
func killNamespaceProcs(ino uint64) {
	want := "net:[" + strconv.FormatUint(ino, 10) + "]"
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := namespacePids(want)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// namespacePids lists the processes whose /proc/PID/ns/net link reads want.
// Zombies have no namespace link and are not listed.
func namespacePids(want string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink("/proc/" + e.Name() + "/ns/net")
		if err == nil && link == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// onDiscardedThread runs fn on a new goroutine that locks its OS thread and
// never unlocks it, so the runtime discards the thread when fn returns,
// whatever fn did to it. A panic or runtime.Goexit in fn becomes an error.
func onDiscardedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see the doc comment
		err := errors.New("nstest: the function called runtime.Goexit (t.FailNow inside Do?)")
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("nstest: panic: %v\n%s", r, debug.Stack())
			}
			errc <- err
		}()
		err = fn()
	}()
	return <-errc
}

// doIn runs fn inside the namespace ns on a discarded thread. Before the
// thread is thrown away it is moved back to the original namespace: that
// matters only if the runtime keeps the thread, as it does for the main one.
func doIn(ns netns.NsHandle, fn func() error) error {
	return onDiscardedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("nstest: current namespace: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("nstest: entering namespace: %w", err)
		}
		defer func() { _ = netns.Set(orig) }()
		return fn()
	})
}

// The spawner starts every child process from one OS thread that lives as
// long as the process. Children get SIGKILL as their parent-death signal,
// which Linux sends when the thread that forked them exits; forking from an
// ordinary goroutine would kill children whenever the runtime retires that
// thread (for example after a Do), not only when the test binary dies.
var (
	spawnOnce sync.Once
	spawnc    chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnc = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked, and the goroutine never returns
			for req := range spawnc {
				req.errc <- req.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	req := spawnReq{cmd: cmd, errc: make(chan error, 1)}
	spawnc <- req
	return <-req.errc
}

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
