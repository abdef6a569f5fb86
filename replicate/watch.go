package replicate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
)

// Watcher replicates any number of databases in one process: it follows
// their WALs (file-system notifications, with polling as a fallback and a
// safety net), captures commits into each database's spool, and uploads
// spooled objects with bounded concurrency over one shared storage client.
// An idle database costs no storage request at all.
type Watcher struct {
	Storage walsync.Storage
	Logger  *slog.Logger
	// SnapshotInterval: a database that changed gets a new snapshot this
	// often. Zero or negative: only the snapshot that starts a generation.
	SnapshotInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BusyTimeout bounds waits for SQLite locks. Zero means 30 s.
	BusyTimeout time.Duration
	// Uploads is the number of concurrent uploads. Zero means 4.
	Uploads int
	// Snapshots is the number of concurrent snapshots. Zero means 1.
	Snapshots int
	// PollInterval is how often files are checked for changes when
	// notifications are unavailable (ten times less often as a safety net
	// when they work). Zero means 1 s.
	PollInterval time.Duration
	// ShutdownTimeout bounds the final capture and upload when the context
	// ends. Zero means 30 s.
	ShutdownTimeout time.Duration
	// SyncInterval batches: after a capture, further commits wait up to
	// this long to go out together in one segment (one PUT), unless a
	// checkpoint waits for them. Zero captures every commit at once.
	SyncInterval time.Duration
	// Takeover claims names whose lock.json another host or database left
	// (a writer that is gone for good). See claim.go.
	Takeover bool
	// Retention keeps every restore point of this window and deletes what
	// no such point needs (see retention.go). Zero keeps everything.
	Retention time.Duration
	// Owner describes this process in the spool's owner lock, for the
	// error another process gets when it tries to replicate the same
	// database ("" means "walsync watch").
	Owner string
	// SpoolNotify: file notifications come from each database's spool
	// directory (its "changed" and "flush" requests, see Nudge and
	// RequestFlush) instead of the database's directory, where every WAL
	// write raises one. For a watcher inside the application (the VFS),
	// which hears of its own commits through Kick: other processes nudge
	// it. The poller still catches writers that do neither.
	SpoolNotify bool
	// Batch: captures made for the VFS hooks (Flush, CatchUp, Unpin) and
	// those a checkpoint waiting for the pin asks for append to one open
	// segment, sealed and uploaded one SyncInterval after its first
	// frames (segment.go), instead of one segment each: for a watcher
	// inside the application, whose hooks capture from the committing
	// thread every few hundred frames. `walsync watch` seals every
	// capture.
	Batch bool
	// KeepSpare keeps each database's second SQLite connection open
	// between pin moves instead of opening it for each (DB.spare). For a
	// watcher inside the application (the VFS), where pin moves come from
	// the committing thread every 1,000 frames and a connection more per
	// database does not matter; `walsync watch` closes it, which is what
	// keeps 1,000 databases in 80 MB.
	KeepSpare bool
	// IdleClose, above 0, closes a database's pins and files once it has
	// been idle that long with every commit captured (idle.go), until its
	// next change; `walsync watch` only (not with Batch).
	IdleClose time.Duration
	// OnReady, when set, is called once every database is open (its
	// position proven or a new generation started) and the watcher
	// follows them.
	OnReady func()
	// OnQuiet, when set, hears how long a further Kick of a database
	// would do nothing: Kick calls it with the time left (its deferred
	// sync is armed and the sync interval has not passed), the firing of
	// that sync with 0. It is called with the database's timer lock held,
	// so the two never cross: it must return at once. For the VFS, whose
	// shim then skips the call into Go for the commits of that time.
	OnQuiet func(path string, left time.Duration)
	// WALFrameLimit: when a database's WAL holds this many frames, walsync
	// briefly locks writers out to let SQLite restart it (DB.brake); an
	// application writing without a pause would otherwise grow its WAL
	// without bound. Zero means 10,000 (about 40 MB at 4 KiB pages).
	WALFrameLimit uint32
	// StartTimeout bounds the storage requests a start makes before it
	// follows a database (the bucket's check, the claim of the name, the
	// listing for the next number); the snapshot that may follow is not
	// bounded. Zero: only ctx bounds them.
	StartTimeout time.Duration
	// IndexInterval: a database's bucket index (<name>/state.json) is
	// written at most this often, after uploads (see index.go). Zero
	// means 10 s.
	IndexInterval time.Duration
	// Dynamic: databases come and go while it runs (Follow, Release), and
	// it may start with none (the VFS's watcher, shared by every database
	// of the process with the same bucket and settings).
	Dynamic bool
	// Dirs are directories whose databases are followed as they appear
	// and released when they are deleted (DirSource); SetDirs changes
	// them while it runs.
	Dirs []DirSource
	// Discover looks for databases under Dirs even when there are none
	// yet: a configuration reload may add some (SetDirs).
	Discover bool
	// RetentionPossible runs the retention pass even when no database
	// has a retention yet: a configuration reload may add one.
	RetentionPossible bool
	// FS is the file system of the spools (nil: the real one): tests
	// fail or crash named steps through it (package fsys).
	FS fsys.OS

	regMu       sync.Mutex // serializes changes of reg
	reg         atomic.Pointer[registry]
	prepOnce    sync.Once
	dirMu       sync.Mutex // guards Dirs once it runs
	notifyMu    sync.Mutex
	notify      *fsnotify.Watcher // nil: polling only
	watched     map[string]int    // directories watched, and for how many databases
	snapshotSem chan struct{}
	syncQ       *dbQueue
	uploadQ     *dbQueue
	metrics     metrics
	started     atomic.Bool
	ready       atomic.Bool
	stopping    atomic.Bool

	indexCtx    context.Context // for index writes from timers; nil until Run
	indexSince  time.Time
	indexClosed atomic.Bool

	testHookCapture    func()       // runs as each capture starts, on its thread
	testHookSnapshot   func() error // runs as each snapshot starts; its error fails it
	testHookBackground func()       // runs as a background capture's goroutine starts
}

