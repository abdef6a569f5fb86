//go:build linux

package replicate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
	"github.com/walsync/walsync/internal/fsys/fsystest"
)

// crashScenario starts following src and runs crashSteps, stopping at
// the first error (the crash).
func crashScenario(ctx context.Context, src string, app *sql.DB, w *Watcher) (d *DB, err error) {
	if err := w.Add(src, "app"); err != nil {
		return nil, err
	}
	d = w.all()[len(w.all())-1]
	if err := d.open(ctx); err != nil {
		return d, err
	}
	_, err = crashSteps(ctx, app, w, d, false)
	return d, err
}

// crashSteps is a run of capture and upload, batched (the VFS) or not
// (watch), across a checkpoint and a WAL restart, driven through the
// spool's file system. With retry, a step that fails is tried once more
// (the first failure is returned as failed; a second one as err);
// without, the first failure ends the run.
func crashSteps(ctx context.Context, app *sql.DB, w *Watcher, d *DB, retry bool) (failed, err error) {
	capture := func() error {
		if !w.Batch {
			return d.sync(ctx)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		_, err := d.captureFrames(false)
		return err
	}
	cycle := func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.cycle()
	}
	insert := func() error {
		_, err := app.Exec("INSERT INTO t (b) VALUES (randomblob(6000))")
		return err
	}
	for _, step := range []func() error{
		insert, capture, insert, capture,
		cycle, func() error { _, err := app.Exec("PRAGMA wal_checkpoint(PASSIVE)"); return err }, cycle,
		insert, capture, // the WAL restarted
		func() error { return d.sync(ctx) }, // seals (batched)
		func() error { return w.uploadAll(ctx, d) },
		insert, capture, func() error { return d.sync(ctx) },
		func() error { return w.uploadAll(ctx, d) },
	} {
		err := step()
		if err != nil && retry && failed == nil {
			failed, err = err, step()
		}
		if err != nil {
			return failed, err
		}
	}
	return failed, nil
}

// The machine stops at each step the spool takes on disk in turn (every
// create, write, fsync, rename, removal), and comes back with only what
// was synced (fsystest.Crash). The next start recovers the spool, catches
// up, and the restore is the source byte for byte: nothing acknowledged
// to the spool's state is ever missing after a power loss, whatever step
// it hit. Watch (a segment per capture) and the VFS's batching (an open
// segment, its barrier before the WAL restarts) both.
func TestSpoolCrashAtEveryStep(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			// Learn the steps from a run without a crash.
			probe := fsystest.NewCrash()
			probeRun(t, batch, probe)
			steps := probe.Log()
			if len(steps) < 20 {
				t.Fatalf("only %d steps: %q", len(steps), steps)
			}
			t.Logf("%d steps: %q", len(steps), steps)
			stride := 1
			if testing.Short() {
				stride = 3
			}
			// In the VFS's batching, the open segment's frames are on disk
			// once the barrier (its fsync, then the directory's) let the
			// WAL restart: a crash after it keeps them.
			barrier := 0
			for i, s := range steps {
				if batch && barrier == 0 && s == "barrier:sync-dir:sync" {
					barrier = i + 1
				}
			}
			if batch && barrier == 0 {
				t.Fatalf("no barrier among the steps: %q", steps)
			}
			gens := 0
			for n := 1; n <= len(steps); n += stride {
				src, app, st := newSource(t)
				mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
				crash := fsystest.NewCrash()
				crash.CrashAt(n)
				w := crashWatcher(st, batch, crash)
				d, err := crashScenario(context.Background(), src, app, w)
				if d != nil {
					d.close() // its last steps may come here
				}
				// Whatever failed after the crash failed because of it
				// (a start's failed snapshot leaves its generation
				// pending, which says so in its own words).
				if !crash.Crashed() {
					t.Fatalf("crash at step %d (%s): not reached (the run ended with %v)", n, steps[n-1], err)
				}
				if err := crash.Reboot(); err != nil {
					t.Fatal(err)
				}
				mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(6000))")

				var logs bytes.Buffer
				w2 := &Watcher{Storage: st, Batch: batch, SyncInterval: interval(batch), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
				d2 := newTestDB(t, w2, src)
				if d2.gen != d.gen && d.gen != [16]byte{} {
					gens++
					t.Logf("new generation after a crash at step %d (%s): %s", n, steps[n-1], logs.String())
				}
				if err := d2.sync(context.Background()); err != nil {
					t.Fatalf("crash at step %d (%s): sync after the restart: %v", n, steps[n-1], err)
				}
				if err := w2.uploadAll(context.Background(), d2); err != nil {
					t.Fatalf("crash at step %d (%s): upload after the restart: %v", n, steps[n-1], err)
				}
				t.Run(fmt.Sprintf("step %d %s", n, steps[n-1]), func(t *testing.T) {
					restoreMatches(t, st, src)
					if batch && n > barrier && segmentsOf(t, st, d.gen) == 0 {
						t.Fatalf("crash after the barrier (step %d): the frames it made durable are not in the bucket", barrier)
					}
				})
				d2.close()
			}
			t.Logf("new generations after a crash: %d", gens)
		})
	}
}

