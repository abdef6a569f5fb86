package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// target is one bucket to run a test against, with the CLI that reaches it.
type target struct {
	name   string
	cli    *cli
	bucket string
	flags  []string // e.g. --endpoint for MinIO
}

func (tg target) args(args ...string) []string {
	return append(append(args, "-b", tg.bucket), tg.flags...)
}

func fileTarget(t *testing.T) target {
	return target{name: "file", cli: fileCLI(t), bucket: "file://" + t.TempDir()}
}

func s3Target(t *testing.T) target {
	env := testenv.S3(t)
	bucket := testenv.NewBucket(t, env)
	return target{name: "s3", cli: s3CLI(t, env), bucket: "s3://" + bucket + "/some/prefix",
		flags: []string{"--endpoint", env.Endpoint}}
}

// eachTarget runs fn against the file backend and MinIO.
func eachTarget(t *testing.T, fn func(t *testing.T, tg target)) {
	t.Run("file", func(t *testing.T) { fn(t, fileTarget(t)) })
	t.Run("s3", func(t *testing.T) { fn(t, s3Target(t)) })
}

// A live WAL database with committed pages still only in the WAL: the
// restore equals the source after wal_checkpoint(TRUNCATE), byte for byte.
func TestSnapshotRestoreExactWAL(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		for _, ps := range []int{1024, 4096, 65536} {
			t.Run(fmt.Sprint(ps), func(t *testing.T) {
				dir := t.TempDir()
				src := filepath.Join(dir, "app.db")
				createDB(t, src, ps, "wal", 2000)
				app := openDB(t, src)
				app.SetMaxOpenConns(1)
				exec1(t, app, "PRAGMA wal_autocheckpoint=0")
				insertBatches(t, app, 100, 500, 50)
				exec1(t, app, "DELETE FROM t WHERE id % 7 = 0")
				exec1(t, app, "UPDATE counter SET n = (SELECT count(*) FROM t)")
				if fi, err := os.Stat(src + "-wal"); err != nil || fi.Size() == 0 {
					t.Fatalf("want a non-empty WAL during the snapshot: %v", err)
				}

				tg.cli.ok(t, tg.args("snapshot", src)...)
				out := filepath.Join(dir, "restored.db")
				tg.cli.ok(t, tg.args("restore", "app", "-o", out)...)

				want := checkpointed(t, app, src)
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				mustEqualFiles(t, got, src, want)
				checkRestored(t, out)
			})
		}
	})
}

// A rollback-journal database restores byte for byte too.
func TestSnapshotRestoreExactRollbackJournal(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		dir := t.TempDir()
		src := filepath.Join(dir, "legacy.db")
		createDB(t, src, 4096, "delete", 3000)
		tg.cli.ok(t, tg.args("snapshot", src)...)
		out := filepath.Join(dir, "out.db")
		tg.cli.ok(t, tg.args("restore", "legacy", "-o", out)...)
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		mustEqualFiles(t, got, src, want)
		checkRestored(t, out)
	})
}

// Writers keep committing while the snapshot runs: the restore is the
// state after some committed transaction (counter == rows), passes
// integrity_check, and the writers were not stalled for the whole copy.
func TestSnapshotUnderConcurrentWrites(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		dir := t.TempDir()
		src := filepath.Join(dir, "busy.db")
		createDB(t, src, 4096, "wal", 60000) // ~15 MB
		app := openDB(t, src)
		app.SetMaxOpenConns(1)
		var stop atomic.Bool
		var commits atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; !stop.Load(); b++ {
				tx, err := app.Begin()
				if err != nil {
					t.Error(err)
					return
				}
				for i := 0; i < 20; i++ {
					tx.Exec("INSERT INTO t (batch, v) VALUES (?, ?)", 1000+b, strings.Repeat("y", 300))
				}
				tx.Exec("UPDATE counter SET n = n + 20")
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
				commits.Add(1)
			}
		}()
		time.Sleep(100 * time.Millisecond)
		before := commits.Load()
		tg.cli.ok(t, tg.args("snapshot", src)...)
		during := commits.Load() - before
		stop.Store(true)
		wg.Wait()
		t.Logf("%d commits while the snapshot ran", during)
		if during == 0 {
			t.Errorf("no commit happened while the snapshot ran: writers were blocked")
		}
		out := filepath.Join(dir, "out.db")
		tg.cli.ok(t, tg.args("restore", "busy", "-o", out)...)
		rows := checkRestored(t, out)
		if rows < 60000 {
			t.Fatalf("restored %d rows, want at least the 60000 committed before the snapshot", rows)
		}
	})
}

