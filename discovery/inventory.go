package discovery

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on an inventory. ParseInventory never reads more than
// MaxInventorySize+1 bytes of its input.
const (
	MaxLineLength    = 4096     // bytes per line, without the line ending
	MaxInventorySize = 16 << 20 // bytes per file (16 MiB)
)

const (
	bom         = "\xef\xbb\xbf"
	lineExample = "198.18.0.1 demo,198.19.0.1/24"
)

// ErrOpenInventory is what the *InventoryError of LoadInventory is
// (errors.Is) when the file cannot be opened; the error wraps the cause
// too, such as fs.ErrNotExist.
var ErrOpenInventory = errors.New("cannot open the inventory")

// InventoryError is a problem with an inventory file. Line is 1-based; it is
// 0 when the problem concerns the whole file, such as a file that cannot be
// opened. Msg says what is wrong and what to write instead. Err, if set, is
// the underlying I/O error.
//
// meshcast treats an InventoryError as a configuration error (exit status 2).
type InventoryError struct {
	File string
	Line int
	Msg  string
	Err  error

	open bool // the file could not be opened: errors.Is ErrOpenInventory
}

// Error returns "FILE:LINE: MSG", or "FILE: MSG" when Line is 0.
func (e *InventoryError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// Unwrap returns the underlying I/O error, if any.
func (e *InventoryError) Unwrap() error { return e.Err }

// Is reports whether target is ErrOpenInventory and the file could not be
// opened.
func (e *InventoryError) Is(target error) bool { return target == ErrOpenInventory && e.open }

// LoadInventory opens the inventory file at path and parses it with
// ParseInventory. Every error it returns is an *InventoryError; one for a
// file that cannot be opened is also ErrOpenInventory (errors.Is).
func LoadInventory(path string) ([]Member, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &InventoryError{File: path, Msg: fmt.Sprintf("%v (%v)", ErrOpenInventory, unwrapPath(err)), Err: err, open: true}
	}
	defer f.Close()
	return ParseInventory(f, path)
}

// unwrapPath drops the operation and path from an *os.PathError, which
// InventoryError already names.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}

