package vfs_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/walsync/walsync/vfs"
)

// In async mode the shim skips the call into Go for the commits that come
// while the watcher has nothing to do for them (its deferred sync is
// armed, within the sync interval); the first commit after a quiet spell
// still calls, and ships at once. Every commit reaches the bucket, with
// the connection open and nothing more committed. WALSYNC_VFS_SKIP=0
// makes every commit call.
func TestSkippedCommitsShip(t *testing.T) {
	t.Run("skip", func(t *testing.T) {
		eachBucket(t, func(t *testing.T, b bucket) { bursts(t, b, true) })
	})
	t.Run("WALSYNC_VFS_SKIP=0", func(t *testing.T) {
		t.Setenv("WALSYNC_VFS_SKIP", "0")
		bursts(t, fileBucket(t), false)
	})
}

// bursts commits two bursts of one-row transactions 10 ms apart (two
// frames each, all below the first flush boundary at 200 frames), the
// second one after more than the sync interval (1 s) without a commit.
func bursts(t *testing.T, b bucket, skip bool) {
	src := filepath.Join(t.TempDir(), "app.db")
	db := openVFS(t, b, src)
	db.SetMaxOpenConns(1)
	createSchema(t, db)
	const burst = 40
	var calls [2]int64
	for i := range calls {
		before := vfs.CommitCalls()
		for j := 0; j < burst; j++ {
			insertBatches(t, db, i*burst+j, 1, 1)
			time.Sleep(10 * time.Millisecond)
		}
		calls[i] = vfs.CommitCalls() - before
		if i == 0 {
			time.Sleep(2500 * time.Millisecond)
		}
	}
	t.Logf("calls into Go for two bursts of %d commits: %v", burst, calls)
	for i, n := range calls {
		switch {
		case !skip && n != burst:
			t.Errorf("WALSYNC_VFS_SKIP=0, burst %d: %d calls, want %d (one a commit)", i+1, n, burst)
		case skip && n > burst/4:
			t.Errorf("burst %d: %d calls for %d commits, want most skipped", i+1, n, burst)
		case skip && n < 1:
			t.Errorf("burst %d: no call into Go: its first commit, after a quiet spell, must ship at once", i+1)
		}
	}
	// The last commit is in the bucket without a close or a further commit.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := restoredRows(b, 2*burst-1)
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the last commit, with the connection open: a restore has %d rows of it (err %v), want 1", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	want := checkpointedBytes(t, src)
	got, _ := restoreBytes(t, b, "app")
	mustEqual(t, got, want)
}
