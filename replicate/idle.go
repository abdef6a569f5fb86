package replicate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/walsync/walsync"
)

// An idle database asleep (`walsync watch`, Watcher.IdleClose).
//
// A database that is followed holds eight descriptors (its pin's SQLite
// connection and the one SQLite keeps from the closed spare, walsync's
// own handles on the database, the WAL and the wal-index, the owner lock)
// and about 150 KB of SQLite heap. Ten thousand databases, most of them
// idle, would need 80,000 descriptors.
// So a database idle for IdleClose, whose every committed frame is
// captured and sealed, lets go of everything but its spool and owner lock
// (sleep): no pin, no connection, one descriptor. Its next change (a file
// event or the poll) or a snapshot that is due wakes it (wake): it is
// opened again as at a start, its position proven against the WAL.
//
// Without a pin, SQLite may restart the WAL. Continuity across a restart
// that walsync did not see is proven from the database file: before it
// sleeps, walsync has every frame of the WAL copied into the database
// file (a PASSIVE checkpoint when needed) and records the file's size,
// modification and change times and inode (quietState, in state.json),
// taken at least quietGap after its last write. SQLite restarts a WAL only
// once every frame in it is copied into the database file (a checkpoint
// of frames committed after the record writes the file, which moves its
// change time, and user space cannot set that back), so if the file is as
// recorded, no frame committed after the position was ever written over:
// the WAL that is there holds every one of them, from its first frame
// (restartProven). If the file changed, a commit may have been
// checkpointed and written over while nobody held the WAL: a new
// generation, with that reason. The same record proves continuity at the
// next start of walsync (resumable).

// quietGap is how long after the database file's last write its stamp
// is recorded: file times have the granularity of the kernel's clock tick,
// and a write in the same tick as the recorded one would leave them equal.
const quietGap = 50 * time.Millisecond

// sleepRetry is the longest an idle database waits before it tries to
// sleep again after an attempt that could not (an application's reader
// kept the WAL from being copied, say).
const sleepRetry = 10 * time.Second

// holdAsleep says whether a database asleep keeps its database file open
// (with its lock, holdShared) beside its owner lock: when the descriptor
// limit has room for two per database of the n followed, and a reserve
// for the rest (the databases awake, 8 each; the storage's connections),
// a quarter of the limit up to 1,024. Otherwise it keeps only the owner
// lock, and an application's last close may copy and remove the WAL while
// it sleeps (a commit made just before then starts a new generation at
// the wake): 10,000 databases under a limit of 20,000 sleep so.
func holdAsleep(n int) bool { return holdUnder(n, fileLimit()) }

// holdUnder is holdAsleep under the descriptor limit lim (0: unknown).
func holdUnder(n int, lim uint64) bool { return lim == 0 || uint64(2*n)+min(lim/4, 1024) <= lim }

// fileStamp is what stat says of a file: a write changes it.
type fileStamp struct {
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.Ino = st.Ino
		s.CtimeNs = ctimeNs(st)
	}
	return s
}

// statStamp is the stamp of the file at path; the zero stamp when there
// is none.
func statStamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return stampOf(fi)
}

// quietState is state.json's record of a position at which every frame
// of the WAL was captured and copied into the database file, and the
// database file as it was then.
type quietState struct {
	Pos position  `json:"position"`
	DB  fileStamp `json:"db"`
}

// quietHolds says whether st's quiet record proves the WAL continuous
// from st's position whatever happened to it: the record is of this very
// position and the database file is as it was then.
func (d *DB) quietHolds(st *spoolState) bool {
	if st == nil || st.Quiet == nil || st.Quiet.Pos != st.Pos || d.dbf == nil {
		return false
	}
	fi, err := d.dbf.Stat()
	return err == nil && stampOf(fi) == st.Quiet.DB
}

// sleepIfIdle puts d to sleep when it has been idle for IdleClose. It
// gives way to whoever holds d.mu. Called by the watcher's tick.
func (d *DB) sleepIfIdle() {
	idle := d.w.IdleClose
	if idle <= 0 || d.w.Batch || !d.mu.TryLock() {
		return
	}
	defer d.mu.Unlock()
	now := d.now()
	if d.asleep && d.dbf != nil && !holdAsleep(len(d.w.all())) {
		// More databases came (--dir) than the limit has room for at
		// two each: asleep, this one keeps only its owner lock now.
		d.dbf.Close()
		d.dbf, d.dbfLocked = nil, false
		return
	}
	if !d.opened || d.asleep || d.failed != nil || d.genPending != "" || d.lost != "" || d.seg != nil || d.spec != nil ||
		d.unpinned || d.snapshotting || d.stopping() || d.flushing.Load() ||
		now.Sub(d.lastActivity) < idle || now.Sub(d.lastCapture) < idle || now.Before(d.sleepAfter) {
		return
	}
	if err := d.sleep(); err != nil {
		d.sleepAfter = now.Add(min(idle, sleepRetry))
		d.log.Debug("idle, but staying awake", "why", err)
	}
}

