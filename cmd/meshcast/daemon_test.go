package main

// Unit tests of the daemon's lifecycle, one phase at a time: the data plane
// is a recordingPlane, so none of them needs root or a network namespace.
// The real planes, and the phases strung together by runDaemon, are covered
// by the integration tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/discovery"
	"github.com/meshcast/meshcast/igmp"
	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/replicate"
)

// recordingPlane is a data plane that records what the lifecycle asks of
// it and exports a canned state.
type recordingPlane struct {
	mu         sync.Mutex
	state      planeState     // what export returns
	restoreErr error          // what restore returns
	fds        []control.File // what files returns
	calls      []string
	restored   []planeState
	peers      []replicate.PeerInfo
}

func (p *recordingPlane) record(call string) {
	p.mu.Lock()
	p.calls = append(p.calls, call)
	p.mu.Unlock()
}

func (p *recordingPlane) setPeers(ps []replicate.PeerInfo) ([]netip.Addr, []netip.Addr, error) {
	p.record("setPeers")
	p.mu.Lock()
	p.peers = slices.Clone(ps)
	p.mu.Unlock()
	return nil, nil, nil
}

func (p *recordingPlane) run(ctx context.Context) error {
	p.record("run")
	<-ctx.Done()
	return nil
}

func (p *recordingPlane) files() []control.File {
	p.record("files")
	return slices.Clone(p.fds)
}

func (p *recordingPlane) export(time.Time) planeState {
	p.record("export")
	return p.state
}

func (p *recordingPlane) restore(s planeState, _ time.Time) error {
	p.record("restore")
	p.mu.Lock()
	p.restored = append(p.restored, s)
	p.mu.Unlock()
	return p.restoreErr
}

func (p *recordingPlane) release() { p.record("release") }
func (p *recordingPlane) close()   { p.record("close") }

// called reports the calls so far whose name is one of names, in order.
func (p *recordingPlane) called(names ...string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.calls {
		if slices.Contains(names, c) {
			out = append(out, c)
		}
	}
	return out
}

func (p *recordingPlane) restoredStates() []planeState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.restored)
}

// lcLogBuffer is a log sink that the test may read while the daemon's
// goroutines write to it.
type lcLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lcLogBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lcLogBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// The wall-clock times of the canned state: without a monotonic reading or
// a location, so that they survive JSON as they are.
var (
	lcUntil    = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	lcLastSeen = time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)
)

// cannedPlaneState is a userspace plane's state: one membership in the
// snooping table, and the counters of one peer in the engine.
func cannedPlaneState() planeState {
	peer := netip.MustParseAddr("198.18.0.2")
	return planeState{
		IGMP: &igmp.TableState{
			Memberships: []igmp.MembershipState{{
				Group: netip.MustParseAddr("239.1.2.3"), Port: peer, Mode: "include", Version: 3,
				Sources: []igmp.SourceState{{Addr: netip.MustParseAddr("198.19.0.7"), Until: lcUntil}},
			}},
			Routers: []igmp.RouterPortState{},
			Refused: map[string]uint64{"max_groups": 2},
		},
		Engine: &replicate.EngineState{
			MACs: []replicate.MACState{{MAC: "02:00:00:00:00:02", Peer: peer.String(), LastSeen: lcLastSeen}},
			Peers: map[string]replicate.PeerCounters{peer.String(): {
				TxPackets: 10, TxBytes: 1400, TxErrors: 1, RxPackets: 7, RxBytes: 980, LastSeen: lcLastSeen,
			}},
			Drops:  map[string]uint64{"no_peer": 3},
			Fanout: replicate.FanoutState{Bounds: []float64{1, 2}, Counts: []uint64{4, 5, 6}, Sum: 26},
		},
	}
}

// lcDaemon is a daemon as open leaves it for node 198.18.0.1 of community
// demo (overlay 198.19.0.1/24, TAP mcbr-demo, userspace dataplane, one
// peer), with its control socket at dir/x.sock, a recordingPlane, and its
// log in the returned buffer. Nothing is opened.
func lcDaemon(t *testing.T, dir string) (*daemon, *recordingPlane, *lcLogBuffer) {
	t.Helper()
	logs := &lcLogBuffer{}
	p := &recordingPlane{state: cannedPlaneState()}
	d := &daemon{
		cfg:     &runConfig{dataplane: "userspace", encap: "gre", community: "demo"},
		log:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		started: time.Date(2031, 5, 6, 0, 0, 0, 0, time.UTC),
		self: discovery.Member{
			Underlay: netip.MustParseAddr("198.18.0.1"), Community: "demo",
			Overlay: netip.MustParsePrefix("198.19.0.1/24"), ID: "peers:2",
		},
		local:   netip.MustParseAddr("198.18.0.1"),
		tap:     "mcbr-demo",
		ctlPath: filepath.Join(dir, "x.sock"),
		plane:   p,
		peers: []replicate.PeerInfo{{
			Underlay: netip.MustParseAddr("198.18.0.2"), Overlay: netip.MustParsePrefix("198.19.0.2/24"), ID: "peers:3",
		}},
	}
	return d, p, logs
}

