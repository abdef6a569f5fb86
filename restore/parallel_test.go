package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
)

// hookStorage records the keys read and runs hook (when set) before each
// Get.
type hookStorage struct {
	walsync.Storage
	mu   sync.Mutex
	gets []string
	hook func(ctx context.Context, key string)
}

func (h *hookStorage) Get(ctx context.Context, key string) (io.ReadCloser, walsync.ObjectInfo, error) {
	h.mu.Lock()
	h.gets = append(h.gets, key)
	h.mu.Unlock()
	if h.hook != nil {
		h.hook(ctx, key)
	}
	return h.Storage.Get(ctx, key)
}

func (h *hookStorage) read() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.gets)
}

// longHistory stores a snapshot of a few MiB (many pipeline blocks) and n
// segments, every seventh one of about 100 KiB, the others of a few pages.
func longHistory(s *source, n int) {
	s.t.Helper()
	s.insert(3000, 1000)
	s.snapshot()
	for i := range n {
		if i%7 == 3 {
			s.insert(30, 3000)
		} else {
			s.insert(1+i%3, 200+(i*997)%3000)
		}
		s.segment()
	}
}

// restoreWith restores s.name from st into a fresh directory.
func (s *source) restoreWith(ctx context.Context, st walsync.Storage, opts Options) (string, *Result, error) {
	s.t.Helper()
	out := filepath.Join(s.t.TempDir(), "out.db")
	r := &Restorer{Storage: st}
	res, err := r.Restore(ctx, s.name, out, opts)
	return out, res, err
}

// assertOnlyOutput checks that a successful restore left nothing but the
// output in its directory (no temporary file of any kind).
func assertOnlyOutput(t *testing.T, out string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != filepath.Base(out) {
		t.Fatalf("files beside the output: got=%v, want only %s", names, filepath.Base(out))
	}
}

// Every degree of parallelism and every memory cap gives the same bytes;
// segments larger than the cap go through temporary files, which are gone
// afterwards; memory for segments read ahead stays within
// Parallel × MemoryPerObject.
func TestRestoreParallelSameBytes(t *testing.T) {
	s := newSource(t, 4096)
	const n = 40
	longHistory(s, n)
	want := s.expected()
	sizes := map[string]int64{}
	for obj, err := range s.st.List(context.Background(), s.name+"/wal/") {
		if err != nil {
			t.Fatal(err)
		}
		sizes[obj.Key] = obj.Size
	}
	over := func(limit int64) int {
		k := 0
		for _, size := range sizes {
			if size > limit {
				k++
			}
		}
		return k
	}
	if big := over(32 << 10); big == 0 || big == n {
		t.Fatalf("history: %d of %d segments over 32 KiB, want some and not all", big, n)
	}
	tests := []struct {
		opts        Options
		wantSpooled int
	}{
		{Options{Parallel: 1}, 0},
		{Options{Parallel: 2}, 0},
		{Options{Parallel: 8}, 0},
		{Options{}, 0}, // DefaultParallel
		{Options{Parallel: 64}, 0},
		{Options{Parallel: 8, MemoryPerObject: 32 << 10}, over(32 << 10)},
		{Options{Parallel: 3, MemoryPerObject: 1}, n},
		{Options{Parallel: 1, MemoryPerObject: 1}, n},
	}
	var first []byte
	for _, tt := range tests {
		t.Run(fmt.Sprintf("parallel %d, memory %d", tt.opts.Parallel, tt.opts.MemoryPerObject), func(t *testing.T) {
			out, res, err := s.restoreWith(context.Background(), s.st, tt.opts)
			if err != nil {
				t.Fatalf("restore: got=%v, want success", err)
			}
			got := readAll(t, out)
			sameBytes(t, got, want, s.pageSize)
			if first == nil {
				first = got
			}
			sameBytes(t, got, first, s.pageSize)
			integrityOK(t, out)
			assertOnlyOutput(t, out)
			if res.Segments != n {
				t.Errorf("Result.Segments: got=%d, want %d", res.Segments, n)
			}
			if res.Spooled != tt.wantSpooled {
				t.Errorf("Result.Spooled: got=%d, want %d", res.Spooled, tt.wantSpooled)
			}
			parallel, memCap := int64(tt.opts.Parallel), tt.opts.MemoryPerObject
			if parallel == 0 {
				parallel = DefaultParallel
			}
			if memCap == 0 {
				memCap = DefaultMemoryPerObject
			}
			// The snapshot holds one of the slots while it is applied.
			if limit := parallel * memCap; res.peakMem > limit {
				t.Errorf("segments held in memory at once: got=%d bytes, want at most %d × %d", res.peakMem, parallel, memCap)
			}
			if res.Spooled < n && res.peakMem == 0 {
				t.Errorf("segments held in memory at once: got=0, want some")
			}
		})
	}
}

