// Package storagetest is the conformance suite every walsync.Storage
// backend passes: one set of tests, run by file/ against a temporary
// directory and by s3/ against a real MinIO.
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) walsync.Storage { ... })
//	}
//
// newStorage is called once per subtest and must return an empty storage
// that no other subtest uses.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync"
)

// LargeSize is the size of the object the large-object test streams
// through Put and Get.
const LargeSize = 40 << 20

// Run runs the conformance suite against the storages newStorage returns.
func Run(t *testing.T, newStorage func(t *testing.T) walsync.Storage) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s walsync.Storage)
	}{
		{"PutGet", testPutGet},
		{"PutReadsBodyFromStart", testPutReadsBodyFromStart},
		{"EmptyObject", testEmptyObject},
		{"PutExisting", testPutExisting},
		{"PutConcurrentSameKey", testPutConcurrentSameKey},
		{"PutWrongSum", testPutWrongSum},
		{"PutShortBody", testPutShortBody},
		{"Missing", testMissing},
		{"List", testList},
		{"ListStop", testListStop},
		{"Delete", testDelete},
		{"Large", testLarge},
		{"String", testString},
		{"Prepare", testPrepare},
		{"Replace", testReplace},
		{"ReplaceWrongSum", testReplaceWrongSum},
		{"ReplaceConcurrent", testReplaceConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStorage(t))
		})
	}
}

// Sum returns the hex SHA-256 of b.
func Sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s walsync.Storage, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)), Sum(data)); err != nil {
		t.Fatalf("Put(%q): got=%v, want nil", key, err)
	}
}

// get reads key and checks that its recorded SHA256 matches its bytes.
func get(t *testing.T, s walsync.Storage, key string) []byte {
	t.Helper()
	rc, info, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): got=%v, want nil", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q) read: got=%v, want nil", key, err)
	}
	if info.Key != key {
		t.Errorf("Get(%q) info.Key: got=%q, want %q", key, info.Key, key)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Get(%q) info.Size: got=%d, want %d", key, info.Size, len(data))
	}
	if got, want := info.SHA256, Sum(data); got != want {
		t.Errorf("Get(%q) info.SHA256: got=%q, want %q", key, got, want)
	}
	return data
}

func testPutGet(t *testing.T, s walsync.Storage) {
	data := []byte("SQLite format 3\x00 and some more bytes")
	key := "app/snapshots/20250101000000.db"
	before := time.Now().Add(-time.Hour)
	put(t, s, key, data)
	if got := get(t, s, key); !bytes.Equal(got, data) {
		t.Fatalf("Get bytes: got=%q, want %q", got, data)
	}
	info, err := s.Stat(ctx(t), key)
	if err != nil {
		t.Fatalf("Stat: got=%v, want nil", err)
	}
	want := walsync.ObjectInfo{Key: key, Size: int64(len(data)), SHA256: Sum(data)}
	if got := (walsync.ObjectInfo{Key: info.Key, Size: info.Size, SHA256: info.SHA256}); got != want {
		t.Errorf("Stat: got=%+v, want %+v", got, want)
	}
	if info.ModTime.Before(before) || info.ModTime.After(time.Now().Add(time.Hour)) {
		t.Errorf("Stat ModTime: got=%v, want about %v", info.ModTime, time.Now())
	}
}

// testPutReadsBodyFromStart puts a body whose position is not at its start.
func testPutReadsBodyFromStart(t *testing.T, s walsync.Storage) {
	data := []byte("0123456789abcdef")
	r := bytes.NewReader(data)
	if _, err := r.Seek(7, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx(t), "k", r, int64(len(data)), Sum(data)); err != nil {
		t.Fatalf("Put with body not at its start: got=%v, want nil", err)
	}
	if got := get(t, s, "k"); !bytes.Equal(got, data) {
		t.Fatalf("Get: got=%q, want %q", got, data)
	}
}

func testEmptyObject(t *testing.T, s walsync.Storage) {
	put(t, s, "empty", nil)
	if got := get(t, s, "empty"); len(got) != 0 {
		t.Fatalf("Get empty: got=%d bytes, want 0", len(got))
	}
	info, err := s.Stat(ctx(t), "empty")
	if err != nil || info.Size != 0 || info.SHA256 != Sum(nil) {
		t.Fatalf("Stat empty: got=%+v %v, want size 0 sha256 %s", info, err, Sum(nil))
	}
}

