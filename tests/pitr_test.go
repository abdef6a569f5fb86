package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mark is an instant of a test run and the state the database was in at
// that instant: its row count and its bytes after a checkpoint.
type mark struct {
	what string
	at   time.Time
	rows int
	want []byte // nil: not compared byte for byte
}

// stateNow copies the database and its WAL while the application is idle
// and returns the copy's bytes after a checkpoint: the database as a
// restore of this instant must give it.
func stateNow(t *testing.T, src string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(src + suffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := openDB(t, dst)
	defer db.Close()
	return checkpointed(t, db, dst)
}

// pause waits between two batches and returns a mark in its middle: long
// enough after the last commit for walsync to have captured it (the
// capture time is taken after the commit; the tests run watch with
// --sync-interval 0 so that it is taken at once), long enough before the
// next.
func pause(t *testing.T, src, what string, rows int) mark {
	t.Helper()
	time.Sleep(450 * time.Millisecond)
	m := mark{what: what, at: time.Now(), rows: rows, want: stateNow(t, src)}
	time.Sleep(450 * time.Millisecond)
	return m
}

// restoreAt restores app as of at and returns the output path and the
// CLI's result.
func restoreAt(t *testing.T, tg target, at string) (string, result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "pit.db")
	return out, tg.cli.run(t, tg.args("restore", "app", "-o", out, "--point-in-time", at)...)
}

// checkMark restores the mark's instant and compares.
func checkMark(t *testing.T, tg target, m mark) {
	t.Helper()
	at := m.at.UTC().Format(time.RFC3339Nano)
	out, r := restoreAt(t, tg, at)
	if r.code != 0 {
		t.Fatalf("restore --point-in-time %s (%s): exit %d\nstdout: %s\nstderr: %s", at, m.what, r.code, r.stdout, r.stderr)
	}
	if got := checkRestored(t, out); got != m.rows {
		if tg.name == "file" {
			filepath.WalkDir(strings.TrimPrefix(tg.bucket, "file://"), func(p string, d fs.DirEntry, err error) error {
				if !strings.HasSuffix(p, ".sha256") {
					t.Log(p)
				}
				return nil
			})
		}
		t.Fatalf("restore --point-in-time %s (%s): got=%d rows, want %d\n%s", at, m.what, got, m.rows, r.stdout)
	}
	if m.want != nil {
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		mustEqualFiles(t, got, "the source at "+at, m.want)
	}
}

// snapshotCount is the number of snapshots walsync list reports for app.
func snapshotCount(t *testing.T, tg target) int {
	t.Helper()
	r := tg.cli.ok(t, tg.args("list", "--json")...)
	var dbs []struct {
		Name      string `json:"name"`
		Snapshots int    `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	for _, d := range dbs {
		if d.Name == "app" {
			return d.Snapshots
		}
	}
	return 0
}

// Batches with pauses between them under a running watch that takes a
// snapshot every second: a restore to any instant in a pause gives exactly
// the database of that instant, across snapshots of the generation and
// across a manual `walsync snapshot` taken meanwhile.
func TestPointInTimeRestore(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 100)
		app := openDB(t, src)
		app.SetMaxOpenConns(1)
		beforeAll := time.Now()
		time.Sleep(20 * time.Millisecond)
		w := startWatch(t, tg.cli, append(tg.args(src), "--snapshot-interval", "1", "--sync-interval", "0")...)
		rows := 100
		marks := []mark{pause(t, src, "first snapshot", rows)}
		for i := 0; i < 7; i++ {
			insertBatches(t, app, 100+i, 20+i, 20+i)
			rows += 20 + i
			if i == 3 {
				tg.cli.ok(t, tg.args("snapshot", src)...)
			}
			marks = append(marks, pause(t, src, fmt.Sprintf("after batch %d", i+1), rows))
		}
		w.stop()
		if n := snapshotCount(t, tg); n < 3 {
			t.Fatalf("snapshots: got=%d, want at least 3 (--snapshot-interval 1 during %v, and one manual)", n, time.Since(beforeAll))
		}
		for _, m := range marks {
			checkMark(t, tg, m)
		}
		// An offset instead of Z names the same instant.
		m := marks[3]
		out, r := restoreAt(t, tg, m.at.In(time.FixedZone("", 2*3600+30*60)).Format("2006-01-02T15:04:05.000000-07:00"))
		if r.code != 0 || checkRestored(t, out) != m.rows {
			t.Fatalf("restore with an offset: exit %d, want %d rows\n%s%s", r.code, m.rows, r.stdout, r.stderr)
		}
		// The newest state, after everything: the latest restore, exact.
		verifyRestore(t, tg, app, src, "app")

		// Before the first backup: an error naming the earliest
		// restorable time, and nothing written.
		out = filepath.Join(t.TempDir(), "early.db")
		tg.cli.fails(t, tg.args("restore", "app", "-o", out, "--point-in-time", beforeAll.UTC().Format(time.RFC3339Nano)),
			"before the first backup", "earliest restorable time")
		assertAbsent(t, out)
		// A time without a zone is refused, not guessed.
		tg.cli.fails(t, tg.args("restore", "app", "-o", out, "--point-in-time", "2026-01-10T12:00:00"), "no time zone")
		assertAbsent(t, out)
	})
}

// A generation change: walsync stops, the application writes and
// truncates the WAL meanwhile, walsync starts a new generation. Instants
// inside each generation restore exactly; an instant after the old
// generation's last capture and before the new one's snapshot is a gap:
// an error, nothing written.
func TestPointInTimeAcrossGenerations(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 100)
		app := openDB(t, src)
		app.SetMaxOpenConns(1)
		w := startWatch(t, tg.cli, append(tg.args(src), "--sync-interval", "0")...)
		rows := 100
		var inside []mark
		for i := 0; i < 3; i++ {
			insertBatches(t, app, 100+i, 30, 30)
			rows += 30
			inside = append(inside, pause(t, src, "generation A", rows))
		}
		// The last instant of A: no later capture in A, B starts later.
		insertBatches(t, app, 200, 30, 30)
		rows += 30
		endOfA := pause(t, src, "after A's last capture", rows)
		w.stop()

		insertBatches(t, app, 300, 40, 40) // never captured by A
		rows += 40
		var a, b, c int
		if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&a, &b, &c); err != nil {
			t.Fatal(err)
		}
		insertBatches(t, app, 400, 10, 10)
		rows += 10
		whileStopped := pause(t, src, "while walsync was stopped", rows)

		w = startWatch(t, tg.cli, append(tg.args(src), "--sync-interval", "0")...)
		inside = append(inside, pause(t, src, "generation B's snapshot", rows))
		for i := 0; i < 2; i++ {
			insertBatches(t, app, 500+i, 25, 25)
			rows += 25
			inside = append(inside, pause(t, src, "generation B", rows))
		}
		w.stop()
		if !strings.Contains(w.logs(), "new generation") {
			t.Fatalf("want a new generation after the WAL changed while stopped; logs:\n%s", w.logs())
		}
		for _, m := range inside {
			checkMark(t, tg, m)
		}
		for _, m := range []mark{endOfA, whileStopped} {
			out := filepath.Join(t.TempDir(), "gap.db")
			tg.cli.fails(t, tg.args("restore", "app", "-o", out, "--point-in-time", m.at.UTC().Format(time.RFC3339Nano)),
				"gap between generations", "app/snapshots/")
			assertAbsent(t, out)
		}
		verifyRestore(t, tg, app, src, "app")
	})
}
