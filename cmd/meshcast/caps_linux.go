package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// keptCapabilities are what the daemon needs once it runs: CAP_NET_ADMIN,
// for large socket buffers (SO_SNDBUFFORCE on the sockets it opens for new
// flows) and for the kernel dataplane's netlink changes as peers come and
// go. Its sockets and TAP are open by then, so CAP_NET_RAW is not needed
// again, nor anything else root has.
var keptCapabilities = []uintptr{unix.CAP_NET_ADMIN}

// errCgo is why capabilities cannot be dropped in a build with cgo: the
// Go runtime then cannot change every thread's capabilities.
var errCgo = errors.New("this build uses cgo, so the Go runtime cannot change the capabilities of every thread (build with CGO_ENABLED=0, as make does)")

// dropCapabilities reduces every thread's capabilities to keep: the
// effective, permitted and bounding sets hold only keep, and the
// inheritable and ambient sets are empty, so no program meshcast might
// start gets more. Without CAP_SETPCAP the bounding set is left as it is.
func dropCapabilities(keep []uintptr) error {
	last := lastCap()
	kept := func(c uintptr) bool {
		for _, k := range keep {
			if k == c {
				return true
			}
		}
		return false
	}
	for c := uintptr(0); c <= last; c++ {
		if kept(c) {
			continue
		}
		_, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0)
		if errno == syscall.ENOTSUP {
			return errCgo
		}
		if errno == syscall.EPERM {
			break // no CAP_SETPCAP: leave the bounding set
		}
		if errno != 0 && errno != syscall.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, errno)
		}
	}
	_, _, errno := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0)
	if errno == syscall.ENOTSUP {
		return errCgo
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for _, k := range keep {
		data[k/32].Effective |= 1 << (k % 32)
		data[k/32].Permitted |= 1 << (k % 32)
	}
	_, _, errno = syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	switch errno {
	case 0:
		return nil
	case syscall.ENOTSUP:
		return errCgo
	default:
		return fmt.Errorf("capset: %w", errno)
	}
}

// lastCap returns the highest capability this kernel knows.
func lastCap() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 && n < 64 {
			return uintptr(n)
		}
	}
	return unix.CAP_LAST_CAP
}
