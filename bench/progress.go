package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress shows how far a run is: on a terminal an in-place bar redrawn
// with \r, otherwise one plain line per step. Messages printed through it
// do not garble the bar. It is safe for concurrent use.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	total int
	done  int
	label string
	start time.Time
	drawn bool // a bar is on the current line
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, tty: isTerminal(w), total: total, start: time.Now()}
}

// Step starts unit done+1 of total, described by label.
func (p *progress) Step(label string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label = label
	if p.tty {
		p.draw()
		return
	}
	fmt.Fprintf(p.w, "[%d/%d] %s\n", p.done+1, p.total, label)
}

// Done marks the current unit finished.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = min(p.done+1, p.total)
	if p.tty {
		p.draw()
	}
}

// Drop takes n units that will not run off the total.
func (p *progress) Drop(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = max(p.total-n, p.done)
}

// Printf prints a line of its own.
func (p *progress) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintf(p.w, format, args...)
	if !strings.HasSuffix(format, "\n") {
		fmt.Fprintln(p.w)
	}
	if p.drawn {
		p.draw()
	}
}

// Finish removes the bar.
func (p *progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// draw redraws the bar; p.mu is held.
func (p *progress) draw() {
	fmt.Fprint(p.w, "\r\x1b[K"+progressBar(p.done, p.total, 24)+" "+p.label+" "+time.Since(p.start).Round(time.Second).String())
	p.drawn = true
}

// progressBar renders "[####....] done/total".
func progressBar(done, total, width int) string {
	filled := 0
	if total > 0 {
		filled = min(width*done/total, width)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "] " + fmt.Sprintf("%d/%d", done, total)
}
