// Package replicate captures SQLite databases into a walsync.Storage: a
// consistent snapshot of a live database as raw page images (this file),
// and, with watch, the WAL frames that follow it.
//
// Why raw pages and not SQLite's backup API: the backup API rewrites bytes
// 24-27 and 92-95 of the header (the change counter and version-valid-for),
// so its copy is not byte-identical to the source. walsync reads the pages
// itself: from the WAL for pages whose newest committed version is there,
// from the database file otherwise, all inside one read transaction that
// keeps SQLite from checkpointing or restarting the WAL over them.
package replicate

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver for read transactions and locks

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/wal"
)

// Snapshotter takes snapshots of databases into Storage.
type Snapshotter struct {
	Storage walsync.Storage
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TempDir holds the compressed snapshot while it uploads. Empty means
	// beside the database (same file system, room for its size), falling
	// back to os.TempDir when that directory is not writable.
	TempDir string
	// Progress, when set, is called as database bytes are read.
	Progress func(done, total int64)
	// BusyTimeout bounds the wait for the write lock that pins the WAL
	// position (held for the time it takes to read the WAL index, never for
	// the copy). Zero means 60 s.
	BusyTimeout time.Duration

	// testHookPinned runs after the WAL position is pinned and the write
	// lock released, before any page is read.
	testHookPinned func()
}

// SnapshotInfo describes a snapshot that was stored.
type SnapshotInfo struct {
	Name       string
	Key        string
	Generation walsync.Generation
	PageSize   uint32
	PageCount  uint32
	DBSize     int64     // bytes of database content
	StoredSize int64     // bytes of the stored object
	SHA256     string    // of the stored object
	WALFrame   uint32    // last WAL frame included, 0 when none
	Created    time.Time // when the snapshot was pinned: it holds every commit before
	Duration   time.Duration

	restartedReads int
}

func (s *Snapshotter) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Snapshotter) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Snapshot stores a consistent snapshot of the database at dbPath under
// name, in a new generation, and returns what it stored.
func (s *Snapshotter) Snapshot(ctx context.Context, dbPath, name string) (*SnapshotInfo, error) {
	var gen walsync.Generation
	if _, err := rand.Read(gen[:]); err != nil {
		return nil, err
	}
	return s.SnapshotGeneration(ctx, dbPath, name, gen)
}

// SnapshotGeneration is Snapshot into the given generation.
func (s *Snapshotter) SnapshotGeneration(ctx context.Context, dbPath, name string, gen walsync.Generation) (*SnapshotInfo, error) {
	start := s.now()
	if err := walsync.ValidateName(name); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dbPath)
	if err != nil {
		return nil, err
	}
	dbf, hdr, err := openDatabase(abs)
	if err != nil {
		return nil, err
	}
	defer dbf.Close()
	// Fail on a missing bucket or wrong credentials before reading a
	// possibly large database: one cheap listing request.
	if err := s.Storage.Prepare(ctx); err != nil {
		return nil, err
	}

	tmp, err := s.createTemp(abs)
	if err != nil {
		return nil, err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()

	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, sum), 256<<10)
	info := &SnapshotInfo{Name: name, Generation: gen, PageSize: hdr.PageSize}
	if err := s.capture(ctx, abs, dbf, hdr, gen, bw, info); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("write temporary snapshot %s: %w", tmp.Name(), err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	info.StoredSize = size
	info.SHA256 = hex.EncodeToString(sum.Sum(nil))

	// Two snapshots in the same second would share a key; objects are
	// never overwritten, so the later one moves to the next free second.
	t := info.Created
	for attempt := 0; ; attempt++ {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		key := walsync.SnapshotKey(name, t)
		err := s.Storage.Put(ctx, key, tmp, size, info.SHA256)
		if err == nil {
			info.Key = key
			break
		}
		if errors.Is(err, walsync.ErrExists) && attempt < 60 {
			t = t.Add(time.Second)
			continue
		}
		return nil, err
	}
	info.Duration = s.now().Sub(start)
	s.logger().Info("snapshot stored", "name", name, "key", info.Key, "db_bytes", info.DBSize,
		"stored_bytes", info.StoredSize, "wal_frame", info.WALFrame, "generation", gen.String(),
		"duration", info.Duration.Round(time.Millisecond))
	return info, nil
}

// openDatabase opens the database file and checks its header.
func openDatabase(path string) (*os.File, walsync.DBHeader, error) {
	var hdr walsync.DBHeader
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, hdr, fmt.Errorf("database %s: no such file", path)
		}
		return nil, hdr, fmt.Errorf("open database %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, hdr, fmt.Errorf("stat database %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, hdr, fmt.Errorf("database %s: not a regular file", path)
	}
	if hdr, err = readDBHeader(f, path, fi.Size()); err != nil {
		f.Close()
		return nil, hdr, err
	}
	return f, hdr, nil
}

