package wal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/walsync/walsync/wal"
)

func addFixtureSeeds(f *testing.F, add func([]byte)) {
	dirs, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("testdata", d.Name(), "wal"))
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
	add(sampleWAL(false))
	add(sampleWAL(true))
}

// repair makes data a WAL whose header and checksum chain are valid, keeping
// the fuzzed page numbers, commit sizes and page data, so that the fuzzer
// gets past the checksums. The page size is forced to 512 when invalid.
func repair(data []byte) []byte {
	if len(data) < wal.HeaderSize {
		return data
	}
	h, _ := wal.ParseHeader(data)
	if !wal.ValidPageSize(h.PageSize) {
		h.PageSize = 512
	}
	h = wal.NewHeader(h.PageSize, h.CheckpointSeq, h.Salt1, h.Salt2, h.Magic&1 == 1)
	copy(data, h.AppendBinary(nil))
	be := h.BigEndianChecksum()
	c1, c2 := h.Checksum1, h.Checksum2
	fs := int(wal.FrameSize(h.PageSize))
	for off := wal.HeaderSize; off+fs <= len(data); off += fs {
		fr := data[off : off+fs]
		binary.BigEndian.PutUint32(fr[8:], h.Salt1)
		binary.BigEndian.PutUint32(fr[12:], h.Salt2)
		c1, c2 = wal.Checksum(be, c1, c2, fr[:8])
		c1, c2 = wal.Checksum(be, c1, c2, fr[wal.FrameHeaderSize:])
		binary.BigEndian.PutUint32(fr[16:], c1)
		binary.BigEndian.PutUint32(fr[20:], c2)
	}
	return data
}

const maxFuzzSeed = 4 << 10

