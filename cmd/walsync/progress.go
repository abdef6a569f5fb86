package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line progress bar on a terminal (bytes, rate, ETA)
// and stays silent when stderr is not a terminal.
type progress struct {
	w     io.Writer
	label string
	on    bool
	start time.Time
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer, label string) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, label: label, on: ok && term.IsTerminal(int(f.Fd())), start: time.Now()}
}

// update is called with bytes done out of total; it redraws at most five
// times a second.
func (p *progress) update(done, total int64) {
	if !p.on {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond && done < total {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed
	}
	pct, eta := 0.0, "?"
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
		if rate > 0 {
			eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
		}
	}
	fmt.Fprintf(p.w, "\r\033[K%s  %s / %s  %3.0f%%  %s/s  ETA %s", p.label, humanBytes(done), humanBytes(total), pct, humanBytes(int64(rate)), eta)
	p.drawn = true
}

// finish clears the bar.
func (p *progress) finish() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
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
