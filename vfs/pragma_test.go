package vfs_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/sqltest"
	"github.com/walsync/walsync/vfs"
)

func journalMode(t *testing.T, src string) string {
	t.Helper()
	plain, err := sql.Open("sqlite3", "file:"+src)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	var mode string
	if err := plain.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	return mode
}

// A database in rollback-journal mode opened through the VFS is switched
// to WAL mode at the open and replicated: never silently left out.
func TestRollbackDatabaseSwitchedAtOpen(t *testing.T) {
	b := fileBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	plain, err := sql.Open("sqlite3", "file:"+src)
	if err != nil {
		t.Fatal(err)
	}
	exec1(t, plain, "PRAGMA journal_mode=DELETE")
	sqltest.Schema(t, plain)
	insertBatches(t, plain, 0, 100, 10)
	plain.Close()

	db := openVFS(t, b, src)
	db.SetMaxOpenConns(1)
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode after an open through the VFS: %q (%v), want wal", mode, err)
	}
	insertBatches(t, db, 10, 50, 10)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	want := checkpointedBytes(t, src)
	got, n := restoreBytes(t, b, "app")
	mustEqual(t, got, want)
	if n != 150 {
		t.Fatalf("restored rows: %d, want 150", n)
	}
}

// A new database created through the VFS without PRAGMA journal_mode=WAL:
// its first transaction runs in rollback mode with the application's page
// size, then walsync switches it to WAL and replicates everything.
func TestNewDatabaseSwitchedAfterFirstWrite(t *testing.T) {
	b := fileBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	db := openVFS(t, b, src)
	db.SetMaxOpenConns(1)
	exec1(t, db, "PRAGMA page_size=8192")
	sqltest.Schema(t, db) // three transactions, the first in rollback mode
	insertBatches(t, db, 0, 60, 10)
	var mode string
	var pageSize int
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode after the first write: %q (%v), want wal", mode, err)
	}
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil || pageSize != 8192 {
		t.Fatalf("page size: %d (%v), want the application's 8192", pageSize, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	want := checkpointedBytes(t, src)
	got, n := restoreBytes(t, b, "app")
	mustEqual(t, got, want)
	if n != 60 {
		t.Fatalf("restored rows: %d, want 60", n)
	}
}

// Leaving WAL mode through the VFS is refused with a message that says
// why; the database stays in WAL mode and replicated.
func TestJournalModeChangeRefused(t *testing.T) {
	b := fileBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	prepare(t, src)
	db := openVFS(t, b, src)
	db.SetMaxOpenConns(1)
	for _, m := range []string{"DELETE", "truncate", "MEMORY", "off"} {
		_, err := db.Exec("PRAGMA journal_mode=" + m)
		if err == nil || !strings.Contains(err.Error(), "journal_mode="+m) || !strings.Contains(err.Error(), "stays in WAL mode") {
			t.Fatalf("PRAGMA journal_mode=%s: got=%v, want a refusal naming it", m, err)
		}
	}
	exec1(t, db, "PRAGMA journal_mode=WAL")
	if mode := journalMode(t, src); mode != "wal" {
		t.Fatalf("journal mode: %s, want wal", mode)
	}
}

// PRAGMA walsync_status and walsync_flush (and vfs.ReadStatus, vfs.Flush):
// after a flush, an async commit is in a restore and nothing is pending.
func TestStatusAndFlush(t *testing.T) {
	eachBucket(t, func(t *testing.T, b bucket) {
		src := filepath.Join(t.TempDir(), "app.db")
		prepare(t, src)
		// A long sync interval: without the flush the commit would wait.
		vfs.Register(vfs.Options{SyncInterval: time.Hour})
		t.Cleanup(func() { vfs.Register(vfs.Options{}) })
		db := openVFS(t, b, src)
		db.SetMaxOpenConns(1)
		ctx := context.Background()
		insertBatches(t, db, 0, 10, 10)
		ctxT, cancel := context.WithTimeout(ctx, 20*time.Second)
		st, err := vfs.Flush(ctxT, db)
		cancel()
		if err != nil {
			t.Fatalf("flush: %v", err)
		}
		if !st.Replicating || !st.WAL || st.PendingObjects != 0 || st.LagSeconds != 0 || st.LastDurable == nil || st.WALFrame == 0 {
			t.Fatalf("status after a flush: %+v", st)
		}
		if _, n := restoreBytes(t, b, "app"); n != 10 {
			t.Fatalf("restore after the flush: %d rows, want 10", n)
		}
		insertBatches(t, db, 1, 10, 10)
		var text string
		if err := db.QueryRow("PRAGMA walsync_status").Scan(&text); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, `"name":"app"`) || !strings.Contains(text, `"pending_objects"`) {
			t.Fatalf("PRAGMA walsync_status: %s", text)
		}
		if err := db.QueryRow("PRAGMA walsync_flush='10s'").Scan(&text); err != nil {
			t.Fatalf("PRAGMA walsync_flush: %v", err)
		}
		if _, n := restoreBytes(t, b, "app"); n != 20 {
			t.Fatalf("restore after PRAGMA walsync_flush: %d rows, want 20", n)
		}
		st, err = vfs.ReadStatus(ctx, db)
		if err != nil || st.Name != "app" {
			t.Fatalf("ReadStatus: %+v, %v", st, err)
		}
		if _, err := db.Exec("PRAGMA walsync_flush='soon'"); err == nil || !strings.Contains(err.Error(), "walsync_flush") {
			t.Fatalf("PRAGMA walsync_flush='soon': got=%v, want an error naming the value", err)
		}
	})
}

