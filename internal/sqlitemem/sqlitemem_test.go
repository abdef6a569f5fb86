package sqlitemem

import (
	"database/sql"
	"path/filepath"
	"testing"
)

// A pinned connection (read transaction open) after Configure costs a
// fraction of SQLite's default. The bound is on SQLite's own heap counter,
// which is deterministic, not on timing.
func TestConfigureShrinksConnections(t *testing.T) {
	if err := Configure(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.db")
	setup, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec("PRAGMA journal_mode=wal; CREATE TABLE t(a, b); CREATE INDEX i ON t(a); INSERT INTO t VALUES (1, 2)"); err != nil {
		t.Fatal(err)
	}
	before := MemoryUsed()
	const n = 20
	var conns []*sql.Conn
	db, _ := sql.Open("sqlite3", "file:"+path)
	defer db.Close()
	for i := 0; i < n; i++ {
		c, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(t.Context(), "BEGIN"); err != nil {
			t.Fatal(err)
		}
		var x int
		if err := c.QueryRowContext(t.Context(), "SELECT count(*) FROM t").Scan(&x); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	per := (MemoryUsed() - before) / n
	t.Logf("SQLite heap per pinned connection: %d bytes", per)
	if per > 64<<10 {
		t.Fatalf("SQLite heap per pinned connection: got=%d bytes, want <= 64 KiB (default SQLite: ~150 KiB)", per)
	}
	for _, c := range conns {
		c.Close()
	}
	setup.Close()
}
