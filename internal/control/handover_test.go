package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// handoverState stands for the state a daemon hands to its successor.
type handoverState struct {
	Groups     []string `json:"groups"`
	Generation int      `json:"generation"`
}

// startDaemon listens on a fresh socket and serves a state whose
// Community is community. The caller closes or releases the server.
func startDaemon(t *testing.T, community string) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(stateOf(community))
	return s, path
}

func stateOf(community string) func() State {
	return func() State { return State{Community: community, PID: os.Getpid()} }
}

// runLoop stands for the daemon's main loop: it takes one takeover request,
// answers it with answer, closes it and sends answer's result.
func runLoop(s *Server, answer func(*TakeoverRequest) error) <-chan error {
	done := make(chan error, 1)
	go func() {
		select {
		case req := <-s.Takeovers():
			err := answer(req)
			req.Close()
			done <- err
		case <-time.After(10 * time.Second):
			done <- errors.New("no takeover request within 10s")
		}
	}()
	return done
}

// loopResult waits for runLoop's result.
func loopResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon's loop did not finish")
		return nil
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func fetchCommunity(t *testing.T, path string) string {
	t.Helper()
	st, err := Fetch(testContext(t), path)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return st.Community
}

// fdSet returns this process's open descriptors and what each refers to.
func fdSet(t *testing.T) map[string]string {
	t.Helper()
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(int(dir.Fd()))
	fds := map[string]string{}
	for _, name := range names {
		// The listing's own descriptor, and one closed since, are left out.
		target, err := os.Readlink(filepath.Join("/proc/self/fd", name))
		if name == self || err != nil {
			continue
		}
		fds[name] = target
	}
	return fds
}

// fdBaseline returns the open descriptors once the runtime holds all those
// it keeps (the poller's among them).
func fdBaseline(t *testing.T) map[string]string {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "warmup.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("unix", ln.Addr().String()); err == nil {
		c.Close()
	}
	ln.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	return fdSet(t)
}

// checkNoNewFDs waits up to 5 s for the descriptors open beyond before to
// be closed (connections end in goroutines of their own), and reports
// those that stay.
func checkNoNewFDs(t *testing.T, before map[string]string) {
	t.Helper()
	var extra []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		extra = extra[:0]
		for fd, target := range fdSet(t) {
			if old, ok := before[fd]; !ok || old != target {
				extra = append(extra, fd+" -> "+target)
			}
		}
		if len(extra) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		t.Errorf("%d descriptors left open: %s", len(extra), strings.Join(extra, ", "))
	}
}

func isRefusedConn(err error) bool {
	var se syscall.Errno
	return errors.As(err, &se) && (se == syscall.ECONNREFUSED || se == syscall.ENOENT)
}

