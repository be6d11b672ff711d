package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/meshcast/meshcast/internal/netnsx"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopGrace is how long a daemon gets after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// A daemon is a process started inside a namespace with `ip netns exec`,
// which execs it, so its pid is the daemon's own.
type daemon struct {
	node *nsNode
	argv []string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed once reaped
	err  error         // from Wait, set before done is closed
	once sync.Once
}

// startDaemon starts argv inside node's namespace, with env added to this
// process's environment. The process gets SIGKILL when this process dies.
func startDaemon(node *nsNode, argv, env []string) (*daemon, error) {
	d := &daemon{node: node, argv: argv, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", node.name}, argv...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.WaitDelay = time.Second
	if env != nil {
		d.cmd.Env = append(os.Environ(), env...)
	}
	if err := spawn(d.cmd); err != nil {
		return nil, fmt.Errorf("bench: starting %s in %s: %w", strings.Join(argv, " "), node.name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and returns an error
// unless the daemon exited with status 0 or by the SIGTERM (as Open vSwitch
// does). It may be called more than once.
func (d *daemon) stop() error {
	termed := false
	d.once.Do(func() {
		if d.exited() {
			return
		}
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
			termed = true
		case <-time.After(stopGrace):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	<-d.done
	if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && termed && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
		return nil
	}
	if d.err != nil {
		return fmt.Errorf("%s in %s: %w%s", d.argv[0], d.node.name, d.err, indentTail(d.out.String()))
	}
	return nil
}

// exitError describes a daemon that exited by itself.
func (d *daemon) exitError() error {
	<-d.done
	st := "exit status 0"
	if d.err != nil {
		st = d.err.Error()
	}
	return fmt.Errorf("daemon in %s exited (%s)%s", d.node.name, st, indentTail(d.out.String()))
}

func indentTail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if lines := strings.Split(s, "\n"); len(lines) > 12 {
		s = strings.Join(lines[len(lines)-12:], "\n")
	}
	return "\n\t" + strings.ReplaceAll(s, "\n", "\n\t")
}

// tailBuffer keeps the last max bytes written to it. It is safe for
// concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// clockTick is the unit of /proc/PID/stat and /proc/stat times.
const clockTick = 100 // USER_HZ, 100 on every Linux architecture Go supports

// procCPU returns the utime+stime of process pid, in seconds, threads
// (also those that have exited) included.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
	}
	return float64(ut+st) / clockTick, nil
}

// softirqCPU returns the softirq time of the whole machine, in seconds,
// from the "cpu" line of /proc/stat.
func softirqCPU() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	// cpu user nice system idle iowait irq softirq ...
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("bench: unexpected /proc/stat")
	}
	v, err := strconv.ParseUint(f[7], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: /proc/stat: %w", err)
	}
	return float64(v) / clockTick, nil
}

// threadSysCPU returns the system time of the calling thread in seconds.
func threadSysCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
}

// helpText runs `BIN run --help` and returns its output.
func helpText(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "run", "--help").CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("bench: %s run --help: %w%s", bin, err, indentTail(string(out)))
	}
	return string(out), nil
}

// bridgeInfo reads the IGMP snooping settings of the bridge dev in
// namespace ns with `ip -d -j link show`: whether snooping and the querier
// are on, and the query response interval.
func bridgeInfo(ctx context.Context, ns, dev string) (snooping, querier bool, response time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-d", "-j", "link", "show", dev).Output()
	if err != nil {
		return false, false, 0, fmt.Errorf("bench: ip -n %s -d -j link show %s: %w", ns, dev, err)
	}
	return parseBridgeInfo(out)
}

// spawn starts cmd with SIGKILL as its parent-death signal.
func spawn(cmd *exec.Cmd) error { return netnsx.Start(cmd) }
