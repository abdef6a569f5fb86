package vfs

import (
	"context"
	"database/sql"
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

// The last connection of a process that does not replicate its database
// closes while this process's attempt to take the replication over is
// under way, and that attempt fails: the process still ships its commits
// (it takes over at the close). It shipped nothing when the close found a
// start under way: the commits made after the previous owner's last
// capture were in no bucket (TestTwoProcesses/s3, once in CI: the start
// failed on lock.json, see replicate's TestClaimReleasedWhileTaken).
//
// The previous owner is a watcher in this process (the owner lock is a
// flock: this process's VFS is refused it like another process), and the
// start under way is d.starting held by the test.
func TestCloseDuringFailedTakeover(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	plain, err := sql.Open("sqlite3", "file:"+src)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	sqltest.Exec(t, plain, "PRAGMA journal_mode=WAL")
	sqltest.Schema(t, plain)

	fs, err := file.New(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	app, err := sql.Open("sqlite3", "file:"+src+"?vfs=walsync&walsync_bucket="+fs.String()+"&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	app.SetMaxOpenConns(1)

	// The owner's release of the name comes after its final capture and
	// uploads, while it still holds the owner lock: the application
	// commits then, and this process's start is held "under way".
	var d *database
	owner := &replicate.Watcher{Owner: "the test's owner", Storage: &onDelete{Storage: fs, key: "app/" + walsync.LockFile, f: func() {
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
	}}}
	if err := owner.Add(src, "app"); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	owner.OnReady = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- owner.Run(ctx) }()
	<-ready
	sqltest.InsertBatches(t, app, 1, 50, 5) // this process's VFS does not replicate: the owner ships these
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
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
	d.starting = false // the start failed
	d.mu.Unlock()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}

	var busy, logFrames, ckpt int
	if err := plain.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &ckpt); err != nil || busy != 0 {
		t.Fatalf("wal_checkpoint(TRUNCATE): busy=%d, %v", busy, err)
	}
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "restored.db")
	if _, err := (&restore.Restorer{Storage: fs}).Restore(context.Background(), "app", out, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sqltest.MustEqual(t, got, "the source", want)
	if n := sqltest.CheckRestored(t, out); n != 100 {
		t.Fatalf("rows restored: got=%d, want 100", n)
	}
}
