package tests

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/sqltest"
)

// watcher is a running `walsync watch` process.
type watcher struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    strings.Builder
	ready  chan struct{}
	done   chan struct{}
	exitOK bool
}

// startWatch starts walsync watch with args and waits until it watches.
func startWatch(t *testing.T, c *cli, args ...string) *watcher {
	t.Helper()
	return startWatchCmd(t, c, exec.Command(binary, append([]string{"watch", "-v"}, args...)...))
}

// startWatchCmd is startWatch of a command made by the caller (one that
// runs walsync watch -v in the end).
func startWatchCmd(t *testing.T, c *cli, cmd *exec.Cmd) *watcher {
	t.Helper()
	w := &watcher{t: t, ready: make(chan struct{}), done: make(chan struct{}), cmd: cmd}
	w.cmd.Env = c.env
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.cmd.Stdout = io.Discard
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			w.mu.Lock()
			w.log.WriteString(line + "\n")
			w.mu.Unlock()
			if strings.Contains(line, "msg=watching") {
				once.Do(func() { close(w.ready) })
			}
		}
		err := w.cmd.Wait()
		w.exitOK = err == nil
		close(w.done)
	}()
	select {
	case <-w.ready:
	case <-w.done:
		t.Fatalf("walsync watch exited before watching:\n%s", w.logs())
	case <-time.After(2 * time.Minute):
		w.cmd.Process.Kill()
		t.Fatalf("walsync watch did not start:\n%s", w.logs())
	}
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			w.cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

func (w *watcher) logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}

// stop sends SIGINT and waits: walsync ships what it captured, exits 0.
func (w *watcher) stop() {
	w.t.Helper()
	w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-w.done:
	case <-time.After(2 * time.Minute):
		w.cmd.Process.Kill()
		w.t.Fatalf("walsync watch did not exit after SIGINT:\n%s", w.logs())
	}
	if !w.exitOK {
		w.t.Fatalf("walsync watch exited with an error after SIGINT:\n%s", w.logs())
	}
	for _, bad := range []string{"panic:", "goroutine ", "level=ERROR"} {
		if strings.Contains(w.logs(), bad) {
			w.t.Fatalf("walsync watch logged %q:\n%s", bad, w.logs())
		}
	}
}

// kill sends SIGKILL and waits.
func (w *watcher) kill() {
	w.cmd.Process.Kill()
	<-w.done
}

// verifyRestore restores name and compares it with the source after
// wal_checkpoint(TRUNCATE), byte for byte.
func verifyRestore(t *testing.T, tg target, app *sql.DB, src, name string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	tg.cli.ok(t, tg.args("restore", name, "-o", out)...)
	want := checkpointed(t, app, src)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualFiles(t, got, src, want)
	checkRestored(t, out)
}

func TestWatchSeveralDatabases(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		root := t.TempDir()
		var srcs []string
		for _, team := range []string{"romneys", "smiths", "jones"} {
			dir := filepath.Join(root, team)
			os.MkdirAll(dir, 0o755)
			src := filepath.Join(dir, "app.db")
			createDB(t, src, 4096, "wal", 500)
			srcs = append(srcs, src)
		}
		w := startWatch(t, tg.cli, append(tg.args(srcs...), "--snapshot-interval", "0")...)
		apps := make([]*sql.DB, len(srcs))
		for i, src := range srcs {
			apps[i] = openDB(t, src)
			apps[i].SetMaxOpenConns(1)
		}
		for round := 0; round < 5; round++ {
			for i, app := range apps {
				insertBatches(t, app, 1000*round+i, 300, 30)
			}
		}
		w.stop()
		for i, team := range []string{"romneys", "smiths", "jones"} {
			verifyRestore(t, tg, apps[i], srcs[i], team+"/app")
		}
	})
}

