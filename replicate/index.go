package replicate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
)

// The bucket index <name>/state.json (docs/FORMAT.md, "state.json"). The
// watcher records every object it puts (or finds already put by an earlier
// run) and rewrites the index with Storage.Replace:
//
//   - after uploads only: an idle database costs no request;
//   - at most once every IndexInterval (10 s) per database, from a timer:
//     the first upload after a write schedules the next write, and uploads
//     meanwhile are folded into it; a failed write is retried with backoff;
//   - once more at shutdown, after the last uploads, when anything was
//     recorded since the last write (before the name's lock is released).
//
// It is an index only: list, restore and verify never depend on it. What
// it says about objects uploaded by earlier runs (the latest snapshot
// after a restart, say) comes from a local hint in the spool
// (bucket-index.json, the last content written), or, for a new spool,
// from the listing walsync makes anyway when it starts a generation.

const (
	defaultIndexInterval = 10 * time.Second
	indexWriteTimeout    = 30 * time.Second
	indexHintFile        = "bucket-index.json"
	maxIndexBackoff      = 5 // doublings of the interval after failed writes
)

// indexState is one database's index as the watcher knows it.
type indexState struct {
	writeMu sync.Mutex // serialises writes, so that a later write has newer content

	mu       sync.Mutex
	loaded   bool // the spool's hint was read
	idx      walsync.Index
	version  uint64 // bumped by every record
	written  uint64 // version of the content last written (or dropped)
	pending  bool   // a timer is set or its write is running
	timer    *time.Timer
	lastTry  time.Time // last write attempt (wall clock of the process)
	failures int       // consecutive failed writes
}

// indexHint is the spool's bucket-index.json.
type indexHint struct {
	Bucket string        `json:"bucket"`
	Index  walsync.Index `json:"index"`
}

func (w *Watcher) indexInterval() time.Duration {
	if w.IndexInterval > 0 {
		return w.IndexInterval
	}
	return defaultIndexInterval
}

// startIndex readies the index writer for Run; the returned function stops
// its timers' writes.
func (w *Watcher) startIndex(ctx context.Context) func() {
	ictx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.indexCtx = ictx
	w.indexSince = w.now().UTC()
	return func() {
		w.indexClosed.Store(true)
		cancel()
	}
}

// load reads the spool's hint once: what the last run wrote, when it was
// for this bucket and name. Called with x.mu held.
func (x *indexState) load(d *DB) {
	if x.loaded || d.spool == nil {
		return
	}
	x.loaded = true
	b, err := fsys.ReadFile(d.spool.fs, "index-hint:read", filepath.Join(d.spool.dir, indexHintFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Debug("bucket index hint unreadable; ignored", "err", err)
		}
		return
	}
	var h indexHint
	if err := json.Unmarshal(b, &h); err != nil || h.Bucket != d.w.Storage.String() || h.Index.Name != d.Name {
		return
	}
	x.idx.Generation = h.Index.Generation
	x.idx.LatestSnapshot = h.Index.LatestSnapshot
	x.idx.LatestSegment = h.Index.LatestSegment
}

// saveHint writes idx as the spool's hint for the next run.
func (x *indexState) saveHint(d *DB, idx walsync.Index) {
	if d.spool == nil {
		return
	}
	b, err := json.MarshalIndent(indexHint{Bucket: d.w.Storage.String(), Index: idx}, "", "  ")
	if err == nil {
		err = d.spool.writeFile("index-hint", indexHintFile, func(w io.Writer) error {
			_, err := w.Write(append(b, '\n'))
			return err
		})
	}
	if err != nil {
		d.log.Debug("could not save the bucket index hint", "err", err)
	}
}

