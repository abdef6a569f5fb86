package replicate

import (
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"path/filepath"
	"sync"

	"github.com/walsync/walsync/wal"
)

// Capture ahead of the commit (`walsync watch` only).
//
// A large transaction spills its pages into the WAL long before it
// commits. Captured only after the commit, its frames are read,
// checksummed, compressed and written while the application's next
// checkpoint waits for the pin (a TRUNCATE after a 50 MB transaction:
// 150-190 ms of capture against 14-19 ms for the whole checkpoint without
// walsync). So while a transaction is being written, sync captures its
// frames ahead (speculate): once at least specMin bytes of frames past the
// position chain validly from it, they are appended to an open segment
// kept aside (DB.spec) in chunks of up to specChunkBytes, each ending its
// zstd frame and remembered with a hash of its frames' bytes.
//
// Nothing in such a chunk is known to be committed, and SQLite may still
// change it: a page spilled twice in one transaction is written over its
// first frame, the checksums from that frame on are rewritten at the
// commit, and a transaction that rolls back leaves frames the next one
// writes over. So the capture at the commit (appendFrames) reads every
// frame again, as it always does, and checks the WAL checksum chain; for
// the frames a chunk holds it only hashes them, and a chunk whose hash
// differs, or that the commit leaves partly behind, is cut off the file
// and its frames are captured again from the WAL. The hash is the
// runtime's seeded 64-bit one (hash/maphash, a random seed per process):
// SQLite cannot aim at it, and two different chunks pass as one with
// probability 2^-64. At the commit, what is left on the critical path is
// one read, the checksum chain and the hash of the frames, the capture of
// the last ones, and an fsync whose writeback (countingWriter) mostly ran
// while the transaction did.
//
// A chunk never holds a commit frame: speculation stops before one. The
// records of an open segment after its last commit are dropped by
// recoverOpen, so after a crash nothing captured ahead is ever sealed: a
// commit frame written but not yet in the wal-index (its WAL fsync
// failed, say) is taken only by the capture that the wal-index allows.
// The file kept aside is named as the next open segment would be; it is
// used (adoptSpec) only when the capture at the commit starts at the very
// position, sequence number and generation it was made for, and removed
// otherwise (a file left by a crash holds no commit, and sealOpenEntries
// removes it).

// specMin is how many bytes of frames past the position, chaining validly
// from it but not committed yet, make sync capture them ahead.
const specMin = 4 << 20

// specChunkBytes is the most frames one chunk holds.
const specChunkBytes = 8 << 20

// specPerSync is the most one sync captures ahead (d.mu is held).
const specPerSync = 32 << 20

var specSeed = maphash.MakeSeed()

// specChunk is a run of frames captured ahead of their commit.
type specChunk struct {
	from, to uint32 // first and last frame
	c1, c2   uint32 // the running checksum before frame from
	e1, e2   uint32 // after frame to
	off      int64  // the file's size before the chunk
	content  uint64 // the content's size before the chunk
	sum      uint64 // maphash of the frames' bytes
}

// specStart is where a capture ahead of the commit begins: the position,
// when every committed frame is captured and it is in the WAL that h
// describes, with that WAL's header. When the WAL was restarted since the
// position and nothing is committed in it yet, it is the new WAL's frame
// 0, as the capture at the commit will have it, when that capture can
// prove the restart continuous as things stand (captureUntil): the
// position was recorded at its frame 0 (noteEmptyWAL), or the pin has
// read mark 0. If the pin moves off mark 0 before the commit, that
// capture finds the restart unproven and begins a new generation, with or
// without this.
func (d *DB) specStart(h walIndexHeader) (position, wal.Header, bool) {
	pos := d.st.Pos
	switch {
	case pos.HeaderKnown && pos.Salt1 == h.Salt1 && pos.Salt2 == h.Salt2 && h.MaxFrame == pos.Frame:
		hdr := d.walHdr
		if hdr.Magic == 0 || hdr.Salt1 != pos.Salt1 || hdr.Salt2 != pos.Salt2 {
			var err error
			if hdr, err = wal.ReadHeader(d.walf); err != nil || hdr.Salt1 != pos.Salt1 || hdr.Salt2 != pos.Salt2 {
				return pos, hdr, false
			}
		}
		return pos, hdr, true
	case h.MaxFrame == 0 && (pos.startsWAL(h.Salt1, h.Salt2) || d.atZero || d.restartProven):
		wh, err := wal.ReadHeader(d.walf)
		if err != nil || wh.Salt1 != h.Salt1 || wh.Salt2 != h.Salt2 || wh.PageSize != d.st.PageSize {
			return pos, wh, false
		}
		return walStart(wh, pos.DBPages), wh, true
	}
	return pos, wal.Header{}, false
}

