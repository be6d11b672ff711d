// Package netnsx creates, enters and removes named network namespaces the
// way `ip netns` does, and starts processes that die with their parent. The
// test helpers (internal/nstest) and the benchmark harness (bench) share it.
package netnsx

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces live, as with `ip netns add`.
const Dir = "/run/netns"

// Create creates the named namespace name, brings up its loopback
// and disables IPv6 in it. The calling goroutine is not affected. It works
// like `ip netns add`: a new namespace bind-mounted on /run/netns/NAME.
func Create(name string) (netns.NsHandle, error) {
	path := filepath.Join(Dir, name)
	created := false // whether path is ours to remove on failure
	h := netns.None()
	err := OnDiscardedThread(func() error {
		if err := os.MkdirAll(Dir, 0o755); err != nil {
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
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		if h.IsOpen() {
			h.Close()
		}
		if created {
			_ = Delete(name)
		}
		return netns.None(), err
	}
	return h, nil
}

// Delete kills every process left in the namespace and removes its
// name. The links in it go away with the last reference to the namespace.
func Delete(name string) error {
	path := filepath.Join(Dir, name)
	if ino, err := Inode(path); err == nil {
		KillProcs(ino)
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

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(Dir, name))
	return err == nil
}

// Inode returns the inode number identifying the namespace at path.
func Inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// KillProcs sends SIGKILL to every process (other than this one)
// whose network namespace has inode ino, and waits up to 5 s for them to go.
func KillProcs(ino uint64) {
	want := "net:[" + strconv.FormatUint(ino, 10) + "]"
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := Pids(want)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pids lists the processes whose /proc/PID/ns/net link reads want.
// Zombies have no namespace link and are not listed.
func Pids(want string) []int {
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

// OnDiscardedThread runs fn on a new goroutine that locks its OS thread and
// never unlocks it, so the runtime discards the thread when fn returns,
// whatever fn did to it. A panic or runtime.Goexit in fn becomes an error.
func OnDiscardedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see the doc comment
		err := errors.New("netnsx: the function called runtime.Goexit (t.FailNow inside Do?)")
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("netnsx: panic: %v\n%s", r, debug.Stack())
			}
			errc <- err
		}()
		err = fn()
	}()
	return <-errc
}

// DoIn runs fn inside the namespace ns on a discarded thread. Before the
// thread is thrown away it is moved back to the original namespace: that
// matters only if the runtime keeps the thread, as it does for the main one.
func DoIn(ns netns.NsHandle, fn func() error) error {
	return OnDiscardedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("netnsx: current namespace: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("netnsx: entering namespace: %w", err)
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

func Start(cmd *exec.Cmd) error {
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
