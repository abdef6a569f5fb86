package replicate

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/walsync/walsync/wal"
)

// validShmHeader builds a wal-index header as SQLite writes it on this
// machine: native byte order, two equal copies, checksum over bytes 0..39.
func validShmHeader(mxFrame, nPage, salt1, salt2 uint32) []byte {
	b := make([]byte, 136)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], 3007000)
	ne.PutUint32(b[8:], 7)
	b[12] = 1
	ne.PutUint16(b[14:], 4096)
	ne.PutUint32(b[16:], mxFrame)
	ne.PutUint32(b[20:], nPage)
	binary.BigEndian.PutUint32(b[32:], salt1)
	binary.BigEndian.PutUint32(b[36:], salt2)
	s1, s2 := wal.Checksum(isBigEndianMachine(), 0, 0, b[:40])
	ne.PutUint32(b[40:], s1)
	ne.PutUint32(b[44:], s2)
	copy(b[48:96], b[:48])
	return b
}

func TestReadWALIndexHeader(t *testing.T) {
	good := validShmHeader(42, 10, 0xdeadbeef, 0x01020304)
	binary.NativeEndian.PutUint32(good[96:], 40)
	h, err := readWALIndexHeader(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	want := walIndexHeader{MaxFrame: 42, PageCount: 10, Salt1: 0xdeadbeef, Salt2: 0x01020304, PageSize: 4096, NBackfill: 40}
	if h != want {
		t.Fatalf("got=%+v, want %+v", h, want)
	}
	for _, tc := range []struct {
		name string
		edit func(b []byte)
	}{
		{"copies differ", func(b []byte) { b[60] ^= 1 }},
		{"not initialised", func(b []byte) { b[12], b[60] = 0, 0 }},
		{"bad checksum", func(b []byte) { b[40] ^= 1; b[88] ^= 1 }},
		{"bad version", func(b []byte) { b[0] ^= 1; b[48] ^= 1 }},
		{"short", func(b []byte) {}},
	} {
		b := bytes.Clone(good)
		tc.edit(b)
		if tc.name == "short" {
			b = b[:50]
		}
		if _, err := readWALIndexHeader(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: got=nil, want an error", tc.name)
		}
	}
}

func FuzzReadWALIndexHeader(f *testing.F) {
	f.Add(validShmHeader(1, 2, 3, 4))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readWALIndexHeader(bytes.NewReader(b))
		if err == nil && !bytes.Equal(b[:48], b[48:96]) {
			t.Fatalf("accepted unequal copies: %+v", h)
		}
	})
}
