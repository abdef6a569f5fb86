package replicate

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/file"
	"github.com/walsync/walsync/restore"
)

// startDynamic runs a Dynamic watcher with no database over st until the
// test ends.
func startDynamic(t *testing.T, st walsync.Storage) *Watcher {
	t.Helper()
	ready := make(chan struct{})
	w := &Watcher{Storage: st, Dynamic: true, SyncInterval: 50 * time.Millisecond, OnReady: func() { close(ready) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

// restoreName restores name from st and fails t unless it is the database
// at src after wal_checkpoint(TRUNCATE), byte for byte.
func restoreName(t *testing.T, st walsync.Storage, name, src string) {
	t.Helper()
	want := checkpointedCopy(t, src)
	out := filepath.Join(t.TempDir(), "out.db")
	if _, err := (&restore.Restorer{Storage: st}).Restore(context.Background(), name, out, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != string(want) {
		t.Fatalf("restore of %s differs: got=%d bytes, want %d", name, len(got), len(want))
	}
}

// Databases come and go while the watcher runs: each one followed is
// replicated, one released is shipped to its last commit and given up
// (its owner lock free, its spool empty) while the others go on, and a
// path can be followed again after. A database that cannot be followed
// (not SQLite) is an error for its caller only.
func TestFollowAndRelease(t *testing.T) {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := startDynamic(t, st)
	ctx := context.Background()
	dir := t.TempDir()
	apps := map[string]*sql.DB{}
	for i := range 3 {
		src := filepath.Join(dir, fmt.Sprintf("db%d.db", i))
		app := openApp(t, src)
		mustExec(t, app, "PRAGMA journal_mode=wal")
		mustExec(t, app, "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
		apps[src] = app
		if err := w.Follow(ctx, src, fmt.Sprintf("db%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(w.all()); got != 3 {
		t.Fatalf("databases followed: %d, want 3", got)
	}
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, []byte("not a database at all, but long enough to have a header of 100 bytes: "+string(make([]byte, 100))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Follow(ctx, bad, "bad"); err == nil {
		t.Fatal("Follow of a file that is not SQLite: got nil, want an error")
	}
	if got := len(w.all()); got != 3 {
		t.Fatalf("databases followed after a failed Follow: %d, want 3", got)
	}
	if err := w.Follow(ctx, filepath.Join(dir, "db0.db"), "again"); err == nil {
		t.Fatal("Follow of a database followed already: got nil, want an error")
	}

	for src, app := range apps {
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))")
		if err := w.Durable(ctx, src); err != nil {
			t.Fatal(err)
		}
	}
	gone := filepath.Join(dir, "db1.db")
	mustExec(t, apps[gone], "INSERT INTO t (b) VALUES (randomblob(7000))") // shipped by Release
	gen := w.byPath(gone).gen
	if err := w.Release(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if OwnedElsewhere(gone) {
		t.Fatal("the owner lock of a released database is still held")
	}
	if p, err := SpoolPending(gone); err != nil || p.Objects != 0 {
		t.Fatalf("spool of a released database: %+v, %v; want empty", p, err)
	}
	restoreName(t, st, "db1", gone)
	if err := w.Durable(ctx, gone); err == nil {
		t.Fatal("Durable of a released database: got nil, want an error")
	}
	for src, app := range apps {
		if src == gone {
			continue
		}
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))")
		if err := w.Durable(ctx, src); err != nil {
			t.Fatal(err)
		}
		restoreName(t, st, "db"+src[len(src)-4:len(src)-3], src)
	}
	// Followed again: the same generation goes on.
	mustExec(t, apps[gone], "INSERT INTO t (b) VALUES (randomblob(3000))")
	if err := w.Follow(ctx, gone, "db1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Durable(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if g := w.byPath(gone).gen; g != gen {
		t.Fatalf("generation after following again: %s, want %s (the same)", g, gen)
	}
	restoreName(t, st, "db1", gone)
}

// KeepSpare keeps the second connection between pin moves, but not for
// a database that went quiet: after spareIdle it is closed (145 KB of
// SQLite heap each), and the next move opens one again.
func TestIdleSpareClosed(t *testing.T) {
	src, app, st := newSource(t)
	w := &Watcher{Storage: st, KeepSpare: true}
	d := newTestDB(t, w, src)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	cycle := func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.cycle(); err != nil {
			t.Fatal(err)
		}
	}
	cycle()
	spare := func() *pinConn {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.pins[1-d.cur]
	}
	if spare() == nil {
		t.Fatal("KeepSpare: no spare connection after a pin move")
	}
	d.dropIdleSpare()
	if spare() == nil {
		t.Fatal("a spare used just now was closed")
	}
	d.mu.Lock()
	d.spareUsed = d.now().Add(-spareIdle)
	d.mu.Unlock()
	d.dropIdleSpare()
	if spare() != nil {
		t.Fatal("a spare idle for spareIdle is still open")
	}
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	cycle()
	if err := w.uploadAll(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	restoreMatches(t, st, src)
}
