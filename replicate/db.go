package replicate

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/wal"
)

// errDiscontinuity means walsync cannot prove that no frame was lost: the
// current generation ends and a new one starts with a snapshot.
var errDiscontinuity = errors.New("continuity lost")

// pendingGeneration is the discontinuity of a generation that could not
// start yet: its reason as it was first given (not wrapped again at
// every attempt).
type pendingGeneration struct{ reason string }

func (p pendingGeneration) Error() string        { return p.reason }
func (p pendingGeneration) Is(target error) bool { return target == errDiscontinuity }

// errYield: a snapshot or a brake gave way to the application's
// checkpoint, which waits for walsync's pin while it holds the write lock
// they need (pinConn.lockWriters); it is tried again shortly.
var errYield = errors.New("gave way to the application's checkpoint")

// yieldRetry is how soon what gave way is tried again.
const yieldRetry = 50 * time.Millisecond

// DB follows the WAL of one database and captures every committed frame
// into its spool. docs/ARCHITECTURE.md ("Following a WAL") gives the
// argument for why no frame can be lost; in short:
//
//   - A SQLite connection (the pin) always holds a read
//     transaction. While a read transaction uses the WAL (read mark >= 1)
//     SQLite cannot restart the WAL, so uncaptured frames stay in place.
//   - To let checkpoints progress, walsync moves the pin forward by
//     leapfrogging: a second connection begins a new read transaction,
//     walsync captures everything up to the WAL's end, and only then does
//     the old pin let go. There is never a moment without a pin.
//   - A pin that began when everything was checkpointed reads the database
//     file only (read mark 0) and does not stop a WAL restart; but it stops
//     every checkpoint, so a restart can only happen while the WAL holds no
//     uncaptured frame. A restart seen while so pinned keeps continuity.
//   - A change seen any other way (the WAL restarted while walsync was
//     down, the file replaced) cannot be proven safe: a new generation.
type DB struct {
	Path string // absolute path of the database file
	Name string

	w     *Watcher
	log   *slog.Logger
	spool *spool

	mu     sync.Mutex // serialises sync, snapshot, close
	st     *spoolState
	gen    walsync.Generation
	pins   [2]*pinConn
	cur    int  // index of the pin holding the read transaction
	atZero bool // the current pin began with the WAL fully checkpointed
	// pinnedAt is the wal-index's last frame when the current pin began:
	// no checkpoint copies frames past it while the pin is held.
	pinnedAt    uint32
	lastCapture time.Time
	// lastCaptureNs mirrors lastCapture for Kick, which does not take mu.
	lastCaptureNs atomic.Int64
	// set: the intervals and retention of this database (the watcher's,
	// or an entry's of the configuration).
	set settings
	// zeroWaitSince: since when a checkpoint has waited over a fully
	// copied WAL with the pin at read mark 0 by the wal-index (sync).
	zeroWaitSince time.Time
	// spareUsed: when the spare connection was last asked for (spare).
	spareUsed time.Time
	// upLock: one upload pass of the spool at a time (uploadAll).
	upLock sync.Mutex
	// leaving: the watcher stops following d (Release): as for a
	// shutdown, the final sync captures everything and seals.
	leaving atomic.Bool
	// syncStartNs is when the last sync a worker ran started (eventSync).
	syncStartNs atomic.Int64
	dbf         *os.File
	walf        *os.File
	shmf        *os.File
	walHdr      wal.Header // header of the WAL the position is in, when known
	dev         uint64
	ino         uint64
	opened      bool
	failed      error // set when the database cannot be replicated any more

	snapshotting bool    // a periodic snapshot is running
	jitter       float64 // in [0,1): spreads periodic snapshots

	// Spool entries become uploadable only once state.json records them:
	// segments with Seq < committed, snapshots with Seq < snapCommitted.
	// Otherwise a crash between the spool write and state.json could
	// leave an uploaded object whose frames are captured again under the
	// same number.
	committed     atomic.Uint64
	snapCommitted atomic.Uint64

	uploadedSincePrune atomic.Bool
	index              indexState // the bucket's state.json (index.go)
	lastErrHolder                 // the last failure and durable time (status.go)

	claimID string   // our lock.json, when we hold it
	owner   *os.File // the spool's owner lock (flock), while open

	// uploaded is closed and replaced whenever a spooled object was
	// uploaded (Durable waits on it).
	upMu     sync.Mutex
	uploaded chan struct{}

	flushing atomic.Bool // a background capture (Watcher.capture) is under way
	// pinWanted, above 0, asks a background capture and a sync to give
	// way: that many CatchUps wait for d.mu to move the pin before
	// SQLite's checkpoint.
	pinWanted atomic.Int32
	// captureAsked is what was asked of it since it last looked:
	// askCapture, with askSync for a capture before a WAL restart.
	captureAsked atomic.Int32
	tmu          sync.Mutex   // guards timer
	timer        *time.Timer  // the deferred sync (syncAfter)
	timerDue     atomic.Int64 // when it fires (unix ns); 0: none pending

	brakeAfter time.Time // no brake before (after one that could not checkpoint everything)

	// A generation that could not start (newGeneration): why one is due,
	// when to try again, the backoff, and when it was last logged.
	genPending string
	genRetryAt time.Time
	genBackoff time.Duration
	genLogged  time.Time
	// The database file was replaced or removed (follow): when to look
	// again, the backoff, when a failure was last logged, and why.
	followAt      time.Time
	followBackoff time.Duration
	followLogged  time.Time
	lost          string

	ckptActive atomic.Bool // the VFS's application holds the checkpoint lock

	// Failed captures (captureFailed): since when, how many, and when and
	// at which count the last line was logged.
	capMu             sync.Mutex
	capFailingSince   time.Time
	capFailures       int
	capFailuresLogged int
	capLogged         time.Time
	// unpinned: the pin let go for the VFS application's checkpoint
	// (Watcher.LetGoForCheckpoint) and is not back yet; nothing reads
	// the WAL meanwhile. restartProven: a restart seen by the next
	// capture happened during that checkpoint, after everything was
	// captured, and keeps continuity.
	unpinned      bool
	restartProven bool
	// asleep: idle, its pins and files closed, its spool and owner lock
	// kept (idle.go); sleepAfter: no attempt to sleep before.
	asleep     bool
	sleepAfter time.Time
	// dbfLocked: dbf holds holdShared's lock (asleep); waking: a wake's
	// open is under way (a failure keeps dbf, closeFiles).
	dbfLocked bool
	waking    bool
	sleepWAL  fileStamp // the WAL when it fell asleep (the database: Quiet)

	seg *openSegment // the segment being appended to (segment.go), or nil
	// spec is the segment captured ahead of a commit (speculate.go), kept
	// aside until the capture at the commit takes it; only with seg nil.
	spec *openSegment
	// nextOpen is the number of an empty open file made ahead of its
	// segment (prepareOpen), 0 for none; nextOpenDurable: its directory
	// entry is on disk.
	nextOpen        uint64
	nextOpenDurable bool

	lastActivity time.Time     // the WAL's size or time last changed
	recheck      time.Duration // delay of the next look after activity
	walSize      int64
	walMod       time.Time
}

func (d *DB) now() time.Time { return d.w.now() }

// open opens the database, the pins and the spool, and either resumes the
// recorded position or starts a new generation.
func (d *DB) open(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.openLocked(ctx, false)
}

