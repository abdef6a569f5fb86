package wal_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/wal"
)

// openSQLite opens path with a single connection, skipping the test if the
// driver was built without cgo.
func openSQLite(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		if strings.Contains(err.Error(), "cgo") {
			t.Skipf("go-sqlite3 unavailable: %v", err)
		}
		t.Fatalf("open %s: %v", path, err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// sqliteView is what SQLite itself makes of a database file plus WAL.
type sqliteView struct {
	maxFrame  uint32 // frames in the WAL after recovery (mxFrame)
	pageCount uint32
	image     []byte // database file after a full checkpoint
}

// askSQLite copies db and w into a fresh directory, lets SQLite recover the
// WAL and checkpoint it completely, and reports the result.
func askSQLite(t testing.TB, db, w []byte) sqliteView {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.db")
	if err := os.WriteFile(path, db, 0o644); err != nil {
		t.Fatal(err)
	}
	if w != nil {
		if err := os.WriteFile(path+"-wal", w, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conn := openSQLite(t, path)
	var v sqliteView
	var busy, log, done int64
	if err := conn.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err != nil {
		t.Fatalf("wal_checkpoint: %v", err)
	}
	if busy != 0 || (log != done && log != -1) {
		t.Fatalf("wal_checkpoint: got busy=%d log=%d checkpointed=%d, want a complete checkpoint", busy, log, done)
	}
	if log > 0 {
		v.maxFrame = uint32(log)
	}
	if err := conn.QueryRow("PRAGMA page_count").Scan(&v.pageCount); err != nil {
		t.Fatalf("page_count: %v", err)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v.image = img
	return v
}

// checkAgainstSQLite compares ReadIndex on (db, w) with SQLite's own view.
func checkAgainstSQLite(t testing.TB, db, w []byte) *wal.Index {
	t.Helper()
	want := askSQLite(t, db, w)
	idx, err := wal.ReadIndex(bytes.NewReader(w))
	switch {
	case errors.Is(err, wal.ErrNoHeader):
		idx = nil
	case err != nil:
		t.Fatalf("ReadIndex: got=%v, want nil", err)
	}
	var maxFrame, dbSize uint32
	if idx != nil {
		maxFrame, dbSize = idx.MaxFrame, idx.DBSize
	}
	if maxFrame != want.maxFrame {
		t.Errorf("MaxFrame: got=%v, want %v (SQLite)", maxFrame, want.maxFrame)
	}
	if maxFrame > 0 && dbSize != want.pageCount {
		t.Errorf("DBSize: got=%v, want %v (SQLite page_count)", dbSize, want.pageCount)
	}
	if idx != nil {
		for pgno, i := range idx.Pages {
			if pgno == 0 || pgno > idx.DBSize || i == 0 || i > idx.MaxFrame {
				t.Errorf("Pages[%d]: got=%v, want a frame in 1..%d for a page in 1..%d", pgno, i, idx.MaxFrame, idx.DBSize)
			}
		}
	}
	if got := snapshot(t, idx, db, w); !bytes.Equal(got, want.image) {
		t.Errorf("snapshot: got=%d bytes (first difference at %d), want SQLite's checkpointed %d bytes",
			len(got), firstDiff(got, want.image), len(want.image))
	}
	return idx
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestFixturesAgainstSQLite(t *testing.T) {
	for _, tt := range fixtureCases {
		if !tt.hasDB {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			checkAgainstSQLite(t, readFixture(t, tt.name, "db"), readFixture(t, tt.name, "wal"))
		})
	}
}

// liveDB is a database in WAL mode written through one connection that
// stays open, so its WAL is never checkpointed away behind the test's back.
type liveDB struct {
	t    *testing.T
	path string
	conn *sql.Conn
}

func newLiveDB(t *testing.T, pageSize int) *liveDB {
	path := filepath.Join(t.TempDir(), "live.db")
	db := openSQLite(t, path)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	l := &liveDB{t: t, path: path, conn: conn}
	l.exec(fmt.Sprintf("PRAGMA page_size=%d", pageSize))
	l.exec("PRAGMA journal_mode=WAL")
	l.exec("PRAGMA wal_autocheckpoint=0")
	l.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	return l
}

func (l *liveDB) exec(q string) {
	l.t.Helper()
	if _, err := l.conn.ExecContext(context.Background(), q); err != nil {
		l.t.Fatalf("%s: %v", q, err)
	}
}

// insert adds n rows of size bytes in one statement.
func (l *liveDB) insert(n, size int) {
	l.t.Helper()
	l.exec(fmt.Sprintf("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<%d) "+
		"INSERT INTO t(v) SELECT randomblob(%d) FROM c", n, size))
}

func (l *liveDB) pageCount() uint32 {
	l.t.Helper()
	var n uint32
	if err := l.conn.QueryRowContext(context.Background(), "PRAGMA page_count").Scan(&n); err != nil {
		l.t.Fatal(err)
	}
	return n
}

// copyFiles copies the database file and its WAL (nil if absent) while the
// connection is open.
func (l *liveDB) copyFiles() (db, w []byte) {
	l.t.Helper()
	db, err := os.ReadFile(l.path)
	if err != nil {
		l.t.Fatal(err)
	}
	w, err = os.ReadFile(l.path + "-wal")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		l.t.Fatal(err)
	}
	return db, w
}

func countFrames(t testing.TB, w []byte) int {
	t.Helper()
	s, err := wal.NewScanner(bytes.NewReader(w))
	if err != nil {
		t.Fatalf("NewScanner: got=%v, want nil", err)
	}
	return len(scanAll(t, s))
}

// TestLiveSQLite writes databases with SQLite, copies the WAL while the
// writer is still connected, and checks ReadIndex against the writer's
// page_count and against SQLite's own recovery and checkpoint of the copy.
func TestLiveSQLite(t *testing.T) {
	type scenario struct {
		name string
		// run writes to l and returns the copied files and the page count
		// of the last committed transaction as the writer saw it.
		run func(l *liveDB, pageSize int) (db, w []byte, committed uint32)
		// check makes sure the scenario produced what it is named after.
		check func(t *testing.T, idx *wal.Index, w []byte)
	}
	scenarios := []scenario{
		{
			name: "commits",
			run: func(l *liveDB, ps int) ([]byte, []byte, uint32) {
				for i := 1; i <= 12; i++ {
					l.insert(i, ps/3)
				}
				l.exec("UPDATE t SET v=randomblob(10) WHERE id%3=0")
				l.exec("DELETE FROM t WHERE id%5=0")
				n := l.pageCount()
				db, w := l.copyFiles()
				return db, w, n
			},
			check: func(t *testing.T, idx *wal.Index, w []byte) {
				if idx.MaxFrame < 14 {
					t.Errorf("MaxFrame: got=%v, want >= 14", idx.MaxFrame)
				}
			},
		},
		{
			name: "uncommitted tail",
			run: func(l *liveDB, ps int) ([]byte, []byte, uint32) {
				l.insert(3, ps/2)
				l.exec("PRAGMA cache_size=10")
				n := l.pageCount()
				l.exec("BEGIN")
				l.insert(40, ps/2) // more pages than the cache holds: spills to the WAL
				db, w := l.copyFiles()
				l.exec("ROLLBACK")
				return db, w, n
			},
			check: func(t *testing.T, idx *wal.Index, w []byte) {
				if got := countFrames(t, w); got <= int(idx.MaxFrame) {
					t.Errorf("valid frames: got=%v, want more than MaxFrame=%v (spilled, uncommitted)", got, idx.MaxFrame)
				}
			},
		},
		{
			name: "restarted with stale tail",
			run: func(l *liveDB, ps int) ([]byte, []byte, uint32) {
				l.insert(30, ps/2)
				l.exec("PRAGMA wal_checkpoint")
				l.insert(1, 10)
				n := l.pageCount()
				db, w := l.copyFiles()
				return db, w, n
			},
			check: func(t *testing.T, idx *wal.Index, w []byte) {
				if idx.Header.CheckpointSeq != 1 {
					t.Errorf("CheckpointSeq: got=%v, want 1", idx.Header.CheckpointSeq)
				}
				if end := wal.FrameOffset(idx.Header.PageSize, idx.MaxFrame+1); int64(len(w)) <= end {
					t.Errorf("WAL size: got=%v, want stale frames after offset %v", len(w), end)
				}
			},
		},
		{
			name: "vacuum shrinks database",
			run: func(l *liveDB, ps int) ([]byte, []byte, uint32) {
				l.insert(40, ps/2)
				l.exec("DELETE FROM t WHERE id>5")
				l.exec("VACUUM")
				n := l.pageCount()
				db, w := l.copyFiles()
				return db, w, n
			},
			check: func(t *testing.T, idx *wal.Index, w []byte) {
				s, _ := wal.NewScanner(bytes.NewReader(w))
				var maxPgno uint32
				for s.Next() {
					if _, fh, _ := s.Frame(); fh.Pgno > maxPgno {
						maxPgno = fh.Pgno
					}
				}
				if maxPgno <= idx.DBSize {
					t.Errorf("largest page in WAL: got=%v, want > DBSize=%v (pages dropped by the truncation)", maxPgno, idx.DBSize)
				}
			},
		},
		{
			name: "checkpointed and truncated",
			run: func(l *liveDB, ps int) ([]byte, []byte, uint32) {
				l.insert(5, ps/2)
				l.exec("PRAGMA wal_checkpoint(TRUNCATE)")
				db, w := l.copyFiles()
				return db, w, 0
			},
		},
	}
	for _, ps := range []int{512, 1024, 4096, 65536} {
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("%s/%d", sc.name, ps), func(t *testing.T) {
				l := newLiveDB(t, ps)
				db, w, committed := sc.run(l, ps)
				idx := checkAgainstSQLite(t, db, w)
				if idx == nil {
					if committed != 0 {
						t.Fatalf("ReadIndex: got=ErrNoHeader, want a WAL with %d pages committed", committed)
					}
					return
				}
				if idx.Header.PageSize != uint32(ps) {
					t.Errorf("PageSize: got=%v, want %v", idx.Header.PageSize, ps)
				}
				if idx.DBSize != committed {
					t.Errorf("DBSize: got=%v, want %v (writer's page_count)", idx.DBSize, committed)
				}
				if sc.check != nil {
					sc.check(t, idx, w)
				}
			})
		}
	}
}
