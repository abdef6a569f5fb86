package replicate

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/file"
	"github.com/walsync/walsync/restore"
)

func openApp(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// newSource creates app.db in WAL mode with a table t (id, b BLOB), opened
// by the application, and an empty file bucket.
func newSource(t testing.TB) (string, *sql.DB, *file.Client) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "app.db")
	app := openApp(t, src)
	mustExec(t, app, "PRAGMA journal_mode=wal")
	mustExec(t, app, "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return src, app, st
}

// restoreMatches restores "app" from st and fails the test unless the
// result is the source after wal_checkpoint(TRUNCATE), byte for byte.
func restoreMatches(t *testing.T, st walsync.Storage, src string) *restore.Result {
	t.Helper()
	want := checkpointedCopy(t, src)
	out := filepath.Join(t.TempDir(), "out.db")
	res, err := (&restore.Restorer{Storage: st}).Restore(context.Background(), "app", out, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != string(want) {
		t.Fatalf("restore differs: got=%d bytes, want %d (segments %d)", len(got), len(want), res.Segments)
	}
	return res
}

// checkpointedCopy copies the database and its WAL (not the wal-index) and
// returns the copy's bytes after wal_checkpoint(TRUNCATE): the committed
// state at this instant, computed by SQLite, independently of walsync.
func checkpointedCopy(t *testing.T, src string) []byte {
	t.Helper()
	dir := t.TempDir()
	dst := filepath.Join(dir, "copy.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(src + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err == nil {
			if err := os.WriteFile(dst+suffix, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	db := openApp(t, dst)
	mustExec(t, db, "PRAGMA wal_checkpoint(TRUNCATE)")
	db.Close()
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readSnapshot(t *testing.T, st walsync.Storage, key string) []byte {
	t.Helper()
	body, info, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	or, err := walsync.NewObjectReader(body, info.Size)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(or)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Between pinning the WAL position and reading the pages, the application
// keeps going: checkpoints, WAL restarts, truncation. The snapshot must
// still be exactly the state at the pinned commit.
func TestSnapshotWhileWALChanges(t *testing.T) {
	for _, tc := range []struct {
		name string
		// checkpointFirst: everything is checkpointed before the snapshot,
		// so its read transaction reads the database file only and the
		// WAL may be restarted under the frames it indexed.
		checkpointFirst bool
		during          []string
		wantRestarted   bool
	}{
		{"writes and passive checkpoint while reading from the WAL", false,
			[]string{"INSERT INTO t SELECT NULL, randomblob(3000) FROM t LIMIT 200", "PRAGMA wal_checkpoint(PASSIVE)",
				"UPDATE t SET b = randomblob(3000) WHERE id % 3 = 0"}, false},
		{"WAL restarted by a writer", true,
			[]string{"UPDATE t SET b = randomblob(3000) WHERE id % 2 = 0"}, true},
		{"WAL truncated by a checkpoint", true,
			[]string{"PRAGMA wal_checkpoint(TRUNCATE)", "UPDATE t SET b = randomblob(3000) WHERE id < 5"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "app.db")
			app := openApp(t, src)
			mustExec(t, app, "PRAGMA journal_mode=wal")
			mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
			mustExec(t, app, "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
			mustExec(t, app, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 300) INSERT INTO t SELECT x, randomblob(3000) FROM c")
			mustExec(t, app, "UPDATE t SET b = randomblob(2000) WHERE id % 5 = 0")
			if tc.checkpointFirst {
				mustExec(t, app, "PRAGMA wal_checkpoint(PASSIVE)")
			}

			st, err := file.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			s := &Snapshotter{Storage: st, testHookPinned: func() {
				want = checkpointedCopy(t, src)
				for _, q := range tc.during {
					mustExec(t, app, q)
				}
			}}
			info, err := s.Snapshot(context.Background(), src, "app")
			if err != nil {
				t.Fatal(err)
			}
			if got := info.restartedReads > 0; got != tc.wantRestarted {
				t.Fatalf("pages read from the database file after a WAL restart: got=%d, want restarted=%v (scenario not exercised)", info.restartedReads, tc.wantRestarted)
			}
			got := readSnapshot(t, st, info.Key)
			if !bytes.Equal(got, want) {
				t.Fatalf("snapshot differs from the pinned state: got=%d bytes, want %d", len(got), len(want))
			}
		})
	}
}