// openLocked is open with d.mu held; waking: d wakes from sleep (idle.go),
// its spool and owner lock still held.
func (d *DB) openLocked(ctx context.Context, waking bool) error {
	if d.opened {
		return nil
	}
	dbf, hdr, err := d.reopenDatabase()
	if err != nil {
		return err
	}
	d.dbf = dbf
	dev, ino, err := fileID(dbf)
	if err != nil {
		d.closeFiles()
		return err
	}
	d.dev, d.ino = dev, ino
	if d.spool == nil || d.owner == nil {
		if d.spool, err = openSpool(d.Path, d.w.FS); err != nil {
			d.closeFiles()
			return err
		}
		if d.owner, err = d.spool.lockOwner(d.w.ownerKind()); err != nil {
			d.closeFiles()
			return err
		}
		d.spool.removeTemp()
	}
	d.cur = 0
	if d.pins[0], err = openPin(d.Path, d.w.busyTimeout()); err != nil {
		d.closeFiles()
		return err
	}
	mode, err := d.pins[0].journalMode()
	if err != nil {
		d.closeFiles()
		return fmt.Errorf("read journal mode of %s: %w", d.Path, err)
	}
	if mode != "wal" {
		d.closeFiles()
		return fmt.Errorf("database %s is in journal_mode=%s: walsync watch follows the WAL; switch it once with: sqlite3 %s 'PRAGMA journal_mode=WAL'", d.Path, mode, d.Path)
	}
	// Pin under the write lock. If the WAL is fully checkpointed but holds
	// frames captured by nobody yet (walsync was down), the pin gets read
	// mark 0, which does not stop a restart: those frames must be captured
	// before any writer can commit, so writers wait until open is done.
	lock, err := d.spare()
	if err != nil {
		d.closeFiles()
		return err
	}
	if err := lock.lockWriters(nil); err != nil { // no pin yet: nothing to give way for
		d.closeFiles()
		return err
	}
	defer d.dropSpare() // releases the writers on every path
	if err := d.pins[0].begin(); err != nil {
		d.closeFiles()
		return err
	}
	// The first read transaction created the -wal and -shm files if they
	// were missing. Our descriptors stay open until the pins are closed
	// (POSIX locks: see docs/ARCHITECTURE.md).
	if d.walf, err = os.Open(d.Path + "-wal"); err != nil {
		d.closeFiles()
		return fmt.Errorf("open WAL: %w", err)
	}
	if d.shmf, err = os.Open(d.Path + "-shm"); err != nil {
		d.closeFiles()
		return fmt.Errorf("open wal-index: %w", err)
	}
	h, err := d.readIndex()
	if err != nil {
		d.closeFiles()
		return err
	}
	d.atZero, d.pinnedAt = h.NBackfill == h.MaxFrame, h.MaxFrame
	d.opened = true
	if d.claimID == "" {
		cctx, cancel := d.w.startCtx(ctx)
		err := d.claim(cctx)
		cancel()
		if err != nil {
			d.closeFiles()
			d.opened = false
			return err
		}
	}

	st, err := d.spool.loadState()
	if errors.Is(err, errStateUnreadable) {
		d.log.Warn("local state unreadable; starting a new generation", "err", err)
		st = nil
	} else if err != nil {
		d.closeFiles()
		d.opened = false
		return err
	}
	if err := d.sealOpenEntries(st); err != nil {
		d.closeFiles()
		d.opened = false
		return err
	}
	reason, err := d.resumable(st, hdr.PageSize)
	if err == nil && reason == "" {
		if err = d.recoverSpool(st); err != nil && !transient(err) {
			reason, err = fmt.Sprintf("spool unreadable (%v)", err), nil
		}
	}
	if err != nil {
		// Not the state's fault (no descriptor left, say): the next
		// attempt may resume.
		d.closeFiles()
		d.opened = false
		return err
	}
	if reason == "" {
		if err := d.spool.saveState(st); err != nil {
			return err
		}
		d.st = st
		d.gen, _ = st.generation()
		d.committed.Store(st.NextSeq)
		d.snapCommitted.Store(st.NextSeq + 1)
		if !waking {
			d.log.Info("resuming", "generation", d.gen.String(), "wal_frame", st.Pos.Frame, "next_seq", st.NextSeq)
		}
		// Capture what was committed while walsync was down, still
		// under the write lock (see above).
		if _, err := d.capture(); errors.Is(err, errDiscontinuity) {
			d.dropSpare()
			return d.newGeneration(ctx, err.Error())
		} else if err != nil {
			return err
		}
		return nil
	}
	d.dropSpare() // the snapshot takes its own lock
	if st != nil && (st.Name != d.Name || st.Bucket != d.w.Storage.String()) {
		// Captured for another bucket or name: not ours to upload here.
		if moved, err := d.spool.setAside(); err != nil {
			return err
		} else if moved != "" {
			d.log.Warn("spooled objects for another bucket or name set aside", "dir", moved, "bucket", st.Bucket, "name", st.Name)
		}
		st = nil
	}
	lctx, cancel := d.w.startCtx(ctx)
	nextSeq, err := d.nextSeqFromBucket(lctx, st)
	cancel()
	if err != nil {
		return err
	}
	d.st = &spoolState{Name: d.Name, Bucket: d.w.Storage.String(), NextSeq: nextSeq, PageSize: hdr.PageSize}
	d.committed.Store(nextSeq) // earlier generations' spooled segments may go
	return d.newGeneration(ctx, reason)
}

// firstRun is the reason of a database's first generation.
const firstRun = "no local state (first run)"

// resumable returns why the recorded position cannot be continued, or "",
// or the error that kept it from finding out.
func (d *DB) resumable(st *spoolState, pageSize uint32) (string, error) {
	switch {
	case st == nil:
		return firstRun, nil
	case st.Name != d.Name:
		return fmt.Sprintf("local state is for name %q", st.Name), nil
	case st.Bucket != d.w.Storage.String():
		return fmt.Sprintf("local state is for bucket %s", st.Bucket), nil
	case st.DBDevice != d.dev || st.DBInode != d.ino:
		return "the database file was replaced", nil
	case st.PageSize != pageSize:
		return "the page size changed", nil
	}
	if _, err := st.generation(); err != nil {
		return err.Error(), nil
	}
	if err := d.provePosition(st); errors.Is(err, errDiscontinuity) {
		return err.Error(), nil
	} else if err != nil {
		return "", err
	}
	return "", nil
}

// provePosition proves that the WAL holds every frame committed after
// st's position: it still holds the position (checkPosition), or it
// changed but the database file is as it was when every frame was
// captured and copied into it (quietHolds, idle.go), and the WAL there
// holds every frame committed since, from its first (restartProven).
func (d *DB) provePosition(st *spoolState) error {
	err := d.checkPosition(st.Pos)
	if err == nil || !d.quietHolds(st) {
		return err
	}
	d.restartProven = true
	d.log.Debug("the WAL changed while no pin held it; the database file did not, so no frame was lost", "was", err)
	return nil
}

