package replicate

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
	"github.com/walsync/walsync/wal"
)

// The spool is the durable local queue between capture and upload, one per
// database, in a hidden directory beside it (.app.db-walsync/):
//
//	state.json                   capture position, generation, next sequence number
//	<seq>.0.snapshot             a snapshot object waiting for upload
//	<seq>.1.segment              a segment object waiting for upload
//	<seq>.1.open                 the segment being appended to (segment.go), not uploadable
//	owner.lock                   flock of the process that follows the database (lockOwner)
//	changed, flush               touched by other processes that committed (Nudge, RequestFlush)
//	bucket-index.json            the last <name>/state.json written to the bucket (index.go)
//
// Names sort in upload order: a generation's snapshot (Seq = the first
// segment continuing it) goes before that segment. Every sealed object is
// fsynced, renamed into place, and the directory fsynced, before
// state.json moves past it; the open segment is fsynced before the WAL may
// restart over its frames. So after any crash the spool holds every
// captured frame the WAL no longer holds, state.json is at most one sealed
// object behind (recovered by reading that object), and the open segment
// is sealed up to its last verified commit (DB.sealOpenEntries). The
// uploader deletes a file only once the bucket holds it. The VFS (vfs/)
// runs the same follower, so it feeds the same spool.

const (
	stateFileName  = "state.json"
	snapshotSuffix = ".0.snapshot"
	segmentSuffix  = ".1.segment"
	spoolTempGlob  = ".tmp-*"
	stateVersion   = 1
)

// position is a place in the source WAL: everything up to and including
// Frame has been captured, and Cksum1/2 is the WAL's running checksum after
// it (or the header's checksum when Frame is 0).
type position struct {
	Salt1       uint32 `json:"salt1"`
	Salt2       uint32 `json:"salt2"`
	CkptSeq     uint32 `json:"checkpoint_seq"`
	Frame       uint32 `json:"frame"`
	Cksum1      uint32 `json:"cksum1"`
	Cksum2      uint32 `json:"cksum2"`
	BigEndian   bool   `json:"big_endian"`
	HeaderKnown bool   `json:"header_known"` // false: no WAL header seen yet (empty or absent WAL)
	DBPages     uint32 `json:"db_pages"`
	// IdxSalt1, IdxSalt2 (with HeaderKnown false): the position is frame
	// 0 of the WAL that the wal-index opened with these salts after a
	// restart, its header not written yet (DB.noteEmptyWAL).
	IdxSalt1 uint32 `json:"index_salt1,omitempty"`
	IdxSalt2 uint32 `json:"index_salt2,omitempty"`
}

// startsWAL says whether p is frame 0 of the WAL with these salts,
// recorded before its header was written (noteEmptyWAL).
func (p position) startsWAL(salt1, salt2 uint32) bool {
	return !p.HeaderKnown && p.Frame == 0 && p.IdxSalt1|p.IdxSalt2 != 0 && p.IdxSalt1 == salt1 && p.IdxSalt2 == salt2
}

// spoolState is state.json.
type spoolState struct {
	Version    int       `json:"version"`
	Name       string    `json:"name"`
	Bucket     string    `json:"bucket"`
	Generation string    `json:"generation"`
	NextSeq    uint64    `json:"next_seq"`
	Pos        position  `json:"position"`
	PageSize   uint32    `json:"page_size"`
	DBDevice   uint64    `json:"db_device"`
	DBInode    uint64    `json:"db_inode"`
	Snapshot   time.Time `json:"last_snapshot"`
	// Changed is set when frames were captured after the last snapshot:
	// the periodic snapshot is skipped for an unchanged database.
	Changed bool `json:"changed_since_snapshot"`
	// Quiet records a position at which every frame of the WAL was
	// captured and copied into the database file, with that file's stamp
	// (idle.go): it proves continuity across a WAL restart nobody saw,
	// as long as the file is unchanged.
	Quiet *quietState `json:"quiet,omitempty"`
}

func (s spoolState) generation() (walsync.Generation, error) {
	var g walsync.Generation
	b, err := hex.DecodeString(s.Generation)
	if err != nil || len(b) != len(g) {
		return g, fmt.Errorf("state.json: bad generation %q", s.Generation)
	}
	copy(g[:], b)
	return g, nil
}

type spool struct {
	dir string
	// fs is the file system of the spool's files (the seam of package
	// fsys); the owner lock and the signal files (Nudge, RequestFlush)
	// go to package os directly.
	fs fsys.OS
	// unsynced is set when a removal may not be on disk yet (remove):
	// the next directory fsync makes it durable (writeFile, syncRemovals).
	unsynced atomic.Bool
}

