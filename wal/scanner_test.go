package wal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/walsync/walsync/wal"
)

const testPageSize = 512

// sampleWAL returns a WAL of 6 frames in 3 transactions:
// [1 2c] [3 1c] [2 4c]; frame 6 is a commit frame of size 4.
func sampleWAL(bigEndian bool) []byte {
	h := wal.NewHeader(testPageSize, 3, 0xa1a2a3a4, 0xb1b2b3b4, bigEndian)
	b := newBuilder(h)
	b.frame(1, 0, page(testPageSize, 1, 1))
	b.frame(2, 2, page(testPageSize, 2, 1))
	b.frame(3, 0, page(testPageSize, 3, 1))
	b.frame(1, 3, page(testPageSize, 1, 2))
	b.frame(2, 0, page(testPageSize, 2, 2))
	b.frame(4, 4, page(testPageSize, 4, 1))
	return b.buf
}

func TestScannerFrames(t *testing.T) {
	for _, be := range []bool{false, true} {
		w := sampleWAL(be)
		s, err := wal.NewScanner(bytes.NewReader(w))
		if err != nil {
			t.Fatalf("NewScanner: got=%v, want nil", err)
		}
		if got := s.Header().BigEndianChecksum(); got != be {
			t.Errorf("Header().BigEndianChecksum(): got=%v, want %v", got, be)
		}
		if i, fh, off := s.Frame(); i != 0 || fh != (wal.FrameHeader{}) || off != 0 {
			t.Errorf("Frame() before Next: got=%v,%+v,%v, want 0,{},0", i, fh, off)
		}
		if c1, c2 := s.Checksum(); c1 != s.Header().Checksum1 || c2 != s.Header().Checksum2 {
			t.Errorf("Checksum() before Next: got=%08x%08x, want header's %08x%08x", c1, c2, s.Header().Checksum1, s.Header().Checksum2)
		}
		wantPgno := []uint32{1, 2, 3, 1, 2, 4}
		wantCommit := []uint32{0, 2, 0, 3, 0, 4}
		n := 0
		for s.Next() {
			i, fh, off := s.Frame()
			if i != uint32(n+1) {
				t.Errorf("index: got=%v, want %v", i, n+1)
			}
			if want := wal.FrameOffset(testPageSize, i); off != want {
				t.Errorf("frame %d offset: got=%v, want %v", i, off, want)
			}
			if fh.Pgno != wantPgno[n] || fh.Commit != wantCommit[n] {
				t.Errorf("frame %d: got=pgno %d commit %d, want pgno %d commit %d", i, fh.Pgno, fh.Commit, wantPgno[n], wantCommit[n])
			}
			if got, want := s.Data(), w[off+wal.FrameHeaderSize:off+wal.FrameSize(testPageSize)]; !bytes.Equal(got, want) {
				t.Errorf("frame %d Data: got=%x..., want %x...", i, got[:8], want[:8])
			}
			if got, want := s.FrameBytes(), w[off:off+wal.FrameSize(testPageSize)]; !bytes.Equal(got, want) {
				t.Errorf("frame %d FrameBytes: got=%x..., want %x...", i, got[:8], want[:8])
			}
			if c1, c2 := s.Checksum(); c1 != fh.Checksum1 || c2 != fh.Checksum2 {
				t.Errorf("frame %d Checksum(): got=%08x%08x, want %08x%08x", i, c1, c2, fh.Checksum1, fh.Checksum2)
			}
			n++
		}
		if err := s.Err(); err != nil {
			t.Errorf("Err: got=%v, want nil", err)
		}
		if n != len(wantPgno) {
			t.Errorf("frames: got=%v, want %v", n, len(wantPgno))
		}
	}
}

// mutate returns a copy of w with f applied.
func mutate(w []byte, f func([]byte) []byte) []byte {
	return f(bytes.Clone(w))
}

// frameAt returns the offset of frame i in sampleWAL.
func frameAt(i uint32) int64 { return wal.FrameOffset(testPageSize, i) }

