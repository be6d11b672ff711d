package nstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long a process gets after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// raceReport opens every report of the race detector in a program's
// output.
const raceReport = "WARNING: DATA RACE"

// A Proc is a background process started by Node.Start. Its methods are safe
// for concurrent use.
type Proc struct {
	node *Node
	argv []string
	cmd  *exec.Cmd
	out  outBuffer

	done    chan struct{} // closed when the process has been reaped
	waitErr error         // from cmd.Wait, set before done is closed

	stopOnce sync.Once
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

func (p *Proc) String() string {
	return fmt.Sprintf("%s in %s", quoteArgs(p.argv), p.node.Name)
}

func (p *Proc) wait() {
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// Signal sends sig to the process. It is an error if the process has
// exited and been reaped.
func (p *Proc) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("%v: signal %v: process already exited", p, sig)
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%v: signal %v: %w", p, sig, err)
	}
	return nil
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits at most timeout for the process to exit, and returns its exit
// status. If it was killed by a signal, the code is -1 and the error names
// the signal. If it is still running after timeout, the code is -1 and the
// error says so; the process is left running.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.status()
	case <-timer.C:
		return -1, fmt.Errorf("%v: still running after %v", p, timeout)
	}
}

// status interprets the result of cmd.Wait; p.done must be closed.
func (p *Proc) status() (int, error) {
	st := p.cmd.ProcessState
	if st == nil {
		return -1, fmt.Errorf("%v: %w", p, p.waitErr)
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, fmt.Errorf("%v: killed by signal %v", p, ws.Signal())
	}
	var exitErr *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &exitErr) {
		// For example output copying failed after the process exited.
		return st.ExitCode(), fmt.Errorf("%v: %w", p, p.waitErr)
	}
	return st.ExitCode(), nil
}

// Stop stops the process, SIGTERM first and SIGKILL after StopGrace, and
// returns its exit status as Wait does. Stopping a process that has already
// exited just returns its status. Cleanup calls Stop.
func (p *Proc) Stop() (int, error) { return p.stop() }

func (p *Proc) stop() (int, error) {
	p.stopOnce.Do(func() {
		if p.Exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(StopGrace):
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	<-p.done
	return p.status()
}

// Output returns everything the process has written to its standard output
// and standard error so far.
func (p *Proc) Output() string { return p.out.String() }

// WaitOutput waits at most timeout until the output contains substr. It
// returns an error, with the output so far, on timeout or if the process
// exits first.
func (p *Proc) WaitOutput(substr string, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s, changed := p.out.snapshot()
		if strings.Contains(s, substr) {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			// Output copying has finished once Wait has returned.
			if strings.Contains(p.Output(), substr) {
				return nil
			}
			code, err := p.status()
			return fmt.Errorf("%v exited (code %d, %v) before printing %q; output:\n%s", p, code, err, substr, p.Output())
		case <-timer.C:
			return fmt.Errorf("%v did not print %q within %v; output:\n%s", p, substr, timeout, p.Output())
		}
	}
}

// outBuffer is a bytes buffer safe for concurrent use that signals changes.
type outBuffer struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{} // closed and replaced at every write
}

func (b *outBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *outBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// snapshot returns the contents and a channel closed at the next write.
func (b *outBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String(), b.changed
}
