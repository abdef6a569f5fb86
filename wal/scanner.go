package wal

import (
	"errors"
	"fmt"
	"io"
	"math"
)

// Scanner walks the frames of a WAL file, validating each frame's salts and
// the cumulative checksum chain. It stops at the first invalid frame: a torn,
// overwritten or stale tail is the normal end of a WAL, not an error.
//
// Scanner reports every valid frame, committed or not; callers that only want
// committed data must hold frames back until they see a commit frame (see
// FrameHeader.IsCommit), as ReadIndex does.
//
// A Scanner reads one frame per Next call with a single ReadAt into a buffer
// allocated once, and does not allocate otherwise; with ReadAhead it reads
// several frames per ReadAt.
type Scanner struct {
	r         io.ReaderAt
	hdr       Header
	bigEndian bool
	buf       []byte // the current frame: header followed by page data

	// Frames first.. are in win[:winLen]: one frame in own, or with
	// ReadAhead several in ahead, never past frame last.
	own, ahead  []byte
	win         []byte
	last, first uint32
	winLen      int

	index  uint32 // index of the last valid frame, 0 for none
	fh     FrameHeader
	c1, c2 uint32 // running checksum after frame index
	err    error

	hbuf [HeaderSize]byte
}

// NewScanner reads and validates the header of the WAL in r and returns a
// Scanner positioned before the first frame. If r holds fewer than HeaderSize
// bytes it returns ErrNoHeader (an empty WAL is a normal state). If the header
// is invalid the error wraps ErrBadMagic, ErrBadHeader, ErrVersion or
// ErrPageSize. Other errors come from r.
func NewScanner(r io.ReaderAt) (*Scanner, error) {
	s := new(Scanner)
	if err := readHeader(r, &s.hbuf); err != nil {
		return nil, err
	}
	hdr, err := ParseHeader(s.hbuf[:])
	if err != nil {
		return nil, err
	}
	s.init(r, hdr, 0, hdr.Checksum1, hdr.Checksum2)
	return s, nil
}

// NewScannerAt returns a Scanner that resumes after frame index of a WAL
// whose header is hdr, with (cksum1, cksum2) the running checksum after that
// frame: typically the Index.MaxFrame and Index.Checksum1/2 of an earlier
// ReadIndex, or the index and Checksum of a commit frame seen by an earlier
// Scanner. With index 0 the checksum must be the header's.
//
// Resume only from a commit frame (or 0): SQLite overwrites the frames after
// the last commit when a transaction rolls back, so a position inside an
// uncommitted transaction may stop being valid.
//
// NewScannerAt does not read the header from r. A follower should re-read it
// (ReadHeader) when the scanner stops making progress: if the salts changed,
// the WAL was reset and scanning must restart from frame 1 with NewScanner.
// The error wraps the errors of Header.Validate if hdr is invalid.
func NewScannerAt(r io.ReaderAt, hdr Header, index, cksum1, cksum2 uint32) (*Scanner, error) {
	if err := hdr.Validate(); err != nil {
		return nil, err
	}
	if index == 0 && (cksum1 != hdr.Checksum1 || cksum2 != hdr.Checksum2) {
		return nil, fmt.Errorf("wal: resume at frame 0 with checksum %08x%08x, header has %08x%08x",
			cksum1, cksum2, hdr.Checksum1, hdr.Checksum2)
	}
	s := new(Scanner)
	s.init(r, hdr, index, cksum1, cksum2)
	return s, nil
}

func (s *Scanner) init(r io.ReaderAt, hdr Header, index, c1, c2 uint32) {
	s.r = r
	s.hdr = hdr
	s.bigEndian = hdr.BigEndianChecksum()
	s.index = index
	s.c1, s.c2 = c1, c2
}

// Rewind puts the scanner back after frame index, with (cksum1, cksum2)
// the running checksum after that frame, as NewScannerAt would; what it
// read ahead is read again.
func (s *Scanner) Rewind(index, cksum1, cksum2 uint32) {
	s.index, s.c1, s.c2 = index, cksum1, cksum2
	s.fh, s.buf, s.winLen, s.err = FrameHeader{}, nil, 0, nil
}

