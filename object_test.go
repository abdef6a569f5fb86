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

func segmentHeader() ObjectHeader {
	h := testHeader()
	h.Kind, h.FrameCount, h.Unhashed = KindByteSegment, 2, true
	return h
}

// A segment written Unhashed round-trips with its flag, carries 32 zero
// bytes where the content SHA-256 would be, and is still refused when its
// content is damaged (the zstd frame checksum; restore and verify also
// check the WAL checksum chain). A hashed object keeps its sum.
func TestUnhashedSegment(t *testing.T) {
	content := bytes.Repeat([]byte("frame and page "), 2*4120/15)
	h := segmentHeader()
	obj := encodeObject(t, h, content)
	if trailer := obj[len(obj)-32:]; !bytes.Equal(trailer, make([]byte, 32)) {
		t.Fatalf("trailer's content sha256: %x, want zeros", trailer)
	}
	if obj[8+6]&flagUnhashed == 0 {
		t.Fatalf("header flags %#x: the unhashed bit is not set", obj[8+6])
	}
	or, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(or)
	if err != nil || !bytes.Equal(got, content) || or.Header != h {
		t.Fatalf("read: err=%v, %d bytes (want %d), header %+v (want %+v)", err, len(got), len(content), or.Header, h)
	}

	hashed := h
	hashed.Unhashed = false
	sum := sha256.Sum256(content)
	if hobj := encodeObject(t, hashed, content); !bytes.Equal(hobj[len(hobj)-32:], sum[:]) {
		t.Fatalf("a hashed segment's trailer: %x, want %x", hobj[len(hobj)-32:], sum)
	}

	// Damaged content has no trailer sum to fail: zstd's frame checksum
	// refuses it (here the stored frame checksum itself is flipped).
	bad := bytes.Clone(obj)
	bad[len(bad)-TrailerLen-1] ^= 0x01
	if or, err := NewObjectReader(bytes.NewReader(bad), int64(len(bad))); err != nil {
		t.Fatal(err)
	} else if _, err := io.ReadAll(or); !errors.Is(err, ErrChecksum) {
		t.Fatalf("unhashed segment with a wrong frame checksum: got=%v, want ErrChecksum", err)
	}

	// The flag promises zeros: a sum in the trailer is a malformed object.
	forged := bytes.Clone(obj)
	forged[len(forged)-1] = 1
	if or, err := NewObjectReader(bytes.NewReader(forged), int64(len(forged))); err != nil {
		t.Fatal(err)
	} else if _, err := io.ReadAll(or); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "header says it has none") {
		t.Fatalf("unhashed segment with a sum in its trailer: got=%v, want ErrFormat", err)
	}

	// Snapshots always carry their content SHA-256.
	snap := testHeader()
	snap.Unhashed = true
	if _, err := NewObjectWriter(io.Discard, snap); !errors.Is(err, ErrFormat) {
		t.Fatalf("writing an unhashed snapshot: got=%v, want ErrFormat", err)
	}
	b, _ := snap.MarshalBinary()
	var back ObjectHeader
	if err := back.UnmarshalBinary(b); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "snapshot without a content sha256") {
		t.Fatalf("reading an unhashed snapshot's header: got=%v, want ErrFormat", err)
	}
}

// The restart-records flag round-trips on a segment and is refused on a
// snapshot.
func TestRestartsFlag(t *testing.T) {
	seg := segmentHeader()
	seg.Restarts = true
	b, _ := seg.MarshalBinary()
	var back ObjectHeader
	if err := back.UnmarshalBinary(b); err != nil || !back.Restarts || b[8+6]&flagRestarts == 0 {
		t.Fatalf("segment with restart records: flag %v, %v", back.Restarts, err)
	}
	snap := testHeader()
	snap.Restarts = true
	b, _ = snap.MarshalBinary()
	if err := back.UnmarshalBinary(b); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "snapshot with WAL restart records") {
		t.Fatalf("snapshot with the restarts flag: got=%v, want ErrFormat", err)
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
	f.Add(encodeObject(f, segmentHeader(), bytes.Repeat([]byte("y"), 100)))
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

// An object written with Suspend between appends (an open segment: no
// encoder held between them) is several zstd frames; it reads back whole,
// through ObjectReader and through a plain zstd decoder.
func TestObjectSuspendedBetweenWrites(t *testing.T) {
	parts := [][]byte{bytes.Repeat([]byte("first "), 2000), bytes.Repeat([]byte("second "), 3000), []byte("third")}
	var buf bytes.Buffer
	h := testHeader()
	ow, err := NewObjectWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, p := range parts {
		if _, err := ow.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := ow.Suspend(); err != nil {
			t.Fatal(err)
		}
		if ow.enc != nil {
			t.Fatal("Suspend kept the encoder")
		}
		want = append(want, p...)
	}
	if err := ow.Close(); err != nil {
		t.Fatal(err)
	}
	obj := buf.Bytes()
	or, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(or)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ObjectReader: %d bytes, %v; want %d identical bytes", len(got), err, len(want))
	}
	dec, err := zstd.NewReader(bytes.NewReader(obj[HeaderLen : len(obj)-TrailerLen]))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	if got, err := io.ReadAll(dec); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("plain zstd: %d bytes, %v; want %d identical bytes", len(got), err, len(want))
	}
}