func TestScannerStopsAtInvalidFrame(t *testing.T) {
	w := sampleWAL(false)
	tests := []struct {
		name       string
		in         []byte
		wantFrames int
		wantMax    uint32 // ReadIndex MaxFrame
		wantDBSize uint32
	}{
		{"intact", w, 6, 6, 4},
		{"header only", w[:wal.HeaderSize], 0, 0, 0},
		{"partial first frame", w[:frameAt(1)+100], 0, 0, 0},
		{"only a frame header", w[:frameAt(2)+wal.FrameHeaderSize], 1, 0, 0},
		{"torn last frame", w[:len(w)-1], 5, 4, 3},
		{"torn mid-transaction", w[:frameAt(6)], 5, 4, 3},
		{"trailing garbage", append(bytes.Clone(w), 1, 2, 3), 6, 6, 4},
		{"stale frame after end", append(bytes.Clone(w), w[frameAt(2):frameAt(3)]...), 6, 6, 4},
		{"page data corrupted in frame 4", mutate(w, func(b []byte) []byte { b[frameAt(4)+wal.FrameHeaderSize+100] ^= 1; return b }), 3, 2, 2},
		{"commit field corrupted in frame 4", mutate(w, func(b []byte) []byte { b[frameAt(4)+7]++; return b }), 3, 2, 2},
		{"checksum-2 corrupted in frame 2", mutate(w, func(b []byte) []byte { b[frameAt(2)+23]++; return b }), 1, 0, 0},
		{"salt-1 changed in frame 3", mutate(w, func(b []byte) []byte { b[frameAt(3)+8]++; return b }), 2, 2, 2},
		{"salt-2 changed in frame 5", mutate(w, func(b []byte) []byte { b[frameAt(5)+15]++; return b }), 4, 4, 3},
		{"zero page number in frame 1", mutate(w, func(b []byte) []byte { binary.BigEndian.PutUint32(b[frameAt(1):], 0); return b }), 0, 0, 0},
		{"zero page number with a valid checksum", func() []byte {
			b := newBuilder(wal.NewHeader(testPageSize, 0, 1, 2, false))
			b.frame(1, 0, page(testPageSize, 1, 1)).frame(2, 2, page(testPageSize, 2, 1))
			return b.frame(0, 3, page(testPageSize, 0, 1)).frame(3, 3, page(testPageSize, 3, 1)).buf
		}(), 2, 2, 2},
		{"frames swapped", mutate(w, func(b []byte) []byte {
			f3 := bytes.Clone(b[frameAt(3):frameAt(4)])
			copy(b[frameAt(3):], b[frameAt(4):frameAt(5)])
			copy(b[frameAt(4):], f3)
			return b
		}), 2, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := wal.NewScanner(bytes.NewReader(tt.in))
			if err != nil {
				t.Fatalf("NewScanner: got=%v, want nil", err)
			}
			if got := len(scanAll(t, s)); got != tt.wantFrames {
				t.Errorf("frames: got=%v, want %v", got, tt.wantFrames)
			}
			idx, err := wal.ReadIndex(bytes.NewReader(tt.in))
			if err != nil {
				t.Fatalf("ReadIndex: got=%v, want nil", err)
			}
			if idx.MaxFrame != tt.wantMax || idx.DBSize != tt.wantDBSize {
				t.Errorf("ReadIndex: got=MaxFrame %d DBSize %d, want MaxFrame %d DBSize %d", idx.MaxFrame, idx.DBSize, tt.wantMax, tt.wantDBSize)
			}
		})
	}
}

func TestNewScannerErrors(t *testing.T) {
	w := sampleWAL(false)
	boom := errors.New("boom")
	tests := []struct {
		name string
		r    io.ReaderAt
		want error
	}{
		{"empty", bytes.NewReader(nil), wal.ErrNoHeader},
		{"31 bytes", bytes.NewReader(w[:31]), wal.ErrNoHeader},
		{"bad magic", bytes.NewReader(mutate(w, func(b []byte) []byte { b[3] = 0x84; return b })), wal.ErrBadMagic},
		{"bad checksum", bytes.NewReader(mutate(w, func(b []byte) []byte { b[16]++; return b })), wal.ErrBadHeader},
		{"I/O error", &failingFile{b: w, failAt: 0, err: boom}, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := wal.NewScanner(tt.r)
			if !errors.Is(err, tt.want) || s != nil {
				t.Errorf("NewScanner: got=%v,%v, want nil,%v", s, err, tt.want)
			}
			_, err = wal.ReadIndex(tt.r)
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadIndex: got=%v, want %v", err, tt.want)
			}
			_, err = wal.ReadHeader(tt.r)
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadHeader: got=%v, want %v", err, tt.want)
			}
		})
	}
}

func TestScannerIOError(t *testing.T) {
	w := sampleWAL(false)
	boom := errors.New("boom")
	f := &failingFile{b: w, failAt: frameAt(4), err: boom}
	s, err := wal.NewScanner(f)
	if err != nil {
		t.Fatalf("NewScanner: got=%v, want nil", err)
	}
	n := 0
	for s.Next() {
		n++
	}
	if n != 3 { // frame 4 is the first to reach past failAt
		t.Errorf("frames before error: got=%v, want %v", n, 3)
	}
	if err := s.Err(); !errors.Is(err, boom) {
		t.Errorf("Err: got=%v, want %v", err, boom)
	}
	if s.Next() {
		t.Errorf("Next after error: got=true, want false")
	}
	if _, err := wal.ReadIndex(f); !errors.Is(err, boom) {
		t.Errorf("ReadIndex: got=%v, want %v", err, boom)
	}
}

