package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/internal/nstest"
	"golang.org/x/sys/unix"
)

// serviceManager is a stand-in for systemd's side of Type=notify and the
// file descriptor store: a notification socket that records the states
// the daemon sends and keeps the descriptor stored as "tap".
type serviceManager struct {
	t    *testing.T
	path string
	conn *net.UnixConn

	mu      sync.Mutex
	changed chan struct{}
	states  []string
	store   map[string]*os.File // the stored descriptors by FDNAME
	names   []string            // their names, in the order stored
}

func newServiceManager(t *testing.T) *serviceManager {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	m := &serviceManager{t: t, path: path, conn: conn, changed: make(chan struct{}), store: map[string]*os.File{}}
	t.Cleanup(func() {
		conn.Close()
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, f := range m.store {
			f.Close() // the store is flushed: the TAP goes
		}
		m.store = nil
	})
	go m.serve()
	return m
}

func (m *serviceManager) serve() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*16))
	for {
		n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		state := string(buf[:n])
		var fds []int
		if oobn > 0 {
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err == nil {
				for _, cm := range msgs {
					if rights, err := unix.ParseUnixRights(&cm); err == nil {
						fds = append(fds, rights...)
					}
				}
			}
		}
		m.mu.Lock()
		m.states = append(m.states, state)
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			name := fdName(state)
			if strings.Contains(state, "FDSTORE=1") && name != "" && m.store[name] == nil {
				m.store[name] = os.NewFile(uintptr(fd), "stored-"+name)
				m.names = append(m.names, name)
			} else {
				unix.Close(fd) // the store has it already (systemd dedups too)
			}
		}
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
	}
}

// wait waits until the daemon sent a message containing state, counting
// from message index from.
func (m *serviceManager) wait(state string, from int, timeout time.Duration) (int, error) {
	deadline := time.After(timeout)
	for {
		m.mu.Lock()
		for i := from; i < len(m.states); i++ {
			if strings.Contains(m.states[i], state) {
				m.mu.Unlock()
				return i, nil
			}
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return 0, fmt.Errorf("no %q from the daemon within %v (got %q)", state, timeout, m.allStates())
		}
	}
}

func (m *serviceManager) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.states)
}

func (m *serviceManager) allStates() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.states...)
}

// fdName returns the FDNAME= of a notification, or "".
func fdName(state string) string {
	for _, l := range strings.Split(state, "\n") {
		if v, ok := strings.CutPrefix(l, "FDNAME="); ok {
			return v
		}
	}
	return ""
}

// stored returns the stored descriptors in the order they were stored,
// with their names, as systemd passes them on (LISTEN_FDNAMES).
func (m *serviceManager) stored() ([]*os.File, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var fs []*os.File
	for _, n := range m.names {
		fs = append(fs, m.store[n])
	}
	return fs, append([]string(nil), m.names...)
}

// lockedBuffer is a daemon's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// sdDaemon is meshcast run started as systemd would start it: with
// NOTIFY_SOCKET, and with the stored TAP as fd 3 (LISTEN_FDS=1,
// LISTEN_FDNAMES=tap, LISTEN_PID its own pid, which only the child knows:
// sh sets it from $$ and execs, keeping its pid).
type sdDaemon struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
	err  error
}

func startSdDaemon(t *testing.T, n *nstest.Node, m *serviceManager, stored []*os.File, names []string, bin string, args ...string) *sdDaemon {
	t.Helper()
	argv := append([]string{"netns", "exec", n.Name, "sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)
	cmd := exec.Command("ip", argv...)
	env := []string{"NOTIFY_SOCKET=" + m.path}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LISTEN_") && !strings.HasPrefix(e, "NOTIFY_SOCKET=") {
			env = append(env, e)
		}
	}
	if len(stored) > 0 {
		cmd.ExtraFiles = stored
		env = append(env, fmt.Sprintf("LISTEN_FDS=%d", len(stored)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	cmd.Env = env
	d := &sdDaemon{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &d.out, &d.out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-d.done
			}
		}
		if t.Failed() {
			t.Logf("in %s: meshcast %s (%v) output:\n%s", n.Name, strings.Join(args, " "), d.err, d.out.String())
		}
	})
	return d
}

// stop sends SIGTERM and returns the exit status.
func (d *sdDaemon) stop(t *testing.T) int {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("meshcast did not exit within 10s of SIGTERM\n%s", d.out.String())
	}
	return exitCode(d.err)
}

// TestIntegrationSystemdRestart restarts each daemon of a two-node mesh
// the way systemd does with Type=notify and the file descriptor store,
// while a stream of 1000 datagrams/s runs from node 1 to node 2: the TAP
// survives each restart with its address, and the stream loses at most a
// few datagrams per restart.
func TestIntegrationSystemdRestart(t *testing.T) {
	for _, c := range []struct {
		name, encap string
		extra       []string
	}{
		{"gre", "gre", nil},
		{"gre-ring", "gre", []string{"--ingress", "packet"}},
		{"vxlan", "vxlan", nil},
	} {
		t.Run(c.name, func(t *testing.T) { testSystemdRestart(t, c.encap, c.extra...) })
	}
	t.Run("no-notify-socket", testNoNotifySocketRemovesTAP)
}