func FuzzScanner(f *testing.F) {
	addFixtureSeeds(f, func(b []byte) {
		// Large inputs make the fuzzer slow, mostly when it minimizes
		// them; a prefix of a WAL is still a WAL.
		b = b[:min(len(b), maxFuzzSeed)]
		f.Add(b, false)
		f.Add(b, true)
	})
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = repair(data)
		}
		s, err := wal.NewScanner(bytes.NewReader(data))
		if err != nil {
			if s != nil {
				t.Fatalf("NewScanner: got=%v,%v, want nil scanner with the error", s, err)
			}
			if _, err2 := wal.ReadIndex(bytes.NewReader(data)); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("ReadIndex error: got=%v, want %v", err2, err)
			}
			return
		}
		h := s.Header()
		var frames []frameInfo
		for s.Next() {
			i, fh, off := s.Frame()
			if i != uint32(len(frames)+1) {
				t.Fatalf("index: got=%v, want %v", i, len(frames)+1)
			}
			if off+wal.FrameSize(h.PageSize) > int64(len(data)) {
				t.Fatalf("frame %d at %d: past the end of %d bytes", i, off, len(data))
			}
			if fh.Pgno == 0 || fh.Salt1 != h.Salt1 || fh.Salt2 != h.Salt2 {
				t.Fatalf("frame %d: got=%+v, want nonzero pgno and salts %d,%d", i, fh, h.Salt1, h.Salt2)
			}
			if !bytes.Equal(s.Data(), data[off+wal.FrameHeaderSize:off+wal.FrameSize(h.PageSize)]) {
				t.Fatalf("frame %d: Data differs from the file", i)
			}
			frames = append(frames, frameInfo{i, fh.Pgno, fh.Commit})
		}
		if s.Err() != nil {
			t.Fatalf("Err: got=%v, want nil", s.Err())
		}
		// With read-ahead (any limit, any buffer size) the same frames.
		fs := int(wal.FrameSize(h.PageSize))
		ra, err := wal.NewScanner(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		limit := uint32(len(data) % (len(frames) + 2))
		ra.ReadAhead(limit, make([]byte, (len(data)%4)*fs+len(data)%7))
		n := 0
		for ra.Next() {
			i, fh, off := ra.Frame()
			if n >= len(frames) || i != frames[n].Index || fh.Pgno != frames[n].Pgno ||
				!bytes.Equal(ra.FrameBytes(), data[off:off+int64(fs)]) {
				t.Fatalf("read-ahead to frame %d, frame %d: got index %d page %d, differs from the plain scan", limit, n+1, i, fh.Pgno)
			}
			n++
		}
		if n != len(frames) || ra.Err() != nil {
			t.Fatalf("read-ahead to frame %d: %d frames (%v), want %d", limit, n, ra.Err(), len(frames))
		}
		if fix {
			// Every complete frame up to the first zero page number is valid.
			want := 0
			for off := int64(wal.HeaderSize); off+wal.FrameSize(h.PageSize) <= int64(len(data)); off += wal.FrameSize(h.PageSize) {
				if binary.BigEndian.Uint32(data[off:]) == 0 {
					break
				}
				want++
			}
			if len(frames) != want {
				t.Fatalf("repaired WAL frames: got=%v, want %v", len(frames), want)
			}
		}

		idx, err := wal.ReadIndex(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("ReadIndex: got=%v, want nil", err)
		}
		if idx.MaxFrame > uint32(len(frames)) {
			t.Fatalf("MaxFrame: got=%v, want <= %v", idx.MaxFrame, len(frames))
		}
		var wantDBSize uint32
		for _, fr := range frames[:idx.MaxFrame] {
			if fr.Commit != 0 {
				wantDBSize = fr.Commit
			}
		}
		for _, fr := range frames[idx.MaxFrame:] {
			if fr.Commit != 0 {
				t.Fatalf("commit frame %d after MaxFrame %d", fr.Index, idx.MaxFrame)
			}
		}
		if idx.DBSize != wantDBSize || (idx.MaxFrame > 0 && frames[idx.MaxFrame-1].Commit == 0) {
			t.Fatalf("DBSize: got=%v, want %v", idx.DBSize, wantDBSize)
		}
		for pgno, i := range idx.Pages {
			if pgno == 0 || pgno > idx.DBSize || i == 0 || i > idx.MaxFrame || frames[i-1].Pgno != pgno {
				t.Fatalf("Pages[%d]=%d: not a committed frame of that page within the database", pgno, i)
			}
			for _, fr := range frames[i:idx.MaxFrame] {
				if fr.Pgno == pgno {
					t.Fatalf("Pages[%d]=%d: frame %d is later", pgno, i, fr.Index)
				}
			}
		}

		// Resuming after MaxFrame yields the rest of the frames.
		r, err := wal.NewScannerAt(bytes.NewReader(data), idx.Header, idx.MaxFrame, idx.Checksum1, idx.Checksum2)
		if err != nil {
			t.Fatalf("NewScannerAt: got=%v, want nil", err)
		}
		var rest []frameInfo
		for r.Next() {
			i, fh, _ := r.Frame()
			rest = append(rest, frameInfo{i, fh.Pgno, fh.Commit})
		}
		if want := frames[idx.MaxFrame:]; len(rest)+len(want) > 0 && !reflect.DeepEqual(rest, want) {
			t.Fatalf("resumed frames: got=%v, want %v", rest, want)
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	addFixtureSeeds(f, func(b []byte) {
		f.Add(b[:min(len(b), wal.HeaderSize)])
	})
	f.Add(make([]byte, wal.HeaderSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := wal.ParseHeader(data)
		if len(data) < wal.HeaderSize {
			if !errors.Is(err, wal.ErrShortHeader) {
				t.Fatalf("ParseHeader(%d bytes): got=%v, want %v", len(data), err, wal.ErrShortHeader)
			}
			return
		}
		if got := h.AppendBinary(nil); !bytes.Equal(got, data[:wal.HeaderSize]) {
			t.Fatalf("AppendBinary: got=%x, want %x", got, data[:wal.HeaderSize])
		}
		if verr := h.Validate(); (verr == nil) != (err == nil) {
			t.Fatalf("Validate: got=%v, want %v", verr, err)
		}
		if err != nil {
			for _, sentinel := range []error{wal.ErrBadMagic, wal.ErrBadHeader, wal.ErrVersion, wal.ErrPageSize} {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("ParseHeader: got=%v, want one of the header sentinels", err)
		}
		if n := wal.NewHeader(h.PageSize, h.CheckpointSeq, h.Salt1, h.Salt2, h.BigEndianChecksum()); n != h {
			t.Fatalf("NewHeader: got=%+v, want %+v", n, h)
		}
	})
}
