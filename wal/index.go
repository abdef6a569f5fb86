package wal

import "io"

// Index is the committed content of a WAL: the result of scanning it up to
// its last valid commit frame.
//
// If MaxFrame is 0 the WAL holds no committed data and the database file
// alone is current. Otherwise a consistent snapshot of the database is
// DBSize pages long, and its page p is read from the WAL at PageOffset(p) if
// p is in Pages and from the database file otherwise (all zeros if the file is
// shorter). This matches what a SQLite checkpoint of the whole WAL writes.
type Index struct {
	Header Header
	// MaxFrame is the index of the last valid commit frame, 0 if none.
	MaxFrame uint32
	// DBSize is the database size in pages from that commit frame, 0 if none.
	DBSize uint32
	// Checksum1 and Checksum2 are the running checksum after MaxFrame (the
	// header checksum if MaxFrame is 0). With Header and MaxFrame they are
	// the position to resume from with NewScannerAt.
	Checksum1, Checksum2 uint32
	// Pages maps a page number to the index of the latest frame <= MaxFrame
	// holding it. Pages beyond DBSize are left out: they are not part of the
	// database as of MaxFrame (a later commit truncated it).
	Pages map[uint32]uint32
}

// PageOffset returns the file offset of the data of the latest committed
// version of page pgno in the WAL, and whether the WAL holds one.
func (x *Index) PageOffset(pgno uint32) (int64, bool) {
	i, ok := x.Pages[pgno]
	if !ok {
		return 0, false
	}
	return FrameOffset(x.Header.PageSize, i) + FrameHeaderSize, true
}

type pageFrame struct{ pgno, index uint32 }

// ReadIndex scans the whole WAL in r and returns its committed content.
// Valid frames after the last commit frame are ignored, as is everything
// from the first invalid frame on.
//
// The errors are those of NewScanner: ErrNoHeader for a WAL shorter than its
// header (no committed frames), an error wrapping ErrBadMagic, ErrBadHeader,
// ErrVersion or ErrPageSize for an invalid header, or an I/O error. SQLite
// itself ignores a WAL whose header checksum does not match (ErrBadHeader).
func ReadIndex(r io.ReaderAt) (*Index, error) {
	s, err := NewScanner(r)
	if err != nil {
		return nil, err
	}
	x := &Index{
		Header:    s.hdr,
		Checksum1: s.hdr.Checksum1,
		Checksum2: s.hdr.Checksum2,
		Pages:     make(map[uint32]uint32),
	}
	// Frames of the transaction in progress, applied at its commit frame.
	var pending []pageFrame
	for s.Next() {
		pending = append(pending, pageFrame{s.fh.Pgno, s.index})
		if !s.fh.IsCommit() {
			continue
		}
		for _, p := range pending {
			x.Pages[p.pgno] = p.index
		}
		pending = pending[:0]
		x.MaxFrame = s.index
		x.DBSize = s.fh.Commit
		x.Checksum1, x.Checksum2 = s.c1, s.c2
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	for pgno := range x.Pages {
		if pgno > x.DBSize {
			delete(x.Pages, pgno)
		}
	}
	return x, nil
}
