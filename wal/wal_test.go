package wal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/walsync/walsync/wal"
)

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}

// Expected values computed independently (a few lines of Python following
// the loop in SQLite's walChecksumBytes).
func TestChecksum(t *testing.T) {
	tests := []struct {
		name       string
		bigEndian  bool
		s1, s2     uint32
		in         []byte
		want1, w2  uint32
		wantPanics bool
	}{
		{name: "empty", in: nil, s1: 5, s2: 6, want1: 5, w2: 6},
		{name: "one pair BE", bigEndian: true, in: []byte{0, 0, 0, 1, 0, 0, 0, 2}, want1: 1, w2: 3},
		{name: "one pair LE", in: []byte{0, 0, 0, 1, 0, 0, 0, 2}, want1: 0x01000000, w2: 0x03000000},
		{name: "16 bytes LE", in: seq(16), want1: 0x1c181410, w2: 0x38312a23},
		{name: "16 bytes BE", bigEndian: true, in: seq(16), want1: 0x1014181c, w2: 0x232a3138},
		{name: "continued LE", in: seq(16), s1: 0xdeadbeef, s2: 0x12345678, want1: 0x10109556, w2: 0x2f401748},
		{name: "wrap-around BE", bigEndian: true, in: bytes.Repeat([]byte{0xff}, 16), s1: 0xffffffff, s2: 0xffffffff, want1: 0xfffffff7, w2: 0xfffffff1},
		{name: "length not multiple of 8", in: seq(12), wantPanics: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if (r != nil) != tt.wantPanics {
					t.Errorf("panic: got=%v, want panic %v", r, tt.wantPanics)
				}
			}()
			g1, g2 := wal.Checksum(tt.bigEndian, tt.s1, tt.s2, tt.in)
			if g1 != tt.want1 || g2 != tt.w2 {
				t.Errorf("Checksum: got=%#08x,%#08x, want %#08x,%#08x", g1, g2, tt.want1, tt.w2)
			}
		})
	}
}

// The big-endian checksum of b equals the little-endian checksum of b with
// every 32-bit word byte-swapped, and checksumming in pieces equals
// checksumming at once.
func TestChecksumProperties(t *testing.T) {
	b := page(4096, 3, 9)
	swapped := make([]byte, len(b))
	for i := 0; i < len(b); i += 4 {
		binary.LittleEndian.PutUint32(swapped[i:], binary.BigEndian.Uint32(b[i:]))
	}
	be1, be2 := wal.Checksum(true, 1, 2, b)
	le1, le2 := wal.Checksum(false, 1, 2, swapped)
	if be1 != le1 || be2 != le2 {
		t.Errorf("swapped: got=%08x%08x, want %08x%08x", le1, le2, be1, be2)
	}
	p1, p2 := wal.Checksum(true, 1, 2, b[:1000])
	p1, p2 = wal.Checksum(true, p1, p2, b[1000:])
	if p1 != be1 || p2 != be2 {
		t.Errorf("pieces: got=%08x%08x, want %08x%08x", p1, p2, be1, be2)
	}
}

func TestNewHeader(t *testing.T) {
	tests := []struct {
		bigEndian  bool
		wantMagic  uint32
		wantC1, c2 uint32
	}{
		{false, wal.MagicLE, 0xdfea0514, 0xa6d8e2be},
		{true, wal.MagicBE, 0x1706e9e2, 0xc2e5d8aa},
	}
	for _, tt := range tests {
		h := wal.NewHeader(4096, 7, 0x01020304, 0x05060708, tt.bigEndian)
		want := wal.Header{
			Magic: tt.wantMagic, Version: 3007000, PageSize: 4096, CheckpointSeq: 7,
			Salt1: 0x01020304, Salt2: 0x05060708, Checksum1: tt.wantC1, Checksum2: tt.c2,
		}
		if h != want {
			t.Errorf("NewHeader(bigEndian=%v): got=%+v, want %+v", tt.bigEndian, h, want)
		}
		if got := h.BigEndianChecksum(); got != tt.bigEndian {
			t.Errorf("BigEndianChecksum: got=%v, want %v", got, tt.bigEndian)
		}
		enc := h.AppendBinary([]byte("prefix"))
		if got, want := string(enc[:6]), "prefix"; got != want {
			t.Errorf("AppendBinary prefix: got=%q, want %q", got, want)
		}
		if got, want := len(enc), 6+wal.HeaderSize; got != want {
			t.Errorf("AppendBinary length: got=%v, want %v", got, want)
		}
		back, err := wal.ParseHeader(enc[6:])
		if err != nil || back != h {
			t.Errorf("ParseHeader(AppendBinary): got=%+v, %v, want %+v, nil", back, err, h)
		}
		if err := h.Validate(); err != nil {
			t.Errorf("Validate: got=%v, want nil", err)
		}
	}
}