func testPutExisting(t *testing.T, s walsync.Storage) {
	orig := []byte("original")
	put(t, s, "lock", orig)
	for _, data := range [][]byte{[]byte("replacement"), orig} {
		err := s.Put(ctx(t), "lock", bytes.NewReader(data), int64(len(data)), Sum(data))
		if !errors.Is(err, walsync.ErrExists) {
			t.Fatalf("second Put(%q): got=%v, want %v", data, err, walsync.ErrExists)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
	}
	if got := get(t, s, "lock"); !bytes.Equal(got, orig) {
		t.Fatalf("Get after refused Put: got=%q, want %q", got, orig)
	}
}

func testPutConcurrentSameKey(t *testing.T, s walsync.Storage) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	bodies := make([][]byte, n)
	for i := range n {
		bodies[i] = []byte(fmt.Sprintf("writer %d: %s", i, strings.Repeat("x", 1000*i)))
	}
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(ctx(t), "race/state.json", bytes.NewReader(bodies[i]), int64(len(bodies[i])), Sum(bodies[i]))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("Put %d and Put %d both succeeded: want exactly one", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, walsync.ErrExists):
			t.Errorf("Put %d: got=%v, want nil or %v", i, err, walsync.ErrExists)
		}
	}
	if winner < 0 {
		t.Fatalf("no Put succeeded: %v", errs)
	}
	if got := get(t, s, "race/state.json"); !bytes.Equal(got, bodies[winner]) {
		t.Fatalf("Get: got=%.20q (%d bytes), want the winner's %.20q (%d bytes)", got, len(got), bodies[winner], len(bodies[winner]))
	}
}

func testPutWrongSum(t *testing.T, s walsync.Storage) {
	data := []byte("the bytes")
	for _, sum := range []string{Sum([]byte("other bytes")), "not-a-sum"} {
		err := s.Put(ctx(t), "bad", bytes.NewReader(data), int64(len(data)), sum)
		if !errors.Is(err, walsync.ErrChecksum) {
			t.Fatalf("Put with sum %q: got=%v, want %v", sum, err, walsync.ErrChecksum)
		}
		if _, err := s.Stat(ctx(t), "bad"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat after failed Put: got=%v, want %v", err, fs.ErrNotExist)
		}
	}
	for info, err := range s.List(ctx(t), "") {
		if err != nil {
			t.Fatalf("List: got=%v, want nil", err)
		}
		t.Errorf("List after failed Put: got=%q, want nothing", info.Key)
	}
	// The key is still free.
	put(t, s, "bad", data)
}

func testPutShortBody(t *testing.T, s walsync.Storage) {
	data := []byte("short")
	err := s.Put(ctx(t), "short", bytes.NewReader(data), int64(len(data))+10, Sum(data))
	if err == nil {
		t.Fatalf("Put of a body shorter than size: got=nil, want an error")
	}
	if _, err := s.Stat(ctx(t), "short"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat after failed Put: got=%v, want %v", err, fs.ErrNotExist)
	}
}

func testMissing(t *testing.T, s walsync.Storage) {
	put(t, s, "dir/present", []byte("x"))
	for _, key := range []string{"absent", "dir/absent", "nodir/absent", "dir"} {
		_, _, err := s.Get(ctx(t), key)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Get(%q): got=%v, want %v", key, err, fs.ErrNotExist)
		}
		if err != nil && !strings.Contains(err.Error(), key) {
			t.Errorf("Get(%q) error does not name the key: %q", key, err)
		}
		if _, err := s.Stat(ctx(t), key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q): got=%v, want %v", key, err, fs.ErrNotExist)
		}
	}
}