// TestHandover runs the whole handover: state and three descriptors to the
// successor, ready, commit, release, and the successor serving the same
// socket, which never refuses a connection on the way.
func TestHandover(t *testing.T) {
	before := fdBaseline(t)
	ctx := testContext(t)
	old, path := startDaemon(t, "old")
	if c := fetchCommunity(t, path); c != "old" {
		t.Fatalf("before the handover: community %q", c)
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	table, err := os.Create(filepath.Join(t.TempDir(), "table"))
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	if _, err := table.WriteString("239.1.1.1 via 198.18.0.2\n"); err != nil {
		t.Fatal(err)
	}
	want := handoverState{Groups: []string{"239.1.1.1", "239.2.2.2"}, Generation: 7}

	done := runLoop(old, func(req *TakeoverRequest) error {
		pc, err := pw.SyscallConn()
		if err != nil {
			return err
		}
		tc, err := table.SyscallConn()
		if err != nil {
			return err
		}
		files := []File{{"pipe", pc}, {"table", tc}, {"control", old.Listener()}}
		if err := req.Offer(want, files); err != nil {
			return fmt.Errorf("offer: %w", err)
		}
		if err := req.Await(10 * time.Second); err != nil {
			return fmt.Errorf("await: %w", err)
		}
		return req.Commit()
	})

	p, err := Takeover(ctx, path)
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	defer p.Close()
	if p.PID != os.Getpid() {
		t.Errorf("PID %d, want %d", p.PID, os.Getpid())
	}
	var got handoverState
	if err := json.Unmarshal(p.State, &got); err != nil {
		t.Fatalf("state %s: %v", p.State, err)
	}
	if !slices.Equal(got.Groups, want.Groups) || got.Generation != want.Generation {
		t.Errorf("state %+v, want %+v", got, want)
	}
	var names []string
	for name := range p.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"control", "pipe", "table"}) {
		t.Fatalf("files %v", names)
	}

	// The pipe's write end: what the successor writes reaches the read end
	// the daemon kept.
	if _, err := p.Files["pipe"].Write([]byte("frame")); err != nil {
		t.Fatalf("write into the handed-over pipe: %v", err)
	}
	buf := make([]byte, 16)
	pr.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := pr.Read(buf); err != nil || string(buf[:n]) != "frame" {
		t.Fatalf("read end: %q %v", buf[:n], err)
	}
	// The daemon's own descriptors stay open: it sent duplicates.
	if _, err := pw.Write([]byte("x")); err != nil {
		t.Errorf("the daemon's write end after the offer: %v", err)
	}
	// The file is the same open file.
	fi, err := table.Stat()
	if err != nil {
		t.Fatal(err)
	}
	gi, err := p.Files["table"].Stat()
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi, gi) {
		t.Errorf("the handed-over table is another file")
	}
	if n, err := p.Files["table"].ReadAt(buf[:9], 0); err != nil || string(buf[:n]) != "239.1.1.1" {
		t.Errorf("read the handed-over table: %q %v", buf[:n], err)
	}
	// The listener is the daemon's, still in its hands until commit.
	if c := fetchCommunity(t, path); c != "old" {
		t.Errorf("before commit: community %q", c)
	}

	if err := p.Ready(10 * time.Second); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if err := loopResult(t, done); err != nil {
		t.Fatalf("daemon: %v", err)
	}

	// The daemon stops serving and leaves the socket.
	if err := old.Release(); err != nil {
		t.Fatalf("release: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("after release: %v %v", fi, err)
	}
	// Right away, before the successor serves, the socket accepts: the
	// successor holds the listening socket.
	early, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("dial between release and the successor's serving: %v", err)
	}
	defer early.Close()
	type fetched struct {
		st  State
		err error
	}
	fc := make(chan fetched, 1)
	go func() {
		st, err := Fetch(ctx, path)
		fc <- fetched{st, err}
	}()
	select {
	case r := <-fc:
		t.Fatalf("fetch answered before the successor serves: %+v %v", r.st, r.err)
	case <-time.After(100 * time.Millisecond):
	}

	ns, err := ListenFile(path, p.Files["control"])
	delete(p.Files, "control")
	if err != nil {
		t.Fatalf("listen on the handed-over socket: %v", err)
	}
	ns.Serve(stateOf("new"))
	select {
	case r := <-fc:
		if r.err != nil || r.st.Community != "new" {
			t.Errorf("fetch across the handover: %+v %v", r.st, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch made after the release got no answer")
	}
	// The connection made right after the release is the successor's too.
	early.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(early, "GET /v1/state HTTP/1.1\r\nHost: meshcast\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(early), nil)
	if err != nil {
		t.Fatalf("the early connection: %v", err)
	}
	var st State
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Community != "new" {
		t.Errorf("the early connection: %+v %v", st, err)
	}
	if c := fetchCommunity(t, path); c != "new" {
		t.Errorf("after the handover: community %q", c)
	}

	// Close removes the socket, which stays the successor's to remove.
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the successor's Close left the socket: %v", err)
	}
	p.Close()
	early.Close()
	pr.Close()
	pw.Close()
	table.Close()
	checkNoNewFDs(t, before)
}

// handOver hands the daemon old over to a successor in this process, with
// the control socket only, and returns the successor's server, which
// starts serving gap after the daemon's release.
func handOver(t *testing.T, old *Server, path, community string, gap time.Duration) *Server {
	t.Helper()
	done := runLoop(old, func(req *TakeoverRequest) error {
		if err := req.Offer(handoverState{Generation: 1}, []File{{"control", old.Listener()}}); err != nil {
			return err
		}
		if err := req.Await(10 * time.Second); err != nil {
			return err
		}
		return req.Commit()
	})
	p, err := Takeover(testContext(t), path)
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	defer p.Close()
	if err := p.Ready(10 * time.Second); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if err := loopResult(t, done); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	if err := old.Release(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(gap)
	ns, err := ListenFile(path, p.Files["control"])
	delete(p.Files, "control")
	if err != nil {
		t.Fatal(err)
	}
	ns.Serve(stateOf(community))
	return ns
}

// TestHandoverChain hands over three times in a row, each successor
// handing over the socket it was handed, while a client connects every
// millisecond: no connection is ever refused, and no descriptor stays
// open once the last daemon closes.
func TestHandoverChain(t *testing.T) {
	before := fdBaseline(t)
	s, path := startDaemon(t, "gen0")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var dials int
	var dialErrs []error
	dialing := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.DialTimeout("unix", path, time.Second)
			mu.Lock()
			dials++
			if err != nil {
				dialErrs = append(dialErrs, err)
			}
			mu.Unlock()
			if err == nil {
				c.Close()
			}
			if dials == 1 {
				close(dialing)
			}
			time.Sleep(time.Millisecond)
		}
	}()

	<-dialing
	for gen := 1; gen <= 3; gen++ {
		s = handOver(t, s, path, fmt.Sprintf("gen%d", gen), 20*time.Millisecond)
		if c := fetchCommunity(t, path); c != fmt.Sprintf("gen%d", gen) {
			t.Fatalf("after handover %d: community %q", gen, c)
		}
	}
	close(stop)
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections during the handovers", dials)
	for _, err := range dialErrs {
		if isRefusedConn(err) {
			t.Errorf("a connection was refused during a handover: %v", err)
		} else {
			t.Errorf("dial during a handover: %v", err)
		}
	}
	checkNoNewFDs(t, before)
}