// commitWritten says whether the last frame in the WAL file (of size
// size) is a commit frame of the WAL that h describes, past its end: a
// commit whose wal-index update comes next (after the WAL's fsync),
// which raises no file event. sync then looks again in a millisecond: an
// application that checkpoints right after its commit waits for the pin
// to move.
func (d *DB) commitWritten(h walIndexHeader, size int64) bool {
	if d.st.PageSize == 0 {
		return false
	}
	fs := wal.FrameSize(d.st.PageSize)
	n := (size - wal.HeaderSize) / fs
	if n <= int64(h.MaxFrame) || n > math.MaxUint32 {
		return false
	}
	var b [wal.FrameHeaderSize]byte
	if _, err := d.walf.ReadAt(b[:], wal.FrameOffset(d.st.PageSize, uint32(n))); err != nil {
		return false
	}
	fh := wal.ParseFrameHeader(b[:])
	return fh.IsCommit() && fh.Salt1 == h.Salt1 && fh.Salt2 == h.Salt2
}

// speculate captures ahead of their commit the frames a transaction
// being written has put in the WAL, when there are enough of them. A
// failure only drops what was captured ahead: the capture at the commit
// does it all. Called by sync with d.mu held.
func (d *DB) speculate(h walIndexHeader) {
	if d.w.Batch || d.seg != nil || d.genPending != "" || d.stopping() || d.walf == nil {
		return
	}
	start, hdr, ok := d.specStart(h)
	if !ok {
		return
	}
	o := d.spec
	if o != nil && (o.end != start || o.seq != d.st.NextSeq || o.hdr.Generation != d.gen) {
		d.discardSpec()
		o = nil
	}
	frame, c1, c2 := start.Frame, start.Cksum1, start.Cksum2
	if o != nil && len(o.spec) > 0 {
		c := o.spec[len(o.spec)-1]
		frame, c1, c2 = c.to, c.e1, c.e2
	}
	fs := wal.FrameSize(hdr.PageSize)
	avail := d.walSize - wal.FrameOffset(hdr.PageSize, frame+1)
	if avail < specMin {
		return
	}
	sc, err := wal.NewScannerAt(d.walf, hdr, frame, c1, c2)
	if err != nil {
		return
	}
	ahead := readAheadBufs.Get().(*[]byte)
	defer readAheadBufs.Put(ahead)
	// The frames read ahead may change under the scanner (a page spilled
	// again): the check at the commit catches what a window kept stale.
	sc.ReadAhead(frame+uint32(avail/fs), *ahead)
	if o == nil {
		if o, err = d.startOpen(start, d.st.NextSeq); err != nil {
			d.log.Debug("capture ahead of the commit", "err", err)
			return
		}
		d.spec = o
	}
	var hs maphash.Hash
	hs.SetSeed(specSeed)
	for budget := int64(specPerSync); budget > 0; {
		idx, _, _ := sc.Frame()
		s1, s2 := sc.Checksum()
		c := specChunk{from: idx + 1, c1: s1, c2: s2, off: o.cw.n, content: o.ow.ContentSize()}
		hs.Reset()
		var size int64
		more := true
		for size < specChunkBytes {
			if !sc.Next() {
				more = false
				break
			}
			i, fh, _ := sc.Frame()
			if fh.IsCommit() {
				more = false // captured when the wal-index says it is committed
				break
			}
			b := sc.FrameBytes()
			if _, err := o.ow.Write(b); err != nil {
				d.log.Debug("capture ahead of the commit", "err", err)
				d.discardSpec()
				return
			}
			hs.Write(b)
			size += int64(len(b))
			c.to = i
			c.e1, c.e2 = sc.Checksum()
		}
		if size == 0 {
			break
		}
		if err := o.ow.Suspend(); err != nil {
			d.log.Debug("capture ahead of the commit", "err", err)
			d.discardSpec()
			return
		}
		c.sum = hs.Sum64()
		o.spec = append(o.spec, c)
		budget -= size
		if !more {
			break
		}
	}
	if len(o.spec) == 0 {
		d.discardSpec()
	}
}

