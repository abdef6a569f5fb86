package wal_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/walsync/walsync/wal"
)

type fr struct{ pgno, commit uint32 }

func TestReadIndex(t *testing.T) {
	tests := []struct {
		name       string
		frames     []fr
		wantMax    uint32
		wantDBSize uint32
		wantPages  map[uint32]uint32
	}{
		{"no frames", nil, 0, 0, map[uint32]uint32{}},
		{"uncommitted only", []fr{{1, 0}, {2, 0}}, 0, 0, map[uint32]uint32{}},
		{"single commit", []fr{{1, 1}}, 1, 1, map[uint32]uint32{1: 1}},
		{
			"latest committed version wins",
			[]fr{{1, 0}, {2, 2}, {2, 0}, {1, 2}, {2, 2}},
			5, 2, map[uint32]uint32{1: 4, 2: 5},
		},
		{
			"page rewritten within a transaction",
			[]fr{{3, 0}, {3, 0}, {3, 3}},
			3, 3, map[uint32]uint32{3: 3},
		},
		{
			"uncommitted tail ignored",
			[]fr{{1, 0}, {2, 2}, {1, 0}, {3, 0}},
			2, 2, map[uint32]uint32{1: 1, 2: 2},
		},
		{
			"truncating commit drops pages past the end",
			[]fr{{1, 0}, {2, 0}, {3, 0}, {4, 4}, {1, 2}},
			5, 2, map[uint32]uint32{1: 5, 2: 2},
		},
		{
			"regrown database keeps the latest frame",
			[]fr{{1, 0}, {2, 0}, {3, 3}, {1, 1}, {1, 0}, {3, 3}},
			6, 3, map[uint32]uint32{1: 5, 2: 2, 3: 6},
		},
	}
	for _, be := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := newBuilder(wal.NewHeader(1024, 9, 77, 88, be))
				var c1, c2 = b.c1, b.c2
				for i, f := range tt.frames {
					b.frame(f.pgno, f.commit, page(1024, f.pgno, uint32(i)))
					if uint32(i+1) == tt.wantMax {
						c1, c2 = b.c1, b.c2
					}
				}
				idx, err := wal.ReadIndex(bytes.NewReader(b.buf))
				if err != nil {
					t.Fatalf("ReadIndex: got=%v, want nil", err)
				}
				if idx.Header != b.hdr {
					t.Errorf("Header: got=%+v, want %+v", idx.Header, b.hdr)
				}
				if idx.MaxFrame != tt.wantMax {
					t.Errorf("MaxFrame: got=%v, want %v", idx.MaxFrame, tt.wantMax)
				}
				if idx.DBSize != tt.wantDBSize {
					t.Errorf("DBSize: got=%v, want %v", idx.DBSize, tt.wantDBSize)
				}
				if idx.Checksum1 != c1 || idx.Checksum2 != c2 {
					t.Errorf("Checksum: got=%08x%08x, want %08x%08x", idx.Checksum1, idx.Checksum2, c1, c2)
				}
				if !reflect.DeepEqual(idx.Pages, tt.wantPages) {
					t.Errorf("Pages: got=%v, want %v", idx.Pages, tt.wantPages)
				}
				for pgno, i := range idx.Pages {
					off, ok := idx.PageOffset(pgno)
					if want := wal.FrameOffset(1024, i) + wal.FrameHeaderSize; !ok || off != want {
						t.Errorf("PageOffset(%d): got=%v,%v, want %v,true", pgno, off, ok, want)
					}
					// The page data written for frame i is page(pgno, i-1).
					if got, want := b.buf[off:off+1024], page(1024, pgno, i-1); !bytes.Equal(got, want) {
						t.Errorf("page %d data: got=%x..., want %x...", pgno, got[:8], want[:8])
					}
				}
				if _, ok := idx.PageOffset(1000); ok {
					t.Errorf("PageOffset(1000): got=true, want false")
				}
			})
		}
	}
}
