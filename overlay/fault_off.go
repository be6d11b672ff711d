//go:build !meshcast_faultinject

package overlay

import "golang.org/x/sys/unix"

// injected is the fault-injection seam of the offloaded writes and sends.
// Only test builds (tag meshcast_faultinject) have faults to inject; here
// it is a constant that the compiler removes.
func injected(string) unix.Errno { return 0 }