// The error names the first failing object in order, even when a later
// one fails first, and a failed restore leaves nothing behind: no output,
// no temporary file.
func TestRestoreParallelReportsFirstFailureInOrder(t *testing.T) {
	s := newSource(t, 4096)
	longHistory(s, 30)
	bad, later := s.keys[19], s.keys[22]
	p := s.storedPath(bad)
	b := readAll(t, p)
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.storedPath(later) + ".sha256"); err != nil {
		t.Fatal(err)
	}
	for _, memCap := range []int64{0, 1} {
		t.Run(fmt.Sprintf("memory %d", memCap), func(t *testing.T) {
			var laterFailed sync.WaitGroup
			laterFailed.Add(1)
			var once sync.Once
			st := &hookStorage{Storage: s.st, hook: func(ctx context.Context, key string) {
				switch key {
				case later:
					once.Do(laterFailed.Done)
				case bad:
					// The damaged object arrives only after the later
					// one has failed.
					laterFailed.Wait()
					time.Sleep(50 * time.Millisecond)
				}
			}}
			out, _, err := s.restoreWith(context.Background(), st, Options{Parallel: 8, MemoryPerObject: memCap})
			if err == nil {
				t.Fatal("restore: got=success, want an error")
			}
			if !errors.Is(err, walsync.ErrChecksum) || !strings.Contains(err.Error(), bad) {
				t.Fatalf("error: got=%v, want a checksum mismatch naming %s", err, bad)
			}
			if strings.Contains(err.Error(), later) {
				t.Fatalf("error: got=%v, want it not to name the later %s", err, later)
			}
			assertNothingAt(t, out)
			// Nothing is read after the later failure but what was already
			// on its way.
			for _, k := range st.read() {
				if i := slices.Index(s.keys, k); i > 22+8 {
					t.Errorf("read %s (segment %d) after segment 23 had failed", k, i+1)
				}
			}
		})
	}
}

// A damaged object after the end of the chain (read ahead, never needed)
// does not fail the restore.
func TestRestoreParallelIgnoresFailuresPastTheChain(t *testing.T) {
	s := newSource(t, 4096)
	longHistory(s, 10)
	want := s.expected()
	for range 3 {
		s.insert(2, 500)
		s.segment(func(h *walsync.ObjectHeader, _ []byte) { h.Generation = otherGen })
	}
	p := s.storedPath(s.keys[11])
	b := readAll(t, p)
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.storedPath(s.keys[12]) + ".sha256"); err != nil {
		t.Fatal(err)
	}
	st := &hookStorage{Storage: s.st}
	out, res, err := s.restoreWith(context.Background(), st, Options{Parallel: 8})
	if err != nil {
		t.Fatalf("restore: got=%v, want success", err)
	}
	sameBytes(t, readAll(t, out), want, s.pageSize)
	assertOnlyOutput(t, out)
	if res.Segments != 10 {
		t.Errorf("Result.Segments: got=%d, want 10", res.Segments)
	}
}

// A point-in-time restore reads nothing captured after the point, however
// far ahead it reads.
func TestRestoreParallelPointInTime(t *testing.T) {
	s := newSource(t, 4096)
	longHistory(s, 10)
	at, want := s.clock, s.expected()
	for range 20 {
		s.insert(2, 500)
		s.segment()
	}
	st := &hookStorage{Storage: s.st}
	out, res, err := s.restoreWith(context.Background(), st, Options{Parallel: 8, PointInTime: at})
	if err != nil {
		t.Fatalf("restore: got=%v, want success", err)
	}
	sameBytes(t, readAll(t, out), want, s.pageSize)
	if res.Segments != 10 || !res.StateTime.Equal(at) {
		t.Errorf("Result: got=%d segments, state at %s, want 10 at %s", res.Segments, fmtTime(res.StateTime), fmtTime(at))
	}
	for _, k := range st.read() {
		if i := slices.Index(s.keys, k); i >= 10 {
			t.Errorf("read %s (segment %d), captured after the point in time", k, i+1)
		}
	}
}