// checkPosition proves that the WAL still holds the recorded position:
// same header, and the frame at the position carries the recorded
// checksum. Anything else means the WAL changed while nobody watched.
func (d *DB) checkPosition(pos position) error {
	if !pos.HeaderKnown {
		if pos.Frame != 0 {
			return fmt.Errorf("%w: bad local position", errDiscontinuity)
		}
		if pos.IdxSalt1|pos.IdxSalt2 != 0 {
			// Frame 0 of the WAL the wal-index opened with these salts
			// (noteEmptyWAL): continued when that WAL is still the one,
			// with frames written meanwhile (all new) or still empty.
			if wh, err := wal.ReadHeader(d.walf); err == nil {
				if wh.Salt1 == pos.IdxSalt1 && wh.Salt2 == pos.IdxSalt2 {
					d.walHdr = wh
					return nil
				}
				return fmt.Errorf("%w: the WAL was restarted after the last position walsync recorded (salt %08x -> %08x); "+
					"what was committed in between cannot be proven captured", errDiscontinuity, pos.IdxSalt1, wh.Salt1)
			}
			h, err := d.readIndex()
			if err != nil {
				return err
			}
			if h.MaxFrame == 0 && pos.startsWAL(h.Salt1, h.Salt2) {
				return nil
			}
			return fmt.Errorf("%w: the WAL was restarted, or its index rebuilt, after the last position walsync recorded (wal-index salt %08x -> %08x, %d frames)",
				errDiscontinuity, pos.IdxSalt1, h.Salt1, h.MaxFrame)
		}
		// The WAL had no header when walsync stopped; whatever is in it
		// now was written while nobody watched.
		return fmt.Errorf("%w: the WAL had no header when walsync stopped", errDiscontinuity)
	}
	wh, err := wal.ReadHeader(d.walf)
	if err != nil {
		return fmt.Errorf("%w: the WAL was reset after the last position walsync recorded (it has no valid header: %v); "+
			"what was committed in between cannot be proven captured", errDiscontinuity, err)
	}
	if wh.Salt1 != pos.Salt1 || wh.Salt2 != pos.Salt2 || wh.CheckpointSeq != pos.CkptSeq {
		return fmt.Errorf("%w: the WAL was restarted after the last position walsync recorded (salt %08x -> %08x); "+
			"what was committed in between cannot be proven captured", errDiscontinuity, pos.Salt1, wh.Salt1)
	}
	if pos.Frame == 0 {
		if wh.Checksum1 != pos.Cksum1 || wh.Checksum2 != pos.Cksum2 {
			return fmt.Errorf("%w: the WAL header changed", errDiscontinuity)
		}
	} else {
		b := make([]byte, wal.FrameHeaderSize)
		if _, err := d.walf.ReadAt(b, wal.FrameOffset(wh.PageSize, pos.Frame)); err != nil {
			return fmt.Errorf("%w: WAL frame %d is gone (%v)", errDiscontinuity, pos.Frame, err)
		}
		fh := wal.ParseFrameHeader(b)
		if fh.Salt1 != pos.Salt1 || fh.Salt2 != pos.Salt2 || fh.Checksum1 != pos.Cksum1 || fh.Checksum2 != pos.Cksum2 {
			return fmt.Errorf("%w: WAL frame %d changed", errDiscontinuity, pos.Frame)
		}
		h, err := d.readIndex()
		if err != nil {
			return err
		}
		if h.Salt1 != pos.Salt1 || h.MaxFrame < pos.Frame {
			return fmt.Errorf("%w: the wal-index no longer covers frame %d", errDiscontinuity, pos.Frame)
		}
	}
	d.walHdr = wh
	return nil
}

// sealOpenEntries seals what every open segment in the spool holds (a
// segment being built when walsync stopped, segment.go), whatever comes
// next: the sealed segments are uploaded like any other, and st, when it
// is the state of their generation and behind them, advances past them.
// Called before the position is checked.
func (d *DB) sealOpenEntries(st *spoolState) error {
	entries, err := d.spool.entries()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Open {
			continue
		}
		fi, _ := d.spool.fs.Stat("spool:stat-open", e.path(d.spool))
		r, err := d.spool.recoverOpen(e.Seq)
		if errors.Is(err, errNoOpenHeader) {
			if fi != nil && fi.Size() == 0 {
				d.log.Debug("removed an empty open segment", "seq", e.Seq) // made ahead (prepareOpen)
			} else {
				d.log.Warn("removed an open segment with no readable header", "seq", e.Seq)
			}
			continue
		} else if err != nil {
			return err
		}
		d.log.Info("recovered an open segment", "seq", e.Seq, "frames", r.frames, "wal_frame", r.end.Frame)
		if st == nil || e.Seq < st.NextSeq || r.gen.String() != st.Generation {
			continue
		}
		if r.frames > 0 {
			st.Pos, st.NextSeq, st.Changed = r.end, e.Seq+1, true
		} else {
			st.Pos, st.NextSeq = r.start, e.Seq
		}
	}
	return nil
}

// recoverSpool advances st past objects that were spooled but not yet
// recorded in state.json when walsync stopped.
func (d *DB) recoverSpool(st *spoolState) error {
	entries, err := d.spool.entries()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Seq < st.NextSeq || e.Snapshot || e.Open {
			continue // snapshots are written with their state in one step
		}
		h, pos, err := d.spool.segmentEnd(e)
		if err != nil {
			return err
		}
		if h.Generation.String() != st.Generation {
			continue
		}
		st.Pos, st.NextSeq, st.Changed = pos, e.Seq+1, true
		d.log.Info("recovered a spooled segment not yet in local state", "seq", e.Seq)
	}
	return d.provePosition(st)
}

// nextSeqFromBucket finds the next free segment number for the name: one
// listing of <name>/wal/ when there is no local state to say it.
func (d *DB) nextSeqFromBucket(ctx context.Context, st *spoolState) (uint64, error) {
	next := uint64(1)
	if st != nil && st.Name == d.Name && st.Bucket == d.w.Storage.String() {
		next = st.NextSeq
	}
	for obj, err := range d.w.Storage.List(ctx, d.Name+"/"+walsync.SegmentDir+"/") {
		if err != nil {
			return 0, err
		}
		if k, ok := walsync.ParseKey(obj.Key); ok && k.Kind == walsync.KindSegment && k.Name == d.Name && k.Seq >= next {
			next = k.Seq + 1
			d.index.seedSegment(d, obj.Key, k)
		}
	}
	// Spooled but not uploaded objects of an earlier generation count too.
	if entries, err := d.spool.entries(); err == nil {
		for _, e := range entries {
			if e.Seq >= next {
				next = e.Seq + 1
			}
		}
	}
	return next, nil
}

// readIndex reads the wal-index header, retrying a few times over a
// concurrent update.
func (d *DB) readIndex() (walIndexHeader, error) {
	var err error
	for i := 0; i < 50; i++ {
		var h walIndexHeader
		if h, err = readWALIndexHeader(d.shmf); err == nil {
			return h, nil
		}
		time.Sleep(time.Duration(i+1) * 100 * time.Microsecond)
	}
	return walIndexHeader{}, fmt.Errorf("read wal-index %s-shm: %w", d.Path, err)
}

// newGeneration starts a generation: a snapshot at a pinned commit, then
// segments continue from it. Called with d.mu held.
//
// A generation that could not start (its snapshot failed: a file being
// replaced, a full disk) leaves genPending set: nothing is captured until
// one does (captureUntil), since the position is the old generation's.
// Attempts back off from 250 ms to 30 s, and the failure is logged once a
// minute, not once per change: a database that cannot be snapshotted must
// not spin (it made 500 generations a second, and 16 MB of log a minute).
// While backing off it returns nil; Durable asks genPending itself.
func (d *DB) newGeneration(ctx context.Context, reason string) error {
	if wait := d.genRetryAt.Sub(d.now()); wait > 0 {
		d.genPending = reason
		d.w.syncAfter(d, wait)
		return nil
	}
	// One WARN per generation, not per attempt.
	err := d.startGeneration(ctx, reason, d.genPending != reason)
	if errors.Is(err, errYield) {
		// Not a failure: the checkpoint goes first (the next sync moves
		// the pin for it), the generation right after.
		d.genPending, d.genRetryAt = reason, d.now().Add(yieldRetry)
		d.w.syncAfter(d, soonestRecheck)
		return nil
	}
	if err == nil {
		if d.genPending != "" && d.genBackoff > 0 {
			d.log.Info("a new generation started after earlier attempts failed")
		}
		d.genPending, d.genBackoff, d.genRetryAt = "", 0, time.Time{}
		return nil
	}
	if ctx.Err() != nil || d.stopping() {
		d.genPending = reason
		return err
	}
	d.genPending = reason
	d.genBackoff = min(max(2*d.genBackoff, 250*time.Millisecond), 30*time.Second)
	d.genRetryAt = d.now().Add(d.genBackoff)
	d.w.syncAfter(d, d.genBackoff)
	d.noteError(err)
	if d.now().Sub(d.genLogged) >= time.Minute {
		d.genLogged = d.now()
		d.log.Error("could not start a new generation; nothing is captured until one starts (retrying, this is logged once a minute)",
			"reason", reason, "err", err, "retry_in", d.genBackoff)
	}
	return nil
}

