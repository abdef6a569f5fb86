package restore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
)

// Parallel downloads (restore only; verify has its own pool).
//
// A restore reads objects in a fixed order: the snapshot, then segment
// Seq, Seq+1, ... It applies them strictly in that order, but the bytes of
// the next objects need not wait for the current one: a prefetcher
// downloads the segments the chain will most likely need, in order,
// while the snapshot and the segments before them are applied.
//
//   - At most Parallel objects are downloading at once. The snapshot
//     counts as one of them while it is read and applied (so Parallel 1 is
//     the sequential restore: one object at a time).
//   - A downloaded segment is verified (stored-bytes SHA-256 against the
//     recorded one) as it arrives, and waits for its turn in memory when
//     it is at most MemoryPerObject bytes, otherwise in a temporary file
//     beside the output (written and read through 64 KiB buffers).
//     Segments downloaded and waiting hold at most Parallel ×
//     MemoryPerObject bytes of memory (32 MiB by default) and at most
//     Parallel temporary files, whatever their sizes: a download starts
//     only when its segment fits. So while the snapshot is applied, the
//     segments after it (usually small: a 1 GiB restore with 1,000
//     segments has 7 MB of them) download in the background, and few are
//     left to fetch once it is done.
//   - The applier takes the objects in order and makes every check it
//     makes on a direct read (readSegment): continuity, chain, page size,
//     generation, point in time. A download that failed (checksum, missing
//     object, network) is reported only when the applier reaches it, so
//     the error names the first failing object in order, and a failure
//     past the end of the chain (a damaged segment of another generation
//     after it) does not fail a restore that never needed it. Nothing is
//     downloaded after a failed object: the applier stops there at the
//     latest.
//   - The plan is what the chain needs if nothing is wrong: from the
//     snapshot's first number on, consecutive numbers with one object each,
//     captured (key time) at or before the point in time. It stops at the
//     first missing number or the first segment captured after the point,
//     so a point-in-time restore downloads nothing captured after it; a
//     number held by several objects is read directly, as before. What the
//     applier asks for outside the plan is read directly from storage.
//   - When the restore ends, successfully or not, every download is
//     cancelled and waited for and every temporary file removed.

const (
	// DefaultParallel is how many objects a restore reads at once.
	DefaultParallel = 8
	// DefaultMemoryPerObject is the largest segment a restore keeps in
	// memory while it waits to be applied; larger ones wait in a
	// temporary file beside the output.
	DefaultMemoryPerObject = 4 << 20
)

// opened is one object's stored bytes, open for reading.
type opened struct {
	io.Reader // the stored bytes
	info      walsync.ObjectInfo
	// verify compares the stored bytes with the recorded SHA-256, reading
	// first what is left of them; the error names the object.
	verify func() error
	close  func()
}

// openStored opens key in storage. Every byte read through it counts for
// p and is hashed for verify.
func openStored(ctx context.Context, st walsync.Storage, key string, p *progressTracker) (*opened, error) {
	body, info, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if info.SHA256 == "" {
		body.Close()
		return nil, fmt.Errorf("%s: %w: refusing to use it", key, walsync.ErrNoChecksum)
	}
	vr := walsync.NewVerifyingReader(p.wrap(ctxReader{ctx, body}), key, info.SHA256)
	var once sync.Once
	return &opened{Reader: vr, info: info, verify: vr.Verify, close: func() { once.Do(func() { body.Close() }) }}, nil
}

// planSegments returns the segments a chain starting at number from will
// read if the history is whole: consecutive numbers, one object each,
// captured at or before until (when not zero). A number with several
// objects is left out (the applier reads those directly) but does not end
// the plan; a missing number or a number captured after until ends it.
func planSegments(segs []segmentRef, from uint64, until time.Time) []segmentRef {
	var plan []segmentRef
	expected := from
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Seq >= from })
	for i < len(segs) {
		seq := segs[i].Seq
		j := i + 1
		for j < len(segs) && segs[j].Seq == seq {
			j++
		}
		if seq != expected {
			break
		}
		group := segs[i:j]
		if !until.IsZero() {
			before := false
			for _, s := range group {
				before = before || !s.Time.After(until)
			}
			if !before {
				break
			}
		}
		if len(group) == 1 {
			plan = append(plan, group[0])
		}
		if expected == ^uint64(0) {
			break
		}
		expected++
		i = j
	}
	return plan
}

