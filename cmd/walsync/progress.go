package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line progress bar on a terminal (bytes done of the
// total, percentage, rate, ETA) and stays silent when stderr is not a
// terminal. It is safe for concurrent use: a restore reads several
// objects at once.
type progress struct {
	w     io.Writer
	label string
	on    bool

	mu    sync.Mutex
	start time.Time // when the first byte was counted
	last  time.Time // the last redraw
	drawn bool
}

func newProgress(w io.Writer, label string) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, label: label, on: ok && term.IsTerminal(int(f.Fd()))}
}

// update is called with bytes done out of total; it redraws at most five
// times a second, and once when done reaches total.
func (p *progress) update(done, total int64) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.start.IsZero() {
		// The rate counts from the first byte, not from the listing and
		// the choice of a snapshot before it.
		p.start = now
	}
	if now.Sub(p.last) < 200*time.Millisecond && done < total {
		return
	}
	p.last = now
	fmt.Fprint(p.w, "\r\033[K"+p.line(done, total, now.Sub(p.start)))
	p.drawn = true
}

// line is the bar's text after elapsed time.
func (p *progress) line(done, total int64, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	pct, eta := 0.0, "?"
	if total > 0 {
		pct = 100 * float64(min(done, total)) / float64(total)
		if rate > 0 {
			eta = time.Duration(float64(max(total-done, 0)) / rate * float64(time.Second)).Round(time.Second).String()
		}
	}
	return fmt.Sprintf("%s  %s / %s  %3.0f%%  %s/s  ETA %s", p.label, humanBytes(done), humanBytes(total), pct, humanBytes(int64(rate)), eta)
}

// finish clears the bar.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// humanBytes formats n with binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
