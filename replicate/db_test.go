package replicate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync/file"
)

// newTestDB opens a follower for the database at src, as Watcher.Run does,
// without the event loop: the test calls sync itself.
func newTestDB(t testing.TB, w *Watcher, src string) *DB {
	t.Helper()
	w.prepare()
	w.reg.Store(nil)
	if err := w.Add(src, "app"); err != nil {
		t.Fatal(err)
	}
	d := w.all()[0]
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
	if res := restoreMatches(t, st, src); res.Segments != 3 {
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
	uploadAndCompare(t, w, d, src)
}

// Between commits a database holds one SQLite connection, the pin: the
// spare that moves it is closed after each cycle (kept open, idle, with
// Watcher.KeepSpare, as the VFS sets it). Closing it must not drop
// the pin's locks (POSIX locks belong to the process): an application's
// TRUNCATE checkpoint must still find the pin reading and be refused,
// round after round, and the restore is exact.
func TestOneConnectionBetweenCommits(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("KeepSpare=%v", keep), func(t *testing.T) {
			src, app, st := newSource(t)
			w := &Watcher{Storage: st, KeepSpare: keep}
			ctx := context.Background()
			d := newTestDB(t, w, src)
			mustExec(t, app, "PRAGMA busy_timeout=0") // the checkpoint below must not wait for the pin
			for round := 0; round < 5; round++ {
				mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
				mustExec(t, app, "PRAGMA wal_checkpoint(PASSIVE)") // up to the pin: the next sync moves it
				if err := d.sync(ctx); err != nil {
					t.Fatal(err)
				}
				pin, spare := d.pins[d.cur], d.pins[1-d.cur]
				if pin == nil || !pin.open || (spare != nil) != keep || (spare != nil && spare.open) {
					t.Fatalf("round %d: pin open=%v, spare connection %v (in a transaction: %v); want the pin reading and the spare %s",
						round, pin != nil && pin.open, spare != nil, spare != nil && spare.open, map[bool]string{false: "closed", true: "open, idle"}[keep])
				}
				var busy, logFrames, ckpt int
				if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &ckpt); err != nil {
					t.Fatal(err)
				}
				if busy != 1 {
					t.Fatalf("round %d: TRUNCATE checkpoint went through (busy=%d, log=%d): the pin no longer holds its read lock", round, busy, logFrames)
				}
			}
			uploadAndCompare(t, w, d, src)
		})
	}
}