// readDBHeader reads and checks the header of the database at path, open
// as f, whose size is size.
func readDBHeader(f *os.File, path string, size int64) (walsync.DBHeader, error) {
	b := make([]byte, walsync.DBHeaderSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		if size < walsync.DBHeaderSize {
			return walsync.DBHeader{}, fmt.Errorf("database %s: %w (%d bytes, shorter than a SQLite header)", path, walsync.ErrNotSQLite, size)
		}
		return walsync.DBHeader{}, fmt.Errorf("read database %s: %w", path, err)
	}
	hdr, err := walsync.ParseDBHeader(b)
	if err != nil {
		return hdr, fmt.Errorf("database %s: %w", path, err)
	}
	return hdr, nil
}

func (s *Snapshotter) createTemp(dbPath string) (*os.File, error) {
	pattern := "." + filepath.Base(dbPath) + "-walsync-snapshot-*"
	if s.TempDir != "" {
		return os.CreateTemp(s.TempDir, pattern)
	}
	f, err := os.CreateTemp(filepath.Dir(dbPath), pattern)
	if err == nil {
		return f, nil
	}
	s.logger().Debug("database directory not writable, using the temporary directory", "err", err)
	return os.CreateTemp("", pattern)
}

// dsn builds a mattn/go-sqlite3 URI for path that never creates the file.
func dsn(path string, busy time.Duration) string {
	u := url.URL{Path: path}
	return fmt.Sprintf("file:%s?mode=rw&_busy_timeout=%d", u.EscapedPath(), busy.Milliseconds())
}

// capture writes the snapshot object for the database to w.
//
// The consistency argument (docs/ARCHITECTURE.md, "Snapshots"): connection
// A takes the write lock (BEGIN IMMEDIATE) so no commit can happen; then
// connection B opens a read transaction, whose snapshot is therefore the
// newest commit; walsync reads the wal-index header and the WAL to learn
// that commit's frame N and the frame holding each page's newest version;
// A lets go, and writers carry on. While B reads, SQLite does not
// checkpoint past N nor restart the WAL under frames B may use, so the
// pages read afterwards are exactly B's view.
func (s *Snapshotter) capture(ctx context.Context, path string, dbf *os.File, hdr walsync.DBHeader,
	gen walsync.Generation, w io.Writer, info *SnapshotInfo) error {
	busy := s.BusyTimeout
	if busy == 0 {
		busy = 60 * time.Second
	}
	db, err := sql.Open("sqlite3", dsn(path, busy))
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	view := &pageView{db: dbf, pageSize: hdr.PageSize}
	// Order matters: POSIX record locks belong to the process, and closing
	// any descriptor of a file drops all of the process's locks on it. The
	// -shm and -wal descriptors walsync opens must therefore stay open
	// until SQLite has closed its connections (and released the read lock
	// that pins the snapshot); view.close runs after db.Close.
	defer view.close()
	defer db.Close()
	db.SetMaxOpenConns(2)
	connA, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	defer connA.Close()
	connB, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	defer connB.Close()

	var mode string
	if err := connA.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode of %s: %w", path, sqliteErr(err))
	}
	wantWAL := strings.EqualFold(mode, "wal")
	if wantWAL {
		if _, err := connA.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return fmt.Errorf("lock %s to pin the WAL position: %w", path, sqliteErr(err))
		}
	}
	unlockA := func() {
		if wantWAL {
			connA.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck // best effort; Close also ends it
			wantWAL = false
		}
	}
	defer unlockA()
	if _, err := connB.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin read transaction on %s: %w", path, sqliteErr(err))
	}
	defer connB.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck
	var n int
	if err := connB.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		return fmt.Errorf("read %s: %w", path, sqliteErr(err))
	}

	if strings.EqualFold(mode, "wal") {
		if view.shm, err = openIfExists(path + "-shm"); err != nil {
			return err
		}
		if view.walFile, err = openIfExists(path + "-wal"); err != nil {
			return err
		}
		if err := view.loadWAL(path, view.shm, view.walFile); err != nil {
			return err
		}
		s.logger().Debug("snapshot pinned", "path", path, "wal_frame", view.maxFrame, "db_pages", view.dbPages,
			"salt1", view.salt1, "wal_index", view.fromIndex, "indexed_pages", len(view.frames))
	}
	unlockA()
	now := s.now() // the snapshot holds every commit up to this instant
	info.Created = now
	if s.testHookPinned != nil {
		s.testHookPinned()
	}

	if view.maxFrame == 0 {
		fi, err := dbf.Stat()
		if err != nil {
			return err
		}
		view.dbPages = uint32(fi.Size() / int64(hdr.PageSize))
	}
	info.PageCount = view.dbPages
	info.DBSize = int64(view.dbPages) * int64(hdr.PageSize)
	info.WALFrame = view.maxFrame

	ow, err := walsync.NewObjectWriter(w, walsync.ObjectHeader{
		Kind:             walsync.KindByteSnapshot,
		Generation:       gen,
		PageSize:         hdr.PageSize,
		PageCount:        view.dbPages,
		WALSalt1:         view.salt1,
		WALSalt2:         view.salt2,
		WALCheckpointSeq: view.ckptSeq,
		WALFrame:         view.maxFrame,
		WALChecksum1:     view.cksum1,
		WALChecksum2:     view.cksum2,
		WALBigEndian:     view.bigEndian,
		Created:          now,
	})
	if err != nil {
		return fmt.Errorf("write temporary snapshot: %w", err)
	}
	if err := view.copyPages(ctx, ow, s.Progress); err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	if view.restartedReads > 0 {
		s.logger().Debug("WAL restarted during the snapshot; pages read from the database file instead",
			"path", path, "pages", view.restartedReads)
	}
	info.restartedReads = view.restartedReads
	if err := ow.Close(); err != nil {
		return fmt.Errorf("write temporary snapshot: %w", err)
	}
	return nil
}