// setSnapshot makes e the latest snapshot unless a newer one is known.
func (x *indexState) setSnapshot(e *walsync.IndexEntry) bool {
	if cur := x.idx.LatestSnapshot; cur != nil {
		ck, ok1 := walsync.ParseKey(cur.Key)
		nk, ok2 := walsync.ParseKey(e.Key)
		if ok1 && ok2 && nk.Time.Before(ck.Time) {
			return false
		}
	}
	x.idx.LatestSnapshot = e
	return true
}

// setSegment makes e the latest segment unless a higher number is known.
func (x *indexState) setSegment(e *walsync.IndexEntry) bool {
	if cur := x.idx.LatestSegment; cur != nil && e.Seq < cur.Seq {
		return false
	}
	x.idx.LatestSegment = e
	return true
}

func (x *indexState) setGeneration() {
	switch {
	case x.idx.LatestSnapshot != nil && x.idx.LatestSnapshot.Generation != "":
		x.idx.Generation = x.idx.LatestSnapshot.Generation
	case x.idx.LatestSegment != nil && x.idx.LatestSegment.Generation != "":
		x.idx.Generation = x.idx.LatestSegment.Generation
	}
}

// seedSegment records a segment seen in the bucket's listing (when a
// generation starts without local state): the index then names the
// latest segment even before this run uploads one.
func (x *indexState) seedSegment(d *DB, key string, k walsync.Key) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.load(d)
	if x.idx.LatestSegment != nil && x.idx.LatestSegment.Seq >= k.Seq {
		return
	}
	x.idx.LatestSegment = &walsync.IndexEntry{Key: key, Seq: k.Seq, Time: k.Time}
	x.setGeneration()
}

// recordUpload notes that key (header hdr, size stored bytes) is in the
// bucket: uploaded now, or found there with the same bytes (uploaded by a
// run that crashed before its spool knew). It schedules an index write.
func (w *Watcher) recordUpload(d *DB, key string, hdr walsync.ObjectHeader, snapshot bool, size int64, uploaded bool) {
	d.noteError(nil)
	if ns := hdr.Created.UnixNano(); ns > d.lastDurable.Load() {
		d.lastDurable.Store(ns)
	}
	x := &d.index
	x.mu.Lock()
	x.load(d)
	e := &walsync.IndexEntry{Key: key, Seq: hdr.Seq, Time: hdr.Created.UTC(), Generation: hdr.Generation.String()}
	changed := false
	if snapshot {
		changed = x.setSnapshot(e)
		if uploaded {
			x.idx.Uploaded.Snapshots++
		}
	} else {
		x.setSegment(e)
		if uploaded {
			x.idx.Uploaded.Segments++
		}
	}
	if uploaded {
		x.idx.Uploaded.Bytes += size
	}
	x.idx.Uploaded.Since = w.indexSince
	x.setGeneration()
	x.version++
	var hint *walsync.Index
	if changed {
		// A new latest snapshot is rare and worth keeping at once: a
		// crash before the next index write would otherwise lose it for
		// the next run's index.
		h := x.idx
		hint = &h
	}
	x.mu.Unlock()
	if hint != nil {
		x.saveHint(d, *hint)
	}
	w.scheduleIndex(d)
}

// recordFollowing notes in d's index whether its local file is followed
// (problem nil) or not, and why: verify reports the latter. Written like
// any change of the index.
func (w *Watcher) recordFollowing(d *DB, problem *walsync.IndexProblem) {
	x := &d.index
	x.mu.Lock()
	x.load(d)
	if (x.idx.NotFollowed == nil) == (problem == nil) {
		x.mu.Unlock()
		return
	}
	x.idx.NotFollowed = problem
	x.version++
	x.mu.Unlock()
	// Rare and worth knowing at once: written now, not at the next
	// index interval.
	if w.indexCtx != nil && !w.indexClosed.Load() && !d.stopping() {
		go func() {
			ctx, cancel := context.WithTimeout(w.indexCtx, indexWriteTimeout)
			defer cancel()
			if err := w.writeIndex(ctx, d); err != nil {
				d.log.Warn("could not write the bucket index (an index only)", "key", walsync.StateKey(d.Name), "err", err)
			}
		}()
	}
}

