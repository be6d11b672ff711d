package nstest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// The registry remembers every namespace this process created, with the Net
// that owns it, so LeakCheck can tell which namespaces a test made.
var (
	registryMu sync.Mutex
	registry   = map[string]*Net{} // namespace name -> owner
	pending    []pendingCheck      // LeakChecks waiting for Nets to be cleaned up
)

type pendingCheck struct {
	scope leakScope
	run   func()
}

func registerNamespace(name string, owner *Net) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[name] = owner
}

// registeredBy returns the names of the namespaces owned by nt.
func registeredBy(nt *Net) []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	var names []string
	for name, owner := range registry {
		if owner == nt {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// netSeq numbers Nets and LeakChecks in the order they are made, so that a
// LeakCheck claims only the Nets made during its test (a test that runs
// again under -count has the same name).
var netSeq atomic.Uint64

// leakScope decides which Nets a LeakCheck covers: those made with its own
// t, and those made after it by a test of the same name or a subtest.
type leakScope struct {
	t     testing.TB
	test  string
	after uint64
}

func (sc leakScope) covers(nt *Net) bool {
	if nt.tb == sc.t {
		return true
	}
	return nt.seq > sc.after && (nt.test == sc.test || strings.HasPrefix(nt.test, sc.test+"/"))
}

// nets returns the Nets in scope.
func (sc leakScope) nets() []*Net {
	registryMu.Lock()
	defer registryMu.Unlock()
	seen := map[*Net]bool{}
	var nets []*Net
	for _, owner := range registry {
		if !seen[owner] && sc.covers(owner) {
			seen[owner] = true
			nets = append(nets, owner)
		}
	}
	return nets
}

// LeakCheck makes the test fail if, once the Nets that the test and its
// subtests created have been cleaned up, anything of theirs is left: a
// namespace name, a process inside one of the namespaces, or a namespace
// file descriptor or thread of this process that keeps a namespace (and so
// its links) alive. It may be called before or after NewNet.
func LeakCheck(t testing.TB) {
	t.Helper()
	sc := leakScope{t: t, test: t.Name(), after: netSeq.Add(1)}
	check := func() {
		for _, leak := range sc.leaks() {
			t.Errorf("nstest: leak in %s: %s", sc.test, leak)
		}
	}
	t.Cleanup(func() {
		for _, nt := range sc.nets() {
			if !nt.closed.Load() {
				// A Net of this test is cleaned up after us (NewNet
				// was called after LeakCheck): check at the end of its
				// cleanup.
				registryMu.Lock()
				pending = append(pending, pendingCheck{scope: sc, run: check})
				registryMu.Unlock()
				return
			}
		}
		check()
	})
}

// runPending runs the pending leak checks whose Nets are all cleaned up.
func runPending() {
	registryMu.Lock()
	checks := pending
	pending = nil
	registryMu.Unlock()
	var keep []pendingCheck
	for _, pc := range checks {
		open := false
		for _, nt := range pc.scope.nets() {
			open = open || !nt.closed.Load()
		}
		if open {
			keep = append(keep, pc)
		} else {
			pc.run()
		}
	}
	registryMu.Lock()
	pending = append(pending, keep...)
	registryMu.Unlock()
}

// leaks describes what is left of the Nets in scope: the leaks they found
// while cleaning up, and namespace names that still exist.
func (sc leakScope) leaks() []string {
	var leaks []string
	for _, nt := range sc.nets() {
		nt.mu.Lock()
		leaks = append(leaks, nt.leaks...)
		nt.mu.Unlock()
		for _, name := range registeredBy(nt) {
			if nsExists(name) {
				leaks = append(leaks, fmt.Sprintf("namespace %s still exists", name))
			}
		}
	}
	sort.Strings(leaks)
	return leaks
}

// holders describes what still holds the namespace name with inode ino:
// processes inside it, and file descriptors and threads of this process.
// Call it while the name still exists; after that the kernel may give the
// inode number to a new namespace.
func holders(name string, ino uint64) []string {
	want := "net:[" + strconv.FormatUint(ino, 10) + "]"
	var held []string
	for _, pid := range namespacePids(want) {
		held = append(held, fmt.Sprintf("process %d (%s) still runs in namespace %s", pid, procName(pid), name))
	}
	for _, fd := range selfFds(ino) {
		held = append(held, fmt.Sprintf("file descriptor %s of this process holds namespace %s", fd, name))
	}
	for _, tid := range selfThreads(want) {
		held = append(held, fmt.Sprintf("thread %s of this process is still in namespace %s", tid, name))
	}
	return held
}

// selfThreads lists the threads of this process that are in the namespace
// want ("net:[INODE]").
func selfThreads(want string) []string {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil
	}
	var tids []string
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join("/proc/self/task", e.Name(), "ns", "net"))
		if err == nil && link == want {
			tids = append(tids, e.Name())
		}
	}
	return tids
}

// selfFds lists the file descriptors of this process that refer to the
// namespace with inode ino. Such a descriptor shows the path it was opened
// by, so it is compared by device and inode instead.
func selfFds(ino uint64) []string {
	var nsfs unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &nsfs); err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var fds []string
	for _, e := range entries {
		var st unix.Stat_t
		err := unix.Stat(filepath.Join("/proc/self/fd", e.Name()), &st)
		if err == nil && st.Ino == ino && st.Dev == nsfs.Dev {
			fds = append(fds, e.Name())
		}
	}
	return fds
}

// procName returns the command name of process pid, or "?".
func procName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