// sleep lets go of d's pins and files when every committed frame is
// captured, after having the WAL copied into the database file and its
// stamp recorded. Called with d.mu held.
func (d *DB) sleep() error {
	h, err := d.readIndex()
	if err != nil {
		return err
	}
	captured := func(h walIndexHeader) bool {
		pos := d.st.Pos
		return (pos.HeaderKnown && pos.Salt1 == h.Salt1 && pos.Salt2 == h.Salt2 && pos.Frame == h.MaxFrame) ||
			(h.MaxFrame == 0 && (pos.startsWAL(h.Salt1, h.Salt2) || d.atZero))
	}
	if !captured(h) {
		return errors.New("committed frames not captured yet")
	}
	if h.NBackfill != h.MaxFrame {
		// The pin's mark keeps the copy from going past it: moved to
		// the WAL's end first. PASSIVE waits for no one.
		if err := d.cycle(); err != nil {
			return err
		}
		p, err := d.spare()
		if err != nil {
			return err
		}
		err = p.exec("PRAGMA wal_checkpoint(PASSIVE)")
		d.dropSpare()
		if err != nil {
			return fmt.Errorf("copying the WAL into the database: %w", err)
		}
		if h, err = d.readIndex(); err != nil {
			return err
		}
		if h.NBackfill != h.MaxFrame {
			return errors.New("the WAL is not copied into the database yet (a reader holds it)")
		}
		if !captured(h) {
			return errors.New("committed frames not captured yet")
		}
	}
	fi, err := d.dbf.Stat()
	if err != nil {
		return err
	}
	if d.now().Sub(fi.ModTime()) < quietGap {
		return errors.New("the database file was written just now")
	}
	d.st.Quiet = &quietState{Pos: d.st.Pos, DB: stampOf(fi)}
	if err := d.spool.saveState(d.st); err != nil {
		d.st.Quiet = nil
		return err
	}
	d.sleepWAL = statStamp(d.Path + "-wal")
	// Before the pins go: the application's last close then leaves the
	// WAL alone (a commit made meanwhile stays in it for the wake). Not
	// when the descriptor limit leaves no room for two per database.
	hold := holdAsleep(len(d.w.all()))
	if hold {
		if err := holdShared(d.dbf); err != nil {
			d.log.Debug("no lock on the database while idle", "err", err)
		} else {
			d.dbfLocked = true
		}
	}
	d.closeDatabase(hold)
	d.asleep = true
	d.log.Debug("idle: database closed until it changes", "wal_frame", d.st.Pos.Frame)
	return nil
}

// closeDatabase closes the pins and walsync's handles on the WAL and the
// wal-index, and on the database unless keepDB, in that order (POSIX
// locks); the spool and its owner lock stay. Called with d.mu held.
func (d *DB) closeDatabase(keepDB bool) {
	for i, p := range d.pins {
		if p != nil {
			p.close() //nolint:errcheck // closing ends its transaction either way
			d.pins[i] = nil
		}
	}
	files := []**os.File{&d.walf, &d.shmf}
	if !keepDB {
		files = append(files, &d.dbf)
	}
	for _, f := range files {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// reopenDatabase is openDatabase for a wake: the handle kept asleep (with
// its lock, holdShared) when the path still names that file, else a new
// one. Called with d.mu held.
func (d *DB) reopenDatabase() (*os.File, walsync.DBHeader, error) {
	if held := d.dbf; held != nil {
		if fi, err := os.Stat(d.Path); err == nil {
			if hi, err := held.Stat(); err == nil && os.SameFile(fi, hi) {
				if hdr, err := readDBHeader(held, d.Path, hi.Size()); err == nil {
					return held, hdr, nil
				}
			}
		}
		held.Close() // no pin of walsync's holds a lock on it yet
		d.dbf, d.dbfLocked = nil, false
	}
	return openDatabase(d.Path)
}

// unchangedAsleep says whether neither the database file (as the quiet
// record has it) nor its WAL changed since d went to sleep: nothing to
// capture.
func (d *DB) unchangedAsleep() bool {
	return d.st.Quiet != nil && statStamp(d.Path) == d.st.Quiet.DB && statStamp(d.Path+"-wal") == d.sleepWAL
}

// wake opens d again after sleep, as at a start: the position is proven
// against the WAL, or by the quiet record, or a new generation begins.
// When it cannot be opened now (no descriptor left, say), it stays asleep
// with its database handle and lock, and is tried again with backoff
// (250 ms to 2 s), logged once a minute; a file that is gone or replaced
// is followed as after letGo (DB.follow). Called with d.mu held, d
// asleep.
func (d *DB) wake(ctx context.Context) error {
	if !d.openDue() {
		return nil
	}
	d.asleep, d.opened, d.waking = false, false, true
	err := d.openLocked(ctx, true)
	defer func() { d.waking = false }()
	if err == nil {
		if d.dbfLocked {
			releaseShared(d.dbf) //nolint:errcheck // the pin holds the WAL now; closing the file releases it anyway
			d.dbfLocked = false
		}
		d.followBackoff, d.followAt = 0, time.Time{}
		d.log.Debug("awake", "wal_frame", d.st.Pos.Frame)
		// What an attempt that failed part way left in the spool (a
		// segment sealed, its upload not queued) goes out now.
		d.w.notifyUpload(d)
		return nil
	}
	if d.opened {
		d.closeFiles()
		d.opened = false
	}
	if d.stopping() {
		return nil
	}
	logNow := d.retryOpen(err)
	if d.dbf != nil {
		d.asleep, d.opened = true, true // still holding the file: asleep as before
		if logNow {
			d.log.Warn("cannot open the database again after an idle spell; looking again (logged once a minute)", "err", err)
		}
		return nil
	}
	d.lost = "the database could not be opened again after an idle spell (" + err.Error() + ")"
	d.followLogged = d.now()
	d.log.Warn(d.lost + "; following it once it can be (a new generation if it changed meanwhile)")
	return nil
}