// TestHandoverAbort: the successor aborts, the daemon's Await says why,
// and the daemon goes on serving and can be asked again.
func TestHandoverAbort(t *testing.T) {
	ctx := testContext(t)
	s, path := startDaemon(t, "old")
	defer s.Close()
	done := runLoop(s, func(req *TakeoverRequest) error {
		if err := req.Offer(handoverState{}, []File{{"control", s.Listener()}}); err != nil {
			return err
		}
		return req.Await(10 * time.Second)
	})
	p, err := Takeover(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	p.Abort("cannot attach the TAP\nmeshcast0: device busy")
	err = loopResult(t, done)
	if err == nil || !strings.Contains(err.Error(), "aborted") ||
		!strings.Contains(err.Error(), "cannot attach the TAP meshcast0: device busy") {
		t.Fatalf("await after abort: %v", err)
	}
	p.Close()
	if c := fetchCommunity(t, path); c != "old" {
		t.Errorf("after the abort: community %q", c)
	}
	// The daemon takes the next request as before.
	done = runLoop(s, func(req *TakeoverRequest) error { return req.Refuse("not now") })
	if _, err := Takeover(ctx, path); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not now") {
		t.Errorf("second takeover: %v", err)
	}
	if err := loopResult(t, done); err != nil {
		t.Error(err)
	}
}

