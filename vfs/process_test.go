package vfs_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/walsync/walsync/backend"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/restore"
)

// The test binary doubles as the application process of the tests below:
// with WALSYNC_TEST_WRITER set it opens WALSYNC_TEST_DSN through the VFS,
// commits WALSYNC_TEST_TXNS transactions (0: until killed) of 5 rows each
// in batch WALSYNC_TEST_WRITER, prints "committed N" after each, closes the
// database and exits.
func TestMain(m *testing.M) {
	if id := os.Getenv("WALSYNC_TEST_WRITER"); id != "" {
		os.Exit(writer(id))
	}
	os.Exit(m.Run())
}

func writer(id string) int {
	batch, _ := strconv.Atoi(id)
	txns, _ := strconv.Atoi(os.Getenv("WALSYNC_TEST_TXNS"))
	db, err := sql.Open("sqlite3", os.Getenv("WALSYNC_TEST_DSN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db.SetMaxOpenConns(1)
	out := bufio.NewWriter(os.Stdout)
	for i := 0; txns == 0 || i < txns; i++ {
		tx, err := db.Begin()
		if err == nil {
			for r := 0; r < 5 && err == nil; r++ {
				_, err = tx.Exec("INSERT INTO t (batch, v) VALUES (?, ?)", batch, strings.Repeat("w", 300)+fmt.Sprint(i))
			}
			if err == nil {
				_, err = tx.Exec("UPDATE counter SET n = n + 5")
			}
			if err == nil {
				err = tx.Commit()
			} else {
				tx.Rollback()
			}
		}
		if err != nil && writerOnError(out, i, err) {
			return 1
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			return 1
		}
		if b := os.Getenv("WALSYNC_TEST_CHECK_BUCKET"); b != "" {
			// walsync_sync=1: the commit that returned must be in a
			// restore made now.
			n, err := restoredRows(bucket{url: b, endpoint: os.Getenv("WALSYNC_TEST_CHECK_ENDPOINT")}, batch)
			if err != nil || n != 5*(i+1) {
				fmt.Fprintf(os.Stderr, "writer: after commit %d returned, the restore has %d rows of batch %d (%v), want %d\n", i+1, n, batch, err, 5*(i+1))
				return 1
			}
		}
		fmt.Fprintf(out, "committed %d\n", i+1)
		out.Flush()
	}
	if err := db.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "writer: close:", err)
		return 1
	}
	return 0
}

// restoredRows restores the latest state of "app" from b into a
// temporary file and counts the rows of batch.
func restoredRows(b bucket, batch int) (int, error) {
	ctx := context.Background()
	st, err := backend.Open(ctx, b.url, backend.Options{Endpoint: b.endpoint})
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "walsync-check-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "r.db")
	if _, err := (&restore.Restorer{Storage: st}).Restore(ctx, "app", out, restore.Options{}); err != nil {
		return 0, err
	}
	db, err := sql.Open("sqlite3", "file:"+out+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRow("SELECT count(*) FROM t WHERE batch = ?", batch).Scan(&n)
	return n, err
}

// startWriter runs the test binary as a writer process; extra are more
// environment variables.
func startWriter(t *testing.T, dsn string, id, txns int, extra ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "WALSYNC_TEST_WRITER="+strconv.Itoa(id),
		"WALSYNC_TEST_TXNS="+strconv.Itoa(txns), "WALSYNC_TEST_DSN="+dsn), extra...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, bufio.NewScanner(stdout)
}

// prepare creates src in WAL mode with the schema, without the VFS.
func prepare(t *testing.T, src string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+src)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	createSchema(t, db)
}

// Two processes write the same database through the VFS at once: one
// replicates it (the other's commits included), and when it exits first
// the other takes over. The restore equals the checkpointed source.
func TestTwoProcesses(t *testing.T) {
	eachBucket(t, func(t *testing.T, b bucket) {
		src := filepath.Join(t.TempDir(), "app.db")
		prepare(t, src)
		dsn := b.dsn(src)
		a, aout := startWriter(t, dsn, 1, 150)
		c, cout := startWriter(t, dsn, 2, 400)
		for _, p := range []struct {
			cmd *exec.Cmd
			out *bufio.Scanner
		}{{a, aout}, {c, cout}} {
			for p.out.Scan() {
			}
			if err := p.cmd.Wait(); err != nil {
				t.Fatalf("writer: %v", err)
			}
		}
		want := checkpointedBytes(t, src)
		got, n := restoreBytes(t, b, "app")
		mustEqual(t, got, want)
		if n != 5*(150+400) {
			t.Fatalf("rows restored: got=%d, want %d", n, 5*(150+400))
		}
	})
}

