package walsync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/walsync/walsync/wal"
)

const chainPageSize = 512

// chainBuilder writes segment content the way the spool does: WAL frames
// with a correct checksum chain, and restart records between them.
type chainBuilder struct {
	hdr     ObjectHeader // the start position
	wh      wal.Header   // the current WAL
	c1, c2  uint32
	content []byte
	records uint32
}

func newChainBuilder() *chainBuilder {
	wh := wal.NewHeader(chainPageSize, 3, 0x1111, 0x2222, false)
	b := &chainBuilder{wh: wh, c1: wh.Checksum1, c2: wh.Checksum2}
	b.hdr = ObjectHeader{Kind: KindByteSegment, PageSize: chainPageSize, WALSalt1: wh.Salt1, WALSalt2: wh.Salt2,
		WALCheckpointSeq: wh.CheckpointSeq, WALFrame: 1, WALChecksum1: wh.Checksum1, WALChecksum2: wh.Checksum2}
	return b
}

// frame appends a frame of page pgno (commit: the database size, 0 for
// none) to the current WAL.
func (b *chainBuilder) frame(pgno, commit uint32) *chainBuilder {
	f := make([]byte, wal.FrameHeaderSize+chainPageSize)
	for i := wal.FrameHeaderSize; i < len(f); i++ {
		f[i] = byte(int(pgno)*7 + i + int(b.records))
	}
	binary.BigEndian.PutUint32(f[0:], pgno)
	binary.BigEndian.PutUint32(f[4:], commit)
	binary.BigEndian.PutUint32(f[8:], b.wh.Salt1)
	binary.BigEndian.PutUint32(f[12:], b.wh.Salt2)
	b.c1, b.c2 = wal.FrameChecksum(b.wh.BigEndianChecksum(), b.c1, b.c2, f)
	binary.BigEndian.PutUint32(f[16:], b.c1)
	binary.BigEndian.PutUint32(f[20:], b.c2)
	b.content = append(b.content, f...)
	b.records++
	return b
}

// restart appends a restart record into a new WAL with the given salts
// and checksum byte order.
func (b *chainBuilder) restart(salt1, salt2 uint32, bigEndian bool) *chainBuilder {
	b.wh = wal.NewHeader(chainPageSize, b.wh.CheckpointSeq+1, salt1, salt2, bigEndian)
	b.c1, b.c2 = b.wh.Checksum1, b.wh.Checksum2
	b.content = AppendRestartRecord(b.content, b.wh, chainPageSize)
	b.records++
	b.hdr.Restarts = true
	return b
}

// run feeds every record to a chain and returns the first error, with
// the chain and how many records were frames.
func (b *chainBuilder) run(h ObjectHeader, allow bool) (*SegmentChain, int, error) {
	ch := NewSegmentChain(h, allow)
	frames := 0
	rs := wal.FrameHeaderSize + chainPageSize
	for off := 0; off < len(b.content); off += rs {
		isFrame, err := ch.Next(b.content[off : off+rs])
		if err != nil {
			return ch, frames, err
		}
		if isFrame {
			frames++
		}
	}
	return ch, frames, nil
}

func TestSegmentChainAcrossRestarts(t *testing.T) {
	b := newChainBuilder().frame(1, 0).frame(2, 2).
		restart(0x1112, 0x2222, false).frame(2, 0).frame(3, 3).frame(1, 3).
		restart(0xabcd, 0x9876, true).frame(4, 4)
	ch, frames, err := b.run(b.hdr, false)
	if err != nil {
		t.Fatal(err)
	}
	want := WALPosition{Salt1: 0xabcd, Salt2: 0x9876, CkptSeq: 5, Frame: 1, Cksum1: b.c1, Cksum2: b.c2, BigEndian: true}
	if ch.Pos() != want || frames != 6 || ch.Records() != 8 || ch.Restarts() != 2 || ch.Last().Commit != 4 {
		t.Fatalf("chain ends at %+v after %d records (%d frames, %d restarts), want %+v after 8 (6, 2)",
			ch.Pos(), ch.Records(), frames, ch.Restarts(), want)
	}

	// The restart record before any frame of the new WAL is no end: the
	// position is frame 0 of the new WAL, and its last record no commit.
	ch = NewSegmentChain(b.hdr, false)
	rs := wal.FrameHeaderSize + chainPageSize
	for i := 0; i < 3; i++ {
		if _, err := ch.Next(b.content[i*rs : (i+1)*rs]); err != nil {
			t.Fatal(err)
		}
	}
	if p := ch.Pos(); p.Salt1 != 0x1112 || p.Frame != 0 || ch.Last().IsCommit() {
		t.Fatalf("after a restart record: %+v, last %+v", p, ch.Last())
	}
}

