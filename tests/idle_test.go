package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Twenty-four databases under a descriptor limit that lets only a few be
// open at once (`ulimit -n 100`; a followed database holds 8): the ones
// that cannot be opened at start are logged once and looked at again,
// idle ones close their files (--idle-close 1s), and every database gets
// replicated. Then an application opens each, commits and closes it
// (SQLite would copy and remove the WAL at that close) three times: every
// commit reaches MinIO, no generation starts but the first, and with all
// of them idle again the process holds at most 2 descriptors per
// database.
func TestWatchUnderADescriptorLimit(t *testing.T) {
	tg := s3Target(t)
	dir := t.TempDir()
	const n, limit = 24, 100
	var paths []string
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("db%02d.db", i))
		createDB(t, p, 4096, "wal", 5)
		paths = append(paths, p)
	}
	args := append([]string{"-c", `ulimit -n ` + fmt.Sprint(limit) + ` && exec "$0" "$@"`, binary, "watch", "-v", "--idle-close", "1s"}, tg.args(paths...)...)
	w := startWatchCmd(t, tg.cli, exec.Command("sh", args...))
	if !strings.Contains(w.logs(), "too many open files") {
		t.Fatalf("the limit of %d descriptors was not reached at start:\n%s", limit, w.logs())
	}
	waitFor(t, w, "every database followed", time.Minute, func() bool {
		return strings.Count(w.logs(), "snapshot spooled") >= n
	})
	for round := 0; round < 3; round++ {
		for _, p := range paths {
			app := openDB(t, p)
			insertBatches(t, app, 100+round, 2, 10)
			app.Close()
		}
		time.Sleep(time.Second)
	}
	want := map[string]int{}
	for _, p := range paths {
		app := openDB(t, p)
		var rows int
		if err := app.QueryRow("SELECT count(*) FROM t").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		app.Close()
		want[p] = rows
	}
	// Every commit reaches the bucket, each database in its turn.
	var behind string
	waitFor(t, w, "every commit in the bucket", 2*time.Minute, func() bool {
		for _, p := range paths {
			if got := restoredRows(t, tg, p); got != want[p] {
				behind = fmt.Sprintf("%s: %d rows restored, %d in the database", p, got, want[p])
				t.Log(behind)
				return false
			}
		}
		return true
	})
	// All idle again: two descriptors per database at most (its owner
	// lock and the database file it holds a lock on), beside the
	// process's own.
	var fds int
	waitFor(t, w, "the databases asleep", time.Minute, func() bool {
		es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", w.cmd.Process.Pid))
		if err != nil {
			t.Skip("no /proc")
		}
		fds = len(es)
		return fds <= 2*n+20
	})
	t.Logf("%d databases asleep: %d descriptors in all", n, fds)
	if m := regexp.MustCompile(`starting a new generation" db=\S+ reason="([^"]*)"`).FindAllStringSubmatch(w.logs(), -1); len(m) != n {
		t.Fatalf("%d generations began for %d databases:\n%s", len(m), n, w.logs())
	} else {
		for _, g := range m {
			if g[1] != "no local state (first run)" {
				t.Fatalf("a generation began for another reason than the first run: %s\n%s", g[1], w.logs())
			}
		}
	}
	// One line per database at most about what it could not open (once a
	// minute).
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".db")
		lines := 0
		for _, l := range strings.Split(w.logs(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "db="+name+" ") && strings.Contains(l, "too many open files") {
				lines++
			}
		}
		if lines > 2 {
			t.Fatalf("%s: %d warnings about descriptors in under two minutes, want at most 2 (once a minute)\n%s", name, lines, w.logs())
		}
	}
	w.cmd.Process.Signal(syscall.SIGINT)
	<-w.done
	if !w.exitOK || strings.Contains(w.logs(), "panic:") {
		t.Fatalf("walsync watch did not exit cleanly:\n%s", w.logs())
	}
	for _, p := range paths[:4] {
		app := openDB(t, p)
		verifyRestore(t, tg, app, p, strings.TrimSuffix(filepath.Base(p), ".db"))
		app.Close()
	}
}

// waitFor polls cond every 250 ms until it holds, failing the test after
// limit.
func waitFor(t *testing.T, w *watcher, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v:\n%s", what, limit, w.logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// restoredRows restores the database at src from tg and counts its rows
// (-1 when it cannot be restored yet).
func restoredRows(t *testing.T, tg target, src string) int {
	t.Helper()
	out := filepath.Join(t.TempDir(), "r.db")
	if r := tg.cli.run(t, tg.args("restore", strings.TrimSuffix(filepath.Base(src), ".db"), "-o", out)...); r.code != 0 {
		return -1
	}
	db := openDB(t, out)
	defer db.Close()
	var rows int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&rows); err != nil {
		return -1
	}
	return rows
}