func testSystemdRestart(t *testing.T, encap string, extra ...string) {
	nodes, inv, bin, probe := twoNodes(t)
	mgrs := make([]*serviceManager, len(nodes))
	daemons := make([]*sdDaemon, len(nodes))
	socks := make([]string, len(nodes))
	args := func(i int) []string {
		return append([]string{"run", "--peers", inv, "--local", nodes[i].Underlay.String(), "--encap", encap, "--control", socks[i]}, extra...)
	}
	for i, n := range nodes {
		mgrs[i] = newServiceManager(t)
		socks[i] = ctlPath(t)
		daemons[i] = startSdDaemon(t, n, mgrs[i], nil, nil, bin, args(i)...)
	}
	for i, m := range mgrs {
		if _, err := m.wait("READY=1", 0, 10*time.Second); err != nil {
			t.Fatalf("node %d: %v\n%s", i+1, err, daemons[i].out.String())
		}
		if _, err := m.wait("FDSTORE=1", 0, 5*time.Second); err != nil {
			t.Fatalf("node %d: %v\n%s", i+1, err, daemons[i].out.String())
		}
		// GRE with --ingress packet keeps its receive ring and the raw
		// socket the ring silences; otherwise the receive socket.
		want := []string{tapFDName, underlayFDName}
		if len(extra) > 0 {
			want = []string{tapFDName, ringRawFDName, ringFDName}
		}
		if _, err := m.wait("FDNAME="+want[len(want)-1], 0, 5*time.Second); err != nil {
			t.Fatalf("node %d: %v\n%s", i+1, err, daemons[i].out.String())
		}
		if _, names := m.stored(); !slices.Equal(names, want) {
			t.Fatalf("node %d: stored descriptors %v, want %v", i+1, names, want)
		}
	}

	restart := func(i int) {
		t.Helper()
		n, m := nodes[i], mgrs[i]
		from := m.count()
		start := time.Now()
		if code := daemons[i].stop(t); code != 0 {
			t.Fatalf("node %d: exit status %d after SIGTERM with the TAP stored, want 0\n%s", i+1, code, daemons[i].out.String())
		}
		stopped := time.Since(start)
		if _, err := m.wait("STOPPING=1", from, time.Second); err != nil {
			t.Errorf("node %d: %v", i+1, err)
		}
		out, err := n.Exec(t, "ip", "-4", "-o", "addr", "show", "dev", "mcbr-demo")
		if err != nil || !strings.Contains(out, fmt.Sprintf("198.19.0.%d/24", i+1)) {
			t.Fatalf("node %d: the stored TAP or its address is gone after SIGTERM: %v\n%s", i+1, err, out)
		}
		from = m.count()
		files, names := m.stored()
		daemons[i] = startSdDaemon(t, n, m, files, names, bin, args(i)...)
		if _, err := m.wait("READY=1", from, 10*time.Second); err != nil {
			t.Fatalf("node %d after restart: %v\n%s", i+1, err, daemons[i].out.String())
		}
		if out := daemons[i].out.String(); !strings.Contains(out, "attached to the previous process's TAP") || !strings.Contains(out, "attached to the previous process's underlay socket") {
			t.Errorf("node %d did not attach to the stored TAP and underlay socket:\n%s", i+1, out)
		}
		if out := daemons[i].out.String(); !strings.Contains(out, "state restored") {
			t.Errorf("node %d did not restore the state its previous run left:\n%s", i+1, out)
		}
		t.Logf("%s: node %d restarted: stopped in %v, forwarding again %v after SIGTERM", encap, i+1,
			stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}

	// Node 1's restart loses nothing: its host's datagrams wait in the
	// stored TAP's queue. Node 2's loses nothing either: what node 1 sends
	// meanwhile waits in the stored underlay socket's receive buffer. The
	// budget is 50 per restart.
	streamAcross(t, streamRun{
		label: strings.Join(append([]string{encap}, extra...), " "), event: "restart",
		nodes: nodes, bin: bin, probe: probe, socks: socks,
		firstAt: 3 * time.Second,
		replace: restart,
		finish: func() []string {
			outs := make([]string, len(daemons))
			for i := range daemons {
				if code := daemons[i].stop(t); code != 0 {
					t.Errorf("node %d: exit status %d at the end", i+1, code)
				}
				outs[i] = daemons[i].out.String()
			}
			return outs
		},
		budget: 50,
	})
}

// testNoNotifySocketRemovesTAP checks that without a service manager
// SIGTERM still removes the TAP.
func testNoNotifySocketRemovesTAP(t *testing.T) {
	nodes, inv, bin, _ := twoNodes(t)
	n := nodes[0]
	d := n.Start(t, bin, "run", "--peers", inv, "--local", n.Underlay.String(), "--control", ctlPath(t))
	if err := d.WaitOutput("meshcast forwarding", 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, d.Output())
	}
	if strings.Contains(d.Output(), "stored") {
		t.Errorf("without NOTIFY_SOCKET the daemon stored something:\n%s", d.Output())
	}
	d.Signal(syscall.SIGTERM)
	if code, err := d.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d, %v\n%s", code, err, d.Output())
	}
	if _, err := n.Link("mcbr-demo"); err == nil {
		t.Errorf("the TAP is still there after SIGTERM without a service manager")
	}
}
