package discovery

import (
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// designExample is the inventory example of DESIGN.md.
const designExample = `# underlay      COMMUNITY,OVERLAY-IP/PREFIX
198.18.0.1      demo,198.19.0.1/24
198.18.0.2      demo,198.19.0.2/24
`

// member builds a Member for test expectations.
func member(underlay, tag, id string) Member {
	t, err := ParseTag(tag)
	if err != nil {
		panic(err)
	}
	return Member{Underlay: netip.MustParseAddr(underlay), Community: t.Community, Overlay: t.Overlay, Overlay6: t.Overlay6, ID: id}
}

// inventoryTests are the ParseInventory cases, parsed under the name
// "peers.txt"; FuzzParseInventory is seeded from them. A case either wants
// members or an error at errLine whose message contains errSub.
var inventoryTests = []struct {
	name    string
	in      string
	want    []Member
	errLine int
	errSub  string
}{
	{
		name: "design example",
		in:   designExample,
		want: []Member{
			member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:2"),
			member("198.18.0.2", "demo,198.19.0.2/24", "peers.txt:3"),
		},
	},
	{name: "empty", in: ""},
	{
		name: "IPv6 overlay",
		in:   "198.18.0.1 demo,198.19.0.1/24,fd00:198:19::1/64\n198.18.0.2 demo,198.19.0.2/24\n",
		want: []Member{
			member("198.18.0.1", "demo,198.19.0.1/24,fd00:198:19::1/64", "peers.txt:1"),
			member("198.18.0.2", "demo,198.19.0.2/24", "peers.txt:2"),
		},
	},
	{
		name:    "duplicate IPv6 overlay",
		in:      "198.18.0.1 demo,198.19.0.1/24,fd00:198:19::1/64\n198.18.0.2 demo,198.19.0.2/24,fd00:198:19::1/64\n",
		errLine: 2,
		errSub:  "IPv6 overlay fd00:198:19::1 is already used on line 1 in community demo",
	},
	{
		name: "IPv6 underlay",
		in: "# underlay      COMMUNITY,OVERLAY-IP/PREFIX\n" +
			"fd00:198:18::1  demo,198.19.0.1/24\n" +
			"2001:db8::2     demo,198.19.0.2/24,fd00:198:19::2/64  # a comment\n" +
			"198.18.0.3      demo,198.19.0.3/24\n" +
			"FD00:0198:0018:0000::4 demo,198.19.0.4/24\n", // any spelling netip accepts
		want: []Member{
			member("fd00:198:18::1", "demo,198.19.0.1/24", "peers.txt:2"),
			member("2001:db8::2", "demo,198.19.0.2/24,fd00:198:19::2/64", "peers.txt:3"),
			member("198.18.0.3", "demo,198.19.0.3/24", "peers.txt:4"),
			member("fd00:198:18::4", "demo,198.19.0.4/24", "peers.txt:5"),
		},
	},
	{name: "only comments", in: "# a\n\n   \n\t# b\n#\n"},
	{
		name: "comments and spacing",
		in: "\n  # indented comment\n" +
			"\t198.18.0.1\tdemo,198.19.0.1/24\t# trailing comment\n" +
			"198.18.0.2 demo,198.19.0.2/24 #no space after hash\n" +
			"198.18.0.3   demo,198.19.0.3/24   \n" +
			"198.18.0.4\u00a0demo,198.19.0.4/24\u00a0# after a no-break space\n",
		want: []Member{
			member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:3"),
			member("198.18.0.2", "demo,198.19.0.2/24", "peers.txt:4"),
			member("198.18.0.3", "demo,198.19.0.3/24", "peers.txt:5"),
			member("198.18.0.4", "demo,198.19.0.4/24", "peers.txt:6"),
		},
	},
	{
		name: "no final newline",
		in:   "198.18.0.1 demo,198.19.0.1/24",
		want: []Member{member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:1")},
	},
	{
		name: "CRLF",
		in:   "# c\r\n198.18.0.1 demo,198.19.0.1/24\r\n\r\n198.18.0.2 demo,198.19.0.2/24 # x\r\n",
		want: []Member{
			member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:2"),
			member("198.18.0.2", "demo,198.19.0.2/24", "peers.txt:4"),
		},
	},
	{
		name: "BOM",
		in:   "\ufeff198.18.0.1 demo,198.19.0.1/24\r\n",
		want: []Member{member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:1")},
	},
	{
		name: "BOM before comment",
		in:   "\ufeff# c\n198.18.0.1 demo,198.19.0.1/24\n",
		want: []Member{member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:2")},
	},
	{
		name: "several communities",
		in: "198.18.0.1 demo,198.19.0.1/24\n" +
			"198.18.0.1 other,198.19.0.1/24\n" + // same instance, other community
			"198.18.0.2 demo,198.19.0.2/24\n",
		want: []Member{
			member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:1"),
			member("198.18.0.1", "other,198.19.0.1/24", "peers.txt:2"),
			member("198.18.0.2", "demo,198.19.0.2/24", "peers.txt:3"),
		},
	},
	{
		name: "longest line",
		in:   "198.18.0.1 demo,198.19.0.1/24 #" + strings.Repeat("x", MaxLineLength-31) + "\r\n",
		want: []Member{member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:1")},
	},
	{
		name: "longest line after BOM",
		in:   "\ufeff198.18.0.1 demo,198.19.0.1/24 #" + strings.Repeat("x", MaxLineLength-31) + "\r\n",
		want: []Member{member("198.18.0.1", "demo,198.19.0.1/24", "peers.txt:1")},
	},

	// Errors.
	{name: "missing tag", in: "# c\n198.18.0.1\n", errLine: 2, errSub: `missing the tag after "198.18.0.1"; write UNDERLAY COMMUNITY,IP/PREFIX`},
	{name: "missing tag before comment", in: "198.18.0.1 # demo,198.19.0.1/24\n", errLine: 1, errSub: "missing the tag"},
	{name: "missing underlay", in: "\n\ndemo,198.19.0.1/24\n", errLine: 3, errSub: "missing the underlay address"},
	{name: "swapped columns", in: "demo,198.19.0.1/24 198.18.0.1\n", errLine: 1, errSub: "looks like a tag; write the underlay address first"},
	{name: "extra column", in: "198.18.0.1 demo,198.19.0.1/24 x\n", errLine: 1, errSub: `extra column "x"; write exactly two columns`},
	{name: "space in tag", in: "198.18.0.1 demo, 198.19.0.1/24\n", errLine: 1, errSub: "the tag must not contain spaces"},
	{name: "hash without space", in: "198.18.0.1 demo,198.19.0.1/24#c\n", errLine: 1, errSub: "a comment needs whitespace before '#'"},
	{name: "underlay not an address", in: "host1 demo,198.19.0.1/24\n", errLine: 1, errSub: `underlay address "host1" is not an IPv4 address`},
	{name: "long underlay clipped", in: strings.Repeat("z", 4000) + " demo,198.19.0.1/24\n", errLine: 1, errSub: `underlay address "` + strings.Repeat("z", 60) + `..." is not an IPv4 address`},
	{name: "underlay mapped", in: "::ffff:198.18.0.1 demo,198.19.0.1/24\n", errLine: 1, errSub: "is IPv4-mapped IPv6; write the plain IPv4 form 198.18.0.1"},
	{name: "underlay IPv6 not an address", in: "fd00:198:18::1::2 demo,198.19.0.1/24\n", errLine: 1, errSub: `underlay address "fd00:198:18::1::2" is not an IPv4 or IPv6 address; write one`},
	{name: "underlay IPv6 link-local", in: "fe80::1 demo,198.19.0.1/24\n", errLine: 1, errSub: "is link-local, which needs a zone"},
	{name: "underlay IPv6 link-local with zone", in: "fe80::1%eth0 demo,198.19.0.1/24\n", errLine: 1, errSub: "is link-local, which needs a zone"},
	{name: "underlay IPv6 zone", in: "fd00:198:18::1%eth0 demo,198.19.0.1/24\n", errLine: 1, errSub: `has a zone (%eth0); write the plain address fd00:198:18::1`},
	{name: "underlay IPv6 multicast", in: "ff02::1 demo,198.19.0.1/24\n", errLine: 1, errSub: "underlay address ff02::1 is a multicast address; write the instance's unicast address"},
	{name: "underlay IPv6 unspecified", in: "\n:: demo,198.19.0.1/24\n", errLine: 2, errSub: "underlay address :: is the unspecified address"},
	{name: "underlay IPv6 loopback", in: "::1 demo,198.19.0.1/24\n", errLine: 1, errSub: "underlay address ::1 is the loopback address"},
	{name: "underlay IPv4-compatible", in: "::198.18.0.1 demo,198.19.0.1/24\n", errLine: 1, errSub: "is IPv4-compatible IPv6 (::/96, deprecated); write the plain IPv4 form 198.18.0.1"},
	{name: "underlay IPv6 prefix", in: "fd00:198:18::1/64 demo,198.19.0.1/24\n", errLine: 1, errSub: "has a prefix length; write the bare address fd00:198:18::1"},
	{
		name:    "duplicate IPv6 underlay",
		in:      "fd00:198:18::1 demo,198.19.0.1/24\nFD00:198:18:0:0:0:0:1 demo,198.19.0.2/24\n",
		errLine: 2,
		errSub:  "underlay fd00:198:18::1 is already on line 1 in community demo",
	},
	{name: "underlay prefix", in: "198.18.0.1/16 demo,198.19.0.1/24\n", errLine: 1, errSub: "has a prefix length; write the bare address 198.18.0.1"},
	{name: "underlay multicast", in: "239.0.0.1 demo,198.19.0.1/24\n", errLine: 1, errSub: "multicast address; write the instance's unicast address"},
	{name: "underlay loopback", in: "127.0.0.1 demo,198.19.0.1/24\n", errLine: 1, errSub: "loopback"},
	{name: "underlay unspecified", in: "0.0.0.0 demo,198.19.0.1/24\n", errLine: 1, errSub: "unspecified"},
	{name: "underlay broadcast", in: "255.255.255.255 demo,198.19.0.1/24\n", errLine: 1, errSub: "broadcast"},
	{name: "no prefix length", in: "# c\n198.18.0.1 demo,198.19.0.1/24\n198.18.0.2 demo,198.19.0.1\n", errLine: 3, errSub: `overlay "198.19.0.1" has no prefix length; write it as 198.19.0.1/24`},
	{name: "bad tag in other community", in: "198.18.0.1 demo,198.19.0.1/24\n198.18.0.2 -x,198.19.0.2/24\n", errLine: 2, errSub: "start it with a letter or digit"},
	{name: "duplicate underlay", in: "198.18.0.1 demo,198.19.0.1/24\n\n198.18.0.1 demo,198.19.0.3/24\n", errLine: 3, errSub: "underlay 198.18.0.1 is already on line 1 in community demo"},
	{name: "duplicate overlay", in: "198.18.0.1 demo,198.19.0.1/24\n198.18.0.2 demo,198.19.0.1/16\n", errLine: 2, errSub: "overlay 198.19.0.1 is already used on line 1 in community demo"},
	{name: "BOM not at start", in: "198.18.0.1 demo,198.19.0.1/24\n\ufeff198.18.0.2 demo,198.19.0.2/24\n", errLine: 2, errSub: "is not an IPv4 address"},
	{name: "lone CR", in: "198.18.0.1 demo,198.19.0.1/24\r198.18.0.2 demo,198.19.0.2/24\n", errLine: 1, errSub: "extra column"},
	{name: "line too long", in: "\n198.18.0.1 demo,198.19.0.1/24 #" + strings.Repeat("x", MaxLineLength-30) + "\n", errLine: 2, errSub: "line is longer than 4096 bytes"},
	{name: "line too long for buffer", in: "# " + strings.Repeat("x", 3*MaxLineLength), errLine: 1, errSub: "line is longer than 4096 bytes"},
}

func TestParseInventory(t *testing.T) {
	for _, tt := range inventoryTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseInventory(strings.NewReader(tt.in), "peers.txt")
			if tt.errSub == "" {
				if err != nil {
					t.Fatalf("error = %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got  %v\nwant %v", got, tt.want)
				}
				return
			}
			ie, ok := errors.AsType[*InventoryError](err)
			if !ok {
				t.Fatalf("error = %v (%T), want *InventoryError; members %v", err, err, got)
			}
			if ie.File != "peers.txt" || ie.Line != tt.errLine || !strings.Contains(ie.Msg, tt.errSub) {
				t.Errorf("error = %q (line %d), want peers.txt line %d containing %q", err, ie.Line, tt.errLine, tt.errSub)
			}
			if !strings.HasPrefix(err.Error(), "peers.txt:") || !strings.Contains(ie.Msg, "; ") {
				t.Errorf("error = %q, want FILE:LINE: what is wrong; what to write", err)
			}
			if got != nil {
				t.Errorf("members = %v on error, want nil", got)
			}
		})
	}
}

// The example error message of the brief, verbatim.
func TestInventoryErrorString(t *testing.T) {
	_, err := ParseInventory(strings.NewReader("#\n#\n198.18.0.1 demo,198.19.0.1\n"), "peers.txt")
	const want = `peers.txt:3: overlay "198.19.0.1" has no prefix length; write it as 198.19.0.1/24`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
	if got := (&InventoryError{File: "f", Msg: "m"}).Error(); got != "f: m" {
		t.Errorf("whole-file error = %q, want %q", got, "f: m")
	}
}

// endless yields an endless stream of valid comment lines and counts the
// bytes it gave.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	const line = "# a comment line that never ends the file\n"
	for i := range p {
		p[i] = line[(e.n+int64(i))%int64(len(line))]
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestParseInventoryTooLarge(t *testing.T) {
	src := &endless{}
	_, err := ParseInventory(src, "big.txt")
	ie, ok := errors.AsType[*InventoryError](err)
	if !ok || !strings.Contains(ie.Msg, "larger than 16 MiB") || ie.Line < 1 {
		t.Fatalf("error = %v, want a too-large *InventoryError", err)
	}
	if src.n > MaxInventorySize+1 {
		t.Errorf("read %d bytes, want at most %d", src.n, MaxInventorySize+1)
	}

	// Exactly the limit is fine.
	line := "# " + strings.Repeat("x", 1021) + "\n" // 1024 bytes
	ok16 := strings.Repeat(line, MaxInventorySize/len(line))
	if _, err := ParseInventory(strings.NewReader(ok16), "16.txt"); err != nil {
		t.Errorf("16 MiB inventory: %v", err)
	}
}

type failReader struct{}

var errDisk = errors.New("disk on fire")

func (failReader) Read([]byte) (int, error) { return 0, errDisk }

func TestParseInventoryReadError(t *testing.T) {
	r := io.MultiReader(strings.NewReader("198.18.0.1 demo,198.19.0.1/24\n"), failReader{})
	_, err := ParseInventory(r, "peers.txt")
	ie, ok := errors.AsType[*InventoryError](err)
	if !ok || ie.Line != 2 || !errors.Is(err, errDisk) {
		t.Fatalf("error = %v, want *InventoryError at line 2 wrapping errDisk", err)
	}
}

func TestLoadInventory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.txt")
	if err := os.WriteFile(path, []byte(designExample), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadInventory(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].ID != path+":3" {
		t.Errorf("LoadInventory = %v, want 2 members, the second with ID %s:3", got, path)
	}

	missing := filepath.Join(t.TempDir(), "missing.txt")
	_, err = LoadInventory(missing)
	ie, ok := errors.AsType[*InventoryError](err)
	if !ok || !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrOpenInventory) || ie.Line != 0 {
		t.Fatalf("LoadInventory(missing) = %v, want a whole-file *InventoryError wrapping fs.ErrNotExist and ErrOpenInventory", err)
	}
	if want := missing + ": cannot open the inventory (no such file or directory)"; err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	// Only a file that cannot be opened is ErrOpenInventory.
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte("198.18.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadInventory(bad); err == nil || errors.Is(err, ErrOpenInventory) {
		t.Errorf("LoadInventory(malformed) = %v, want an error that is not ErrOpenInventory", err)
	}
	if errors.Is(&InventoryError{File: "f", Msg: "m"}, ErrOpenInventory) {
		t.Error("an InventoryError made by hand is ErrOpenInventory")
	}
}
