package restore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/wal"
)

// walHeader reads the header of the source's WAL file.
func (s *source) walHeader() wal.Header {
	s.t.Helper()
	f, err := os.Open(s.path + "-wal")
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	h, err := wal.ReadHeader(f)
	if err != nil {
		s.t.Fatal(err)
	}
	return h
}

var otherGen = walsync.Generation{0x99}

// TestRestoreSegments restores snapshot + segments cut from real SQLite
// WALs and compares the output, byte for byte, with the source database
// after PRAGMA wal_checkpoint(TRUNCATE).
func TestRestoreSegments(t *testing.T) {
	tests := []struct {
		name     string
		pageSize uint32
		// build writes the history and returns the state the restore must
		// give and the number of segments it must apply.
		build func(t *testing.T, s *source) (want []byte, segments int)
	}{
		{
			name: "snapshot only", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(50, 300)
				_, content := s.snapshot()
				return content, 0
			},
		},
		{
			name: "snapshot and several segments", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(20, 3000)
				s.segment()
				s.exec(0, "UPDATE t SET v = randomblob(700) WHERE id % 3 = 0")
				s.insert(5, 100) // two transactions in one segment
				s.segment()
				s.exec(0, "DELETE FROM t WHERE id % 5 = 0")
				s.segment()
				s.exec(0, "CREATE INDEX t_v ON t(v)")
				s.segment()
				return s.expected(), 4
			},
		},
		{
			name: "WAL restarted by the writer: salt-1 and checkpoint sequence + 1", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(10, 1000)
				s.segment()
				before := s.walHeader()
				s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
				s.insert(10, 1000) // all frames backfilled, no reader: SQLite restarts the WAL
				after := s.walHeader()
				if after.Salt1 != before.Salt1+1 || after.CheckpointSeq != before.CheckpointSeq+1 {
					t.Fatalf("WAL not restarted as expected: got=salt1 %d ckpt %d, want %d %d",
						after.Salt1, after.CheckpointSeq, before.Salt1+1, before.CheckpointSeq+1)
				}
				s.segment()
				s.exec(0, "UPDATE t SET v = randomblob(10) WHERE id < 30")
				s.segment()
				return s.expected(), 3
			},
		},
		{
			name: "WAL restarted by another connection: checkpoint sequence not + 1", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
				s.insert(10, 1000) // connection 0 restarts: checkpoint sequence 1
				s.segment()
				before := s.walHeader()
				s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
				s.exec(1, "INSERT INTO t(v) VALUES (randomblob(5000))") // connection 1 restarts with its own counter
				after := s.walHeader()
				if after.Salt1 != before.Salt1+1 || after.CheckpointSeq == before.CheckpointSeq+1 {
					t.Fatalf("want a restart whose checkpoint sequence is not +1: got=salt1 %d ckpt %d, before %d %d",
						after.Salt1, after.CheckpointSeq, before.Salt1, before.CheckpointSeq)
				}
				s.segment()
				return s.expected(), 2
			},
		},
		{
			name: "WAL truncated by one connection, restarted by another with random salts", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
				s.insert(10, 1000) // connection 0's checkpoint counter is now 1
				s.segment()
				s.exec(2, "SELECT 1") // connection 2: counter 0
				s.exec(0, "PRAGMA wal_checkpoint(TRUNCATE)")
				s.exec(2, "INSERT INTO t(v) VALUES (randomblob(5000))")
				if h := s.walHeader(); h.CheckpointSeq != 0 || h.Salt1 == s.pos.Salt1+1 {
					t.Fatalf("want a fresh WAL with random salts: got=salt1 %d ckpt %d, before %d %d", h.Salt1, h.CheckpointSeq, s.pos.Salt1, s.pos.CkptSeq)
				}
				s.segment()
				s.insert(3, 100)
				s.segment()
				return s.expected(), 3
			},
		},
		{
			name: "two TRUNCATE checkpoints without a write between: salt-1 + 2", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(10, 1000)
				s.segment()
				before := s.walHeader()
				s.exec(0, "PRAGMA wal_checkpoint(TRUNCATE)")
				s.exec(0, "PRAGMA wal_checkpoint(TRUNCATE)")
				s.insert(10, 1000)
				if after := s.walHeader(); after.Salt1 != before.Salt1+2 {
					t.Fatalf("salt-1 after two restarts: got=%d, want %d", after.Salt1, before.Salt1+2)
				}
				s.segment()
				return s.expected(), 2
			},
		},
		{
			name: "WAL restarts inside segments (restart records)", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(10, 1000)
				s.hold()
				s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
				s.insert(10, 1000) // the writer restarts the WAL
				s.insert(2, 100)
				s.hold()
				s.exec(2, "SELECT 1") // connection 2: counter 0
				s.exec(0, "PRAGMA wal_checkpoint(TRUNCATE)")
				s.exec(2, "INSERT INTO t(v) VALUES (randomblob(5000))") // a fresh WAL, random salts
				s.segment()                                             // three WALs, two restart records
				s.insert(3, 100)
				s.segment() // goes on from where the spanning segment ended
				s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
				s.exec(0, "DELETE FROM t WHERE id % 4 = 0")
				s.hold()
				s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
				s.exec(0, "VACUUM")
				s.segment()
				if s.restarts != 3 {
					t.Fatalf("restart records shipped: got=%d, want 3", s.restarts)
				}
				return s.expected(), 3
			},
		},
		{
			name: "snapshot without a WAL", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.exec(0, "PRAGMA wal_checkpoint(TRUNCATE)")
				s.snapshot()
				if s.pos.Frame != 0 || s.pos.Salt1 != 0 {
					t.Fatalf("snapshot position: got=%+v, want none", s.pos)
				}
				s.insert(10, 1000)
				s.segment()
				s.insert(10, 1000)
				s.segment()
				return s.expected(), 2
			},
		},
		{
			name: "VACUUM shrinks the database", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(300, 3000)
				_, snap := s.snapshot()
				s.exec(0, "DELETE FROM t WHERE id > 20")
				s.segment()
				s.exec(0, "VACUUM")
				s.segment()
				want := s.expected()
				if len(want) >= len(snap)/4 {
					t.Fatalf("VACUUM did not shrink the database: got=%d bytes, want < %d", len(want), len(snap)/4)
				}
				return want, 2
			},
		},
		{
			name: "shrink then grow in one segment", pageSize: 1024,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(300, 3000)
				s.snapshot()
				s.exec(0, "DELETE FROM t WHERE id > 20")
				s.exec(0, "VACUUM")
				s.insert(30, 2000)
				s.segment()
				return s.expected(), 1
			},
		},
		{
			name: "page size 65536", pageSize: 65536,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(10, 100000)
				s.snapshot()
				s.insert(3, 200000)
				s.segment()
				s.exec(0, "UPDATE t SET v = randomblob(1000) WHERE id % 2 = 0")
				s.segment()
				s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
				s.insert(1, 10)
				s.segment()
				return s.expected(), 3
			},
		},
		{
			name: "page size 512", pageSize: 512,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(50, 700)
				s.snapshot()
				s.insert(50, 700)
				s.segment()
				return s.expected(), 1
			},
		},
		{
			name: "a segment of another generation ends the chain", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(10, 1000)
				s.segment()
				want := s.expected()
				s.insert(10, 1000)
				s.segment(func(h *walsync.ObjectHeader, _ []byte) { h.Generation = otherGen })
				s.insert(10, 1000)
				s.segment(func(h *walsync.ObjectHeader, _ []byte) { h.Generation = otherGen })
				return want, 1
			},
		},
		{
			name: "the snapshot's first segment is of another generation", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				_, snap := s.snapshot()
				s.insert(10, 1000)
				s.segment(func(h *walsync.ObjectHeader, _ []byte) { h.Generation = otherGen })
				return snap, 0
			},
		},
		{
			name: "missing segment followed by another generation ends the chain", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(10, 1000)
				s.segment()
				want := s.expected()
				s.seq++ // number 2 never written: the old generation ended
				s.insert(10, 1000)
				s.segment(func(h *walsync.ObjectHeader, _ []byte) { h.Generation = otherGen; h.Seq = 3 })
				return want, 1
			},
		},
		{
			name: "segments before the snapshot's first number are ignored", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(10, 1000)
				s.segment()
				s.insert(10, 1000)
				s.segment()
				s.snapshot() // a newer snapshot continued by segment 3
				s.insert(10, 1000)
				s.segment()
				return s.expected(), 1
			},
		},
		{
			name: "a second writer's segments under the same numbers", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(10, 1000)
				s.segment()
				s.insert(10, 1000)
				s.segment()
				want := s.expected()
				for seq := uint64(1); seq <= 3; seq++ {
					key := walsync.SegmentKey(s.name, seq, s.clock.Add(time.Duration(seq)*time.Minute))
					putObject(t, s.st, key, walsync.ObjectHeader{Kind: walsync.KindByteSegment, Generation: otherGen,
						PageSize: 4096, Seq: seq}, []byte("a second writer"))
				}
				return want, 2
			},
		},
		{
			name: "a segment stored twice with the same bytes", pageSize: 4096,
			build: func(t *testing.T, s *source) ([]byte, int) {
				s.insert(100, 500)
				s.snapshot()
				s.insert(10, 1000)
				key := s.segment()
				b := readAll(t, s.storedPath(key))
				sum := strings.TrimSpace(string(readAll(t, s.storedPath(key)+".sha256")))
				dup := walsync.SegmentKey(s.name, 1, s.clock.Add(time.Hour))
				if err := s.st.Put(context.Background(), dup, bytes.NewReader(b), int64(len(b)), sum); err != nil {
					t.Fatal(err)
				}
				s.insert(10, 1000)
				s.segment()
				return s.expected(), 2
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, tt.pageSize)
			want, segments := tt.build(t, s)
			out, res, err := s.restoreTo()
			if err != nil {
				t.Fatalf("restore: got=%v, want success", err)
			}
			sameBytes(t, readAll(t, out), want, tt.pageSize)
			integrityOK(t, out)
			if res.Segments != segments {
				t.Errorf("Result.Segments: got=%d, want %d", res.Segments, segments)
			}
			if segments > 0 {
				if wantLast := s.snapSeq + uint64(segments) - 1; res.LastSeq != wantLast {
					t.Errorf("Result.LastSeq: got=%d, want %d", res.LastSeq, wantLast)
				}
			}
			if res.DBSize != int64(len(want)) {
				t.Errorf("Result.DBSize: got=%d, want %d", res.DBSize, len(want))
			}
		})
	}
}