// lcState is the handoverState of lcDaemon, changed by edit.
func lcState(edit func(*handoverState)) handoverState {
	s := handoverState{
		Version: "test", Community: "demo", Dataplane: "userspace", Encap: "gre", TAP: "mcbr-demo",
		Local: netip.MustParseAddr("198.18.0.1"), Overlay: netip.MustParsePrefix("198.19.0.1/24"),
		Plane: cannedPlaneState(), Peers: []handoverPeer{},
	}
	if edit != nil {
		edit(&s)
	}
	return s
}

func lcJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lcPipe returns the read end of a pipe, which stands for a data plane's
// descriptor, and its write end; both are closed when the test ends.
func lcPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func lcFile(t *testing.T, f *os.File, name string) control.File {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return control.File{Name: name, Conn: rc}
}

// lcServe listens on path and serves a state of community demo.
func lcServe(t *testing.T, path string) *control.Server {
	t.Helper()
	srv, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve(func() control.State { return control.State{Community: "demo", PID: os.Getpid()} })
	return srv
}

func lcFetch(path string) (control.State, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return control.Fetch(ctx, path)
}

func lcExists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestSameTCPAddr(t *testing.T) {
	cases := []struct {
		got, want string
		same      bool
	}{
		{"127.0.0.1:9977", "127.0.0.1:9977", true},
		{"127.0.0.1:41234", "127.0.0.1:0", true},            // port 0 asks for any port
		{"[::]:41234", ":0", true},                          // any address, any port
		{"[::]:9977", ":9977", true},                        // what net.Listen reports for :9977
		{"0.0.0.0:9977", ":9977", true},                     // an IPv4-only host
		{"0.0.0.0:9977", "0.0.0.0:9977", true},              // an IPv4-only host
		{"0.0.0.0:9977", "[::]:9977", true},                 // both unspecified
		{"[::]:9977", "[::]:9977", true},                    // both unspecified
		{"[::ffff:127.0.0.1]:9977", "127.0.0.1:9977", true}, // IPv4-mapped
		{"127.0.0.1:9977", "[::ffff:127.0.0.1]:9977", true}, // IPv4-mapped
		// net.Listen("tcp", "0.0.0.0:9977") reports [::]:9977 on a host
		// with IPv6: the predecessor's listener must be kept.
		{"[::]:9977", "0.0.0.0:9977", true},
		{"127.0.0.1:9977", "127.0.0.1:9978", false},
		{"127.0.0.1:9977", ":9978", false},
		{"127.0.0.1:9977", "127.0.0.2:9977", false},
		{"127.0.0.1:9977", "0.0.0.0:9977", false}, // loopback only is not every address
		{"[::]:9977", "127.0.0.1:9977", false},
		{"[::1]:9977", "127.0.0.1:9977", false},
		{"garbage", "127.0.0.1:9977", false},
		{"127.0.0.1", "127.0.0.1:9977", false},
		{"127.0.0.1:9977", "garbage", false},
		{"127.0.0.1:9977", "127.0.0.1:http-alt-nonsense", false},
		{"127.0.0.1:9977", "127.0.0.1:99999", false},
		{"", "", false},
	}
	for _, c := range cases {
		if got := sameTCPAddr(c.got, c.want); got != c.same {
			t.Errorf("sameTCPAddr(%q, %q) = %v, want %v", c.got, c.want, got, c.same)
		}
	}
}

func TestCheckOffer(t *testing.T) {
	cases := []struct {
		name      string
		dataplane string // of the daemon that takes over; userspace if empty
		edit      func(*handoverState)
		raw       []byte   // the State as it is, instead of lcState(edit)
		want      []string // in the usage error; none: the offer passes
		takeover  bool     // an errTakeover, not a usage error
	}{
		{name: "same settings"},
		{name: "version and peers do not matter", edit: func(s *handoverState) {
			s.Version, s.Peers = "v0.0.1", []handoverPeer{{Underlay: netip.MustParseAddr("198.18.0.9")}}
		}},
		{name: "userspace checks the encapsulation on attaching", edit: func(s *handoverState) { s.Encap = "vxlan" }},
		{name: "another TAP", edit: func(s *handoverState) { s.TAP = "mcbr-other" },
			want: []string{"--tap", "mcbr-other", "mcbr-demo"}},
		{name: "another dataplane", edit: func(s *handoverState) { s.Dataplane = "kernel" },
			want: []string{"--dataplane", "kernel", "userspace"}},
		{name: "another community", edit: func(s *handoverState) { s.Community = "other" },
			want: []string{"community", "other", "demo"}},
		{name: "another overlay address", edit: func(s *handoverState) { s.Overlay = netip.MustParsePrefix("198.19.0.9/24") },
			want: []string{"overlay", "198.19.0.9/24", "198.19.0.1/24"}},
		{name: "another prefix length", edit: func(s *handoverState) { s.Overlay = netip.MustParsePrefix("198.19.0.1/16") },
			want: []string{"198.19.0.1/16", "198.19.0.1/24"}},
		{name: "every difference named", edit: func(s *handoverState) { s.TAP, s.Dataplane = "mcbr-x", "kernel" },
			want: []string{"--tap", "mcbr-x", "--dataplane", "kernel"}},
		{name: "kernel: another encapsulation", dataplane: "kernel",
			edit: func(s *handoverState) { s.Dataplane, s.Encap = "kernel", "vxlan" },
			want: []string{"--encap", "vxlan", "gre"}},
		{name: "kernel: same settings", dataplane: "kernel", edit: func(s *handoverState) { s.Dataplane = "kernel" }},
		{name: "not JSON", raw: []byte("not json"), takeover: true},
		{name: "empty", raw: []byte{}, takeover: true},
		{name: "not an object", raw: []byte(`["demo"]`), takeover: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, _, _ := lcDaemon(t, t.TempDir())
			if c.dataplane != "" {
				d.cfg.dataplane = c.dataplane
			}
			raw := c.raw
			if raw == nil {
				raw = lcJSON(t, lcState(c.edit))
			}
			// checkOffer reads the offer's State only.
			d.pred = &control.Predecessor{PID: 1, State: raw}
			err := d.checkOffer()
			var ue *usageError
			switch {
			case c.takeover:
				if !errors.Is(err, errTakeover) {
					t.Fatalf("err = %v, want one wrapping errTakeover", err)
				}
				if errors.As(err, &ue) {
					t.Fatalf("err = %v is a usage error; a state that does not decode is a failed takeover", err)
				}
			case len(c.want) == 0:
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
			default:
				if !errors.As(err, &ue) {
					t.Fatalf("err = %v (%T), want a *usageError", err, err)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the error does not name %q: %v", w, err)
					}
				}
				if !strings.Contains(err.Error(), "cannot take over") {
					t.Errorf("the error does not say it cannot take over: %v", err)
				}
			}
		})
	}
}

