// Package restore turns stored objects back into a database file, proves
// them restorable without writing one (Verify), and answers what is stored
// (List).
//
// A restore is a snapshot followed by every WAL segment that continues it
// (docs/FORMAT.md, "WAL segments"): segments are applied in sequence order
// from the number the snapshot names, until the numbers stop, a segment of
// another generation comes, or, for a point in time, the next segment was
// captured after it. Which snapshot: the newest, or the newest whose state
// is at or before the point in time (pit.go, docs/FORMAT.md "Point in
// time"). A missing number with a later segment of the same generation, or
// a segment that does not start where the previous object ended, is a gap
// (ErrGap): the restore fails rather than stitch across it.
//
// Every object is verified against its recorded SHA-256, and every frame
// against the WAL checksum chain, as its bytes stream in; readSnapshot and
// readSegment hold those checks, continues the continuity rule, and
// restore and verify share them. The output is built in a temporary file
// beside the destination and renamed into place only after every check
// passed, so a failed restore leaves the output path as it was.
//
// Objects are applied strictly in order, but read ahead: while one object
// is applied, the next segments are downloaded and verified concurrently
// (Options.Parallel objects at a time, fetch.go), and the snapshot itself
// is read, decoded and written by three goroutines (snapshot.go). Memory
// does not grow with the database or the segments: a snapshot pipeline of
// 2.5 MiB, one frame buffer, and at most Parallel × MemoryPerObject bytes
// of downloaded segments (32 MiB by default); larger segments wait in
// temporary files beside the output, removed when applied or when the
// restore fails.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
)

// ErrOutputExists means the output path exists and Force was not given.
var ErrOutputExists = errors.New("restore: output exists")

// Restorer restores databases from Storage.
type Restorer struct {
	Storage walsync.Storage
	Logger  *slog.Logger
	// Progress, when set, is called as stored bytes are read, with the
	// bytes read so far and the stored size of every object the restore
	// will read (the snapshot and the segments after it). Calls never
	// overlap, but may come from different goroutines.
	Progress func(done, total int64)
	// FS is the file system of the output and the temporary files (nil:
	// the real one): tests fail or crash named steps through it (package
	// fsys).
	FS fsys.OS
}

func (r *Restorer) fs() fsys.OS { return fsys.Or(r.FS) }

// Options tune one restore.
type Options struct {
	// Force replaces an existing output file (and removes its stale -wal
	// and -shm files, which SQLite would otherwise apply to the new file).
	Force bool
	// PointInTime, when not zero, restores the state after the last
	// transaction captured at or before it instead of the newest state
	// (docs/FORMAT.md, "Point in time"). A time before the first snapshot
	// fails with ErrBeforeFirst, a time between two generations with
	// ErrTimeGap.
	PointInTime time.Time
	// Parallel is how many objects download at once, the snapshot being
	// one of them until it is applied (0: DefaultParallel; 1 reads one
	// object after the other). Segments downloaded ahead wait within
	// Parallel × MemoryPerObject bytes and Parallel temporary files.
	Parallel int
	// MemoryPerObject is the size up to which a downloaded segment waits
	// for its turn in memory; a larger one waits in a temporary file
	// beside the output (0: DefaultMemoryPerObject). Memory for segments
	// read ahead is at most Parallel × MemoryPerObject.
	MemoryPerObject int64
}

// Result describes a finished restore.
type Result struct {
	Name        string
	Output      string
	SnapshotKey string
	Generation  walsync.Generation
	// DBSize is the size of the restored database in bytes.
	DBSize int64
	// Segments is the number of WAL segments applied after the snapshot.
	Segments int
	// LastSeq is the number of the last segment applied; meaningful only
	// when Segments > 0.
	LastSeq uint64
	// PointInTime is the time asked for (zero: the newest state).
	PointInTime time.Time
	// StateTime is when the restored state was captured: the capture time
	// of the last segment applied, or the snapshot's.
	StateTime time.Time
	Duration  time.Duration
	// Spooled is the number of segments that waited for their turn in a
	// temporary file (larger than Options.MemoryPerObject).
	Spooled int
	// peakMem is the most memory downloaded segments held at once.
	peakMem int64
}