// startGeneration is one attempt of newGeneration.
func (d *DB) startGeneration(ctx context.Context, reason string, announce bool) error {
	var gen walsync.Generation
	if _, err := rand.Read(gen[:]); err != nil {
		return err
	}
	if announce && reason == firstRun {
		// Nothing was lost or broken: the normal start of a database.
		d.log.Info("starting a new generation", "reason", reason, "generation", gen.String())
	} else if announce {
		d.log.Warn("starting a new generation", "reason", reason, "generation", gen.String())
	} else {
		d.log.Debug("starting a new generation, again", "reason", reason, "generation", gen.String())
	}
	// What the open segment holds belongs to the generation that ends.
	d.discardSpec()
	if err := d.sealOpen(); err != nil {
		return err
	}
	d.gen = gen
	d.st.Generation = gen.String()
	d.st.DBDevice, d.st.DBInode = d.dev, d.ino
	return d.snapshot(ctx, false)
}

// snapshot writes a snapshot of the current generation into the spool.
// It locks writers out for as long as it takes to read the wal-index and
// index the WAL, then copies pages under the read transaction of the
// current pin while writers continue. In a running generation
// (captureFirst) the frames committed so far are captured first, so the
// snapshot sits exactly at the end of the segments before it. Called with
// d.mu held.
func (d *DB) snapshot(ctx context.Context, captureFirst bool) error {
	if h := d.w.testHookSnapshot; h != nil {
		if err := h(); err != nil {
			return err
		}
	}
	d.w.snapshotSem <- struct{}{}
	defer func() { <-d.w.snapshotSem }()
	start := d.now()
	lock, err := d.spare()
	if err != nil {
		return err
	}
	defer d.dropSpare() // lets writers go on every path; a second call does nothing
	if captureFirst {
		// Most of what is committed is captured before writers are locked
		// out: under the lock only what came since remains (after a large
		// transaction, the application's writers would otherwise wait for
		// the capture of all of it).
		if _, err := d.capture(); err != nil {
			return err
		}
	}
	if err := lock.lockWriters(d.checkpointWaits); err != nil {
		return err
	}
	// Frames committed up to now: captured into the old position first,
	// so a snapshot of the running generation loses nothing in between.
	if captureFirst {
		if _, err := d.capture(); err != nil {
			return err
		}
	}
	h, err := d.repin(nil)
	if err != nil {
		return err
	}
	// The snapshot holds every commit up to this instant: its time.
	pinned := d.now()
	view := &pageView{db: d.dbf, pageSize: d.st.PageSize}
	if err := view.loadWAL(d.Path, d.shmf, d.walf); err != nil {
		return err
	}
	d.dropSpare() // writers go on while the pages are copied
	if view.maxFrame == 0 {
		fi, err := d.dbf.Stat()
		if err != nil {
			return err
		}
		view.dbPages = uint32(fi.Size() / int64(d.st.PageSize))
	}
	// The position the generation continues from.
	pos := position{DBPages: view.dbPages}
	if view.maxFrame > 0 {
		pos = position{Salt1: view.salt1, Salt2: view.salt2, CkptSeq: view.ckptSeq, Frame: view.maxFrame,
			Cksum1: view.cksum1, Cksum2: view.cksum2, BigEndian: view.bigEndian, HeaderKnown: true, DBPages: view.dbPages}
		d.walHdr, _ = wal.ReadHeader(d.walf)
	} else if wh, err := wal.ReadHeader(d.walf); err == nil && wh.Salt1 == h.Salt1 && wh.Salt2 == h.Salt2 {
		pos = walStart(wh, view.dbPages)
		d.walHdr = wh
	}
	seq := d.st.NextSeq
	hdr := walsync.ObjectHeader{
		Kind: walsync.KindByteSnapshot, Generation: d.gen, PageSize: d.st.PageSize, PageCount: view.dbPages,
		WALSalt1: view.salt1, WALSalt2: view.salt2, WALCheckpointSeq: view.ckptSeq, WALFrame: view.maxFrame,
		WALChecksum1: view.cksum1, WALChecksum2: view.cksum2, WALBigEndian: view.bigEndian,
		Seq: seq, Created: pinned,
	}
	err = d.spool.writeFile("snapshot", entryName(seq, true), func(w io.Writer) error {
		// No buffer needed: the zstd encoder writes whole blocks.
		ow, err := walsync.NewObjectWriter(w, hdr)
		if err != nil {
			return err
		}
		if err := view.copyPages(ctx, ow, nil); err != nil {
			return err
		}
		return ow.Close()
	})
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", d.Path, err)
	}
	d.st.Pos = pos
	d.st.Snapshot = pinned
	d.st.Changed = false
	if err := d.spool.saveState(d.st); err != nil {
		return err
	}
	d.snapCommitted.Store(seq + 1)
	d.log.Info("snapshot spooled", "generation", d.gen.String(), "seq", seq, "wal_frame", view.maxFrame,
		"db_bytes", int64(view.dbPages)*int64(d.st.PageSize), "duration", d.now().Sub(start).Round(time.Millisecond))
	d.w.notifyUpload(d)
	return nil
}

// soonestRecheck is how soon a sync that left work behind looks again:
// the first step of its backoff, and the look after giving way to a hook.
const soonestRecheck = 5 * time.Millisecond

// zeroWaitRepin is how long a checkpoint may wait over a fully copied
// WAL, with the pin at read mark 0 by the wal-index, before the pin is
// begun again (DB.sync).
const zeroWaitRepin = 10 * time.Millisecond

// unindexedRecheck is the longest a sync that found frames written but not
// yet in the wal-index waits before it looks again.
const unindexedRecheck = 10 * time.Millisecond

