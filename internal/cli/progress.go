// Progress of the long commands (loadgen, replay, dlq redrive, topics
// ensure): a bar redrawn in place when the output is a terminal, a plain
// line every few seconds otherwise (logs, pipes, CI).
package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress reports how far a long command is. It is safe for concurrent
// use.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	label string // e.g. "loadgen"
	unit  string // e.g. "records"
	total int64  // 0: unknown
	every time.Duration
	now   func() time.Time
	start time.Time
	last  time.Time // of the last output; zero before the first
	cols  int       // the terminal's width, when tty
}

// Redraw and line intervals.
const (
	redrawEvery = 100 * time.Millisecond
	lineEvery   = 5 * time.Second
)

// newProgress returns a progress of total units (0 when unknown) written to
// w: a bar when w is a terminal, else a line every lineEvery.
func newProgress(w io.Writer, label, unit string, total int64) *progress {
	p := &progress{w: w, tty: isTerminal(w), label: label, unit: unit, total: total, every: lineEvery, now: time.Now}
	if p.tty {
		p.every = redrawEvery
		p.cols = terminalWidth(w)
	}
	p.start = p.now()
	return p
}

// isTerminal reports whether w is a character device that is not a dumb
// terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// terminalWidth returns the width of the terminal w, or 80 when it cannot
// be read.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

// setTotal sets the total once it is known.
func (p *progress) setTotal(total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = total
}

// update reports done units and a note, at most once per interval.
func (p *progress) update(done int64, note string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.last.IsZero() && now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	p.write(now, done, note, false)
}

// finish reports the final count; on a terminal it ends the bar's line.
func (p *progress) finish(done int64, note string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.write(p.now(), done, note, true)
}

func (p *progress) write(now time.Time, done int64, note string, final bool) {
	elapsed := now.Sub(p.start)
	var b strings.Builder
	b.WriteString(p.label)
	if p.tty && p.total > 0 {
		const width = 30
		filled := int(min(done, p.total) * width / p.total)
		b.WriteString(" [" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "]")
	}
	fmt.Fprintf(&b, " %d", done)
	if p.total > 0 {
		fmt.Fprintf(&b, "/%d %s (%d%%)", p.total, p.unit, min(done, p.total)*100/p.total)
	} else {
		b.WriteString(" " + p.unit)
	}
	if secs := elapsed.Seconds(); secs > 0 && done > 0 {
		rate := float64(done) / secs
		fmt.Fprintf(&b, ", %.0f/s", rate)
		if p.total > done && !final {
			fmt.Fprintf(&b, ", ETA %s", time.Duration(float64(p.total-done)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	fmt.Fprintf(&b, ", %s", elapsed.Round(100*time.Millisecond))
	if note != "" {
		b.WriteString(", " + note)
	}
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r\033[K%s\n", b.String())
	case p.tty:
		// A line wider than the terminal wraps, and the next \r would
		// redraw only its last row: the bar would scroll instead of
		// staying in place. The line is ASCII.
		line := b.String()
		if p.cols > 1 && len(line) > p.cols-1 {
			line = line[:p.cols-1]
		}
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	default:
		fmt.Fprintln(p.w, b.String())
	}
}