// spoolDir is the spool directory for the database at path.
func spoolDir(dbPath string) string {
	return filepath.Join(filepath.Dir(dbPath), "."+filepath.Base(dbPath)+"-walsync")
}

// openSpool opens (or makes) the spool of the database at dbPath, on the
// file system o (nil: the real one). A new spool directory is made
// durable in its parent before anything is written in it: otherwise a
// crash of the machine could take it away with every frame it holds.
func openSpool(dbPath string, o fsys.OS) (*spool, error) {
	s := &spool{dir: spoolDir(dbPath), fs: fsys.Or(o)}
	if err := fsys.MkdirAll(s.fs, "spool:mkdir", s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create spool %s: %w", s.dir, err)
	}
	return s, nil
}

// readOnlySpool is the spool of the database at dbPath for a process
// that only reads it, through the real file system.
func readOnlySpool(dbPath string) *spool {
	return &spool{dir: spoolDir(dbPath), fs: fsys.System{}}
}

// removeTemp deletes temporary files: they are from writes a crash
// interrupted, never valid. Only the owner may (lockOwner): another
// process's writes in progress would be lost.
func (s *spool) removeTemp() {
	des, _ := s.fs.ReadDir("spool:list-temp", s.dir)
	for _, de := range des {
		if ok, _ := filepath.Match(spoolTempGlob, de.Name()); ok {
			s.fs.Remove("spool:remove-temp", filepath.Join(s.dir, de.Name())) //nolint:errcheck // garbage either way
		}
	}
}

// loadState reads state.json; a missing file is (nil, nil).
func (s *spool) loadState() (*spoolState, error) {
	b, err := fsys.ReadFile(s.fs, "state:read", filepath.Join(s.dir, stateFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(s.dir, stateFileName), err)
	}
	var st spoolState
	if err := json.Unmarshal(b, &st); err != nil || st.Version != stateVersion {
		return nil, fmt.Errorf("%s: %w (%v)", filepath.Join(s.dir, stateFileName), errStateUnreadable, err)
	}
	return &st, nil
}

// errStateUnreadable: state.json is there but does not say anything
// walsync can use (a new generation starts); any other error of loadState
// (a read that failed: no descriptor left, say) is the attempt's, not the
// state's.
var errStateUnreadable = errors.New("unreadable local state")