// sync captures new commits and moves the pin forward. Called by the
// watcher when the WAL or the database file changed, and periodically.
func (d *DB) sync(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed != nil {
		return d.failed
	}
	if d.asleep {
		if d.unchangedAsleep() {
			// Nothing committed or copied since it fell asleep: an
			// event of its own last writes, or of a reader's.
			return nil
		}
		if err := d.wake(ctx); err != nil || d.asleep {
			return err // still asleep: tried again after a backoff
		}
	}
	if !d.opened {
		if d.lost == "" || d.stopping() {
			return nil
		}
		return d.follow(ctx)
	}
	if d.unpinned {
		// The application's checkpoint runs; its end pins again and
		// queues a sync (CheckpointEnded).
		return nil
	}
	if replaced, err := d.replaced(); err != nil || replaced {
		why := "the database file was replaced"
		if err != nil {
			why = "the database file is gone (" + err.Error() + ")"
		}
		d.letGo(why)
		return d.follow(ctx)
	}
	h, err := d.readIndex()
	if err != nil {
		return err
	}
	// Batching: committed frames are safe in the WAL while a pin is held,
	// whatever its mark, so a burst of commits can wait up to the sync
	// interval and go out as one segment (one PUT). The first commit after
	// a quiet spell goes at once. Capture does not wait when a checkpoint
	// is being held back by the pin: when it has caught up with the pin
	// while newer frames exist, or when the pin has read mark 0 (which
	// stops every checkpoint) and new frames exist.
	n := 0
	wait := d.set.syncInterval - d.now().Sub(d.lastCapture)
	pending := h.MaxFrame != d.st.Pos.Frame || h.Salt1 != d.st.Pos.Salt1
	// A checkpoint under way (another process holds the checkpoint lock,
	// or the VFS's application said so) may be a RESTART, TRUNCATE or FULL
	// one waiting, with its busy handler, for the pin to move: it holds
	// the application's writers meanwhile, and waiting out the sync
	// interval made such a checkpoint take 1.2-1.9 s.
	held := pending && (d.atZero || (h.NBackfill >= d.pinnedAt && h.MaxFrame > d.pinnedAt) || d.checkpointWaits())
	// A process waiting for its commit to be durable asked for it: since
	// the last capture, or since the open segment began (a hook's capture
	// may have taken that commit into it, after the request).
	flush := wait > 0 && !held && ((pending && d.spool.flushRequested(d.lastCapture)) ||
		(d.seg != nil && d.spool.flushRequested(d.seg.first)))
	// An open segment (Watcher.Batch) is sealed one sync interval after
	// its first frames.
	sealDue := d.seg != nil && d.sealIn() <= 0
	if seal := wait <= 0 || flush || sealDue || d.stopping(); seal || held {
		if held && d.atZero && (d.checkpointWaits() || d.largeCapture(h)) {
			// A checkpoint waits and the pin has read mark 0, which
			// stops its copy: the pin moves to the WAL's end first,
			// without a capture when it can (advance), so the
			// checkpoint copies while the frames are captured; the pin
			// still stops the restart until they are. Before a large
			// capture too: the application's checkpoint may come right
			// after its commit, while the capture runs.
			if err := d.advance(); errors.Is(err, errDiscontinuity) {
				return d.newGeneration(ctx, err.Error())
			} else if err != nil {
				return err
			}
		}
		if n, err = d.captureUntil(seal, d.hookWaiting); errors.Is(err, errDiscontinuity) {
			return d.newGeneration(ctx, err.Error())
		} else if err != nil {
			return err
		}
		if n > 0 {
			d.setLastCapture(d.now())
		}
		if d.hookWaiting() {
			// CatchUp waits for d.mu on the application's committing
			// thread (SQLite's checkpoint follows it): let go at once. It
			// moves the pin itself and has the rest captured in the
			// background; the checkpoint's hook queues the next sync, and
			// this recheck covers the rest.
			d.w.syncAfter(d, soonestRecheck)
			return nil
		}
		if h, err = d.readIndex(); err != nil {
			return err
		}
	} else if pending {
		d.w.syncAfter(d, wait)
	}
	d.armSeal()
	// A WAL that grew past the limit: the application writes without the
	// pause SQLite needs to restart it while walsync's pin is held.
	// After a brake that could not checkpoint everything (the
	// application's own readers), wait a second before the next.
	// A brake that succeeded leaves the pin at mark 0 on a fully
	// checkpointed WAL: the next writer restarts it, nothing more to do.
	restartable := d.atZero && h.NBackfill == h.MaxFrame
	// Not while the application checkpoints itself: that is what the
	// brake is for, and its lock attempt would take a read mark the
	// checkpoint then waits for.
	if limit := d.w.walFrameLimit(); h.MaxFrame >= limit && !restartable && d.now().After(d.brakeAfter) && !d.checkpointWaits() {
		if err := d.brake(); errors.Is(err, errDiscontinuity) {
			return d.newGeneration(ctx, err.Error())
		} else if errors.Is(err, errYield) {
			d.brakeAfter = d.now().Add(yieldRetry) // the checkpoint restarts the WAL itself
		} else if err != nil {
			return err
		}
		if h, err = d.readIndex(); err != nil {
			return err
		}
	}
	// Move the pin when frames were captured (checkpoints may now go
	// further) or when everything is checkpointed and the pin still uses
	// the WAL (a checkpoint waiting to restart or truncate the WAL may be
	// waiting for exactly that). After every capture, although each move
	// opens a SQLite connection (DB.spare): a checkpoint run with a busy
	// handler (RESTART, TRUNCATE, FULL) waits for the pin before it copies
	// anything, and that wait leaves no trace walsync could see (the
	// wal-index shows no progress; in-process locks are not visible to
	// F_GETLK). Moving the pin only when the wal-index showed a checkpoint
	// at it let an application's TRUNCATE right after a commit time out
	// (python/tests, test_watch_in_process).
	d.log.Debug("sync", "captured", n, "max_frame", h.MaxFrame, "backfill", h.NBackfill, "at_zero", d.atZero)
	if n > 0 || (h.NBackfill == h.MaxFrame && !d.atZero) {
		if err := d.cycle(); errors.Is(err, errDiscontinuity) {
			return d.newGeneration(ctx, err.Error())
		} else if err != nil {
			return err
		}
	}
	// Look again soon, backing off from 5 ms to 1 s, while the database
	// was active in the last 10 s and either (a) the WAL holds frames past
	// the wal-index's end: a commit's file write raises the event, but its
	// wal-index update (shared memory) comes after and raises none; or (b)
	// the WAL is not fully checkpointed: a checkpoint records its progress
	// in shared memory too, and a TRUNCATE checkpoint then waits for our
	// pin to move to read mark 0.
	if fi, err := d.walf.Stat(); err == nil {
		if fi.Size() != d.walSize || !fi.ModTime().Equal(d.walMod) {
			d.walSize, d.walMod = fi.Size(), fi.ModTime()
			d.lastActivity, d.recheck = d.now(), 0
		}
	}
	unindexed := d.walSize > wal.FrameOffset(d.st.PageSize, h.MaxFrame+1)
	commitNext := false
	if unindexed {
		d.speculate(h)
		commitNext = d.commitWritten(h, d.walSize)
	}
	if d.checkpointWaits() {
		if !d.atZero {
			// A checkpoint is under way and the pin uses the WAL: a
			// RESTART or TRUNCATE one waits for it to move to read mark 0
			// once every frame is copied, with the application's writers
			// held meanwhile; look again at once rather than backing off.
			d.w.syncAfter(d, soonestRecheck)
			return nil
		}
		// atZero says what the wal-index said when the pin began (every
		// frame copied), not which read mark SQLite gave it: a pin that
		// began while the checkpointer still held read lock 0 (it does
		// while it copies) got a mark on the WAL's end instead, which a
		// TRUNCATE or RESTART then waits for. Seen once in CI: a TRUNCATE
		// that waited out its 10 s busy timeout with walsync idle. A
		// checkpoint still under way over a fully copied WAL a moment
		// later is begun again on (this time) read mark 0.
		if h.MaxFrame > 0 && h.NBackfill == h.MaxFrame {
			if d.zeroWaitSince.IsZero() {
				d.zeroWaitSince = d.now()
			} else if d.now().Sub(d.zeroWaitSince) >= zeroWaitRepin {
				d.zeroWaitSince = time.Time{}
				if err := d.cycle(); errors.Is(err, errDiscontinuity) {
					return d.newGeneration(ctx, err.Error())
				} else if err != nil {
					return err
				}
			}
			d.w.syncAfter(d, soonestRecheck)
			return nil
		}
	}
	d.zeroWaitSince = time.Time{}
	if (h.NBackfill != h.MaxFrame || unindexed) && d.now().Sub(d.lastActivity) < 10*time.Second {
		limit := time.Second
		if unindexed {
			// A commit is on its way: its frames are written, and the
			// wal-index shows them only after the WAL's fsync (tens of
			// milliseconds for a large transaction), which raises no
			// event. Backing off to 40 ms here made a checkpoint that
			// followed the commit wait that much longer.
			limit = unindexedRecheck
		}
		d.recheck = min(max(2*d.recheck, soonestRecheck), limit)
		if commitNext {
			d.recheck = time.Millisecond
		}
		d.w.syncAfter(d, d.recheck)
	}
	return nil
}

// largeCapture says whether the frames committed after the position
// (as far as the wal-index h says) make a capture long enough for a
// checkpoint to wait on it: 1 MiB or more.
func (d *DB) largeCapture(h walIndexHeader) bool {
	frames := h.MaxFrame
	if pos := d.st.Pos; pos.HeaderKnown && pos.Salt1 == h.Salt1 && pos.Salt2 == h.Salt2 && pos.Frame <= frames {
		frames -= pos.Frame
	}
	return int64(frames)*wal.FrameSize(d.st.PageSize) >= 1<<20
}

