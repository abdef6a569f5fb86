package replicate

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync"
	"golang.org/x/sys/unix"
)

// threadPolicy is the scheduling policy of the calling goroutine's thread
// (which the caller keeps locked).
func threadPolicy(t *testing.T) uint32 {
	t.Helper()
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Fatalf("sched_getattr: %v", err)
	}
	return a.Policy
}

// batchThreads lists the threads of this process that run SCHED_BATCH
// (field 41 of /proc/self/task/TID/stat).
func batchThreads(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", e.Name(), "stat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// f[0] is field 3 (state); the policy is field 41.
		if len(f) > 38 && f[38] == "3" {
			out = append(out, e.Name())
		}
	}
	return out
}

// waitNoBatchThreads fails unless every thread is back to its normal
// policy within a few seconds (goroutines of earlier tests may still be
// finishing a background task).
func waitNoBatchThreads(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := batchThreads(t)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads %v still run SCHED_BATCH: a background thread was handed back to the runtime as it was", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// policyInBackground is the policy inBackground runs its task at, called
// from a thread (locked by the caller) at SCHED_NORMAL.
func policyInBackground(t *testing.T) uint32 {
	t.Helper()
	if p := threadPolicy(t); p != unix.SCHED_NORMAL {
		t.Skipf("the test runs at scheduling policy %d, not SCHED_NORMAL", p)
	}
	var inside uint32
	inBackground(func() { inside = threadPolicy(t) })
	return inside
}

func TestInBackgroundRunsAtBatchAndPutsTheThreadBack(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	inside := policyInBackground(t)
	if inside != unix.SCHED_BATCH {
		t.Fatalf("inside inBackground: policy %d, want SCHED_BATCH (%d)", inside, unix.SCHED_BATCH)
	}
	if p := threadPolicy(t); p != unix.SCHED_NORMAL {
		t.Fatalf("after inBackground: policy %d, want SCHED_NORMAL", p)
	}

	// Many at once, blocking and yielding inside: none of their threads
	// goes back to the runtime's pool as a batch thread.
	var wg sync.WaitGroup
	bad := make(chan uint32, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inBackground(func() {
				time.Sleep(time.Millisecond)
				runtime.Gosched()
				if a, err := unix.SchedGetAttr(0, 0); err == nil && a.Policy != unix.SCHED_BATCH {
					bad <- a.Policy
				}
			})
		}()
	}
	wg.Wait()
	close(bad)
	for p := range bad {
		t.Errorf("a background task ran at policy %d, want SCHED_BATCH", p)
	}
	waitNoBatchThreads(t)
}

func TestInBackgroundLeavesAnotherPolicyAlone(t *testing.T) {
	done := make(chan uint32)
	go func() {
		// This goroutine ends locked: its thread, at SCHED_IDLE, ends too.
		runtime.LockOSThread()
		if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0); err != nil {
			t.Errorf("sched_setattr SCHED_IDLE: %v", err)
			close(done)
			return
		}
		var inside uint32
		inBackground(func() { inside = threadPolicy(t) })
		done <- inside
		done <- threadPolicy(t)
	}()
	inside, after := <-done, <-done
	if inside != unix.SCHED_IDLE || after != unix.SCHED_IDLE {
		t.Fatalf("a SCHED_IDLE thread ran at %d inside inBackground and %d after, want %d both", inside, after, unix.SCHED_IDLE)
	}
}

func TestInBackgroundOffByEnvironment(t *testing.T) {
	t.Setenv("WALSYNC_SCHED_BATCH", "0")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	inside := policyInBackground(t)
	if inside != unix.SCHED_NORMAL {
		t.Fatalf("with WALSYNC_SCHED_BATCH=0, inBackground ran at policy %d, want SCHED_NORMAL", inside)
	}
}

// policies records the scheduling policy of the threads that capture,
// from the moment it is switched on (Run's own start-up capture runs on
// its caller's thread, which waits for it).
type policies struct {
	on  atomic.Bool
	mu  sync.Mutex
	got map[uint32]int
}

func (p *policies) hook() {
	if !p.on.Load() {
		return
	}
	if a, err := unix.SchedGetAttr(0, 0); err == nil {
		p.mu.Lock()
		p.got[a.Policy]++
		p.mu.Unlock()
	}
}

// mustBeBatch fails unless what was recorded ran at SCHED_BATCH only,
// at least once.
func (p *policies) mustBeBatch(t *testing.T, what string) {
	t.Helper()
	p.mu.Lock()
	got := maps.Clone(p.got)
	p.mu.Unlock()
	if len(got) != 1 || got[unix.SCHED_BATCH] == 0 {
		t.Fatalf("%s ran at policies %v (policy: count), want SCHED_BATCH (%d) only", what, got, unix.SCHED_BATCH)
	}
}

// Captures run at SCHED_BATCH: in the sync workers (walsync watch) and in
// the background captures the VFS hooks ask for (Batch, Flush).
func TestCapturesRunAtBatch(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			src, app, st := newSource(t)
			p := &policies{got: map[uint32]int{}}
			w := &Watcher{Storage: st, Batch: batch, SyncInterval: time.Millisecond, testHookCapture: p.hook}
			rw := startWatcher(t, w, src, "app")
			p.on.Store(true)
			for i := 0; i < 5; i++ {
				mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
				if batch {
					w.Flush(src)
				} else {
					w.KickNow(src)
				}
				time.Sleep(20 * time.Millisecond)
			}
			p.on.Store(false) // Durable captures on its caller's thread
			commitDurable(t, rw, app, src, 1)
			p.mustBeBatch(t, "captures")
			rw.stop(t)
			restoreMatches(t, st, src)
			waitNoBatchThreads(t)
		})
	}
}

// uploadPolicies records the scheduling policy of the threads that upload
// snapshots and segments.
type uploadPolicies struct {
	countingStorage
	p *policies
}

func (u *uploadPolicies) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) error {
	if strings.HasSuffix(key, walsync.SnapshotSuffix) || strings.HasSuffix(key, walsync.SegmentSuffix) {
		u.p.hook()
	}
	return u.countingStorage.Put(ctx, key, body, size, sum)
}

// The upload workers upload at SCHED_BATCH. (The claim at the start and
// the uploads of a shutdown run in Run's goroutine, the caller's.)
func TestUploadsRunAtBatch(t *testing.T) {
	src, app, st := newSource(t)
	p := &policies{got: map[uint32]int{}}
	p.on.Store(true)
	rw := startWatcher(t, &Watcher{Storage: &uploadPolicies{countingStorage: countingStorage{Storage: st}, p: p}, SyncInterval: time.Millisecond}, src, "app")
	commitDurable(t, rw, app, src, 5)
	p.on.Store(false)
	p.mustBeBatch(t, "uploads")
	rw.stop(t)
	waitNoBatchThreads(t)
}
