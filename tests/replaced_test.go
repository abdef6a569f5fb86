package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitLog waits until the watcher has logged want, and returns how long
// that took.
func waitLog(t *testing.T, w *watcher, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !strings.Contains(w.logs(), want) {
		if time.Since(start) > limit {
			t.Fatalf("walsync watch did not log %q within %v:\n%s", want, limit, w.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// A database replaced under walsync watch (rm + create 1.5 s later, or a
// rename over the path) is followed: a new generation for the new file,
// logged with the reason; restore gives the new database; the
// application's own checkpoint works; nothing spins.
func TestWatchFollowsReplacedDatabase(t *testing.T) {
	for _, how := range []string{"rm+create", "mv"} {
		t.Run(how, func(t *testing.T) {
			eachTarget(t, func(t *testing.T, tg target) {
				dir := t.TempDir()
				src := filepath.Join(dir, "app.db")
				createDB(t, src, 4096, "wal", 100)
				w := startWatch(t, tg.cli, tg.args(src)...)
				app := openDB(t, src)
				insertBatches(t, app, 10, 200, 20)
				app.Close()
				time.Sleep(300 * time.Millisecond)
				switch how {
				case "rm+create":
					for _, ext := range []string{"", "-wal", "-shm"} {
						if err := os.Remove(src + ext); err != nil && !os.IsNotExist(err) {
							t.Fatal(err)
						}
					}
					waitLog(t, w, "the database file is gone", 5*time.Second)
					time.Sleep(1500 * time.Millisecond)
					createDB(t, src, 4096, "wal", 37)
				case "mv":
					other := filepath.Join(dir, "other.db")
					createDB(t, other, 4096, "wal", 37)
					if err := os.Rename(other, src); err != nil {
						t.Fatal(err)
					}
				}
				took := waitLog(t, w, "following the database file again", 10*time.Second)
				t.Logf("followed the new file %v after it was in place", took.Round(time.Millisecond))
				if fi, err := os.Stat(src + "-wal"); err == nil {
					t.Logf("WAL at the path: %d bytes", fi.Size())
				}
				app = openDB(t, src)
				var n int
				if err := app.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 37 {
					t.Fatalf("the application reads the new database: %d rows (%v), want 37\n%s", n, err, w.logs())
				}
				insertBatches(t, app, 50, 60, 20)
				for i := 0; i < 3; i++ {
					exec1(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
					insertBatches(t, app, 60+i, 10, 10)
				}
				var ok string
				if err := app.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
					t.Fatalf("integrity_check of the application's database: %q (%v)", ok, err)
				}
				time.Sleep(500 * time.Millisecond)
				w.stop()
				verifyRestore(t, tg, app, src, "app")
				logs := w.logs()
				if testing.Verbose() {
					t.Log(logs)
				}
				if n := strings.Count(logs, "starting a new generation"); n > 3 {
					t.Fatalf("%d new generations (want at most 3: first run, the replacement, maybe one more):\n%s", n, logs)
				}
				if n := strings.Count(logs, "cannot follow the database file yet"); n > 1 {
					t.Fatalf("%d lines about the file not followed yet (want at most one a minute):\n%s", n, logs)
				}
			})
		})
	}
}

// A walsync watch stopped (SIGTERM or SIGKILL) after the application's
// TRUNCATE checkpoint, with everything captured, continues its generation
// when it starts again; a WAL written and truncated while it was down is
// a new generation, with that reason.
func TestWatchRestartAfterTruncateContinues(t *testing.T) {
	for _, how := range []string{"sigterm", "sigkill"} {
		t.Run(how, func(t *testing.T) {
			tg := fileTarget(t)
			src := filepath.Join(t.TempDir(), "app.db")
			createDB(t, src, 4096, "wal", 50)
			app := openDB(t, src)
			app.SetMaxOpenConns(1)
			w := startWatch(t, tg.cli, tg.args(src)...)
			for round := 0; round < 3; round++ {
				insertBatches(t, app, 10*round, 40, 10)
				exec1(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
				time.Sleep(400 * time.Millisecond) // walsync sees the empty WAL
				if how == "sigkill" {
					w.kill()
				} else {
					w.stop()
				}
				w = startWatch(t, tg.cli, tg.args(src)...)
				if strings.Contains(w.logs(), "starting a new generation") {
					t.Fatalf("round %d: a restart after a TRUNCATE started a new generation:\n%s", round, w.logs())
				}
			}
			// Written and truncated while nobody watched: not provable.
			w.stop()
			insertBatches(t, app, 90, 20, 10)
			exec1(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
			w = startWatch(t, tg.cli, tg.args(src)...)
			waitLog(t, w, "after the last position walsync recorded", 5*time.Second)
			insertBatches(t, app, 95, 10, 10)
			time.Sleep(300 * time.Millisecond)
			w.stop()
			verifyRestore(t, tg, app, src, "app")
		})
	}
}

// An application that inserts and runs a TRUNCATE checkpoint every 0.3 s
// while walsync watch snapshots every second: no checkpoint gives up busy
// (a snapshot waiting for the write lock and a checkpoint waiting for
// walsync's read mark used to wait for each other until the busy
// timeout), and the restore is exact.
func TestWatchSnapshotAndTruncateDoNotWaitForEachOther(t *testing.T) {
	tg := fileTarget(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 50)
	app := openDB(t, src, "_busy_timeout=5000")
	app.SetMaxOpenConns(1)
	w := startWatch(t, tg.cli, tg.args(src, "--snapshot-interval", "1")...)
	var busy int
	var slowest time.Duration
	for i := 0; i < 25; i++ {
		insertBatches(t, app, 100+i, 200, 200)
		start := time.Now()
		var b, l, c int
		if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&b, &l, &c); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		busy += b
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("slowest TRUNCATE: %v", slowest.Round(time.Millisecond))
	if busy > 0 {
		t.Fatalf("%d of 25 TRUNCATE checkpoints gave up busy (the busy timeout ran out waiting for walsync)", busy)
	}
	w.stop()
	verifyRestore(t, tg, app, src, "app")
}

// A database file removed under walsync watch and not recreated: verify
// says that the writer cannot follow it (from the bucket index), and
// stops saying so once the file is back and followed.
func TestVerifyReportsUnfollowedDatabase(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 30)
		w := startWatch(t, tg.cli, tg.args(src)...)
		time.Sleep(500 * time.Millisecond)
		for _, ext := range []string{"", "-wal", "-shm"} {
			os.Remove(src + ext)
		}
		waitLog(t, w, "the database file is gone", 5*time.Second)
		const warning = "cannot follow the local database file"
		deadline := time.Now().Add(10 * time.Second)
		for out := tg.cli.ok(t, tg.args("verify")...); !strings.Contains(out.stdout, warning); out = tg.cli.ok(t, tg.args("verify")...) {
			if time.Now().After(deadline) {
				t.Fatalf("verify does not report the unfollowed file:\n%s", out.stdout)
			}
			time.Sleep(200 * time.Millisecond)
		}
		createDB(t, src, 4096, "wal", 12)
		waitLog(t, w, "following the database file again", 10*time.Second)
		deadline = time.Now().Add(10 * time.Second)
		for out := tg.cli.ok(t, tg.args("verify")...); strings.Contains(out.stdout, warning); out = tg.cli.ok(t, tg.args("verify")...) {
			if time.Now().After(deadline) {
				t.Fatalf("verify still reports the file as not followed after it was:\n%s", out.stdout)
			}
			time.Sleep(200 * time.Millisecond)
		}
		w.stop()
		verifyRestore(t, tg, openDB(t, src), src, "app")
	})
}

// An application's TRUNCATE right after a large transaction, with watch
// following: the pin moves to the WAL's end before the capture (so that
// the checkpoint copies meanwhile) and to read mark 0 after it. Every
// TRUNCATE goes through, the generation never changes, and the restore
// is exact.
func TestWatchTruncateAfterLargeTransaction(t *testing.T) {
	tg := fileTarget(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 10)
	app := openDB(t, src, "_busy_timeout=10000")
	app.SetMaxOpenConns(1)
	w := startWatch(t, tg.cli, tg.args(src)...)
	for i := 0; i < 4; i++ {
		tx, err := app.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 12000) INSERT INTO t (batch, v) SELECT 9, hex(randomblob(500)) FROM c"); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("UPDATE counter SET n = n + 12000"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		var b, l, c int
		if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&b, &l, &c); err != nil {
			t.Fatal(err)
		}
		if b != 0 {
			t.Fatalf("TRUNCATE %d after a 12 MB transaction gave up busy", i)
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.stop()
	if n := strings.Count(w.logs(), "starting a new generation"); n != 1 {
		t.Fatalf("generations started: got=%d, want 1 (the first)\n%s", n, w.logs())
	}
	verifyRestore(t, tg, app, src, "app")
}
