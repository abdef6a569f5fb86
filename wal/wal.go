package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// HeaderSize is the size in bytes of the WAL header.
	HeaderSize = 32
	// FrameHeaderSize is the size in bytes of the header preceding each page
	// in a frame.
	FrameHeaderSize = 24

	// MagicLE is the magic number of a WAL whose checksums are computed on
	// little-endian 32-bit words.
	MagicLE = 0x377f0682
	// MagicBE is the magic number of a WAL whose checksums are computed on
	// big-endian 32-bit words.
	MagicBE = 0x377f0683

	// Version is the only WAL format version SQLite writes and accepts.
	Version = 3007000

	// MinPageSize and MaxPageSize bound the page size; it must also be a
	// power of two.
	MinPageSize = 512
	MaxPageSize = 65536
)

var (
	// ErrNoHeader is returned when a WAL file is shorter than HeaderSize.
	// An empty or missing WAL is a normal state of a database in WAL mode:
	// it holds no frames and the database file alone is current.
	ErrNoHeader = errors.New("wal: no header (file shorter than 32 bytes)")
	// ErrShortHeader is returned by ParseHeader for a slice shorter than
	// HeaderSize.
	ErrShortHeader = errors.New("wal: short header")
	// ErrBadMagic means the first four bytes are neither MagicLE nor MagicBE.
	ErrBadMagic = errors.New("wal: bad magic")
	// ErrBadHeader means the header checksum does not match its contents.
	// SQLite treats such a WAL as empty (typically a torn header write
	// during a WAL reset), so callers may do the same.
	ErrBadHeader = errors.New("wal: header checksum mismatch")
	// ErrVersion means the format version is not Version.
	ErrVersion = errors.New("wal: unsupported version")
	// ErrPageSize means the page size is not a power of two in
	// [MinPageSize, MaxPageSize].
	ErrPageSize = errors.New("wal: invalid page size")
)

// Header is the decoded 32-byte WAL header.
type Header struct {
	Magic                uint32 // MagicLE or MagicBE
	Version              uint32 // 3007000
	PageSize             uint32 // 512..65536, power of two
	CheckpointSeq        uint32
	Salt1, Salt2         uint32
	Checksum1, Checksum2 uint32 // checksum of the first 24 bytes
}

// ParseHeader decodes and validates a WAL header from the first HeaderSize
// bytes of b. It checks, in this order, the magic number, the header
// checksum, the version and the page size; the error wraps ErrShortHeader,
// ErrBadMagic, ErrBadHeader, ErrVersion or ErrPageSize. The decoded header is
// returned even when it is invalid.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShortHeader
	}
	b = b[:HeaderSize]
	h := Header{
		Magic:         binary.BigEndian.Uint32(b[0:]),
		Version:       binary.BigEndian.Uint32(b[4:]),
		PageSize:      binary.BigEndian.Uint32(b[8:]),
		CheckpointSeq: binary.BigEndian.Uint32(b[12:]),
		Salt1:         binary.BigEndian.Uint32(b[16:]),
		Salt2:         binary.BigEndian.Uint32(b[20:]),
		Checksum1:     binary.BigEndian.Uint32(b[24:]),
		Checksum2:     binary.BigEndian.Uint32(b[28:]),
	}
	return h, h.validate(b)
}

// Validate reports whether h is a valid header, with the same checks and
// errors as ParseHeader.
func (h Header) Validate() error {
	var b [HeaderSize]byte
	return h.validate(h.AppendBinary(b[:0]))
}

// validate checks h, whose encoding is enc.
func (h Header) validate(enc []byte) error {
	if h.Magic != MagicLE && h.Magic != MagicBE {
		return fmt.Errorf("%w: %#08x", ErrBadMagic, h.Magic)
	}
	if c1, c2 := Checksum(h.BigEndianChecksum(), 0, 0, enc[:24]); c1 != h.Checksum1 || c2 != h.Checksum2 {
		return fmt.Errorf("%w: stored %08x%08x, computed %08x%08x", ErrBadHeader, h.Checksum1, h.Checksum2, c1, c2)
	}
	if h.Version != Version {
		return fmt.Errorf("%w: %d", ErrVersion, h.Version)
	}
	if !ValidPageSize(h.PageSize) {
		return fmt.Errorf("%w: %d", ErrPageSize, h.PageSize)
	}
	return nil
}

// ValidPageSize reports whether n is a power of two in [MinPageSize, MaxPageSize].
func ValidPageSize(n uint32) bool {
	return n >= MinPageSize && n <= MaxPageSize && n&(n-1) == 0
}

// BigEndianChecksum reports whether checksums in this WAL are computed on
// big-endian words (the low bit of the magic number).
func (h Header) BigEndianChecksum() bool { return h.Magic&1 == 1 }

// AppendBinary appends the 32-byte encoding of h to b, writing every field
// as it is (nothing is recomputed), and returns the extended slice.
//
// Unlike encoding.BinaryAppender it cannot fail and returns no error.
func (h Header) AppendBinary(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, h.Magic)
	b = binary.BigEndian.AppendUint32(b, h.Version)
	b = binary.BigEndian.AppendUint32(b, h.PageSize)
	b = binary.BigEndian.AppendUint32(b, h.CheckpointSeq)
	b = binary.BigEndian.AppendUint32(b, h.Salt1)
	b = binary.BigEndian.AppendUint32(b, h.Salt2)
	b = binary.BigEndian.AppendUint32(b, h.Checksum1)
	b = binary.BigEndian.AppendUint32(b, h.Checksum2)
	return b
}

