package main

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// The service manager's side of a restart (systemd, Type=notify): READY=1
// once forwarding, the TAP's file descriptor kept in its store with
// FDSTORE=1 and FDNAME=tap, and handed back through LISTEN_FDS on the next
// start. While the store holds the TAP, the interface outlives the daemon
// with its address, routes and the host's group memberships; frames the
// host sends meanwhile wait in the TAP's queue (overlay.TAPQueueLen).
// `systemctl stop` empties the store, which removes the TAP.

// tapFDName is the name of the TAP's descriptor in the store, and
// underlayFDName that of the underlay receive socket (GRE's raw socket or
// VXLAN's UDP socket), which keeps what peers send during a restart.
// GRE that receives through the AF_PACKET ring keeps the ring instead
// (ringFDName), with its raw socket, whose filter lets nothing in, under
// another name (ringRawFDName): a meshcast without the ring, which would
// read nothing from that socket, opens its own. A dual-stack node keeps
// its IPv6 underlay socket too (underlay6FDName).
const (
	tapFDName       = "tap"
	underlayFDName  = "underlay"
	underlay6FDName = "underlay6"
	ringRawFDName   = "underlay-raw"
	ringFDName      = "underlay-ring"
)

// sdNotifier talks to the service manager; its zero value (no
// NOTIFY_SOCKET) does nothing.
type sdNotifier struct {
	socket string // NOTIFY_SOCKET
	log    *slog.Logger
	stored bool // the TAP's descriptor went into the store
}

func newSdNotifier(log *slog.Logger) *sdNotifier {
	return &sdNotifier{socket: os.Getenv("NOTIFY_SOCKET"), log: log}
}

// enabled reports whether a service manager listens.
func (n *sdNotifier) enabled() bool { return n.socket != "" }

// notify sends state, such as READY=1, to the service manager.
func (n *sdNotifier) notify(state string) {
	if !n.enabled() {
		return
	}
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		n.log.Warn("systemd notification failed", "state", state, "err", err)
	}
}

// storeFD hands a copy of the descriptor behind rc to the service
// manager's store under name (sd_pid_notify_with_fds: one datagram with
// the descriptor in an SCM_RIGHTS message).
func (n *sdNotifier) storeFD(name string, rc syscall.RawConn) error {
	if !n.enabled() {
		return nil
	}
	state := "FDSTORE=1\nFDNAME=" + name
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = sendNotifyFDs(n.socket, state, int(fd))
	}); err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	n.stored = true
	return nil
}

// sendNotifyFDs sends state with fds to the notification socket at path
// (abstract if it starts with '@', which package net handles).
func sendNotifyFDs(path, state string, fds ...int) error {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", path, err)
	}
	defer unix.Close(s)
	// x/sys/unix turns a leading '@' into an abstract address.
	if err := unix.Sendmsg(s, []byte(state), unix.UnixRights(fds...), &unix.SockaddrUnix{Name: path}, 0); err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", path, err)
	}
	return nil
}

// storedFiles takes the descriptors the service manager passed
// (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID) by name, and clears those
// variables. The result is empty when none were passed.
func storedFiles() map[string]*os.File {
	files := map[string]*os.File{}
	for name, fs := range activation.FilesWithNames() {
		for i, f := range fs {
			if i > 0 {
				f.Close() // one of each name is enough
				continue
			}
			files[name] = f
		}
	}
	return files
}
