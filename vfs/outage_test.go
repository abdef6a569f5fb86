package vfs_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/vfs"
)

// proxiedBucket is a MinIO bucket reached through a fault proxy: the
// bucket of the test, and the proxy that takes it away.
func proxiedBucket(t *testing.T) (bucket, *faultproxy.Proxy) {
	t.Helper()
	env := testenv.S3(t)
	env.Setenv(t)
	p := faultproxy.Start(t, env.Endpoint)
	return bucket{url: "s3://" + testenv.NewBucket(t, env) + "/vfs", endpoint: p.URL()}, p
}

// commitBatch inserts 5 rows of batch into t in one transaction and
// returns the COMMIT's error.
func commitBatch(db *sql.DB, batch int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for r := 0; r < 5; r++ {
		if _, err := tx.Exec("INSERT INTO t (batch, v) VALUES (?, ?)", batch, strings.Repeat("s", 200)); err != nil {
			tx.Rollback()
			return err
		}
	}
	if _, err := tx.Exec("UPDATE counter SET n = n + 5"); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func rowsOf(t *testing.T, db *sql.DB, batch int) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t WHERE batch = ?", batch).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// isIOErr says whether err is SQLITE_IOERR from SQLite.
func isIOErr(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrIoErr
}

// walsync_sync=1 with the bucket unreachable: the COMMIT fails with
// SQLITE_IOERR, never succeeds; the transaction is committed locally (as
// documented) and shipped once the bucket is back; later commits succeed
// again; the restore equals the source.
func TestSyncCommitFailsWhenUnreachable(t *testing.T) {
	for _, mode := range []faultproxy.Mode{faultproxy.Refuse, faultproxy.Blackhole} {
		t.Run(mode.String(), func(t *testing.T) {
			b, p := proxiedBucket(t)
			src := filepath.Join(t.TempDir(), "app.db")
			prepare(t, src)
			db := openVFS(t, b, src, "walsync_sync=1", "walsync_sync_timeout=3s")
			db.SetMaxOpenConns(1)
			if err := commitBatch(db, 1); err != nil {
				t.Fatalf("commit with the bucket reachable: %v", err)
			}
			p.Set(mode)
			start := time.Now()
			err := commitBatch(db, 2)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("walsync_sync=1 commit with the bucket unreachable (%s) returned success after %v", mode, took)
			}
			if !isIOErr(err) {
				t.Fatalf("failed commit: got=%v, want SQLITE_IOERR", err)
			}
			t.Logf("commit failed after %v: %v", took.Round(time.Millisecond), err)
			// Committed locally, as documented: the connection goes on and
			// sees it.
			if n := rowsOf(t, db, 2); n != 5 {
				t.Fatalf("rows of the failed commit, read back: %d, want 5 (committed locally)", n)
			}
			p.Set(faultproxy.Pass)
			// The next commit succeeds once the bucket is back (within its
			// timeout or on a later try while retries drain).
			var cerr error
			for try := 0; try < 10; try++ {
				if cerr = commitBatch(db, 3+try); cerr == nil {
					break
				}
				t.Logf("commit after the bucket came back, try %d: %v", try, cerr)
			}
			if cerr != nil {
				t.Fatalf("commits still fail after the bucket came back: %v", cerr)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			want := checkpointedBytes(t, src)
			got, _ := restoreBytes(t, b, "app")
			mustEqual(t, got, want)
		})
	}
}

// The application is killed with SIGKILL right after a sync commit
// failed: once the bucket is back and the database is opened again, a
// restore holds every acknowledged commit and the failed one too (it was
// committed locally: the documented fate).
func TestSyncCommitFailedThenKilled(t *testing.T) {
	b, p := proxiedBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	prepare(t, src)
	cmd, out := startWriter(t, b.dsn(src, "walsync_sync=1", "walsync_sync_timeout=2s"), 7, 0,
		"WALSYNC_TEST_ON_ERROR=wait")
	acked := 0
	for out.Scan() {
		line := out.Text()
		if n, err := strconv.Atoi(strings.TrimPrefix(line, "committed ")); err == nil {
			acked = n
			if n == 20 {
				p.Set(faultproxy.Refuse)
			}
			continue
		}
		if strings.HasPrefix(line, "failed ") {
			if !strings.Contains(line, "disk I/O error") {
				t.Fatalf("writer: %s; want SQLITE_IOERR", line)
			}
			break
		}
	}
	if acked < 20 {
		t.Fatalf("writer stopped after %d acknowledged commits", acked)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	t.Logf("%d commits acknowledged, then one failed; killed", acked)
	p.Set(faultproxy.Pass)
	db := openVFS(t, b, src)
	total := rowsOf(t, db, 7)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if total != 5*(acked+1) {
		t.Fatalf("rows in the source: %d, want %d (%d acknowledged + the failed one, committed locally)", total, 5*(acked+1), acked)
	}
	want := checkpointedBytes(t, src)
	got, n := restoreBytes(t, b, "app")
	mustEqual(t, got, want)
	if n != total {
		t.Fatalf("restored rows: %d, want %d", n, total)
	}
}

// writerOnError is the writer's behaviour after a failed commit with
// WALSYNC_TEST_ON_ERROR=wait: print "failed N: error" and wait to be
// killed.
func writerOnError(out *bufio.Writer, i int, err error) bool {
	if os.Getenv("WALSYNC_TEST_ON_ERROR") != "wait" {
		return false
	}
	fmt.Fprintf(out, "failed %d: %v\n", i+1, err)
	out.Flush()
	time.Sleep(time.Hour)
	return true
}

// recorder keeps the messages of log records at WARN and above.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// One policy for a bucket that cannot be reached at open, for a new and
// an existing database: the open succeeds, async writes go on, one WARN
// says so, a walsync_sync=1 commit fails; once the bucket is back,
// replication starts by itself and the restore equals the source.
func TestUnreachableAtOpen(t *testing.T) {
	for _, existing := range []bool{true, false} {
		t.Run(map[bool]string{true: "existing", false: "new"}[existing], func(t *testing.T) {
			b, p := proxiedBucket(t)
			rec := &recorder{}
			vfs.Register(vfs.Options{Logger: slog.New(rec), CloseTimeout: 2 * time.Second})
			t.Cleanup(func() { vfs.Register(vfs.Options{}) })
			src := filepath.Join(t.TempDir(), "app.db")
			if existing {
				prepare(t, src)
			}
			p.Set(faultproxy.Refuse)
			t0 := time.Now()
			db := openVFS(t, b, src)
			db.SetMaxOpenConns(1)
			if !existing {
				createSchema(t, db)
			}
			insertBatches(t, db, 0, 50, 10) // writes go on
			t.Logf("open and first writes with the bucket unreachable: %v", time.Since(t0).Round(time.Millisecond))
			if n := rec.count("cannot replicate this database now"); n != 1 {
				t.Fatalf("WARN lines about the unreachable bucket: %d, want 1; log: %q", n, rec.msgs)
			}
			var text string
			if err := db.QueryRow("PRAGMA walsync_status").Scan(&text); err != nil || !strings.Contains(text, `"replicating":false`) {
				t.Fatalf("status while unreachable: %s (%v)", text, err)
			}
			// A sync commit on another database of the same process fails
			// too (same policy): the bucket is the same.
			other := filepath.Join(filepath.Dir(src), "other.db")
			prepare(t, other)
			sdb := openVFS(t, b, other, "walsync_sync=1", "walsync_sync_timeout=2s")
			if err := commitBatch(sdb, 1); !isIOErr(err) {
				t.Fatalf("walsync_sync=1 commit with the bucket unreachable at open: got=%v, want SQLITE_IOERR", err)
			}
			sdb.Close()
			t.Logf("sync commit failed at %v", time.Since(t0).Round(time.Millisecond))
			p.Set(faultproxy.Pass)
			deadline := time.Now().Add(60 * time.Second)
			for {
				if err := db.QueryRow("PRAGMA walsync_status").Scan(&text); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(text, `"replicating":true`) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("replication did not start within 60 s of the bucket coming back: %s", text)
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("replicating at %v", time.Since(t0).Round(time.Millisecond))
			if rec.count("replication started") != 0 {
				t.Fatalf("recovery logged at WARN or above: %q", rec.msgs)
			}
			insertBatches(t, db, 10, 20, 10)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			want := checkpointedBytes(t, src)
			got, n := restoreBytes(t, b, "app")
			mustEqual(t, got, want)
			if n != 70 {
				t.Fatalf("restored rows: %d, want 70", n)
			}
		})
	}
}
