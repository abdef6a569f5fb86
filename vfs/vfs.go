// Package vfs is the walsync SQLite VFS: capture at the source. A program
// that imports it (or calls Register) and opens a database with
//
//	sql.Open("sqlite3", "file:app.db?vfs=walsync&walsync_bucket=s3://bucket/prefix")
//
// replicates that database while it runs, into the same bucket layout as
// `walsync watch`; `walsync restore` restores it.
//
// The VFS is a thin C shim over SQLite's default VFS (shim.c): every file
// operation, shared memory included, goes to the default VFS unchanged, so
// WAL mode, several connections and several processes behave exactly as
// without it, and page I/O never enters Go. The shim tells Go three
// things: a database opened, a transaction committed (the release of the
// WAL write lock), the last connection closed. Go replicates each open
// database with the same machinery as `walsync watch` (replicate.Watcher):
// a read transaction that keeps SQLite from restarting the WAL over
// frames walsync has not captured, the durable spool beside the database,
// the uploader. A commit wakes the capture at once: no polling.
// docs/ARCHITECTURE.md ("The VFS") gives the whole argument.
//
// Options come from the database URI, then from Register's Options, then
// from the environment:
//
//	walsync_bucket    WALSYNC_BUCKET    s3://bucket[/prefix] or file:///path (required)
//	walsync_endpoint  WALSYNC_ENDPOINT  S3 endpoint URL (else AWS_ENDPOINT_URL_S3)
//	walsync_sync      WALSYNC_SYNC      1: a commit returns only once it is durable in the bucket
//	walsync_name      WALSYNC_NAME      name in the bucket (default: file name without extension)
//	walsync_sync_timeout  WALSYNC_SYNC_TIMEOUT  how long a sync commit waits (default 10s)
//
// Credentials and region are read as the AWS CLI reads them.
//
// Async (the default): a commit returns at once; its frames are shipped
// within the sync interval (Options.SyncInterval, default 1 s). Sync
// (walsync_sync=1): a commit is acknowledged only once its frames are
// durable in the bucket. When that cannot be done within the sync timeout
// (the bucket unreachable), the COMMIT fails with SQLITE_IOERR ("disk I/O
// error": never a success), and the transaction stays committed in the
// local database, as with PostgreSQL's synchronous_commit when the
// standby does not answer: SQLite gives a VFS no way to undo a commit, and
// the frames are in the WAL; walsync ships them when the bucket can be
// reached, or, after a crash, the next open or `walsync watch` does.
// PRAGMA walsync_flush (Flush) makes everything committed so far durable,
// or fails; PRAGMA walsync_status (ReadStatus) tells where replication
// stands. Closing the last connection to a database ships what is
// pending, bounded by Options.CloseTimeout.
//
// A database that is not in WAL mode is put in WAL mode: at the open when
// it has content, after its first write transaction when it is new (so
// that the application's page size and encoding take effect). PRAGMA
// journal_mode with another mode is refused. Warnings and errors go to
// the logger (Options.Logger, else text on stderr) and to sqlite3_log.
//
// One process replicates a database: when another process (another
// application using the VFS, or `walsync watch`) already does, this one
// uses the database normally and leaves the replication to it, and takes
// over when that process ends.
package vfs

