package walsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Object framing (docs/FORMAT.md has the full drawing). Every object
// walsync writes is a valid zstd stream, so `zstd -d` alone turns a
// snapshot back into the database file:
//
//	skippable frame  magic 0x184D2A57, len 96: header (kind, generation, page size, WAL position, time)
//	zstd frame(s)    the content: database pages (snapshot) or WAL frames (segment)
//	skippable frame  magic 0x184D2A57, len 48: trailer (content length, content SHA-256 or zeros)
//
// zstd decoders skip skippable frames; walsync reads them. Integers inside
// the header and trailer payloads are big-endian like SQLite's own formats;
// the skippable frame magic and length are little-endian as zstd requires.
const (
	skippableMagic   = 0x184D2A57
	headerPayloadLen = 96
	trailerPayload   = 48
	// HeaderLen and TrailerLen are the stored sizes of the two skippable frames.
	HeaderLen  = 8 + headerPayloadLen
	TrailerLen = 8 + trailerPayload
	// FormatVersion is the version written into every header.
	FormatVersion = 1

	flagWALBigEndian = 1 << 0
	flagUnhashed     = 1 << 1
	flagRestarts     = 1 << 2
)

// Object kinds.
const (
	KindByteSnapshot = 'S'
	KindByteSegment  = 'W'
)

var (
	headerMagic  = [4]byte{'W', 'S', 'Y', 'N'}
	trailerMagic = [4]byte{'W', 'E', 'N', 'D'}
)

// Generation identifies one unbroken history of a database: a snapshot and
// the WAL segments that continue it. Restore never crosses generations.
type Generation [16]byte

// String is the generation in hex.
func (g Generation) String() string { return hex.EncodeToString(g[:]) }

// ObjectHeader is the header of a snapshot or segment object.
type ObjectHeader struct {
	Kind       byte // KindByteSnapshot or KindByteSegment
	Generation Generation
	PageSize   uint32
	// PageCount is the database size in pages: of the snapshot, or after the
	// last commit frame of a segment.
	PageCount uint32
	// The source WAL position: its salts and checkpoint sequence, and the
	// frame index. For a snapshot, WALFrame is the last frame the snapshot
	// includes (0 if none); for a segment, the index of its first frame.
	WALSalt1, WALSalt2 uint32
	WALCheckpointSeq   uint32
	WALFrame           uint32
	FrameCount         uint32 // segments: number of records (frames and WAL restarts) in the content
	// WALChecksum1/2 is the WAL's cumulative checksum: for a snapshot, after
	// frame WALFrame; for a segment, before its first frame (after the
	// previous frame, or the WAL header's checksum when it starts at frame
	// 1). With it, restore checks the checksum chain across objects.
	WALChecksum1, WALChecksum2 uint32
	// WALBigEndian: the source WAL's checksums use big-endian words.
	WALBigEndian bool
	// Unhashed (segments only): the trailer holds no content SHA-256 (32
	// zero bytes). The frames are covered instead by SQLite's own WAL
	// checksum chain, which readers check frame by frame, and by the zstd
	// frame checksum; the stored bytes keep their recorded SHA-256. Every
	// segment walsync writes since December 2026 is unhashed; the content
	// hash cost its capture as much CPU as zstd did.
	Unhashed bool
	// Restarts (segments only): the content may hold WAL restart records
	// between transactions (docs/FORMAT.md, "WAL restarts inside a
	// segment"): the frames after one come from the next WAL. Readers
	// without this flag refuse a record with page number 0, and readers
	// older than it refuse the flag.
	Restarts bool
	// Seq: for a segment, its sequence number; for a snapshot, the number
	// of the first segment that continues it.
	Seq     uint64
	Created time.Time
}

// ObjectTrailer closes an object: the length and SHA-256 of its content
// after decompression.
type ObjectTrailer struct {
	ContentSize   uint64
	ContentSHA256 [32]byte
}

