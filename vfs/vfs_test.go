package vfs_test

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/backend"
	"github.com/walsync/walsync/internal/sqltest"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/vfs"
)

// bucket is where a test replicates to, and how to open it again.
type bucket struct {
	url      string
	endpoint string
}

func fileBucket(t *testing.T) bucket {
	return bucket{url: "file://" + filepath.Join(t.TempDir(), "bucket")}
}

func s3Bucket(t *testing.T) bucket {
	env := testenv.S3(t)
	env.Setenv(t)
	return bucket{url: "s3://" + testenv.NewBucket(t, env) + "/vfs", endpoint: env.Endpoint}
}

// eachBucket runs f against the file backend and a real MinIO.
func eachBucket(t *testing.T, f func(t *testing.T, b bucket)) {
	t.Run("file", func(t *testing.T) { f(t, fileBucket(t)) })
	t.Run("s3", func(t *testing.T) { f(t, s3Bucket(t)) })
}

// dsn is the URI of src opened through the walsync VFS into b.
func (b bucket) dsn(src string, params ...string) string {
	u := url.URL{Path: src}
	q := "vfs=walsync&walsync_bucket=" + url.QueryEscape(b.url) + "&_busy_timeout=10000"
	if b.endpoint != "" {
		q += "&walsync_endpoint=" + url.QueryEscape(b.endpoint)
	}
	for _, p := range params {
		q += "&" + p
	}
	return "file:" + u.EscapedPath() + "?" + q
}

func openVFS(t *testing.T, b bucket, src string, params ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", b.dsn(src, params...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var (
	exec1         = sqltest.Exec
	insertBatches = sqltest.InsertBatches
	checkRestored = sqltest.CheckRestored
)

func createSchema(t *testing.T, db *sql.DB) {
	t.Helper()
	exec1(t, db, "PRAGMA journal_mode=WAL")
	sqltest.Schema(t, db)
}

// checkpointedBytes opens src with SQLite's default VFS, runs
// wal_checkpoint(TRUNCATE) and returns the database file: the independent
// truth a restore must equal.
func checkpointedBytes(t *testing.T, src string) []byte {
	t.Helper()
	return sqltest.CheckpointedFile(t, src)
}