// The application's own TRUNCATE, RESTART and FULL checkpoints through the
// VFS, with no busy timeout at all: none returns busy (walsync's pin lets
// go of the WAL while the checkpointer holds the write lock), the WAL is
// emptied each time, and the restore equals the source.
func TestCheckpointWithoutBusyTimeout(t *testing.T) {
	b := fileBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	prepare(t, src)
	db, err := sql.Open("sqlite3", strings.Replace(b.dsn(src), "_busy_timeout=10000", "_busy_timeout=0", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for i := 0; i < 30; i++ {
		insertBatches(t, db, i, 20, 1)
		kind := []string{"TRUNCATE", "RESTART", "FULL"}[i%3]
		var busy, logN, ckptN int
		if err := db.QueryRow("PRAGMA wal_checkpoint("+kind+")").Scan(&busy, &logN, &ckptN); err != nil {
			t.Fatalf("checkpoint %d (%s): %v", i, kind, err)
		}
		if busy != 0 || logN != ckptN {
			t.Fatalf("checkpoint %d (%s) without a busy timeout: busy=%d log=%d checkpointed=%d; want all copied, not busy", i, kind, busy, logN, ckptN)
		}
		if kind == "TRUNCATE" && logN != 0 {
			t.Fatalf("TRUNCATE left %d frames", logN)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	want := checkpointedBytes(t, src)
	got, n := restoreBytes(t, b, "app")
	mustEqual(t, got, want)
	if n != 600 {
		t.Fatalf("restored rows: %d, want 600", n)
	}
}

// Writers on three connections and a checkpointer cycling TRUNCATE,
// RESTART and FULL (its own connection, no busy timeout) through the VFS
// at once: walsync's pin lets go and comes back around every checkpoint
// while commits race it; the restore equals the source, row for row.
func TestCheckpointsRaceWriters(t *testing.T) {
	eachBucket(t, func(t *testing.T, b bucket) {
		src := filepath.Join(t.TempDir(), "app.db")
		prepare(t, src)
		db := openVFS(t, b, src)
		db.SetMaxOpenConns(4)
		ckpt, err := sql.Open("sqlite3", strings.Replace(b.dsn(src), "_busy_timeout=10000", "_busy_timeout=0", 1))
		if err != nil {
			t.Fatal(err)
		}
		defer ckpt.Close()
		ckpt.SetMaxOpenConns(1)
		stop := make(chan struct{})
		done := make(chan error, 3)
		for w := 0; w < 3; w++ {
			go func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					tx, err := db.Begin()
					if err == nil {
						_, err = tx.Exec("INSERT INTO t (batch, v) VALUES (?, ?)", w, strings.Repeat("c", 100))
						if err == nil {
							_, err = tx.Exec("UPDATE counter SET n = n + 1")
						}
						if err == nil {
							err = tx.Commit()
						} else {
							tx.Rollback()
						}
					}
					if err != nil {
						done <- err
						return
					}
				}
			}()
		}
		busy := 0
		for i := 0; i < 150; i++ {
			var bz, l, c int
			if err := ckpt.QueryRow("PRAGMA wal_checkpoint("+[]string{"TRUNCATE", "RESTART", "FULL"}[i%3]+")").Scan(&bz, &l, &c); err != nil {
				t.Fatal(err)
			}
			busy += bz
			time.Sleep(2 * time.Millisecond)
		}
		close(stop)
		for w := 0; w < 3; w++ {
			if err := <-done; err != nil {
				t.Fatalf("writer: %v", err)
			}
		}
		t.Logf("150 checkpoints beside three writers, %d busy (a writer holding the lock, as without walsync)", busy)
		if err := ckpt.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		want := checkpointedBytes(t, src)
		got, _ := restoreBytes(t, b, "app")
		mustEqual(t, got, want)
		if strings.HasPrefix(b.url, "file://") {
			if n := snapshotCount(t, b); n != 1 {
				t.Fatalf("%d snapshots: continuity broke around a checkpoint (want one generation)", n)
			}
		}
	})
}