// MarshalBinary encodes h as its skippable frame.
func (h ObjectHeader) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderLen)
	binary.LittleEndian.PutUint32(b[0:], skippableMagic)
	binary.LittleEndian.PutUint32(b[4:], headerPayloadLen)
	p := b[8:]
	copy(p[0:4], headerMagic[:])
	p[4] = FormatVersion
	p[5] = h.Kind
	if h.WALBigEndian {
		p[6] |= flagWALBigEndian
	}
	if h.Unhashed {
		p[6] |= flagUnhashed
	}
	if h.Restarts {
		p[6] |= flagRestarts
	}
	copy(p[8:24], h.Generation[:])
	binary.BigEndian.PutUint32(p[24:], h.PageSize)
	binary.BigEndian.PutUint32(p[28:], h.PageCount)
	binary.BigEndian.PutUint32(p[32:], h.WALSalt1)
	binary.BigEndian.PutUint32(p[36:], h.WALSalt2)
	binary.BigEndian.PutUint32(p[40:], h.WALCheckpointSeq)
	binary.BigEndian.PutUint32(p[44:], h.WALFrame)
	binary.BigEndian.PutUint32(p[48:], h.FrameCount)
	binary.BigEndian.PutUint32(p[52:], h.WALChecksum1)
	binary.BigEndian.PutUint32(p[56:], h.WALChecksum2)
	binary.BigEndian.PutUint64(p[60:], uint64(h.Created.UnixMilli()))
	binary.BigEndian.PutUint64(p[68:], h.Seq)
	return b, nil
}

// UnmarshalBinary decodes a header frame of exactly HeaderLen bytes.
func (h *ObjectHeader) UnmarshalBinary(b []byte) error {
	if len(b) != HeaderLen {
		return fmt.Errorf("%w: header is %d bytes, want %d", ErrFormat, len(b), HeaderLen)
	}
	if binary.LittleEndian.Uint32(b[0:]) != skippableMagic || binary.LittleEndian.Uint32(b[4:]) != headerPayloadLen {
		return fmt.Errorf("%w: not a walsync object (bad header frame)", ErrFormat)
	}
	p := b[8:]
	if !bytes.Equal(p[0:4], headerMagic[:]) {
		return fmt.Errorf("%w: not a walsync object (bad header magic)", ErrFormat)
	}
	if p[4] != FormatVersion {
		return fmt.Errorf("%w: format version %d not supported (this walsync reads version %d)", ErrFormat, p[4], FormatVersion)
	}
	if p[5] != KindByteSnapshot && p[5] != KindByteSegment {
		return fmt.Errorf("%w: unknown object kind %q", ErrFormat, p[5])
	}
	h.Kind = p[5]
	if p[6]&^(flagWALBigEndian|flagUnhashed|flagRestarts) != 0 || p[7] != 0 {
		return fmt.Errorf("%w: unknown header flags %#x %#x", ErrFormat, p[6], p[7])
	}
	if p[6]&flagUnhashed != 0 && h.Kind != KindByteSegment {
		return fmt.Errorf("%w: a snapshot without a content sha256 (header flags %#x)", ErrFormat, p[6])
	}
	if p[6]&flagRestarts != 0 && h.Kind != KindByteSegment {
		return fmt.Errorf("%w: a snapshot with WAL restart records (header flags %#x)", ErrFormat, p[6])
	}
	h.WALBigEndian = p[6]&flagWALBigEndian != 0
	h.Unhashed = p[6]&flagUnhashed != 0
	h.Restarts = p[6]&flagRestarts != 0
	copy(h.Generation[:], p[8:24])
	h.PageSize = binary.BigEndian.Uint32(p[24:])
	if !ValidPageSize(h.PageSize) {
		return fmt.Errorf("%w: invalid page size %d", ErrFormat, h.PageSize)
	}
	h.PageCount = binary.BigEndian.Uint32(p[28:])
	h.WALSalt1 = binary.BigEndian.Uint32(p[32:])
	h.WALSalt2 = binary.BigEndian.Uint32(p[36:])
	h.WALCheckpointSeq = binary.BigEndian.Uint32(p[40:])
	h.WALFrame = binary.BigEndian.Uint32(p[44:])
	h.FrameCount = binary.BigEndian.Uint32(p[48:])
	h.WALChecksum1 = binary.BigEndian.Uint32(p[52:])
	h.WALChecksum2 = binary.BigEndian.Uint32(p[56:])
	h.Created = time.UnixMilli(int64(binary.BigEndian.Uint64(p[60:]))).UTC()
	h.Seq = binary.BigEndian.Uint64(p[68:])
	return nil
}