// An application that runs a TRUNCATE checkpoint (with a busy timeout)
// right after a commit, before walsync has captured it, is not refused:
// such a checkpoint waits for the pin before it copies anything, and that
// wait shows nowhere, so sync moves the pin after every capture, and again
// to read mark 0 once everything is checkpointed. The restore is exact.
func TestTruncateRightAfterCommitGoesThrough(t *testing.T) {
	src, app, st := newSource(t)
	w := &Watcher{Storage: st}
	ctx := context.Background()
	d := newTestDB(t, w, src)
	mustExec(t, app, "PRAGMA busy_timeout=3000")
	for round := 0; round < 3; round++ {
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
		type result struct{ busy, log, ckpt int }
		done := make(chan result, 1)
		errc := make(chan error, 1)
		go func() {
			var r result
			if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&r.busy, &r.log, &r.ckpt); err != nil {
				errc <- err
				return
			}
			done <- r
		}()
		for waiting := true; waiting; {
			select {
			case r := <-done:
				if r.busy != 0 {
					t.Fatalf("round %d: TRUNCATE checkpoint refused (busy=%d, log=%d, checkpointed=%d)", round, r.busy, r.log, r.ckpt)
				}
				waiting = false
			case err := <-errc:
				t.Fatal(err)
			case <-time.After(5 * time.Millisecond):
				if err := d.sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := d.sync(ctx); err != nil { // the restart seen while at mark 0
			t.Fatal(err)
		}
	}
	uploadAndCompare(t, w, d, src)
}

// uploadAndCompare uploads what d spooled and checks that a restore of
// "app" is the source after PRAGMA wal_checkpoint(TRUNCATE), byte for byte.
func uploadAndCompare(t *testing.T, w *Watcher, d *DB, src string) {
	t.Helper()
	if err := w.uploadAll(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	restoreMatches(t, w.Storage, src)
}

// syncAfter tells OnQuiet how long a Kick has nothing to add: what is
// left of the sync interval since the last capture, while the timer is
// armed; the firing tells 0 before its sync is queued.
func TestSyncAfterTellsOnQuiet(t *testing.T) {
	src, _, st := newSource(t)
	var mu sync.Mutex
	var told []time.Duration
	last := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		if len(told) == 0 {
			t.Fatal("OnQuiet was never called")
		}
		return told[len(told)-1]
	}
	w := &Watcher{Storage: st, SyncInterval: time.Second, OnQuiet: func(path string, left time.Duration) {
		if path != src {
			t.Errorf("OnQuiet for %s, want %s", path, src)
		}
		mu.Lock()
		told = append(told, left)
		mu.Unlock()
	}}
	d := newTestDB(t, w, src)
	d.setLastCapture(time.Now())
	w.syncAfter(d, 20*time.Millisecond)
	if left := last(); left <= 0 || left > time.Second {
		t.Fatalf("armed within the interval: told %v, want (0, 1s]", left)
	}
	popCtx, cancelPop := context.WithTimeout(context.Background(), 10*time.Second)
	popped := w.syncQ.pop(popCtx)
	cancelPop()
	if popped != d {
		t.Fatal("the timer did not queue a sync")
	}
	if left := last(); left != 0 {
		t.Fatalf("after the timer fired: last told %v, want 0 (a Kick must be made again)", left)
	}
	d.setLastCapture(time.Now().Add(-2 * time.Second))
	w.syncAfter(d, time.Hour)
	if left := last(); left > 0 {
		t.Fatalf("armed after the interval passed: told %v, want <= 0 (Kick syncs at once then)", left)
	}
}

// A sync gives way to a VFS hook that waits for the database's lock
// (CatchUp, on the application's committing thread): its capture stops
// after a commit and it lets go without moving the pin. The next sync
// captures the rest, and the restore is exact.
func TestSyncGivesWayToWaitingHook(t *testing.T) {
	src, app, st := newSource(t)
	w := &Watcher{Storage: st}
	ctx := context.Background()
	d := newTestDB(t, w, src)
	if err := d.sync(ctx); err != nil {
		t.Fatal(err)
	}
	from := d.st.Pos.Frame
	for i := 0; i < 5; i++ {
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	}
	h, err := d.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	cur, pinnedAt := d.cur, d.pinnedAt
	d.setLastCapture(time.Now().Add(-time.Hour)) // a capture is due
	d.pinWanted.Add(1)
	err = d.sync(ctx)
	d.pinWanted.Add(-1)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.st.Pos.Frame; got <= from || got >= h.MaxFrame {
		t.Fatalf("with a hook waiting, sync captured up to frame %d; want a commit after %d and before %d (the WAL's end)", got, from, h.MaxFrame)
	}
	if d.cur != cur || d.pinnedAt != pinnedAt {
		t.Fatalf("with a hook waiting, sync moved the pin (from %d to %d)", pinnedAt, d.pinnedAt)
	}
	if err := d.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := d.st.Pos.Frame; got != h.MaxFrame {
		t.Fatalf("the next sync captured up to frame %d, want %d", got, h.MaxFrame)
	}
	uploadAndCompare(t, w, d, src)
}

// A generation that cannot start (its snapshot fails) does not spin: the
// attempts back off, nothing is captured into the ended generation
// meanwhile, Durable says so, and the next attempt after the failure
// passes starts it.
func TestFailedGenerationBacksOff(t *testing.T) {
	src, app, st := newSource(t)
	w := &Watcher{Storage: st}
	ctx := context.Background()
	d := newTestDB(t, w, src)
	var attempts int
	failing := true
	w.testHookSnapshot = func() error {
		attempts++
		if failing {
			return fmt.Errorf("no space left on device (test)")
		}
		return nil
	}
	start := time.Now()
	for time.Since(start) < time.Second {
		d.mu.Lock()
		if err := d.newGeneration(ctx, "test"); err != nil {
			t.Fatalf("newGeneration returned %v; want nil (logged, retried)", err)
		}
		d.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	if attempts > 3 {
		t.Fatalf("%d snapshot attempts in 1 s: want the backoff (250 ms, 500 ms: at most 3)", attempts)
	}
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	d.mu.Lock()
	n, err := d.captureFrames(true)
	d.mu.Unlock()
	if n != 0 || !errors.Is(err, errDiscontinuity) {
		t.Fatalf("capture while no generation could start: %d frames, %v; want none and a discontinuity", n, err)
	}
	w.ready.Store(true)
	if err := w.Durable(ctx, src); err == nil || !strings.Contains(err.Error(), "no generation") {
		t.Fatalf("Durable while no generation could start: %v; want an error", err)
	}
	failing = false
	time.Sleep(time.Until(d.genRetryAt) + 10*time.Millisecond)
	if err := d.sync(ctx); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	pending := d.genPending
	d.mu.Unlock()
	if pending != "" {
		t.Fatalf("generation still pending after the failure passed: %q", pending)
	}
	uploadAndCompare(t, w, d, src)
}