// The workloads of the issue, one database each, file backend and MinIO.
func TestWatchWorkloads(t *testing.T) {
	for _, wl := range []struct {
		name     string
		pageSize int
		run      func(t *testing.T, app *sql.DB, w *watcher)
	}{
		{"transaction larger than the auto-checkpoint threshold", 4096, func(t *testing.T, app *sql.DB, w *watcher) {
			exec1(t, app, "PRAGMA cache_size=50") // spill pages to the WAL mid-transaction
			tx, _ := app.Begin()
			for i := 0; i < 12000; i++ {
				tx.Exec("INSERT INTO t (batch, v) VALUES (?, ?)", 99, strings.Repeat("big", 100))
			}
			tx.Exec("UPDATE counter SET n = n + 12000")
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			insertBatches(t, app, 100, 2000, 100)
		}},
		{"VACUUM", 4096, func(t *testing.T, app *sql.DB, w *watcher) {
			insertBatches(t, app, 100, 3000, 100)
			exec1(t, app, "DELETE FROM t WHERE id % 3 = 0")
			exec1(t, app, "UPDATE counter SET n = (SELECT count(*) FROM t)")
			exec1(t, app, "VACUUM")
			insertBatches(t, app, 200, 500, 50)
		}},
		{"checkpoint TRUNCATE after every commit", 4096, func(t *testing.T, app *sql.DB, w *watcher) {
			for i := 0; i < 60; i++ {
				insertBatches(t, app, 100+i, 20, 20)
				var busy, b, c int
				start := time.Now()
				if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &b, &c); err != nil {
					t.Fatal(err)
				}
				if busy != 0 {
					t.Logf("walsync logs:\n%s", w.logs())
					t.Fatalf("wal_checkpoint(TRUNCATE) #%d could not complete (blocked %v): walsync must let it through", i, time.Since(start))
				}
			}
		}},
		{"page size 1024", 1024, func(t *testing.T, app *sql.DB, w *watcher) { insertBatches(t, app, 100, 3000, 100) }},
		{"page size 65536", 65536, func(t *testing.T, app *sql.DB, w *watcher) { insertBatches(t, app, 100, 3000, 100) }},
	} {
		t.Run(wl.name, func(t *testing.T) {
			eachTarget(t, func(t *testing.T, tg target) {
				src := filepath.Join(t.TempDir(), "app.db")
				createDB(t, src, wl.pageSize, "wal", 1000)
				w := startWatch(t, tg.cli, tg.args(src)...)
				app := openDB(t, src)
				app.SetMaxOpenConns(1)
				wl.run(t, app, w)
				w.stop()
				verifyRestore(t, tg, app, src, "app")
			})
		})
	}
}

// walsync is killed with SIGKILL and restarted again and again while the
// application writes (and checkpoints); nothing is lost or duplicated.
func TestWatchKilledRepeatedly(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 1000)
		app := openDB(t, src)
		app.SetMaxOpenConns(1)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; ctx.Err() == nil; b++ {
				tx, err := app.Begin()
				if err != nil {
					t.Error(err)
					return
				}
				for i := 0; i < 10; i++ {
					tx.Exec("INSERT INTO t (batch, v) VALUES (?, ?)", b, strings.Repeat("k", 200))
				}
				tx.Exec("UPDATE counter SET n = n + 10")
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		for i := 0; i < 5; i++ {
			w := startWatch(t, tg.cli, tg.args(src)...)
			time.Sleep(time.Duration(200+100*i) * time.Millisecond)
			w.kill()
		}
		cancel()
		wg.Wait()
		w := startWatch(t, tg.cli, tg.args(src)...)
		time.Sleep(300 * time.Millisecond)
		w.stop()
		verifyRestore(t, tg, app, src, "app")
	})
}

// While walsync is stopped, the application writes, checkpoints and
// truncates the WAL: continuity cannot be proven, so walsync starts a new
// generation (and says why), and the restore is still exact.
func TestWatchWALChangedWhileStopped(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 1000)
		app := openDB(t, src)
		app.SetMaxOpenConns(1)
		w := startWatch(t, tg.cli, tg.args(src)...)
		insertBatches(t, app, 100, 500, 50)
		w.stop()

		insertBatches(t, app, 200, 500, 50)
		var a, b, c int
		if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&a, &b, &c); err != nil {
			t.Fatal(err)
		}
		insertBatches(t, app, 300, 200, 50)

		w = startWatch(t, tg.cli, tg.args(src)...)
		insertBatches(t, app, 400, 300, 50)
		w.stop()
		if !strings.Contains(w.logs(), "new generation") {
			t.Fatalf("want a new generation after the WAL changed while stopped; logs:\n%s", w.logs())
		}
		verifyRestore(t, tg, app, src, "app")
	})
}