// MarshalBinary encodes t as its skippable frame.
func (t ObjectTrailer) MarshalBinary() ([]byte, error) {
	b := make([]byte, TrailerLen)
	binary.LittleEndian.PutUint32(b[0:], skippableMagic)
	binary.LittleEndian.PutUint32(b[4:], trailerPayload)
	p := b[8:]
	copy(p[0:4], trailerMagic[:])
	binary.BigEndian.PutUint64(p[8:], t.ContentSize)
	copy(p[16:48], t.ContentSHA256[:])
	return b, nil
}

// UnmarshalBinary decodes a trailer frame of exactly TrailerLen bytes.
func (t *ObjectTrailer) UnmarshalBinary(b []byte) error {
	if len(b) != TrailerLen || binary.LittleEndian.Uint32(b[0:]) != skippableMagic ||
		binary.LittleEndian.Uint32(b[4:]) != trailerPayload || !bytes.Equal(b[8:12], trailerMagic[:]) {
		return fmt.Errorf("%w: bad trailer", ErrFormat)
	}
	t.ContentSize = binary.BigEndian.Uint64(b[16:])
	copy(t.ContentSHA256[:], b[24:56])
	return nil
}

// ValidPageSize reports whether n is a SQLite page size: a power of two
// from 512 to 65536.
func ValidPageSize(n uint32) bool {
	return n >= 512 && n <= 65536 && n&(n-1) == 0
}

// encoderOptions keep an encoder small: one goroutine, a 256 KiB window
// and zstd's lower-memory buffers. Each live encoder costs about 1.1 MB of
// heap this way against 3.0 MB with a 1 MiB window and default buffers,
// at the same ratio on SQLite pages and no loss of speed (measured on a
// 3 MB database: 0.7802 either way). A watcher's heap goal is twice its
// live heap, so every encoder in the pool counts double in its RSS.
var encoderOptions = []zstd.EOption{
	zstd.WithEncoderLevel(zstd.SpeedFastest),
	zstd.WithEncoderConcurrency(1),
	zstd.WithWindowSize(256 << 10),
	zstd.WithLowerEncoderMem(true),
}

// encoders are reused: a zstd encoder allocates its tables and window on
// first use, and a watcher writes one object per captured commit.
var encoders = sync.Pool{New: func() any {
	enc, err := zstd.NewWriter(nil, encoderOptions...)
	if err != nil {
		panic(err) // only on invalid options, which are constants
	}
	return enc
}}

// ObjectWriter writes one object: header, compressed content, trailer.
type ObjectWriter struct {
	w       io.Writer
	enc     *zstd.Encoder
	content hash.Hash // nil: Unhashed
	n       uint64
}

// NewObjectWriter writes h to w and returns a writer for the content.
// Close writes the trailer; it does not close w. With h.Unhashed (a
// segment only) the trailer's content SHA-256 is left zero.
func NewObjectWriter(w io.Writer, h ObjectHeader) (*ObjectWriter, error) {
	if h.Unhashed && h.Kind != KindByteSegment {
		return nil, fmt.Errorf("%w: only a segment may be written without a content sha256", ErrFormat)
	}
	hb, _ := h.MarshalBinary()
	if _, err := w.Write(hb); err != nil {
		return nil, err
	}
	enc := encoders.Get().(*zstd.Encoder)
	enc.Reset(w)
	ow := &ObjectWriter{w: w, enc: enc}
	if !h.Unhashed {
		ow.content = sha256.New()
	}
	return ow, nil
}

// Write compresses content bytes.
func (ow *ObjectWriter) Write(p []byte) (int, error) {
	ow.resume()
	n, err := ow.enc.Write(p)
	if ow.content != nil {
		ow.content.Write(p[:n])
	}
	ow.n += uint64(n)
	return n, err
}

// Flush writes out everything compressed so far as complete zstd blocks
// (the frame stays open; later content may still refer back to it), so
// that the bytes written up to now decode to all the content given so far.
func (ow *ObjectWriter) Flush() error {
	if ow.enc == nil {
		return nil
	}
	return ow.enc.Flush()
}