// cycle moves the read transaction forward without ever dropping it: the
// other pin begins first, everything committed up to now is captured
// under the old pin's protection, then the old pin lets go.
func (d *DB) cycle() error { return d.movePin(true) }

// advance moves the pin to the WAL's end like cycle, but leaves the
// capture to a later call when it can: a pin whose read mark is above 0
// stops every WAL restart, so the frames it passes over stay in the WAL
// until captured, and every move to read mark 0 (cycle) captures first.
// A checkpoint can then copy every frame without waiting for a capture.
// It captures as cycle does when the new pin may not stop a restart (the
// WAL was fully checkpointed when it began) or when the position is not
// in the WAL the new pin holds (a restart not captured yet: only a capture
// made while the old pin has read mark 0 can prove it continuous).
func (d *DB) advance() error { return d.movePin(false) }

func (d *DB) movePin(capture bool) error {
	next, err := d.spare()
	if err != nil {
		return err
	}
	defer d.dropSpare() // after the switch, the old pin
	// The new pin's read mark is at least the WAL's end before it begins
	// and at most its end after: writers commit meanwhile. pinnedAt must
	// not be above the mark, or a checkpoint stopped at the mark would
	// never look caught up (sync's "held") and the WAL would grow until the
	// next batch.
	before, err := d.readIndex()
	if err != nil {
		return err
	}
	if err := next.begin(); err != nil {
		return err
	}
	h, err := d.readIndex()
	if err != nil {
		return err
	}
	atZero := h.NBackfill == h.MaxFrame
	// Without a capture, the frames after the position must be in the WAL
	// the new pin holds: a capture that meets a restart proves it
	// continuous only while the pin has read mark 0 (captureFrames).
	pos := d.st.Pos
	// The position may also be frame 0 of this WAL, recorded under a
	// mark-0 pin while it was empty (noteEmptyWAL): that pin stopped every
	// backfill, so every frame it holds came after the position.
	sameWAL := before.Salt1 == h.Salt1 && ((pos.HeaderKnown && pos.Salt1 == h.Salt1 && pos.Salt2 == h.Salt2) ||
		(d.atZero && pos.startsWAL(h.Salt1, h.Salt2)))
	if capture || atZero || !sameWAL {
		if _, err := d.captureFrames(false); err != nil {
			return err
		}
	}
	if atZero {
		// The new pin does not stop a restart: what the open segment
		// holds must be on disk before the WAL may be written over.
		if err := d.barrier(); err != nil {
			return err
		}
	}
	if err := d.pins[d.cur].end(); err != nil {
		return err
	}
	d.cur = 1 - d.cur
	d.atZero, d.pinnedAt = atZero, before.MaxFrame
	if before.Salt1 != h.Salt1 {
		d.pinnedAt = 0 // restarted in between: the mark is in the new WAL
	}
	return nil
}

// spare returns the connection that does not hold the pin, opened for
// the occasion: a cycle begins the next pin on it, and a snapshot, a brake
// and open lock writers out with it. It is closed again (dropSpare) as
// soon as that is done, so a database costs one SQLite connection, not
// two, between commits: about 18 KB of SQLite heap at 100 databases
// (sqlitemem's test prints the figure), paid for with one open per cycle.
// Closing is safe while the pin holds its read transaction: SQLite's unix
// VFS keeps a closed connection's descriptors until no connection of the
// process holds a lock on the file (POSIX locks are per process), and the
// close cannot checkpoint or delete the WAL while the pin reads it.
func (d *DB) spare() (*pinConn, error) {
	d.spareUsed = d.now()
	i := 1 - d.cur
	if d.pins[i] == nil {
		p, err := openPin(d.Path, d.w.busyTimeout())
		if err != nil {
			return nil, err
		}
		d.pins[i] = p
	}
	return d.pins[i], nil
}

// dropSpare closes the spare connection, ending its transaction (which
// lets writers go when it held the write lock); with Watcher.KeepSpare it
// only ends the transaction, unless that fails. A second call does nothing.
func (d *DB) dropSpare() {
	i := 1 - d.cur
	p := d.pins[i]
	if p == nil || (d.w.KeepSpare && p.end() == nil) {
		return
	}
	p.close() //nolint:errcheck // closing ends its transaction either way
	d.pins[i] = nil
}

// spareIdle is how long Watcher.KeepSpare keeps a database's spare
// connection after its last use: SQLite's heap for a connection is about
// 145 KB, the most of what an open database costs the VFS's application.
const spareIdle = 10 * time.Second

// dropIdleSpare closes the spare connection that KeepSpare kept when it
// has not been used for spareIdle (the database went quiet). It gives
// way to whoever holds d.mu. Called by the watcher's tick.
func (d *DB) dropIdleSpare() {
	if !d.w.KeepSpare || !d.mu.TryLock() {
		return
	}
	defer d.mu.Unlock()
	i := 1 - d.cur
	if p := d.pins[i]; p != nil && !p.open && d.now().Sub(d.spareUsed) >= spareIdle {
		p.close() //nolint:errcheck // no transaction: nothing to end
		d.pins[i] = nil
	}
}

// repin ends the current pin's read transaction, runs between (when not
// nil) on that connection, begins it again on the newest commit and
// records where it now pins. Only with writers locked out (the caller holds
// the write lock on the other pin), so no commit falls between the read of
// the wal-index and the pin. Called with d.mu held.
func (d *DB) repin(between func(p *pinConn)) (walIndexHeader, error) {
	pin := d.pins[d.cur]
	if err := pin.end(); err != nil {
		return walIndexHeader{}, err
	}
	if between != nil {
		between(pin)
	}
	if err := pin.begin(); err != nil {
		return walIndexHeader{}, err
	}
	h, err := d.readIndex()
	if err != nil {
		return walIndexHeader{}, err
	}
	d.atZero, d.pinnedAt = h.NBackfill == h.MaxFrame, h.MaxFrame
	return h, nil
}

// brake lets SQLite restart a WAL that an application writing without a
// pause would otherwise grow without bound: SQLite restarts the WAL only
// when a writer finds it fully checkpointed with no reader using it, and
// walsync's pin, always a little behind such a writer, is such a reader.
// With writers locked out for a moment (the write lock, as a snapshot's
// pinning takes it), everything committed is captured, the pin lets go
// (safe: no writer can restart the WAL while we hold the write lock), a
// PASSIVE checkpoint copies every frame (it waits for no one; readers of
// the application may stop it short, and then nothing changes), and the
// pin begins again: on a fully checkpointed WAL it gets read mark 0, so the
// application's next writer restarts the WAL, a restart that keeps
// continuity (capture's mark-0 rule). Writers wait for one capture and one
// checkpoint of what is in the WAL. Called with d.mu held.
func (d *DB) brake() error {
	lock, err := d.spare()
	if err != nil {
		return err
	}
	defer d.dropSpare()                    // releases the writers on every path
	if _, err := d.capture(); err != nil { // most of it, before writers wait
		return err
	}
	if err := lock.lockWriters(d.checkpointWaits); err != nil {
		return err
	}
	if _, err := d.capture(); err != nil {
		return err
	}
	var ckptErr error
	h, err := d.repin(func(p *pinConn) { ckptErr = p.exec("PRAGMA wal_checkpoint(PASSIVE)") })
	if err != nil {
		return err
	}
	d.setLastCapture(d.now())
	if !d.atZero {
		d.brakeAfter = d.now().Add(time.Second)
	}
	d.log.Debug("brake", "max_frame", h.MaxFrame, "backfill", h.NBackfill, "at_zero", d.atZero, "checkpoint_err", ckptErr)
	return nil
}