// scheduleIndex sets d's index timer, unless one is set, nothing is new,
// or the watcher is not running (tests that upload by hand, shutdown: the
// final flush writes).
func (w *Watcher) scheduleIndex(d *DB) {
	if w.indexCtx == nil || w.indexClosed.Load() || d.stopping() {
		return
	}
	x := &d.index
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.pending || x.version == x.written {
		return
	}
	var delay time.Duration
	if !x.lastTry.IsZero() {
		delay = w.indexInterval()<<min(x.failures, maxIndexBackoff) - time.Since(x.lastTry)
	}
	x.pending = true
	x.timer = time.AfterFunc(max(delay, 0), func() { w.indexTimer(d) })
}

func (w *Watcher) indexTimer(d *DB) {
	x := &d.index
	if !w.indexClosed.Load() && !d.stopping() {
		ctx, cancel := context.WithTimeout(w.indexCtx, indexWriteTimeout)
		if err := w.writeIndex(ctx, d); err != nil && !w.indexClosed.Load() {
			d.log.Warn("could not write the bucket index; retrying later (an index only: list, restore and verify do not need it)",
				"key", walsync.StateKey(d.Name), "err", err)
		}
		cancel()
	}
	x.mu.Lock()
	x.pending = false
	x.mu.Unlock()
	w.scheduleIndex(d) // uploads meanwhile, or a retry
}

// writeIndex writes d's index when something was recorded since the last
// write. A database whose replication stopped (another writer owns the
// name) writes nothing.
func (w *Watcher) writeIndex(ctx context.Context, d *DB) error {
	x := &d.index
	x.writeMu.Lock()
	defer x.writeMu.Unlock()
	x.mu.Lock()
	if x.version == x.written {
		x.mu.Unlock()
		return nil
	}
	idx, version := x.idx, x.version
	x.lastTry = time.Now()
	x.mu.Unlock()
	if d.failedErr() != nil {
		x.mu.Lock()
		x.written = version // dropped: not ours to write any more
		x.mu.Unlock()
		return nil
	}
	idx.Version, idx.Name, idx.Updated = walsync.IndexVersion, d.Name, w.now().UTC()
	body, err := walsync.MarshalIndex(idx)
	if err != nil {
		return err
	}
	x.saveHint(d, idx)
	sum := sha256.Sum256(body)
	key := walsync.StateKey(d.Name)
	err = w.Storage.Replace(ctx, key, bytes.NewReader(body), int64(len(body)), hex.EncodeToString(sum[:]))
	x.mu.Lock()
	if err == nil {
		x.written, x.failures = version, 0
	} else {
		x.failures++
	}
	x.mu.Unlock()
	if err != nil {
		return err
	}
	d.log.Debug("wrote the bucket index", "key", key, "bytes", len(body))
	return nil
}

// closeIndex stops d's index timer and writes its index if something is
// new (Release, and every database at a shutdown: flushIndexes).
func (w *Watcher) closeIndex(ctx context.Context, d *DB) {
	d.index.mu.Lock()
	if d.index.timer != nil {
		d.index.timer.Stop()
	}
	d.index.mu.Unlock()
	if err := w.writeIndex(ctx, d); err != nil {
		d.log.Warn("could not write the bucket index (an index only: list, restore and verify do not need it)",
			"key", walsync.StateKey(d.Name), "err", err)
	}
}

// flushIndexes stops the timers and writes every index with something new,
// a few at a time: at shutdown, after the last uploads.
func (w *Watcher) flushIndexes(ctx context.Context) {
	w.indexClosed.Store(true)
	sem := make(chan struct{}, max(w.Uploads, 4))
	var wg sync.WaitGroup
	for _, d := range w.all() {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			w.closeIndex(ctx, d)
		})
	}
	wg.Wait()
}