// metrics are the counters the watcher keeps (exported later as
// Prometheus metrics).
type metrics struct {
	framesCaptured  atomic.Int64
	objectsUploaded atomic.Int64
	bytesUploaded   atomic.Int64
	uploadErrors    atomic.Int64
	// framesAhead: frames captured ahead of their commit and kept at it;
	// framesAheadCut: those SQLite changed before it (speculate.go).
	framesAhead    atomic.Int64
	framesAheadCut atomic.Int64
}

func (m *metrics) addCaptured(n int) { m.framesCaptured.Add(int64(n)) }

func (m *metrics) addAhead(kept, cut uint32) {
	m.framesAhead.Add(int64(kept))
	m.framesAheadCut.Add(int64(cut))
}

// Stats is a snapshot of the watcher's counters.
type Stats struct {
	FramesCaptured, ObjectsUploaded, BytesUploaded, UploadErrors int64
	// FramesAhead were captured ahead of their commit and kept at it;
	// FramesAheadCut were captured ahead and captured again at the
	// commit, SQLite having changed them meanwhile.
	FramesAhead, FramesAheadCut int64
}

// Stats returns the counters.
func (w *Watcher) Stats() Stats {
	return Stats{w.metrics.framesCaptured.Load(), w.metrics.objectsUploaded.Load(),
		w.metrics.bytesUploaded.Load(), w.metrics.uploadErrors.Load(),
		w.metrics.framesAhead.Load(), w.metrics.framesAheadCut.Load()}
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watcher) busyTimeout() time.Duration {
	if w.BusyTimeout > 0 {
		return w.BusyTimeout
	}
	return 30 * time.Second
}

func (w *Watcher) walFrameLimit() uint32 {
	if w.WALFrameLimit > 0 {
		return w.WALFrameLimit
	}
	return 10000
}

func (w *Watcher) ownerKind() string {
	if w.Owner != "" {
		return w.Owner
	}
	return "walsync watch"
}

func (w *Watcher) logger() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Add registers a database (absolute path) under name. Call before Run;
// a running watcher takes more with Follow.
func (w *Watcher) Add(path, name string) error {
	if w.started.Load() {
		return errors.New("watcher already running")
	}
	_, err := w.register(path, name, Overrides{})
	return err
}

// AddWith is Add with settings of this database's own.
func (w *Watcher) AddWith(path, name string, o Overrides) error {
	if w.started.Load() {
		return errors.New("watcher already running")
	}
	_, err := w.register(path, name, o)
	return err
}

// register adds the database at path under name to the registry.
func (w *Watcher) register(path, name string, o Overrides) (*DB, error) {
	if err := walsync.ValidateName(name); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	w.regMu.Lock()
	defer w.regMu.Unlock()
	if w.byPath(abs) != nil {
		return nil, fmt.Errorf("database %s given twice", abs)
	}
	for _, d := range w.all() {
		if d.Name == name {
			return nil, fmt.Errorf("databases %s and %s would share the name %q", d.Path, abs, name)
		}
	}
	d := &DB{Path: abs, Name: name, w: w, log: w.logger().With("db", name), jitter: rand.Float64(), set: w.settingsFor(o)}
	w.update(func(r *registry) {
		r.dbs = append(r.dbs, d)
		for _, f := range d.files() {
			r.byFile[f] = d
		}
	})
	return d, nil
}

// unregister removes d from the registry: no event, poll, tick or hook
// finds it any more.
func (w *Watcher) unregister(d *DB) {
	w.regMu.Lock()
	defer w.regMu.Unlock()
	w.update(func(r *registry) {
		r.dbs = slices.DeleteFunc(r.dbs, func(x *DB) bool { return x == d })
		for _, f := range d.files() {
			if r.byFile[f] == d {
				delete(r.byFile, f)
			}
		}
	})
}

// Follow adds the database at path, under name, to a running watcher
// (Dynamic) and returns once it follows it: its position proven or a new
// generation started, as a start does for the databases given to Add. On
// error nothing of it is left in the watcher.
func (w *Watcher) Follow(ctx context.Context, path, name string) error {
	return w.FollowWith(ctx, path, name, Overrides{})
}

// FollowWith is Follow with settings of this database's own.
func (w *Watcher) FollowWith(ctx context.Context, path, name string, o Overrides) error {
	if !w.ready.Load() || w.stopping.Load() {
		return errors.New("watcher not running")
	}
	d, err := w.register(path, name, o)
	if err != nil {
		return err
	}
	if err := d.open(ctx); err != nil {
		w.unregister(d)
		d.release(context.WithoutCancel(ctx))
		return fmt.Errorf("%s: %w", d.Path, err)
	}
	w.notifyMu.Lock()
	err = w.watchLocked(d)
	w.notifyMu.Unlock()
	if err != nil {
		d.log.Warn("no file notifications for this database; polling it", "err", err)
	}
	w.notifyUpload(d) // spooled objects of an earlier run go out first
	w.enqueueSync(d)
	return nil
}