func TestParseHeader(t *testing.T) {
	valid := wal.NewHeader(1024, 1, 10, 20, false)
	// withChecksum re-signs a modified header so that only the field under
	// test is wrong.
	withChecksum := func(h wal.Header) wal.Header {
		b := h.AppendBinary(nil)
		h.Checksum1, h.Checksum2 = wal.Checksum(h.BigEndianChecksum(), 0, 0, b[:24])
		return h
	}
	mod := func(f func(*wal.Header)) wal.Header { h := valid; f(&h); return h }

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"valid LE", valid.AppendBinary(nil), nil},
		{"valid BE", wal.NewHeader(512, 0, 1, 2, true).AppendBinary(nil), nil},
		{"valid 65536", wal.NewHeader(65536, 0, 1, 2, false).AppendBinary(nil), nil},
		{"trailing bytes ignored", append(valid.AppendBinary(nil), 1, 2, 3), nil},
		{"empty", nil, wal.ErrShortHeader},
		{"31 bytes", valid.AppendBinary(nil)[:31], wal.ErrShortHeader},
		{"bad magic", withChecksum(mod(func(h *wal.Header) { h.Magic = 0x377f0684 })).AppendBinary(nil), wal.ErrBadMagic},
		{"zero magic", make([]byte, 32), wal.ErrBadMagic},
		{"bad checksum1", mod(func(h *wal.Header) { h.Checksum1++ }).AppendBinary(nil), wal.ErrBadHeader},
		{"bad checksum2", mod(func(h *wal.Header) { h.Checksum2 ^= 1 << 31 }).AppendBinary(nil), wal.ErrBadHeader},
		{"salt changed", mod(func(h *wal.Header) { h.Salt2++ }).AppendBinary(nil), wal.ErrBadHeader},
		{"magic flipped to BE", mod(func(h *wal.Header) { h.Magic = wal.MagicBE }).AppendBinary(nil), wal.ErrBadHeader},
		{"version", withChecksum(mod(func(h *wal.Header) { h.Version = 3007001 })).AppendBinary(nil), wal.ErrVersion},
		{"page size 0", withChecksum(mod(func(h *wal.Header) { h.PageSize = 0 })).AppendBinary(nil), wal.ErrPageSize},
		{"page size 1", withChecksum(mod(func(h *wal.Header) { h.PageSize = 1 })).AppendBinary(nil), wal.ErrPageSize},
		{"page size 256", withChecksum(mod(func(h *wal.Header) { h.PageSize = 256 })).AppendBinary(nil), wal.ErrPageSize},
		{"page size 1000", withChecksum(mod(func(h *wal.Header) { h.PageSize = 1000 })).AppendBinary(nil), wal.ErrPageSize},
		{"page size 131072", withChecksum(mod(func(h *wal.Header) { h.PageSize = 131072 })).AppendBinary(nil), wal.ErrPageSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := wal.ParseHeader(tt.in)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("ParseHeader: got=%v, want %v", err, tt.want)
			}
			if len(tt.in) >= wal.HeaderSize {
				if got, want := h.AppendBinary(nil), tt.in[:wal.HeaderSize]; !bytes.Equal(got, want) {
					t.Errorf("decoded fields: got=%x, want %x", got, want)
				}
				if verr := h.Validate(); !errors.Is(verr, tt.want) || (tt.want == nil) != (verr == nil) {
					t.Errorf("Validate: got=%v, want %v", verr, tt.want)
				}
			}
		})
	}
}

func TestValidPageSize(t *testing.T) {
	tests := []struct {
		n    uint32
		want bool
	}{
		{0, false}, {1, false}, {256, false}, {511, false}, {512, true}, {1024, true},
		{1536, false}, {4096, true}, {32768, true}, {65536, true}, {65537, false}, {131072, false},
		{1 << 31, false}, {0xffffffff, false},
	}
	for _, tt := range tests {
		if got := wal.ValidPageSize(tt.n); got != tt.want {
			t.Errorf("ValidPageSize(%d): got=%v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestFrameHeader(t *testing.T) {
	b := []byte{
		0, 0, 0, 7, // pgno
		0, 0, 1, 0, // commit
		0xa, 0xb, 0xc, 0xd, // salt-1
		1, 2, 3, 4, // salt-2
		0xff, 0, 0, 1, // checksum-1
		0, 0, 0, 2, // checksum-2
		9, 9, // not part of the header
	}
	want := wal.FrameHeader{Pgno: 7, Commit: 256, Salt1: 0x0a0b0c0d, Salt2: 0x01020304, Checksum1: 0xff000001, Checksum2: 2}
	got := wal.ParseFrameHeader(b)
	if got != want {
		t.Errorf("ParseFrameHeader: got=%+v, want %+v", got, want)
	}
	if enc := got.AppendBinary(nil); !bytes.Equal(enc, b[:24]) {
		t.Errorf("AppendBinary: got=%x, want %x", enc, b[:24])
	}
	tests := []struct {
		commit uint32
		want   bool
	}{{0, false}, {1, true}, {0xffffffff, true}}
	for _, tt := range tests {
		if got := (wal.FrameHeader{Commit: tt.commit}).IsCommit(); got != tt.want {
			t.Errorf("IsCommit(commit=%d): got=%v, want %v", tt.commit, got, tt.want)
		}
	}
	defer func() {
		if r := recover(); r == nil {
			t.Errorf("ParseFrameHeader(23 bytes): got=no panic, want panic")
		}
	}()
	wal.ParseFrameHeader(b[:23])
}

func TestFrameOffset(t *testing.T) {
	tests := []struct {
		pageSize, index uint32
		want            int64
	}{
		{1024, 1, 32},
		{1024, 2, 32 + 1048},
		{4096, 3, 32 + 2*4120},
		{65536, 2, 32 + 65560},
		{65536, 0xffffffff, 32 + 0xfffffffe*65560},
	}
	for _, tt := range tests {
		if got := wal.FrameOffset(tt.pageSize, tt.index); got != tt.want {
			t.Errorf("FrameOffset(%d, %d): got=%v, want %v", tt.pageSize, tt.index, got, tt.want)
		}
	}
	if got, want := wal.FrameSize(4096), int64(4120); got != want {
		t.Errorf("FrameSize(4096): got=%v, want %v", got, want)
	}
}