// A clean stop and start with the application still running keeps the
// generation: no new snapshot is needed.
func TestWatchResumesGeneration(t *testing.T) {
	tg := fileTarget(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 1000)
	app := openDB(t, src)
	app.SetMaxOpenConns(1)
	exec1(t, app, "PRAGMA wal_autocheckpoint=0")
	w := startWatch(t, tg.cli, tg.args(src)...)
	insertBatches(t, app, 100, 300, 50)
	w.stop()
	insertBatches(t, app, 200, 300, 50)
	w = startWatch(t, tg.cli, tg.args(src)...)
	insertBatches(t, app, 300, 300, 50)
	w.stop()
	if strings.Contains(w.logs(), "new generation") {
		t.Fatalf("a clean restart started a new generation:\n%s", w.logs())
	}
	if !strings.Contains(w.logs(), "resuming") {
		t.Fatalf("want the restart to resume:\n%s", w.logs())
	}
	verifyRestore(t, tg, app, src, "app")
}

func segmentKeys(t *testing.T, tg target) []string {
	t.Helper()
	root := strings.TrimPrefix(tg.bucket, "file://")
	matches, _ := filepath.Glob(filepath.Join(root, "app", "wal", "*.wal.zst"))
	return matches
}

// A deleted middle segment is a gap: restore refuses, naming it, and writes
// nothing.
func TestWatchRestoreGap(t *testing.T) {
	tg := fileTarget(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 100)
	app := openDB(t, src)
	app.SetMaxOpenConns(1)
	w := startWatch(t, tg.cli, append(tg.args(src), "--sync-interval", "0")...)
	for i := 0; i < 10; i++ {
		insertBatches(t, app, 100+i, 50, 50)
		time.Sleep(50 * time.Millisecond)
	}
	w.stop()
	segs := segmentKeys(t, tg)
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(segs))
	}
	middle := segs[len(segs)/2]
	os.Remove(middle)
	os.Remove(middle + ".sha256")
	out := filepath.Join(t.TempDir(), "out.db")
	seq := strings.SplitN(filepath.Base(middle), "-", 2)[0]
	tg.cli.fails(t, tg.args("restore", "app", "-o", out), seq)
	assertAbsent(t, out)
}

// A flipped byte in a segment: restore refuses, naming it and saying
// checksum.
func TestWatchRestoreCorruptSegment(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 100)
		app := openDB(t, src)
		app.SetMaxOpenConns(1)
		w := startWatch(t, tg.cli, tg.args(src)...)
		insertBatches(t, app, 100, 500, 50)
		w.stop()
		key := flipStoredByte(t, tg, "app/wal/")
		out := filepath.Join(t.TempDir(), "out.db")
		tg.cli.fails(t, tg.args("restore", "app", "-o", out), key, "checksum")
		assertAbsent(t, out)
	})
}