func listKeys(t *testing.T, s walsync.Storage, prefix string) []string {
	t.Helper()
	keys := []string{}
	for info, err := range s.List(ctx(t), prefix) {
		if err != nil {
			t.Fatalf("List(%q): got=%v, want nil", prefix, err)
		}
		if info.ModTime.IsZero() {
			t.Errorf("List(%q) %q: zero ModTime", prefix, info.Key)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

func testList(t *testing.T, s walsync.Storage) {
	keys := []string{
		"b", "a/b/2", "a-c", "a/b/10", "a/c", "a/b/1", "app/wal/00000002-20250101000000000.wal",
		"app/wal/00000001-20250101000000000.wal", "app/snapshots/20250101000000.db", "app/state.json",
		"z/deep/er/still/key",
	}
	sizes := map[string]int{}
	for i, k := range keys {
		data := bytes.Repeat([]byte{byte(i)}, i+1)
		put(t, s, k, data)
		sizes[k] = len(data)
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{"", sorted},
		{"a", []string{"a-c", "a/b/1", "a/b/10", "a/b/2", "a/c", "app/snapshots/20250101000000.db", "app/state.json", "app/wal/00000001-20250101000000000.wal", "app/wal/00000002-20250101000000000.wal"}},
		{"a/", []string{"a/b/1", "a/b/10", "a/b/2", "a/c"}},
		{"a/b/1", []string{"a/b/1", "a/b/10"}},
		{"app/wal/", []string{"app/wal/00000001-20250101000000000.wal", "app/wal/00000002-20250101000000000.wal"}},
		{"app/wal/00000002", []string{"app/wal/00000002-20250101000000000.wal"}},
		{"z/deep/", []string{"z/deep/er/still/key"}},
		{"nothing", []string{}},
		{"a/b/1/", []string{}},
		{"../", []string{}},
	} {
		if got := listKeys(t, s, tt.prefix); !slices.Equal(got, tt.want) {
			t.Errorf("List(%q): got=%q, want %q", tt.prefix, got, tt.want)
		}
	}
	for info, err := range s.List(ctx(t), "") {
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(sizes[info.Key]) {
			t.Errorf("List %q Size: got=%d, want %d", info.Key, info.Size, sizes[info.Key])
		}
	}
}

func testListStop(t *testing.T, s walsync.Storage) {
	for _, k := range []string{"x/1", "x/2", "x/3"} {
		put(t, s, k, []byte(k))
	}
	var got []string
	for info, err := range s.List(ctx(t), "x/") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
		if len(got) == 2 {
			break
		}
	}
	if want := []string{"x/1", "x/2"}; !slices.Equal(got, want) {
		t.Fatalf("List stopped after 2: got=%q, want %q", got, want)
	}
}

func testDelete(t *testing.T, s walsync.Storage) {
	put(t, s, "d/one", []byte("1"))
	put(t, s, "d/two", []byte("2"))
	if err := s.Delete(ctx(t), "d/one"); err != nil {
		t.Fatalf("Delete: got=%v, want nil", err)
	}
	if _, err := s.Stat(ctx(t), "d/one"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat after Delete: got=%v, want %v", err, fs.ErrNotExist)
	}
	if err := s.Delete(ctx(t), "d/one"); err != nil {
		t.Fatalf("Delete again: got=%v, want nil", err)
	}
	if err := s.Delete(ctx(t), "never/was"); err != nil {
		t.Fatalf("Delete missing: got=%v, want nil", err)
	}
	if got, want := listKeys(t, s, ""), []string{"d/two"}; !slices.Equal(got, want) {
		t.Fatalf("List after Delete: got=%q, want %q", got, want)
	}
	// A deleted key can be written again.
	put(t, s, "d/one", []byte("new"))
	if got := get(t, s, "d/one"); string(got) != "new" {
		t.Fatalf("Get after re-Put: got=%q, want %q", got, "new")
	}
}

// testLarge streams a LargeSize object from a file through Put and back
// through Get, and checks that neither holds the object in memory.
func testLarge(t *testing.T, s walsync.Storage) {
	if testing.Short() {
		t.Skip("large object: skipped in -short mode")
	}
	path := filepath.Join(t.TempDir(), "large.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8([32]byte{'w', 'a', 'l'}), LargeSize)); err != nil {
		t.Fatal(err)
	}
	sum := hex.EncodeToString(h.Sum(nil))

	start := time.Now()
	alloc := measure(func() {
		if err := s.Put(ctx(t), "large/snapshot.db", f, LargeSize, sum); err != nil {
			t.Fatalf("Put large: got=%v, want nil", err)
		}
	})
	t.Logf("Put %d MiB: %v, %d KiB allocated", LargeSize>>20, time.Since(start).Round(time.Millisecond), alloc>>10)
	if alloc > LargeSize/2 {
		t.Errorf("Put allocated %d bytes for a %d-byte object: want it streamed (< %d)", alloc, LargeSize, LargeSize/2)
	}

	start = time.Now()
	var n int64
	h.Reset()
	alloc = measure(func() {
		rc, info, err := s.Get(ctx(t), "large/snapshot.db")
		if err != nil {
			t.Fatalf("Get large: got=%v, want nil", err)
		}
		defer rc.Close()
		if info.SHA256 != sum || info.Size != LargeSize {
			t.Errorf("Get large info: got=%s/%d, want %s/%d", info.SHA256, info.Size, sum, LargeSize)
		}
		if n, err = io.Copy(h, rc); err != nil {
			t.Fatalf("Get large read: got=%v, want nil", err)
		}
	})
	t.Logf("Get %d MiB: %v, %d KiB allocated", LargeSize>>20, time.Since(start).Round(time.Millisecond), alloc>>10)
	if got := hex.EncodeToString(h.Sum(nil)); n != LargeSize || got != sum {
		t.Fatalf("Get large: got=%d bytes %s, want %d bytes %s", n, got, LargeSize, sum)
	}
	if alloc > LargeSize/2 {
		t.Errorf("Get allocated %d bytes for a %d-byte object: want it streamed (< %d)", alloc, LargeSize, LargeSize/2)
	}

	// The same bytes again are refused like any existing key.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx(t), "large/snapshot.db", f, LargeSize, sum); !errors.Is(err, walsync.ErrExists) {
		t.Fatalf("Put large again: got=%v, want %v", err, walsync.ErrExists)
	}
}

// measure returns the bytes fn allocated on the heap (process-wide, so a
// loose bound: other goroutines count too).
func measure(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func testString(t *testing.T, s walsync.Storage) {
	str := s.String()
	if !strings.Contains(str, "://") {
		t.Errorf("String: got=%q, want a bucket URL", str)
	}
}

// testPrepare: Prepare succeeds on a usable bucket, twice, and a put after
// it works.
func testPrepare(t *testing.T, s walsync.Storage) {
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := s.Prepare(ctx); err != nil {
			t.Fatalf("Prepare #%d: got=%v, want nil", i+1, err)
		}
	}
	body := []byte("after prepare")
	if err := s.Put(ctx, "p/k", bytes.NewReader(body), int64(len(body)), Sum(body)); err != nil {
		t.Fatalf("Put after Prepare: got=%v, want nil", err)
	}
}

func replace(t *testing.T, s walsync.Storage, key string, data []byte) {
	t.Helper()
	if err := s.Replace(ctx(t), key, bytes.NewReader(data), int64(len(data)), Sum(data)); err != nil {
		t.Fatalf("Replace(%q, %d bytes): got=%v, want nil", key, len(data), err)
	}
}

// testReplace: Replace creates a missing key, overwrites an existing one
// (made by Replace or by Put), records the new sum, and Get, Stat and List
// see only the new object. Put still refuses the key.
func testReplace(t *testing.T, s walsync.Storage) {
	key := "app/state.json"
	for i, data := range [][]byte{
		[]byte(`{"version":1}`),
		[]byte(`{"version":1,"a much longer body":"` + strings.Repeat("x", 3000) + `"}`),
		[]byte(`{}`),
		nil,
		[]byte("last"),
	} {
		replace(t, s, key, data)
		if got := get(t, s, key); !bytes.Equal(got, data) {
			t.Fatalf("Get after Replace #%d: got=%.40q (%d bytes), want %.40q (%d bytes)", i, got, len(got), data, len(data))
		}
		info, err := s.Stat(ctx(t), key)
		if err != nil || info.SHA256 != Sum(data) || info.Size != int64(len(data)) {
			t.Fatalf("Stat after Replace #%d: got=%+v %v, want size %d sha256 %s", i, info, err, len(data), Sum(data))
		}
		if got, want := listKeys(t, s, "app/"), []string{key}; !slices.Equal(got, want) {
			t.Fatalf("List after Replace #%d: got=%q, want %q", i, got, want)
		}
	}
	data := []byte("refused")
	if err := s.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)), Sum(data)); !errors.Is(err, walsync.ErrExists) {
		t.Fatalf("Put over a replaced key: got=%v, want %v", err, walsync.ErrExists)
	}
	if got := get(t, s, key); string(got) != "last" {
		t.Fatalf("Get after refused Put: got=%q, want %q", got, "last")
	}

	// An object Put made can be replaced too.
	put(t, s, "other/state.json", []byte("put"))
	replace(t, s, "other/state.json", []byte("replaced"))
	if got := get(t, s, "other/state.json"); string(got) != "replaced" {
		t.Fatalf("Get after Replace over Put: got=%q, want %q", got, "replaced")
	}
	// A body not at its start is read from its start.
	r := bytes.NewReader([]byte("0123456789"))
	if _, err := r.Seek(5, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx(t), key, r, 10, Sum([]byte("0123456789"))); err != nil {
		t.Fatalf("Replace with body not at its start: got=%v, want nil", err)
	}
	if got := get(t, s, key); string(got) != "0123456789" {
		t.Fatalf("Get: got=%q, want %q", got, "0123456789")
	}
}

