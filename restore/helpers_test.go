package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/file"
	"github.com/walsync/walsync/wal"
)

// source is a real SQLite database in WAL mode (wal_autocheckpoint=0)
// whose WAL the test ships by hand, the way a capturing process would: a
// snapshot records the committed WAL position, and each segment holds the
// committed frames written since, cut from the real WAL file. Statements
// run on numbered connections of one process; connection 0 is opened
// first.
type source struct {
	t        *testing.T
	dir      string
	path     string
	db       *sql.DB
	conns    map[int]*sql.Conn
	pageSize uint32

	st       *file.Client
	name     string
	gen      walsync.Generation
	seq      uint64    // number of the next segment
	clock    time.Time // key times
	pos      walPos    // the last shipped WAL position
	keys     []string  // segment keys, in order
	held     []part    // frames for the next segment (hold)
	restarts int       // restart records shipped

	snapKey string // the last snapshot's key
	snapSeq uint64 // and the number of its first segment
}

func newSource(t *testing.T, pageSize uint32) *source {
	t.Helper()
	dir := t.TempDir()
	st, err := file.New(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	s := &source{
		t: t, dir: dir, path: filepath.Join(dir, "app.db"), pageSize: pageSize,
		conns: map[int]*sql.Conn{}, st: st, name: "app", seq: 1,
		gen:   walsync.Generation{0x11, 0x22, 0x33},
		clock: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	s.db, err = sql.Open("sqlite3", "file:"+s.path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range s.conns {
			c.Close()
		}
		s.db.Close()
	})
	s.exec(0, fmt.Sprintf("PRAGMA page_size=%d", pageSize))
	s.exec(0, "PRAGMA journal_mode=WAL")
	s.exec(0, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	return s
}

// conn returns connection i, opening it (with autocheckpoint off) on
// first use.
func (s *source) conn(i int) *sql.Conn {
	s.t.Helper()
	if c, ok := s.conns[i]; ok {
		return c
	}
	c, err := s.db.Conn(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := c.ExecContext(context.Background(), "PRAGMA wal_autocheckpoint=0"); err != nil {
		s.t.Fatal(err)
	}
	s.conns[i] = c
	return c
}

func (s *source) exec(conn int, q string, args ...any) {
	s.t.Helper()
	if _, err := s.conn(conn).ExecContext(context.Background(), q, args...); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
}

// insert adds n rows of size bytes each, in one transaction.
func (s *source) insert(n, size int) {
	s.t.Helper()
	s.exec(0, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?) INSERT INTO t(v) SELECT randomblob(?) FROM c", n, size)
}

// files copies the database and its WAL into a fresh directory and returns
// the copy's path: the state a crash at this moment would leave.
func (s *source) files() string {
	s.t.Helper()
	dir := s.t.TempDir()
	dst := filepath.Join(dir, "copy.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(s.path + suffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	return dst
}

// expected is the source database as the integrity contract defines the
// restore: a copy of it after PRAGMA wal_checkpoint(TRUNCATE).
func (s *source) expected() []byte {
	s.t.Helper()
	return checkpointed(s.t, s.files())
}

func checkpointed(t *testing.T, path string) []byte {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	var busy, log, ckpt int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &ckpt); err != nil || busy != 0 {
		t.Fatalf("checkpoint %s: busy=%d err=%v", path, busy, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	return b
}

// walPosition scans the WAL at path (if any) and returns its committed
// position: the last commit frame and the running checksum after it, or
// the zero position when the WAL holds no committed frame.
func walPosition(t *testing.T, path string) walPos {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return walPos{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc, err := wal.NewScanner(f)
	if errors.Is(err, wal.ErrNoHeader) {
		return walPos{}
	}
	if err != nil {
		t.Fatal(err)
	}
	h := sc.Header()
	var pos walPos
	for sc.Next() {
		idx, fh, _ := sc.Frame()
		if fh.IsCommit() {
			c1, c2 := sc.Checksum()
			pos = walPos{WALPosition: walsync.WALPosition{Salt1: h.Salt1, Salt2: h.Salt2, CkptSeq: h.CheckpointSeq,
				Frame: idx, Cksum1: c1, Cksum2: c2, BigEndian: h.BigEndianChecksum()}}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return pos
}

// snapshot stores a snapshot of the current state, continued by segment
// s.seq, and returns its key and content.
func (s *source) snapshot() (string, []byte) {
	s.t.Helper()
	cp := s.files()
	pos := walPosition(s.t, cp+"-wal")
	content := checkpointed(s.t, cp)
	s.clock = s.clock.Add(time.Second)
	key := walsync.SnapshotKey(s.name, s.clock)
	s.put(key, walsync.ObjectHeader{
		Kind: walsync.KindByteSnapshot, Generation: s.gen, PageSize: s.pageSize,
		PageCount: uint32(len(content) / int(s.pageSize)),
		WALSalt1:  pos.Salt1, WALSalt2: pos.Salt2, WALCheckpointSeq: pos.CkptSeq, WALFrame: pos.Frame,
		WALChecksum1: pos.Cksum1, WALChecksum2: pos.Cksum2, WALBigEndian: pos.BigEndian,
		Seq: s.seq, Created: s.clock,
	}, content)
	pos.key = key
	s.pos = pos
	s.snapKey, s.snapSeq = key, s.seq
	return key, content
}

// part is what a segment holds from one WAL: the committed frames since
// the last shipped position.
type part struct {
	start   walsync.ObjectHeader // the WAL fields of the first frame's position
	wh      wal.Header
	content []byte
	frames  uint32
	commit  uint32
	end     walPos
}

// part reads the frames committed since the last shipped position, which
// then moves past them.
func (s *source) part() part {
	s.t.Helper()
	b, err := os.ReadFile(s.path + "-wal")
	if err != nil {
		s.t.Fatal(err)
	}
	r := bytes.NewReader(b)
	wh, err := wal.ReadHeader(r)
	if err != nil {
		s.t.Fatal(err)
	}
	var sc *wal.Scanner
	if wh.Salt1 == s.pos.Salt1 && wh.Salt2 == s.pos.Salt2 && s.pos.Frame > 0 {
		sc, err = wal.NewScannerAt(r, wh, s.pos.Frame, s.pos.Cksum1, s.pos.Cksum2)
	} else {
		sc, err = wal.NewScanner(r) // a new WAL since the last position
	}
	if err != nil {
		s.t.Fatal(err)
	}
	first, _, _ := sc.Frame()
	first++
	c1, c2 := sc.Checksum()
	p := part{wh: wh, start: walsync.ObjectHeader{WALSalt1: wh.Salt1, WALSalt2: wh.Salt2, WALCheckpointSeq: wh.CheckpointSeq,
		WALBigEndian: wh.BigEndianChecksum(), WALFrame: first, WALChecksum1: c1, WALChecksum2: c2}}
	var pending []byte
	var pendingFrames uint32
	for sc.Next() {
		idx, fh, _ := sc.Frame()
		pending = append(pending, sc.FrameBytes()...)
		pendingFrames++
		if fh.IsCommit() {
			p.content = append(p.content, pending...)
			p.frames += pendingFrames
			pending, pendingFrames = pending[:0], 0
			p.commit = fh.Commit
			e1, e2 := sc.Checksum()
			p.end = walPos{WALPosition: walsync.WALPosition{Salt1: wh.Salt1, Salt2: wh.Salt2, CkptSeq: wh.CheckpointSeq,
				Frame: idx, Cksum1: e1, Cksum2: e2, BigEndian: wh.BigEndianChecksum()}}
		}
	}
	if p.frames == 0 {
		s.t.Fatal("segment: no committed frames since the last position")
	}
	s.pos = p.end
	return p
}

// hold reads the frames committed since the last shipped position into
// the next segment without shipping it: the next segment() call ships
// them with its own frames, across a WAL restart in between (a restart
// record, as the VFS's open segments span restarts).
func (s *source) hold() {
	s.t.Helper()
	s.held = append(s.held, s.part())
}

// segment ships the frames committed since the last shipped position (and
// those held before) as segment s.seq and returns its key. edit, when
// given, changes the header or the content before the object is written
// (with a valid sha256); the key keeps the number s.seq.
func (s *source) segment(edit ...func(h *walsync.ObjectHeader, content []byte)) string {
	s.t.Helper()
	parts := append(s.held, s.part())
	s.held = nil
	h := parts[0].start
	var content []byte
	for i, p := range parts {
		// A part of another WAL than the one before comes after a
		// restart record; one of the same WAL follows on.
		if i > 0 && (p.wh.Salt1 != parts[i-1].wh.Salt1 || p.wh.Salt2 != parts[i-1].wh.Salt2) {
			content = walsync.AppendRestartRecord(content, p.wh, s.pageSize)
			h.FrameCount++
			h.Restarts = true
			s.restarts++
		}
		content = append(content, p.content...)
		h.FrameCount += p.frames
	}
	last := parts[len(parts)-1]
	h.Kind, h.Generation, h.PageSize, h.PageCount, h.Seq = walsync.KindByteSegment, s.gen, s.pageSize, last.commit, s.seq
	// Odd numbers as walsync writes segments now, even ones as before
	// December 2026 (with a content SHA-256): every chain mixes both.
	h.Unhashed = s.seq%2 == 1
	for _, e := range edit {
		e(&h, content)
	}
	s.clock = s.clock.Add(time.Millisecond)
	h.Created = s.clock
	key := walsync.SegmentKey(s.name, s.seq, s.clock)
	s.put(key, h, content)
	s.pos.key = key
	s.seq++
	s.keys = append(s.keys, key)
	return key
}

// put writes an object with the given header and content and stores it
// with the sha256 of its bytes.
func (s *source) put(key string, h walsync.ObjectHeader, content []byte) {
	s.t.Helper()
	putObject(s.t, s.st, key, h, content)
}

func putObject(t *testing.T, st walsync.Storage, key string, h walsync.ObjectHeader, content []byte) {
	t.Helper()
	var buf bytes.Buffer
	ow, err := walsync.NewObjectWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ow.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := ow.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if err := st.Put(context.Background(), key, bytes.NewReader(buf.Bytes()), int64(buf.Len()), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
}

// storedPath is where the file backend keeps key.
func (s *source) storedPath(key string) string {
	return filepath.Join(s.st.Root(), filepath.FromSlash(key))
}

// restoreTo restores s.name into a fresh directory and returns the output
// path (which a failed restore must leave absent).
func (s *source) restoreTo() (string, *Result, error) {
	s.t.Helper()
	out := filepath.Join(s.t.TempDir(), "out.db")
	r := &Restorer{Storage: s.st}
	res, err := r.Restore(context.Background(), s.name, out, Options{})
	return out, res, err
}

// sameBytes fails t with the first differing page when got != want.
func sameBytes(t *testing.T, got, want []byte, pageSize uint32) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	ps := int(pageSize)
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			t.Fatalf("restored database differs from the source at byte %d (page %d): got=%d bytes, want %d bytes", i, i/ps+1, len(got), len(want))
		}
	}
	t.Fatalf("restored database size: got=%d bytes (%d pages), want %d bytes (%d pages)", len(got), len(got)/ps, len(want), len(want)/ps)
}

// integrityOK opens path read-only (immutable: no -wal or -shm appears)
// and runs PRAGMA integrity_check.
func integrityOK(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatal(err)
	}
	if res != "ok" {
		t.Fatalf("integrity_check: got=%q, want %q", res, "ok")
	}
}

// assertNothingAt checks that a failed restore left no output and no
// temporary file in the output's directory.
func assertNothingAt(t *testing.T, out string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		t.Fatalf("files left beside the output: got=%v, want none", names)
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