// Suspend ends the zstd frame written so far, so that the bytes written
// up to now decode to all the content given so far, and gives the encoder
// back: a writer kept open between appends (an open segment) holds no
// encoder meanwhile (about 400 KB each: the VFS's two hundred databases
// written within a second held 80 MB). The next Write starts a new frame;
// the content is then several zstd frames one after the other, which a
// zstd decoder reads as one stream.
func (ow *ObjectWriter) Suspend() error {
	if ow.enc == nil {
		return nil
	}
	err := ow.enc.Close()
	ow.enc.Reset(nil)
	encoders.Put(ow.enc)
	ow.enc = nil
	return err
}

// resume takes an encoder after Suspend: a new frame.
func (ow *ObjectWriter) resume() {
	if ow.enc == nil {
		ow.enc = encoders.Get().(*zstd.Encoder)
		ow.enc.Reset(ow.w)
	}
}

// ContentSize is how many content bytes were written so far.
func (ow *ObjectWriter) ContentSize() uint64 { return ow.n }

// Rewind tells a suspended writer that the caller cut what it wrote back
// to where the content was size bytes long, at the end of an earlier
// Suspend (an open segment drops frames it captured ahead of their commit
// when SQLite rewrote them: replicate's speculative capture). Only for an
// unhashed object, whose content hash is not running.
func (ow *ObjectWriter) Rewind(size uint64) error {
	if ow.enc != nil || ow.content != nil || size > ow.n {
		return fmt.Errorf("%w: rewind of a writer that is not suspended, is hashed, or to past its end", ErrFormat)
	}
	ow.n = size
	return nil
}

// Abort gives up the object: nothing more is written, and the writer cannot
// be used afterwards.
func (ow *ObjectWriter) Abort() {
	if ow.enc != nil {
		ow.enc.Reset(nil)
		encoders.Put(ow.enc)
		ow.enc = nil
	}
}

// Close flushes the compressed content and writes the trailer. The
// writer cannot be used afterwards.
func (ow *ObjectWriter) Close() error {
	if err := ow.Suspend(); err != nil {
		return err
	}
	t := ObjectTrailer{ContentSize: ow.n}
	if ow.content != nil {
		copy(t.ContentSHA256[:], ow.content.Sum(nil))
	}
	tb, _ := t.MarshalBinary()
	_, err := ow.w.Write(tb)
	return err
}

// ObjectReader reads the content of one object and checks it against the
// trailer. It reads exactly size bytes from its source.
type ObjectReader struct {
	Header  ObjectHeader
	src     io.Reader
	limited *io.LimitedReader
	dec     *zstd.Decoder
	content hash.Hash // nil: SkipContentSHA256, or Header.Unhashed
	n       uint64
	err     error
}

// NewObjectReader reads the header of an object of size stored bytes from r.
func NewObjectReader(r io.Reader, size int64) (*ObjectReader, error) {
	if size < HeaderLen+TrailerLen {
		return nil, fmt.Errorf("%w: object is %d bytes, too short", ErrFormat, size)
	}
	hb := make([]byte, HeaderLen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, fmt.Errorf("read object header: %w", err)
	}
	or := &ObjectReader{src: r}
	if err := or.Header.UnmarshalBinary(hb); err != nil {
		return nil, err
	}
	if !or.Header.Unhashed {
		or.content = sha256.New()
	}
	or.limited = &io.LimitedReader{R: r, N: size - HeaderLen - TrailerLen}
	dec, err := zstd.NewReader(or.limited,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(16<<20))
	if err != nil {
		return nil, err
	}
	or.dec = dec
	return or, nil
}

// Read returns decompressed content. At the end of the content it reads the
// trailer and returns ErrChecksum or ErrFormat if the content does not
// match it, io.EOF otherwise.
func (or *ObjectReader) Read(p []byte) (int, error) {
	if or.err != nil {
		return 0, or.err
	}
	n, err := or.dec.Read(p)
	if or.content != nil {
		or.content.Write(p[:n])
	}
	or.n += uint64(n)
	if err == io.EOF {
		err = or.finish()
	} else if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The read under the decoder was stopped: not the object's fault.
		err = fmt.Errorf("decompress: %w", err)
	} else if errors.Is(err, zstd.ErrCRCMismatch) {
		err = fmt.Errorf("%w: the content does not match its zstd frame checksum", ErrChecksum)
	} else if err != nil {
		err = fmt.Errorf("%w: decompress: %v", ErrFormat, err)
	}
	if err != nil {
		or.err = err
	}
	return n, err
}

