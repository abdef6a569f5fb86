package replicate

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys/fsystest"
)

// spill writes about mb MiB into t inside the open transaction of app
// (whose page cache is small, so SQLite spills the pages into the WAL
// before the commit), with a sync after each MiB, as the watcher's file
// events would make.
func spill(t *testing.T, app *sql.DB, d *DB, mb int) {
	t.Helper()
	for i := 0; i < mb; i++ {
		mustExec(t, app, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000) INSERT INTO t (b) SELECT randomblob(1000) FROM c")
		if err := d.sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// Frames of a transaction not yet committed are captured ahead and kept
// at the commit when SQLite left them as they were; when it wrote over
// them (a page spilled twice), or rolled the transaction back and wrote
// other frames there, they are captured again. Either way the restore is
// the source, byte for byte.
func TestCaptureAheadOfCommit(t *testing.T) {
	src, app, st := newSource(t)
	mustExec(t, app, "PRAGMA cache_size=40")
	w := &Watcher{Storage: st}
	ctx := context.Background()
	d := newTestDB(t, w, src)
	synced := func() {
		t.Helper()
		if err := d.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	aside := func() int {
		if d.spec == nil {
			return 0
		}
		return len(d.spec.spec)
	}

	// Kept: a transaction that only adds rows.
	mustExec(t, app, "BEGIN")
	spill(t, app, d, 12)
	if aside() == 0 {
		t.Fatal("nothing was captured ahead of the commit of a 12 MB transaction")
	}
	mustExec(t, app, "COMMIT")
	synced()
	s := w.Stats()
	t.Logf("added rows: %d frames kept, %d captured again", s.FramesAhead, s.FramesAheadCut)
	if s.FramesAhead == 0 {
		t.Fatal("no frame captured ahead was kept at the commit")
	}
	if d.spec != nil || d.seg != nil {
		t.Fatal("a segment is still open after the capture at the commit")
	}
	uploadAndCompare(t, w, d, src)

	// Written over: the same transaction changes the rows it added first,
	// whose pages it spilled (and walsync captured) already.
	var first int
	if err := app.QueryRow("SELECT max(id) + 1 FROM t").Scan(&first); err != nil {
		t.Fatal(err)
	}
	mustExec(t, app, "BEGIN")
	spill(t, app, d, 10)
	mustExec(t, app, fmt.Sprintf("UPDATE t SET b = randomblob(1000) WHERE id BETWEEN %d AND %d", first, first+300))
	synced()
	mustExec(t, app, "COMMIT")
	synced()
	s2 := w.Stats()
	t.Logf("rows changed again: %d frames kept, %d captured again", s2.FramesAhead-s.FramesAhead, s2.FramesAheadCut-s.FramesAheadCut)
	if s2.FramesAheadCut == s.FramesAheadCut {
		t.Fatal("pages spilled twice in one transaction were not captured again")
	}
	uploadAndCompare(t, w, d, src)

	// Rolled back, and a smaller transaction written over its frames.
	mustExec(t, app, "BEGIN")
	spill(t, app, d, 10)
	if aside() == 0 {
		t.Fatal("nothing was captured ahead of the rolled-back transaction")
	}
	mustExec(t, app, "ROLLBACK")
	synced()
	mustExec(t, app, "BEGIN")
	spill(t, app, d, 5)
	mustExec(t, app, "COMMIT")
	synced()
	s3 := w.Stats()
	t.Logf("after a rollback: %d frames kept, %d captured again", s3.FramesAhead-s2.FramesAhead, s3.FramesAheadCut-s2.FramesAheadCut)
	if s3.FramesAheadCut == s2.FramesAheadCut {
		t.Fatal("frames of a rolled-back transaction were not captured again")
	}
	uploadAndCompare(t, w, d, src)
}

// A walsync stopped while frames were captured ahead leaves a file that
// holds no commit: the next start removes it and goes on from the
// position, in the same generation.
func TestCaptureAheadLeftByCrash(t *testing.T) {
	src, app, st := newSource(t)
	mustExec(t, app, "PRAGMA cache_size=40")
	w := &Watcher{Storage: st}
	d := newTestDB(t, w, src)
	mustExec(t, app, "BEGIN")
	spill(t, app, d, 8)
	if d.spec == nil {
		t.Fatal("nothing was captured ahead")
	}
	path := d.spec.f.Name()
	gen := d.gen
	// As a crash leaves it: the file stays, nothing else happens.
	d.spec.f.Close()
	d.spec = nil
	d.close()
	mustExec(t, app, "COMMIT")

	w2 := &Watcher{Storage: st}
	d2 := newTestDB(t, w2, src)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the file captured ahead is still in the spool (%v)", err)
	}
	if d2.gen != gen {
		t.Fatal("the start after a capture ahead began a new generation")
	}
	if err := d2.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	uploadAndCompare(t, w2, d2, src)
	if m, _ := filepath.Glob(filepath.Join(spoolDir(src), "*"+openSuffix)); len(m) != 0 {
		t.Fatalf("open files left in the spool: %v", m)
	}
}

// The machine stops at each step the spool takes while frames are
// captured ahead of their commit, kept at it, cut after a rollback, and
// uploaded (fsystest.Crash): the next start recovers the spool, and the
// restore is the source byte for byte.
func TestCaptureAheadCrashAtEveryStep(t *testing.T) {
	ctx := context.Background()
	scenario := func(src string, app *sql.DB, w *Watcher) (*DB, error) {
		if err := w.Add(src, "app"); err != nil {
			return nil, err
		}
		d := w.all()[len(w.all())-1]
		if err := d.open(ctx); err != nil {
			return d, err
		}
		big := "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000) INSERT INTO t (b) SELECT randomblob(1000) FROM c"
		txn := func(mb int, end string) error {
			if _, err := app.Exec("BEGIN"); err != nil {
				return err
			}
			var err error
			for i := 0; i < mb && err == nil; i++ {
				if _, err = app.Exec(big); err == nil {
					err = d.sync(ctx)
				}
			}
			if _, eerr := app.Exec(end); err == nil {
				err = eerr
			}
			if err == nil {
				err = d.sync(ctx)
			}
			return err
		}
		for _, step := range []func() error{
			func() error { return txn(5, "COMMIT") },
			func() error { return txn(5, "ROLLBACK") },
			func() error { return txn(1, "COMMIT") },
			func() error { return w.uploadAll(ctx, d) },
		} {
			if err := step(); err != nil {
				return d, err
			}
		}
		return d, nil
	}
	newApp := func() (string, *sql.DB, walsync.Storage) {
		src, app, st := newSource(t)
		mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
		mustExec(t, app, "PRAGMA cache_size=40")
		return src, app, st
	}
	probe := fsystest.NewCrash()
	src, app, st := newApp()
	d, err := scenario(src, app, crashWatcher(st, false, probe))
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	steps := probe.Log()
	if !slices.Contains(steps, "segment:create:truncate") {
		t.Fatalf("no capture ahead was cut among the steps: %q", steps)
	}
	t.Logf("%d steps: %q", len(steps), steps)
	// Every step but the writes of a segment, which come by the hundred:
	// of those, every 16th.
	for n := 1; n <= len(steps); n++ {
		if strings.HasSuffix(steps[n-1], ":write") && n%16 != 0 {
			continue
		}
		src, app, st := newApp()
		crash := fsystest.NewCrash()
		crash.CrashAt(n)
		d, err := scenario(src, app, crashWatcher(st, false, crash))
		if d != nil {
			d.close()
		}
		app.Exec("ROLLBACK") //nolint:errcheck // a transaction the crash left open
		if !crash.Crashed() {
			t.Fatalf("crash at step %d (%s): not reached (the run ended with %v)", n, steps[n-1], err)
		}
		if err := crash.Reboot(); err != nil {
			t.Fatal(err)
		}
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(6000))")
		w2 := &Watcher{Storage: st}
		d2 := newTestDB(t, w2, src)
		if err := d2.sync(ctx); err != nil {
			t.Fatalf("crash at step %d (%s): sync after the restart: %v", n, steps[n-1], err)
		}
		if err := w2.uploadAll(ctx, d2); err != nil {
			t.Fatalf("crash at step %d (%s): upload after the restart: %v", n, steps[n-1], err)
		}
		t.Run(fmt.Sprintf("step %d %s", n, steps[n-1]), func(t *testing.T) { restoreMatches(t, st, src) })
		if m, _ := filepath.Glob(filepath.Join(spoolDir(src), "*"+openSuffix)); len(m) != 0 {
			t.Fatalf("crash at step %d (%s): open files left in the spool: %v", n, steps[n-1], m)
		}
		d2.close()
	}
}