// wantErr is the error a broken history must give: one wrapping is, whose
// message contains every string of contains.
type wantErr struct {
	is       error
	contains []string
}

// TestRestoreSegmentErrors: every broken history fails the restore with an
// error naming the object and the cause, and leaves nothing at the output.
func TestRestoreSegmentErrors(t *testing.T) {
	// history writes a snapshot and three segments; edit (if any) applies
	// to the segment numbered editSeq.
	history := func(s *source, editSeq uint64, edit func(h *walsync.ObjectHeader, content []byte)) {
		s.insert(100, 500)
		s.snapshot()
		for i := 0; i < 3; i++ {
			s.insert(10, 1000)
			if s.seq == editSeq {
				s.segment(edit)
			} else {
				s.segment()
			}
		}
	}
	// spanning writes a snapshot and three segments, the second holding a
	// WAL restart; edit applies to it, with the offset of its restart
	// record in the content.
	spanning := func(s *source, edit func(h *walsync.ObjectHeader, content []byte, rec int)) {
		s.insert(100, 500)
		s.snapshot()
		s.insert(10, 1000)
		s.segment()
		s.insert(10, 1000)
		s.hold()
		s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
		s.insert(10, 1000) // restarts the WAL
		s.segment(func(h *walsync.ObjectHeader, content []byte) {
			fs := wal.FrameHeaderSize + int(h.PageSize)
			for off := 0; off < len(content); off += fs {
				if wal.ParseFrameHeader(content[off:]).Pgno == 0 {
					edit(h, content, off)
					return
				}
			}
			panic("no restart record")
		})
		s.insert(10, 1000)
		s.segment()
	}
	tests := []struct {
		name  string
		build func(t *testing.T, s *source) wantErr
	}{
		{
			name: "restart record without the header flag",
			build: func(t *testing.T, s *source) wantErr {
				spanning(s, func(h *walsync.ObjectHeader, _ []byte, _ int) { h.Restarts = false })
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "page number 0"}}
			},
		},
		{
			name: "restart record whose WAL header checksum is wrong",
			build: func(t *testing.T, s *source) wantErr {
				spanning(s, func(_ *walsync.ObjectHeader, content []byte, rec int) {
					content[rec+wal.FrameHeaderSize+15] ^= 1 // its checkpoint sequence
				})
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "WAL restart record", "checksum mismatch"}}
			},
		},
		{
			name: "restart record whose salts are not its WAL header's",
			build: func(t *testing.T, s *source) wantErr {
				spanning(s, func(_ *walsync.ObjectHeader, content []byte, rec int) { content[rec+8] ^= 1 })
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "not those of the WAL header it holds"}}
			},
		},
		{
			name: "restart record with bytes after its WAL header",
			build: func(t *testing.T, s *source) wantErr {
				spanning(s, func(_ *walsync.ObjectHeader, content []byte, rec int) {
					content[rec+wal.FrameHeaderSize+wal.HeaderSize+9] = 1
				})
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "bytes after its WAL header"}}
			},
		},
		{
			name: "restart record that keeps the old WAL",
			build: func(t *testing.T, s *source) wantErr {
				spanning(s, func(h *walsync.ObjectHeader, content []byte, rec int) {
					old := wal.NewHeader(h.PageSize, h.WALCheckpointSeq, h.WALSalt1, h.WALSalt2, h.WALBigEndian)
					walsync.AppendRestartRecord(content[rec:rec], old, h.PageSize)
				})
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "keeps the WAL salts"}}
			},
		},
		{
			name: "frame after a restart record that continues the old WAL",
			build: func(t *testing.T, s *source) wantErr {
				spanning(s, func(h *walsync.ObjectHeader, content []byte, rec int) {
					next := content[rec+wal.FrameHeaderSize+int(h.PageSize):]
					binary.BigEndian.PutUint32(next[8:], h.WALSalt1)
					binary.BigEndian.PutUint32(next[12:], h.WALSalt2)
				})
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "WAL frame 1 has salts"}}
			},
		},
		{
			name: "deleted middle segment",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 0, nil)
				if err := s.st.Delete(context.Background(), s.keys[1]); err != nil {
					t.Fatal(err)
				}
				return wantErr{ErrGap, []string{"segment 00000002", "missing", s.keys[0], s.keys[2]}}
			},
		},
		{
			name: "deleted first segment",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 0, nil)
				snapKey := s.snapKey
				if err := s.st.Delete(context.Background(), s.keys[0]); err != nil {
					t.Fatal(err)
				}
				return wantErr{ErrGap, []string{"segment 00000001", "missing", snapKey, s.keys[1]}}
			},
		},
		{
			name: "flipped byte in a segment",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 0, nil)
				p := s.storedPath(s.keys[1])
				b := readAll(t, p)
				b[len(b)/2] ^= 0x01
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return wantErr{walsync.ErrChecksum, []string{s.keys[1], "checksum"}}
			},
		},
		{
			name: "flipped byte in a segment's header",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 0, nil)
				p := s.storedPath(s.keys[2])
				b := readAll(t, p)
				b[8+10] ^= 0x01 // a generation byte: must not pass for another generation
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return wantErr{walsync.ErrChecksum, []string{s.keys[2], "checksum"}}
			},
		},
		{
			name: "flipped byte in a segment of another generation after the chain",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 0, nil)
				s.insert(10, 1000)
				key := s.segment(func(h *walsync.ObjectHeader, _ []byte) { h.Generation = otherGen })
				p := s.storedPath(key)
				b := readAll(t, p)
				b[len(b)/2] ^= 0x01
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return wantErr{walsync.ErrChecksum, []string{key, "checksum"}}
			},
		},
		{
			name: "segment without a recorded sha256",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 0, nil)
				if err := os.Remove(s.storedPath(s.keys[1]) + ".sha256"); err != nil {
					t.Fatal(err)
				}
				return wantErr{walsync.ErrNoChecksum, []string{s.keys[1]}}
			},
		},
		{
			name: "forged page: valid sha256, broken WAL checksum chain",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(_ *walsync.ObjectHeader, content []byte) {
					content[wal.FrameHeaderSize+100] ^= 0x01 // first frame's page
				})
				return wantErr{walsync.ErrChecksum, []string{s.keys[1], "WAL checksum chain broken at frame"}}
			},
		},
		{
			name: "forged frame header checksum",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 3, func(h *walsync.ObjectHeader, content []byte) {
					last := int(h.FrameCount-1) * (wal.FrameHeaderSize + int(h.PageSize))
					content[last+16] ^= 0x80
				})
				return wantErr{walsync.ErrChecksum, []string{s.keys[2], "WAL checksum chain broken"}}
			},
		},
		{
			name: "segment whose WAL checksum does not continue the previous one",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(h *walsync.ObjectHeader, _ []byte) { h.WALChecksum1 ^= 1 })
				return wantErr{ErrGap, []string{s.keys[1], "does not continue " + s.keys[0], "WAL checksum before frame"}}
			},
		},
		{
			name: "segment that skips a frame",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 3, func(h *walsync.ObjectHeader, _ []byte) { h.WALFrame++ })
				return wantErr{ErrGap, []string{s.keys[2], "does not continue " + s.keys[1], "want frame"}}
			},
		},
		{
			name: "segment of another WAL that does not start at frame 1",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(h *walsync.ObjectHeader, _ []byte) { h.WALSalt2++ })
				return wantErr{ErrGap, []string{s.keys[1], "restarted", "not 1"}}
			},
		},
		{
			name: "page count differs from the last commit",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(h *walsync.ObjectHeader, _ []byte) { h.PageCount++ })
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "last commit"}}
			},
		},
		{
			name: "frame count larger than the content",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(h *walsync.ObjectHeader, _ []byte) { h.FrameCount++ })
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "whole records"}}
			},
		},
		{
			name: "frame count smaller than the content",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(h *walsync.ObjectHeader, _ []byte) { h.FrameCount-- })
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "content continues"}}
			},
		},
		{
			name: "header number differs from the key",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(h *walsync.ObjectHeader, _ []byte) { h.Seq = 7 })
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "segment 7"}}
			},
		},
		{
			name: "page size differs from the snapshot's",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(h *walsync.ObjectHeader, _ []byte) { h.PageSize = 8192 })
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "page size 8192"}}
			},
		},
		{
			name: "a snapshot object in place of a segment",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 2, func(h *walsync.ObjectHeader, _ []byte) { h.Kind = walsync.KindByteSnapshot })
				return wantErr{walsync.ErrFormat, []string{s.keys[1], "not a WAL segment"}}
			},
		},
		{
			name: "two different objects claim one number",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 0, nil)
				key := walsync.SegmentKey(s.name, 2, s.clock.Add(time.Hour))
				putObject(t, s.st, key, walsync.ObjectHeader{Kind: walsync.KindByteSegment, Generation: s.gen,
					PageSize: 4096, Seq: 2}, []byte("other"))
				return wantErr{ErrGap, []string{s.keys[1], key, "different contents"}}
			},
		},
		{
			name: "two objects of the generation claim one number, and one of another",
			build: func(t *testing.T, s *source) wantErr {
				history(s, 0, nil)
				other := walsync.SegmentKey(s.name, 2, s.clock.Add(time.Minute))
				putObject(t, s.st, other, walsync.ObjectHeader{Kind: walsync.KindByteSegment, Generation: otherGen,
					PageSize: 4096, Seq: 2}, []byte("other generation"))
				key := walsync.SegmentKey(s.name, 2, s.clock.Add(time.Hour))
				putObject(t, s.st, key, walsync.ObjectHeader{Kind: walsync.KindByteSegment, Generation: s.gen,
					PageSize: 4096, Seq: 2}, []byte("other"))
				return wantErr{ErrGap, []string{s.keys[1], key, "different contents"}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, 4096)
			w := tt.build(t, s)
			is, contains := w.is, w.contains
			out, _, err := s.restoreTo()
			if err == nil {
				t.Fatalf("restore: got=success, want an error")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, is) {
				t.Errorf("error: got=%v, want one wrapping %v", err, is)
			}
			for _, c := range contains {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("error: got=%v, want it to contain %q", err, c)
				}
			}
			assertNothingAt(t, out)
		})
	}
}