// TestHandoverSuccessorGone: a successor that closes without a word ends
// the daemon's Await at once.
func TestHandoverSuccessorGone(t *testing.T) {
	s, path := startDaemon(t, "old")
	defer s.Close()
	var waited time.Duration
	done := runLoop(s, func(req *TakeoverRequest) error {
		if err := req.Offer(handoverState{}, []File{{"control", s.Listener()}}); err != nil {
			return err
		}
		start := time.Now()
		err := req.Await(30 * time.Second)
		waited = time.Since(start)
		return err
	})
	p, err := Takeover(testContext(t), path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	p.Close()
	err = loopResult(t, done)
	if err == nil {
		t.Fatal("Await returned nil for a successor that went away")
	}
	if !errors.Is(err, io.EOF) {
		t.Errorf("await: %v, want EOF", err)
	}
	if waited > 5*time.Second {
		t.Errorf("Await took %v to see the successor go", waited)
	}
	if c := fetchCommunity(t, path); c != "old" {
		t.Errorf("after the successor went: community %q", c)
	}
}

// TestHandoverAwaitTimeout: a successor that never answers; Await gives up
// after its timeout, and the successor's late Ready is refused.
func TestHandoverAwaitTimeout(t *testing.T) {
	s, path := startDaemon(t, "old")
	defer s.Close()
	var waited time.Duration
	done := runLoop(s, func(req *TakeoverRequest) error {
		if err := req.Offer(handoverState{}, nil); err != nil {
			return err
		}
		start := time.Now()
		err := req.Await(100 * time.Millisecond)
		waited = time.Since(start)
		return err
	})
	p, err := Takeover(testContext(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = loopResult(t, done)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("await: %v, want a timeout", err)
	}
	if waited < 100*time.Millisecond || waited > 3*time.Second {
		t.Errorf("Await(100ms) took %v", waited)
	}
	// The daemon resumed and closed the request: too late.
	if err := p.Ready(5 * time.Second); !errors.Is(err, ErrRefused) {
		t.Errorf("ready after the daemon gave up: %v", err)
	}
	if c := fetchCommunity(t, path); c != "old" {
		t.Errorf("community %q", c)
	}
}

// TestHandoverNoCommit: Ready fails, wrapping ErrRefused, unless the daemon
// answers "done".
func TestHandoverNoCommit(t *testing.T) {
	cases := []struct {
		name   string
		answer func(req *TakeoverRequest, hold <-chan struct{}) error
		want   string
	}{
		{"closed after ready", func(req *TakeoverRequest, _ <-chan struct{}) error {
			if err := req.Offer(handoverState{}, nil); err != nil {
				return err
			}
			return req.Await(10 * time.Second)
		}, "did not commit"},
		{"closed after the offer", func(req *TakeoverRequest, _ <-chan struct{}) error {
			return req.Offer(handoverState{}, nil)
		}, ""},
		{"another answer", func(req *TakeoverRequest, _ <-chan struct{}) error {
			if err := req.Offer(handoverState{}, nil); err != nil {
				return err
			}
			if err := req.Await(10 * time.Second); err != nil {
				return err
			}
			_, err := io.WriteString(req.conn, "resumed\n")
			return err
		}, `answered "resumed"`},
		{"no answer", func(req *TakeoverRequest, hold <-chan struct{}) error {
			if err := req.Offer(handoverState{}, nil); err != nil {
				return err
			}
			if err := req.Await(10 * time.Second); err != nil {
				return err
			}
			<-hold
			return nil
		}, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, path := startDaemon(t, "old")
			defer s.Close()
			hold := make(chan struct{})
			done := runLoop(s, func(req *TakeoverRequest) error { return tc.answer(req, hold) })
			p, err := Takeover(testContext(t), path)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			start := time.Now()
			err = p.Ready(300 * time.Millisecond)
			close(hold)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ready: %v, want ErrRefused and %q", err, tc.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Ready took %v", d)
			}
			if err := loopResult(t, done); err != nil {
				t.Logf("daemon: %v", err)
			}
		})
	}
}

// TestHandoverRefused: a refusal reaches the successor with its reason,
// and leaves no descriptor open on either side.
func TestHandoverRefused(t *testing.T) {
	s, path := startDaemon(t, "old")
	defer s.Close()
	before := fdBaseline(t)
	done := runLoop(s, func(req *TakeoverRequest) error {
		return req.Refuse("the snooping table is being rebuilt")
	})
	p, err := Takeover(testContext(t), path)
	if err == nil {
		p.Close()
		t.Fatal("takeover of a refusing daemon succeeded")
	}
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "the snooping table is being rebuilt") {
		t.Errorf("takeover: %v", err)
	}
	if errors.Is(err, ErrNotRunning) {
		t.Errorf("a refusal is not ErrNotRunning: %v", err)
	}
	if err := loopResult(t, done); err != nil {
		t.Error(err)
	}
	checkNoNewFDs(t, before)
	if c := fetchCommunity(t, path); c != "old" {
		t.Errorf("community %q", c)
	}
}

// TestHandoverBadOffers: offers a successor cannot take, with descriptors
// in flight; the successor closes every one it received.
func TestHandoverBadOffers(t *testing.T) {
	cases := []struct {
		name    string
		offer   func(s *Server) Offer
		refused bool
		want    string
	}{
		{"another version", func(s *Server) Offer {
			return Offer{Version: HandoverVersion + 1, PID: 1, Files: []string{"control", "pipe"}}
		}, true, "version 2"},
		{"names and descriptors differ", func(s *Server) Offer {
			return Offer{Version: HandoverVersion, PID: 1, Files: []string{"control"}}
		}, false, "names 1 descriptors and carries 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, path := startDaemon(t, "old")
			defer s.Close()
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			before := fdBaseline(t)
			done := runLoop(s, func(req *TakeoverRequest) error {
				pc, err := pw.SyscallConn()
				if err != nil {
					return err
				}
				if err := req.send(tc.offer(s), []File{{"control", s.Listener()}, {"pipe", pc}}); err != nil {
					return err
				}
				return req.Await(10 * time.Second)
			})
			p, err := Takeover(testContext(t), path)
			if err == nil {
				p.Close()
				t.Fatal("takeover succeeded")
			}
			if errors.Is(err, ErrRefused) != tc.refused || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("takeover: %v, want %q (ErrRefused: %v)", err, tc.want, tc.refused)
			}
			if err := loopResult(t, done); err == nil {
				t.Error("the daemon's Await returned nil")
			}
			checkNoNewFDs(t, before)
		})
	}
}