// prefetcher downloads the planned segments ahead of the applier (see
// above). The applier's side (open, snapshotDone, close) is used by one
// goroutine.
type prefetcher struct {
	st     walsync.Storage
	p      *progressTracker
	memCap int64
	temp   tempFiles

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	items  []*fetchItem
	// slots holds one token per object downloading (at most Parallel).
	slots chan struct{}
	// files holds one token per segment waiting in a temporary file.
	files chan struct{}
	// budget is the memory downloaded segments may hold; reserved, under
	// mu, is what the ones downloading or waiting hold; freed is closed
	// and replaced whenever some is released.
	budget   int64
	reserved int64
	freed    chan struct{}
	// next is the first planned item the applier has not yet taken.
	next     int
	snapHeld bool

	mu      sync.Mutex
	failed  int   // the lowest planned index whose download failed
	mem     int64 // bytes of downloaded segments held in memory
	peakMem int64
	spooled int // segments that went through a temporary file
}

type fetchItem struct {
	ref  segmentRef
	done chan struct{} // closed when the download ended, or will not happen
	// Set before done is closed:
	fetched bool // false: not downloaded (the applier reads it directly)
	info    walsync.ObjectInfo
	mem     []byte
	file    fsys.File
	err     error
	// What the item holds until it is freed: reserved bytes of the
	// memory budget, or a file token.
	reserved int64
	fileTok  bool

	freeOnce sync.Once
}

// tempFiles makes and removes the temporary files of downloads that wait
// for their turn: beside the output, named from it.
type tempFiles struct {
	fs      fsys.OS
	dir     string
	pattern string
}

func (t tempFiles) create() (fsys.File, error) {
	return t.fs.CreateTemp("restore:download-temp", t.dir, t.pattern)
}

func (t tempFiles) remove(name string) {
	t.fs.Remove("restore:remove-download-temp", name) //nolint:errcheck // a leftover is named as walsync's and harmless
}

// newPrefetcher starts downloading plan, parallel objects at a time, one
// slot being taken by the snapshot until snapshotDone. A segment larger
// than memCap waits in a temporary file made by temp.
func newPrefetcher(ctx context.Context, st walsync.Storage, p *progressTracker, plan []segmentRef,
	parallel int, memCap int64, temp tempFiles) *prefetcher {
	parallel = max(parallel, 1)
	memCap = max(memCap, 0)
	f := &prefetcher{st: st, p: p, memCap: memCap, temp: temp,
		slots: make(chan struct{}, parallel), files: make(chan struct{}, parallel),
		budget: int64(parallel) * memCap, freed: make(chan struct{}), failed: len(plan)}
	f.ctx, f.cancel = context.WithCancel(ctx)
	f.items = make([]*fetchItem, len(plan))
	for i, ref := range plan {
		f.items[i] = &fetchItem{ref: ref, done: make(chan struct{})}
	}
	f.slots <- struct{}{} // the snapshot's
	f.snapHeld = true
	f.wg.Add(1)
	go f.dispatch()
	return f
}

// dispatch starts the downloads in plan order as slots free up, and stops
// after a failed download or when the restore ends.
func (f *prefetcher) dispatch() {
	defer f.wg.Done()
	for i, it := range f.items {
		// Room for it to wait in (memory or a file), then a download slot.
		if !f.reserve(it) {
			f.skipFrom(i)
			return
		}
		select {
		case f.slots <- struct{}{}:
		case <-f.ctx.Done():
			f.release(it)
			f.skipFrom(i)
			return
		}
		f.mu.Lock()
		stop := f.failed < i
		f.mu.Unlock()
		if stop || f.ctx.Err() != nil {
			<-f.slots
			f.release(it)
			f.skipFrom(i)
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() { <-f.slots }()
			f.download(i, it)
		}()
	}
}

// reserve waits until the item fits: its listed size in the memory budget
// (Parallel × memCap, so any segment of at most memCap fits once the ones
// before it are applied), or a file token for one larger than memCap.
// False when the restore ended first.
func (f *prefetcher) reserve(it *fetchItem) bool {
	size := it.ref.Size
	if size < 0 || size > f.memCap {
		select {
		case f.files <- struct{}{}:
			it.fileTok = true
			return true
		case <-f.ctx.Done():
			return false
		}
	}
	for {
		f.mu.Lock()
		if f.reserved+size <= f.budget {
			f.reserved += size
			it.reserved = size
			f.mu.Unlock()
			return true
		}
		freed := f.freed
		f.mu.Unlock()
		select {
		case <-freed:
		case <-f.ctx.Done():
			return false
		}
	}
}

// release gives back what reserve took for it.
func (f *prefetcher) release(it *fetchItem) {
	if it.fileTok {
		it.fileTok = false
		<-f.files
	}
	if it.reserved > 0 {
		f.mu.Lock()
		f.reserved -= it.reserved
		it.reserved = 0
		close(f.freed)
		f.freed = make(chan struct{})
		f.mu.Unlock()
	}
}

// skipFrom marks the items from i on as not downloaded.
func (f *prefetcher) skipFrom(i int) {
	for _, it := range f.items[i:] {
		close(it.done)
	}
}

