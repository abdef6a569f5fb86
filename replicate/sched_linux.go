package replicate

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inBackground runs f with the calling goroutine locked to its thread and
// that thread scheduled as SCHED_BATCH, then puts the thread back as it
// was. For walsync's own goroutines only (captures, spool fsyncs,
// uploads, snapshots, retention), never on a caller's thread: the VFS
// hooks run on the application's committing thread. A locked goroutine
// keeps its thread while it waits (on the network, say), so a process
// holds at most one more thread per such task in flight.
//
// SCHED_BATCH keeps the thread's share of CPU (its nice value and weight
// are unchanged, so a busy machine still replicates as fast as before),
// but a batch thread that wakes up never preempts the thread running on
// that CPU: the application's committing thread, on a two-core machine,
// was preempted by walsync's goroutines often enough to cost the VFS a
// few percent of its insert throughput (docs/BENCHMARKS.md, "Background
// work at SCHED_BATCH").
//
// Threads the Go runtime starts while a goroutine is locked are cloned
// by its template thread, never by the locked one, so the policy does not
// spread. A thread whose policy is not the normal one (the process runs
// under chrt, say) is left alone, and so is every thread while the
// environment has WALSYNC_SCHED_BATCH=0 (read for each task, so that
// bench/vfs -sched-ab can compare both in one process).
func inBackground(f func()) {
	if os.Getenv("WALSYNC_SCHED_BATCH") == "0" {
		f()
		return
	}
	runtime.LockOSThread()
	was, err := unix.SchedGetAttr(0, 0)
	switched := false
	if err == nil && was.Policy == unix.SCHED_NORMAL {
		batch := *was
		batch.Policy = unix.SCHED_BATCH
		switched = unix.SchedSetAttr(0, &batch, 0) == nil
	}
	if !switched {
		// Scheduling is only a preference: run f as it is.
		runtime.UnlockOSThread()
		f()
		return
	}
	defer func() {
		if unix.SchedSetAttr(0, was, 0) == nil {
			runtime.UnlockOSThread()
		}
		// Otherwise the goroutine stays on this thread, which ends with it:
		// no other goroutine ever runs on a batch thread.
	}()
	f()
}

// startWriteback starts writing n bytes of w's file from off to the disk
// without waiting (sync_file_range); it does nothing for a writer that is
// not a file. Only a hint: the fsync after makes them durable.
func startWriteback(w any, off, n int64) {
	if f, ok := w.(interface{ Fd() uintptr }); ok {
		unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE) //nolint:errcheck // a hint
	}
}