// testReplaceWrongSum: bytes that do not hash to the sum are refused and
// the old object stays, whole and with its own sum; on a missing key
// nothing is created.
func testReplaceWrongSum(t *testing.T, s walsync.Storage) {
	key := "app/state.json"
	old := []byte(`{"old":true}`)
	replace(t, s, key, old)
	data := []byte(`{"new":true}`)
	for _, sum := range []string{Sum([]byte("other")), "not-a-sum"} {
		err := s.Replace(ctx(t), key, bytes.NewReader(data), int64(len(data)), sum)
		if !errors.Is(err, walsync.ErrChecksum) {
			t.Fatalf("Replace with sum %q: got=%v, want %v", sum, err, walsync.ErrChecksum)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
		if got := get(t, s, key); !bytes.Equal(got, old) {
			t.Fatalf("Get after refused Replace: got=%q, want %q", got, old)
		}
	}
	if err := s.Replace(ctx(t), "fresh/state.json", bytes.NewReader(data), int64(len(data)), Sum(old)); !errors.Is(err, walsync.ErrChecksum) {
		t.Fatalf("Replace of a missing key with a wrong sum: got=%v, want %v", err, walsync.ErrChecksum)
	}
	if _, err := s.Stat(ctx(t), "fresh/state.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat after refused Replace: got=%v, want %v", err, fs.ErrNotExist)
	}
	short := []byte("short")
	if err := s.Replace(ctx(t), key, bytes.NewReader(short), int64(len(short))+10, Sum(short)); err == nil {
		t.Fatalf("Replace with a body shorter than size: got=nil, want an error")
	}
	if got := get(t, s, key); !bytes.Equal(got, old) {
		t.Fatalf("Get after failed Replace: got=%q, want %q", got, old)
	}
}