// restoreBytes restores name from b (latest state) and returns the file,
// after checking integrity_check and the counter.
func restoreBytes(t *testing.T, b bucket, name string) ([]byte, int) {
	t.Helper()
	ctx := context.Background()
	st, err := backend.Open(ctx, b.url, backend.Options{Endpoint: b.endpoint})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	if _, err := (&restore.Restorer{Storage: st}).Restore(ctx, name, out, restore.Options{}); err != nil {
		t.Fatalf("restore %s: %v", name, err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return got, checkRestored(t, out)
}

func mustEqual(t *testing.T, got, want []byte) {
	t.Helper()
	sqltest.MustEqual(t, got, "the source", want)
}

func TestBaseVFS(t *testing.T) {
	if got := vfs.BaseVFS(); got != "unix" {
		t.Errorf("BaseVFS: got=%q, want unix", got)
	}
}

// A Go program writing through ?vfs=walsync: closing the last connection
// ships everything; the restore equals the checkpointed source.
func TestGoProgram(t *testing.T) {
	eachBucket(t, func(t *testing.T, b bucket) {
		src := filepath.Join(t.TempDir(), "app.db")
		db := openVFS(t, b, src)
		db.SetMaxOpenConns(2)
		createSchema(t, db)
		insertBatches(t, db, 0, 2000, 50)
		exec1(t, db, "DELETE FROM t WHERE id % 7 = 0")
		exec1(t, db, "UPDATE counter SET n = (SELECT count(*) FROM t)")
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		want := checkpointedBytes(t, src)
		got, n := restoreBytes(t, b, "app")
		mustEqual(t, got, want)
		t.Logf("%d rows, %d bytes restored byte for byte", n, len(got))
	})
}

// Reopening continues the generation: no new snapshot for an app restart.
func TestReopenContinues(t *testing.T) {
	b := fileBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	plain, err := sql.Open("sqlite3", "file:"+src)
	if err != nil {
		t.Fatal(err)
	}
	createSchema(t, plain)
	plain.Close()
	for round := 0; round < 3; round++ {
		db := openVFS(t, b, src)
		createSchema(t, db)
		insertBatches(t, db, round*10, 300, 30)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	want := checkpointedBytes(t, src)
	got, _ := restoreBytes(t, b, "app")
	mustEqual(t, got, want)
	snaps, _ := filepath.Glob(filepath.Join(strings.TrimPrefix(b.url, "file://"), "app", "snapshots", "*"))
	var n int
	for _, s := range snaps {
		if !strings.HasSuffix(s, ".sha256") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("snapshots after three opens: got=%d, want 1 (a reopen continues the generation)", n)
	}
}

// walsync_sync=1: every commit that returned is in a restore made right
// after it, with the connection still open.
func TestSyncCommitIsDurable(t *testing.T) {
	eachBucket(t, func(t *testing.T, b bucket) {
		src := filepath.Join(t.TempDir(), "app.db")
		db := openVFS(t, b, src, "walsync_sync=1")
		db.SetMaxOpenConns(1)
		createSchema(t, db)
		for i := 0; i < 5; i++ {
			start := time.Now()
			insertBatches(t, db, i, 20, 20)
			t.Logf("commit %d returned after %v", i, time.Since(start).Round(time.Millisecond))
			_, n := restoreBytes(t, b, "app")
			if n != 20*(i+1) {
				t.Fatalf("after commit %d returned: restore has %d rows, want %d", i, n, 20*(i+1))
			}
		}
	})
}

func TestNoBucketFailsOpen(t *testing.T) {
	t.Setenv("WALSYNC_BUCKET", "")
	src := filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite3", "file:"+src+"?vfs=walsync")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(); err == nil {
		t.Fatal("open without a bucket: want an error")
	}
}

func TestExclusiveLockingRefused(t *testing.T) {
	b := fileBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	db := openVFS(t, b, src)
	db.SetMaxOpenConns(1)
	_, err := db.Exec("PRAGMA locking_mode=EXCLUSIVE")
	if err == nil || !strings.Contains(err.Error(), "locking_mode=EXCLUSIVE") {
		t.Fatalf("PRAGMA locking_mode=EXCLUSIVE: got=%v, want an error naming it", err)
	}
}

// An application that writes without a pause: walsync's pin must not keep
// SQLite from restarting the WAL, which would then grow without bound
// (without CatchUp and Unpin it reached 22,000 frames in 20,000 commits).
// The restore is still exact.
func TestWALStaysBounded(t *testing.T) {
	b := fileBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	db := openVFS(t, b, src, "_synchronous=NORMAL")
	db.SetMaxOpenConns(1)
	createSchema(t, db)
	frames := sqltest.WriteWithoutPause(t, db, src+"-wal", 8000, 50)
	t.Logf("largest WAL seen: %d frames", frames)
	if frames > 3000 {
		t.Errorf("WAL grew to %d frames under continuous writes: want it restarted near SQLite's 1000-frame auto-checkpoint", frames)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	want := checkpointedBytes(t, src)
	got, _ := restoreBytes(t, b, "app")
	mustEqual(t, got, want)
}

// snapshotCount counts the snapshot objects of "app" in a file bucket.
func snapshotCount(t *testing.T, b bucket) int {
	t.Helper()
	snaps, _ := filepath.Glob(filepath.Join(strings.TrimPrefix(b.url, "file://"), "app", "snapshots", "*.db.zst"))
	return len(snaps)
}

// Continuity breaks start a new generation with a snapshot, and the
// restore still equals the source: a writer that does not use the VFS
// writes and truncates the WAL while no VFS connection is open; then the
// file is replaced (a restore over it).
func TestContinuityBreaks(t *testing.T) {
	b := fileBucket(t)
	src := filepath.Join(t.TempDir(), "app.db")
	db := openVFS(t, b, src)
	createSchema(t, db)
	insertBatches(t, db, 0, 300, 30)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, b); n != 1 {
		t.Fatalf("snapshots after the first session: %d, want 1", n)
	}

	// A plain connection (the default VFS) writes and truncates the WAL.
	plain, err := sql.Open("sqlite3", "file:"+src+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	insertBatches(t, plain, 10, 300, 30)
	exec1(t, plain, "PRAGMA wal_checkpoint(TRUNCATE)")
	insertBatches(t, plain, 20, 100, 10)
	plain.Close()

	db = openVFS(t, b, src)
	insertBatches(t, db, 30, 50, 10)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, b); n != 2 {
		t.Fatalf("snapshots after a writer without the VFS truncated the WAL: %d, want 2 (a new generation)", n)
	}
	want := checkpointedBytes(t, src)
	got, _ := restoreBytes(t, b, "app")
	mustEqual(t, got, want)

	// A restore over the file: another inode.
	tmp := src + ".new"
	if err := os.WriteFile(tmp, got, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"-wal", "-shm"} {
		os.Remove(src + ext)
	}
	if err := os.Rename(tmp, src); err != nil {
		t.Fatal(err)
	}
	db = openVFS(t, b, src)
	exec1(t, db, "PRAGMA journal_mode=WAL")
	insertBatches(t, db, 40, 50, 10)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, b); n != 3 {
		t.Fatalf("snapshots after the file was replaced: %d, want 3", n)
	}
	want = checkpointedBytes(t, src)
	got, _ = restoreBytes(t, b, "app")
	mustEqual(t, got, want)
}
