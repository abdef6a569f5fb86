package wal_test

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/walsync/walsync/wal"
)

// builder writes WAL files frame by frame, for crafted inputs.
type builder struct {
	hdr    wal.Header
	c1, c2 uint32
	buf    []byte
}

func newBuilder(h wal.Header) *builder {
	return &builder{hdr: h, c1: h.Checksum1, c2: h.Checksum2, buf: h.AppendBinary(nil)}
}

// frame appends a valid frame holding data (len must be the page size).
func (b *builder) frame(pgno, commit uint32, data []byte) *builder {
	fh := wal.FrameHeader{Pgno: pgno, Commit: commit, Salt1: b.hdr.Salt1, Salt2: b.hdr.Salt2}
	var hb [wal.FrameHeaderSize]byte
	fh.AppendBinary(hb[:0])
	be := b.hdr.BigEndianChecksum()
	b.c1, b.c2 = wal.Checksum(be, b.c1, b.c2, hb[:8])
	b.c1, b.c2 = wal.Checksum(be, b.c1, b.c2, data)
	fh.Checksum1, fh.Checksum2 = b.c1, b.c2
	b.buf = fh.AppendBinary(b.buf)
	b.buf = append(b.buf, data...)
	return b
}

// page returns deterministic page content for page pgno, version v.
func page(size, pgno, v uint32) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(uint32(i)*7 + pgno*31 + v*131)
	}
	binary.BigEndian.PutUint32(p, pgno)
	binary.BigEndian.PutUint32(p[4:], v)
	return p
}

// growingFile is an io.ReaderAt over a slice that tests can extend.
type growingFile struct{ b []byte }

func (g *growingFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(g.b)) {
		return 0, io.EOF
	}
	n := copy(p, g.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// failingFile fails every read that reaches past failAt.
type failingFile struct {
	b      []byte
	failAt int64
	err    error
}

func (f *failingFile) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.failAt {
		return 0, f.err
	}
	return copy(p, f.b[off:]), nil
}

func readFixture(t testing.TB, name, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name, file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snapshot builds the database image described by idx from the database
// file db and the WAL w, the way a full checkpoint would.
func snapshot(t testing.TB, idx *wal.Index, db, w []byte) []byte {
	t.Helper()
	if idx == nil || idx.MaxFrame == 0 {
		return db
	}
	ps := int64(idx.Header.PageSize)
	out := make([]byte, int64(idx.DBSize)*ps)
	copy(out, db)
	for pgno := range idx.Pages {
		off, ok := idx.PageOffset(pgno)
		if !ok {
			t.Fatalf("PageOffset(%d): got ok=false, want true", pgno)
		}
		copy(out[int64(pgno-1)*ps:int64(pgno)*ps], w[off:off+ps])
	}
	return out
}

type frameInfo struct {
	Index  uint32
	Pgno   uint32
	Commit uint32
}

// scanAll returns the frames a Scanner yields.
func scanAll(t testing.TB, s *wal.Scanner) []frameInfo {
	t.Helper()
	var fs []frameInfo
	for s.Next() {
		i, fh, _ := s.Frame()
		fs = append(fs, frameInfo{i, fh.Pgno, fh.Commit})
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err(): got=%v, want nil", err)
	}
	return fs
}
