package vfs

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/file"
	"github.com/walsync/walsync/internal/sqltest"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/restore"
)

// onDelete runs a test's function once, before the first Delete of key.
type onDelete struct {
	walsync.Storage
	key  string
	once sync.Once
	f    func()
}

func (s *onDelete) Delete(ctx context.Context, key string) error {
	if key == s.key {
		s.once.Do(s.f)
	}
	return s.Storage.Delete(ctx, key)
}

// newPlainSource creates app.db in journal mode mode with the schema,
// without the VFS, and a file bucket.
func newPlainSource(t *testing.T, mode string) (src string, fs *file.Client) {
	t.Helper()
	dir := t.TempDir()
	src = filepath.Join(dir, "app.db")
	plain, err := sql.Open("sqlite3", "file:"+src)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	sqltest.Exec(t, plain, "PRAGMA journal_mode="+mode)
	sqltest.Schema(t, plain)
	if fs, err = file.New(filepath.Join(dir, "bucket")); err != nil {
		t.Fatal(err)
	}
	return src, fs
}

// openThroughVFS opens src through the VFS into fs, one connection.
func openThroughVFS(t *testing.T, src string, fs *file.Client) *sql.DB {
	t.Helper()
	app, err := sql.Open("sqlite3", "file:"+src+"?vfs=walsync&walsync_bucket="+fs.String()+"&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	app.SetMaxOpenConns(1)
	return app
}

// startOwner runs a watcher of src in this process, the database's owner
// (the owner lock is a flock: this process's VFS is refused it like
// another process). The returned function stops it.
func startOwner(t *testing.T, src string, st walsync.Storage) (stop func()) {
	t.Helper()
	owner := &replicate.Watcher{Owner: "the test's owner", Storage: st}
	if err := owner.Add(src, "app"); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	owner.OnReady = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- owner.Run(ctx) }()
	select {
	case <-ready:
	case err := <-ran:
		t.Fatalf("owner: %v", err)
	}
	return func() {
		cancel()
		if err := <-ran; err != nil {
			t.Fatal(err)
		}
	}
}

// restoreEqualsSource restores "app" from fs and compares it with the
// source after wal_checkpoint(TRUNCATE); it returns the rows restored.
func restoreEqualsSource(t *testing.T, src string, fs *file.Client) int {
	t.Helper()
	want := sqltest.CheckpointedFile(t, src)
	out := filepath.Join(t.TempDir(), "restored.db")
	if _, err := (&restore.Restorer{Storage: fs}).Restore(context.Background(), "app", out, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sqltest.MustEqual(t, got, "the source", want)
	return sqltest.CheckRestored(t, out)
}

// The last connection of a process that does not replicate its database
// closes while this process's attempt to take the replication over is
// under way, and that attempt fails: the process still ships its commits
// (it takes over at the close). It shipped nothing when the close found a
// start under way: the commits made after the previous owner's last
// capture were in no bucket (TestTwoProcesses/s3, once in CI: the start
// failed on lock.json, see replicate's TestClaimReleasedWhileTaken).
//
// The previous owner is a watcher in this process (the owner lock is a
// flock: this process's VFS is refused it like another process,
// startOwner), and the start under way is d.starting held by the test.
func TestCloseDuringFailedTakeover(t *testing.T) {
	src, fs := newPlainSource(t, "WAL")
	app := openThroughVFS(t, src, fs)

	// The owner's release of the name comes after its final capture and
	// uploads, while it still holds the owner lock: the application
	// commits then, and this process's start is held "under way".
	var d *database
	stopOwner := startOwner(t, src, &onDelete{Storage: fs, key: "app/" + walsync.LockFile, f: func() {
		sqltest.InsertBatches(t, app, 2, 50, 5)
		dbMu.RLock()
		d = byPath[src]
		dbMu.RUnlock()
		for {
			d.mu.Lock()
			if !d.starting && d.w == nil {
				d.starting = true
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}})
	sqltest.InsertBatches(t, app, 1, 50, 5) // this process's VFS does not replicate: the owner ships these
	stopOwner()
	if d == nil {
		t.Fatal("the owner did not release the name")
	}

	closed := make(chan error, 1)
	go func() { closed <- app.Close() }()
	for { // the close has begun
		dbMu.RLock()
		_, open := byPath[src]
		dbMu.RUnlock()
		if !open {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // and looked at d.starting
	d.mu.Lock()
	d.starting, d.startErr = false, errors.New("simulated failure") // the start failed
	d.mu.Unlock()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := restoreEqualsSource(t, src, fs); n != 100 {
		t.Fatalf("rows restored: got=%d, want 100", n)
	}
}

// A start that fails for another reason than "owned" (here the bucket
// directory is a file for a while) is retried in the background: the
// process replicates again while it runs, not only at its close. It used
// to write unreplicated until then. The database enters WAL mode after
// its open, so its first commit starts the replication.
func TestStartRetriedAfterFailure(t *testing.T) {
	src, fs := newPlainSource(t, "DELETE")
	if err := os.WriteFile(fs.Root(), nil, 0o644); err != nil { // the bucket is unusable
		t.Fatal(err)
	}
	app := openThroughVFS(t, src, fs)
	defer app.Close()
	sqltest.Exec(t, app, "PRAGMA journal_mode=WAL")
	sqltest.InsertBatches(t, app, 1, 50, 5)
	dbMu.RLock()
	d := byPath[src]
	dbMu.RUnlock()
	time.Sleep(200 * time.Millisecond) // the starts the commits asked for have failed
	if w := d.waitStarted(context.Background()); w != nil {
		t.Fatal("replicating into an unusable bucket")
	}
	if err := os.Remove(fs.Root()); err != nil {
		t.Fatal(err)
	}
	// A retry (1 s, then 2 s after the failures) takes over, with no write
	// to ask for it.
	deadline := time.Now().Add(20 * time.Second)
	var w *replicate.Watcher
	for {
		d.mu.Lock()
		w = d.w
		d.mu.Unlock()
		if w != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("20 s after the bucket came back, this process still does not replicate the database")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sqltest.InsertBatches(t, app, 2, 50, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Durable(ctx, src); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if n := restoreEqualsSource(t, src, fs); n != 100 {
		t.Fatalf("rows restored: got=%d, want 100", n)
	}
}