func TestSegmentChainRefuses(t *testing.T) {
	rs := wal.FrameHeaderSize + chainPageSize
	tests := []struct {
		name  string
		build func() *chainBuilder
		edit  func(b *chainBuilder) // after building
		allow bool
		is    error
		want  string
	}{
		{
			name:  "restart record without the header flag",
			build: func() *chainBuilder { return newChainBuilder().frame(1, 1).restart(5, 6, false).frame(1, 1) },
			edit:  func(b *chainBuilder) { b.hdr.Restarts = false },
			is:    ErrFormat, want: "page number 0",
		},
		{
			name:  "restart record first",
			build: func() *chainBuilder { return newChainBuilder().restart(5, 6, false).frame(1, 1) },
			is:    ErrFormat, want: "does not follow a commit frame",
		},
		{
			name:  "restart record inside a transaction",
			build: func() *chainBuilder { return newChainBuilder().frame(1, 0).restart(5, 6, false).frame(1, 1) },
			is:    ErrFormat, want: "does not follow a commit frame",
		},
		{
			name: "two restart records in a row",
			build: func() *chainBuilder {
				return newChainBuilder().frame(1, 1).restart(5, 6, false).restart(7, 8, false).frame(1, 1)
			},
			is: ErrFormat, want: "does not follow a commit frame",
		},
		{
			name:  "restart record that keeps the salts",
			build: func() *chainBuilder { return newChainBuilder().frame(1, 1).restart(0x1111, 0x2222, false).frame(1, 1) },
			is:    ErrFormat, want: "keeps the WAL salts",
		},
		{
			name:  "restart record with a commit size",
			build: func() *chainBuilder { return newChainBuilder().frame(1, 1).restart(5, 6, false).frame(1, 1) },
			edit:  func(b *chainBuilder) { binary.BigEndian.PutUint32(b.content[rs+4:], 1) },
			is:    ErrFormat, want: "has commit 1",
		},
		{
			name:  "restart record with a broken WAL header",
			build: func() *chainBuilder { return newChainBuilder().frame(1, 1).restart(5, 6, false).frame(1, 1) },
			edit:  func(b *chainBuilder) { b.content[rs+wal.FrameHeaderSize+13] ^= 1 },
			is:    ErrFormat, want: "checksum mismatch",
		},
		{
			name:  "restart record whose checksum slots are not its header's",
			build: func() *chainBuilder { return newChainBuilder().frame(1, 1).restart(5, 6, false).frame(1, 1) },
			edit:  func(b *chainBuilder) { b.content[rs+17] ^= 1 },
			is:    ErrFormat, want: "not those of the WAL header it holds",
		},
		{
			name: "restart record of another page size",
			build: func() *chainBuilder {
				b := newChainBuilder().frame(1, 1)
				b.content = AppendRestartRecord(b.content, wal.NewHeader(1024, 0, 5, 6, false), chainPageSize)
				b.hdr.Restarts = true
				return b
			},
			is: ErrFormat, want: "page size 1024",
		},
		{
			name:  "restart record with bytes after the WAL header",
			build: func() *chainBuilder { return newChainBuilder().frame(1, 1).restart(5, 6, false).frame(1, 1) },
			edit:  func(b *chainBuilder) { b.content[2*rs-1] = 1 },
			is:    ErrFormat, want: "bytes after its WAL header",
		},
		{
			name: "frame after a restart that continues the old checksum chain",
			build: func() *chainBuilder {
				b := newChainBuilder().frame(1, 1)
				c1, c2 := b.c1, b.c2
				b.restart(5, 6, false)
				b.c1, b.c2 = c1, c2
				return b.frame(2, 2)
			},
			is: ErrChecksum, want: "chain broken at frame 1",
		},
		{
			name: "frame after a restart with the old salts",
			build: func() *chainBuilder {
				b := newChainBuilder().frame(1, 1)
				old := b.wh
				b.restart(5, 6, false)
				b.wh.Salt1, b.wh.Salt2 = old.Salt1, old.Salt2
				return b.frame(2, 2)
			},
			is: ErrFormat, want: "WAL frame 1 has salts",
		},
		{
			name:  "forged page after a restart",
			build: func() *chainBuilder { return newChainBuilder().frame(1, 1).restart(5, 6, false).frame(1, 1) },
			edit:  func(b *chainBuilder) { b.content[2*rs+100] ^= 4 },
			is:    ErrChecksum, want: "chain broken at frame 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.build()
			if tt.edit != nil {
				tt.edit(b)
			}
			_, _, err := b.run(b.hdr, tt.allow)
			if err == nil {
				t.Fatal("got=no error")
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got=%v, want %v containing %q", err, tt.is, tt.want)
			}
		})
	}

	// An open segment in the spool has no flag until it is sealed.
	b := newChainBuilder().frame(1, 1).restart(5, 6, false).frame(1, 1)
	b.hdr.Restarts = false
	if _, _, err := b.run(b.hdr, true); err != nil {
		t.Fatalf("open segment with a restart record: %v", err)
	}
}