// adoptSpec returns the segment captured ahead when the capture at the
// commit starts where it did (pos), as the open segment; otherwise it
// removes it and returns nil. Called with d.mu held.
func (d *DB) adoptSpec(pos position) *openSegment {
	o := d.spec
	if o == nil {
		return nil
	}
	if o.end != pos || o.seq != d.st.NextSeq || o.hdr.Generation != d.gen || len(o.spec) == 0 {
		d.discardSpec()
		return nil
	}
	d.spec = nil
	o.first = d.now()
	return o
}

// discardSpec closes and removes the segment captured ahead, if any. The
// removal need not be durable: a file left behind holds no commit, and
// the next start removes it. Called with d.mu held.
func (d *DB) discardSpec() {
	o := d.spec
	if o == nil {
		return
	}
	d.spec = nil
	o.ow.Abort()
	o.f.Close()
	d.spool.fs.Remove("segment:discard-ahead", filepath.Join(d.spool.dir, openName(o.seq))) //nolint:errcheck // removed at the next start anyway
}

// cutSpec cuts the chunks captured ahead from the k-th on off the file:
// SQLite changed their frames, or the commit left them behind.
func (o *openSegment) cutSpec(k int) error {
	if k >= len(o.spec) {
		return nil
	}
	c := o.spec[k]
	o.spec = o.spec[:k]
	if err := o.f.Truncate(c.off); err != nil {
		return fmt.Errorf("spool %s: %w", o.f.Name(), err)
	}
	if _, err := o.f.Seek(c.off, io.SeekStart); err != nil {
		return fmt.Errorf("spool %s: %w", o.f.Name(), err)
	}
	o.cw.n, o.cw.kicked = c.off, min(o.cw.kicked, c.off)
	o.synced = min(o.synced, c.off)
	return o.ow.Rewind(c.content)
}

// specBufs are keepSpec's read buffers.
var specBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// keepSpec checks the chunks captured ahead against the WAL (r), whose
// frames are committed up to last, before the scan sc that starts where
// the first chunk does: a chunk whose frames are all committed and whose
// bytes hash as when they were captured is kept, and the scan moves past
// it (their checksum chain was verified when they were captured, from
// where the chunk before ended); the first one that is not, and every
// one after it, is cut off the file, and the scan captures its frames
// again. It returns the frames kept and cut.
func (o *openSegment) keepSpec(r io.ReaderAt, sc *wal.Scanner, last uint32) (kept, cut uint32, err error) {
	if len(o.spec) == 0 {
		return 0, 0, nil
	}
	buf := specBufs.Get().(*[]byte)
	defer specBufs.Put(buf)
	k := 0
	for ; k < len(o.spec); k++ {
		c := o.spec[k]
		at, _, _ := sc.Frame()
		s1, s2 := sc.Checksum()
		if c.to >= last || at != c.from-1 || s1 != c.c1 || s2 != c.c2 {
			break
		}
		var hs maphash.Hash
		hs.SetSeed(specSeed)
		from, to := wal.FrameOffset(o.hdr.PageSize, c.from), wal.FrameOffset(o.hdr.PageSize, c.to+1)
		for off := from; off < to; {
			b := (*buf)[:min(int64(len(*buf)), to-off)]
			if _, err := r.ReadAt(b, off); err != nil {
				return kept, 0, err
			}
			hs.Write(b)
			off += int64(len(b))
		}
		if hs.Sum64() != c.sum {
			break
		}
		sc.Rewind(c.to, c.e1, c.e2)
		kept += c.to - c.from + 1
	}
	if k < len(o.spec) {
		cut = o.spec[len(o.spec)-1].to - o.spec[k].from + 1
		err = o.cutSpec(k)
	}
	o.spec = nil
	return kept, cut, err
}
