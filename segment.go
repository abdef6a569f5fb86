package walsync

import (
	"fmt"

	"github.com/walsync/walsync/wal"
)

// A segment's content is a run of records, each the size of a WAL frame
// (24-byte header and a page): WAL frames exactly as SQLite wrote them,
// and, in a segment whose header has the Restarts flag, WAL restart
// records between transactions (docs/FORMAT.md, "WAL restarts inside a
// segment"). A restart record says that SQLite restarted the WAL there
// and carries the new WAL's 32-byte header:
//
//	frame header slots: page number 0, commit 0, the new WAL's salt-1 and
//	                    salt-2, the new WAL header's checksum-1 and -2
//	data:               the new WAL's header, 32 bytes, then zeros
//
// The frames after it are frames 1, 2, ... of the new WAL, their checksum
// chain starting from that header's checksum. SegmentChain checks the
// records of one segment in order; restore, verify and the spool's
// recovery all read segments through it.

// WALPosition is a point in a source WAL: its identity (salts, checkpoint
// sequence, checksum byte order), the last frame read (0: none) and the
// running checksum after it (the WAL header's checksum at frame 0).
type WALPosition struct {
	Salt1, Salt2, CkptSeq uint32
	Frame                 uint32
	Cksum1, Cksum2        uint32
	BigEndian             bool
}

// WALPositionAfter is the position after WAL frame frame with the WAL
// identity and running checksum that header h records: a snapshot's are
// those after its last frame (frame = WALFrame), a segment's those before
// its first (frame = WALFrame-1).
func (h ObjectHeader) WALPositionAfter(frame uint32) WALPosition {
	return WALPosition{Salt1: h.WALSalt1, Salt2: h.WALSalt2, CkptSeq: h.WALCheckpointSeq,
		Frame: frame, Cksum1: h.WALChecksum1, Cksum2: h.WALChecksum2, BigEndian: h.WALBigEndian}
}

// SegmentChain follows the WAL checksum chain through a segment's
// records.
type SegmentChain struct {
	pageSize uint32
	restarts bool // restart records are allowed
	pos      WALPosition
	records  uint32
	last     wal.FrameHeader // of the last record (Pgno 0: a restart)
	nRestart uint32
}

// NewSegmentChain starts the chain at the position before a segment's
// first record, as header h records it. Restart records are accepted when
// h has the Restarts flag, or when allowRestarts is set (an open segment in
// the spool, whose header gets the flag only when it is sealed).
func NewSegmentChain(h ObjectHeader, allowRestarts bool) *SegmentChain {
	return &SegmentChain{
		pageSize: h.PageSize,
		restarts: h.Restarts || allowRestarts,
		pos:      h.WALPositionAfter(h.WALFrame - 1),
	}
}

// Next checks the next record, rec (24 + page size bytes), and moves the
// chain past it. It reports whether the record is a WAL frame (whose page
// a restore applies) rather than a restart record. The error, wrapping
// ErrFormat or ErrChecksum, names the WAL frame or record; the chain
// does not move then.
func (c *SegmentChain) Next(rec []byte) (frame bool, err error) {
	fh := wal.ParseFrameHeader(rec)
	if fh.Pgno == 0 && c.restarts {
		if err := c.restart(fh, rec); err != nil {
			return false, err
		}
		c.records++
		c.nRestart++
		c.last = fh
		return false, nil
	}
	idx := uint64(c.pos.Frame) + 1
	switch {
	case fh.Pgno == 0:
		return false, fmt.Errorf("%w: WAL frame %d has page number 0 (the header does not announce WAL restart records)", ErrFormat, idx)
	case fh.Salt1 != c.pos.Salt1 || fh.Salt2 != c.pos.Salt2:
		return false, fmt.Errorf("%w: WAL frame %d has salts %08x %08x, the segment's WAL %08x %08x",
			ErrFormat, idx, fh.Salt1, fh.Salt2, c.pos.Salt1, c.pos.Salt2)
	case idx > 0xffffffff:
		return false, fmt.Errorf("%w: frames run past the largest WAL frame number", ErrFormat)
	}
	c1, c2 := wal.FrameChecksum(c.pos.BigEndian, c.pos.Cksum1, c.pos.Cksum2, rec)
	if c1 != fh.Checksum1 || c2 != fh.Checksum2 {
		return false, fmt.Errorf("%w: WAL checksum chain broken at frame %d: the frame says %08x%08x, its bytes give %08x%08x",
			ErrChecksum, idx, fh.Checksum1, fh.Checksum2, c1, c2)
	}
	c.pos.Frame, c.pos.Cksum1, c.pos.Cksum2 = uint32(idx), c1, c2
	c.records++
	c.last = fh
	return true, nil
}