// saveState replaces state.json atomically and durably.
func (s *spool) saveState(st *spoolState) error {
	st.Version = stateVersion
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return s.writeFile("state", stateFileName, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// writeFile writes name in the spool through a temporary file: fsync,
// rename, fsync the directory. Its steps are op+":create" (then
// ":write" and ":sync" of the file), op+":rename" and op+":sync-dir".
func (s *spool) writeFile(op, name string, fill func(w io.Writer) error) error {
	f, err := s.fs.CreateTemp(op+":create", s.dir, spoolTempGlob)
	if err != nil {
		return fmt.Errorf("spool %s: %w", s.dir, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		s.fs.Remove(op+":remove-temp", tmp) //nolint:errcheck // garbage either way
		return fmt.Errorf("spool %s: %w", filepath.Join(s.dir, name), err)
	}
	if err := fill(f); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := s.fs.Rename(op+":rename", tmp, filepath.Join(s.dir, name)); err != nil {
		s.fs.Remove(op+":remove-temp", tmp) //nolint:errcheck // garbage either way
		return fmt.Errorf("spool %s: %w", filepath.Join(s.dir, name), err)
	}
	return s.syncDirOp(op + ":sync-dir")
}

// syncDir fsyncs the spool directory, which makes every removal before
// it durable too.
func (s *spool) syncDir() error { return s.syncDirOp("spool:sync-dir") }

func (s *spool) syncDirOp(op string) error {
	s.unsynced.Store(false)
	if err := fsys.SyncDir(s.fs, op, s.dir); err != nil {
		s.unsynced.Store(true)
		return fmt.Errorf("sync directory %s: %w", s.dir, err)
	}
	return nil
}

// syncRemovals makes the removals remove made durable, if any is not yet.
func (s *spool) syncRemovals() error {
	if s == nil || !s.unsynced.Load() {
		return nil
	}
	return s.syncDir()
}

// spoolEntry is one object waiting for upload.
type spoolEntry struct {
	Name     string
	Seq      uint64
	Snapshot bool
	Open     bool // an open segment (segment.go): not uploadable until sealed
}

func (e spoolEntry) path(s *spool) string { return filepath.Join(s.dir, e.Name) }

func entryName(seq uint64, snapshot bool) string {
	if snapshot {
		return fmt.Sprintf("%020d%s", seq, snapshotSuffix)
	}
	return fmt.Sprintf("%020d%s", seq, segmentSuffix)
}

// entries lists the objects waiting for upload, in upload order.
func (s *spool) entries() ([]spoolEntry, error) {
	des, err := s.fs.ReadDir("spool:list", s.dir)
	if err != nil {
		return nil, fmt.Errorf("read spool %s: %w", s.dir, err)
	}
	var out []spoolEntry
	for _, de := range des {
		n := de.Name()
		var snap, open bool
		var stem string
		switch {
		case strings.HasSuffix(n, snapshotSuffix):
			snap, stem = true, strings.TrimSuffix(n, snapshotSuffix)
		case strings.HasSuffix(n, segmentSuffix):
			stem = strings.TrimSuffix(n, segmentSuffix)
		case strings.HasSuffix(n, openSuffix):
			open, stem = true, strings.TrimSuffix(n, openSuffix)
		default:
			continue
		}
		seq, err := strconv.ParseUint(stem, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, spoolEntry{Name: n, Seq: seq, Snapshot: snap, Open: open})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// setAside moves every entry and state.json into a subdirectory
// stale-<unix time>/ and returns its path ("" when there was nothing).
func (s *spool) setAside() (string, error) {
	entries, err := s.entries()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(s.dir, fmt.Sprintf("stale-%d", time.Now().Unix()))
	if err := fsys.MkdirAll(s.fs, "set-aside:mkdir", dst, 0o755); err != nil {
		return "", err
	}
	names := []string{stateFileName}
	for _, e := range entries {
		names = append(names, e.Name)
	}
	for _, n := range names {
		if err := s.fs.Rename("set-aside:rename", filepath.Join(s.dir, n), filepath.Join(dst, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	if err := fsys.SyncDir(s.fs, "set-aside:sync-dir", dst); err != nil {
		return "", err
	}
	return dst, s.syncDirOp("set-aside:sync-spool")
}

// firstBefore returns the first entry waiting for upload whose name sorts
// before target, or "" when everything before target is uploaded. An open
// segment does not count: it holds only frames after the position
// state.json records (it begins where the last sealed segment ended), so
// it never holds a commit a caller waits for with a target taken from
// state.json; and under continuous writes there is always one.
func (s *spool) firstBefore(target string) (string, error) {
	entries, err := s.entries()
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Open {
			continue
		}
		if e.Name >= target {
			break
		}
		return e.Name, nil
	}
	return "", nil
}

// remove deletes an uploaded entry, without a directory fsync of its own:
// the next state.json written (one per sealed segment) or syncRemovals
// makes it durable. A removal a crash undoes only brings back an object
// the bucket holds with the same bytes, which the next upload finds and
// counts as done (Watcher.uploadEntry); retention, which may delete such
// an object from the bucket, runs only after syncRemovals (pruneAll), so
// a pruned object never comes back.
func (s *spool) remove(e spoolEntry) error {
	if err := s.fs.Remove("spool:remove-uploaded", e.path(s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.unsynced.Store(true)
	return nil
}

// segmentEnd reads a spooled segment and returns the position after its
// last frame: used to recover state.json after a crash between writing
// the segment and saving the state.
func (s *spool) segmentEnd(e spoolEntry) (walsync.ObjectHeader, position, error) {
	f, err := s.fs.Open("spool:read-segment", e.path(s))
	if err != nil {
		return walsync.ObjectHeader{}, position{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return walsync.ObjectHeader{}, position{}, err
	}
	or, err := walsync.NewObjectReader(f, fi.Size())
	if err != nil {
		return walsync.ObjectHeader{}, position{}, fmt.Errorf("%s: %w", e.path(s), err)
	}
	defer or.Close()
	h := or.Header
	frame := make([]byte, wal.FrameHeaderSize+int(h.PageSize))
	ch := walsync.NewSegmentChain(h, false)
	for {
		if _, err := io.ReadFull(or, frame); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return h, position{}, fmt.Errorf("%s: %w", e.path(s), err)
		}
		if _, err := ch.Next(frame); err != nil {
			return h, position{}, fmt.Errorf("%s: %w", e.path(s), err)
		}
	}
	last := ch.Last()
	if n := ch.Records(); n == 0 || n != h.FrameCount || !last.IsCommit() {
		return h, position{}, fmt.Errorf("%s: %w: %d records, the header says %d", e.path(s), walsync.ErrFormat, n, h.FrameCount)
	}
	return h, fromChain(ch.Pos(), last.Commit), nil
}

// ErrOwned means another process replicates the database: it holds the
// spool's owner lock. The error names it.
var ErrOwned = errors.New("already replicated")

// ownerFileName is the spool's owner lock: whoever follows the database
// (`walsync watch` or the VFS in an application) holds an exclusive flock
// on it, so two of them never write one spool. Its content names the
// holder, for the error the second one gets.
const ownerFileName = "owner.lock"

// lockOwner takes the owner lock for this process, described as kind
// ("walsync watch", "the walsync VFS"). The lock lasts until the returned
// file is closed, or the process ends.
func (s *spool) lockOwner(kind string) (*os.File, error) {
	p := filepath.Join(s.dir, ownerFileName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 256))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("%w by %s: one process ships a database (lock %s)", ErrOwned, who, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(fmt.Sprintf("%s, pid %d\n", kind, os.Getpid())), 0) //nolint:errcheck // informative only
	}
	return f, nil
}

// OwnedElsewhere reports whether another process (or another watcher of
// this one) holds the owner lock of the database at dbPath: it probes the
// lock without keeping it. False when the spool does not exist.
func OwnedElsewhere(dbPath string) bool {
	f, err := os.OpenFile(filepath.Join(spoolDir(dbPath), ownerFileName), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks too
	return false
}

// WaitDurable returns once the commit that ended at WAL frame frame of the
// WAL with salt-1 salt1 is durable in the bucket, whichever process
// replicates the database at dbPath: its spool's state.json records a
// position at or past the commit, and every spooled object up to that
// position is uploaded (deleted from the spool). A commit in an earlier
// WAL than the recorded position's was captured before that WAL was
// restarted (the replicating process's pin guarantees it). It polls the
// local spool: no storage request.
func WaitDurable(ctx context.Context, dbPath string, salt1, frame uint32) error {
	s := readOnlySpool(dbPath)
	for delay := time.Millisecond; ; delay = min(2*delay, 20*time.Millisecond) {
		if st, err := s.loadState(); err == nil && st != nil && covers(dbPath, st.Pos, salt1, frame) {
			if first, err := s.firstBefore(entryName(st.NextSeq, false)); err == nil && first == "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("database %s: waiting for WAL frame %d to reach the bucket: %w", dbPath, frame, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// covers reports whether the captured position pos includes the commit at
// (salt1, frame).
func covers(dbPath string, pos position, salt1, frame uint32) bool {
	if !pos.HeaderKnown {
		return false
	}
	if pos.Salt1 == salt1 {
		return pos.Frame >= frame
	}
	// Another WAL: the position is past the commit only if it is in the
	// WAL there is now (restarted after the commit), not in an older one.
	f, err := os.Open(dbPath + "-wal") // no locks on the WAL file: closing it is harmless
	if err != nil {
		return false
	}
	defer f.Close()
	wh, err := wal.ReadHeader(f)
	return err == nil && wh.Salt1 == pos.Salt1 && wh.Salt1 != salt1
}

// flushFileName is touched by a process that waits for its commit to be
// durable (the VFS with walsync_sync=1 in a process that does not
// replicate the database): the replicating process then captures at once
// instead of batching (DB.sync).
const flushFileName = "flush"

// changedFileName is touched by a process that committed to a database
// another process replicates with Watcher.SpoolNotify (Nudge).
const changedFileName = "changed"

// Nudge tells the process that replicates the database at dbPath (with
// Watcher.SpoolNotify) that a transaction committed: it captures within its
// sync interval, as for its own commits.
func Nudge(dbPath string) error {
	return touch(filepath.Join(spoolDir(dbPath), changedFileName))
}

// touch sets p's times to time.Now, making p if need be. The reader
// compares them with its own time.Now (flushRequested), so a file made
// afresh gets them too: the kernel stamps a new file with its coarse
// clock, up to a tick behind, and a request made just after a capture
// would look older than it (TestFlushRequestAfterCapture).
func touch(p string) error {
	now := time.Now()
	err := os.Chtimes(p, now, now)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.WriteFile(p, nil, 0o644); err == nil {
			err = os.Chtimes(p, now, now)
		}
	}
	return err
}

// RequestFlush asks the process that replicates the database at dbPath to
// capture its next commits without waiting for the sync interval. Call it
// before the commit writes its frames: the WAL's change then finds the
// request.
func RequestFlush(dbPath string) error {
	return touch(filepath.Join(spoolDir(dbPath), flushFileName))
}

// flushRequested reports whether a flush was requested since t.
func (s *spool) flushRequested(t time.Time) bool {
	fi, err := s.fs.Stat("flush:stat", filepath.Join(s.dir, flushFileName))
	return err == nil && !fi.ModTime().Before(t)
}