// A failed restore with --force leaves the existing output as it was.
func TestRestoreFailureKeepsExistingOutput(t *testing.T) {
	s := newSource(t, 4096)
	s.insert(100, 500)
	s.snapshot()
	s.insert(10, 1000)
	s.segment()
	s.insert(10, 1000)
	s.segment()
	s.insert(10, 1000)
	s.segment()
	if err := s.st.Delete(context.Background(), s.keys[1]); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.db")
	old := []byte("the old database")
	if err := os.WriteFile(out, old, 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Restorer{Storage: s.st}
	_, err := r.Restore(context.Background(), s.name, out, Options{Force: true})
	if !errors.Is(err, ErrGap) {
		t.Fatalf("restore: got=%v, want %v", err, ErrGap)
	}
	if got := readAll(t, out); !bytes.Equal(got, old) {
		t.Fatalf("output: got=%q, want %q", got, old)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files in the output directory: got=%d, want 1", len(entries))
	}
}

// Progress adds up the stored bytes of the snapshot and the segments.
func TestRestoreProgress(t *testing.T) {
	s := newSource(t, 4096)
	s.insert(100, 500)
	s.snapshot()
	s.insert(10, 1000)
	s.segment()
	s.insert(10, 1000)
	s.segment()
	var total int64
	for obj, err := range s.st.List(context.Background(), s.name+"/") {
		if err != nil {
			t.Fatal(err)
		}
		total += obj.Size
	}
	var lastDone, lastTotal int64
	r := &Restorer{Storage: s.st, Progress: func(done, tot int64) { lastDone, lastTotal = done, tot }}
	if _, err := r.Restore(context.Background(), s.name, filepath.Join(t.TempDir(), "out.db"), Options{}); err != nil {
		t.Fatal(err)
	}
	if lastDone != total || lastTotal != total {
		t.Fatalf("last progress: got=%d/%d, want %d/%d", lastDone, lastTotal, total, total)
	}
}

// TestContinues checks the continuity rule on headers alone.
func TestContinues(t *testing.T) {
	const ps = 4096
	newWAL := func(ckpt, salt1, salt2 uint32) walsync.ObjectHeader {
		wh := wal.NewHeader(ps, ckpt, salt1, salt2, false)
		return walsync.ObjectHeader{PageSize: ps, WALSalt1: salt1, WALSalt2: salt2, WALCheckpointSeq: ckpt,
			WALFrame: 1, WALChecksum1: wh.Checksum1, WALChecksum2: wh.Checksum2}
	}
	prev := walPos{key: "prev", WALPosition: walsync.WALPosition{Salt1: 100, Salt2: 200, CkptSeq: 3, Frame: 10, Cksum1: 0xaaaa, Cksum2: 0xbbbb}}
	next := walsync.ObjectHeader{PageSize: ps, WALSalt1: 100, WALSalt2: 200, WALCheckpointSeq: 3,
		WALFrame: 11, WALChecksum1: 0xaaaa, WALChecksum2: 0xbbbb}
	with := func(h walsync.ObjectHeader, f func(*walsync.ObjectHeader)) walsync.ObjectHeader { f(&h); return h }
	noWAL := walPos{key: "snap"}
	emptyWAL := walPos{key: "snap", WALPosition: walsync.WALPosition{Salt1: 100, Salt2: 200, CkptSeq: 3}}
	tests := []struct {
		name string
		prev walPos
		h    walsync.ObjectHeader
		want string // "" for continues, else a part of the error
	}{
		{"next frame of the same WAL", prev, next, ""},
		{"frame skipped", prev, with(next, func(h *walsync.ObjectHeader) { h.WALFrame = 12 }), "want frame 11"},
		{"frame repeated", prev, with(next, func(h *walsync.ObjectHeader) { h.WALFrame = 10 }), "want frame 11"},
		{"checksum differs", prev, with(next, func(h *walsync.ObjectHeader) { h.WALChecksum2++ }), "WAL checksum before frame 11"},
		{"checkpoint sequence differs", prev, with(next, func(h *walsync.ObjectHeader) { h.WALCheckpointSeq = 4 }), "checkpoint sequence 4, not 3"},
		{"byte order differs", prev, with(next, func(h *walsync.ObjectHeader) { h.WALBigEndian = true }), "byte order"},
		{"frame 1 of the same WAL again", prev, with(newWAL(3, 100, 200), func(*walsync.ObjectHeader) {}), "want frame 11"},
		{"restart: salt-1 and checkpoint + 1", prev, newWAL(4, 101, 7), ""},
		{"restart: salt-1 wraps around", walPos{key: "prev", WALPosition: walsync.WALPosition{Salt1: 0xffffffff, Salt2: 1, CkptSeq: 3, Frame: 5}}, newWAL(4, 0, 9), ""},
		{"restart by another connection: checkpoint sequence its own", prev, newWAL(1, 101, 7), ""},
		{"restart with random salts and checkpoint 0", prev, newWAL(0, 0x5eed, 0xf00d), ""},
		{"restart after two empty restarts", prev, newWAL(5, 102, 7), ""},
		{"restart big-endian", prev, func() walsync.ObjectHeader {
			wh := wal.NewHeader(ps, 4, 101, 7, true)
			return walsync.ObjectHeader{PageSize: ps, WALSalt1: 101, WALSalt2: 7, WALCheckpointSeq: 4, WALFrame: 1,
				WALBigEndian: true, WALChecksum1: wh.Checksum1, WALChecksum2: wh.Checksum2}
		}(), ""},
		{"restart not at frame 1", prev, with(newWAL(4, 101, 7), func(h *walsync.ObjectHeader) { h.WALFrame = 2 }), "restarted"},
		{"frame 1 with a checksum that is not its header's", prev, with(newWAL(4, 101, 7), func(h *walsync.ObjectHeader) { h.WALChecksum1++ }), "not that WAL header's"},
		{"frame 0", prev, with(next, func(h *walsync.ObjectHeader) { h.WALFrame = 0 }), "frame is 0"},
		{"snapshot without WAL, any WAL at frame 1", noWAL, newWAL(0, 0x5eed, 0xf00d), ""},
		{"snapshot without WAL, frame 2", noWAL, with(newWAL(0, 5, 6), func(h *walsync.ObjectHeader) { h.WALFrame = 2 }), "not 1"},
		{"snapshot of an empty WAL, its frame 1", emptyWAL, newWAL(3, 100, 200), ""},
		{"snapshot of an empty WAL, its frame 2", emptyWAL, with(newWAL(3, 100, 200), func(h *walsync.ObjectHeader) { h.WALFrame = 2 }), "want frame 1"},
		{"snapshot of an empty WAL, restarted", emptyWAL, newWAL(4, 101, 9), ""},
		{"snapshot of an empty WAL, its frame 1 with wrong checksum", emptyWAL,
			with(newWAL(3, 100, 200), func(h *walsync.ObjectHeader) { h.WALChecksum2 ^= 1 }), "not that WAL header's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := continues(tt.prev, tt.h)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("continues: got=%v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("continues: got=nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("continues: got=%v, want an error containing %q", err, tt.want)
			}
		})
	}
}
