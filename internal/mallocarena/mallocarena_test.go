package mallocarena

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// C allocations from many OS threads share one glibc arena. Without the
// constructor each thread that allocates gets its own (12 arenas
// measured). The count comes from glibc's own malloc_info.
func TestOneArena(t *testing.T) {
	if arenas() < 0 {
		t.Skip("not glibc")
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // each goroutine on a thread of its own
			mallocFromThisThread()
			time.Sleep(20 * time.Millisecond) // all eight threads alive at once
		}()
	}
	wg.Wait()
	if n := arenas(); n != 1 {
		t.Fatalf("glibc malloc arenas after C allocations from 8 threads: got=%d want=1", n)
	}
}