func (or *ObjectReader) finish() error {
	if or.limited.N != 0 {
		return fmt.Errorf("%w: %d bytes after the compressed content", ErrFormat, or.limited.N)
	}
	tb := make([]byte, TrailerLen)
	if _, err := io.ReadFull(or.src, tb); err != nil {
		return fmt.Errorf("%w: read trailer: %v", ErrFormat, err)
	}
	var t ObjectTrailer
	if err := t.UnmarshalBinary(tb); err != nil {
		return err
	}
	if t.ContentSize != or.n {
		return fmt.Errorf("%w: content is %d bytes, trailer says %d", ErrFormat, or.n, t.ContentSize)
	}
	if or.Header.Unhashed && t.ContentSHA256 != ([32]byte{}) {
		return fmt.Errorf("%w: the trailer holds a content sha256, the header says it has none", ErrFormat)
	}
	if or.content != nil && !bytes.Equal(t.ContentSHA256[:], or.content.Sum(nil)) {
		return fmt.Errorf("%w: content sha256 differs from the trailer", ErrChecksum)
	}
	return io.EOF
}

// SkipContentSHA256 leaves the content's SHA-256 uncomputed and unchecked:
// Read still checks the content length against the trailer, and the zstd
// decoder checks every frame's own checksum (XXH64 of its content, which
// every object walsync writes carries: TestObjectsCarryFrameChecksums).
// For a caller that verifies the SHA-256 of the stored bytes anyway
// (restore, where this second pass over the content cost 0.4 s of CPU
// per GiB); walsync verify keeps both. Call it before the first Read.
func (or *ObjectReader) SkipContentSHA256() { or.content = nil }

// Close releases the decoder.
func (or *ObjectReader) Close() error {
	or.dec.Close()
	return nil
}

// VerifyingReader hashes everything read through it so that, at the end,
// Verify can compare the stored bytes with their recorded SHA-256.
type VerifyingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want string
	key  string
}

// NewVerifyingReader wraps r, the stored bytes of key, whose recorded hex
// SHA-256 is want.
func NewVerifyingReader(r io.Reader, key, want string) *VerifyingReader {
	return &VerifyingReader{r: r, h: sha256.New(), want: want, key: key}
}

func (v *VerifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	return n, err
}

// Verify reads whatever is left of the stored bytes and compares their
// hash with the recorded one. The error names the key and says checksum.
func (v *VerifyingReader) Verify() error {
	if _, err := io.Copy(io.Discard, v); err != nil {
		return fmt.Errorf("read %s: %w", v.key, err)
	}
	if v.want == "" {
		return fmt.Errorf("%s: %w", v.key, ErrNoChecksum)
	}
	got := hex.EncodeToString(v.h.Sum(nil))
	if got != v.want {
		return fmt.Errorf("%s: %w: recorded sha256 %s, stored bytes hash to %s", v.key, ErrChecksum, v.want, got)
	}
	return nil
}

// NormalizeSum returns a hex SHA-256 in lower case, or an error wrapping
// ErrChecksum when sum is not one. Every backend's Put checks its sum
// argument with it.
func NormalizeSum(sum string) (string, error) {
	s := strings.ToLower(sum)
	if len(s) != 2*sha256.Size || strings.ContainsFunc(s, func(r rune) bool {
		return (r < '0' || r > '9') && (r < 'a' || r > 'f')
	}) {
		return "", fmt.Errorf("%w: %q is not a hex SHA-256", ErrChecksum, sum)
	}
	return s, nil
}

// ReadObjectHeaderOnly is a helper for tools that only need the header.
func ReadObjectHeaderOnly(r io.Reader) (ObjectHeader, error) {
	var h ObjectHeader
	hb := make([]byte, HeaderLen)
	if _, err := io.ReadFull(r, hb); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return h, fmt.Errorf("%w: object shorter than its header", ErrFormat)
		}
		return h, err
	}
	return h, h.UnmarshalBinary(hb)
}
