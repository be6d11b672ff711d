package control

// The handover of a running daemon to its successor (`meshcast run
// --takeover`), over the control socket:
//
//	successor   POST /v1/takeover
//	daemon      pauses forwarding; one frame: "MCHO", the body's length
//	            (uint32, big endian), a JSON Offer; the descriptors ride on
//	            the frame's first byte (SCM_RIGHTS)
//	successor   attaches the descriptors and the state; "ready\n", or
//	            "abort: REASON\n"
//	daemon      on ready: stops serving, "done\n", and exits without
//	            removing anything; on abort, EOF or a timeout: resumes
//	successor   starts forwarding once it reads "done"
//
// The daemon commits only when it writes "done": until then the successor
// has not forwarded a frame and the daemon can resume as if nothing had
// happened. A daemon that refuses sends an Offer with Error set. A daemon
// too old to know the request answers 404 Not Found, which the successor
// reports.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HandoverVersion is the version of the Offer's state. A successor refuses
// an offer of another version, and the daemon resumes.
const HandoverVersion = 1

// maxOfferBytes bounds the JSON of an offer: the state of a full snooping
// table and MAC table is a few MiB.
const maxOfferBytes = 64 << 20

// maxOfferFiles is the most descriptors an offer carries.
const maxOfferFiles = 8

var offerMagic = [4]byte{'M', 'C', 'H', 'O'}

// takeoverBusy is how long a request waits for the daemon's loop to take
// it before it is refused as busy.
var takeoverBusy = 5 * time.Second

// errNotOffer means the daemon answered something other than an offer.
var errNotOffer = errors.New("not a handover offer")

// ErrNotRunning means no daemon answers on the control socket.
var ErrNotRunning = errors.New("no meshcast is running")

// ErrRefused means the running daemon refused or failed the handover; it
// goes on running.
var ErrRefused = errors.New("the running meshcast refused the handover")

// Offer is what a daemon hands to its successor.
type Offer struct {
	Version int    `json:"version"`
	PID     int    `json:"pid"`
	Error   string `json:"error,omitempty"`
	// Files names the descriptors passed with the offer, in order.
	Files []string `json:"files"`
	// State is the daemon's state, in the form its command defines.
	State json.RawMessage `json:"state,omitempty"`
}

// File is a descriptor to hand over, by name.
type File struct {
	Name string
	Conn syscall.RawConn
}

// TakeoverRequest is a successor asking this daemon to hand over. The
// daemon answers it with Offer or Refuse, then Await, then Commit; Close
// releases it in every case.
type TakeoverRequest struct {
	conn *net.UnixConn
	rd   *bufio.Reader
}

// Takeovers delivers the successors' requests: the daemon's main loop
// receives from it. Requests that find the loop busy are refused.
func (s *Server) Takeovers() <-chan *TakeoverRequest { return s.takeovers }

func (s *Server) serveTakeover(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hand over on this connection", http.StatusInternalServerError)
		return
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return
	}
	uc.SetDeadline(time.Time{})
	req := &TakeoverRequest{conn: uc, rd: brw.Reader}
	select {
	case s.takeovers <- req:
	case <-time.After(takeoverBusy):
		req.Refuse("the daemon is busy (another handover or a shutdown is under way)")
		req.Close()
	}
}

// Refuse tells the successor why this daemon does not hand over.
func (r *TakeoverRequest) Refuse(reason string) error {
	return r.send(Offer{Version: HandoverVersion, PID: os.Getpid(), Error: reason}, nil)
}

// Offer sends the state and a duplicate of each file's descriptor. The
// caller must have stopped using the files for I/O.
func (r *TakeoverRequest) Offer(state any, files []File) error {
	raw, err := json.Marshal(state)
	if err != nil {
		return err
	}
	o := Offer{Version: HandoverVersion, PID: os.Getpid(), State: raw, Files: []string{}}
	for _, f := range files {
		o.Files = append(o.Files, f.Name)
	}
	return r.send(o, files)
}

