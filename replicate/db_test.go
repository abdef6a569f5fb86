package replicate

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/walsync/walsync/file"
	"github.com/walsync/walsync/restore"
)

// newTestDB opens a follower for the database at src, as Watcher.Run does,
// without the event loop: the test calls sync itself.
func newTestDB(t *testing.T, w *Watcher, src string) *DB {
	t.Helper()
	if w.snapshotSem == nil {
		w.snapshotSem = make(chan struct{}, 1)
		w.uploadQ = make(chan *DB, 16)
		w.syncQ = make(chan *DB, 16)
	}
	w.dbs, w.byFile = nil, nil
	if err := w.Add(src, "app"); err != nil {
		t.Fatal(err)
	}
	d := w.dbs[0]
	w.upMu = map[*DB]*sync.Mutex{d: {}}
	if err := d.open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

// After a crash between writing a segment into the spool and recording it
// in state.json, the next start reads the segment back, continues the
// same generation after it, and the restore is exact.
func TestSpoolRecoversSegmentAheadOfState(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	app := openApp(t, src)
	mustExec(t, app, "PRAGMA journal_mode=wal")
	mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
	mustExec(t, app, "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Storage: st}
	ctx := context.Background()

	d := newTestDB(t, w, src)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))")
	if err := d.sync(ctx); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(spoolDir(src), stateFileName)
	before, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))")
	if err := d.sync(ctx); err != nil {
		t.Fatal(err)
	}
	gen := d.gen
	d.close()
	// The crash: state.json as it was before the last segment.
	if err := os.WriteFile(statePath, before, 0o600); err != nil {
		t.Fatal(err)
	}

	d = newTestDB(t, w, src)
	if d.gen != gen {
		t.Fatalf("generation after recovery: got=%s, want %s (the same)", d.gen, gen)
	}
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))")
	if err := d.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.uploadAll(ctx, d); err != nil {
		t.Fatal(err)
	}
	want := checkpointedCopy(t, src)
	out := filepath.Join(t.TempDir(), "out.db")
	res, err := (&restore.Restorer{Storage: st}).Restore(ctx, "app", out, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if string(got) != string(want) {
		t.Fatalf("restore after spool recovery differs: got=%d bytes, want %d (segments %d)", len(got), len(want), res.Segments)
	}
	if res.Segments != 3 {
		t.Fatalf("segments applied: got=%d, want 3", res.Segments)
	}
}

// walsync was down while the application committed and then checkpointed
// everything: the frames are still in the WAL, but the next write will
// restart it. Opening must capture them before any writer can commit
// again (its pin has read mark 0, which does not stop a restart).
func TestOpenCapturesCheckpointedFramesBeforeWritersResume(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	app := openApp(t, src)
	mustExec(t, app, "PRAGMA journal_mode=wal")
	mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
	mustExec(t, app, "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Storage: st}
	ctx := context.Background()
	d := newTestDB(t, w, src)
	gen := d.gen
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))")
	if err := d.sync(ctx); err != nil {
		t.Fatal(err)
	}
	d.close()

	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))")
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))")
	mustExec(t, app, "PRAGMA wal_checkpoint(PASSIVE)")

	d = newTestDB(t, w, src)
	h, err := d.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	if h.NBackfill != h.MaxFrame {
		t.Fatalf("setup: want a fully checkpointed WAL, got backfill %d of %d", h.NBackfill, h.MaxFrame)
	}
	if d.gen != gen || d.st.Pos.Frame != h.MaxFrame {
		t.Fatalf("after open: generation %s (want %s), position frame %d (want %d, everything captured)", d.gen, gen, d.st.Pos.Frame, h.MaxFrame)
	}
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(5000))") // restarts the WAL
	if err := d.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d.gen != gen {
		t.Fatalf("a WAL restart after everything was captured started a new generation")
	}
	if err := w.uploadAll(ctx, d); err != nil {
		t.Fatal(err)
	}
	want := checkpointedCopy(t, src)
	out := filepath.Join(t.TempDir(), "out.db")
	if _, err := (&restore.Restorer{Storage: st}).Restore(ctx, "app", out, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != string(want) {
		t.Fatalf("restore differs: got=%d bytes, want %d", len(got), len(want))
	}
}