// NewHeader returns a header for a fresh WAL with the given fields, version
// 3007000, the magic number selected by bigEndian and a correct checksum.
// pageSize is not validated; see ValidPageSize.
func NewHeader(pageSize, checkpointSeq, salt1, salt2 uint32, bigEndian bool) Header {
	h := Header{
		Magic:         MagicLE,
		Version:       Version,
		PageSize:      pageSize,
		CheckpointSeq: checkpointSeq,
		Salt1:         salt1,
		Salt2:         salt2,
	}
	if bigEndian {
		h.Magic = MagicBE
	}
	var b [HeaderSize]byte
	h.Checksum1, h.Checksum2 = Checksum(bigEndian, 0, 0, h.AppendBinary(b[:0])[:24])
	return h
}

// ReadHeader reads and validates the header at the start of r. It returns
// ErrNoHeader if r holds fewer than HeaderSize bytes, otherwise the errors of
// ParseHeader or an I/O error.
func ReadHeader(r io.ReaderAt) (Header, error) {
	var b [HeaderSize]byte
	if err := readHeader(r, &b); err != nil {
		return Header{}, err
	}
	return ParseHeader(b[:])
}

func readHeader(r io.ReaderAt, b *[HeaderSize]byte) error {
	n, err := r.ReadAt(b[:], 0)
	if n == HeaderSize {
		return nil
	}
	if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrNoHeader
	}
	return err
}

// FrameHeader is the decoded 24-byte header of a frame.
type FrameHeader struct {
	Pgno                 uint32 // page number
	Commit               uint32 // db size in pages after commit for a commit frame, 0 otherwise
	Salt1, Salt2         uint32 // copies of the WAL header's salts
	Checksum1, Checksum2 uint32 // cumulative checksum through this frame
}

// ParseFrameHeader decodes a frame header from the first FrameHeaderSize
// bytes of b; it does not validate anything. It panics if len(b) is less than
// FrameHeaderSize.
func ParseFrameHeader(b []byte) FrameHeader {
	_ = b[FrameHeaderSize-1] // bounds check; b[:24] alone would not catch a short b with spare capacity
	return FrameHeader{
		Pgno:      binary.BigEndian.Uint32(b[0:]),
		Commit:    binary.BigEndian.Uint32(b[4:]),
		Salt1:     binary.BigEndian.Uint32(b[8:]),
		Salt2:     binary.BigEndian.Uint32(b[12:]),
		Checksum1: binary.BigEndian.Uint32(b[16:]),
		Checksum2: binary.BigEndian.Uint32(b[20:]),
	}
}

// IsCommit reports whether f is a commit frame, the last frame of a
// transaction.
func (f FrameHeader) IsCommit() bool { return f.Commit != 0 }

// AppendBinary appends the 24-byte encoding of f to b, writing every field as
// it is, and returns the extended slice.
func (f FrameHeader) AppendBinary(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, f.Pgno)
	b = binary.BigEndian.AppendUint32(b, f.Commit)
	b = binary.BigEndian.AppendUint32(b, f.Salt1)
	b = binary.BigEndian.AppendUint32(b, f.Salt2)
	b = binary.BigEndian.AppendUint32(b, f.Checksum1)
	b = binary.BigEndian.AppendUint32(b, f.Checksum2)
	return b
}

// FrameChecksum continues the WAL's running checksum (s1, s2) over one
// whole frame (header and page): a frame's checksum covers the first 8
// bytes of its header (page number, commit size) and its page data. The
// result is what the frame's header must carry.
func FrameChecksum(bigEndian bool, s1, s2 uint32, frame []byte) (uint32, uint32) {
	s1, s2 = Checksum(bigEndian, s1, s2, frame[:8])
	return Checksum(bigEndian, s1, s2, frame[FrameHeaderSize:])
}

// Checksum implements SQLite's WAL checksum: it continues from (s1, s2) over
// b, whose length must be a multiple of 8, reading it as 32-bit words in
// big-endian or little-endian order, and returns the new (s1, s2). For each
// pair of words (x0, x1):
//
//	s1 += x0 + s2
//	s2 += x1 + s1
//
// with 32-bit wrap-around. It panics if len(b) is not a multiple of 8.
func Checksum(bigEndian bool, s1, s2 uint32, b []byte) (uint32, uint32) {
	if len(b)%8 != 0 {
		panic("wal: Checksum: length not a multiple of 8")
	}
	if bigEndian {
		for ; len(b) >= 8; b = b[8:] {
			s1 += binary.BigEndian.Uint32(b) + s2
			s2 += binary.BigEndian.Uint32(b[4:]) + s1
		}
	} else {
		for ; len(b) >= 8; b = b[8:] {
			s1 += binary.LittleEndian.Uint32(b) + s2
			s2 += binary.LittleEndian.Uint32(b[4:]) + s1
		}
	}
	return s1, s2
}

// FrameSize returns the size in bytes of one frame (header and page).
func FrameSize(pageSize uint32) int64 { return FrameHeaderSize + int64(pageSize) }

// FrameOffset returns the file offset of the header of frame index (1-based):
// 32 + (index-1)*(24+pageSize). The page data starts FrameHeaderSize bytes
// later. FrameOffset(pageSize, n+1) is also the offset just past frame n, so
// FrameOffset(pageSize, 1) == HeaderSize.
func FrameOffset(pageSize uint32, index uint32) int64 {
	return HeaderSize + (int64(index)-1)*FrameSize(pageSize)
}