// TestHandoverDuplicateNames: of two descriptors by the same name the
// successor keeps the first and closes the second.
func TestHandoverDuplicateNames(t *testing.T) {
	s, path := startDaemon(t, "old")
	defer s.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	before := fdBaseline(t)
	done := runLoop(s, func(req *TakeoverRequest) error {
		pc, err := pw.SyscallConn()
		if err != nil {
			return err
		}
		if err := req.Offer(nil, []File{{"x", pc}, {"x", s.Listener()}}); err != nil {
			return err
		}
		return req.Await(10 * time.Second)
	})
	p, err := Takeover(testContext(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Files) != 1 {
		t.Errorf("files %v", p.Files)
	}
	fi, _ := pw.Stat()
	if gi, err := p.Files["x"].Stat(); err != nil || !os.SameFile(fi, gi) {
		t.Errorf("x is not the first descriptor: %v", err)
	}
	p.Abort("test")
	p.Close()
	loopResult(t, done)
	checkNoNewFDs(t, before)
}

// TestOfferErrors: offers the daemon cannot send fail before anything is
// sent, and the request can still be refused.
func TestOfferErrors(t *testing.T) {
	s, path := startDaemon(t, "old")
	defer s.Close()
	done := runLoop(s, func(req *TakeoverRequest) error {
		many := make([]File, maxOfferFiles+1)
		for i := range many {
			many[i] = File{fmt.Sprint("f", i), s.Listener()}
		}
		if err := req.Offer(handoverState{}, many); err == nil {
			return errors.New("an offer of too many descriptors was sent")
		}
		if err := req.Offer(handoverState{}, []File{{"none", nil}}); err == nil {
			return errors.New("an offer of no descriptor was sent")
		}
		if err := req.Offer(make(chan int), nil); err == nil {
			return errors.New("an offer of a state that is not JSON was sent")
		}
		return req.Refuse("cannot offer")
	})
	if _, err := Takeover(testContext(t), path); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "cannot offer") {
		t.Errorf("takeover: %v", err)
	}
	if err := loopResult(t, done); err != nil {
		t.Error(err)
	}
}

// TestTakeoverNotRunning: no socket, no directory, and a socket nobody
// listens on (a killed daemon's) all mean no daemon.
func TestTakeoverNotRunning(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "none.sock"), filepath.Join(dir, "none", "d.sock"), stale} {
		p, err := Takeover(testContext(t), path)
		if err == nil {
			p.Close()
		}
		if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want ErrNotRunning", path, err)
		}
	}
}

// TestTakeoverUnknownRequest: a server that does not know the request (a
// meshcast from before the handover) answers 404, which the error quotes.
func TestTakeoverUnknownRequest(t *testing.T) {
	before := fdBaseline(t)
	path := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	_, err = Takeover(testContext(t), path)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `"HTTP/1.1 404 Not Found"`) {
		t.Errorf("takeover: %v", err)
	}
	srv.Close()
	checkNoNewFDs(t, before)
}

// TestTakeoverBusy: a request the loop does not take in time is refused
// as busy, and is not delivered later; so is a second successor while a
// handover is under way.
func TestTakeoverBusy(t *testing.T) {
	defer func(d time.Duration) { takeoverBusy = d }(takeoverBusy)
	takeoverBusy = 200 * time.Millisecond
	ctx := testContext(t)
	s, path := startDaemon(t, "old")
	defer s.Close()

	start := time.Now()
	_, err := Takeover(ctx, path)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("takeover of a busy daemon: %v", err)
	}
	if d := time.Since(start); d < takeoverBusy {
		t.Errorf("refused as busy after %v", d)
	}
	select {
	case req := <-s.Takeovers():
		req.Close()
		t.Fatal("the refused request was delivered")
	case <-time.After(50 * time.Millisecond):
	}

	// The loop holds a first request while a second successor asks.
	release := make(chan struct{})
	done := runLoop(s, func(req *TakeoverRequest) error {
		<-release
		return req.Refuse("first")
	})
	first := make(chan error, 1)
	go func() {
		_, err := Takeover(ctx, path)
		first <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := Takeover(ctx, path); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "busy") {
		t.Errorf("second takeover: %v", err)
	}
	close(release)
	if err := <-first; !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "first") {
		t.Errorf("first takeover: %v", err)
	}
	if err := loopResult(t, done); err != nil {
		t.Error(err)
	}
}