// capture copies the frames committed after the position into the spool
// and seals them into a segment, with whatever an open segment held
// before. It returns the number of frames.
func (d *DB) capture() (int, error) { return d.captureFrames(true) }

// readAheadBufs are the WAL read buffers of captures (wal.Scanner's
// ReadAhead): 16 frames of 4 KiB pages per pread. Shared, so that a
// database costs no buffer between captures.
var readAheadBufs = sync.Pool{New: func() any { b := make([]byte, 16*(wal.FrameHeaderSize+4096)); return &b }}

// captureFrames copies the frames committed after the position into the
// open segment (segment.go) and advances the position; with seal, or
// unless Watcher.Batch (and while the watcher stops), the segment is then
// sealed for upload. It returns the number of frames. Called with d.mu
// held.
func (d *DB) captureFrames(seal bool) (int, error) { return d.captureUntil(seal, nil) }

// hookWaiting says whether a VFS hook waits for d.mu (Watcher.CatchUp):
// a capture in the background or in a sync then stops at the next commit
// and lets go (DB.pinWanted). Never while the watcher stops: the final
// sync captures everything.
func (d *DB) hookWaiting() bool { return d.pinWanted.Load() > 0 && !d.stopping() }

// captureUntil is captureFrames that stops after the first commit at
// which stop (if not nil) says so: a background capture and a sync give
// way to a hook that needs d.mu (Watcher.CatchUp).
func (d *DB) captureUntil(seal bool, stop func() bool) (int, error) {
	if d.w.testHookCapture != nil {
		d.w.testHookCapture()
	}
	if d.genPending != "" {
		// The position belongs to a generation that has ended: nothing is
		// captured before the next one starts.
		return 0, pendingGeneration{d.genPending}
	}
	// A watcher that stops batches nothing: the final sync's pin move
	// captures what another process committed since its first capture,
	// and an open segment would stay in the spool at exit.
	seal = seal || !d.w.Batch || d.stopping()
	h, err := d.readIndex()
	if err != nil {
		return 0, err
	}
	sealIf := func() error {
		if seal {
			return d.sealOpen()
		}
		return nil
	}
	pos := d.st.Pos
	var restart *wal.Header // the open segment goes on across a WAL restart
	if pos.HeaderKnown && h.Salt1 == pos.Salt1 && h.Salt2 == pos.Salt2 {
		// No restart since the position: one that comes later is not the
		// one a checkpoint without the pin may have made.
		d.restartProven = false
	} else {
		// The WAL was restarted (one or more times) or had no header.
		// proven: the position is frame 0 of the WAL the wal-index opened
		// with these salts, recorded under a mark-0 pin (noteEmptyWAL).
		proven := pos.startsWAL(h.Salt1, h.Salt2) || d.restartProven
		if h.MaxFrame == 0 {
			if err := d.noteEmptyWAL(h, pos); err != nil {
				return 0, err
			}
			return 0, sealIf() // nothing written to the new WAL yet
		}
		if !d.atZero && !proven {
			return 0, fmt.Errorf("%w: the WAL was restarted while frames after %d may not have been captured", errDiscontinuity, pos.Frame)
		}
		wh, err := wal.ReadHeader(d.walf)
		if err != nil || wh.Salt1 != h.Salt1 || wh.Salt2 != h.Salt2 {
			return 0, sealIf() // header not written yet; the next event brings it
		}
		// No arithmetic on salts or checkpoint sequence: SQLite does not
		// promise any (a connection that did not run recovery writes its
		// own counter, and a fresh one picks random salts). The proof is
		// the mark-0 pin above.
		d.log.Debug("WAL restarted", "salt1", fmt.Sprintf("%08x", wh.Salt1), "checkpoint_seq", wh.CheckpointSeq)
		d.restartProven = false
		pos = walStart(wh, pos.DBPages)
		d.walHdr = wh
		if o := d.seg; o != nil && o.n > 0 && wh.PageSize == o.hdr.PageSize && (o.end.Salt1 != wh.Salt1 || o.end.Salt2 != wh.Salt2) {
			// The open segment goes on across the restart: the append
			// below starts with a restart record (segment.go), and the
			// position moves to the new WAL with that append, not before:
			// until then it stays where the open segment ends.
			restart = &wh
		} else {
			if err := d.sealOpen(); err != nil {
				return 0, err
			}
			d.st.Pos = pos
		}
	}
	if h.MaxFrame == pos.Frame {
		return 0, sealIf()
	}
	if h.MaxFrame < pos.Frame {
		return 0, fmt.Errorf("%w: the wal-index went back from frame %d to %d", errDiscontinuity, pos.Frame, h.MaxFrame)
	}
	if d.walHdr.Salt1 != pos.Salt1 || d.walHdr.Salt2 != pos.Salt2 || d.walHdr.Magic == 0 {
		if d.walHdr, err = wal.ReadHeader(d.walf); err != nil {
			return 0, fmt.Errorf("%w: WAL header: %v", errDiscontinuity, err)
		}
	}
	sc, err := wal.NewScannerAt(d.walf, d.walHdr, pos.Frame, pos.Cksum1, pos.Cksum2)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errDiscontinuity, err)
	}
	// Frames up to MaxFrame are committed and the pin keeps them in place:
	// they can be read many per pread.
	ahead := readAheadBufs.Get().(*[]byte)
	defer readAheadBufs.Put(ahead)
	sc.ReadAhead(h.MaxFrame, *ahead)
	if d.seg == nil {
		if d.seg = d.adoptSpec(pos); d.seg == nil {
			if d.seg, err = d.startOpen(pos, d.st.NextSeq); err != nil {
				return 0, err
			}
		}
	}
	n, end, err := d.seg.appendFrames(d.walf, sc, h.MaxFrame, stop, restart)
	if k, c := d.seg.aheadKept, d.seg.aheadCut; k+c > 0 {
		d.w.metrics.addAhead(k, c)
		d.log.Debug("frames captured ahead of the commit", "kept", k, "captured_again", c)
	}
	if err != nil {
		return 0, d.recoverAfterAppend(err)
	}
	d.seg.last = d.now()
	d.st.Pos = end
	d.st.Changed = true
	d.w.metrics.addCaptured(int(n))
	if err := sealIf(); err != nil {
		return 0, err
	}
	d.armSeal()
	return int(n), nil
}

// noteEmptyWAL records, when it can be proven, that the position is
// frame 0 of the new, still empty WAL that the wal-index h opened (after a
// TRUNCATE or RESTART checkpoint): every frame of the old WAL is captured
// (the position is at its end), and the pin has read mark 0, under which
// a restart keeps continuity. state.json then says so, and a walsync that
// stops (or is killed) now resumes after its restart instead of starting
// a new generation on an empty WAL it cannot account for
// (checkPosition). Not while the open segment holds frames: its end is
// the position until it is sealed. Called with d.mu held.
func (d *DB) noteEmptyWAL(h walIndexHeader, pos position) error {
	if !d.atZero || pos.startsWAL(h.Salt1, h.Salt2) || (d.seg != nil && d.seg.n > 0) || (h.Salt1 == 0 && h.Salt2 == 0) {
		return nil
	}
	d.st.Pos = position{IdxSalt1: h.Salt1, IdxSalt2: h.Salt2, DBPages: pos.DBPages}
	d.walHdr = wal.Header{}
	d.log.Debug("empty WAL after a restart", "salt1", fmt.Sprintf("%08x", h.Salt1))
	return d.spool.saveState(d.st)
}

// recoverAfterAppend handles an append to the open segment that failed
// with err: the segment keeps what it held before the append and is
// sealed (recoverOpen). It returns err, with any failure of that.
func (d *DB) recoverAfterAppend(err error) error {
	seq, terr := d.seg.seq, d.seg.f.Truncate(d.seg.good)
	d.dropOpen()
	if terr != nil {
		return fmt.Errorf("%w (and truncating the open segment failed: %v)", err, terr)
	}
	if rerr := d.recoverOpen(seq); rerr != nil {
		return fmt.Errorf("%w (and recovering the open segment failed: %v)", err, rerr)
	}
	return err
}

