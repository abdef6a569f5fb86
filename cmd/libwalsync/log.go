package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

const defaultLevel = slog.LevelWarn

// logRecord is one LOG of the C API.
type logRecord struct {
	Time  string      `json:"time"`
	Level string      `json:"level"`
	Msg   string      `json:"msg"`
	Attrs [][2]string `json:"attrs,omitempty"`
}

// sink keeps the log records of one call or one watcher until the caller
// takes them: Go never calls back into the host. It holds at most max
// records; older ones are dropped and counted.
type sink struct {
	mu      sync.Mutex
	level   slog.Level
	recs    []logRecord
	max     int
	dropped int
	wake    chan struct{} // closed and replaced when a record arrives
	// onRecord, when set, sees every record at Info or above, whatever
	// the level (the watcher's readiness is its "watching" record).
	onRecord func(slog.Record)
}

func newSink(level slog.Level, max int) *sink {
	return &sink{level: level, max: max, wake: make(chan struct{})}
}

func (s *sink) setLevel(l slog.Level) {
	s.mu.Lock()
	s.level = l
	s.mu.Unlock()
}

func (s *sink) logger() *slog.Logger { return slog.New(&handler{s: s}) }

// drain returns the records kept so far and forgets them.
func (s *sink) drain() []logRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := s.recs
	if s.dropped > 0 {
		recs = append([]logRecord{{Time: time.Now().UTC().Format(time.RFC3339Nano), Level: "WARN",
			Msg: fmt.Sprintf("%d log records dropped (not collected in time)", s.dropped)}}, recs...)
		s.dropped = 0
	}
	s.recs = nil
	return recs
}

func (s *sink) add(r slog.Record, attrs [][2]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Level < s.level {
		return
	}
	if len(s.recs) >= s.max {
		s.recs = s.recs[1:]
		s.dropped++
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	s.recs = append(s.recs, logRecord{Time: t.UTC().Format(time.RFC3339Nano), Level: r.Level.String(), Msg: r.Message, Attrs: attrs})
	close(s.wake)
	s.wake = make(chan struct{})
}

// handler is the slog.Handler that feeds a sink.
type handler struct {
	s      *sink
	attrs  [][2]string
	prefix string // group names joined with '.', ending in '.'
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool {
	if l >= slog.LevelInfo && h.s.onRecord != nil {
		return true
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return l >= h.s.level
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	if h.s.onRecord != nil {
		h.s.onRecord(r)
	}
	attrs := append([][2]string(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = appendAttr(attrs, h.prefix, a)
		return true
	})
	h.s.add(r, attrs)
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &handler{s: h.s, prefix: h.prefix, attrs: append([][2]string(nil), h.attrs...)}
	for _, a := range as {
		n.attrs = appendAttr(n.attrs, h.prefix, a)
	}
	return n
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{s: h.s, attrs: h.attrs, prefix: h.prefix + name + "."}
}

func appendAttr(dst [][2]string, prefix string, a slog.Attr) [][2]string {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			dst = appendAttr(dst, p, g)
		}
		return dst
	}
	if a.Equal(slog.Attr{}) {
		return dst
	}
	return append(dst, [2]string{prefix + a.Key, v.String()})
}

// pending returns how many records are kept and a channel closed when the
// next one arrives.
func (s *sink) pending() (int, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs) + s.dropped, s.wake
}

// await waits up to timeoutMs for a record when s holds none yet, or
// until done (nil: never) is closed.
func (s *sink) await(timeoutMs int, done <-chan struct{}) {
	n, wake := s.pending()
	if n > 0 || timeoutMs <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
	defer t.Stop()
	select {
	case <-wake:
	case <-done:
	case <-t.C:
	}
}

// absorb moves other's records into s, keeping s's level filter as it was
// applied by other.
func (s *sink) absorb(other *sink) {
	recs := other.drain()
	s.mu.Lock()
	s.recs = append(s.recs, recs...)
	s.mu.Unlock()
}