func TestRestoreState(t *testing.T) {
	canned := cannedPlaneState()
	cases := []struct {
		name      string
		inherited bool
		file      []byte // the state file; nil: none
		dir       bool   // the state file's path is a directory
		pred      []byte // the predecessor's State; nil: none
		failing   bool   // the plane's restore fails
		restored  bool
		fileLeft  bool
		logs      []string
		noLogs    []string
	}{
		{name: "same TAP", inherited: true, file: nil, restored: true,
			logs: []string{"state restored", "memberships=1", "previous_version=test"}},
		{name: "another TAP", inherited: true,
			logs: []string{"state of another TAP not restored", "tap=mcbr-old"}, noLogs: []string{"state restored"}},
		{name: "another community", inherited: true,
			logs: []string{"state of another TAP not restored"}, noLogs: []string{"state restored"}},
		{name: "no file", inherited: true, noLogs: []string{"state", "WARN"}},
		{name: "not JSON", inherited: true, file: []byte("{\"tap\": mcbr-demo"),
			logs: []string{"level=WARN", "state not restored; relearning memberships"}, noLogs: []string{"state restored"}},
		{name: "unreadable", inherited: true, dir: true, fileLeft: true,
			logs: []string{"level=WARN", "state file not read"}, noLogs: []string{"state restored"}},
		{name: "restore fails", inherited: true, failing: true, restored: true,
			logs: []string{"level=WARN", "state partly restored", "import refused"}, noLogs: []string{"state restored"}},
		{name: "not inherited", inherited: false, fileLeft: true, noLogs: []string{"state"}},
		{name: "from the predecessor", pred: []byte{}, restored: true, logs: []string{"state restored", "from=predecessor"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, p, logs := lcDaemon(t, t.TempDir())
			d.inherited = c.inherited
			if c.failing {
				p.restoreErr = errors.New("import refused")
			}
			st := lcState(nil)
			switch c.name {
			case "another TAP":
				st.TAP = "mcbr-old"
			case "another community":
				st.Community = "other"
			}
			file := c.file
			if file == nil && c.name != "no file" && c.pred == nil {
				file = lcJSON(t, st)
			}
			path := d.statePath()
			if path != filepath.Join(filepath.Dir(d.ctlPath), "x.state") {
				t.Fatalf("statePath() = %s, want x.state beside the control socket", path)
			}
			switch {
			case c.dir:
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			case file != nil:
				if err := os.WriteFile(path, file, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if c.pred != nil {
				d.pred = &control.Predecessor{State: lcJSON(t, st)}
			}

			d.restoreState()

			got := p.restoredStates()
			switch {
			case c.restored && (len(got) != 1 || !reflect.DeepEqual(got[0], canned)):
				t.Errorf("restored %s, want the state file's plane state %s", lcJSON(t, got), lcJSON(t, canned))
			case !c.restored && len(got) != 0:
				t.Errorf("restored %s, want nothing", lcJSON(t, got))
			}
			if left := lcExists(t, path); left != c.fileLeft {
				t.Errorf("state file left: %v, want %v", left, c.fileLeft)
			}
			out := logs.String()
			for _, w := range c.logs {
				if !strings.Contains(out, w) {
					t.Errorf("the log does not say %q:\n%s", w, out)
				}
			}
			for _, w := range c.noLogs {
				if strings.Contains(out, w) {
					t.Errorf("the log says %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestStateFileRoundTrip checks that what a daemon leaves for the next
// start under systemd is what the next start restores.
func TestStateFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	prev, p, logs := lcDaemon(t, dir)
	prev.peers = append(prev.peers, replicate.PeerInfo{
		Underlay: netip.MustParseAddr("198.18.0.3"), Overlay: netip.MustParsePrefix("198.19.0.3/24"), ID: "i-0123456789abcdef0",
	})

	s := prev.exportState()
	if s.Community != "demo" || s.TAP != "mcbr-demo" || s.Dataplane != "userspace" || s.Encap != "gre" ||
		s.Local != prev.self.Underlay || s.Overlay != prev.self.Overlay || !s.Started.Equal(prev.started) || s.Version != buildVersion() {
		t.Errorf("exportState() = %+v: not this daemon's settings", s)
	}
	prev.writeStateFile()
	if !strings.Contains(logs.String(), "state left for the next start") {
		t.Errorf("the log does not say the state was left:\n%s", logs.String())
	}
	if lcExists(t, prev.statePath()+".tmp") {
		t.Error("the temporary state file is left")
	}
	fi, err := os.Stat(prev.statePath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(prev.statePath())
	if err != nil {
		t.Fatal(err)
	}
	var file handoverState
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatalf("the state file does not decode: %v\n%s", err, raw)
	}
	wantPeers := []handoverPeer{
		{Underlay: netip.MustParseAddr("198.18.0.2"), Overlay: netip.MustParsePrefix("198.19.0.2/24"), ID: "peers:3"},
		{Underlay: netip.MustParseAddr("198.18.0.3"), Overlay: netip.MustParsePrefix("198.19.0.3/24"), ID: "i-0123456789abcdef0"},
	}
	if !reflect.DeepEqual(file.Peers, wantPeers) {
		t.Errorf("the state file's peers are %+v, want %+v", file.Peers, wantPeers)
	}
	if !reflect.DeepEqual(file.Plane, p.state) {
		t.Errorf("the state file's plane state is\n%s\nwant\n%s", lcJSON(t, file.Plane), lcJSON(t, p.state))
	}

	// The next start: the service manager handed the TAP back.
	next, np, nlogs := lcDaemon(t, dir)
	next.plane, next.inherited = np, true
	np.state = planeState{}
	next.restoreState()
	got := np.restoredStates()
	if len(got) != 1 || !reflect.DeepEqual(got[0], p.state) {
		t.Fatalf("the next start restored\n%s\nwant\n%s", lcJSON(t, got), lcJSON(t, p.state))
	}
	if !strings.Contains(nlogs.String(), "state restored") || !strings.Contains(nlogs.String(), "memberships=1") {
		t.Errorf("the log does not say the state was restored:\n%s", nlogs.String())
	}
	if lcExists(t, next.statePath()) {
		t.Error("the state file is left after the restore: a third start would restore it again")
	}
}

// successorResult is what a successor saw of a handover.
type successorResult struct {
	pred  *control.Predecessor
	err   error    // Takeover's
	files []string // the names of the descriptors offered, sorted
	state []byte
	act   error // what the successor did after the offer
}

// lcSuccessor takes over from the daemon at path, then does act with the
// offer. The predecessor it returns is closed when the test ends.
func lcSuccessor(t *testing.T, path string, act func(*control.Predecessor) error) <-chan successorResult {
	t.Helper()
	ch := make(chan successorResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pred, err := control.Takeover(ctx, path)
		if err != nil {
			ch <- successorResult{err: err}
			return
		}
		r := successorResult{pred: pred, state: pred.State}
		for name := range pred.Files {
			r.files = append(r.files, name)
		}
		slices.Sort(r.files)
		r.act = act(pred)
		ch <- r
	}()
	t.Cleanup(func() {
		select {
		case r := <-ch:
			if r.pred != nil {
				r.pred.Close()
			}
		default:
		}
	})
	return ch
}

// lcHandOverDaemon is lcDaemon serving its control socket, with a pipe for
// the data plane's descriptor.
func lcHandOverDaemon(t *testing.T) (*daemon, *recordingPlane, *lcLogBuffer, *os.File) {
	t.Helper()
	d, p, logs := lcDaemon(t, t.TempDir())
	r, w := lcPipe(t)
	p.fds = []control.File{lcFile(t, r, tapFDName)}
	d.ctl = lcServe(t, d.ctlPath)
	t.Cleanup(func() {
		if d.ctl != nil {
			d.ctl.Close()
		}
	})
	return d, p, logs, w
}

func lcRequest(t *testing.T, d *daemon) *control.TakeoverRequest {
	t.Helper()
	select {
	case req := <-d.ctl.Takeovers():
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("no takeover request")
		return nil
	}
}

func lcResult(t *testing.T, ch <-chan successorResult) successorResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.pred != nil {
			t.Cleanup(func() { r.pred.Close() })
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the successor did not finish")
		return successorResult{}
	}
}

func TestHandOver(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		d, p, logs, w := lcHandOverDaemon(t)
		path := d.ctlPath
		ch := lcSuccessor(t, path, func(pred *control.Predecessor) error { return pred.Ready(5 * time.Second) })
		if !d.handOver(lcRequest(t, d)) {
			t.Fatalf("handOver = false, want true; log:\n%s", logs.String())
		}
		r := lcResult(t, ch)
		if r.err != nil {
			t.Fatalf("Takeover: %v", r.err)
		}
		if r.act != nil {
			t.Errorf("the successor's Ready: %v, want nil (committed)", r.act)
		}
		if !d.handedOver {
			t.Error("d.handedOver is false after the successor committed")
		}
		if d.ctl != nil {
			t.Error("the control socket is still served after the handover")
		}
		if want := []string{controlFDName, tapFDName}; !slices.Equal(r.files, want) {
			t.Errorf("the successor received %v, want %v", r.files, want)
		}
		var s handoverState
		if err := json.Unmarshal(r.state, &s); err != nil {
			t.Fatalf("the offered state does not decode into handoverState: %v\n%s", err, r.state)
		}
		if !reflect.DeepEqual(s.Plane, p.state) {
			t.Errorf("the offered plane state is\n%s\nwant\n%s", lcJSON(t, s.Plane), lcJSON(t, p.state))
		}
		if s.TAP != d.tap || s.Community != "demo" || len(s.Peers) != 1 || s.Peers[0].Underlay != d.peers[0].Underlay {
			t.Errorf("the offered state is %+v", s)
		}
		if got := p.called("release", "close", "run"); len(got) != 0 {
			t.Errorf("handOver called %v on the plane; releasing it is close's", got)
		}
		if !strings.Contains(logs.String(), "handed over; exiting without removing anything") {
			t.Errorf("the log does not say it handed over:\n%s", logs.String())
		}

		// The data plane's descriptor went across: what is written to the
		// pipe reads from the successor's copy.
		if _, err := w.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1)
		if _, err := io.ReadFull(r.pred.Files[tapFDName], buf); err != nil || buf[0] != 'x' {
			t.Errorf("read %q, %v from the successor's tap descriptor", buf, err)
		}
		// The control socket was released, not removed: the successor
		// serves it with the listener it received.
		if !lcExists(t, path) {
			t.Fatal("the control socket file was removed")
		}
		f := r.pred.Files[controlFDName]
		delete(r.pred.Files, controlFDName)
		next, err := control.ListenFile(path, f)
		if err != nil {
			t.Fatalf("the successor cannot serve the handed-over control socket: %v", err)
		}
		defer next.Close()
		next.Serve(func() control.State { return control.State{Community: "successor"} })
		if st, err := lcFetch(path); err != nil || st.Community != "successor" {
			t.Errorf("the control socket after the handover answers %+v, %v; want the successor's state", st, err)
		}
	})

	t.Run("abort", func(t *testing.T) {
		d, p, logs, _ := lcHandOverDaemon(t)
		ch := lcSuccessor(t, d.ctlPath, func(pred *control.Predecessor) error {
			pred.Abort("why")
			return nil
		})
		if d.handOver(lcRequest(t, d)) {
			t.Fatal("handOver = true after the successor aborted")
		}
		if r := lcResult(t, ch); r.err != nil {
			t.Fatalf("Takeover: %v", r.err)
		}
		if d.handedOver {
			t.Error("d.handedOver is true after an abort")
		}
		out := logs.String()
		if !strings.Contains(out, "handover failed; forwarding again") || !strings.Contains(out, "why") {
			t.Errorf("the log does not say it forwards again, and why:\n%s", out)
		}
		if d.ctl == nil {
			t.Fatal("the control socket was closed after an abort")
		}
		if st, err := lcFetch(d.ctlPath); err != nil || st.Community != "demo" {
			t.Errorf("the control socket after an abort answers %+v, %v", st, err)
		}
		if got := p.called("release", "close"); len(got) != 0 {
			t.Errorf("handOver called %v on the plane", got)
		}

		// The daemon resumed: the next successor takes over.
		ch = lcSuccessor(t, d.ctlPath, func(pred *control.Predecessor) error { return pred.Ready(5 * time.Second) })
		if !d.handOver(lcRequest(t, d)) {
			t.Fatalf("the handover after an abort failed; log:\n%s", logs.String())
		}
		if r := lcResult(t, ch); r.err != nil || r.act != nil {
			t.Errorf("the second successor: Takeover %v, Ready %v", r.err, r.act)
		}
	})

	t.Run("silent", func(t *testing.T) {
		d, _, logs, _ := lcHandOverDaemon(t)
		ch := lcSuccessor(t, d.ctlPath, func(pred *control.Predecessor) error { return pred.Close() })
		req := lcRequest(t, d)
		start := time.Now()
		if d.handOver(req) {
			t.Fatal("handOver = true after the successor went away")
		}
		if el := time.Since(start); el > handoverAttachTimeout/2 {
			t.Errorf("handOver took %v to notice the successor had gone; the attach timeout is %v", el, handoverAttachTimeout)
		}
		lcResult(t, ch)
		if d.handedOver || d.ctl == nil {
			t.Errorf("handedOver %v, control socket served %v; want false, true", d.handedOver, d.ctl != nil)
		}
		if !strings.Contains(logs.String(), "handover failed; forwarding again") {
			t.Errorf("the log does not say it forwards again:\n%s", logs.String())
		}
		if _, err := lcFetch(d.ctlPath); err != nil {
			t.Errorf("the control socket after a silent successor: %v", err)
		}
	})
}

func TestDaemonClose(t *testing.T) {
	t.Run("handed over", func(t *testing.T) {
		d, p, _ := lcDaemon(t, t.TempDir())
		d.handedOver, d.opened = true, true
		d.close()
		if got := p.called("release", "close"); !slices.Equal(got, []string{"release"}) {
			t.Errorf("close called %v on the plane, want [release]", got)
		}
	})

	t.Run("takeover not completed", func(t *testing.T) {
		d, p, _ := lcDaemon(t, t.TempDir())
		d.ctl = lcServe(t, d.ctlPath)
		d.inherited, d.fromPred, d.opened = true, true, false
		d.close()
		if got := p.called("release", "close"); !slices.Equal(got, []string{"release"}) {
			t.Errorf("close called %v on the plane, want [release]", got)
		}
		if !lcExists(t, d.ctlPath) {
			t.Error("the control socket file was removed: it is the predecessor's, which resumes")
		}
		if d.ctl != nil {
			t.Error("d.ctl is still set")
		}
	})

	t.Run("predecessor waiting", func(t *testing.T) {
		// close while the predecessor waits for the successor to attach:
		// it is told to resume, with the reason.
		dir := t.TempDir()
		predPath := filepath.Join(dir, "pred.sock")
		srv := lcServe(t, predPath)
		defer srv.Close()
		awaited := make(chan error, 1)
		go func() {
			req := <-srv.Takeovers()
			defer req.Close()
			if err := req.Offer(lcState(nil), []control.File{{Name: controlFDName, Conn: srv.Listener()}}); err != nil {
				awaited <- err
				return
			}
			awaited <- req.Await(5 * time.Second)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pred, err := control.Takeover(ctx, predPath)
		if err != nil {
			t.Fatal(err)
		}
		d, p, logs := lcDaemon(t, dir)
		d.pred, d.inherited, d.fromPred = pred, true, true
		d.close()
		select {
		case err := <-awaited:
			if err == nil || !strings.Contains(err.Error(), "meshcast stopped before the takeover completed") {
				t.Errorf("the predecessor's Await: %v, want the successor's abort", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the predecessor was not told")
		}
		if d.pred != nil {
			t.Error("d.pred is still set")
		}
		if got := p.called("release", "close"); !slices.Equal(got, []string{"release"}) {
			t.Errorf("close called %v on the plane, want [release]", got)
		}
		if !strings.Contains(logs.String(), "takeover aborted; the running meshcast resumes") {
			t.Errorf("the log does not say the takeover was aborted:\n%s", logs.String())
		}
		if _, err := lcFetch(predPath); err != nil {
			t.Errorf("the predecessor's control socket: %v", err)
		}
	})

	t.Run("normal", func(t *testing.T) {
		d, p, _ := lcDaemon(t, t.TempDir())
		d.ctl = lcServe(t, d.ctlPath)
		d.opened = true
		stored, _ := lcPipe(t)
		d.stored = map[string]*os.File{tapFDName: stored}
		d.close()
		if got := p.called("release", "close"); !slices.Equal(got, []string{"close"}) {
			t.Errorf("close called %v on the plane, want [close]", got)
		}
		if lcExists(t, d.ctlPath) {
			t.Error("the control socket file is left")
		}
		if _, err := stored.Stat(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("a descriptor from the service manager's store is still open: %v", err)
		}
	})

	t.Run("completed takeover", func(t *testing.T) {
		// After the commit everything is this daemon's: close removes it.
		d, p, _ := lcDaemon(t, t.TempDir())
		d.ctl = lcServe(t, d.ctlPath)
		d.inherited, d.fromPred, d.opened = true, true, true
		d.close()
		if got := p.called("release", "close"); !slices.Equal(got, []string{"close"}) {
			t.Errorf("close called %v on the plane, want [close]", got)
		}
		if lcExists(t, d.ctlPath) {
			t.Error("the control socket file is left")
		}
	})

	t.Run("nothing opened", func(t *testing.T) {
		d, _, _ := lcDaemon(t, t.TempDir())
		d.plane = nil
		d.close() // such as after resolve failed
	})
}

func TestClaim(t *testing.T) {
	ctx := context.Background()

	t.Run("running without takeover", func(t *testing.T) {
		d, _, _ := lcDaemon(t, t.TempDir())
		d.plane = nil
		srv := lcServe(t, d.ctlPath)
		defer srv.Close()
		err := d.claim(ctx)
		if !errors.Is(err, errAlreadyRunning) {
			t.Fatalf("claim: %v, want an error wrapping errAlreadyRunning", err)
		}
		for _, w := range []string{"--takeover", "community demo", d.ctlPath} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("the error does not mention %q: %v", w, err)
			}
		}
		if d.ctl != nil {
			t.Error("d.ctl is set")
		}
		if _, err := lcFetch(d.ctlPath); err != nil {
			t.Errorf("the running daemon's socket after claim: %v", err)
		}
	})

	t.Run("none running", func(t *testing.T) {
		d, _, logs := lcDaemon(t, t.TempDir())
		d.plane = nil
		if err := d.claim(ctx); err != nil {
			t.Fatal(err)
		}
		defer d.ctl.Close()
		if d.ctl.Path() != d.ctlPath || !lcExists(t, d.ctlPath) {
			t.Errorf("claim did not listen on %s", d.ctlPath)
		}
		if strings.Contains(logs.String(), "take over") {
			t.Errorf("the log speaks of a takeover without --takeover:\n%s", logs.String())
		}
	})

	for _, stale := range []bool{false, true} {
		name := "takeover, none running"
		if stale {
			name = "takeover, stale socket"
		}
		t.Run(name, func(t *testing.T) {
			d, _, logs := lcDaemon(t, t.TempDir())
			d.plane, d.cfg.takeover = nil, true
			if stale {
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.ctlPath, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				ln.SetUnlinkOnClose(false)
				ln.Close()
			}
			if err := d.claim(ctx); err != nil {
				t.Fatalf("claim --takeover with no meshcast running: %v", err)
			}
			defer d.ctl.Close()
			if !strings.Contains(logs.String(), "no meshcast to take over; starting") {
				t.Errorf("the log does not say there was none to take over:\n%s", logs.String())
			}
			if d.pred != nil || d.inherited || d.fromPred {
				t.Errorf("pred %v, inherited %v, fromPred %v after starting afresh", d.pred, d.inherited, d.fromPred)
			}
			if d.ctl == nil || d.ctl.Path() != d.ctlPath {
				t.Fatal("claim did not listen on the control socket")
			}
			d.ctl.Serve(func() control.State { return control.State{Community: "new"} })
			if st, err := lcFetch(d.ctlPath); err != nil || st.Community != "new" {
				t.Errorf("the control socket answers %+v, %v", st, err)
			}
		})
	}

	// takeoverFrom runs a predecessor at the daemon's control socket that
	// offers state and its control listener (unless noControl) and a
	// pipe, and reports how the successor answered.
	takeoverFrom := func(t *testing.T, d *daemon, st handoverState, noControl bool) (*control.Server, <-chan error) {
		srv := lcServe(t, d.ctlPath)
		r, _ := lcPipe(t)
		files := []control.File{lcFile(t, r, tapFDName)}
		if !noControl {
			files = append(files, control.File{Name: controlFDName, Conn: srv.Listener()})
		}
		awaited := make(chan error, 1)
		go func() {
			req := <-srv.Takeovers()
			defer req.Close()
			if err := req.Offer(st, files); err != nil {
				awaited <- fmt.Errorf("offer: %w", err)
				return
			}
			awaited <- req.Await(5 * time.Second)
		}()
		return srv, awaited
	}
	wait := func(t *testing.T, awaited <-chan error) error {
		t.Helper()
		select {
		case err := <-awaited:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("the predecessor heard nothing")
			return nil
		}
	}

	t.Run("takeover", func(t *testing.T) {
		d, _, logs := lcDaemon(t, t.TempDir())
		d.plane, d.cfg.takeover = nil, true
		srv, awaited := takeoverFrom(t, d, lcState(nil), false)
		defer srv.Close()
		if err := d.claim(ctx); err != nil {
			t.Fatalf("claim --takeover: %v", err)
		}
		if d.pred == nil || !d.inherited || !d.fromPred {
			t.Fatalf("pred %v, inherited %v, fromPred %v after the offer", d.pred, d.inherited, d.fromPred)
		}
		if d.ctl == nil || d.ctl.Path() != d.ctlPath {
			t.Fatal("claim does not hold the handed-over control socket")
		}
		if _, ok := d.pred.Files[controlFDName]; ok {
			t.Error("the control socket's descriptor is left in the offer's files")
		}
		if d.pred.Files[tapFDName] == nil {
			t.Error("the data plane's descriptor is not in the offer's files")
		}
		if !strings.Contains(logs.String(), "taking over") {
			t.Errorf("the log does not say it takes over:\n%s", logs.String())
		}
		d.abortTakeover(errors.New("end of the test"))
		if err := wait(t, awaited); err == nil || !strings.Contains(err.Error(), "end of the test") {
			t.Errorf("the predecessor's Await: %v, want the abort", err)
		}
		if d.pred != nil {
			t.Error("d.pred is still set after abortTakeover")
		}
		d.ctl.Release()
	})

	t.Run("takeover, settings differ", func(t *testing.T) {
		d, _, logs := lcDaemon(t, t.TempDir())
		d.plane, d.cfg.takeover = nil, true
		srv, awaited := takeoverFrom(t, d, lcState(func(s *handoverState) { s.TAP = "mcbr-other" }), false)
		defer srv.Close()
		err := d.claim(ctx)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--tap") {
			t.Fatalf("claim: %v, want a usage error naming --tap", err)
		}
		if err := wait(t, awaited); err == nil || !strings.Contains(err.Error(), "--tap") {
			t.Errorf("the predecessor's Await: %v, want an abort that names --tap", err)
		}
		if d.pred != nil || d.ctl != nil {
			t.Errorf("pred %v, ctl %v after a refused offer", d.pred, d.ctl)
		}
		if !strings.Contains(logs.String(), "takeover aborted") {
			t.Errorf("the log does not say the takeover was aborted:\n%s", logs.String())
		}
		if _, err := lcFetch(d.ctlPath); err != nil {
			t.Errorf("the predecessor's control socket after the abort: %v", err)
		}
	})

	t.Run("takeover, no control socket", func(t *testing.T) {
		d, _, _ := lcDaemon(t, t.TempDir())
		d.plane, d.cfg.takeover = nil, true
		srv, awaited := takeoverFrom(t, d, lcState(nil), true)
		defer srv.Close()
		err := d.claim(ctx)
		if !errors.Is(err, errTakeover) || !strings.Contains(err.Error(), "no control socket") {
			t.Fatalf("claim: %v, want an errTakeover for the missing control socket", err)
		}
		if err := wait(t, awaited); err == nil || !strings.Contains(err.Error(), "aborted") {
			t.Errorf("the predecessor's Await: %v, want an abort", err)
		}
		if d.pred != nil || d.ctl != nil {
			t.Errorf("pred %v, ctl %v after a failed takeover", d.pred, d.ctl)
		}
	})
}

// TestOpenMetricsInherited checks that a successor serves the metrics on
// the predecessor's listener when the setting asks for its address, and on
// its own otherwise.
func TestOpenMetricsInherited(t *testing.T) {
	cases := []struct {
		name   string
		listen string                   // the predecessor's --metrics
		want   func(port string) string // the successor's
		keep   bool
	}{
		{name: "same address", listen: "127.0.0.1:0", want: func(p string) string { return "127.0.0.1:" + p }, keep: true},
		{name: "any port", listen: "127.0.0.1:0", want: func(string) string { return "127.0.0.1:0" }, keep: true},
		{name: "another address", listen: "127.0.0.1:0", want: func(string) string { return "127.0.0.2:0" }},
		{name: "every address", listen: ":0", want: func(p string) string { return ":" + p }, keep: true},
		{name: "0.0.0.0", listen: "0.0.0.0:0", want: func(p string) string { return "0.0.0.0:" + p }, keep: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", c.listen)
			if err != nil {
				t.Skipf("cannot listen on %s: %v", c.listen, err)
			}
			defer ln.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			f, err := ln.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			d, _, logs := lcDaemon(t, t.TempDir())
			d.cfg.metrics = c.want(port)
			d.pred = &control.Predecessor{Files: map[string]*os.File{metricsFDName: f}}
			err = d.openMetrics()
			if err != nil {
				t.Fatalf("openMetrics: %v", err)
			}
			defer d.metricsrv.Close()
			if _, ok := d.pred.Files[metricsFDName]; ok {
				t.Error("the metrics descriptor is left in the offer's files")
			}
			kept := d.metricsrv.Addr() == ln.Addr().String()
			if kept != c.keep {
				t.Errorf("serves on %s with the predecessor's listener on %s: kept %v, want %v", d.metricsrv.Addr(), ln.Addr(), kept, c.keep)
			}
			if !strings.Contains(logs.String(), "serving metrics") {
				t.Errorf("the log does not say where the metrics are:\n%s", logs.String())
			}
			host, p, _ := net.SplitHostPort(d.metricsrv.Addr())
			if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
				host = "127.0.0.1"
			}
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + net.JoinHostPort(host, p) + "/")
			if err != nil {
				t.Fatalf("the metrics server does not answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET /: %s", resp.Status)
			}
		})
	}
}

// TestRunExitAlreadyRunning checks that `meshcast run` exits 2, touching
// nothing, when a daemon of the community answers its control socket and
// --takeover is not given. The daemon gets that far only with the
// privileges preflight asks for; claim comes before anything is opened.
func TestRunExitAlreadyRunning(t *testing.T) {
	if err := preflight(); err != nil {
		t.Skipf("meshcast run stops before claim here: %v", err)
	}
	local := lcHostAddr()
	if !local.IsValid() {
		t.Skip("no IPv4 address on this host's interfaces but loopback")
	}
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("LISTEN_PID", "")
	t.Setenv("LISTEN_FDS", "")
	// runDaemon sets the runtime's memory limit for the process.
	limit := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(limit)

	dir := t.TempDir()
	peer := "192.0.2.200"
	if local.String() == peer {
		peer = "192.0.2.201"
	}
	inv := filepath.Join(dir, "peers")
	if err := os.WriteFile(inv, []byte(fmt.Sprintf("%s demo,198.19.0.1/24\n%s demo,198.19.0.2/24\n", local, peer)), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "demo.sock")
	srv := lcServe(t, sock)
	defer srv.Close()
	tap := "mcbr-lctest"
	var stdout, stderr bytes.Buffer
	code := Main([]string{"run", "--peers", inv, "--local", local.String(), "--control", sock, "--tap", tap}, &stdout, &stderr)
	if code != exitUsage {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
	}
	for _, w := range []string{"already running", "--takeover"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
		}
	}
	if _, err := net.InterfaceByName(tap); err == nil {
		t.Errorf("the TAP %s was created", tap)
	}
	if _, err := lcFetch(sock); err != nil {
		t.Errorf("the running daemon's control socket: %v", err)
	}
}

// lcHostAddr returns an IPv4 address of this host that is not loopback,
// or the zero Addr.
func lcHostAddr() netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if ip = ip.Unmap(); ok && ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			return ip
		}
	}
	return netip.Addr{}
}