// TestTakeoverContext: the context bounds the whole exchange, not only the
// dial; the daemon sees the successor go and resumes.
func TestTakeoverContext(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		t.Run(fmt.Sprint("deadline=", deadline), func(t *testing.T) {
			s, path := startDaemon(t, "old")
			defer s.Close()
			before := fdBaseline(t)
			gone := make(chan struct{})
			done := runLoop(s, func(req *TakeoverRequest) error {
				<-gone
				// The offer may still go into the socket's buffer.
				if err := req.Offer(handoverState{}, []File{{"control", s.Listener()}}); err != nil {
					return nil
				}
				if err := req.Await(10 * time.Second); err == nil {
					return errors.New("Await returned nil for a successor that gave up")
				}
				return nil
			})
			var ctx context.Context
			var cancel context.CancelFunc
			if deadline {
				ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
			} else {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			defer cancel()
			start := time.Now()
			p, err := Takeover(ctx, path)
			close(gone)
			if err == nil {
				p.Close()
				t.Fatal("takeover succeeded")
			}
			if !errors.Is(err, ctx.Err()) {
				t.Errorf("takeover: %v, want %v", err, ctx.Err())
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Takeover took %v after its context ended", d)
			}
			if err := loopResult(t, done); err != nil {
				t.Error(err)
			}
			checkNoNewFDs(t, before)
			if c := fetchCommunity(t, path); c != "old" {
				t.Errorf("community %q", c)
			}
		})
	}
}

// TestTakeoverNonRoot: a successor of another user is refused by the
// daemon (SO_PEERCRED), and nothing reaches the loop. The client runs on a
// thread of its own whose effective user is nobody; its filesystem user
// stays root, so the private directory and socket are reachable and only
// the daemon's check stands in the way.
func TestTakeoverNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	s, path := startDaemon(t, "old")
	defer s.Close()
	type result struct {
		err  error
		skip string
	}
	rc := make(chan result, 1)
	go func() {
		// The thread is not unlocked: it ends with this goroutine, and
		// its user with it.
		runtime.LockOSThread()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 65534, ^uintptr(0)); e != 0 {
			rc <- result{skip: "setresuid: " + e.Error()}
			return
		}
		unix.RawSyscall(unix.SYS_SETFSUID, 0, 0, 0)
		if euid := unix.Geteuid(); euid != 65534 {
			rc <- result{skip: fmt.Sprintf("the thread's effective user is %d", euid)}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, err := Takeover(ctx, path)
		if err == nil {
			p.Close()
		}
		rc <- result{err: err}
	}()
	r := <-rc
	if r.skip != "" {
		t.Skip(r.skip)
	}
	if !errors.Is(r.err, ErrRefused) || !strings.Contains(r.err.Error(), "403 Forbidden") {
		t.Errorf("takeover as nobody: %v", r.err)
	}
	select {
	case req := <-s.Takeovers():
		req.Close()
		t.Error("a request of another user reached the loop")
	case <-time.After(50 * time.Millisecond):
	}
	// Root is still served.
	done := runLoop(s, func(req *TakeoverRequest) error { return req.Refuse("root") })
	if _, err := Takeover(testContext(t), path); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "root") {
		t.Errorf("takeover as root: %v", err)
	}
	loopResult(t, done)
}