// Header returns the WAL header.
func (s *Scanner) Header() Header { return s.hdr }

// Next advances to the next valid frame and reports whether there is one.
// It returns false at the end of the file, at a partial frame, at the first
// frame whose salts, page number or checksum are invalid, or on an I/O error
// (see Err).
//
// When Next returns false without an error, the scanner stays on the last
// valid frame, and calling Next again retries the frame after it. A follower
// can thus poll a growing WAL with the same Scanner.
func (s *Scanner) Next() bool {
	if s.err != nil || s.index == math.MaxUint32 {
		return false
	}
	if !s.read() {
		s.winLen = 0 // a retry reads the file again
		return false
	}
	fh := ParseFrameHeader(s.buf)
	if fh.Salt1 != s.hdr.Salt1 || fh.Salt2 != s.hdr.Salt2 || fh.Pgno == 0 {
		s.winLen = 0
		return false
	}
	c1, c2 := FrameChecksum(s.bigEndian, s.c1, s.c2, s.buf)
	if c1 != fh.Checksum1 || c2 != fh.Checksum2 {
		s.winLen = 0
		return false
	}
	s.index++
	s.fh = fh
	s.c1, s.c2 = c1, c2
	return true
}

// ReadAhead lets Next read as many frames per ReadAt as buf holds, up to
// and including frame last, which must not change while the scanner reads
// (frames a reader's read mark protects: committed, before a restart). Past
// last, or when buf holds less than a frame, Next reads one frame at a time
// as before. buf stays the caller's (a pool can share it between scanners)
// and is used until the Scanner is dropped.
func (s *Scanner) ReadAhead(last uint32, buf []byte) {
	s.last, s.ahead, s.winLen = last, buf, 0
}

// read puts frame index+1 in s.buf, reading the file unless the window
// holds it; false at the end of the file or on an I/O error (then s.err
// is set).
func (s *Scanner) read() bool {
	next := s.index + 1
	fs := int(FrameSize(s.hdr.PageSize))
	if int(next-s.first+1)*fs > s.winLen {
		s.win = s.ahead[:min(len(s.ahead)/fs, int(s.last-next)+1)*fs]
		if next > s.last || len(s.win) == 0 {
			if s.own == nil {
				s.own = make([]byte, fs)
			}
			s.win = s.own
		}
		n, err := s.r.ReadAt(s.win, FrameOffset(s.hdr.PageSize, next))
		s.first, s.winLen = next, n/fs*fs
		if s.winLen == 0 {
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				s.err = err
			}
			return false
		}
	}
	at := int(next-s.first) * fs
	s.buf = s.win[at : at+fs]
	return true
}

// Frame returns the current frame: its 1-based index, its header, and the
// file offset of its header (the page data starts FrameHeaderSize bytes
// later). Before the first successful Next it returns the resume index (0
// for a new WAL), a zero FrameHeader and the offset of that frame, or 0 if
// the index is 0.
func (s *Scanner) Frame() (index uint32, fh FrameHeader, offset int64) {
	if s.index == 0 {
		return 0, s.fh, 0
	}
	return s.index, s.fh, FrameOffset(s.hdr.PageSize, s.index)
}

// Data returns the page data of the current frame. The slice is reused: it
// is valid only until the next call to Next, and only if the last call to
// Next returned true.
func (s *Scanner) Data() []byte {
	if s.buf == nil {
		return nil
	}
	return s.buf[FrameHeaderSize:]
}

// FrameBytes returns the whole current frame (header and page data), with
// the same lifetime as Data.
func (s *Scanner) FrameBytes() []byte { return s.buf }

// Checksum returns the running checksum after the current frame (the header
// checksum before the first frame). Together with the frame index it is the
// position to pass to NewScannerAt.
func (s *Scanner) Checksum() (uint32, uint32) { return s.c1, s.c2 }

// Err returns the first I/O error encountered by Next. Invalid or partial
// frames are not errors.
func (s *Scanner) Err() error { return s.err }