func (r *TakeoverRequest) send(o Offer, files []File) error {
	if len(files) > maxOfferFiles {
		return fmt.Errorf("handover: %d descriptors, at most %d", len(files), maxOfferFiles)
	}
	hdr, body, err := encodeOffer(o)
	if err != nil {
		return err
	}
	// The descriptors are duplicated for the message and closed once
	// sent: the kernel holds its own references while they are in flight.
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, f := range files {
		if f.Conn == nil {
			return fmt.Errorf("handover: %s: no descriptor", f.Name)
		}
		var fd int
		var derr error
		if err := f.Conn.Control(func(ofd uintptr) { fd, derr = unix.FcntlInt(ofd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			return fmt.Errorf("handover: %s: %w", f.Name, err)
		}
		if derr != nil {
			return fmt.Errorf("handover: %s: dup: %w", f.Name, derr)
		}
		fds = append(fds, fd)
	}
	r.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := r.conn.WriteMsgUnix(hdr[:], oob, nil); err != nil {
		return fmt.Errorf("handover: send descriptors: %w", err)
	}
	if _, err := r.conn.Write(body); err != nil {
		return fmt.Errorf("handover: send state: %w", err)
	}
	return nil
}

// encodeOffer returns an offer's frame: the header and the JSON body.
func encodeOffer(o Offer) (hdr [8]byte, body []byte, err error) {
	body, err = json.Marshal(o)
	if err != nil {
		return hdr, nil, err
	}
	if len(body) > maxOfferBytes {
		return hdr, nil, fmt.Errorf("handover: offer of %d bytes, at most %d", len(body), maxOfferBytes)
	}
	copy(hdr[:4], offerMagic[:])
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(body)))
	return hdr, body, nil
}

// offerSize checks an offer's header and returns the length of its body.
// A header that is not an offer's gives errNotOffer.
func offerSize(hdr [8]byte) (int, error) {
	if [4]byte(hdr[:4]) != offerMagic {
		return 0, errNotOffer
	}
	size := binary.BigEndian.Uint32(hdr[4:])
	if size > maxOfferBytes {
		return 0, fmt.Errorf("offer of %d bytes, at most %d", size, maxOfferBytes)
	}
	return int(size), nil
}

// decodeOffer decodes an offer's frame, which came with nfiles
// descriptors. A refusal, and an offer this successor cannot take, give an
// error wrapping ErrRefused; a malformed frame gives another error.
func decodeOffer(hdr [8]byte, body []byte, nfiles int) (Offer, error) {
	size, err := offerSize(hdr)
	if err != nil {
		return Offer{}, err
	}
	if len(body) != size {
		return Offer{}, fmt.Errorf("offer of %d bytes, %d read", size, len(body))
	}
	var o Offer
	if err := json.Unmarshal(body, &o); err != nil {
		return Offer{}, fmt.Errorf("bad offer: %w", err)
	}
	if o.Error != "" {
		return Offer{}, fmt.Errorf("%w: %s", ErrRefused, o.Error)
	}
	if o.Version != HandoverVersion {
		return Offer{}, fmt.Errorf("%w: its handover is version %d, this meshcast reads version %d", ErrRefused, o.Version, HandoverVersion)
	}
	if len(o.Files) != nfiles {
		return Offer{}, fmt.Errorf("offer names %d descriptors and carries %d", len(o.Files), nfiles)
	}
	return o, nil
}

// Await waits up to timeout for the successor to say it is ready. It
// returns nil on "ready", and an error that says why otherwise (the
// successor aborted, went away or took too long): the daemon then resumes.
func (r *TakeoverRequest) Await(timeout time.Duration) error {
	r.conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := r.rd.ReadString('\n')
	if err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	if line == "ready" {
		return nil
	}
	if reason, ok := strings.CutPrefix(line, "abort: "); ok {
		return fmt.Errorf("successor aborted: %s", reason)
	}
	return fmt.Errorf("successor: unexpected %q", line)
}

// Commit tells the successor to start: from here on, this daemon must not
// touch the handed-over descriptors again.
func (r *TakeoverRequest) Commit() error {
	r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := io.WriteString(r.conn, "done\n")
	return err
}

// Close closes the connection.
func (r *TakeoverRequest) Close() error { return r.conn.Close() }

