package replicate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync"
)

// hookStorage runs a test's function before a Get or Delete of a key.
type hookStorage struct {
	walsync.Storage
	mu       sync.Mutex
	onGet    map[string]func()
	onDelete map[string]func()
}

func (h *hookStorage) hook(m map[string]func(), key string) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := m[key]
	delete(m, key) // once
	return f
}

func (h *hookStorage) Get(ctx context.Context, key string) (io.ReadCloser, walsync.ObjectInfo, error) {
	if f := h.hook(h.onGet, key); f != nil {
		f()
	}
	return h.Storage.Get(ctx, key)
}

func (h *hookStorage) Delete(ctx context.Context, key string) error {
	if f := h.hook(h.onDelete, key); f != nil {
		f()
	}
	return h.Storage.Delete(ctx, key)
}

func putClaim(t *testing.T, st walsync.Storage, c writerClaim) {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if err := st.Put(context.Background(), claimKey("app"), bytes.NewReader(b), int64(len(b)), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
}

// A watcher that finds lock.json taken and then gone when it reads it
// (the previous owner released the name just then, as a VFS process does
// when it hands the database over to another) takes the name: it is free.
// It was refused as "another writer", and the process taking over then
// shipped nothing (TestTwoProcesses/s3, once in CI).
func TestClaimReleasedWhileTaken(t *testing.T) {
	src, app, fs := newSource(t)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(100))")
	host, _ := os.Hostname()
	putClaim(t, fs, writerClaim{ID: "previous", Host: host, PID: 1, Database: src, Started: time.Now()})
	st := &hookStorage{Storage: fs, onGet: map[string]func(){
		claimKey("app"): func() {
			if err := fs.Delete(context.Background(), claimKey("app")); err != nil {
				t.Error(err)
			}
		},
	}}
	rw := startWatcher(t, &Watcher{Storage: st}, src, "app")
	c, err := readClaim(context.Background(), fs, claimKey("app"))
	if err != nil {
		t.Fatal(err)
	}
	if d := rw.w.all()[0]; c.ID != d.claimID || c.ID == "previous" {
		t.Fatalf("lock.json holds claim %q; the watcher's is %q", c.ID, d.claimID)
	}
	rw.stop(t)
	restoreMatches(t, fs, src)
}

// A watcher lets go of the name (lock.json) before the spool's owner lock:
// a process can take the database over only once the lock is free, and by
// then the name is free too. The other way round, the new owner's claim
// met the old owner's release halfway (a read, then a delete): it failed
// to read the claim the old owner had just deleted, or lost its own to
// that delete.
func TestNameReleasedBeforeOwnerLock(t *testing.T) {
	src, app, fs := newSource(t)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(100))")
	var ownedAtRelease, released bool
	st := &hookStorage{Storage: fs, onDelete: map[string]func(){
		claimKey("app"): func() { released, ownedAtRelease = true, OwnedElsewhere(src) },
	}}
	rw := startWatcher(t, &Watcher{Storage: st}, src, "app")
	rw.stop(t)
	if !released {
		t.Fatal("the watcher did not delete lock.json when it stopped")
	}
	if !ownedAtRelease {
		t.Fatal("lock.json was deleted after the owner lock was let go")
	}
	if OwnedElsewhere(src) {
		t.Fatal("the owner lock is still held after Run returned")
	}
}

// A background capture asked for before the watcher stops (a VFS hook's
// Flush), which gets the database's lock only after the final sync, does
// not capture: what it would take (another process's newer commits) goes
// into a segment the shutdown no longer uploads. Those commits are the
// next owner's to capture; a clean stop leaves an empty spool.
func TestNoCaptureAfterFinalSync(t *testing.T) {
	src, app, fs := newSource(t)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	gate := make(chan struct{})
	w := &Watcher{Batch: true, SyncInterval: time.Hour, SpoolNotify: true}
	var d *DB
	// At the release of the name, after the final sync and uploads: a
	// commit, then the capture that was waiting runs.
	st := &hookStorage{Storage: fs, onDelete: map[string]func(){
		claimKey("app"): func() {
			mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
			close(gate)
			for d.flushing.Load() {
				time.Sleep(time.Millisecond)
			}
		},
	}}
	w.Storage = st
	rw := startWatcher(t, w, src, "app")
	d = w.all()[0]
	w.testHookBackground = func() { <-gate }
	w.Flush(src)
	rw.stop(t)
	entries, err := readOnlySpool(src).entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("spool after a clean stop: %v, want empty", entries)
	}
}

// The final sync seals everything it captures: the pin's move after its
// capture takes the commits made meanwhile (another process writes on)
// into the open segment, which the shutdown then left in the spool
// ("1 captured objects not yet uploaded", in 18 of 60 runs of
// TestTwoProcesses/s3).
func TestFinalSyncSealsWhatItCaptures(t *testing.T) {
	src, app, fs := newSource(t)
	w := &Watcher{Storage: fs, Batch: true, SyncInterval: time.Hour, SpoolNotify: true}
	var calls atomic.Int32
	w.testHookCapture = func() {
		// The final sync's capture, then its pin's move: a commit just
		// before the second.
		if w.stopping.Load() && calls.Add(1) == 2 {
			mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
		}
	}
	rw := startWatcher(t, w, src, "app")
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	rw.stop(t)
	if n := calls.Load(); n < 2 {
		t.Fatalf("the final sync made %d captures, want the pin's move to capture too", n)
	}
	entries, err := readOnlySpool(src).entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("spool after a clean stop: %v, want empty", entries)
	}
	restoreMatches(t, fs, src)
}

// lostAnswer stores a segment's first Put and answers ErrExists, as a
// retry after a lost answer (or a restart after a crash) finds it; the
// check that follows (Stat) then fails once.
type lostAnswer struct {
	walsync.Storage
	mu            sync.Mutex
	put, statFail bool
}

func (l *lostAnswer) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) error {
	l.mu.Lock()
	first := !l.put && strings.Contains(key, "/"+walsync.SegmentDir+"/")
	l.put = l.put || first
	l.mu.Unlock()
	if err := l.Storage.Put(ctx, key, body, size, sum); err != nil || !first {
		return err
	}
	return fmt.Errorf("put %s: %w", key, walsync.ErrExists)
}

func (l *lostAnswer) Stat(ctx context.Context, key string) (walsync.ObjectInfo, error) {
	l.mu.Lock()
	fail := !l.statFail
	l.statFail = true
	l.mu.Unlock()
	if fail {
		return walsync.ObjectInfo{}, errors.New("connection reset by peer")
	}
	return l.Storage.Stat(ctx, key)
}

// A segment found in the bucket whose checksum cannot be read (the HEAD
// failed: the network, or the shutdown ending the request) is uploaded
// again later. It was taken for a segment with other bytes: "another
// writer", and the database's replication stopped for good (seen at the
// shutdown of TestAppKilledThenReopened/s3, 25 of 210 runs, "context
// canceled").
func TestUploadCheckFailureIsRetried(t *testing.T) {
	src, app, fs := newSource(t)
	st := &lostAnswer{Storage: fs}
	rw := startWatcher(t, &Watcher{Storage: st}, src, "app")
	commitDurable(t, rw, app, src, 3)
	rw.stop(t)
	restoreMatches(t, fs, src)
}
