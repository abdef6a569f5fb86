package replicate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
	"github.com/walsync/walsync/wal"
)

// A segment is built in the spool as an open file, <seq>.1.open, and
// sealed into <seq>.1.segment, the object the uploader ships:
//
//   - capture appends the frames committed since the position, through one
//     zstd stream (ObjectWriter) that is flushed after each append, so the
//     file always decodes to every appended frame;
//   - sealing writes the trailer, rewrites the header with the frame count,
//     the database size and the time of the last append, fsyncs, renames,
//     fsyncs the directory, and records the next number in state.json.
//
// `walsync watch` seals at every capture, as it always did: one capture,
// one segment. A watcher inside the application (Watcher.Batch, the VFS)
// appends the captures its commit hooks make (Flush, CatchUp) and seals
// one SyncInterval after the first: a writer without pause costs one
// segment per sync interval instead of one per hook capture, and a hook's
// capture costs no temporary file, rename or fsync. When the WAL restarts
// under an open segment, the segment goes on: a restart record
// (walsync.SegmentChain) carries the new WAL's header, and the frames
// after it are the new WAL's. Until it is sealed, a segment's
// content is only in the page cache; SQLite must not restart the WAL over
// those frames before they are on disk (SPEC, "The VFS"), so before a pin
// that lets the WAL restart replaces one that does not, the open file is
// fsynced (barrier, called by cycle; syncAhead starts that fsync early).
//
// After a crash (of the process, or of the machine with some pages of the
// open file lost) recoverOpen reads what the file holds, keeps the records
// up to the last commit whose WAL checksum chain verifies from the
// header's position (across restart records), and seals them; the
// position continues from there. A restart record with no commit after it
// is dropped: the position is then the old WAL's end, which the WAL no
// longer holds, and the next start begins a new generation.
// An open segment is never uploaded, so nothing in the bucket can differ
// from what is captured again after a crash.

const openSuffix = ".1.open"

// openSegment is the segment being appended to.
type openSegment struct {
	seq       uint64
	f         fsys.File
	cw        countingWriter
	ow        *walsync.ObjectWriter
	hdr       walsync.ObjectHeader // as written first; counts and time are set when sealed
	end       position             // after the last frame appended
	n         uint32               // records appended (frames and WAL restarts)
	restarts  uint32               // WAL restart records appended
	good      int64                // file size after the last complete append
	synced    int64                // bytes known to be on disk
	dirSynced bool                 // the file's directory entry is on disk
	last      time.Time            // capture time of the last append
	first     time.Time            // capture time of the first append
	// spec: chunks captured ahead of their commit and not checked yet
	// (speculate.go); aheadKept, aheadCut: the frames of such chunks the
	// last append kept and cut.
	spec                []specChunk
	aheadKept, aheadCut uint32
}

type countingWriter struct {
	w io.Writer
	n int64
	// kicked is how far writeback was started (startWriteback): a large
	// capture's bytes go to the disk while it goes on, so that the fsync
	// that seals it (or the barrier) has little left to wait for.
	kicked int64
}

// writebackChunk is how many bytes a capture writes before it starts
// their writeback.
const writebackChunk = 8 << 20

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.n-c.kicked >= writebackChunk {
		startWriteback(c.w, c.kicked, c.n-c.kicked)
		c.kicked = c.n
	}
	return n, err
}

func openName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, openSuffix) }

