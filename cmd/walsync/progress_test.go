package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// A restore reports progress from several goroutines: the bar must stay
// consistent (run with -race) and end at 100 %.
func TestProgressConcurrent(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, label: "restore app", on: true}
	const total = 8 * 1000
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int64
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				mu.Lock()
				done++
				d := done
				mu.Unlock()
				p.update(d, total)
			}
		}()
	}
	wg.Wait()
	p.mu.Lock()
	out := buf.String()
	p.mu.Unlock()
	lines := strings.Split(out, "\r\033[K")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "7.8 KiB / 7.8 KiB  100%") {
		t.Fatalf("last bar: got=%q, want 100%% of 7.8 KiB", last)
	}
	p.finish()
	if !strings.HasSuffix(buf.String(), "\r\033[K") {
		t.Fatalf("finish did not clear the bar: %q", buf.String())
	}
}

func TestProgressLine(t *testing.T) {
	p := &progress{label: "restore app"}
	got := p.line(512<<20, 1<<30, 2*time.Second)
	want := "restore app  512.0 MiB / 1.0 GiB   50%  256.0 MiB/s  ETA 2s"
	if got != want {
		t.Fatalf("line: got=%q, want %q", got, want)
	}
	if got := p.line(0, 1<<30, 0); !strings.HasSuffix(got, "ETA ?") {
		t.Fatalf("line before the first byte: got=%q, want ETA ?", got)
	}
}

// Not a terminal: nothing is drawn.
func TestProgressQuietWithoutTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "restore app")
	p.update(10, 100)
	p.update(100, 100)
	p.finish()
	if buf.Len() != 0 {
		t.Fatalf("output without a terminal: got=%q, want none", buf.String())
	}
}