// Cancelling a restore stops the downloads, removes every temporary file
// and leaves no goroutine behind.
func TestRestoreParallelCancel(t *testing.T) {
	s := newSource(t, 4096)
	longHistory(s, 30)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &hookStorage{Storage: s.st, hook: func(_ context.Context, key string) {
		if key == s.keys[15] {
			cancel()
		}
	}}
	out, _, err := s.restoreWith(ctx, st, Options{Parallel: 8, MemoryPerObject: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("restore: got=%v, want %v", err, context.Canceled)
	}
	assertNothingAt(t, out)
	assertGoroutinesBack(t, before, "a cancelled restore")
}

// assertGoroutinesBack fails unless the number of goroutines comes back
// to at most before within 2 s: an exiting goroutine may still be counted
// for a moment after its work is done, a leaked one stays.
func assertGoroutinesBack(t *testing.T, before int, after string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Fatalf("goroutines after %s: got=%d, want at most %d", after, got, before)
	}
}

// The snapshot pipeline keeps every check and reports the stored-bytes
// checksum first, wherever the damage is.
func TestRestoreSnapshotPipelineErrors(t *testing.T) {
	flip := func(at func(n int) int) func(t *testing.T, s *source) {
		return func(t *testing.T, s *source) {
			p := s.storedPath(s.snapKey)
			b := readAll(t, p)
			b[at(len(b))] ^= 0x01
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, s *source)
		want   wantErr
	}{
		{"flipped byte in the header", flip(func(int) int { return 40 }), wantErr{walsync.ErrChecksum, []string{"checksum"}}},
		{"flipped byte in the first block", flip(func(int) int { return 1000 }), wantErr{walsync.ErrChecksum, []string{"checksum"}}},
		{"flipped byte in the middle", flip(func(n int) int { return n / 2 }), wantErr{walsync.ErrChecksum, []string{"checksum"}}},
		{"flipped byte in the trailer", flip(func(n int) int { return n - 10 }), wantErr{walsync.ErrChecksum, []string{"checksum"}}},
		{"compressed content wrong, stored bytes' sha256 right", func(t *testing.T, s *source) {
			// What an encoder bug would store: every stored byte as
			// recorded, content that is not what was captured. The
			// pages are random, so zstd stored them raw and only the
			// frame's own checksum (XXH64 of the content) can see it:
			// restore leaves the content's SHA-256 to verify.
			p := s.storedPath(s.snapKey)
			b := readAll(t, p)
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p+".sha256", []byte(sha256Hex(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr{walsync.ErrChecksum, []string{"zstd frame checksum"}}},
		{"truncated, with the sha256 of what is left", func(t *testing.T, s *source) {
			p := s.storedPath(s.snapKey)
			b := readAll(t, p)
			b = b[:len(b)-(1<<20)]
			if err := s.st.Delete(context.Background(), s.snapKey); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p+".sha256", []byte(sha256Hex(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr{walsync.ErrFormat, nil}},
		{"content shorter than the header's page count", func(t *testing.T, s *source) {
			content := s.expected()
			if err := s.st.Delete(context.Background(), s.snapKey); err != nil {
				t.Fatal(err)
			}
			h := walsync.ObjectHeader{Kind: walsync.KindByteSnapshot, Generation: s.gen, PageSize: s.pageSize,
				PageCount: uint32(len(content)/int(s.pageSize)) + 1, Seq: s.snapSeq, Created: s.clock}
			putObject(t, s.st, s.snapKey, h, content)
		}, wantErr{walsync.ErrFormat, []string{"bytes of content"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, 4096)
			s.insert(3000, 1000) // a snapshot of a few MiB: many blocks
			s.snapshot()
			tt.damage(t, s)
			out, _, err := s.restoreWith(context.Background(), s.st, Options{})
			if !errors.Is(err, tt.want.is) {
				t.Fatalf("restore: got=%v, want %v", err, tt.want.is)
			}
			for _, c := range append(tt.want.contains, s.snapKey) {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("error: got=%v, want it to contain %q", err, c)
				}
			}
			assertNothingAt(t, out)
		})
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, &os.PathError{Op: "write", Path: "out", Err: errors.New("no space left on device")}
	}
	return len(p), nil
}

// A write error stops the pipeline at once and is reported as such.
func TestReadSnapshotWriteError(t *testing.T) {
	s := newSource(t, 4096)
	s.insert(3000, 1000)
	s.snapshot()
	before := runtime.NumGoroutine()
	ref := snapshotRef{Key: s.snapKey}
	_, err := readSnapshot(context.Background(), func(ctx context.Context) (*opened, error) {
		return openStored(ctx, s.st, s.snapKey, nil)
	}, ref, &failingWriter{after: 1 << 20}, false)
	if err == nil || !strings.Contains(err.Error(), "write restored database") || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("readSnapshot: got=%v, want the write error", err)
	}
	assertGoroutinesBack(t, before, "the write error")
}

// The plan stops at a missing number and at the point in time, and
// leaves out numbers held by several objects.
func TestPlanSegments(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	seg := func(seq uint64, key string) segmentRef {
		return segmentRef{Key: key, Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second)}
	}
	segs := []segmentRef{seg(1, "a"), seg(2, "b"), seg(3, "c"), seg(3, "c2"), seg(4, "d"), seg(5, "e"), seg(7, "g"), seg(8, "h")}
	keys := func(plan []segmentRef) string {
		var k []string
		for _, s := range plan {
			k = append(k, s.Key)
		}
		return strings.Join(k, " ")
	}
	tests := []struct {
		from  uint64
		until time.Time
		want  string
	}{
		{1, time.Time{}, "a b d e"},
		{2, time.Time{}, "b d e"},
		{1, t0.Add(4 * time.Second), "a b d"},
		{1, t0.Add(4*time.Second - 1), "a b"},
		{6, time.Time{}, ""},
		{7, time.Time{}, "g h"},
		{9, time.Time{}, ""},
	}
	for _, tt := range tests {
		if got := keys(planSegments(segs, tt.from, tt.until)); got != tt.want {
			t.Errorf("planSegments(from %d, until %v): got=%q, want %q", tt.from, tt.until, got, tt.want)
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// The snapshot is written through direct I/O where the file system allows
// it, through the page cache otherwise, with the same bytes.
func TestRestoreSnapshotDirectIO(t *testing.T) {
	s := newSource(t, 4096)
	s.insert(3000, 1000)
	s.snapshot()
	s.insert(10, 1000)
	s.segment()
	want := s.expected()
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprint("direct ", direct), func(t *testing.T) {
			defer func(old bool) { directIO = old }(directIO)
			directIO = direct
			out, _, err := s.restoreWith(context.Background(), s.st, Options{})
			if err != nil {
				t.Fatal(err)
			}
			sameBytes(t, readAll(t, out), want, s.pageSize)
			integrityOK(t, out)
			assertOnlyOutput(t, out)
		})
	}
}

// snapshotWriter gives the same file whatever the file system does with
// direct I/O (here: the test's temporary directory, and /dev/shm, a tmpfs
// that refuses or accepts it depending on the kernel), and sends whole
// aligned blocks directly when it can.
func TestSnapshotWriter(t *testing.T) {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "walsync-test-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	content := make([]byte, 3*pipeBlock+5000)
	for i := range content {
		content[i] = byte(i * 7)
	}
	for _, dir := range dirs {
		f, err := os.CreateTemp(dir, "out-")
		if err != nil {
			t.Fatal(err)
		}
		w := newSnapshotWriter(fsys.System{}, f)
		supported := w.direct != nil
		for off := 0; off < len(content); off += pipeBlock {
			b := alignedBlock(pipeBlock)
			n := copy(b, content[off:])
			if _, err := w.Write(b[:n]); err != nil {
				t.Fatalf("%s: write: %v", dir, err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got := readAll(t, f.Name()); !slices.Equal(got, content) {
			t.Fatalf("%s: file differs from what was written (%d bytes, want %d)", dir, len(got), len(content))
		}
		t.Logf("%s: direct I/O open %v, %d of %d bytes written directly", dir, supported, w.directBytes, len(content))
		if runtime.GOOS == "linux" && dir == dirs[0] && supported && w.directBytes != 3*pipeBlock {
			t.Errorf("%s: bytes written directly: got=%d, want %d (the whole blocks)", dir, w.directBytes, 3*pipeBlock)
		}
	}
}

// While the snapshot is read and applied, the segments after it download
// in the background, more of them than Parallel when they fit in the
// memory budget: here the snapshot does not arrive until 20 segments
// have been asked for, with Parallel 4 (3 downloads beside the snapshot).
func TestRestoreSegmentsDownloadDuringSnapshot(t *testing.T) {
	s := newSource(t, 4096)
	longHistory(s, 30)
	var st *hookStorage
	segGets := func() int {
		n := 0
		for _, k := range st.read() {
			if slices.Contains(s.keys, k) {
				n++
			}
		}
		return n
	}
	var during int
	st = &hookStorage{Storage: s.st, hook: func(ctx context.Context, key string) {
		if key != s.snapKey {
			return
		}
		for deadline := time.Now().Add(5 * time.Second); segGets() < 20 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		during = segGets()
	}}
	out, res, err := s.restoreWith(context.Background(), st, Options{Parallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	if during < 20 {
		t.Fatalf("segments asked for before the snapshot arrived: got=%d, want at least 20", during)
	}
	if res.Segments != 30 {
		t.Fatalf("segments applied: got=%d, want 30", res.Segments)
	}
	sameBytes(t, readAll(t, out), s.expected(), s.pageSize)
}