// TestDecodeOffer checks the frame's decoding case by case.
func TestDecodeOffer(t *testing.T) {
	frame := func(body string) ([8]byte, []byte) {
		var hdr [8]byte
		copy(hdr[:], "MCHO")
		hdr[4], hdr[5], hdr[6], hdr[7] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
		return hdr, []byte(body)
	}
	good, err := json.Marshal(Offer{Version: HandoverVersion, PID: 42, Files: []string{"tap", "control"}, State: json.RawMessage(`{"a":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		hdr     [8]byte
		body    []byte
		nfiles  int
		want    string // "" for an accepted offer
		refused bool
	}{
		{"good", func() [8]byte { h, _ := frame(string(good)); return h }(), good, 2, "", false},
		{"http", [8]byte([]byte("HTTP/1.1")), nil, 0, errNotOffer.Error(), false},
		{"too big", [8]byte{'M', 'C', 'H', 'O', 0x04, 0, 0, 1}, nil, 0, "at most", false},
		{"short body", func() [8]byte { h, _ := frame("{}}"); return h }(), []byte("{}"), 0, "3 bytes, 2 read", false},
		{"not JSON", func() [8]byte { h, _ := frame("{"); return h }(), []byte("{"), 0, "bad offer", false},
		{"refusal", func() [8]byte { h, _ := frame(`{"version":1,"error":"busy"}`); return h }(), []byte(`{"version":1,"error":"busy"}`), 0, "busy", true},
		{"version", func() [8]byte { h, _ := frame(`{"version":9}`); return h }(), []byte(`{"version":9}`), 0, "version 9", true},
		{"files", func() [8]byte { h, _ := frame(string(good)); return h }(), good, 1, "names 2 descriptors and carries 1", false},
	}
	for _, tc := range cases {
		o, err := decodeOffer(tc.hdr, tc.body, tc.nfiles)
		if tc.want == "" {
			if err != nil || o.PID != 42 || !slices.Equal(o.Files, []string{"tap", "control"}) || string(o.State) != `{"a":1}` {
				t.Errorf("%s: %+v %v", tc.name, o, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrRefused) != tc.refused {
			t.Errorf("%s: %v, want %q (ErrRefused: %v)", tc.name, err, tc.want, tc.refused)
		}
	}
	// What encodeOffer writes, decodeOffer reads.
	hdr, body, err := encodeOffer(Offer{Version: HandoverVersion, PID: 7, Files: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if o, err := decodeOffer(hdr, body, 1); err != nil || o.PID != 7 || !slices.Equal(o.Files, []string{"a"}) {
		t.Errorf("round trip: %+v %v", o, err)
	}
}

// FuzzDecodeOffer: arbitrary frames never panic, and an accepted offer is
// of this version, no refusal, and names as many descriptors as came.
func FuzzDecodeOffer(f *testing.F) {
	seed := func(o Offer, nfiles int) {
		hdr, body, err := encodeOffer(o)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(hdr[:], body...), nfiles)
	}
	seed(Offer{Version: HandoverVersion, PID: 1, Files: []string{"tap", "rx", "control"}, State: json.RawMessage(`{"groups":["239.1.1.1"]}`)}, 3)
	seed(Offer{Version: HandoverVersion, PID: 1, Files: []string{}}, 0)
	seed(Offer{Version: HandoverVersion, PID: 1, Error: "busy"}, 0)
	seed(Offer{Version: 2, Files: []string{"a"}}, 1)
	f.Add([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), 0)
	f.Add([]byte("MCHO\xff\xff\xff\xff"), 0)
	f.Add([]byte("MCHO\x00\x00\x00\x04null"), 0)
	f.Add([]byte{}, -1)
	f.Fuzz(func(t *testing.T, data []byte, nfiles int) {
		var hdr [8]byte
		copy(hdr[:], data)
		body := data[min(len(data), 8):]
		check := func(hdr [8]byte) {
			o, err := decodeOffer(hdr, body, nfiles)
			if err != nil {
				return
			}
			if o.Version != HandoverVersion || o.Error != "" || len(o.Files) != nfiles {
				t.Fatalf("accepted %+v with %d descriptors", o, nfiles)
			}
			// An accepted offer goes through the encoding again.
			hdr2, body2, err := encodeOffer(o)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", o, err)
			}
			o2, err := decodeOffer(hdr2, body2, nfiles)
			if err != nil || o2.PID != o.PID || !slices.Equal(o2.Files, o.Files) {
				t.Fatalf("round trip of %+v: %+v %v", o, o2, err)
			}
			var c1, c2 bytes.Buffer
			json.Compact(&c1, o.State)
			json.Compact(&c2, o2.State)
			if c1.String() != c2.String() {
				t.Fatalf("round trip of the state %q: %q", o.State, o2.State)
			}
		}
		// The frame as it came, and with the length the body has, which
		// takes arbitrary bodies past the header.
		check(hdr)
		copy(hdr[:4], offerMagic[:])
		hdr[4], hdr[5], hdr[6], hdr[7] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
		check(hdr)
	})
}