// ParseInventory parses an inventory: one instance per line, its underlay
// address (IPv4 or IPv6), whitespace, then its tag value exactly as ParseTag
// accepts it:
//
//	# underlay      COMMUNITY,OVERLAY-IP/PREFIX[,OVERLAY-IPv6/PREFIX]
//	198.18.0.1      demo,198.19.0.1/24
//	198.18.0.2      demo,198.19.0.2/24   # trailing comment
//	198.18.0.3      demo,198.19.0.3/24,fd00:198:19::3/64
//	fd00:198:18::4  demo,198.19.0.4/24   # an IPv6 underlay
//
// Blank lines are skipped. A '#' at the start of a line, or after
// whitespace, starts a comment that runs to the end of the line. Lines may
// end in LF or CRLF, and the file may start with a UTF-8 byte order mark.
// The underlay address is a unicast IPv4 address: not multicast, loopback,
// unspecified or 255.255.255.255. Or it is a global unicast or unique
// local IPv6 address, in any spelling netip accepts: not link-local
// (fe80::/10 needs a zone, which an inventory cannot give), without a
// zone, and not multicast, loopback, unspecified, IPv4-mapped
// (::ffff:0:0/96; write the IPv4 form) or IPv4-compatible (::/96). Each
// line has one underlay address; Member.Underlay holds it, of either
// family, and Member.Underlay6 stays zero. A node tunnels to a line of
// the other family only if it has an address of that family itself (see
// Reach).
//
// Lines of every community are checked, not just the local one. Within one
// community, no two lines may share an underlay address or an overlay
// address. Lines longer than MaxLineLength and inputs larger than
// MaxInventorySize are rejected without reading further.
//
// Members are returned in file order, with ID "NAME:LINE". On failure the
// error is an *InventoryError naming name and the line; name is used only in
// messages and IDs.
func ParseInventory(r io.Reader, name string) ([]Member, error) {
	type key struct {
		community string
		addr      netip.Addr
	}
	var (
		members  []Member
		underlay = map[key]int{} // first line of each (community, underlay)
		overlay  = map[key]int{} // first line of each (community, overlay address)
		total    int
	)
	fail := func(line int, format string, args ...any) error {
		return &InventoryError{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	// The buffer holds one full line with a BOM and CRLF, so ReadSlice
	// reports any longer line as bufio.ErrBufferFull.
	br := bufio.NewReaderSize(io.LimitReader(r, MaxInventorySize+1), MaxLineLength+len(bom)+2)
	for n := 1; ; n++ {
		raw, err := br.ReadSlice('\n')
		total += len(raw)
		switch {
		case total > MaxInventorySize:
			return nil, fail(n, "inventory is larger than %d MiB; split it into smaller files or remove unused lines", MaxInventorySize>>20)
		case err == bufio.ErrBufferFull:
			return nil, fail(n, "line is longer than %d bytes; write one instance per line, such as %s", MaxLineLength, lineExample)
		case err != nil && err != io.EOF:
			return nil, &InventoryError{File: name, Line: n, Msg: fmt.Sprintf("read error (%v); check the file", err), Err: err}
		case err == io.EOF && len(raw) == 0:
			return members, nil
		}
		line := string(raw)
		line = strings.TrimSuffix(line, "\n")
		line = strings.TrimSuffix(line, "\r")
		if n == 1 {
			line = strings.TrimPrefix(line, bom)
		}
		if len(line) > MaxLineLength {
			return nil, fail(n, "line is longer than %d bytes; write one instance per line, such as %s", MaxLineLength, lineExample)
		}
		m, ok, msg := parseLine(stripComment(line))
		if msg != "" {
			return nil, fail(n, "%s", msg)
		}
		if ok {
			m.ID = name + ":" + strconv.Itoa(n)
			uk := key{m.Community, m.Underlay}
			if prev, dup := underlay[uk]; dup {
				return nil, fail(n, "underlay %s is already on line %d in community %s; give each instance one line", m.Underlay, prev, m.Community)
			}
			ovk := key{m.Community, m.Overlay.Addr()}
			if prev, dup := overlay[ovk]; dup {
				return nil, fail(n, "overlay %s is already used on line %d in community %s; give each instance its own overlay address", m.Overlay.Addr(), prev, m.Community)
			}
			underlay[uk], overlay[ovk] = n, n
			if m.Overlay6.IsValid() {
				o6 := key{m.Community, m.Overlay6.Addr()}
				if prev, dup := overlay[o6]; dup {
					return nil, fail(n, "IPv6 overlay %s is already used on line %d in community %s; give each instance its own overlay address", m.Overlay6.Addr(), prev, m.Community)
				}
				overlay[o6] = n
			}
			members = append(members, m)
		}
		if err == io.EOF {
			return members, nil
		}
	}
}

// stripComment removes a comment: a '#' at the start of line or after
// whitespace, and everything after it.
func stripComment(line string) string {
	for i := 0; i < len(line); i++ {
		if line[i] != '#' {
			continue
		}
		if r, _ := utf8.DecodeLastRuneInString(line[:i]); i == 0 || unicode.IsSpace(r) {
			return line[:i]
		}
	}
	return line
}

// parseLine parses one line without its comment. It reports ok false for a
// blank line, and a message for a malformed one.
func parseLine(line string) (m Member, ok bool, msg string) {
	f := strings.Fields(line)
	switch {
	case len(f) == 0:
		return Member{}, false, ""
	case len(f) == 1 && strings.Contains(f[0], ","):
		return Member{}, false, fmt.Sprintf("missing the underlay address before %q; write the instance's underlay address first, such as %s", clip(f[0]), lineExample)
	case len(f) == 1:
		return Member{}, false, fmt.Sprintf("missing the tag after %q; write UNDERLAY COMMUNITY,IP/PREFIX, such as %s", clip(f[0]), lineExample)
	case len(f) > 2:
		hint := "start a comment with whitespace and '#'"
		if strings.HasSuffix(f[1], ",") || strings.HasPrefix(f[2], ",") || strings.HasPrefix(f[2], "/") {
			hint = "the tag must not contain spaces"
		}
		return Member{}, false, fmt.Sprintf("extra column %q; write exactly two columns, UNDERLAY COMMUNITY,IP/PREFIX, such as %s (%s)", clip(f[2]), lineExample, hint)
	}
	if strings.Contains(f[0], ",") {
		return Member{}, false, fmt.Sprintf("underlay %q looks like a tag; write the underlay address first, such as %s", clip(f[0]), lineExample)
	}
	if a, _, ok := strings.Cut(f[0], "/"); ok {
		return Member{}, false, fmt.Sprintf("underlay %q has a prefix length; write the bare address %s", clip(f[0]), clip(a))
	}
	u, err := parseUnderlay(f[0])
	if err != nil {
		return Member{}, false, err.Error()
	}
	tag, err := ParseTag(f[1])
	if err != nil {
		msg := err.Error()
		if strings.Contains(f[1], "#") {
			msg += " (a comment needs whitespace before '#')"
		}
		return Member{}, false, msg
	}
	return Member{Underlay: u, Community: tag.Community, Overlay: tag.Overlay, Overlay6: tag.Overlay6}, true, ""
}

// parseUnderlay parses the underlay column: a unicast IPv4 address (see
// parseIPv4) or a global unicast or unique local IPv6 address.
func parseUnderlay(s string) (netip.Addr, error) {
	const example6 = "fd00:198:18::1"
	if !strings.Contains(s, ":") {
		return parseIPv4("underlay", s, "198.18.0.1")
	}
	addr, zone, hasZone := strings.Cut(s, "%")
	a, err := netip.ParseAddr(addr)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("underlay address %q is not an IPv4 or IPv6 address; write one, such as 198.18.0.1 or %s", clip(s), example6)
	case a.Is4In6():
		return netip.Addr{}, fmt.Errorf("underlay address %q is IPv4-mapped IPv6; write the plain IPv4 form %s", clip(s), a.Unmap())
	case a.IsLinkLocalUnicast():
		return netip.Addr{}, fmt.Errorf("underlay address %q is link-local, which needs a zone (an interface) that an inventory cannot give; write a global or unique local IPv6 address, such as %s", clip(s), example6)
	case hasZone:
		return netip.Addr{}, fmt.Errorf("underlay address %q has a zone (%%%s); write the plain address %s", clip(s), clip(zone), a)
	}
	var kind string
	switch {
	case a.IsUnspecified():
		kind = "the unspecified address"
	case a.IsLoopback():
		kind = "the loopback address"
	case a.IsMulticast():
		kind = "a multicast address"
	case isIPv4Compatible(a):
		return netip.Addr{}, fmt.Errorf("underlay address %s is IPv4-compatible IPv6 (::/96, deprecated); write the plain IPv4 form %s", a, netip.AddrFrom4([4]byte(a.AsSlice()[12:])))
	default:
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("underlay address %s is %s; write the instance's unicast address, such as %s", a, kind, example6)
}

// isIPv4Compatible reports whether the IPv6 address a is in ::/96, the
// deprecated IPv4-compatible form (the unspecified and loopback addresses
// are in it too; check them first).
func isIPv4Compatible(a netip.Addr) bool {
	b := a.As16()
	for _, x := range b[:12] {
		if x != 0 {
			return false
		}
	}
	return true
}