/*
#cgo CFLAGS: -O2
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	// The SQLite the shim registers into: mattn/go-sqlite3's (its bundled
	// amalgamation, or the system library with the libsqlite3 tag).
	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/backend"
	"github.com/walsync/walsync/replicate"
)

// Name is the VFS's name, as in ?vfs=walsync.
const Name = "walsync"

// DefaultSyncTimeout is how long a walsync_sync=1 commit waits to be
// durable in the bucket before it fails.
const DefaultSyncTimeout = 10 * time.Second

// Options are defaults for databases opened through the VFS; URI
// parameters win over them, and they win over the environment.
type Options struct {
	Bucket   string // s3://bucket[/prefix] or file:///path
	Endpoint string // S3 endpoint URL
	Region   string // S3 region (default: as the AWS CLI reads it, else us-east-1)
	// Sync makes every commit wait until it is durable in the bucket.
	Sync bool
	// SyncInterval: in async mode, commits within this interval of the
	// previous capture are shipped together (0 means 1 s; negative ships
	// every commit at once).
	SyncInterval time.Duration
	// SyncTimeout bounds a commit's wait in sync mode (0 means
	// DefaultSyncTimeout); a commit not durable by then fails with
	// SQLITE_IOERR (it stays committed locally and is shipped when the
	// bucket can be reached: see the package doc).
	SyncTimeout time.Duration
	// CloseTimeout bounds the shipping of what is pending when the last
	// connection to a database closes (0 means 10 s).
	CloseTimeout time.Duration
	// SnapshotInterval: a database that changed gets a new snapshot this
	// often (0 means 1 h; negative: only when a generation starts).
	SnapshotInterval time.Duration
	// Logger receives what the VFS logs (nil: warnings and errors as text
	// on stderr, or WALSYNC_LOG_LEVEL=debug|info|warn|error).
	Logger *slog.Logger
}

var (
	regMu      sync.Mutex
	registered bool
	defaults   Options
)

func init() {
	if err := register(); err != nil {
		logFailure(defaultLogger(), sqliteError, "cannot register the walsync VFS", err)
	}
}

// Register sets the defaults for databases opened through the VFS from now
// on and makes sure the VFS is registered (importing the package already
// registers it, with defaults from the environment).
func Register(opts Options) error {
	regMu.Lock()
	defaults = opts
	regMu.Unlock()
	return register()
}

func register() error {
	regMu.Lock()
	defer regMu.Unlock()
	if registered {
		return nil
	}
	if rc := C.walsync_shim_register(); rc != 0 {
		return fmt.Errorf("sqlite3_vfs_register: SQLite error %d", int(rc))
	}
	registered = true
	return nil
}

// BaseVFS names the VFS walsync forwards to (normally "unix").
func BaseVFS() string { return C.GoString(C.walsync_shim_base_vfs()) }

// config is what one database is replicated with.
type config struct {
	bucket, endpoint, region, name string
	sync                           bool
	syncTimeout                    time.Duration
	opts                           Options
}

// uriParam reads a URI parameter of the file name SQLite passed to xOpen.
func uriParam(zName *C.char, key string) string {
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	v := C.walsync_shim_uri_parameter(zName, ck)
	if v == nil {
		return ""
	}
	return C.GoString(v)
}

func parseBool(what, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "", "0", "false", "off", "no":
		return false, nil
	case "1", "true", "on", "yes":
		return true, nil
	}
	return false, fmt.Errorf("%s=%q: want 1 or 0", what, v)
}

// resolve merges URI parameters, Register's options and the environment.
func resolve(path string, zName *C.char) (config, error) {
	regMu.Lock()
	o := defaults
	regMu.Unlock()
	pick := func(param, opt, env string) string {
		if v := uriParam(zName, param); v != "" {
			return v
		}
		if opt != "" {
			return opt
		}
		return os.Getenv(env)
	}
	c := config{opts: o}
	c.bucket = pick("walsync_bucket", o.Bucket, "WALSYNC_BUCKET")
	c.endpoint = pick("walsync_endpoint", o.Endpoint, "WALSYNC_ENDPOINT")
	c.region = pick("walsync_region", o.Region, "WALSYNC_REGION")
	c.name = pick("walsync_name", "", "WALSYNC_NAME")
	syncOpt := ""
	if o.Sync {
		syncOpt = "1"
	}
	var err error
	if c.sync, err = parseBool("walsync_sync", pick("walsync_sync", syncOpt, "WALSYNC_SYNC")); err != nil {
		return c, err
	}
	c.syncTimeout = orDefault(o.SyncTimeout, DefaultSyncTimeout)
	if v := uriParam(zName, "walsync_sync_timeout"); v != "" {
		if c.syncTimeout, err = parseTimeout("walsync_sync_timeout", v); err != nil {
			return c, err
		}
	} else if v := os.Getenv("WALSYNC_SYNC_TIMEOUT"); v != "" && o.SyncTimeout == 0 {
		if c.syncTimeout, err = parseTimeout("WALSYNC_SYNC_TIMEOUT", v); err != nil {
			return c, err
		}
	}
	if c.bucket == "" {
		return c, fmt.Errorf("no bucket for %s: add walsync_bucket=s3://bucket/prefix (or file:///dir) to the URI, or set WALSYNC_BUCKET", path)
	}
	if c.name == "" {
		c.name = walsync.NameFromPath(path)
	}
	if err := walsync.ValidateName(c.name); err != nil {
		return c, err
	}
	return c, nil
}

func (c config) logger() *slog.Logger { return newLogger(c.opts.Logger) }

// parseTimeout reads a Go duration ("10s", "500ms") or a bare number of
// seconds; it must be above 0.
func parseTimeout(what, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return 0, fmt.Errorf("%s=%q: want a duration such as 10s or a number of seconds", what, v)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s=%q: must be above 0", what, v)
	}
	return d, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// storages shares one client per bucket and endpoint across databases.
var (
	storageMu sync.Mutex
	storages  = map[string]walsync.Storage{}
)

func openStorage(ctx context.Context, c config) (walsync.Storage, error) {
	key := c.bucket + "\x00" + c.endpoint + "\x00" + c.region
	storageMu.Lock()
	defer storageMu.Unlock()
	if st := storages[key]; st != nil {
		return st, nil
	}
	st, err := backend.Open(ctx, c.bucket, backend.Options{Endpoint: c.endpoint, Region: c.region})
	if err != nil {
		return nil, err
	}
	if err := st.Prepare(ctx); err != nil {
		return nil, err
	}
	storages[key] = st
	return st, nil
}

// database is one database replicated by this process: all connections of
// the process to the same file share it.
type database struct {
	id   int64
	path string
	cfg  config
	log  *slog.Logger // with the database's name
	// baseLog is the watcher's (which adds the name itself).
	baseLog *slog.Logger
	refs    int

	mu       sync.Mutex         // guards the fields below
	w        *replicate.Watcher // the engine that follows d (engineFor), once it does
	starting bool
	startErr error // the outcome of the last start that failed (nil once d.w is set)
	waiting  bool  // a retry loop runs (retryOwnership)
	closed   bool  // the last connection closed
	wal      bool  // seen in WAL mode
	// The wal-index header after this process's last commit.
	lastSalt, lastFrame uint32
	committed           bool
	broken              bool         // a start failed (logged, retried); writes are not held up
	nudged              atomic.Int64 // when this process last nudged the replicating one (unix ns)
	stop                chan struct{}

	// quiet is the shim's word (C memory, shared by the connections of
	// this process): until this CLOCK_MONOTONIC time (ns) a commit's
	// call into Go would only Kick a watcher that does nothing then, so
	// the shim skips it (within the frame limit commit gives); 0: call.
	// Written by setQuiet under qmu; nil once the database is closed.
	qmu   sync.Mutex
	quiet *C.longlong
	// skip: the shim may skip calls (WALSYNC_VFS_SKIP=0 turns it off,
	// to measure what the calls cost).
	skip bool
	// needWAL is the shim's word (C memory) while the database is not in
	// WAL mode: 1 until walsync switched it (wroteRollback).
	needWAL   *C.int
	walWarned atomic.Bool // the failure to switch to WAL mode was logged
}

var (
	dbMu   sync.RWMutex
	byPath = map[string]*database{}
	byID   = map[int64]*database{}
	nextID int64
)

// open is the first part of xOpen for a main database file. It returns the
// database, or an error that fails the open. A database that has content
// and is not in WAL mode is switched to WAL mode now (walsync replicates
// the WAL); an empty one after its first write transaction
// (wroteRollback), so that what the application sets before it (page
// size, encoding, auto_vacuum) takes effect.
func open(path string, zName *C.char, walMode, hasContent bool) (*database, error) {
	dbMu.Lock()
	defer dbMu.Unlock()
	if d := byPath[path]; d != nil {
		d.refs++
		return d, nil
	}
	cfg, err := resolve(path, zName)
	if err != nil {
		return nil, err
	}
	nextID++
	d := &database{id: nextID, path: path, cfg: cfg, refs: 1, stop: make(chan struct{}),
		skip: os.Getenv("WALSYNC_VFS_SKIP") != "0"}
	d.quiet = (*C.longlong)(C.calloc(1, C.size_t(unsafe.Sizeof(C.longlong(0)))))
	d.needWAL = (*C.int)(C.calloc(1, C.size_t(unsafe.Sizeof(C.int(0)))))
	d.baseLog = cfg.logger()
	d.log = d.baseLog.With("db", cfg.name)
	if !walMode && hasContent {
		walMode = d.switchToWAL()
	}
	d.wal = walMode
	if walMode {
		// Start now, before the application can commit: the position
		// is proven (or a generation started) before the open returns.
		// A bucket that cannot be reached does not fail the open (one
		// policy for new and existing databases): writes go on and
		// replication starts when it can (retryOwnership).
		if err := d.start(); err != nil && !errors.Is(err, replicate.ErrOwned) {
			if permanent(err) {
				d.freeWords()
				return nil, err
			}
			d.broken = true
			d.retryOwnership(err)
		}
	} else {
		d.setNeedsWAL(true)
		// Nothing to start yet; a bucket that is wrong for good fails
		// the open as for a WAL database.
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		_, err := openStorage(ctx, cfg)
		cancel()
		if err != nil && permanent(err) {
			d.freeWords()
			return nil, err
		}
	}
	byPath[path] = d
	byID[d.id] = d
	return d, nil
}

// permanent says whether a failure to start replicating will not go
// away by waiting: a bucket that does not exist or refuses these
// credentials, another walsync replicating the name. Those fail the open;
// anything else (the bucket unreachable) does not.
func permanent(err error) bool {
	return errors.Is(err, walsync.ErrAccessDenied) || errors.Is(err, walsync.ErrBucketNotFound) ||
		errors.Is(err, walsync.ErrInvalidName) || replicate.IsAnotherWriter(err)
}

// startTimeout bounds the storage requests of one attempt to start
// replicating (reach the bucket, claim the name): an open, or a writer
// that waits for a start, is held up no longer by a bucket that does not
// answer.
const startTimeout = 5 * time.Second

// switchToWAL puts the database in WAL mode; it reports whether it is.
// The first failure is logged at WARN (the database is not replicated
// until it works), later ones at DEBUG; the switch at INFO.
func (d *database) switchToWAL() bool {
	mode, err := replicate.SwitchToWAL(d.path)
	if err == nil && mode == "wal" {
		d.log.Info("switched the database to WAL mode (walsync replicates the WAL)")
		return true
	}
	if err == nil {
		err = fmt.Errorf("journal_mode is still %s", mode)
	}
	if d.walWarned.CompareAndSwap(false, true) {
		d.log.Warn("the database is not in WAL mode and could not be switched to it yet: its writes are "+
			"not replicated until it is (walsync tries again after each write transaction)", "err", err, rcKey, sqliteWarning)
	} else {
		d.log.Debug("switch to WAL mode failed", "err", err)
	}
	return false
}

// wroteRollback is called when a write transaction ended on a database
// that is not in WAL mode yet: it switches it (the shim calls it with no
// lock of that connection held) and starts its replication, whose first
// snapshot holds everything written so far.
func wroteRollback(id int64) {
	d := lookup(id)
	if d == nil || !d.needsWAL() {
		return
	}
	if !d.switchToWAL() {
		return
	}
	d.setNeedsWAL(false)
	d.mu.Lock()
	d.wal = true
	d.mu.Unlock()
	go func() {
		if err := d.start(); err != nil && !errors.Is(err, replicate.ErrOwned) {
			d.retryOwnership(err)
		}
	}()
}

// needsWAL reads the shim's needWAL word: the database is not in WAL mode
// yet (as far as walsync switched it).
func (d *database) needsWAL() bool {
	return d.needWAL != nil && atomic.LoadInt32((*int32)(unsafe.Pointer(d.needWAL))) != 0
}

// setNeedsWAL writes the shim's needWAL word.
func (d *database) setNeedsWAL(v bool) {
	var n int32
	if v {
		n = 1
	}
	atomic.StoreInt32((*int32)(unsafe.Pointer(d.needWAL)), n)
}

// watcher is the watcher replicating d in this process, or nil.
func (d *database) watcher() *replicate.Watcher {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.w
}

// ownWatcher is d's watcher, waiting (within ctx) for a start under way;
// nil when this process does not replicate d.
func (d *database) ownWatcher(ctx context.Context) *replicate.Watcher {
	if w := d.watcher(); w != nil {
		return w
	}
	return d.waitStarted(ctx)
}

// freeWords frees the shim's words once no connection can read them.
func (d *database) freeWords() {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	C.free(unsafe.Pointer(d.quiet))
	d.quiet = nil
	C.free(unsafe.Pointer(d.needWAL))
	d.needWAL = nil
}

// setQuiet is the watcher's OnQuiet: it publishes to the shim until when
// a commit need not call into Go (left <= 0: from now on it must).
func (d *database) setQuiet(_ string, left time.Duration) {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	if d.quiet == nil {
		return
	}
	var until int64
	if left > 0 {
		until = int64(C.walsync_shim_now_ns()) + int64(left)
	}
	atomic.StoreInt64((*int64)(unsafe.Pointer(d.quiet)), until)
}

// start opens storage and runs the watcher for d until stopped. It returns
// once the watcher follows the database, or with the reason it cannot.
// replicate.ErrOwned means another process replicates it: d retries in
// the background and takes over when that process is gone. While another
// start is under way, its outcome is this one's.
func (d *database) start() error {
	d.mu.Lock()
	if d.starting {
		d.mu.Unlock()
		if d.waitStarted(context.Background()) != nil {
			return nil
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.startErr
	}
	if d.w != nil || d.closed {
		d.mu.Unlock()
		return nil
	}
	d.starting = true
	d.mu.Unlock()
	err := d.run()
	d.mu.Lock()
	d.starting, d.startErr = false, err
	d.mu.Unlock()
	if errors.Is(err, replicate.ErrOwned) {
		d.retryOwnership(err)
	}
	return err
}

func (d *database) run() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	w, err := engineFor(ctx, d.cfg)
	if err != nil {
		return err
	}
	quietByPath.Store(d.path, d)
	if err := w.Follow(context.Background(), d.path, d.cfg.name); err != nil {
		quietByPath.Delete(d.path)
		return err
	}
	d.mu.Lock()
	d.w = w
	d.waiting, d.broken = false, false
	d.mu.Unlock()
	return nil
}

// retryOwnership tries to replicate d in the background until it does or
// d is closed: it probes the owner lock every quarter second while another
// process replicates it (a non-blocking flock: no request, no I/O; a
// start would list the bucket), backing off to 30 s after
// any other failure (the bucket unreachable, say), so that a process
// whose takeover failed once does not write unreplicated until it exits.
func (d *database) retryOwnership(why error) {
	d.mu.Lock()
	if d.waiting {
		d.mu.Unlock()
		return
	}
	d.waiting = true // until a start succeeds (run): no second loop
	d.mu.Unlock()
	const owned, most = 250 * time.Millisecond, 30 * time.Second
	delay := owned
	since := time.Now()
	failing := !errors.Is(why, replicate.ErrOwned)
	if !failing {
		d.log.Info("another process replicates this database; it ships this process's commits too", "why", why)
	} else {
		delay = time.Second
		d.log.Warn("cannot replicate this database now; writes go on, and what they commit is shipped "+
			"once replication starts (retrying in the background)", "err", why)
	}
	go func() {
		for {
			select {
			case <-d.stop:
				return
			case <-time.After(delay):
			}
			if replicate.OwnedElsewhere(d.path) {
				delay = owned
				continue
			}
			err := d.start()
			switch {
			case err == nil && failing:
				d.log.Info("replication started", "after", time.Since(since).Round(time.Second))
				return
			case err == nil:
				d.log.Info("took over the replication of this database")
				return
			case errors.Is(err, replicate.ErrOwned):
				delay = owned
			default:
				if !failing {
					failing, since = true, time.Now()
					d.log.Warn("cannot replicate this database now; retrying in the background", "err", err)
				} else {
					d.log.Debug("cannot replicate this database yet; retrying", "err", err, "in", delay)
				}
				delay = min(2*delay, most)
			}
		}
	}()
}

func lookup(id int64) *database {
	dbMu.RLock()
	defer dbMu.RUnlock()
	return byID[id]
}

// autoCheckpointFrames is SQLite's default wal_autocheckpoint: past it,
// each commit is followed by a checkpoint.
const autoCheckpointFrames = 1000

// flushFrames is how often, in WAL frames, the commit hook asks for a
// background capture on the way to the auto-checkpoint, whatever the
// batching: the pin's move to read mark 0 after the checkpoint waits
// for everything to be captured, so little must be left by then. Asking
// at every commit instead made one capture (and one zstd block) of a
// few frames each, and kept the second core busy beside the committing
// thread.
const flushFrames = 200

// commit is called after a transaction committed and the WAL write lock
// was released; mxFrame and salt1 are the wal-index header's after it.
//
// It returns the frame limit of the shim's skipping: until the quiet word
// (setQuiet) runs out, the connection's later commits of the same WAL
// (salt1) that end below it need not call: each would only Kick a watcher
// that does nothing then. The limit is the next flushFrames boundary (or
// the auto-checkpoint), where a commit has more to do; 0: call every time
// (sync mode, another process replicates, or no watcher yet). docs/BENCHMARKS.md
// gives what a call per commit costs.
func commit(id int64, mxFrame, salt1 uint32) (skipBelow uint32) {
	d := lookup(id)
	if d == nil {
		return 0
	}
	d.mu.Lock()
	w := d.w
	d.wal = true
	busy := d.starting || d.waiting
	prevFrame := d.lastFrame
	if salt1 != d.lastSalt {
		prevFrame = 0
	}
	d.lastSalt, d.lastFrame, d.committed = salt1, mxFrame, true
	d.mu.Unlock()
	if w == nil && !busy {
		// The database entered WAL mode after it was opened: start now,
		// in the background (the first capture starts a generation with
		// a snapshot that holds this commit). A database another process
		// replicates has its retry loop already.
		go func() {
			if err := d.start(); err != nil && !errors.Is(err, replicate.ErrOwned) {
				d.retryOwnership(err)
			}
		}()
	}
	if w != nil && mxFrame/flushFrames != prevFrame/flushFrames && mxFrame < autoCheckpointFrames {
		w.Flush(d.path)
	}
	if w != nil && mxFrame >= autoCheckpointFrames {
		// SQLite's auto-checkpoint runs right after this returns: with
		// the pin at the WAL's end it can copy every frame, and the next
		// writer (acquire) can restart the WAL once the rest is captured.
		w.CatchUp(d.path)
	}
	if !d.cfg.sync {
		if w != nil {
			w.Kick(d.path)
			if d.skip && mxFrame < autoCheckpointFrames {
				skipBelow = min((mxFrame/flushFrames+1)*flushFrames, autoCheckpointFrames)
			}
		} else if now := time.Now().UnixNano(); now-d.nudged.Load() > int64(100*time.Millisecond) {
			// Another process replicates the database: tell it (at most
			// ten times a second; it batches anyway).
			d.nudged.Store(now)
			replicate.Nudge(d.path) //nolint:errcheck // its poller finds the commit later
		}
		return
	}
	// walsync_sync=1: the shim waits for durability after the commit
	// (syncCommit), where its answer can fail the COMMIT.
	return 0
}

// syncCommit waits until the commit that left the wal-index header at
// mxFrame (WAL salt-1 salt1) is durable in the bucket, within the sync
// timeout. The shim calls it from SQLITE_FCNTL_COMMIT_PHASETWO, which the
// pager sends once the transaction is committed and the WAL write lock
// released; an error code from it fails the COMMIT. The transaction
// stays committed in the local database either way (SQLite has no way to
// undo it then): it is shipped when the bucket can be reached, by this
// process, or after a crash by the next open or walsync watch
// (docs/ARCHITECTURE.md, "Sync commits").
func syncCommit(id int64, mxFrame, salt1 uint32) int {
	d := lookup(id)
	if d == nil {
		return sqliteOK
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.syncTimeout)
	defer cancel()
	var err error
	if w := d.ownWatcher(ctx); w != nil {
		err = w.Durable(ctx, d.path)
	} else {
		// Another process replicates the database: wait until it has
		// captured this commit and uploaded it.
		err = replicate.WaitDurable(ctx, d.path, salt1, mxFrame)
	}
	if err == nil {
		return sqliteOK
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("not durable in %s within walsync_sync_timeout (%s): %w", d.cfg.bucket, d.cfg.syncTimeout, err)
	}
	d.log.Error("walsync_sync=1 commit failed: not durable in the bucket in time (it stays committed "+
		"locally and is shipped when the bucket can be reached)", "err", err, rcKey, sqliteIOErr)
	return sqliteIOErr
}

// waitStarted waits for the watcher of a database that is starting in
// this process; nil when it is not (another process replicates it).
func (d *database) waitStarted(ctx context.Context) *replicate.Watcher {
	for {
		d.mu.Lock()
		w, starting := d.w, d.starting
		d.mu.Unlock()
		if w != nil || !starting {
			return w
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// acquire is called before a connection takes the WAL write lock. The
// pins of the process that replicates a database keep SQLite from
// restarting the WAL over frames not captured yet; when that process has
// gone (or the database entered WAL mode after it was opened here) there
// are none, and a writer could restart the WAL over its last commits. So
// the first writer to find the database unreplicated takes over, before
// it writes: its watcher proves the position and captures what is in the
// WAL (under its own write lock, which is free at this point).
//
// In the replicating process, when the WAL is fully checkpointed (as the
// shim read it: mxFrame and nBackfill), the writer is about to restart the
// WAL, which SQLite does only when no reader uses it: the pin moves to
// read mark 0 first (Watcher.Unpin), so the WAL stays as small as without
// walsync instead of growing while the application writes without pause.
//
// It reports whether this process replicates the database: it then does
// for good (d.w is never reset; the last close ends the handle), and the
// shim calls again only for a fully checkpointed WAL.
func acquire(id int64, mxFrame, nBackfill uint32) bool {
	d := lookup(id)
	if d == nil {
		return false
	}
	d.mu.Lock()
	w, broken := d.w, d.broken
	d.mu.Unlock()
	if w != nil {
		if mxFrame > 0 && nBackfill == mxFrame {
			w.Unpin(d.path)
		}
		return true
	}
	if broken {
		return false
	}
	if d.cfg.sync {
		// The replicating process (if any) captures this commit at once.
		replicate.RequestFlush(d.path) //nolint:errcheck // without it the commit waits the sync interval
	}
	if d.waitStarted(context.Background()) != nil {
		return true // another goroutine of this process took over meanwhile
	}
	if replicate.OwnedElsewhere(d.path) {
		return false
	}
	if err := d.start(); err != nil && !errors.Is(err, replicate.ErrOwned) {
		// Writes are not held up; the retry loop takes over when it can.
		d.mu.Lock()
		d.broken = true
		d.mu.Unlock()
		d.retryOwnership(err)
	}
	return false // the next write asks again
}

// checkpoint is called when a connection took (start) or released the
// checkpoint lock.
func checkpoint(id int64, start bool) {
	if d := lookup(id); d != nil {
		w := d.watcher()
		switch {
		case w == nil:
		case start:
			w.CheckpointStarted(d.path)
		default:
			w.CheckpointEnded(d.path)
		}
	}
}

// checkpointLetGo: the application's blocking checkpoint holds the write
// lock; this process's pin lets go of the WAL until checkpointResume
// (replicate.Watcher.LetGoForCheckpoint). It reports whether it did.
func checkpointLetGo(id int64) bool {
	d := lookup(id)
	if d == nil {
		return false
	}
	w := d.watcher()
	if w == nil {
		return false
	}
	w.LetGoForCheckpoint(d.path)
	return true
}

// checkpointResume pins again after checkpointLetGo, before the
// checkpoint lock is released.
func checkpointResume(id int64) {
	if d := lookup(id); d != nil {
		if w := d.watcher(); w != nil {
			w.ResumeAfterCheckpoint(d.path)
		}
	}
}

// closeConn is called after a connection closed its main database file.
// The last one ships what is pending and stops the replication.
func closeConn(id int64) {
	dbMu.Lock()
	d := byID[id]
	if d == nil {
		dbMu.Unlock()
		return
	}
	d.refs--
	if d.refs > 0 {
		dbMu.Unlock()
		return
	}
	delete(byID, id)
	delete(byPath, d.path)
	dbMu.Unlock()
	d.freeWords() // its last connection is closed: no shim reads them
	// The retry loops stop, and a start under way (a retry's, or a
	// commit's) finishes first: only then is it known whether this
	// process replicates the database. A start that failed just now
	// (the process that replicated it was letting go) leaves a follower
	// whose last commits nobody captured: it ships them (shipBeforeClose).
	close(d.stop)
	d.mu.Lock()
	wal := d.wal
	d.mu.Unlock()
	if wal && d.waitStarted(context.Background()) == nil {
		d.shipBeforeClose()
	}
	// A start in progress finishes first (the engine then releases d
	// like any other); none begins after this.
	var w *replicate.Watcher
	for {
		d.mu.Lock()
		d.closed = true
		starting := d.starting
		w = d.w
		d.mu.Unlock()
		if !starting {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if w == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(d.cfg.opts.CloseTimeout, 10*time.Second))
	defer cancel()
	if err := w.Release(ctx, d.path); err != nil {
		d.log.Error("could not ship everything at the last close; the next open, or walsync watch, ships it", "err", err)
	}
	quietByPath.Delete(d.path)
	d.setQuiet("", 0)
}

// shipBeforeClose makes sure the commits of a process that did not
// replicate its database are shipped before its last connection goes:
// either the replicating process has them durable in the bucket, or this
// process takes over and ships them (its watcher then stops with the
// close). The replicating process may be shutting down, past its last
// capture but still holding the owner lock: then this one retries until
// the lock is free, within CloseTimeout.
func (d *database) shipBeforeClose() {
	d.mu.Lock()
	salt, frame, committed := d.lastSalt, d.lastFrame, d.committed
	d.mu.Unlock()
	if committed {
		replicate.RequestFlush(d.path) //nolint:errcheck // the owner, if alive, captures at once
	}
	deadline := time.Now().Add(orDefault(d.cfg.opts.CloseTimeout, 10*time.Second))
	for {
		err := d.start()
		switch {
		case err == nil:
			return // this process replicates it now: its watcher's shutdown ships
		case !errors.Is(err, replicate.ErrOwned):
			// A failure that may pass (the bucket unreachable for a
			// moment): retried within CloseTimeout, like a busy owner.
			if time.Now().After(deadline) {
				d.log.Error("cannot ship the last commits; the next open, or walsync watch, ships them", "err", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		case !committed:
			return // nothing of this process to wait for
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err = replicate.WaitDurable(ctx, d.path, salt, frame)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			d.log.Error("the last commits of this process are not in the bucket yet; the replicating process, the next open or walsync watch ships them", "err", err)
			return
		}
	}
}

func processName() string {
	exe, err := os.Executable()
	if err != nil {
		return "pid " + strconv.Itoa(os.Getpid())
	}
	return exe
}