// The application killed with SIGKILL mid-workload, then reopened: what it
// committed before the kill is in the bucket after the reopen, and the
// restore equals the checkpointed source.
func TestAppKilledThenReopened(t *testing.T) {
	eachBucket(t, func(t *testing.T, b bucket) {
		src := filepath.Join(t.TempDir(), "app.db")
		prepare(t, src)
		dsn := b.dsn(src)
		committed := 0
		for round := 0; round < 3; round++ {
			cmd, out := startWriter(t, dsn, round, 0)
			target := committed + 40 + 30*round
			for out.Scan() {
				if n, err := strconv.Atoi(strings.TrimPrefix(out.Text(), "committed ")); err == nil && n >= 40+30*round {
					break
				}
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			committed = target
		}
		// The reopen captures what the killed process left in the WAL.
		db := openVFS(t, b, src)
		var n int
		if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		want := checkpointedBytes(t, src)
		got, rn := restoreBytes(t, b, "app")
		mustEqual(t, got, want)
		if rn != n || n < 5*committed {
			t.Fatalf("rows: restored %d, source %d, want at least %d committed", rn, n, 5*committed)
		}
	})
}

// Transactions larger than the page cache (SQLite writes frames before the
// commit and may rewrite them), and a rolled-back transaction after such a
// spill: the restore holds exactly the committed state.
func TestSpillAndRollback(t *testing.T) {
	b := fileBucket(t)
	if os.Getenv(testenv.EnvEndpoint) != "" {
		b = s3Bucket(t)
	}
	src := filepath.Join(t.TempDir(), "app.db")
	prepare(t, src)
	db := openVFS(t, b, src, "_cache_size=10")
	db.SetMaxOpenConns(1)
	exec1(t, db, "PRAGMA cache_size=10")
	insertBatches(t, db, 0, 3000, 3000) // ~1.5 MB in one transaction: spills
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		if _, err := tx.Exec("INSERT INTO t (batch, v) VALUES (-1, ?)", strings.Repeat("r", 500)); err != nil {
			t.Fatal(err)
		}
	}
	exec1(t, tx, "UPDATE t SET v = 'changed' WHERE batch = 0")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	insertBatches(t, db, 1, 200, 20)
	exec1(t, db, "UPDATE t SET v = 'big' || v WHERE id % 3 = 0") // rewrites pages across the file
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	want := checkpointedBytes(t, src)
	got, n := restoreBytes(t, b, "app")
	mustEqual(t, got, want)
	if n != 3200 {
		t.Fatalf("rows restored: got=%d, want 3200 (the rolled-back rows must not be there)", n)
	}
}

// walsync_sync=1 in a process that does not replicate the database (this
// test process does): each commit returns only once the replicating
// process has shipped it. The writer checks with a restore after every
// commit.
func TestSyncCommitInAnotherProcess(t *testing.T) {
	eachBucket(t, func(t *testing.T, b bucket) {
		src := filepath.Join(t.TempDir(), "app.db")
		prepare(t, src)
		owner := openVFS(t, b, src)
		exec1(t, owner, "INSERT INTO t (batch, v) VALUES (0, 'owner')")
		exec1(t, owner, "UPDATE counter SET n = n + 1")
		cmd, out := startWriter(t, b.dsn(src, "walsync_sync=1"), 5, 15,
			"WALSYNC_TEST_CHECK_BUCKET="+b.url, "WALSYNC_TEST_CHECK_ENDPOINT="+b.endpoint)
		lines := 0
		for out.Scan() {
			lines++
		}
		if err := cmd.Wait(); err != nil || lines != 15 {
			t.Fatalf("sync writer in a second process: %v after %d commits", err, lines)
		}
		if err := owner.Close(); err != nil {
			t.Fatal(err)
		}
		want := checkpointedBytes(t, src)
		got, _ := restoreBytes(t, b, "app")
		mustEqual(t, got, want)
	})
}