// segmentsOf counts the segments of generation gen in st.
func segmentsOf(t *testing.T, st walsync.Storage, gen walsync.Generation) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for info, err := range st.List(ctx, "app/wal/") {
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := st.Get(ctx, info.Key)
		if err != nil {
			t.Fatal(err)
		}
		h, err := walsync.ReadObjectHeaderOnly(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", info.Key, err)
		}
		if h.Generation == gen {
			n++
		}
	}
	return n
}

// Each step the spool takes on disk fails once in turn (an fsync of a
// sealed segment, the rename of state.json, ...): the failure reaches the
// caller as an error naming the spool, the next attempt goes through, the
// database stays in its generation, and the restore is the source byte
// for byte.
func TestSpoolStepFailsOnce(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			probe := &fsystest.Faulty{}
			probeRun(t, batch, probe)
			steps := probe.Seen()
			for _, want := range []string{"state:rename", "segment:create:sync", "segment:seal-rename", "snapshot:create:sync"} {
				if !slices.Contains(steps, want) {
					t.Fatalf("step %s not seen: %q", want, steps)
				}
			}
			for _, step := range steps {
				t.Run(step, func(t *testing.T) {
					src, app, st := newSource(t)
					mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
					faulty := &fsystest.Faulty{}
					w := crashWatcher(st, batch, faulty)
					if step == "spool:mkdir" || step == "spool:mkdir-sync:sync" {
						faulty.Fail(step, 1)
					}
					// The first start makes the first generation; then the
					// fault is set for what follows.
					if err := w.Add(src, "app"); err != nil {
						t.Fatal(err)
					}
					d := w.all()[0]
					ctx := context.Background()
					if err := d.open(ctx); err != nil {
						if !errors.Is(err, fsystest.ErrInjected) && !strings.Contains(err.Error(), "injected") {
							t.Fatalf("open failing at %s: %v", step, err)
						}
						if err := d.open(ctx); err != nil {
							t.Fatalf("open again after a failure at %s: %v", step, err)
						}
					}
					defer d.close()
					gen := d.gen
					faulty.Fail(step, 1)
					failed, err := crashSteps(ctx, app, w, d, true)
					if err != nil {
						t.Fatalf("failing %s once: %v", step, err)
					}
					if failed != nil && !strings.Contains(failed.Error(), "injected") {
						t.Errorf("failing %s: the error does not say so: %v", step, failed)
					}
					if err := d.sync(ctx); err != nil {
						t.Fatal(err)
					}
					if err := w.uploadAll(ctx, d); err != nil {
						t.Fatal(err)
					}
					if d.gen != gen {
						t.Errorf("failing %s once started a new generation", step)
					}
					restoreMatches(t, st, src)
				})
			}
		})
	}
}

// interval is the sync interval of the runs: batched, one that never comes
// by itself (the run seals with sync); watch's, none, so that each
// capture is a segment.
func interval(batch bool) time.Duration {
	if batch {
		return time.Hour
	}
	return 0
}

// crashWatcher is a watcher of the runs, its spools on o.
func crashWatcher(st walsync.Storage, batch bool, o fsys.OS) *Watcher {
	w := &Watcher{Storage: st, Batch: batch, SyncInterval: interval(batch), FS: o}
	w.prepare()
	return w
}

// probeRun runs the scenario once without a fault, on o, to learn its
// steps.
func probeRun(t *testing.T, batch bool, o fsys.OS) {
	t.Helper()
	src, app, st := newSource(t)
	mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
	d, err := crashScenario(context.Background(), src, app, crashWatcher(st, batch, o))
	if err != nil {
		t.Fatal(err)
	}
	d.close()
}