func TestScannerResume(t *testing.T) {
	w := sampleWAL(true)
	all := scanAll(t, mustScanner(t, w))

	for _, prefixFrames := range []uint32{0, 2, 4, 6} {
		// Index a prefix of the WAL, as a follower would have seen it.
		prefix := w[:frameAt(prefixFrames+1)]
		idx, err := wal.ReadIndex(bytes.NewReader(prefix))
		if err != nil {
			t.Fatalf("ReadIndex(prefix %d): got=%v, want nil", prefixFrames, err)
		}
		if idx.MaxFrame != prefixFrames {
			t.Fatalf("ReadIndex(prefix %d).MaxFrame: got=%v, want %v", prefixFrames, idx.MaxFrame, prefixFrames)
		}
		s, err := wal.NewScannerAt(bytes.NewReader(w), idx.Header, idx.MaxFrame, idx.Checksum1, idx.Checksum2)
		if err != nil {
			t.Fatalf("NewScannerAt: got=%v, want nil", err)
		}
		if i, _, _ := s.Frame(); i != prefixFrames {
			t.Errorf("Frame() before Next: got=%v, want %v", i, prefixFrames)
		}
		got := scanAll(t, s)
		if want := all[prefixFrames:]; !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("resumed at %d: got=%v, want %v", prefixFrames, got, want)
		}
	}

	// A wrong running checksum invalidates the next frame.
	idx, _ := wal.ReadIndex(bytes.NewReader(w[:frameAt(3)]))
	s, err := wal.NewScannerAt(bytes.NewReader(w), idx.Header, idx.MaxFrame, idx.Checksum1+1, idx.Checksum2)
	if err != nil {
		t.Fatalf("NewScannerAt: got=%v, want nil", err)
	}
	if s.Next() {
		t.Errorf("Next with wrong checksum: got=true, want false")
	}

	// Resuming from 0 requires the header checksum.
	h := idx.Header
	if _, err := wal.NewScannerAt(bytes.NewReader(w), h, 0, h.Checksum1, h.Checksum2+1); err == nil {
		t.Errorf("NewScannerAt(0, wrong checksum): got=nil, want error")
	}
	bad := h
	bad.PageSize = 1000
	if _, err := wal.NewScannerAt(bytes.NewReader(w), bad, 2, 0, 0); !errors.Is(err, wal.ErrBadHeader) {
		t.Errorf("NewScannerAt(invalid header): got=%v, want %v", err, wal.ErrBadHeader)
	}
}

func mustScanner(t testing.TB, w []byte) *wal.Scanner {
	t.Helper()
	s, err := wal.NewScanner(bytes.NewReader(w))
	if err != nil {
		t.Fatalf("NewScanner: got=%v, want nil", err)
	}
	return s
}

// A follower polls a growing WAL with one Scanner.
func TestScannerPollsGrowingFile(t *testing.T) {
	w := sampleWAL(false)
	g := &growingFile{b: bytes.Clone(w[:frameAt(2)+10])}
	s, err := wal.NewScanner(g)
	if err != nil {
		t.Fatalf("NewScanner: got=%v, want nil", err)
	}
	var got []uint32
	steps := []int64{frameAt(3) - 1, frameAt(5), int64(len(w)), int64(len(w))}
	for _, end := range steps {
		for s.Next() {
			i, _, _ := s.Frame()
			got = append(got, i)
		}
		g.b = bytes.Clone(w[:end])
	}
	for s.Next() {
		i, _, _ := s.Frame()
		got = append(got, i)
	}
	if want := []uint32{1, 2, 3, 4, 5, 6}; !reflect.DeepEqual(got, want) {
		t.Errorf("frames: got=%v, want %v", got, want)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err: got=%v, want nil", err)
	}
}

func TestScannerDoesNotAllocate(t *testing.T) {
	w := sampleWAL(false)
	r := bytes.NewReader(w)
	s := mustScanner(t, w)
	h := s.Header()
	allocs := testing.AllocsPerRun(10, func() {
		s, _ = wal.NewScannerAt(r, h, 0, h.Checksum1, h.Checksum2)
		for s.Next() {
		}
	})
	// NewScannerAt allocates the Scanner and its frame buffer; Next nothing.
	if allocs > 2 {
		t.Errorf("allocations per scan: got=%v, want <= 2", allocs)
	}
}

func BenchmarkScanner(b *testing.B) {
	h := wal.NewHeader(4096, 0, 1, 2, false)
	bl := newBuilder(h)
	for i := uint32(1); i <= 256; i++ {
		bl.frame(i, i, page(4096, i, 0))
	}
	r := bytes.NewReader(bl.buf)
	b.SetBytes(int64(len(bl.buf)))
	b.ReportAllocs()
	for b.Loop() {
		s, err := wal.NewScannerAt(r, h, 0, h.Checksum1, h.Checksum2)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for s.Next() {
			n++
		}
		if n != 256 {
			b.Fatalf("frames: got=%v, want 256", n)
		}
	}
}
