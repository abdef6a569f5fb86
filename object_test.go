package walsync

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func testHeader() ObjectHeader {
	return ObjectHeader{
		Kind: KindByteSnapshot, Generation: Generation{1, 2, 3}, PageSize: 4096, PageCount: 3,
		WALSalt1: 7, WALSalt2: 8, WALCheckpointSeq: 9, WALFrame: 10, FrameCount: 0,
		WALChecksum1: 11, WALChecksum2: 12, WALBigEndian: true, Seq: 13,
		Created: time.UnixMilli(1700000000123).UTC(),
	}
}

func encodeObject(t testing.TB, h ObjectHeader, content []byte) []byte {
	var buf bytes.Buffer
	ow, err := NewObjectWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ow.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := ow.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestObjectRoundTrip(t *testing.T) {
	content := make([]byte, 3*4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range content[:4096] {
		content[i] = byte(r.IntN(256))
	}
	h := testHeader()
	obj := encodeObject(t, h, content)
	or, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(or)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("content: got %d bytes, want %d identical bytes", len(got), len(content))
	}
	if or.Header != h {
		t.Fatalf("header: got=%+v, want %+v", or.Header, h)
	}
}

// A standard zstd decoder must turn an object into its content (skipping
// our header and trailer): users can recover a snapshot with `zstd -d`.
func TestObjectIsPlainZstd(t *testing.T) {
	content := bytes.Repeat([]byte("walsync page "), 1000)
	obj := encodeObject(t, testHeader(), content)
	dec, err := zstd.NewReader(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("plain zstd decode: got %d bytes, want %d", len(got), len(content))
	}
}

func TestObjectCorruption(t *testing.T) {
	content := bytes.Repeat([]byte{1, 2, 3, 4}, 4096)
	obj := encodeObject(t, testHeader(), content)
	sum := sha256.Sum256(obj)
	want := hex.EncodeToString(sum[:])
	for i := 0; i < len(obj); i += 7 {
		bad := bytes.Clone(obj)
		bad[i] ^= 0x40
		vr := NewVerifyingReader(bytes.NewReader(bad), "k", want)
		if or, err := NewObjectReader(vr, int64(len(bad))); err == nil {
			io.Copy(io.Discard, or)
		}
		if err := vr.Verify(); !errors.Is(err, ErrChecksum) {
			t.Fatalf("flip at %d: got=%v, want ErrChecksum", i, err)
		}
	}
	// Without the outer checksum the trailer still catches content damage
	// that zstd's own frame checksum lets through only if both are forged.
	trunc := obj[:len(obj)-1]
	or, err := NewObjectReader(bytes.NewReader(trunc), int64(len(trunc)))
	if err == nil {
		_, err = io.ReadAll(or)
	}
	if err == nil {
		t.Fatalf("truncated object: got nil error, want one")
	}
}

func TestHeaderRejects(t *testing.T) {
	good, _ := testHeader().MarshalBinary()
	for _, tc := range []struct {
		name string
		edit func(b []byte)
	}{
		{"magic", func(b []byte) { b[0] = 0 }},
		{"payload magic", func(b []byte) { b[8] = 'X' }},
		{"version", func(b []byte) { b[12] = 99 }},
		{"kind", func(b []byte) { b[13] = 'Q' }},
		{"page size", func(b []byte) { b[8+24+3] = 3 }},
		{"flags", func(b []byte) { b[8+6] |= 0x80 }},
	} {
		b := bytes.Clone(good)
		tc.edit(b)
		var h ObjectHeader
		if err := h.UnmarshalBinary(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got=%v, want ErrFormat", tc.name, err)
		}
	}
}

func FuzzObjectReader(f *testing.F) {
	f.Add(encodeObject(f, testHeader(), bytes.Repeat([]byte("x"), 100)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		or, err := NewObjectReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		defer or.Close()
		io.Copy(io.Discard, io.LimitReader(or, 1<<24))
	})
}

func FuzzParseDBHeader(f *testing.F) {
	h := make([]byte, 100)
	copy(h, "SQLite format 3\x00")
	h[16], h[17] = 0x10, 0
	f.Add(h)
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, err := ParseDBHeader(b)
		if err == nil && !ValidPageSize(hdr.PageSize) {
			t.Fatalf("accepted page size %d", hdr.PageSize)
		}
	})
}

// Restore leaves the content's SHA-256 to verify and relies on zstd's own
// frame checksum instead (ObjectReader.SkipContentSHA256): every object
// must carry it. The frame header descriptor's bit 2 says so (RFC 8878,
// 3.1.1.1.1), and a content byte changed under a valid frame is refused.
func TestObjectsCarryFrameChecksums(t *testing.T) {
	var buf bytes.Buffer
	ow, err := NewObjectWriter(&buf, ObjectHeader{Kind: KindByteSnapshot, PageSize: 4096, PageCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte{7}, 4096)
	if _, err := ow.Write(page); err != nil {
		t.Fatal(err)
	}
	if err := ow.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	frame := b[HeaderLen:]
	if binary.LittleEndian.Uint32(frame) != 0xFD2FB528 {
		t.Fatalf("no zstd frame after the header: %x", frame[:4])
	}
	if frame[4]&0x04 == 0 {
		t.Fatalf("frame header descriptor %08b: no content checksum", frame[4])
	}
	// The frame's last 4 bytes before the trailer are its checksum.
	b[len(b)-TrailerLen-1] ^= 0x01
	or, err := NewObjectReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	or.SkipContentSHA256()
	if _, err := io.ReadAll(or); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "zstd frame checksum") {
		t.Fatalf("read with a wrong frame checksum: got=%v, want ErrChecksum naming the zstd frame checksum", err)
	}
}