// Release stops following the database at path, as a shutdown does for
// every database: what is committed is captured and shipped (within
// ctx), the bucket index written, the name and the owner lock given up.
// The other databases go on. It returns an error when objects are left
// in the spool (the next start ships them); a path not followed is not
// an error.
func (w *Watcher) Release(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	d := w.byPath(abs)
	if d == nil || d.Path != abs {
		return nil
	}
	w.unregister(d)
	w.unwatch(d)
	d.leaving.Store(true)
	d.tmu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.tmu.Unlock()
	return w.finish(ctx, d)
}

// finish is the end of following d (Release, or every database at a
// shutdown): the final capture, the uploads, the bucket index, the name
// and the owner lock. It returns an error when objects are left.
func (w *Watcher) finish(ctx context.Context, d *DB) error {
	if err := d.sync(context.WithoutCancel(ctx)); err != nil {
		d.log.Error("final capture failed", "err", err)
	}
	left, err := w.shipRest(ctx, d)
	if err != nil {
		d.log.Error("could not ship everything; it stays in the spool for the next start", "err", err)
	}
	w.closeIndex(ctx, d)
	d.release(context.WithoutCancel(ctx))
	d.close()
	if left > 0 {
		return fmt.Errorf("%s: %d captured objects not yet uploaded (kept in the spool; the next start uploads them)", d.Path, left)
	}
	return nil
}

// shipRest uploads what d's spool holds, after its final capture, and
// returns how many objects are left in it and the upload's error.
func (w *Watcher) shipRest(ctx context.Context, d *DB) (int, error) {
	d.mu.Lock()
	d.discardPrepared() // not an object left to ship
	d.mu.Unlock()
	err := w.uploadAll(ctx, d)
	if d.spool == nil {
		return 0, err
	}
	entries, lerr := d.spool.entries()
	if lerr != nil {
		return 0, err
	}
	return len(entries), err
}

// retentionSomewhere says whether some database or directory has a
// retention of its own (the retention pass then runs).
func (w *Watcher) retentionSomewhere() bool {
	for _, d := range w.all() {
		if d.set.retention > 0 {
			return true
		}
	}
	for _, s := range w.dirs() {
		if s.Retention != nil && *s.Retention > 0 {
			return true
		}
	}
	return w.RetentionPossible
}

// prepare makes the queues and the snapshot semaphore (Run; tests that
// drive a DB by hand).
func (w *Watcher) prepare() {
	w.prepOnce.Do(func() {
		w.snapshotSem = make(chan struct{}, max(1, w.Snapshots))
		w.syncQ, w.uploadQ = newDBQueue(), newDBQueue()
	})
}

