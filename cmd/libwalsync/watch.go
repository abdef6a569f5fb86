package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/replicate"
)

// readyMessage is the record replicate.Watcher.Run logs once every
// database is open and followed; walsync_watch_start returns when it
// sees it. TestWatchStartWaitsForReady fails if replicate changes it.
const readyMessage = "watching"

type watchOptions struct {
	Paths            []string `json:"paths"`
	Name             string   `json:"name"`
	SnapshotInterval *float64 `json:"snapshot_interval"`
	ShutdownTimeout  *float64 `json:"shutdown_timeout"`
	SyncInterval     *float64 `json:"sync_interval"`
	Retention        float64  `json:"retention"`
	Uploads          int      `json:"uploads"`
	Takeover         bool     `json:"takeover"`
}

type watchDB struct {
	Path string `json:"path"`
	Name string `json:"name"`
}

type watchStats struct {
	FramesCaptured  int64 `json:"frames_captured"`
	ObjectsUploaded int64 `json:"objects_uploaded"`
	BytesUploaded   int64 `json:"bytes_uploaded"`
	UploadErrors    int64 `json:"upload_errors"`
}

// watchHandle is one running replicate.Watcher.
type watchHandle struct {
	w      *replicate.Watcher
	sink   *sink
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's result, once done is closed
}

func (h *watchHandle) stats() watchStats {
	st := h.w.Stats()
	return watchStats{st.FramesCaptured, st.ObjectsUploaded, st.BytesUploaded, st.UploadErrors}
}

func (h *watchHandle) running() bool {
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

var (
	watchMu    sync.Mutex
	watchers   = map[int64]*watchHandle{}
	lastHandle int64
)

// seconds converts a duration option given in seconds.
func seconds(what string, v float64) (time.Duration, error) {
	if math.IsNaN(v) || v < 0 || v > 100*365*24*3600 {
		return 0, configErrorf("%s %v: want seconds >= 0", what, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// watchStart starts a watcher and returns once it replicates.
func watchStart(s *sink, config, options string) (any, error) {
	cfg, err := parseConfig(config, s)
	if err != nil {
		return nil, err
	}
	var o watchOptions
	if err := decodeJSON(options, "options", &o); err != nil {
		return nil, err
	}
	w, dbs, err := newWatcher(cfg, &o)
	if err != nil {
		return nil, err
	}
	st, err := cfg.open(context.Background())
	if err != nil {
		return nil, err
	}
	w.Storage = st

	h := &watchHandle{w: w, sink: newSink(s.level, 10000), done: make(chan struct{})}
	ready := make(chan struct{})
	var once sync.Once
	h.sink.onRecord = func(r slog.Record) {
		if r.Level == slog.LevelInfo && r.Message == readyMessage {
			once.Do(func() { close(ready) })
		}
	}
	w.Logger = h.sink.logger()
	for _, d := range dbs {
		if err := w.Add(d.Path, d.Name); err != nil {
			return nil, configError{err}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		defer func() {
			if r := recover(); r != nil {
				h.err = fmt.Errorf("internal error: %v (please report it)", r)
			}
		}()
		h.err = w.Run(ctx)
	}()
	select {
	case <-ready:
	case <-h.done:
		cancel()
		s.absorb(h.sink)
		if h.err == nil {
			return nil, errors.New("the watcher stopped before it started")
		}
		return nil, h.err
	}
	watchMu.Lock()
	lastHandle++
	id := lastHandle
	watchers[id] = h
	watchMu.Unlock()
	s.absorb(h.sink)
	return map[string]any{"handle": id, "databases": dbs}, nil
}

// newWatcher checks the options as `walsync watch` checks its flags and
// gives each database its name.
func newWatcher(cfg *config, o *watchOptions) (*replicate.Watcher, []watchDB, error) {
	if len(o.Paths) == 0 {
		return nil, nil, configErrorf("no database to watch")
	}
	if o.Name != "" && len(o.Paths) != 1 {
		return nil, nil, configErrorf("a name works with one database; %d given", len(o.Paths))
	}
	interval := 3600 * time.Second
	var err error
	if o.SnapshotInterval != nil {
		if interval, err = seconds("snapshot_interval", *o.SnapshotInterval); err != nil {
			return nil, nil, err
		}
	}
	shutdown := 30 * time.Second
	if o.ShutdownTimeout != nil {
		if shutdown, err = seconds("shutdown_timeout", *o.ShutdownTimeout); err != nil {
			return nil, nil, err
		}
	}
	sync := time.Second // the CLI's default
	if o.SyncInterval != nil {
		if sync, err = seconds("sync_interval", *o.SyncInterval); err != nil {
			return nil, nil, err
		}
	}
	retention, err := seconds("retention", o.Retention)
	if err != nil {
		return nil, nil, err
	}
	if o.Uploads < 0 {
		return nil, nil, configErrorf("uploads %d: want >= 1 (0: the default, 4)", o.Uploads)
	}
	paths := make([]string, len(o.Paths))
	for i, p := range o.Paths {
		if p == "" {
			return nil, nil, configErrorf("empty database path")
		}
		if paths[i], err = filepath.Abs(p); err != nil {
			return nil, nil, err
		}
		if err := checkDatabase(paths[i]); err != nil {
			return nil, nil, err
		}
	}
	names, err := walsync.UniqueNames(paths)
	if err != nil {
		return nil, nil, configError{err}
	}
	if o.Name != "" {
		if err := walsync.ValidateName(o.Name); err != nil {
			return nil, nil, configError{err}
		}
		names[paths[0]] = o.Name
	}
	dbs := make([]watchDB, len(paths))
	for i, p := range paths {
		dbs[i] = watchDB{Path: p, Name: names[p]}
	}
	w := &replicate.Watcher{
		SnapshotInterval: interval,
		ShutdownTimeout:  shutdown,
		SyncInterval:     sync,
		Retention:        retention,
		Uploads:          o.Uploads,
		Takeover:         o.Takeover,
	}
	return w, dbs, nil
}

func lookupWatch(handle int64, remove bool) (*watchHandle, error) {
	watchMu.Lock()
	defer watchMu.Unlock()
	h := watchers[handle]
	if h == nil {
		return nil, configErrorf("no running watcher with handle %d (stopped already?)", handle)
	}
	if remove {
		delete(watchers, handle)
	}
	return h, nil
}

// watchPoll waits up to timeoutMs for log records or the watcher's end.
func watchPoll(s *sink, handle int64, timeoutMs int) (any, error) {
	h, err := lookupWatch(handle, false)
	if err != nil {
		return nil, err
	}
	h.sink.await(timeoutMs, h.done)
	s.absorb(h.sink)
	return map[string]any{"running": h.running(), "stats": h.stats()}, nil
}

// watchStop stops a watcher: it ships what was captured and returns.
func watchStop(s *sink, handle int64) (any, error) {
	h, err := lookupWatch(handle, true)
	if err != nil {
		return nil, err
	}
	h.cancel()
	<-h.done
	s.absorb(h.sink)
	if h.err != nil {
		return nil, h.err
	}
	return map[string]any{"stats": h.stats()}, nil
}
