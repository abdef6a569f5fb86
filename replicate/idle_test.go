package replicate

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync"
)

// openFDs is how many descriptors this process has open.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}

// fallAsleep puts d to sleep (after its files are quiet for quietGap: a
// first try may copy the WAL into the database file, a second one then
// records it), failing the test when it stays awake.
func fallAsleep(t *testing.T, d *DB) {
	t.Helper()
	for try := 0; try < 3; try++ {
		time.Sleep(2 * quietGap)
		d.mu.Lock()
		d.sleepAfter = time.Time{}
		d.mu.Unlock()
		d.sleepIfIdle()
		d.mu.Lock()
		asleep := d.asleep
		d.mu.Unlock()
		if asleep {
			return
		}
	}
	t.Fatal("an idle, fully captured database did not fall asleep")
}

// An idle database closes its pins and files, and wakes at its next
// change in the same generation: after commits made while it slept,
// after a checkpoint that restarted the WAL with nothing new in it, and
// after the application closed it (SQLite removes the WAL) and opened it
// again. A restart over frames nobody captured (a TRUNCATE of new commits
// while it slept) is a new generation, with that reason; a walsync that
// stops while the database sleeps resumes it across a restart the same
// way. Every restore is the source, byte for byte.
func TestIdleDatabaseSleepsAndWakes(t *testing.T) {
	src, app, st := newSource(t)
	mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
	var logs bytes.Buffer
	w := &Watcher{Storage: st, IdleClose: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ctx := context.Background()
	d := newTestDB(t, w, src)
	synced := func() {
		t.Helper()
		if err := d.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	gen := d.gen
	sameGen := func(what string) {
		t.Helper()
		if d.gen != gen {
			t.Fatalf("%s: a new generation began: %s", what, logs.String())
		}
		uploadAndCompare(t, w, d, src)
	}

	// Commits while it sleeps.
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	synced()
	before := openFDs(t)
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	fallAsleep(t, d)
	// walsync's handles on the WAL and the wal-index at least (SQLite
	// keeps a closed connection's descriptors while another connection
	// of the process, the test's application here, holds locks on the
	// file; the end-to-end test counts a real watcher's).
	if n := openFDs(t); before-n < 2 {
		t.Fatalf("asleep, the process holds %d descriptors, awake %d: the database's files are not closed", n, before)
	}
	for i := 0; i < 3; i++ {
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	}
	synced()
	if d.asleep {
		t.Fatal("a change did not wake the database")
	}
	sameGen("commits while asleep")

	// A TRUNCATE with nothing new: the WAL restarts while no pin holds it.
	fallAsleep(t, d)
	mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	synced()
	sameGen("a restart of a fully copied WAL while asleep")

	// The application closes the database (SQLite copies and removes the
	// WAL) and opens it again.
	synced()
	fallAsleep(t, d)
	app.Close()
	if _, err := os.Stat(src + "-wal"); err == nil {
		t.Log("the WAL outlived the application's last close")
	}
	app = openApp(t, src)
	mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	synced()
	sameGen("the application's close and reopen while asleep")

	// walsync stops while the database sleeps; the WAL restarts; the next
	// start resumes the generation.
	synced()
	fallAsleep(t, d)
	d.close()
	mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	w2 := &Watcher{Storage: st, IdleClose: time.Millisecond}
	d = newTestDB(t, w2, src)
	w = w2
	synced()
	sameGen("a restart while walsync was stopped with the database asleep")

	// Commits copied and written over while it sleeps: not provable.
	fallAsleep(t, d)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	var logs2 bytes.Buffer
	d.log = slog.New(slog.NewTextHandler(&logs2, nil))
	synced()
	if d.gen == gen {
		t.Fatal("commits written over while the database slept did not start a new generation")
	}
	if !strings.Contains(logs2.String(), "starting a new generation") {
		t.Fatalf("the new generation was not logged: %s", logs2.String())
	}
	uploadAndCompare(t, w, d, src)
	if info := latestGeneration(t, st); info != d.gen.String() {
		t.Fatalf("the bucket's latest generation is %s, the watcher's %s", info, d.gen)
	}
}

// latestGeneration is the generation of app's newest snapshot in st.
func latestGeneration(t *testing.T, st walsync.Storage) string {
	t.Helper()
	snap, _, _, _ := latest(t, st, "app")
	b := readStored(t, st, snap)
	var h walsync.ObjectHeader
	if err := h.UnmarshalBinary(b[:walsync.HeaderLen]); err != nil {
		t.Fatal(err)
	}
	return h.Generation.String()
}

// Asleep, a database keeps its database file (2 descriptors) only where
// the limit has room for it and a reserve.
func TestHoldUnder(t *testing.T) {
	for _, tt := range []struct {
		n    int
		lim  uint64
		hold bool
	}{
		{24, 100, true}, {40, 100, false}, {5000, 20000, true}, {10000, 20000, false}, {9400, 20000, true}, {10000, 0, true},
	} {
		if got := holdUnder(tt.n, tt.lim); got != tt.hold {
			t.Errorf("%d databases under a limit of %d: hold %v, want %v", tt.n, tt.lim, got, tt.hold)
		}
	}
}