// Run replicates until ctx ends, then captures and uploads what is left
// (bounded by ShutdownTimeout) and returns. A database that cannot be
// opened is an error at start; later failures are logged and retried.
func (w *Watcher) Run(ctx context.Context) error {
	if len(w.all()) == 0 && !w.Dynamic && len(w.dirs()) == 0 {
		return errors.New("no databases to watch")
	}
	w.started.Store(true)
	w.prepare()
	pctx, cancel := w.startCtx(ctx)
	err := w.Storage.Prepare(pctx)
	cancel()
	if err != nil {
		return err
	}
	stopIndex := w.startIndex(ctx)
	defer stopIndex()

	// Workers: uploads run until the very end (after the final capture).
	upCtx, stopUploads := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUploads()
	var upWG sync.WaitGroup
	uploads := w.Uploads
	if uploads <= 0 {
		uploads = 4
	}
	for i := 0; i < uploads; i++ {
		upWG.Add(1)
		go func() {
			defer upWG.Done()
			w.uploadWorker(upCtx)
		}()
	}

	// One database that cannot be opened does not stop the others: it is
	// logged and looked at again (DB.follow: backoff, a line a minute).
	// Only when none can be followed does the start fail.
	var failed []*DB
	var firstErr error
	for _, d := range w.all() {
		if err := d.open(ctx); err != nil {
			if ctx.Err() != nil {
				w.closeAll()
				stopUploads()
				upWG.Wait()
				return fmt.Errorf("%s: %w", d.Path, err)
			}
			if firstErr == nil {
				firstErr = err
				if !strings.Contains(err.Error(), d.Path) {
					firstErr = fmt.Errorf("%s: %w", d.Path, err)
				}
			}
			d.noteError(err)
			d.mu.Lock()
			d.lost, d.followLogged = "not followed at start: "+err.Error(), d.now()
			d.mu.Unlock()
			d.log.Warn("cannot replicate this database; the others go on, and it is looked at again (logged once a minute)", "err", err)
			failed = append(failed, d)
			continue
		}
		// Spooled objects of an earlier run go out first.
		w.notifyUpload(d)
	}
	if len(failed) > 0 && len(failed) == len(w.all()) && len(w.dirs()) == 0 && !w.Dynamic {
		w.closeAll()
		stopUploads()
		upWG.Wait()
		if len(failed) == 1 {
			return firstErr
		}
		return fmt.Errorf("none of the %d databases can be replicated; the first: %w", len(failed), firstErr)
	}

	notify, err := w.startNotify()
	poll := w.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	if err != nil {
		w.logger().Warn("file notifications unavailable; polling", "interval", poll, "err", err)
	} else {
		defer notify.Close()
		poll *= 10
	}

	syncCtx, stopSyncs := context.WithCancel(context.WithoutCancel(ctx))
	var syncWG sync.WaitGroup
	for i := 0; i < 2; i++ {
		syncWG.Add(1)
		go func() {
			defer syncWG.Done()
			w.syncWorker(syncCtx)
		}()
	}
	for _, d := range failed {
		w.syncAfter(d, 250*time.Millisecond) // DB.follow from there
	}
	w.logger().Info("watching", "databases", len(w.all()), "not_followed", len(failed), "bucket", w.Storage.String())
	w.ready.Store(true)
	var discoverWG sync.WaitGroup
	if len(w.dirs()) > 0 || w.Discover {
		seen := map[string]*discovered{}
		w.discoverOnce(ctx, seen) // what is there already, before ready
		discoverWG.Go(func() { w.discover(ctx, seen) })
	}
	if w.OnReady != nil {
		w.OnReady()
	}

	var events <-chan fsnotify.Event
	var errs <-chan error
	if notify != nil {
		events, errs = notify.Events, notify.Errors
	}
	stats := map[*DB]fileState{}
	pollTick := time.NewTicker(poll)
	defer pollTick.Stop()
	// Periodic work is spread over the interval (start-up jitter), so a
	// thousand databases do not snapshot at once.
	snapTick := time.NewTicker(time.Second)
	defer snapTick.Stop()
	var retentionC <-chan time.Time
	if w.Retention > 0 || w.retentionSomewhere() {
		every := time.Minute
		if w.Retention > 0 {
			every = min(max(w.Retention/4, time.Second), time.Hour)
		}
		rt := time.NewTicker(every)
		defer rt.Stop()
		retentionC = rt.C
	}
	var pruning atomic.Bool
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case ev := <-events:
			if d := w.byPath(ev.Name); d != nil {
				w.eventSync(d)
			}
		case err := <-errs:
			w.logger().Warn("file notification error; checking every database", "err", err)
			for _, d := range w.all() {
				w.enqueueSync(d)
			}
		case <-pollTick.C:
			for _, d := range w.all() {
				if fs := statFiles(d.Path); fs != stats[d] {
					stats[d] = fs
					w.enqueueSync(d)
				}
			}
		case <-retentionC:
			if pruning.CompareAndSwap(false, true) {
				go func() {
					defer pruning.Store(false)
					inBackground(func() { w.pruneAll(syncCtx) })
				}()
			}
		case <-snapTick.C:
			for _, d := range w.all() {
				if d.set.snapshotInterval > 0 && d.snapshotDue() {
					go inBackground(func() { w.runSnapshot(syncCtx, d) })
				}
				d.checkUploadStall()
				d.dropIdleSpare()
				d.sleepIfIdle()
			}
		}
	}

	// Shutdown: capture what is committed, ship it, stop.
	discoverWG.Wait() // no database joins or leaves from now on
	w.stopping.Store(true)
	stopSyncs()
	syncWG.Wait()
	w.logger().Info("shutting down: shipping what was captured")
	timeout := w.ShutdownTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for _, d := range w.all() {
		if err := d.sync(context.Background()); err != nil {
			d.log.Error("final capture failed", "err", err)
		}
	}
	stopUploads()
	upWG.Wait()
	finalCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var left int
	for _, d := range w.all() {
		n, err := w.shipRest(finalCtx, d)
		if err != nil {
			d.log.Error("could not ship everything before exit; it stays in the spool for the next start", "err", err)
		}
		left += n
	}
	// The bucket index, once more after the last uploads, while the
	// names are still ours.
	w.flushIndexes(finalCtx)
	w.closeAll()
	if left > 0 {
		return fmt.Errorf("%d captured objects not yet uploaded (kept in the spool; the next start uploads them)", left)
	}
	return nil
}

// startCtx bounds a start's storage requests (StartTimeout).
func (w *Watcher) startCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if w.StartTimeout > 0 {
		return context.WithTimeout(ctx, w.StartTimeout)
	}
	return context.WithCancel(ctx)
}

// pruneAll applies retention to every database that uploaded something
// since its last pass: an idle database costs no request.
func (w *Watcher) pruneAll(ctx context.Context) {
	for _, d := range w.all() {
		if d.set.retention <= 0 || !d.uploadedSincePrune.Swap(false) {
			continue
		}
		// Before anything leaves the bucket, the uploaded objects leave
		// the spool for good: a crash must not bring one back to upload
		// again after retention deleted it (spool.remove).
		if err := d.spool.syncRemovals(); err != nil {
			d.uploadedSincePrune.Store(true)
			d.log.Error("retention pass postponed", "err", err)
			continue
		}
		res, err := prune(ctx, w.Storage, d.Name, d.set.retention, w.now())
		if err != nil {
			d.uploadedSincePrune.Store(true)
			if ctx.Err() != nil {
				// Shutdown cut the pass short; what it deleted was
				// already unnecessary, and the next start prunes the rest.
				return
			}
			d.log.Error("retention pass failed", "err", err)
			continue
		}
		if res.Snapshots+res.Segments > 0 {
			d.log.Info("retention", "deleted_snapshots", res.Snapshots, "deleted_segments", res.Segments, "window", d.set.retention)
		}
	}
}

func (w *Watcher) closeAll() {
	for _, d := range w.all() {
		// The name goes before the owner lock: a process that takes over
		// (it can only once the lock is free) then finds lock.json gone,
		// not ours, which it would delete while we read it (release is a
		// read, then a delete) or fail to read after we deleted it.
		d.release(context.Background())
		d.close()
	}
}

// fileState is what the poller compares.
type fileState struct {
	walSize, dbSize   int64
	walMtime, dbMtime time.Time
}

func statFiles(path string) fileState {
	var s fileState
	if fi, err := os.Stat(path + "-wal"); err == nil {
		s.walSize, s.walMtime = fi.Size(), fi.ModTime()
	}
	if fi, err := os.Stat(path); err == nil {
		s.dbSize, s.dbMtime = fi.Size(), fi.ModTime()
	}
	return s
}

