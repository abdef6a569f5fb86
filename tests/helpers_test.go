// Package tests holds walsync's end-to-end tests: the real binary, real
// SQLite databases, the file backend and a real MinIO (started by
// `make test`; without it the S3 cases skip and say how to run them).
package tests

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/internal/sqltest"
	"github.com/walsync/walsync/internal/testenv"
)

// binary is the walsync CLI built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "walsync-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "walsync")
	build := exec.Command("go", "build", "-o", binary, "../cmd/walsync")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build walsync:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one walsync run printed.
type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// cli runs the binary with a clean AWS environment plus extra.
type cli struct {
	env []string
}

// fileCLI runs walsync with no AWS configuration at all.
func fileCLI(t *testing.T) *cli {
	return &cli{env: cleanEnv(t)}
}

// s3CLI runs walsync with MinIO's credentials in the environment, the way
// a user configures the AWS CLI; the endpoint goes in --endpoint.
func s3CLI(t *testing.T, env testenv.S3Env) *cli {
	return &cli{env: append(cleanEnv(t),
		"AWS_ACCESS_KEY_ID="+env.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+env.SecretKey,
		"AWS_REGION="+env.Region)}
}

func cleanEnv(t *testing.T) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "WALSYNC_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		out = append(out, kv)
	}
	home := t.TempDir()
	return append(out, "HOME="+home, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "none"))
}

func (c *cli) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run walsync %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	for _, bad := range []string{"panic:", "goroutine ", ".go:"} {
		if strings.Contains(r.stderr, bad) {
			t.Fatalf("walsync %v: stderr has a Go trace (%q):\n%s", args, bad, r.stderr)
		}
	}
	return r
}

// ok runs walsync and fails the test unless it exits 0.
func (c *cli) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := c.run(t, args...)
	if r.code != 0 {
		t.Fatalf("walsync %v: exit %d, want 0\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs walsync, wants a non-zero exit and an error line naming every
// fragment: the last line of stderr, after any logs, starting "walsync".
func (c *cli) fails(t *testing.T, args []string, fragments ...string) result {
	t.Helper()
	r := c.run(t, args...)
	if r.code == 0 {
		t.Fatalf("walsync %v: exit 0, want failure\nstdout: %s\nstderr: %s", args, r.stdout, r.stderr)
	}
	msg := strings.TrimSpace(r.stderr)
	lines := strings.Split(msg, "\n")
	last := lines[len(lines)-1]
	if r.code == 2 && len(lines) >= 2 && strings.HasPrefix(last, "Run 'walsync") {
		last = lines[len(lines)-2] // usage errors end with a hint line
	}
	if !strings.HasPrefix(last, "walsync") {
		t.Fatalf("walsync %v: error line %q does not start with walsync\nfull stderr: %s", args, last, msg)
	}
	for _, f := range fragments {
		if !strings.Contains(strings.ToLower(last), strings.ToLower(f)) {
			t.Fatalf("walsync %v: error line %q does not mention %q\nfull stderr: %s", args, last, f, msg)
		}
	}
	return r
}

// openDB opens a database for the test's own use (the "application").
func openDB(t *testing.T, path string, params ...string) *sql.DB {
	t.Helper()
	u := url.URL{Path: path}
	dsn := "file:" + u.EscapedPath() + "?_busy_timeout=10000"
	for _, p := range params {
		dsn += "&" + p
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec1(t *testing.T, db interface {
	Exec(string, ...any) (sql.Result, error)
}, q string, args ...any) {
	t.Helper()
	sqltest.Exec(t, db, q, args...)
}

// createDB makes a database at path with the given page size and journal
// mode and rows rows of ~200 bytes in table t, committed in batches.
func createDB(t *testing.T, path string, pageSize int, mode string, rows int) {
	t.Helper()
	db := openDB(t, path)
	db.SetMaxOpenConns(1)
	exec1(t, db, fmt.Sprintf("PRAGMA page_size=%d", pageSize))
	exec1(t, db, "PRAGMA journal_mode="+mode)
	exec1(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, batch INTEGER, v TEXT)")
	exec1(t, db, "CREATE TABLE counter (n INTEGER)")
	exec1(t, db, "INSERT INTO counter VALUES (0)")
	insertBatches(t, db, 0, rows, 100)
	db.Close()
}

// insertBatches inserts rows in transactions of per rows, keeping
// counter.n equal to count(*) so that a torn transaction is detectable.
func insertBatches(t *testing.T, db *sql.DB, batch0, rows, per int) {
	t.Helper()
	sqltest.InsertBatches(t, db, batch0, rows, per)
}

// checkpointed returns the bytes of the database at path after PRAGMA
// wal_checkpoint(TRUNCATE): the independent truth a restore must equal.
func checkpointed(t *testing.T, db *sql.DB, path string) []byte {
	t.Helper()
	return sqltest.Checkpointed(t, db, path)
}

// checkRestored verifies a restored database: integrity_check ok, and the
// counter equal to the row count (no torn transaction). It returns the
// row count.
func checkRestored(t *testing.T, path string) int {
	t.Helper()
	return sqltest.CheckRestored(t, path)
}

func mustEqualFiles(t *testing.T, got []byte, wantPath string, want []byte) {
	t.Helper()
	sqltest.MustEqual(t, got, wantPath, want)
}