func (r *Restorer) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Restore writes the newest state of name to output, or, with
// opts.PointInTime, the state after the last transaction captured at or
// before that time (docs/FORMAT.md, "Point in time").
func (r *Restorer) Restore(ctx context.Context, name, output string, opts Options) (*Result, error) {
	start := time.Now()
	if err := walsync.ValidateName(name); err != nil {
		return nil, err
	}
	out, err := filepath.Abs(output)
	if err != nil {
		return nil, err
	}
	if err := checkOutput(r.fs(), out, opts.Force); err != nil {
		return nil, err
	}
	cat, err := r.catalog(ctx, name)
	if err != nil {
		return nil, err
	}
	bases, err := r.choose(ctx, cat, opts.PointInTime)
	if err != nil {
		return nil, err
	}

	tmp, err := r.fs().CreateTemp("restore:create", filepath.Dir(out), "."+filepath.Base(out)+".walsync-restore-*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file beside %s: %w", out, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			r.fs().Remove("restore:remove-temp", tmp.Name()) //nolint:errcheck // a leftover is named as walsync's and harmless
		}
	}()

	var a *attempt
	for i, b := range bases {
		if i > 0 {
			if err := tmp.Truncate(0); err != nil {
				return nil, fmt.Errorf("truncate %s: %w", tmp.Name(), err)
			}
			if _, err := tmp.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
		}
		a, err = r.attempt(ctx, cat, b, tmp, out, opts)
		if err != nil {
			return nil, err
		}
		if i+1 < len(bases) && !a.stateTime.After(bases[i+1].hdr.Created) {
			r.logger().Info("the chain from a snapshot does not reach past a newer snapshot of another generation; restoring that one",
				"name", name, "snapshot", b.ref.Key, "state_time", a.stateTime, "newer", bases[i+1].ref.Key)
			continue
		}
		break
	}
	c, hdr := a.chain, a.snap
	dbSize := int64(c.pageCount) * int64(hdr.PageSize)
	if c.applied > 0 {
		// Pages past the last commit's database size (a VACUUM, a
		// truncating commit) are not part of the database.
		if err := tmp.Truncate(dbSize); err != nil {
			return nil, fmt.Errorf("truncate %s: %w", tmp.Name(), err)
		}
	}
	synced := time.Now()
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	r.logger().Debug("output synced", "name", name, "duration", time.Since(synced).Round(time.Millisecond))
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if opts.Force {
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := r.fs().Remove("restore:remove-stale", out+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("remove stale %s%s: %w", out, suffix, err)
			}
		}
	}
	if err := r.fs().Rename("restore:rename", tmp.Name(), out); err != nil {
		return nil, fmt.Errorf("rename into %s: %w", out, err)
	}
	committed = true
	if err := fsys.SyncDir(r.fs(), "restore:sync-dir", filepath.Dir(out)); err != nil {
		return nil, fmt.Errorf("sync directory %s: %w", filepath.Dir(out), err)
	}
	res := &Result{
		Name: name, Output: out, SnapshotKey: a.ref.Key, Generation: hdr.Generation,
		DBSize: dbSize, Segments: c.applied, LastSeq: c.lastSeq, PointInTime: opts.PointInTime,
		StateTime: a.stateTime, Duration: time.Since(start), Spooled: a.spooled, peakMem: a.peakMem,
	}
	r.logger().Info("restored", "name", name, "output", out, "snapshot", a.ref.Key,
		"segments", res.Segments, "last_seq", res.LastSeq, "state_time", res.StateTime,
		"bytes", res.DBSize, "duration", res.Duration.Round(time.Millisecond))
	return res, nil
}

// attempt is one restore from one base snapshot into the temporary file.
type attempt struct {
	ref       snapshotRef
	snap      walsync.ObjectHeader
	chain     *chain
	stateTime time.Time // capture time of the state reached
	spooled   int
	peakMem   int64
}