// testReplaceConcurrent: writers replace one key while readers read it.
// Every read returns one of the bodies written, whole (the recorded sum
// may race the bytes on the file backend: readers of an index check it);
// at the end the object is one of them, with its own sum.
func testReplaceConcurrent(t *testing.T, s walsync.Storage) {
	const writers, rounds = 4, 5
	key := "race/state.json"
	bodies := map[string]bool{}
	var all [][]byte
	for i := range writers {
		for r := range rounds {
			b := []byte(fmt.Sprintf(`{"writer":%d,"round":%d,"pad":"%s"}`, i, r, strings.Repeat("p", 500*(i+r))))
			bodies[string(b)] = true
			all = append(all, b)
		}
	}
	replace(t, s, key, all[0])
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds+64)
	stop := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			for r := range rounds {
				b := all[i*rounds+r]
				if err := s.Replace(ctx(t), key, bytes.NewReader(b), int64(len(b)), Sum(b)); err != nil {
					errs <- fmt.Errorf("replace by writer %d: %w", i, err)
				}
			}
		})
	}
	var rg sync.WaitGroup
	for range 2 {
		rg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				rc, _, err := s.Get(ctx(t), key)
				if err != nil {
					errs <- fmt.Errorf("get during Replace: %w", err)
					return
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					errs <- fmt.Errorf("read during Replace: %w", err)
					return
				}
				if !bodies[string(b)] {
					errs <- fmt.Errorf("get during Replace: got %d bytes %.40q, not one of the bodies written", len(b), b)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := get(t, s, key); !bodies[string(got)] {
		t.Fatalf("Get after the writers: got=%.40q, want one of the bodies", got)
	}
}