// FuzzSegmentChain feeds arbitrary records to a chain: it must not panic,
// a refused record must leave the chain where it was, and a restart
// record, once accepted, puts it at frame 0 of a WAL whose header the
// record holds.
func FuzzSegmentChain(f *testing.F) {
	b := newChainBuilder().frame(1, 0).frame(2, 2).restart(0x1112, 0x2222, false).frame(2, 0).frame(3, 3).restart(9, 9, true).frame(1, 1)
	f.Add(b.content, true)
	f.Add(b.content[:len(b.content)/2], false)
	f.Add([]byte{}, true)
	hdr := b.hdr
	hdr.Restarts = false // allow decides
	rs := wal.FrameHeaderSize + chainPageSize
	f.Fuzz(func(t *testing.T, content []byte, allow bool) {
		ch := NewSegmentChain(hdr, allow)
		for off := 0; off+rs <= len(content); off += rs {
			rec := content[off : off+rs]
			before, n := ch.Pos(), ch.Records()
			isFrame, err := ch.Next(rec)
			if err != nil {
				if ch.Pos() != before || ch.Records() != n {
					t.Fatalf("a refused record moved the chain: %+v -> %+v", before, ch.Pos())
				}
				continue
			}
			if ch.Records() != n+1 {
				t.Fatalf("records %d -> %d", n, ch.Records())
			}
			p := ch.Pos()
			if isFrame {
				if p.Frame != before.Frame+1 || p.Salt1 != before.Salt1 || p.Salt2 != before.Salt2 {
					t.Fatalf("frame moved the chain %+v -> %+v", before, p)
				}
				continue
			}
			wh, err := wal.ParseHeader(rec[wal.FrameHeaderSize:])
			if err != nil || p.Frame != 0 || p.Salt1 != wh.Salt1 || p.Cksum1 != wh.Checksum1 ||
				(p.Salt1 == before.Salt1 && p.Salt2 == before.Salt2) || !bytes.Equal(rec[wal.FrameHeaderSize+wal.HeaderSize:], make([]byte, chainPageSize-wal.HeaderSize)) {
				t.Fatalf("restart record accepted: %+v -> %+v (%v)", before, p, err)
			}
		}
	})
}