// attempt applies the snapshot b and the segments continuing it (up to
// the point in time opts.PointInTime, when not zero) into tmp, reading
// ahead the segments the chain needs while the snapshot is applied.
// Temporary files for large segments go beside out.
func (r *Restorer) attempt(ctx context.Context, cat *catalog, b candidate, tmp fsys.File, out string, opts Options) (*attempt, error) {
	until := opts.PointInTime
	// Everything the restore may read: the snapshot and every segment
	// from its first number on, captured at or before the point in time.
	progress := &progressTracker{fn: r.Progress}
	total := b.ref.Size
	for _, s := range cat.segs {
		if s.Seq >= b.hdr.Seq && (until.IsZero() || !s.Time.After(until)) {
			total += s.Size
		}
	}
	progress.add(0, total)

	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	memCap := opts.MemoryPerObject
	if memCap <= 0 {
		memCap = DefaultMemoryPerObject
	}
	temp := tempFiles{fs: r.fs(), dir: filepath.Dir(out), pattern: "." + filepath.Base(out) + ".walsync-segment-*"}
	// b.hdr.Seq is the header read to choose the snapshot; the verified
	// one must equal it (below), or nothing read ahead is used.
	fetch := newPrefetcher(ctx, r.Storage, progress, planSegments(cat.segs, b.hdr.Seq, until), parallel, memCap, temp)
	defer fetch.close()

	start := time.Now()
	w := newSnapshotWriter(r.fs(), tmp)
	hdr, err := readSnapshot(ctx, func(ctx context.Context) (*opened, error) {
		return openStored(ctx, r.Storage, b.ref.Key, progress)
	}, b.ref, w, false)
	fetch.snapshotDone()
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write restored database: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	r.logger().Debug("snapshot applied", "name", cat.name, "key", b.ref.Key, "bytes", b.ref.Size,
		"direct_io_bytes", w.directBytes, "duration", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if hdr.Generation != b.hdr.Generation || hdr.Seq != b.hdr.Seq || !hdr.Created.Equal(b.hdr.Created) {
		return nil, fmt.Errorf("%s: %w: its verified header differs from the one read to choose it", b.ref.Key, walsync.ErrFormat)
	}
	c := &chain{r: r, name: cat.name, dst: tmp, progress: progress, fetch: fetch, snap: hdr, until: until,
		prev: snapshotPos(b.ref.Key, hdr), pageCount: hdr.PageCount}
	if err := c.applySegments(ctx, cat.segs); err != nil {
		return nil, err
	}
	r.logger().Debug("segments applied", "name", cat.name, "segments", c.applied, "parallel", parallel,
		"duration", time.Since(start).Round(time.Millisecond))
	a := &attempt{ref: b.ref, snap: hdr, chain: c, stateTime: hdr.Created}
	if c.applied > 0 {
		a.stateTime = c.lastTime
	}
	fetch.close()
	a.spooled, a.peakMem = fetch.stats()
	return a, nil
}

// checkOutput refuses an existing output (or its -wal/-shm) without force,
// and a directory always.
func checkOutput(o fsys.OS, out string, force bool) error {
	fi, err := o.Stat("restore:stat-output", out)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("output %s is a directory", out)
	case err == nil && !force:
		return fmt.Errorf("%w: %s (use --force to replace it)", ErrOutputExists, out)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("output %s: %w", out, err)
	}
	if !force {
		for _, suffix := range []string{"-wal", "-shm"} {
			if _, err := o.Stat("restore:stat-output", out+suffix); err == nil {
				return fmt.Errorf("%w: %s%s is left from an earlier database (use --force to remove it)", ErrOutputExists, out, suffix)
			}
		}
	}
	dir := filepath.Dir(out)
	if di, err := o.Stat("restore:stat-output", dir); err != nil || !di.IsDir() {
		return fmt.Errorf("output directory %s does not exist", dir)
	}
	return nil
}

// snapshotRef is a listed snapshot object.
type snapshotRef struct {
	Key  string
	Time time.Time
	Size int64
}

// snapshots lists name's snapshot objects, by key time (then key).
func (r *Restorer) snapshots(ctx context.Context, name string) ([]snapshotRef, error) {
	var out []snapshotRef
	for obj, err := range r.Storage.List(ctx, name+"/"+walsync.SnapshotDir+"/") {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.Storage, err)
		}
		k, ok := walsync.ParseKey(obj.Key)
		if !ok || k.Kind != walsync.KindSnapshot || k.Name != name {
			continue
		}
		out = append(out, snapshotRef{Key: obj.Key, Time: k.Time, Size: obj.Size})
	}
	slices.SortFunc(out, func(a, b snapshotRef) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}

// ctxReader stops a long read when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// progressTracker adds up the stored bytes read across all the objects of
// one restore or verify, for a Progress function. Safe for concurrent use.
type progressTracker struct {
	fn          func(done, total int64)
	mu          sync.Mutex
	done, total int64
}

// wrap counts what is read through r; without a Progress function it
// returns r itself.
func (p *progressTracker) wrap(r io.Reader) io.Reader {
	if p == nil || p.fn == nil {
		return r
	}
	return &progressReader{r: r, p: p}
}

// add counts done bytes read and total bytes more to read.
func (p *progressTracker) add(done, total int64) {
	if p == nil || p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += done
	p.total += total
	if done > 0 {
		p.fn(p.done, max(p.total, p.done))
	}
}

type progressReader struct {
	r io.Reader
	p *progressTracker
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.add(int64(n), 0)
	return n, err
}