// Predecessor is the daemon a successor takes over from, after its offer.
type Predecessor struct {
	PID   int
	State json.RawMessage
	// Files are the descriptors by name; the successor owns them and
	// closes those it does not use.
	Files map[string]*os.File
	conn  *net.UnixConn
}

// Takeover asks the daemon at path to hand over, and returns its offer.
// With no daemon at path, the error wraps ErrNotRunning; a daemon that
// refuses gives an error wrapping ErrRefused, and goes on running. Once
// ctx is done, Takeover gives up with an error wrapping ctx.Err(), and the
// daemon resumes.
func Takeover(ctx context.Context, path string) (*Predecessor, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		var se syscall.Errno
		if errors.As(err, &se) && (se == syscall.ENOENT || se == syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s", ErrNotRunning, path)
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	uc := c.(*net.UnixConn)
	ok := false
	defer func() {
		if !ok {
			uc.Close()
		}
	}()
	// The context bounds the whole exchange, not only the dial: once it is
	// done, a deadline in the past ends any read or write under way.
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) error {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if _, err := io.WriteString(uc, "POST /v1/takeover HTTP/1.1\r\nHost: meshcast\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return nil, fail(err)
	}
	var hdr [8]byte
	oob := make([]byte, unix.CmsgSpace(maxOfferFiles*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(hdr[:], oob)
	if err != nil {
		return nil, fail(err)
	}
	files, ferr := parseRights(oob[:oobn])
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	if ferr != nil {
		closeAll()
		return nil, fail(ferr)
	}
	if n < len(hdr) {
		if _, err := io.ReadFull(uc, hdr[n:]); err != nil {
			closeAll()
			return nil, fail(err)
		}
	}
	size, err := offerSize(hdr)
	if errors.Is(err, errNotOffer) {
		closeAll()
		// An HTTP answer: a daemon that does not hand over.
		line, _ := bufio.NewReader(io.MultiReader(strings.NewReader(string(hdr[:])), uc)).ReadString('\n')
		return nil, fmt.Errorf("%w: it answered %q (a version of meshcast without --takeover?)", ErrRefused, strings.TrimSpace(line))
	}
	if err != nil {
		closeAll()
		return nil, fail(err)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(uc, body); err != nil {
		closeAll()
		return nil, fail(err)
	}
	o, err := decodeOffer(hdr, body, len(files))
	if err != nil {
		closeAll()
		if errors.Is(err, ErrRefused) {
			return nil, err
		}
		return nil, fail(err)
	}
	if !stop() {
		// The context ended as the offer arrived: the daemon resumes.
		closeAll()
		return nil, fail(ctx.Err())
	}
	p := &Predecessor{PID: o.PID, State: o.State, Files: map[string]*os.File{}, conn: uc}
	for i, name := range o.Files {
		if _, dup := p.Files[name]; dup {
			files[i].Close()
			continue
		}
		p.Files[name] = files[i]
	}
	uc.SetDeadline(time.Time{})
	ok = true
	return p, nil
}

// parseRights returns the descriptors of SCM_RIGHTS messages as files.
func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "handover"))
		}
	}
	return files, nil
}

// Ready tells the predecessor that everything is attached, and waits up to
// timeout for it to commit. It returns nil once the predecessor has
// stopped for good; otherwise the predecessor resumes (or has resumed) and
// the successor must not use the descriptors.
func (p *Predecessor) Ready(timeout time.Duration) error {
	p.conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(p.conn, "ready\n"); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	line, err := bufio.NewReader(p.conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("%w: it did not commit: %v", ErrRefused, err)
	}
	if line != "done\n" {
		return fmt.Errorf("%w: it answered %q", ErrRefused, strings.TrimSpace(line))
	}
	return nil
}

// Abort tells the predecessor to resume, with the reason for its log.
func (p *Predecessor) Abort(reason string) {
	p.conn.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(p.conn, "abort: "+strings.ReplaceAll(reason, "\n", " ")+"\n")
}

// Close closes the connection and every descriptor still in Files.
func (p *Predecessor) Close() error {
	for name, f := range p.Files {
		f.Close()
		delete(p.Files, name)
	}
	return p.conn.Close()
}