// A database larger than 1 GiB: SQLite never writes the lock page at
// offset 2^30, and the restore must still be byte-exact.
func TestWatchLargerThanOneGiB(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a 1.1 GiB database")
	}
	eachTarget(t, func(t *testing.T, tg target) {
		src := filepath.Join(t.TempDir(), "big.db")
		createDB(t, src, 4096, "wal", 10)
		app := openDB(t, src)
		app.SetMaxOpenConns(1)
		exec1(t, app, "CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
		exec1(t, app, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 18500) INSERT INTO blobs (b) SELECT zeroblob(60000) FROM c")
		var a, b, c int
		app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&a, &b, &c)
		if fi, err := os.Stat(src); err != nil || fi.Size() <= 1<<30 {
			t.Fatalf("want a database over 1 GiB: %v", err)
		}
		w := startWatch(t, tg.cli, tg.args(src)...)
		insertBatches(t, app, 100, 2000, 100)
		exec1(t, app, "UPDATE blobs SET b = randomblob(3000) WHERE id % 1000 = 0")
		exec1(t, app, "DELETE FROM blobs WHERE id > 18000")
		w.stop()

		out := filepath.Join(t.TempDir(), "restored.db")
		tg.cli.ok(t, tg.args("restore", "big", "-o", out)...)
		checkpointed(t, app, src) // the source's bytes after the checkpoint
		if got, want := fileSHA256(t, out), fileSHA256(t, src); got != want {
			t.Fatalf("restore of a >1 GiB database: got sha256 %s, want %s", got, want)
		}
		checkRestored(t, out)
	})
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// --snapshot-interval: a database that changes gets new snapshots in the
// same generation; one that does not change gets none. SIGTERM ships and
// exits like SIGINT. The restore starts from the newest snapshot.
func TestWatchPeriodicSnapshots(t *testing.T) {
	tg := fileTarget(t)
	dir := t.TempDir()
	busy, idle := filepath.Join(dir, "busy.db"), filepath.Join(dir, "idle.db")
	createDB(t, busy, 4096, "wal", 100)
	createDB(t, idle, 4096, "wal", 100)
	app := openDB(t, busy)
	app.SetMaxOpenConns(1)
	w := startWatch(t, tg.cli, append(tg.args(busy, idle), "--snapshot-interval", "1")...)
	for i := 0; i < 35; i++ {
		insertBatches(t, app, 100+i, 20, 20)
		time.Sleep(100 * time.Millisecond)
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		t.Fatalf("walsync watch did not exit after SIGTERM:\n%s", w.logs())
	}
	if !w.exitOK {
		t.Fatalf("walsync watch failed after SIGTERM:\n%s", w.logs())
	}
	root := strings.TrimPrefix(tg.bucket, "file://")
	busySnaps, _ := filepath.Glob(filepath.Join(root, "busy", "snapshots", "*.db.zst"))
	idleSnaps, _ := filepath.Glob(filepath.Join(root, "idle", "snapshots", "*.db.zst"))
	if len(busySnaps) < 2 {
		t.Errorf("snapshots of the changing database: got=%d, want at least 2 in 3.5 s with --snapshot-interval 1", len(busySnaps))
	}
	if len(idleSnaps) != 1 {
		t.Errorf("snapshots of the idle database: got=%d, want 1 (only the generation's first)", len(idleSnaps))
	}
	if strings.Count(w.logs(), "starting a new generation") != 2 {
		t.Errorf("want one generation per database:\n%s", w.logs())
	}
	verifyRestore(t, tg, app, busy, "busy")
}

// --retention: old snapshots and the segments they make unnecessary are
// deleted while watch runs; the newest state still restores exactly.
func TestWatchRetention(t *testing.T) {
	tg := fileTarget(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 100)
	app := openDB(t, src)
	app.SetMaxOpenConns(1)
	w := startWatch(t, tg.cli, append(tg.args(src), "--snapshot-interval", "1", "--retention", "2s")...)
	start := time.Now()
	for time.Since(start) < 7*time.Second {
		insertBatches(t, app, 100, 20, 20)
		time.Sleep(100 * time.Millisecond)
	}
	w.stop()
	if !strings.Contains(w.logs(), "msg=retention") {
		t.Fatalf("no retention pass deleted anything:\n%s", w.logs())
	}
	root := strings.TrimPrefix(tg.bucket, "file://")
	snaps, _ := filepath.Glob(filepath.Join(root, "app", "snapshots", "*.db.zst"))
	first := filepath.Base(snaps[0])
	firstTime, err := time.Parse("20060102150405", strings.TrimSuffix(first, ".db.zst"))
	if err != nil {
		t.Fatal(err)
	}
	if firstTime.Before(start.UTC().Add(-time.Second).Truncate(time.Second)) || !firstTime.After(start.UTC().Add(time.Second)) {
		t.Errorf("oldest snapshot kept %s: want the first one (at start) deleted by retention", first)
	}
	verifyRestore(t, tg, app, src, "app")
}