// sealIn is how long the open segment may stay open: until one sync
// interval after its first frames (<= 0: due). Only with d.seg set.
func (d *DB) sealIn() time.Duration { return d.set.syncInterval - d.now().Sub(d.seg.first) }

// armSeal makes sure a sync comes when the open segment, if any, is due.
func (d *DB) armSeal() {
	if d.seg != nil {
		d.w.syncAfter(d, max(d.sealIn(), 0))
	}
}

// fail stops replicating d: captures and uploads end, the error is logged
// once. The spool keeps what was captured.
func (d *DB) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed == nil {
		d.failed = err
		d.log.Error("replication stopped", "err", err)
		// Let go of the WAL: a stopped replication must not hold back
		// the application's checkpoints.
		d.closeFiles()
		d.opened = false
	}
}

// letGo stops following a database file that was replaced or removed:
// what it committed before is captured (its files are still open); then
// its WAL is checkpointed into it and truncated, as the application's own
// last close would have done had walsync's read transaction not kept it
// from it: a WAL of the old file left at the path would be applied to the
// new file by SQLite's recovery ("database disk image is malformed" in
// the application). The WAL is truncated through the old file's
// descriptor, never by path: a new -wal at the path is the
// application's. Called with d.mu held.
func (d *DB) letGo(why string) {
	if d.genPending == "" {
		if _, err := d.captureUntil(true, nil); err != nil {
			d.log.Debug("last capture of the replaced file", "err", err)
		}
	}
	// The old file's WAL: copied into the old file and truncated, through
	// the pin's own descriptors (SQLite skips the checkpoint on close for a
	// file that was moved or unlinked). No wait: if the application still
	// has the old file open, the WAL is its business.
	if p := d.pins[d.cur]; p != nil {
		p.end()                         //nolint:errcheck // the checkpoint needs no reader
		p.exec("PRAGMA busy_timeout=0") //nolint:errcheck
		if err := p.exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			d.log.Debug("checkpoint of the replaced file's WAL", "err", err)
		}
	}
	d.closeFiles()
	d.opened = false
	d.lost = why
	d.followBackoff, d.followAt = 0, time.Time{}
	d.genPending, d.genRetryAt, d.genBackoff = "", time.Time{}, 0
	d.log.Warn(why + "; following the new file once it is a SQLite database in WAL mode (a new generation)")
	d.w.recordFollowing(d, &walsync.IndexProblem{Reason: why, Since: d.now().UTC()})
}

// follow opens the database at its path again after letGo: a new file
// starts a new generation. A file that is not (yet) a SQLite database in
// WAL mode, or none at all, is looked at again, at most four times a
// second, backing off to every 2 s; the failure is logged once a minute.
// Called with d.mu held.
func (d *DB) follow(ctx context.Context) error {
	if !d.openDue() {
		return nil
	}
	d.mu.Unlock()
	err := d.open(ctx)
	d.mu.Lock()
	if err == nil {
		d.log.Info("following the database file again", "was", d.lost)
		d.lost, d.followBackoff, d.followAt = "", 0, time.Time{}
		d.w.recordFollowing(d, nil)
		d.w.notifyUpload(d) // spooled objects of earlier attempts, as at a start
		return nil
	}
	if d.opened {
		d.closeFiles()
		d.opened = false
	}
	if d.retryOpen(err) {
		d.log.Warn("cannot follow the database file yet; looking again (logged once a minute)", "err", err)
	}
	return nil
}

// openDue says whether the next attempt to open d (follow, wake) is due;
// if not, the timer is armed for it again: the timer that brought this
// sync may be one set before the last attempt, which then found it
// pending. Called with d.mu held.
func (d *DB) openDue() bool {
	if wait := d.followAt.Sub(d.now()); wait > 0 {
		d.w.syncAfter(d, wait)
		return false
	}
	return true
}

// retryOpen notes err, the failure of an attempt to open d, and arms the
// next one, from 250 ms backing off to 2 s. It says whether the line
// about it is due (once a minute while it fails). Called with d.mu held.
func (d *DB) retryOpen(err error) (logNow bool) {
	d.noteError(err)
	d.followBackoff = min(max(2*d.followBackoff, 250*time.Millisecond), 2*time.Second)
	d.followAt = d.now().Add(d.followBackoff)
	d.w.syncAfter(d, d.followBackoff)
	d.log.Debug("open: another attempt later", "err", err, "retry_in", d.followBackoff)
	if d.now().Sub(d.followLogged) < time.Minute {
		return false
	}
	d.followLogged = d.now()
	return true
}

// stopping says whether d's following is ending: the watcher shuts down
// or releases d.
func (d *DB) stopping() bool { return d.w.stopping.Load() || d.leaving.Load() }

// checkpointWaits says whether a checkpoint is under way: in the
// application of the VFS (Watcher.CheckpointStarted) or in another
// process (its checkpoint lock, checkpointElsewhere).
func (d *DB) checkpointWaits() bool {
	return d.ckptActive.Load() || checkpointElsewhere(d.shmf)
}

// replaced reports whether the path now names another file.
func (d *DB) replaced() (bool, error) {
	fi, err := os.Stat(d.Path)
	if err != nil {
		return false, fmt.Errorf("database %s: %w", d.Path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, nil
	}
	return uint64(st.Dev) != d.dev || st.Ino != d.ino, nil
}

// periodicSnapshot takes a snapshot when the interval has passed and the
// database changed since the last one: an idle database costs nothing.
func (d *DB) periodicSnapshot(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.asleep && d.st.Changed && d.set.snapshotInterval > 0 && d.now().Sub(d.st.Snapshot) >= d.set.snapshotInterval {
		if err := d.wake(ctx); err != nil || d.asleep {
			return err // still asleep: the next tick tries again
		}
	}
	if !d.opened || d.failed != nil || d.stopping() || d.unpinned || !d.st.Changed || d.set.snapshotInterval <= 0 ||
		d.now().Sub(d.st.Snapshot) < d.set.snapshotInterval {
		return nil
	}
	err := d.snapshot(ctx, true)
	if errors.Is(err, errDiscontinuity) {
		return d.newGeneration(ctx, err.Error())
	}
	return err
}

// close ends the pins (the WAL stays: PERSIST_WAL) and closes the files,
// in that order (POSIX locks).
func (d *DB) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeFiles()
	d.opened = false
}

func (d *DB) closeFiles() {
	if d.seg != nil {
		if err := d.sealOpen(); err != nil {
			d.log.Error("could not seal the open segment; the next start recovers it", "err", err)
		}
	}
	// Before the owner lock goes: the next owner may make the same name.
	d.discardPrepared()
	d.discardSpec()
	if err := d.spool.syncRemovals(); err != nil {
		d.log.Warn("uploaded objects left the spool, but not durably; after a crash they are found in the bucket", "err", err)
	}
	// The owner lock goes first: a process that takes over then pins the
	// WAL while our pins still hold it, so no writer can restart it over
	// frames committed after our last capture (we capture nothing more).
	if d.owner != nil {
		d.owner.Close()
		d.owner = nil
	}
	// A wake that failed keeps the database file and its lock (idle.go).
	keep := d.waking && d.dbfLocked
	d.dbfLocked = keep
	d.closeDatabase(keep)
}

// transient says whether err is a lack of resources that goes away (no
// descriptor or memory left), not a fact about the files.
func transient(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOMEM)
}

func fileID(f *os.File) (dev, ino uint64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, nil
	}
	return uint64(st.Dev), st.Ino, nil
}

func (d *DB) setLastCapture(t time.Time) {
	d.lastCapture = t
	d.lastCaptureNs.Store(t.UnixNano())
}
