// Package sqltest holds what the end-to-end tests (tests/) and the VFS
// tests (vfs/) both do to an SQLite database: write batches that expose a
// torn transaction, write without a pause while watching the WAL's size,
// and check a restored file against the independent truth. Test code only.
package sqltest

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Exec runs q on db and fails the test on an error.
func Exec(t testing.TB, db interface {
	Exec(string, ...any) (sql.Result, error)
}, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// Schema creates table t (id, batch, v) and table counter (n), which
// InsertBatches keeps equal to the row count.
func Schema(t testing.TB, db *sql.DB) {
	t.Helper()
	Exec(t, db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, batch INTEGER, v TEXT)")
	Exec(t, db, "CREATE TABLE IF NOT EXISTS counter (n INTEGER)")
	Exec(t, db, "INSERT INTO counter SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM counter)")
}

// InsertBatches inserts rows rows of ~150 bytes in transactions of per
// rows, keeping counter.n equal to count(*) so that a torn transaction is
// detectable.
func InsertBatches(t testing.TB, db *sql.DB, batch0, rows, per int) {
	t.Helper()
	for done := 0; done < rows; done += per {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		n := min(per, rows-done)
		for i := 0; i < n; i++ {
			if _, err := tx.Exec("INSERT INTO t (batch, v) VALUES (?, ?)", batch0+done/per, strings.Repeat("x", 150)+fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec("UPDATE counter SET n = n + ?", n); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// WriteWithoutPause commits n one-row transactions to table t of db (made
// by Schema; 4096-byte pages) back to back, then sets counter.n to the row
// count. It returns the largest the WAL at walPath was, in frames, looking
// at its size every every commits.
func WriteWithoutPause(t testing.TB, db *sql.DB, walPath string, n, every int) int64 {
	t.Helper()
	var most int64
	for i := 0; i < n; i++ {
		Exec(t, db, "INSERT INTO t (batch, v) VALUES (?, 'x')", i)
		if i%every == 0 {
			if fi, err := os.Stat(walPath); err == nil && fi.Size() > most {
				most = fi.Size()
			}
		}
	}
	Exec(t, db, "UPDATE counter SET n = (SELECT count(*) FROM t)")
	return most / (4096 + 24)
}

// CheckRestored verifies a restored database: integrity_check ok, and the
// counter equal to the row count (no torn transaction). It returns the
// row count.
func CheckRestored(t testing.TB, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ic string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ic); err != nil {
		t.Fatalf("integrity_check %s: %v", path, err)
	}
	if ic != "ok" {
		t.Fatalf("integrity_check %s: got=%q, want ok", path, ic)
	}
	var n, c int
	if err := db.QueryRow("SELECT count(*), (SELECT n FROM counter) FROM t").Scan(&n, &c); err != nil {
		t.Fatal(err)
	}
	if n != c {
		t.Fatalf("restored %s: got=%d rows with counter %d, want them equal (torn transaction)", path, n, c)
	}
	return n
}

// MustEqual fails the test when a restore of what differs from the
// checkpointed source, naming the first differing offset.
func MustEqual(t testing.TB, got []byte, what string, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("restore of %s differs: got=%d bytes, want %d; first difference at offset %d", what, len(got), len(want), i)
	}
}

// Checkpointed returns the bytes of the database at path after PRAGMA
// wal_checkpoint(TRUNCATE) on db: the independent truth a restore must
// equal.
func Checkpointed(t testing.TB, db *sql.DB, path string) []byte {
	t.Helper()
	var busy, logFrames, ckpt int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &ckpt); err != nil {
		t.Fatal(err)
	}
	if busy != 0 {
		t.Fatalf("wal_checkpoint(TRUNCATE) of %s was blocked", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CheckpointedFile is Checkpointed through a connection of its own, with
// SQLite's default VFS.
func CheckpointedFile(t testing.TB, path string) []byte {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return Checkpointed(t, db, path)
}
