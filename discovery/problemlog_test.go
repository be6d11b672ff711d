package discovery

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestProblemLog: a member's problem is logged once while it stays the
// same, again when its detail changes or after it was gone, and counted
// on every listing that has it.
func TestProblemLog(t *testing.T) {
	var buf bytes.Buffer
	l := &ProblemLog{Msg: "left out", IDKey: "id", Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	a := Problem{"a", "no_common_family", "one"}
	b := Problem{"b", "no_ipv6_underlay", "two"}
	l.Record([]Problem{a, b})
	l.Record([]Problem{a, b})
	a2 := a
	a2.Detail = "changed"
	l.Record([]Problem{a2})
	l.Record(nil)
	l.Record([]Problem{b})
	if got := strings.Count(buf.String(), "msg=\"left out\""); got != 4 {
		t.Errorf("%d log lines, want 4 (a, b, a changed, b back):\n%s", got, buf.String())
	}
	if c := l.Counts(); c["no_common_family"] != 3 || c["no_ipv6_underlay"] != 3 {
		t.Errorf("counts %v, want 3 of each", c)
	}
	if p := l.Problems(); len(p) != 1 || p[0] != b {
		t.Errorf("problems %v, want only the last listing's", p)
	}
	l.Counts()["no_common_family"] = 99
	if l.Counts()["no_common_family"] != 3 {
		t.Error("Counts returned the log's own map")
	}
}