// download reads one planned segment into memory or a temporary file,
// verifying its stored bytes as they arrive.
func (f *prefetcher) download(i int, it *fetchItem) {
	it.fetched = true
	defer close(it.done)
	it.err = f.fetch(it)
	if it.err != nil {
		f.mu.Lock()
		f.failed = min(f.failed, i)
		f.mu.Unlock()
	}
}

func (f *prefetcher) fetch(it *fetchItem) error {
	key := it.ref.Key
	o, err := openStored(f.ctx, f.st, key, f.p)
	if err != nil {
		return err
	}
	defer o.close()
	it.info = o.info
	if size := o.info.Size; size >= 0 && size <= f.memCap && !it.fileTok {
		if size > it.reserved {
			// Larger than listed (replaced since): hold what it takes.
			f.mu.Lock()
			f.reserved += size - it.reserved
			f.mu.Unlock()
			it.reserved = size
		}
		buf := make([]byte, size)
		n, err := io.ReadFull(o, buf)
		it.mem = buf[:n]
		f.mu.Lock()
		f.mem += int64(cap(buf))
		f.peakMem = max(f.peakMem, f.mem)
		f.mu.Unlock()
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			// A read error: verify reads again and names the object.
			if verr := o.verify(); verr != nil {
				return verr
			}
			return fmt.Errorf("read %s: %w", key, err)
		}
		// A body shorter than its size passes verification only when the
		// recorded SHA-256 says so; readSegment then refuses the object
		// as a direct read would.
		return o.verify()
	}
	if !it.fileTok {
		// Listed as small, stored large (replaced since the listing): it
		// waits in a file without a token, since waiting for one here
		// could wait for later segments that wait for this one.
		f.release(it)
	}
	file, err := f.temp.create()
	if err != nil {
		return fmt.Errorf("%s: temporary file for the download: %w", key, err)
	}
	it.file = file
	f.mu.Lock()
	f.spooled++
	f.mu.Unlock()
	w := bufio.NewWriterSize(file, 64<<10)
	if _, err := io.Copy(w, o); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: write temporary file: %w", key, err)
		}
		if verr := o.verify(); verr != nil {
			return verr
		}
		return fmt.Errorf("read %s: %w", key, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%s: write temporary file: %w", key, err)
	}
	return o.verify()
}

// snapshotDone frees the snapshot's slot.
func (f *prefetcher) snapshotDone() {
	if f.snapHeld {
		f.snapHeld = false
		<-f.slots
	}
}

// open returns the stored bytes of ref for the applier: its download when
// it is planned (skipping planned objects before it, which the chain no
// longer needs), storage otherwise. The caller closes the result when it
// is done with it, which frees what the download held.
func (f *prefetcher) open(ctx context.Context, ref segmentRef) (*opened, error) {
	i := f.next
	for i < len(f.items) && f.items[i].ref.Key != ref.Key {
		i++
	}
	if i == len(f.items) {
		return openStored(ctx, f.st, ref.Key, f.p)
	}
	for _, skipped := range f.items[f.next:i] {
		<-skipped.done
		f.free(skipped)
	}
	f.next = i + 1
	it := f.items[i]
	select {
	case <-it.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !it.fetched {
		return openStored(ctx, f.st, ref.Key, f.p)
	}
	if it.err != nil {
		f.free(it)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, it.err
	}
	o := &opened{info: it.info, verify: func() error { return nil }, close: func() { f.free(it) }}
	if it.file != nil {
		if _, err := it.file.Seek(0, io.SeekStart); err != nil {
			f.free(it)
			return nil, fmt.Errorf("%s: temporary file: %w", ref.Key, err)
		}
		o.Reader = bufio.NewReaderSize(ctxReader{ctx, it.file}, 64<<10)
	} else {
		o.Reader = bytes.NewReader(it.mem)
	}
	return o, nil
}

// free releases what a downloaded item holds (its buffer, its temporary
// file, its share of the memory budget). Safe to call more than once.
func (f *prefetcher) free(it *fetchItem) {
	if !it.fetched {
		return
	}
	it.freeOnce.Do(func() {
		if it.mem != nil {
			f.mu.Lock()
			f.mem -= int64(cap(it.mem))
			f.mu.Unlock()
			it.mem = nil
		}
		if it.file != nil {
			it.file.Close()
			f.temp.remove(it.file.Name())
			it.file = nil
		}
		f.release(it)
	})
}

// close cancels every download, waits for them and removes what they left.
func (f *prefetcher) close() {
	f.cancel()
	f.snapshotDone()
	f.wg.Wait()
	for _, it := range f.items {
		<-it.done
		f.free(it)
	}
}

// stats reports how many segments went through a temporary file and the
// most memory downloaded segments held at once.
func (f *prefetcher) stats() (spooled int, peakMem int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.spooled, f.peakMem
}