// pageView is a read transaction's view of the database: WAL frames up to
// maxFrame over the database file.
type pageView struct {
	db        *os.File
	wal       *os.File
	shm       *os.File // opened by Snapshotter.capture, closed by close
	walFile   *os.File // likewise
	pageSize  uint32
	dbPages   uint32
	maxFrame  uint32
	salt1     uint32
	salt2     uint32
	ckptSeq   uint32
	cksum1    uint32 // WAL checksum chain after maxFrame
	cksum2    uint32
	bigEndian bool
	frames    map[uint32]uint32 // page number -> newest frame index <= maxFrame
	// restartedReads counts pages whose WAL frame had been overwritten by a
	// WAL restart and were read from the database file instead.
	restartedReads int
	scratch        []byte
	fromIndex      bool // the position came from the wal-index header
}

// close closes the files the view opened itself.
func (v *pageView) close() {
	if v.walFile != nil {
		v.walFile.Close()
	}
	if v.shm != nil {
		v.shm.Close()
	}
}

// openIfExists opens path for reading; a missing file is (nil, nil).
func openIfExists(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// loadWAL learns the committed WAL position from the wal-index header when
// it is readable (that is what SQLite's readers use), and indexes the WAL
// frames up to it, checking salts and the checksum chain. shm and walf are
// the open -shm and -wal files, nil when absent; the view reads walf later
// but does not own it.
func (v *pageView) loadWAL(path string, shm, walf *os.File) error {
	shmHdr, shmErr := walIndexHeader{}, errShmUnusable
	if shm != nil {
		shmHdr, shmErr = readWALIndexHeader(shm)
	}
	if walf == nil {
		if shmErr != nil || shmHdr.MaxFrame == 0 {
			return nil
		}
		return fmt.Errorf("WAL %s-wal: missing, but the wal-index says %d frames are committed", path, shmHdr.MaxFrame)
	}
	v.wal = walf
	if shmErr == nil && shmHdr.MaxFrame == 0 {
		return nil
	}
	sc, err := wal.NewScanner(walf)
	if err != nil {
		if shmErr != nil {
			// No usable wal-index and no valid WAL header: SQLite
			// treats such a WAL as empty, and so do we.
			return nil
		}
		return fmt.Errorf("WAL %s-wal: the wal-index says %d frames are committed but the WAL header is invalid: %w", path, shmHdr.MaxFrame, err)
	}
	wh := sc.Header()
	if wh.PageSize != v.pageSize {
		return fmt.Errorf("WAL %s-wal: page size %d differs from the database's %d", path, wh.PageSize, v.pageSize)
	}
	limit := uint32(0)
	if shmErr == nil {
		if shmHdr.Salt1 != wh.Salt1 || shmHdr.Salt2 != wh.Salt2 {
			return fmt.Errorf("WAL %s-wal: salts differ from the wal-index header", path)
		}
		limit = shmHdr.MaxFrame
		v.fromIndex = true
	}
	frames := map[uint32]uint32{}
	type pageFrame struct{ pgno, idx uint32 }
	var pending []pageFrame // frames after the last commit seen
	var lastCommit, dbPages, c1, c2 uint32
	for sc.Next() {
		idx, fh, _ := sc.Frame()
		if limit != 0 && idx > limit {
			break
		}
		pending = append(pending, pageFrame{fh.Pgno, idx})
		if fh.IsCommit() {
			for _, pf := range pending {
				frames[pf.pgno] = pf.idx // later frames win
			}
			pending = pending[:0]
			lastCommit, dbPages = idx, fh.Commit
			c1, c2 = sc.Checksum()
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read WAL %s-wal: %w", path, err)
	}
	if limit != 0 && lastCommit != limit {
		return fmt.Errorf("WAL %s-wal: the wal-index says frame %d is the last commit, the WAL's valid commits end at %d", path, limit, lastCommit)
	}
	if lastCommit == 0 {
		return nil
	}
	v.maxFrame, v.dbPages, v.frames = lastCommit, dbPages, frames
	v.salt1, v.salt2, v.ckptSeq = wh.Salt1, wh.Salt2, wh.CheckpointSeq
	v.cksum1, v.cksum2, v.bigEndian = c1, c2, wh.BigEndianChecksum()
	return nil
}

// copyPages writes pages 1..dbPages to w, in chunks.
func (v *pageView) copyPages(ctx context.Context, w io.Writer, progress func(done, total int64)) error {
	const chunkBytes = 1 << 20
	ps := int64(v.pageSize)
	per := max(int64(1), chunkBytes/ps)
	buf := make([]byte, per*ps)
	total := int64(v.dbPages) * ps
	for first := int64(1); first <= int64(v.dbPages); first += per {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(per, int64(v.dbPages)-first+1)
		chunk := buf[:n*ps]
		got, err := v.db.ReadAt(chunk, (first-1)*ps)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read database: %w", err)
		}
		for i := int64(0); i < n; i++ {
			pgno := uint32(first + i)
			page := chunk[i*ps : (i+1)*ps]
			fromWAL := false
			if idx, ok := v.frames[pgno]; ok {
				var err error
				if fromWAL, err = v.readFrame(idx, pgno, page); err != nil {
					return err
				}
				if !fromWAL {
					v.restartedReads++
				}
			}
			if !fromWAL && (i+1)*ps > int64(got) {
				return fmt.Errorf("page %d is neither in the WAL nor in the database file", pgno)
			}
		}
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		if progress != nil {
			progress((first-1+n)*ps, total)
		}
	}
	return nil
}

// readFrame copies frame idx's page into page if the frame still holds
// pgno at the scanned position, and reports whether it did.
//
// A frame is stable while our read transaction uses the WAL. It can change
// only in one case: everything up to maxFrame had been checkpointed when the
// read transaction began (it then reads the database file alone), and a
// writer restarted or a checkpoint truncated the WAL. Then the database file
// holds this page's version and SQLite will not change it while our read
// transaction lasts, so the caller keeps the file's bytes. SQLite writes a
// frame's header before its data, so checking the header before and after
// reading the data (into a scratch buffer) catches an overwrite that raced
// with the read.
func (v *pageView) readFrame(idx, pgno uint32, page []byte) (bool, error) {
	off := wal.FrameOffset(v.pageSize, idx)
	if v.scratch == nil {
		v.scratch = make([]byte, wal.FrameHeaderSize+int(v.pageSize))
	}
	hdr, data := v.scratch[:wal.FrameHeaderSize], v.scratch[wal.FrameHeaderSize:]
	same := func() (bool, error) {
		if _, err := v.wal.ReadAt(hdr, off); err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil // truncated by a checkpoint
			}
			return false, fmt.Errorf("read WAL frame %d: %w", idx, err)
		}
		h := wal.ParseFrameHeader(hdr)
		return h.Pgno == pgno && h.Salt1 == v.salt1 && h.Salt2 == v.salt2, nil
	}
	if ok, err := same(); !ok || err != nil {
		return false, err
	}
	if _, err := v.wal.ReadAt(data, off+wal.FrameHeaderSize); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("read WAL frame %d: %w", idx, err)
	}
	if ok, err := same(); !ok || err != nil {
		return false, err
	}
	copy(page, data)
	return true, nil
}

// sqliteErr keeps SQLite's message and drops nothing; it exists so that
// every SQLite error reaches the user as one line.
func sqliteErr(err error) error {
	return errors.New(strings.ReplaceAll(err.Error(), "\n", " "))
}
