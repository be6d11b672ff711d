package igmp

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// rfc3376Rows are the rows of the router state tables of RFC 3376 sections
// 6.4.1 and 6.4.2, each as its columns and then its further actions, one
// per line.
var rfc3376Rows = []string{
	// 6.4.1, current-state records
	"INCLUDE (A) | IS_IN (B) | INCLUDE (A+B) | (B)=GMI",
	"INCLUDE (A) | IS_EX (B) | EXCLUDE (A*B,B-A) | (B-A)=0 | Delete (A-B) | Group Timer=GMI",
	"EXCLUDE (X,Y) | IS_IN (A) | EXCLUDE (X+A,Y-A) | (A)=GMI",
	"EXCLUDE (X,Y) | IS_EX (A) | EXCLUDE (A-Y,Y*A) | (A-X-Y)=GMI | Delete (X-A) | Delete (Y-A) | Group Timer=GMI",
	// 6.4.2, filter-mode-change and source-list-change records
	"INCLUDE (A) | ALLOW (B) | INCLUDE (A+B) | (B)=GMI",
	"INCLUDE (A) | BLOCK (B) | INCLUDE (A) | Send Q(G,A*B)",
	"INCLUDE (A) | TO_EX (B) | EXCLUDE (A*B,B-A) | (B-A)=0 | Delete (A-B) | Send Q(G,A*B) | Group Timer=GMI",
	"INCLUDE (A) | TO_IN (B) | INCLUDE (A+B) | (B)=GMI | Send Q(G,A-B)",
	"EXCLUDE (X,Y) | ALLOW (A) | EXCLUDE (X+A,Y-A) | (A)=GMI",
	"EXCLUDE (X,Y) | BLOCK (A) | EXCLUDE (X+(A-Y),Y) | (A-X-Y)=Group Timer | Send Q(G,A-Y)",
	"EXCLUDE (X,Y) | TO_EX (A) | EXCLUDE (A-Y,Y*A) | (A-X-Y)=Group Timer | Delete (X-A) | Delete (Y-A) | Send Q(G,A-Y) | Group Timer=GMI",
	"EXCLUDE (X,Y) | TO_IN (A) | EXCLUDE (X+A,Y-A) | (A)=GMI | Send Q(G,X-A) | Send Q(G)",
}

// TestRecordsQuoteRFC checks that the comments of records.go quote every
// row of the RFC 3376 section 6.4 tables exactly once, as the RFC has it.
func TestRecordsQuoteRFC(t *testing.T) {
	src, err := os.ReadFile("records.go")
	if err != nil {
		t.Fatal(err)
	}
	gap := regexp.MustCompile(`\s{2,}`)
	var quoted []string // rows, as in rfc3376Rows
	in := false         // the last line was part of a row
	for line := range strings.Lines(string(src)) {
		text, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "//\t")
		switch {
		case ok && (strings.HasPrefix(text, "INCLUDE (") || strings.HasPrefix(text, "EXCLUDE (")):
			quoted = append(quoted, strings.Join(gap.Split(strings.TrimSpace(text), -1), " | "))
			in = true
		case ok && in && strings.HasPrefix(text, " ") && strings.TrimSpace(text) != "":
			quoted[len(quoted)-1] += " | " + strings.TrimSpace(text)
		default:
			in = false
		}
	}
	count := map[string]int{}
	for _, q := range quoted {
		count[q]++
	}
	for _, row := range rfc3376Rows {
		if n := count[row]; n != 1 {
			t.Errorf("row quoted %d times, want once: %s", n, row)
		}
		delete(count, row)
	}
	for row := range count {
		t.Errorf("quoted row not in RFC 3376 section 6.4: %s", row)
	}
}
