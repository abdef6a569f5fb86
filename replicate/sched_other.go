//go:build !linux

package replicate

// inBackground runs f (on Linux, at SCHED_BATCH: sched_linux.go).
func inBackground(f func()) { f() }

// startWriteback does nothing here (sched_linux.go).
func startWriteback(any, int64, int64) {}