func TestListJSON(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		dir := t.TempDir()
		for _, n := range []string{"alpha", "beta"} {
			createDB(t, filepath.Join(dir, n+".db"), 4096, "wal", 100)
		}
		tg.cli.ok(t, tg.args("snapshot", filepath.Join(dir, "alpha.db"))...)
		tg.cli.ok(t, tg.args("snapshot", filepath.Join(dir, "alpha.db"))...) // same second: next key
		tg.cli.ok(t, tg.args("snapshot", filepath.Join(dir, "beta.db"), "--name", "team/beta")...)
		r := tg.cli.ok(t, tg.args("list", "--json")...)
		var dbs []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil {
			t.Fatalf("list --json output is not a JSON array: %v\n%s", err, r.stdout)
		}
		if len(dbs) != 2 {
			t.Fatalf("list --json: got=%d databases, want 2\n%s", len(dbs), r.stdout)
		}
		want := map[string]float64{"alpha": 2, "team/beta": 1}
		for _, d := range dbs {
			for _, f := range []string{"name", "snapshots", "latest_snapshot", "latest_wal", "size"} {
				if _, ok := d[f]; !ok {
					t.Errorf("list --json: object %v lacks field %q", d, f)
				}
			}
			name, _ := d["name"].(string)
			if got := d["snapshots"]; got != want[name] {
				t.Errorf("list --json %s snapshots: got=%v, want %v", name, got, want[name])
			}
			if ts, _ := d["latest_snapshot"].(string); ts == "" {
				t.Errorf("list --json %s latest_snapshot: got=%v, want a time", name, d["latest_snapshot"])
			} else if _, err := time.Parse(time.RFC3339, ts); err != nil {
				t.Errorf("list --json %s latest_snapshot %q: %v", name, ts, err)
			}
			if size, _ := d["size"].(float64); size <= 0 {
				t.Errorf("list --json %s size: got=%v, want > 0", name, d["size"])
			}
		}
		r = tg.cli.ok(t, tg.args("list")...)
		if !strings.Contains(r.stdout, "team/beta") || !strings.Contains(r.stdout, "alpha") {
			t.Errorf("list: got=%q, want both names", r.stdout)
		}
		// The restore of a nested name works too.
		tg.cli.ok(t, tg.args("restore", "team/beta", "-o", filepath.Join(dir, "b2.db"))...)
		checkRestored(t, filepath.Join(dir, "b2.db"))
	})
}

// The README's first command, as written: a relative file:// bucket.
func TestRelativeFileBucket(t *testing.T) {
	dir := t.TempDir()
	createDB(t, filepath.Join(dir, "app.db"), 4096, "wal", 100)
	c := fileCLI(t)
	cmd := func(args ...string) result {
		t.Helper()
		wd, _ := os.Getwd()
		if err := os.Chdir(dir); err != nil {
			t.Fatal(err)
		}
		defer os.Chdir(wd)
		return c.ok(t, args...)
	}
	cmd("snapshot", "app.db", "-b", "file://./backups")
	if _, err := os.Stat(filepath.Join(dir, "backups", "app", "snapshots")); err != nil {
		t.Fatalf("file://./backups: want snapshots under %s/backups: %v", dir, err)
	}
	cmd("restore", "app", "-o", "copy.db", "-b", "file://./backups")
	checkRestored(t, filepath.Join(dir, "copy.db"))
}