// startOpen creates the open segment for frames after pos, numbered seq,
// in the file prepareOpen made for it if there is one.
func (d *DB) startOpen(pos position, seq uint64) (*openSegment, error) {
	d.discardSpec() // it has the same name
	path := filepath.Join(d.spool.dir, openName(seq))
	prepared, durable := d.nextOpen == seq, d.nextOpenDurable
	if !prepared {
		d.discardPrepared()
	}
	d.nextOpen = 0
	f, err := d.spool.fs.OpenFile("segment:create", path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	made := err == nil
	if prepared && errors.Is(err, os.ErrExist) {
		// Only this process (the owner) makes open files, and only
		// prepareOpen leaves one empty. When a new generation set it
		// aside, the O_EXCL open above made it again instead.
		if f, err = d.spool.fs.OpenFile("segment:open-prepared", path, os.O_WRONLY, 0); err == nil {
			if fi, serr := f.Stat(); serr != nil || fi.Size() != 0 {
				f.Close()
				return nil, fmt.Errorf("spool %s: the open segment made ahead is not empty", path)
			}
		}
	}
	if err != nil {
		if prepared && !made {
			// The file made ahead is still there, empty: the next
			// attempt uses it (an O_EXCL create would fail on it for
			// good).
			d.nextOpen, d.nextOpenDurable = seq, durable
		}
		return nil, fmt.Errorf("spool %s: %w", path, err)
	}
	o := &openSegment{seq: seq, f: f, end: pos, first: d.now(), dirSynced: !made && durable}
	o.cw.w = f
	// PageCount holds the database size before the first frame until the
	// segment is sealed, so that recovery knows the starting position.
	o.hdr = walsync.ObjectHeader{
		Kind: walsync.KindByteSegment, Generation: d.gen, PageSize: d.st.PageSize, PageCount: pos.DBPages,
		WALSalt1: pos.Salt1, WALSalt2: pos.Salt2, WALCheckpointSeq: pos.CkptSeq, WALFrame: pos.Frame + 1,
		WALChecksum1: pos.Cksum1, WALChecksum2: pos.Cksum2, WALBigEndian: pos.BigEndian,
		Seq: seq, Created: o.first, Unhashed: true,
	}
	if o.ow, err = walsync.NewObjectWriter(&o.cw, o.hdr); err != nil {
		f.Close()
		d.spool.fs.Remove("segment:remove-failed", path) //nolint:errcheck // an open file is recovered or removed at the next start
		return nil, fmt.Errorf("spool %s: %w", path, err)
	}
	o.good = o.cw.n
	return o, nil
}

// appendFrames appends the frames sc yields up to and including frame
// last, which must end a commit, and returns how many records and the
// position after them. With restart (the header of a new WAL, whose
// frames sc yields), a restart record comes first (walsync.SegmentChain):
// the segment goes on across the WAL restart, and the records of one
// append always end with a commit, so that the segment never ends on a
// restart record. When stop (if not nil) says so after a commit frame,
// it stops there, short of last. Chunks captured ahead of the commit
// (speculate.go) that the WAL, read from walr, still holds as they are
// count as appended; the scan starts after them. On error the segment is
// in an unknown state: the caller recovers it (DB.recoverOpen).
func (o *openSegment) appendFrames(walr io.ReaderAt, sc *wal.Scanner, last uint32, stop func() bool, restart *wal.Header) (uint32, position, error) {
	end := o.end
	var n, restarts uint32
	if restart != nil {
		if err := o.cutSpec(0); err != nil { // never both: a chunk is of the old WAL
			return 0, end, err
		}
		rec := walsync.AppendRestartRecord(make([]byte, 0, wal.FrameHeaderSize+int(o.hdr.PageSize)), *restart, o.hdr.PageSize)
		if _, err := o.ow.Write(rec); err != nil {
			return 0, end, err
		}
		n, restarts = 1, 1
		end = walStart(*restart, end.DBPages)
	}
	kept, cut, err := o.keepSpec(walr, sc, last)
	if err != nil {
		return 0, end, err
	}
	o.aheadKept, o.aheadCut = kept, cut
	n += kept
	stopped := false
	for sc.Next() {
		idx, fh, _ := sc.Frame()
		if _, err := o.ow.Write(sc.FrameBytes()); err != nil {
			return 0, end, err
		}
		n++
		if fh.IsCommit() {
			c1, c2 := sc.Checksum()
			end.Frame, end.Cksum1, end.Cksum2, end.DBPages = idx, c1, c2, fh.Commit
			if idx != last && stop != nil && stop() {
				stopped = true
				break
			}
		}
		if idx == last {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return 0, end, err
	}
	if end.Frame != last && !stopped {
		return 0, end, fmt.Errorf("%w: the wal-index says frame %d is committed, the WAL's valid frames end at %d", errDiscontinuity, last, end.Frame)
	}
	// The frame ends with the append (ObjectWriter.Suspend): the file
	// decodes to every appended frame, and the open segment holds no
	// encoder until the next one.
	if err := o.ow.Suspend(); err != nil {
		return 0, end, err
	}
	o.n += n
	o.restarts += restarts
	o.end = end
	o.good = o.cw.n
	return n, end, nil
}

// sealOpen seals the open segment, if any: it becomes <seq>.1.segment,
// durable, recorded in state.json and handed to the uploader. On error
// the file is recovered as after a crash (recoverOpen). Called with d.mu
// held.
func (d *DB) sealOpen() error {
	o := d.seg
	if o == nil {
		return nil
	}
	if o.n == 0 {
		d.dropOpen()
		return d.spool.removeSynced(openName(o.seq))
	}
	d.seg = nil
	err := o.ow.Close()
	if err == nil {
		hdr := o.hdr
		hdr.FrameCount, hdr.PageCount, hdr.Created = o.n, o.end.DBPages, o.last
		hdr.Restarts = o.restarts > 0
		hb, _ := hdr.MarshalBinary()
		_, err = o.f.WriteAt(hb, 0)
	}
	if err == nil {
		err = o.f.Sync()
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.spool.fs.Rename("segment:seal-rename", filepath.Join(d.spool.dir, openName(o.seq)), filepath.Join(d.spool.dir, entryName(o.seq, false)))
	}
	// No directory fsync here: the state.json that sealed writes next
	// fsyncs the directory once for both renames. A crash before that
	// leaves either rename, both or neither: a segment still named open
	// is sealed again at the next start (sealOpenEntries keeps it whole:
	// the zstd stream ends in the trailer, and state.json may already
	// count it), and a sealed one that state.json does not count is
	// found by recoverSpool. The uploader takes it only after sealed
	// (d.committed), so nothing leaves the spool before the fsync.
	if err != nil {
		d.log.Warn("sealing a segment failed; recovering it", "seq", o.seq, "err", err)
		return d.recoverOpen(o.seq)
	}
	return d.sealed(o.seq, o.n, o.end)
}

// sealed records that segment seq, ending at end, is in the spool.
func (d *DB) sealed(seq uint64, frames uint32, end position) error {
	d.st.Pos = end
	d.st.NextSeq = seq + 1
	d.st.Changed = true
	d.prepareOpen(seq + 1)
	if err := d.spool.saveState(d.st); err != nil {
		return err
	}
	if d.nextOpen == seq+1 {
		d.nextOpenDurable = true // the state's directory fsync took it along
	}
	d.committed.Store(d.st.NextSeq)
	d.log.Debug("captured", "seq", seq, "frames", frames, "wal_frame", end.Frame)
	d.w.notifyUpload(d)
	return nil
}

// prepareOpen makes the empty file of the next open segment, seq, when a
// seal is about to fsync the spool directory (for state.json): the
// barrier of the segment that follows then needs no directory fsync of
// its own. Only for a watcher inside the application (Watcher.Batch),
// where segments stay open across hook captures and meet barriers;
// `walsync watch` seals at every capture and keeps no file for an idle
// database. A failure only costs that fsync later (startOpen makes the
// file). An empty open file left by a crash is removed at the next start
// (sealOpenEntries). Called with d.mu held.
func (d *DB) prepareOpen(seq uint64) {
	if !d.w.Batch || d.nextOpen == seq {
		return
	}
	d.discardPrepared()
	f, err := d.spool.fs.OpenFile("segment:prepare", filepath.Join(d.spool.dir, openName(seq)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return
	}
	f.Close()
	d.nextOpen, d.nextOpenDurable = seq, false
}

// discardPrepared removes the file prepareOpen made, if any, unused. The
// removal need not be durable: an empty open file is removed at the next
// start anyway. Called with d.mu held.
func (d *DB) discardPrepared() {
	if d.nextOpen != 0 && d.spool != nil {
		d.spool.fs.Remove("segment:discard-prepared", filepath.Join(d.spool.dir, openName(d.nextOpen))) //nolint:errcheck // removed at the next start anyway
	}
	d.nextOpen = 0
}

// barrier makes the open segment's frames durable: called before the WAL
// may be restarted over them. Called with d.mu held.
func (d *DB) barrier() error {
	o := d.seg
	if o == nil || (o.synced == o.good && o.dirSynced) {
		return nil
	}
	if o.synced != o.good {
		if err := o.f.Sync(); err != nil {
			return fmt.Errorf("spool %s: %w", o.f.Name(), err)
		}
		o.synced = o.good
	}
	if !o.dirSynced {
		if err := d.spool.syncDirOp("barrier:sync-dir"); err != nil {
			return err
		}
		o.dirSynced = true
	}
	return nil
}

// syncAhead starts making the open segment durable in the background, so
// that the barrier that follows soon (the pin's move after the checkpoint
// SQLite runs right after CatchUp) finds nothing left to wait for. The
// fsync runs without d.mu: captures may append meanwhile, and a seal may
// close the file (the fsync then fails harmlessly; sealing syncs anyway).
// Called with d.mu held.
func (d *DB) syncAhead() {
	o := d.seg
	if o == nil || (o.synced == o.good && o.dirSynced) {
		return
	}
	target, needDir := o.good, !o.dirSynced
	go inBackground(func() {
		err := o.f.Sync()
		if err == nil && needDir {
			err = d.spool.syncDirOp("barrier:sync-dir")
		}
		if err != nil {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.seg == o {
			o.synced = max(o.synced, target)
			o.dirSynced = true
		}
	})
}

// dropOpen closes the open segment's file without sealing it (the file
// stays for recoverOpen). Called with d.mu held.
func (d *DB) dropOpen() {
	if o := d.seg; o != nil {
		o.ow.Abort()
		o.f.Close()
		d.seg = nil
	}
}

// recoverOpen turns what the open file of segment seq holds into a sealed
// segment (or removes it when it holds no whole commit) and continues the
// position from its end. Called with d.mu held, d.seg nil.
func (d *DB) recoverOpen(seq uint64) error {
	r, err := d.spool.recoverOpen(seq)
	if err != nil {
		return err
	}
	if r.gen != d.gen {
		return fmt.Errorf("%w: the open segment %d belongs to generation %s", errDiscontinuity, seq, r.gen)
	}
	d.log.Info("recovered an open segment", "seq", seq, "frames", r.frames, "wal_frame", r.end.Frame)
	if r.frames == 0 {
		d.st.Pos = r.start
		d.st.NextSeq = seq
		return d.spool.saveState(d.st)
	}
	return d.sealed(seq, r.frames, r.end)
}

// recovered is what recoverOpen found in an open segment.
type recovered struct {
	gen        walsync.Generation
	start, end position // before the first frame, after the last one kept
	frames     uint32   // frames kept and sealed (0: the file was removed)
}

// errNoOpenHeader: the open file's header is unreadable (the machine
// crashed before it reached the disk).
var errNoOpenHeader = errors.New("open segment without a readable header")

// recoverOpen reads the open file of segment seq, keeps its frames up to
// the last commit whose checksum chain verifies from the header's
// position, writes them as the sealed segment and removes the open file.
func (s *spool) recoverOpen(seq uint64) (recovered, error) {
	path := filepath.Join(s.dir, openName(seq))
	var r recovered
	hdr, frames, restarts, end, err := s.scanOpen(path, 0)
	if errors.Is(err, errNoOpenHeader) {
		// Nothing of it can be used; the position is where state.json
		// says (it was recorded when the segment before was sealed).
		if rerr := s.removeSynced(openName(seq)); rerr != nil {
			return r, rerr
		}
		return r, err
	} else if err != nil {
		return r, err
	}
	r.gen, r.start, r.end = hdr.Generation, startPosition(hdr), startPosition(hdr)
	if frames > 0 {
		fi, err := s.fs.Stat("recover:stat", path)
		if err != nil {
			return r, err
		}
		sealed := hdr
		sealed.FrameCount, sealed.PageCount, sealed.Created = frames, end.DBPages, fi.ModTime()
		sealed.Restarts = restarts > 0
		err = s.writeFile("recover", entryName(seq, false), func(w io.Writer) error {
			ow, err := walsync.NewObjectWriter(w, sealed)
			if err != nil {
				return err
			}
			if _, _, _, _, err := s.scanOpen(path, frames, ow); err != nil {
				ow.Abort()
				return err
			}
			return ow.Close()
		})
		if err != nil {
			return r, err
		}
		r.frames, r.end = frames, end
	}
	return r, s.removeSynced(openName(seq))
}

// startPosition is the position before an open segment's first frame, as
// its header records it (the database size in PageCount until sealed).
func startPosition(h walsync.ObjectHeader) position {
	return fromChain(h.WALPositionAfter(h.WALFrame-1), h.PageCount)
}

// scanOpen reads the open segment file at path: its header, then records
// (frames, and restart records: walsync.SegmentChain) while the WAL
// checksum chain from the header's position verifies. It returns the
// number of records up to and including the last commit frame, how many
// of those are restart records, and the position after that commit. With
// limit > 0 it stops after limit records and writes them to copyTo.
func (s *spool) scanOpen(path string, limit uint32, copyTo ...io.Writer) (hdr walsync.ObjectHeader, kept, restarts uint32, end position, err error) {
	f, err := s.fs.Open("recover:read", path)
	if err != nil {
		return hdr, 0, 0, position{}, err
	}
	defer f.Close()
	hdr, kept, restarts, end, err = scanOpenFrom(f, limit, copyTo...)
	if err != nil {
		return hdr, 0, 0, position{}, fmt.Errorf("%s: %w", path, err)
	}
	return hdr, kept, restarts, end, nil
}

// scanOpenFrom is scanOpen of the bytes f holds.
func scanOpenFrom(f io.Reader, limit uint32, copyTo ...io.Writer) (hdr walsync.ObjectHeader, kept, restarts uint32, end position, err error) {
	hb := make([]byte, walsync.HeaderLen)
	if _, err := io.ReadFull(f, hb); err != nil {
		return hdr, 0, 0, position{}, errNoOpenHeader
	}
	if err := hdr.UnmarshalBinary(hb); err != nil || hdr.Kind != walsync.KindByteSegment || hdr.WALFrame == 0 {
		return hdr, 0, 0, position{}, errNoOpenHeader
	}
	dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(16<<20))
	if err != nil {
		return hdr, 0, 0, position{}, err
	}
	defer dec.Close()
	frame := make([]byte, wal.FrameHeaderSize+int(hdr.PageSize))
	ch := walsync.NewSegmentChain(hdr, true)
	end = startPosition(hdr)
	for limit == 0 || ch.Records() < limit {
		// A frame cut short, a decoding error (the end of what reached
		// the disk) or a broken chain all end the usable content.
		if _, err := io.ReadFull(dec, frame); err != nil {
			break
		}
		if _, err := ch.Next(frame); err != nil {
			break
		}
		if len(copyTo) > 0 {
			if _, err := copyTo[0].Write(frame); err != nil {
				return hdr, 0, 0, position{}, err
			}
		}
		if last := ch.Last(); last.IsCommit() {
			kept, restarts = ch.Records(), ch.Restarts()
			end = fromChain(ch.Pos(), last.Commit)
		}
	}
	if limit > 0 && ch.Records() != limit {
		return hdr, 0, 0, position{}, fmt.Errorf("%w: %d records on the second reading, %d on the first", walsync.ErrFormat, ch.Records(), limit)
	}
	return hdr, kept, restarts, end, nil
}

// walStart is the position at frame 0 of the WAL whose header is wh,
// with the database size dbPages.
func walStart(wh wal.Header, dbPages uint32) position {
	return position{Salt1: wh.Salt1, Salt2: wh.Salt2, CkptSeq: wh.CheckpointSeq, Cksum1: wh.Checksum1,
		Cksum2: wh.Checksum2, BigEndian: wh.BigEndianChecksum(), HeaderKnown: true, DBPages: dbPages}
}

// fromChain is the spool position at p, with the database size dbPages.
func fromChain(p walsync.WALPosition, dbPages uint32) position {
	return position{Salt1: p.Salt1, Salt2: p.Salt2, CkptSeq: p.CkptSeq, Frame: p.Frame, Cksum1: p.Cksum1,
		Cksum2: p.Cksum2, BigEndian: p.BigEndian, HeaderKnown: true, DBPages: dbPages}
}

// removeSynced removes name from the spool and makes the removal durable.
func (s *spool) removeSynced(name string) error {
	if err := s.fs.Remove("spool:remove-empty", filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return s.syncDirOp("spool:remove-empty-sync")
}
