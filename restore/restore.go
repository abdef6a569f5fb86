// Package restore turns stored objects back into a database file and
// answers what is stored (List).
//
// A restore is the newest snapshot followed by every WAL segment that
// continues it (docs/FORMAT.md, "WAL segments"): segments are applied in
// sequence order from the number the snapshot names, until the numbers
// stop or a segment of another generation comes. A missing number with a
// later segment of the same generation, or a segment that does not start
// where the previous object ended, is a gap (ErrGap): the restore fails
// rather than stitch across it.
//
// Every object is verified against its recorded SHA-256, and every frame
// against the WAL checksum chain, as its bytes stream in. The output is
// built in a temporary file beside the destination and renamed into place
// only after every check passed, so a failed restore leaves the output path
// as it was. Memory does not grow with the database or the segments: one
// copy buffer for the snapshot, one frame buffer for the segments.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/walsync/walsync"
)

// ErrOutputExists means the output path exists and Force was not given.
var ErrOutputExists = errors.New("restore: output exists")

// Restorer restores databases from Storage.
type Restorer struct {
	Storage walsync.Storage
	Logger  *slog.Logger
	// Progress, when set, is called as stored bytes are read.
	Progress func(done, total int64)
}

// Options tune one restore.
type Options struct {
	// Force replaces an existing output file (and removes its stale -wal
	// and -shm files, which SQLite would otherwise apply to the new file).
	Force bool
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
	LastSeq  uint64
	Duration time.Duration
}

func (r *Restorer) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Restore writes the newest state of name to output.
func (r *Restorer) Restore(ctx context.Context, name, output string, opts Options) (*Result, error) {
	start := time.Now()
	if err := walsync.ValidateName(name); err != nil {
		return nil, err
	}
	out, err := filepath.Abs(output)
	if err != nil {
		return nil, err
	}
	if err := checkOutput(out, opts.Force); err != nil {
		return nil, err
	}
	snaps, err := r.snapshots(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("no snapshots of %q in %s (walsync list shows what is stored): %w", name, r.Storage, walsync.ErrNotExist)
	}
	latest := snaps[len(snaps)-1]
	segs, err := r.segments(ctx, name)
	if err != nil {
		return nil, err
	}

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".walsync-restore-*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file beside %s: %w", out, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	progress := &progressTracker{fn: r.Progress, total: latest.Size}
	hdr, err := r.applySnapshot(ctx, latest, tmp, progress, func(h walsync.ObjectHeader) {
		for _, s := range segs {
			if s.Seq >= h.Seq {
				progress.total += s.Size
			}
		}
	})
	if err != nil {
		return nil, err
	}
	c := &chain{r: r, name: name, dst: tmp, progress: progress, snap: hdr,
		prev: snapshotPos(latest.Key, hdr), pageCount: hdr.PageCount}
	if err := c.applySegments(ctx, segs); err != nil {
		return nil, err
	}
	dbSize := int64(c.pageCount) * int64(hdr.PageSize)
	if c.applied > 0 {
		// Pages past the last commit's database size (a VACUUM, a
		// truncating commit) are not part of the database.
		if err := tmp.Truncate(dbSize); err != nil {
			return nil, fmt.Errorf("truncate %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if opts.Force {
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Remove(out + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("remove stale %s%s: %w", out, suffix, err)
			}
		}
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, fmt.Errorf("rename into %s: %w", out, err)
	}
	committed = true
	if err := syncDir(filepath.Dir(out)); err != nil {
		return nil, err
	}
	res := &Result{
		Name: name, Output: out, SnapshotKey: latest.Key, Generation: hdr.Generation,
		DBSize: dbSize, Segments: c.applied, LastSeq: c.lastSeq, Duration: time.Since(start),
	}
	r.logger().Info("restored", "name", name, "output", out, "snapshot", latest.Key,
		"segments", res.Segments, "last_seq", res.LastSeq,
		"bytes", res.DBSize, "duration", res.Duration.Round(time.Millisecond))
	return res, nil
}

// checkOutput refuses an existing output (or its -wal/-shm) without force,
// and a directory always.
func checkOutput(out string, force bool) error {
	fi, err := os.Stat(out)
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
			if _, err := os.Stat(out + suffix); err == nil {
				return fmt.Errorf("%w: %s%s is left from an earlier database (use --force to remove it)", ErrOutputExists, out, suffix)
			}
		}
	}
	dir := filepath.Dir(out)
	if di, err := os.Stat(dir); err != nil || !di.IsDir() {
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

// snapshots lists name's snapshot objects, oldest first.
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
	slices.SortFunc(out, func(a, b snapshotRef) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// applySnapshot streams one snapshot object into dst, verifying the stored
// bytes' SHA-256 and the content's against the trailer. When anything is
// wrong the stored-bytes checksum is reported first: a flipped byte usually
// breaks decompression before the end, and "checksum mismatch" names the
// cause better than a decoder's message. onHeader, when set, is called
// with the header once it is read, before the content.
func (r *Restorer) applySnapshot(ctx context.Context, ref snapshotRef, dst io.Writer, p *progressTracker, onHeader func(walsync.ObjectHeader)) (walsync.ObjectHeader, error) {
	body, info, err := r.Storage.Get(ctx, ref.Key)
	if err != nil {
		return walsync.ObjectHeader{}, fmt.Errorf("get %s: %w", ref.Key, err)
	}
	defer body.Close()
	if info.SHA256 == "" {
		return walsync.ObjectHeader{}, fmt.Errorf("%s: %w: refusing to use it", ref.Key, walsync.ErrNoChecksum)
	}
	vr := walsync.NewVerifyingReader(p.wrap(body), ref.Key, info.SHA256)
	or, err := walsync.NewObjectReader(vr, info.Size)
	if err != nil {
		if verr := vr.Verify(); verr != nil {
			return walsync.ObjectHeader{}, verr
		}
		return walsync.ObjectHeader{}, fmt.Errorf("%s: %w", ref.Key, err)
	}
	defer or.Close()
	if or.Header.Kind != walsync.KindByteSnapshot {
		if verr := vr.Verify(); verr != nil {
			return walsync.ObjectHeader{}, verr
		}
		return or.Header, fmt.Errorf("%s: %w: not a snapshot object", ref.Key, walsync.ErrFormat)
	}
	if onHeader != nil {
		onHeader(or.Header)
	}
	n, copyErr := io.Copy(dst, or)
	if verr := vr.Verify(); verr != nil {
		return walsync.ObjectHeader{}, verr
	}
	if copyErr != nil {
		var pe *fs.PathError
		if errors.As(copyErr, &pe) {
			return walsync.ObjectHeader{}, fmt.Errorf("write restored database: %w", copyErr)
		}
		return walsync.ObjectHeader{}, fmt.Errorf("%s: %w", ref.Key, copyErr)
	}
	h := or.Header
	if want := int64(h.PageCount) * int64(h.PageSize); n != want {
		return h, fmt.Errorf("%s: %w: %d bytes of content, header says %d pages of %d", ref.Key, walsync.ErrFormat, n, h.PageCount, h.PageSize)
	}
	return h, nil
}

// progressTracker adds up the stored bytes read across all the objects of
// one restore, for Restorer.Progress.
type progressTracker struct {
	fn          func(done, total int64)
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

type progressReader struct {
	r io.Reader
	p *progressTracker
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.done += int64(n)
	pr.p.fn(pr.p.done, max(pr.p.total, pr.p.done))
	return n, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