// restart checks a restart record and moves the chain to the new WAL.
func (c *SegmentChain) restart(fh wal.FrameHeader, rec []byte) error {
	n := c.records + 1
	if c.records == 0 || !c.last.IsCommit() {
		return fmt.Errorf("%w: WAL restart record (record %d) does not follow a commit frame", ErrFormat, n)
	}
	if fh.Commit != 0 {
		return fmt.Errorf("%w: WAL restart record (record %d) has commit %d, not 0", ErrFormat, n, fh.Commit)
	}
	data := rec[wal.FrameHeaderSize:]
	wh, err := wal.ParseHeader(data)
	if err != nil {
		return fmt.Errorf("%w: WAL restart record (record %d): %v", ErrFormat, n, err)
	}
	switch {
	case wh.PageSize != c.pageSize:
		return fmt.Errorf("%w: WAL restart record (record %d) has page size %d, the segment's is %d", ErrFormat, n, wh.PageSize, c.pageSize)
	case fh.Salt1 != wh.Salt1 || fh.Salt2 != wh.Salt2 || fh.Checksum1 != wh.Checksum1 || fh.Checksum2 != wh.Checksum2:
		return fmt.Errorf("%w: WAL restart record (record %d): its salts or checksum are not those of the WAL header it holds", ErrFormat, n)
	case wh.Salt1 == c.pos.Salt1 && wh.Salt2 == c.pos.Salt2:
		return fmt.Errorf("%w: WAL restart record (record %d) keeps the WAL salts %08x %08x: not a new WAL", ErrFormat, n, wh.Salt1, wh.Salt2)
	}
	for _, b := range data[wal.HeaderSize:] {
		if b != 0 {
			return fmt.Errorf("%w: WAL restart record (record %d) has bytes after its WAL header", ErrFormat, n)
		}
	}
	c.pos = WALPosition{Salt1: wh.Salt1, Salt2: wh.Salt2, CkptSeq: wh.CheckpointSeq,
		Cksum1: wh.Checksum1, Cksum2: wh.Checksum2, BigEndian: wh.BigEndianChecksum()}
	return nil
}

// Pos is the position after the last record.
func (c *SegmentChain) Pos() WALPosition { return c.pos }

// Last is the frame header of the last record (page number 0 for a
// restart record); the zero header before any.
func (c *SegmentChain) Last() wal.FrameHeader { return c.last }

// Records is the number of records the chain has moved past, and
// Restarts how many of them were restart records.
func (c *SegmentChain) Records() uint32  { return c.records }
func (c *SegmentChain) Restarts() uint32 { return c.nRestart }

// AppendRestartRecord appends to b the restart record for a WAL whose
// header is wh, in a segment of the given page size, and returns the
// extended slice.
func AppendRestartRecord(b []byte, wh wal.Header, pageSize uint32) []byte {
	b = wal.FrameHeader{Salt1: wh.Salt1, Salt2: wh.Salt2, Checksum1: wh.Checksum1, Checksum2: wh.Checksum2}.AppendBinary(b)
	b = wh.AppendBinary(b)
	return append(b, make([]byte, int(pageSize)-wal.HeaderSize)...)
}