// One writer per name: a second watcher replicating the same name into the
// same bucket is refused at start, naming the first; after the first stops
// cleanly, the name is free. --takeover claims a name left by a writer
// that is gone.
func TestWatchOneWriterPerName(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		var srcs []string
		for i := 0; i < 2; i++ {
			src := filepath.Join(t.TempDir(), "app.db")
			createDB(t, src, 4096, "wal", 100)
			srcs = append(srcs, src)
		}
		first := startWatch(t, tg.cli, tg.args(srcs[0], "--name", "shared")...)
		tg.cli.fails(t, tg.args("watch", srcs[1], "--name", "shared"), "another writer", srcs[0])
		first.kill() // gone without releasing the name
		tg.cli.fails(t, tg.args("watch", srcs[1], "--name", "shared"), "--takeover")
		second := startWatch(t, tg.cli, tg.args(srcs[1], "--name", "shared", "--takeover")...)
		second.stop()
		// Released on a clean stop: the first database may take it back.
		again := startWatch(t, tg.cli, tg.args(srcs[0], "--name", "shared")...)
		again.stop()
	})
}

// --sync-interval batches a burst of commits into few segments (few PUTs);
// --sync-interval 0 ships every commit as its own segment. Both restore
// exactly.
func TestWatchSyncInterval(t *testing.T) {
	for _, tc := range []struct {
		interval string
		min, max int
	}{
		{"1s", 1, 8},
		{"0", 40, 1000},
	} {
		t.Run(tc.interval, func(t *testing.T) {
			tg := fileTarget(t)
			src := filepath.Join(t.TempDir(), "app.db")
			createDB(t, src, 4096, "wal", 100)
			app := openDB(t, src)
			app.SetMaxOpenConns(1)
			w := startWatch(t, tg.cli, append(tg.args(src), "--sync-interval", tc.interval)...)
			for i := 0; i < 50; i++ {
				insertBatches(t, app, 100+i, 5, 5)
				time.Sleep(40 * time.Millisecond)
			}
			w.stop()
			n := len(segmentKeys(t, tg))
			t.Logf("50 commits over ~2 s with --sync-interval %s: %d segments", tc.interval, n)
			if n < tc.min || n > tc.max {
				t.Errorf("segments: got=%d, want between %d and %d", n, tc.min, tc.max)
			}
			verifyRestore(t, tg, app, src, "app")
		})
	}
}

// An application that writes without any pause: walsync's pin, always a
// little behind, would keep SQLite from ever restarting the WAL (it grew to
// 277,968 frames in 8 s at 30,000 commits/s before the brake); walsync
// briefly locks writers out past 10,000 frames so that it can restart.
// The restore is exact.
func TestWatchContinuousWriter(t *testing.T) {
	tg := fileTarget(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 100)
	w := startWatch(t, tg.cli, tg.args(src)...)
	app := openDB(t, src, "_synchronous=NORMAL")
	app.SetMaxOpenConns(1)
	frames := sqltest.WriteWithoutPause(t, app, src+"-wal", 60000, 200)
	t.Logf("60,000 commits without a pause: largest WAL %d frames", frames)
	if frames > 40000 {
		t.Errorf("WAL grew to %d frames: want walsync to let SQLite restart it past 10,000", frames)
	}
	w.stop()
	verifyRestore(t, tg, app, src, "app")
}

// One database that cannot be followed at start (a file that is not
// SQLite) does not stop the others: watch starts, logs it once, ships the
// others, and follows the file once it becomes a WAL database. When none
// of the databases can be followed, watch fails at start.
func TestWatchOneBadDatabaseDoesNotStopOthers(t *testing.T) {
	tg := fileTarget(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	createDB(t, good, 4096, "wal", 20)
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, []byte(strings.Repeat("not sqlite ", 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	tg.cli.fails(t, tg.args("watch", bad), "bad.db")

	w := startWatch(t, tg.cli, tg.args(good, bad)...)
	waitLog(t, w, "cannot replicate this database", 5*time.Second)
	app := openDB(t, good)
	insertBatches(t, app, 100, 5, 50)
	time.Sleep(3 * time.Second) // several looks at the bad file
	if n := strings.Count(w.logs(), "cannot replicate this database") + strings.Count(w.logs(), "cannot follow the database file yet"); n != 1 {
		t.Fatalf("lines about the bad file in 3 s: %d, want 1 (once a minute)\n%s", n, w.logs())
	}
	os.Remove(bad)
	createDB(t, bad, 4096, "wal", 7)
	waitLog(t, w, "following the database file again", 10*time.Second)
	w.stop()
	verifyRestore(t, tg, app, good, "good")
	verifyRestore(t, tg, openDB(t, bad), bad, "bad")
}