// startNotify watches the directory of every database (one watch per
// directory, not per file); Follow and Release add and remove theirs.
func (w *Watcher) startNotify() (*fsnotify.Watcher, error) {
	nw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w.notifyMu.Lock()
	defer w.notifyMu.Unlock()
	w.notify, w.watched = nw, map[string]int{}
	for _, d := range w.all() {
		if err := w.watchLocked(d); err != nil {
			nw.Close()
			w.notify = nil
			return nil, err
		}
	}
	return nw, nil
}

// notifyDir is the directory whose events concern d.
func (w *Watcher) notifyDir(d *DB) string {
	if w.SpoolNotify {
		return spoolDir(d.Path)
	}
	return filepath.Dir(d.Path)
}

// watchLocked adds d's directory to the notifications (counted: a
// directory of many databases is watched once). Called with w.notifyMu
// held.
func (w *Watcher) watchLocked(d *DB) error {
	if w.notify == nil {
		return nil // polling only
	}
	dir := w.notifyDir(d)
	if w.watched[dir] == 0 {
		if err := w.notify.Add(dir); err != nil {
			return fmt.Errorf("watch %s: %w", dir, err)
		}
	}
	w.watched[dir]++
	return nil
}

// unwatch takes back what watchLocked did for d.
func (w *Watcher) unwatch(d *DB) {
	w.notifyMu.Lock()
	defer w.notifyMu.Unlock()
	if w.notify == nil {
		return
	}
	dir := w.notifyDir(d)
	if w.watched[dir]--; w.watched[dir] <= 0 {
		delete(w.watched, dir)
		w.notify.Remove(dir) //nolint:errcheck // gone with the directory, or not: no event finds d any more
	}
}

func (w *Watcher) enqueueSync(d *DB) { w.syncQ.push(d) }

// eventGap is the shortest time between two syncs of a database that file
// notifications ask for. Every write raises one: a large transaction
// spilling its frames into the WAL, or a checkpoint copying 50 MB into
// the database, raised 12,000 each, and a sync each (31,000 syncs in 4 s
// of the checkpoint bench) took the CPU the application and its
// checkpoint needed.
const eventGap = time.Millisecond

// eventSync queues a sync of d for a file notification: at once, or,
// when a sync of d started less than eventGap ago, once that much has
// passed (one timer: a storm of events asks for many and gets one).
func (w *Watcher) eventSync(d *DB) {
	if since := time.Duration(time.Now().UnixNano() - d.syncStartNs.Load()); since < eventGap {
		w.syncAfter(d, eventGap-since)
		return
	}
	w.enqueueSync(d)
}

// syncAfter queues a sync of d after delay. Each database has one timer,
// set to the earliest time asked for: a burst of commits asks for many
// deferred syncs and gets one.
//
// With OnQuiet set, it tells how long a Kick would do nothing from now
// on: while a timer is armed, its sync comes, and a sync that finds
// frames to capture before the interval is over arms the timer again for
// then (DB.sync); so Kick has nothing to add until the sync interval since
// the last capture has passed, or the timer fires (it may fire before,
// when armed for a recheck), whichever comes first. The firing says 0.
func (w *Watcher) syncAfter(d *DB, delay time.Duration) {
	due := time.Now().Add(delay).UnixNano()
	d.tmu.Lock()
	defer d.tmu.Unlock()
	if w.OnQuiet != nil {
		w.OnQuiet(d.Path, d.set.syncInterval-time.Since(time.Unix(0, d.lastCaptureNs.Load())))
	}
	if cur := d.timerDue.Load(); cur != 0 && cur <= due {
		return
	}
	d.timerDue.Store(due)
	if d.timer == nil {
		d.timer = time.AfterFunc(delay, func() {
			d.tmu.Lock()
			d.timerDue.Store(0)
			if w.OnQuiet != nil {
				w.OnQuiet(d.Path, 0)
			}
			d.tmu.Unlock()
			if !d.stopping() {
				w.enqueueSync(d)
			}
		})
		return
	}
	d.timer.Reset(delay)
}

func (w *Watcher) syncWorker(ctx context.Context) {
	for {
		d := w.syncQ.pop(ctx)
		if d == nil {
			return
		}
		d.syncStartNs.Store(time.Now().UnixNano())
		inBackground(func() {
			if err := d.sync(ctx); err != nil && ctx.Err() == nil {
				d.captureFailed(err)
			} else if err == nil {
				d.captureWorks()
			}
		})
	}
}

// snapshotDue is a cheap check without the database's lock.
func (d *DB) snapshotDue() bool {
	if !d.mu.TryLock() {
		return false
	}
	defer d.mu.Unlock()
	if !d.opened || d.st == nil || !d.st.Changed || d.snapshotting {
		return false
	}
	// Jitter: up to a tenth of the interval, fixed per database.
	jitter := time.Duration(d.jitter * float64(d.set.snapshotInterval) / 10)
	if d.now().Sub(d.st.Snapshot) < d.set.snapshotInterval+jitter {
		return false
	}
	d.snapshotting = true
	return true
}

func (w *Watcher) runSnapshot(ctx context.Context, d *DB) {
	defer func() {
		d.mu.Lock()
		d.snapshotting = false
		d.mu.Unlock()
	}()
	if err := d.periodicSnapshot(ctx); errors.Is(err, errYield) {
		w.syncAfter(d, soonestRecheck) // move the pin for the checkpoint; the next tick snapshots
	} else if err != nil && ctx.Err() == nil {
		d.log.Error("snapshot failed", "err", err)
	}
}

