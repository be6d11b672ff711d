//go:build meshcast_faultinject

package overlay

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// FaultEnv is the environment variable that a binary built with the tag
// meshcast_faultinject reads at start: a comma-separated list of
// OFFLOAD=ERRNO[xN], such as "tap_coalesce=EINVAL" or "udp_gso=EIO x2",
// each making the next N (default 1) writes or sends that use that offload
// fail with that errno before they reach the kernel. Tests use it to show
// that a refused offload loses nothing; release builds have no such seam.
const FaultEnv = "MESHCAST_FAULT"

var faults struct {
	sync.Mutex
	left  map[string]int
	errno map[string]unix.Errno
}

func init() {
	if err := SetFaults(os.Getenv(FaultEnv)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", FaultEnv, err)
		os.Exit(2)
	}
}

// SetFaults replaces the faults to inject with spec, in the syntax of
// FaultEnv.
func SetFaults(spec string) error {
	left, errnos := map[string]int{}, map[string]unix.Errno{}
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, val, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("%q: want OFFLOAD=ERRNO[xN]", f)
		}
		val, count, _ := strings.Cut(strings.TrimSpace(val), "x")
		n := 1
		if count != "" {
			var err error
			if n, err = strconv.Atoi(strings.TrimSpace(count)); err != nil || n < 1 {
				return fmt.Errorf("%q: bad count", f)
			}
		}
		e := errnoByName(strings.TrimSpace(val))
		if e == 0 {
			return fmt.Errorf("%q: unknown errno %q", f, val)
		}
		left[strings.TrimSpace(name)], errnos[strings.TrimSpace(name)] = n, e
	}
	faults.Lock()
	faults.left, faults.errno = left, errnos
	faults.Unlock()
	return nil
}

// errnoByName returns the errno named name, such as EINVAL, or 0.
func errnoByName(name string) unix.Errno {
	for e := unix.Errno(1); e < 4096; e++ {
		if unix.ErrnoName(e) == name {
			return e
		}
	}
	return 0
}

// injected returns the errno to fail the next use of offload with, or 0.
func injected(offload string) unix.Errno {
	faults.Lock()
	defer faults.Unlock()
	if faults.left[offload] <= 0 {
		return 0
	}
	faults.left[offload]--
	return faults.errno[offload]
}
