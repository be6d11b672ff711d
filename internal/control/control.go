package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunning means another daemon already serves the socket.
var ErrRunning = errors.New("another meshcast is already running")

// DefaultPath returns the default socket of a community.
func DefaultPath(community string) string {
	return filepath.Join("/run/meshcast", community+".sock")
}

// Server serves a daemon's state on a Unix socket.
type Server struct {
	path      string
	ln        *net.UnixListener
	srv       *http.Server
	takeovers chan *TakeoverRequest
}

// Listen creates the socket at path, mode 0600, in a directory it creates
// with mode 0700 if missing. A socket that answers means another daemon
// runs (ErrRunning); a stale one is replaced.
func Listen(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s answers", ErrRunning, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale control socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return newServer(path, ln.(*net.UnixListener)), nil
}

func newServer(path string, ln *net.UnixListener) *Server {
	// Close removes the socket itself, and Release must leave it.
	ln.SetUnlinkOnClose(false)
	return &Server{path: path, ln: ln, takeovers: make(chan *TakeoverRequest)}
}

// ListenFile serves on a listening socket handed over by the daemon that
// served path before, without a moment in which the path does not answer.
func ListenFile(path string, f *os.File) (*Server, error) {
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: handed-over listener: %w", path, err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok || ul.Addr().String() != path {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: the handed-over listener is %v, not this path", path, ln.Addr())
	}
	return newServer(path, ul), nil
}

// Listener returns the listening socket, to hand over to a successor.
func (s *Server) Listener() syscall.RawConn {
	rc, err := s.ln.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers GET /v1/state with state() as JSON until Close. Only
// root, and the daemon's own user, are answered; whatever the socket's
// mode, any other client gets 403 Forbidden. The client's user comes from
// the kernel (SO_PEERCRED), not from anything it sends.
func (s *Server) Serve(state func() State) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(state())
	})
	mux.HandleFunc("POST /v1/takeover", s.serveTakeover)
	euid := uint32(os.Geteuid())
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			uid, ok := r.Context().Value(peerUIDKey{}).(uint32)
			if !ok || (uid != 0 && uid != euid) {
				http.Error(w, "meshcast's control socket answers root only", http.StatusForbidden)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if uid, ok := peerUID(c); ok {
				return context.WithValue(ctx, peerUIDKey{}, uid)
			}
			return ctx
		},
	}
	go s.srv.Serve(s.ln)
}

type peerUIDKey struct{}

// peerUID returns the user of the process at the other end of a Unix
// socket connection.
func peerUID(c net.Conn) (uint32, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, false
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, false
	}
	return cred.Uid, true
}

// Release stops serving and leaves the socket in place, for the successor
// that holds the listener now.
// Requests in progress finish first (for up to a second).
func (s *Server) Release() error {
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			return s.srv.Close()
		}
		return nil
	}
	return s.ln.Close()
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	if s.srv != nil {
		s.srv.Close()
	} else {
		s.ln.Close()
	}
	err := os.Remove(s.path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// Fetch asks the daemon at path for its state.
func Fetch(ctx context.Context, path string) (State, error) {
	var st State
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://meshcast/v1/state", nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var se syscall.Errno
		if errors.As(err, &se) && (se == syscall.ENOENT || se == syscall.ECONNREFUSED) {
			return st, fmt.Errorf("%w with control socket %s", ErrNotRunning, path)
		}
		if errors.As(err, &se) && se == syscall.EACCES {
			return st, fmt.Errorf("%s: permission denied: run as root", path)
		}
		return st, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden {
		return st, fmt.Errorf("%s: the daemon answers root only: run as root", path)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("control socket %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("control socket %s: bad state: %w", path, err)
	}
	return st, nil
}