// notifyUpload queues d's spool for the upload workers (once: a worker
// drains the whole spool).
func (w *Watcher) notifyUpload(d *DB) { w.uploadQ.push(d) }

func (w *Watcher) uploadWorker(ctx context.Context) {
	for {
		d := w.uploadQ.pop(ctx)
		if d == nil {
			return
		}
		{
			var err error
			inBackground(func() { err = w.uploadAll(ctx, d) })
			if errors.Is(err, errAnotherWriter) {
				w.metrics.uploadErrors.Add(1)
				d.fail(err)
			} else if err != nil && ctx.Err() == nil {
				w.metrics.uploadErrors.Add(1)
				d.noteError(err)
				d.log.Error("upload failed; retrying", "err", err)
				go func() {
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(1+rand.IntN(5)) * time.Second):
						w.notifyUpload(d)
					}
				}()
			}
		}
	}
}

// errAnotherWriter: the bucket holds objects of this name written by
// someone else. The database stops replicating (SPEC: one writer per name).
var errAnotherWriter = errors.New("another writer")

// IsAnotherWriter reports whether err says that another walsync
// replicates the same name into the bucket.
func IsAnotherWriter(err error) bool { return errors.Is(err, errAnotherWriter) }

// uploadAll uploads d's spooled objects in order; the first failure stops
// it (order matters: a segment never goes up before its snapshot).
func (w *Watcher) uploadAll(ctx context.Context, d *DB) error {
	d.upLock.Lock()
	defer d.upLock.Unlock()
	if d.spool == nil {
		return nil
	}
	entries, err := d.spool.entries()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Open || (e.Snapshot && e.Seq >= d.snapCommitted.Load()) || (!e.Snapshot && e.Seq >= d.committed.Load()) {
			break // not yet sealed and recorded in state.json; a later pass takes it
		}
		d.waitOutCheckpoint(ctx)
		d.uploadStarted()
		if err := w.uploadEntry(ctx, d, e); err != nil {
			return err
		}
		if err := d.spool.remove(e); err != nil {
			return err
		}
		d.signalUploaded()
	}
	d.uploadsCaughtUp()
	return nil
}

// checkpointWaitCap bounds how long an upload waits for an application's
// checkpoint to end (waitOutCheckpoint): one that checkpoints without a
// pause does not stop uploads.
const checkpointWaitCap = time.Second

// waitOutCheckpoint lets an application's checkpoint of d that is under
// way finish before an upload starts (up to checkpointWaitCap). The
// checkpoint copies the WAL into the database and fsyncs it; an upload
// writing tens of megabytes to the same disk (a file:// bucket, or MinIO
// on the machine) made that fsync wait for the upload's data too: after
// a 50 MB transaction, the application's TRUNCATE ended only once the
// 50 MB segment was uploaded (docs/BENCHMARKS.md).
func (d *DB) waitOutCheckpoint(ctx context.Context) {
	deadline := time.Now().Add(checkpointWaitCap)
	for d.checkpointUnderWay() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// checkpointUnderWay is checkpointWaits for a caller without d.mu: false
// when d.mu is busy (a capture runs: no checkpoint copies meanwhile that
// an upload would slow) or d is not open.
func (d *DB) checkpointUnderWay() bool {
	if !d.mu.TryLock() {
		return false
	}
	defer d.mu.Unlock()
	return d.opened && d.checkpointWaits()
}

// Kick tells the watcher that the database at path (as given to Add)
// changed: it looks at once, without waiting for a file notification,
// unless a burst of commits is being batched (a capture within the sync
// interval): then it makes sure a look is due when the interval ends. It
// never blocks; before the watcher is ready it does nothing.
//
// Within a burst it wakes no goroutine: it runs in the committing thread
// (the VFS's commit hook), where queueing a look whenever none was due
// did so 4,000-5,400 times per 20,000 commits, for a batch that waits
// for the interval anyway.
func (w *Watcher) Kick(path string) {
	d := w.live(path)
	if d == nil {
		return
	}
	since := time.Since(time.Unix(0, d.lastCaptureNs.Load()))
	if since >= d.set.syncInterval {
		w.enqueueSync(d)
		return
	}
	if d.timerDue.Load() == 0 {
		w.syncAfter(d, d.set.syncInterval-since)
	}
}

// Flush asks for a capture of the database at path now, in the
// background, whatever the sync interval. It never blocks; asked while a
// background capture runs, that capture looks once more when done.
func (w *Watcher) Flush(path string) {
	if d := w.live(path); d != nil {
		w.capture(d, false)
	}
}

// What a background capture was asked for (DB.captureAsked).
const (
	askCapture int32 = 1 << iota
	askSync          // then start syncing the open segment (syncAhead)
)

// capture captures what is committed to d in the background, in one
// goroutine per database at a time: a request made while it runs makes it
// look once more. For CatchUp (beforeRestart) it then starts syncing the
// open segment too: the checkpoint SQLite runs next lets the WAL restart
// once the pin moves to mark 0, and that move waits for the sync
// (DB.barrier).
func (w *Watcher) capture(d *DB, beforeRestart bool) {
	ask := askCapture
	if beforeRestart {
		ask |= askSync
	}
	d.captureAsked.Or(ask)
	if !d.flushing.CompareAndSwap(false, true) {
		return
	}
	go inBackground(func() {
		if w.testHookBackground != nil {
			w.testHookBackground()
		}
		for {
			asked := d.captureAsked.Swap(0)
			d.whileReplicating(func() {
				n, err := d.captureUntil(false, d.hookWaiting)
				d.hookFailed(err)
				if err == nil && n > 0 {
					d.setLastCapture(d.now())
				}
				if asked&askSync != 0 {
					d.syncAhead()
				}
			})
			d.flushing.Store(false)
			// Given way to CatchUp, which asks again once it has moved the
			// pin. Otherwise a request that came after the Swap and found
			// this goroutine still running is this goroutine's to serve.
			if d.hookWaiting() || d.captureAsked.Load() == 0 || !d.flushing.CompareAndSwap(false, true) {
				return
			}
		}
	})
}

// CheckpointStarted tells that the application (through the VFS, in
// this process: another process's checkpoint lock is seen with F_GETLK)
// took the checkpoint lock of the database at path, and CheckpointEnded
// that it let go: meanwhile uncaptured commits are captured at once, not
// batched, since a RESTART, TRUNCATE or FULL checkpoint waits for the pin.
func (w *Watcher) CheckpointStarted(path string) {
	if d := w.live(path); d != nil {
		d.ckptActive.Store(true)
		w.enqueueSync(d)
	}
}

// CheckpointEnded: see CheckpointStarted.
func (w *Watcher) CheckpointEnded(path string) {
	if d := w.live(path); d != nil {
		d.ckptActive.Store(false)
		w.enqueueSync(d)
	}
}

// KickNow is Kick even when a look is due: a checkpoint may be waiting
// for the pin to move.
func (w *Watcher) KickNow(path string) {
	if d := w.live(path); d != nil {
		w.enqueueSync(d)
	}
}

// live returns the database at path (as given to Add) while the watcher
// follows it: ready, not stopping; nil otherwise.
func (w *Watcher) live(path string) *DB {
	if d := w.byPath(path); d != nil && w.ready.Load() && !d.stopping() {
		return d
	}
	return nil
}

// CatchUp moves the pin to the WAL's end, now, in the caller's
// goroutine, so that a checkpoint that follows can copy every frame; the
// frames it passes over are captured in the background meanwhile (they
// stay in the WAL: the pin stops a restart until everything is captured,
// see DB.advance).
func (w *Watcher) CatchUp(path string) {
	d := w.live(path)
	if d == nil {
		return
	}
	d.pinWanted.Add(1)
	d.whileReplicating(func() { d.hookFailed(d.advance()) })
	d.pinWanted.Add(-1)
	w.capture(d, true)
}

// Unpin moves the pin of the database at path to read mark 0 when the WAL
// is fully checkpointed (everything in it is then captured: a checkpoint
// never goes past the pin, and the pin never past what is captured), so
// that the next writer may restart the WAL. It returns at once when the
// WAL is not fully checkpointed or the pin is at mark 0 already.
func (w *Watcher) Unpin(path string) {
	if d := w.live(path); d != nil {
		d.whileReplicating(func() {
			if d.atZero {
				return
			}
			if h, err := d.readIndex(); err == nil && h.NBackfill == h.MaxFrame {
				d.hookFailed(d.cycle())
			}
		})
	}
}

// LetGoForCheckpoint is called (by the VFS) when the application's
// connection that holds the checkpoint lock has taken the WAL write lock:
// a RESTART, TRUNCATE or FULL checkpoint that waits for every reader. No
// commit can come while it holds that lock, so everything in the WAL is
// captured now, made durable in the spool (barrier), and the pin ends:
// the checkpoint waits for no one (with no busy timeout it used to
// return SQLITE_BUSY). ResumeAfterCheckpoint pins again before the
// checkpoint lock is released, so no other checkpoint runs unpinned; the
// one restart the checkpoint (or the next writer) may make meanwhile is
// continuous (restartProven). Runs on the application's thread.
func (w *Watcher) LetGoForCheckpoint(path string) {
	d := w.live(path)
	if d == nil {
		return
	}
	d.pinWanted.Add(1) // a background capture gives way
	defer d.pinWanted.Add(-1)
	d.whileReplicating(func() {
		if _, err := d.captureUntil(false, nil); err != nil {
			d.hookFailed(err)
			return
		}
		if err := d.barrier(); err != nil {
			d.hookFailed(err)
			return
		}
		if err := d.pins[d.cur].end(); err != nil {
			d.hookFailed(err)
			return
		}
		d.unpinned = true
	})
}

// ResumeAfterCheckpoint pins again after LetGoForCheckpoint, while the
// checkpoint lock is still held: see there. A pin that cannot begin
// leaves the next capture to find the restart unproven (a new
// generation, logged).
func (w *Watcher) ResumeAfterCheckpoint(path string) {
	d := w.byPath(path)
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.unpinned {
		return
	}
	d.unpinned = false
	// Until a pin's mark is known, no restart is taken as continuous: the
	// next capture that meets one starts a new generation.
	d.atZero = false
	if err := d.pins[d.cur].begin(); err != nil {
		d.log.Warn("could not pin the WAL again after the application's checkpoint", "err", err)
		return
	}
	h, err := d.readIndex()
	if err != nil {
		d.log.Warn("could not read the wal-index after the application's checkpoint", "err", err)
		return
	}
	d.atZero, d.pinnedAt = h.NBackfill == h.MaxFrame, h.MaxFrame
	d.restartProven = true
}

// whileReplicating runs f with d.mu held if d is still replicated: open,
// not failed, and the watcher not stopping; and pinned (not between
// LetGoForCheckpoint and ResumeAfterCheckpoint). For the VFS hooks, which
// cannot return an error, and background captures. Once the watcher
// stops, its final sync is the last capture: one that came after it
// (a background capture asked for before the stop, on its way to d.mu)
// would take another process's newer commits into a segment that the
// shutdown no longer uploads; those are the next owner's to capture.
func (d *DB) whileReplicating(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opened && d.failed == nil && !d.stopping() && !d.unpinned {
		f()
	}
}

// hookFailed handles the error of a capture or cycle made for a caller
// that cannot return one (a VFS hook), as sync does: a discontinuity
// starts a new generation, any other failure is logged and the next sync
// retries. Called with d.mu held.
func (d *DB) hookFailed(err error) {
	if errors.Is(err, errDiscontinuity) {
		if err := d.newGeneration(context.Background(), err.Error()); err != nil {
			d.log.Error("new generation failed", "err", err)
		}
	} else if err != nil {
		d.captureFailed(err)
	}
}

// Durable returns once every transaction committed to the database at path
// before the call is durable in the bucket: it captures what is committed
// now (whatever the sync interval) and waits until the uploader has put
// every spooled object up to it. It returns ctx's error when ctx ends
// first, and the database's error when its replication stopped.
func (w *Watcher) Durable(ctx context.Context, path string) error {
	d := w.byPath(path)
	if d == nil || !w.ready.Load() {
		return fmt.Errorf("database %s: not replicated by this watcher", path)
	}
	d.mu.Lock()
	if d.asleep {
		err := d.wake(ctx)
		if err == nil && d.asleep {
			why := "see the log"
			if f := d.lastErr.Load(); f != nil {
				why = f.msg
			}
			err = fmt.Errorf("database %s: cannot be opened now (%s); retrying", path, why)
		}
		if err != nil {
			d.mu.Unlock()
			return err
		}
	}
	if d.failed != nil || !d.opened {
		err := d.failed
		lost := d.lost
		d.mu.Unlock()
		if err == nil && lost != "" {
			err = fmt.Errorf("database %s: %s; not followed yet", path, lost)
		} else if err == nil {
			err = fmt.Errorf("database %s: replication is not running", path)
		}
		return err
	}
	var err error
	if !d.unpinned { // else everything committed was captured when the pin let go
		_, err = d.capture()
	}
	if errors.Is(err, errDiscontinuity) {
		err = d.newGeneration(ctx, err.Error())
	}
	if err == nil && d.genPending != "" {
		err = fmt.Errorf("database %s: no generation to capture into (%s); retrying", path, d.genPending)
	}
	// Every object that holds a commit made before the call sorts before
	// the next segment's name.
	target := entryName(d.st.NextSeq, false)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	w.notifyUpload(d)
	w.enqueueSync(d) // moves the pin: checkpoints may go further
	for {
		ch := d.uploadSignal()
		first, err := d.spool.firstBefore(target)
		if err != nil {
			return err
		}
		if first == "" {
			return nil
		}
		if err := d.failedErr(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("database %s: waiting for %s to reach the bucket: %w", path, first, ctx.Err())
		case <-ch:
		case <-time.After(time.Second): // an upload retried by another path
		}
	}
}

func (d *DB) uploadSignal() <-chan struct{} {
	d.upMu.Lock()
	defer d.upMu.Unlock()
	if d.uploaded == nil {
		d.uploaded = make(chan struct{})
	}
	return d.uploaded
}

func (d *DB) signalUploaded() {
	d.upMu.Lock()
	defer d.upMu.Unlock()
	if d.uploaded != nil {
		close(d.uploaded)
		d.uploaded = nil
	}
}

func (d *DB) failedErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// uploadEntry puts one spooled object. Its key comes from its header. An
// object already in the bucket with the same bytes is a retry after a crash
// and counts as done; with other bytes, for a segment, another writer is
// replicating this name: refused (SPEC: one writer per name).
func (w *Watcher) uploadEntry(ctx context.Context, d *DB, e spoolEntry) error {
	f, err := d.spool.fs.Open("upload:open", e.path(d.spool))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	hdr, err := walsync.ReadObjectHeaderOnly(f)
	if err != nil {
		return fmt.Errorf("spooled %s: %w", f.Name(), err)
	}
	t := hdr.Created
	for attempt := 0; ; attempt++ {
		key := walsync.SegmentKey(d.Name, hdr.Seq, t)
		if e.Snapshot {
			key = walsync.SnapshotKey(d.Name, t)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		err := w.Storage.Put(ctx, key, f, size, sum)
		if err == nil {
			d.uploadedSincePrune.Store(true)
			w.metrics.objectsUploaded.Add(1)
			w.metrics.bytesUploaded.Add(size)
			d.log.Debug("uploaded", "key", key, "bytes", size)
			w.recordUpload(d, key, hdr, e.Snapshot, size, true)
			return nil
		}
		if !errors.Is(err, walsync.ErrExists) {
			return err
		}
		info, serr := w.Storage.Stat(ctx, key)
		if serr != nil {
			// Not an answer about its bytes (the network, or the
			// shutdown ending the request): the upload is retried. Taken
			// for other bytes, it stopped the database's replication as
			// "another writer" (TestUploadCheckFailureIsRetried).
			return fmt.Errorf("%s exists; reading its checksum: %w", key, serr)
		}
		if info.SHA256 == sum {
			w.recordUpload(d, key, hdr, e.Snapshot, size, false)
			return nil // uploaded before a crash; the spool did not know
		}
		if !e.Snapshot {
			return fmt.Errorf("%w: segment %s exists with other bytes: another walsync is replicating %q into %s; stop one of them", errAnotherWriter, key, d.Name, w.Storage)
		}
		if attempt >= 60 {
			return err
		}
		t = t.Add(time.Second) // two snapshots in one second
	}
}
