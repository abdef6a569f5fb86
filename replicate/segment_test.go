package replicate

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
	"github.com/walsync/walsync/wal"
)

// hookCapture is what the VFS's Flush does: append to the open segment.
func hookCapture(t testing.TB, d *DB) int {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	n, err := d.captureFrames(false)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newBatchDB follows a new source with a Batch watcher whose interval
// never comes by itself; the application does not checkpoint on its own.
func newBatchDB(t testing.TB) (string, *sql.DB, *Watcher, *DB) {
	t.Helper()
	src, app, st := newSource(t)
	mustExec(t, app, "PRAGMA wal_autocheckpoint=0")
	w := &Watcher{Storage: st, Batch: true, SyncInterval: time.Hour}
	return src, app, w, newTestDB(t, w, src)
}

// spooled lists the segment entries in d's spool: sealed and open. The
// empty open file made ahead of the next segment (prepareOpen) is left out.
func spooled(t *testing.T, d *DB) (sealed, open []spoolEntry) {
	t.Helper()
	entries, err := d.spool.entries()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch {
		case e.Open:
			if fi, err := os.Stat(e.path(d.spool)); err == nil && fi.Size() == 0 && e.Seq == d.nextOpen {
				continue
			}
			open = append(open, e)
		case !e.Snapshot:
			sealed = append(sealed, e)
		}
	}
	return sealed, open
}

// With Watcher.Batch, the captures of the hooks append to one open segment
// that nothing uploads; the sync that the interval brings seals it, and
// the restore from that one segment is exact. Without Batch every capture
// is a segment of its own.
func TestBatchAppendsUntilSealed(t *testing.T) {
	for _, batch := range []bool{true, false} {
		src, app, st := newSource(t)
		w := &Watcher{Storage: st, Batch: batch, SyncInterval: time.Hour}
		d := newTestDB(t, w, src)
		for range 5 {
			mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
			if n := hookCapture(t, d); n == 0 {
				t.Fatal("captured no frame")
			}
		}
		sealed, open := spooled(t, d)
		if batch && (len(sealed) != 0 || len(open) != 1) {
			t.Fatalf("batch: %d sealed and %d open segments before the interval, want 0 and 1", len(sealed), len(open))
		}
		if !batch && (len(sealed) != 5 || len(open) != 0) {
			t.Fatalf("no batch: %d sealed and %d open segments, want 5 and 0", len(sealed), len(open))
		}
		if err := w.uploadAll(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		if _, open := spooled(t, d); batch && len(open) != 1 {
			t.Fatal("the uploader took the open segment")
		}
		// The interval has passed (lastCapture is zero here): sync seals.
		if err := d.sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		sealed, open = spooled(t, d)
		if len(open) != 0 {
			t.Fatalf("open segments after the sync: %d", len(open))
		}
		// Segments carry no content SHA-256 (docs/FORMAT.md, flags bit 1).
		for _, e := range sealed {
			if h, _, err := d.spool.segmentEnd(e); err != nil || !h.Unhashed {
				t.Fatalf("batch=%v: segment %d: err=%v, unhashed=%v, want an unhashed segment", batch, e.Seq, err, h.Unhashed)
			}
		}
		want := 1
		if !batch {
			want = 5
		}
		if err := w.uploadAll(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		if res := restoreMatches(t, st, src); res.Segments != want {
			t.Fatalf("batch=%v: segments applied %d, want %d", batch, res.Segments, want)
		}
	}
}

// Before the pin moves to read mark 0 (after which the application may
// restart the WAL over the frames), the open segment is on disk; across
// the restart the open segment goes on with a restart record, its sealed
// header says so, and the restore is exact.
func TestBarrierBeforeRestart(t *testing.T) {
	src, app, w, d := newBatchDB(t)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	hookCapture(t, d)
	cycle := func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.cycle(); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // the pin at the WAL's end: a checkpoint can copy everything
	if d.seg == nil || d.seg.synced == d.seg.good {
		t.Fatal("the open segment should not be synced yet")
	}
	mustExec(t, app, "PRAGMA wal_checkpoint(PASSIVE)")
	cycle() // what the VFS's Unpin does: the new pin has read mark 0
	if !d.atZero {
		t.Fatal("the pin is not at read mark 0")
	}
	if d.seg.synced != d.seg.good || !d.seg.dirSynced {
		t.Fatalf("open segment not on disk before the WAL may restart: synced %d of %d, directory %v", d.seg.synced, d.seg.good, d.seg.dirSynced)
	}
	first := d.seg.seq
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))") // restarts the WAL
	hookCapture(t, d)
	if d.seg == nil || d.seg.seq != first || d.seg.restarts != 1 {
		t.Fatal("the open segment did not go on across the restart with a restart record")
	}
	if d.seg.synced == d.seg.good {
		t.Fatal("the open segment should not be synced past the restart yet")
	}
	if err := d.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	sealed, _ := spooled(t, d)
	if len(sealed) != 1 {
		t.Fatalf("spool holds %d sealed segments, want 1", len(sealed))
	}
	if h, pos, err := d.spool.segmentEnd(sealed[0]); err != nil || !h.Restarts || pos != d.st.Pos {
		t.Fatalf("sealed segment: restarts flag %v, ends at %+v (%v), want %+v", h.Restarts, pos, err, d.st.Pos)
	}
	uploadAndCompare(t, w, d, src)
	// Closing removes the file made ahead for the segment after.
	if d.nextOpen == 0 {
		t.Fatal("no file made ahead after the seal")
	}
	next := filepath.Join(spoolDir(src), openName(d.nextOpen))
	d.close()
	if _, err := os.Stat(next); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file made ahead outlived the close: %v", err)
	}
}

// A crash leaves the empty file made ahead of the next segment: the next
// start removes it, continues the same generation, and the restore is
// exact. And removals of uploaded objects, which have no directory fsync
// of their own, are made durable before a retention pass.
func TestMadeAheadFileAfterCrash(t *testing.T) {
	src, app, w, d := newBatchDB(t)
	gen := d.gen
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	hookCapture(t, d)
	if err := d.sync(context.Background()); err != nil { // seals: the interval has passed
		t.Fatal(err)
	}
	if err := w.uploadAll(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if !d.spool.unsynced.Load() {
		t.Fatal("the upload removed nothing from the spool")
	}
	w.Retention, d.set.retention = time.Hour, time.Hour
	d.uploadedSincePrune.Store(true)
	w.pruneAll(context.Background())
	if d.spool.unsynced.Load() {
		t.Fatal("a retention pass ran before the removals were durable")
	}
	if d.nextOpen == 0 {
		t.Fatal("no file made ahead after the seal")
	}
	path := filepath.Join(spoolDir(src), openName(d.nextOpen))
	d.nextOpen = 0 // the crash: close does not get to remove it
	d.close()
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty file made ahead: %v", err)
	}
	d = newTestDB(t, w, src)
	if d.gen != gen {
		t.Fatalf("generation after the crash: got=%s, want %s (the same)", d.gen, gen)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the empty open file is still there after the start")
	}
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	hookCapture(t, d)
	if err := d.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	uploadAndCompare(t, w, d, src)
}

// A crash leaves the open segment with whatever reached the file: all of
// it, part of the last append, only the header, or not even that. The
// next start keeps the frames up to the last whole commit, continues the
// same generation from there, captures the rest from the WAL again, and
// the restore is exact.
func TestOpenSegmentRecoveredAfterCrash(t *testing.T) {
	cases := []struct {
		name string
		cut  func(firstAppend, size int64) int64 // the file size left
		// The commits segment seq holds after the restart: those kept
		// from the open file, or, when none were, both captured again
		// from the WAL by the start itself.
		commits int
	}{
		{"whole", func(_, size int64) int64 { return size }, 2},
		{"last append cut short", func(first, size int64) int64 { return first + (size-first)/2 }, 1},
		{"header only", func(int64, int64) int64 { return walsync.HeaderLen }, 2},
		{"no header", func(int64, int64) int64 { return 10 }, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, app, w, d := newBatchDB(t)
			gen := d.gen
			mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(30000))")
			n1 := hookCapture(t, d)
			firstAppend := d.seg.good
			mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(30000))")
			n2 := hookCapture(t, d)
			seq, size := d.seg.seq, d.seg.good
			// The crash: the open file stays as it is, unsealed.
			d.mu.Lock()
			d.dropOpen()
			d.mu.Unlock()
			d.close()
			path := filepath.Join(spoolDir(src), openName(seq))
			if err := os.Truncate(path, c.cut(firstAppend, size)); err != nil {
				t.Fatal(err)
			}

			d = newTestDB(t, w, src)
			if d.gen != gen {
				t.Fatalf("generation after recovery: got=%s, want %s (the same)", d.gen, gen)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("open file left after recovery: %v", err)
			}
			sealed, _ := spooled(t, d)
			var frames uint32
			for _, e := range sealed {
				if e.Seq == seq {
					h, _, err := d.spool.segmentEnd(e)
					if err != nil {
						t.Fatal(err)
					}
					frames = h.FrameCount
					if !h.Unhashed {
						t.Fatalf("segment %d sealed by the recovery carries a content sha256, want none", seq)
					}
				}
			}
			want := uint32(n1)
			if c.commits == 2 {
				want += uint32(n2)
			}
			if frames != want {
				t.Fatalf("segment %d has %d frames, want %d (%d commits)", seq, frames, want, c.commits)
			}
			mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
			if err := d.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			uploadAndCompare(t, w, d, src)
		})
	}
}

// A crash with an open segment that went on across a WAL restart: kept
// whole, the next start continues the generation from the new WAL; cut
// inside the append after the restart, no commit of the new WAL is left,
// the recovered position is the old WAL's end, which the WAL no longer
// holds, and a new generation starts. Either way the restore is exact.
func TestOpenSegmentAcrossRestartRecoveredAfterCrash(t *testing.T) {
	for _, whole := range []bool{true, false} {
		src, app, w, d := newBatchDB(t)
		gen := d.gen
		cycle := func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if err := d.cycle(); err != nil {
				t.Fatal(err)
			}
		}
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(30000))")
		hookCapture(t, d)
		cycle()
		mustExec(t, app, "PRAGMA wal_checkpoint(PASSIVE)")
		cycle() // read mark 0: the WAL may restart
		before := d.seg.good
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(30000))") // restarts the WAL
		hookCapture(t, d)
		if d.seg.restarts != 1 {
			t.Fatalf("open segment holds %d restart records, want 1", d.seg.restarts)
		}
		seq, size := d.seg.seq, d.seg.good
		d.mu.Lock()
		d.dropOpen()
		d.mu.Unlock()
		d.close()
		if !whole {
			if err := os.Truncate(filepath.Join(spoolDir(src), openName(seq)), before+(size-before)/2); err != nil {
				t.Fatal(err)
			}
		}

		d = newTestDB(t, w, src)
		if (d.gen == gen) != whole {
			t.Fatalf("whole=%v: generation %s after recovery, before %s", whole, d.gen, gen)
		}
		sealed, _ := spooled(t, d)
		for _, e := range sealed {
			if e.Seq != seq {
				continue
			}
			h, _, err := d.spool.segmentEnd(e)
			if err != nil || h.Restarts != whole {
				t.Fatalf("whole=%v: segment %d sealed by the recovery: restart records %v (%v)", whole, seq, h.Restarts, err)
			}
		}
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
		if err := d.sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		uploadAndCompare(t, w, d, src)
	}
}

// An append that fails part way (here the WAL's last frame no longer
// matches its checksum: a writer that does not use SQLite) keeps what the
// open segment held before it, sealed, and reports the discontinuity.
func TestFailedAppendKeepsTheOpenSegment(t *testing.T) {
	// With restart, the damaged frame is in a new WAL, after a restart
	// the open segment would go on across: the failed append takes its
	// restart record along, and the segment ends in the old WAL.
	for _, restart := range []bool{false, true} {
		src, app, _, d := newBatchDB(t)
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
		hookCapture(t, d)
		seq, end := d.seg.seq, d.st.Pos
		if restart {
			d.mu.Lock()
			err := d.cycle()
			if err == nil {
				_, err = app.Exec("PRAGMA wal_checkpoint(PASSIVE)")
			}
			if err == nil {
				err = d.cycle() // read mark 0: the WAL may restart
			}
			d.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		}
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
		h, err := d.readIndex()
		if err != nil {
			t.Fatal(err)
		}
		if restarted := h.Salt1 != end.Salt1; restarted != restart {
			t.Fatalf("restart=%v: the WAL restarted: %v", restart, restarted)
		}
		f, err := os.OpenFile(src+"-wal", os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("not what SQLite wrote"), wal.FrameOffset(d.st.PageSize, h.MaxFrame)+wal.FrameHeaderSize+100); err != nil {
			t.Fatal(err)
		}
		f.Close()
		d.mu.Lock()
		_, err = d.captureFrames(false)
		d.mu.Unlock()
		if !errors.Is(err, errDiscontinuity) {
			t.Fatalf("restart=%v: append over a damaged frame: got=%v, want a discontinuity", restart, err)
		}
		if d.seg != nil || d.st.Pos != end || d.st.NextSeq != seq+1 {
			t.Fatalf("restart=%v: after the failed append: open %v, position %+v (want %+v), next %d (want %d)", restart, d.seg != nil, d.st.Pos, end, d.st.NextSeq, seq+1)
		}
		sealed, open := spooled(t, d)
		if len(open) != 0 || len(sealed) != 1 || sealed[0].Seq != seq {
			t.Fatalf("restart=%v: spool after the failed append: sealed %v, open %v", restart, sealed, open)
		}
		if hdr, pos, err := d.spool.segmentEnd(sealed[0]); err != nil || pos != end || hdr.Restarts {
			t.Fatalf("restart=%v: sealed segment ends at %+v (%v), restart records %v; want %+v and none", restart, pos, err, hdr.Restarts, end)
		}
	}
}

// openSegmentBytes builds an open segment as capture leaves it: header,
// then frames through a flushed, unfinished zstd stream. The frames carry
// a valid checksum chain; every third one commits.
func openSegmentBytes(frames int) []byte { return openSegmentRestart(frames, 0) }

// openSegmentRestart is openSegmentBytes with a WAL restart record after
// frame restartAfter (a commit; 0: none): the frames after it are those of
// a new WAL, numbered from 1.
func openSegmentRestart(frames, restartAfter int) []byte {
	const pageSize = 512
	hdr := walsync.ObjectHeader{Kind: walsync.KindByteSegment, PageSize: pageSize, WALSalt1: 7, WALSalt2: 9,
		WALFrame: 1, WALChecksum1: 11, WALChecksum2: 13, PageCount: 2}
	var buf bytes.Buffer
	ow, _ := walsync.NewObjectWriter(&buf, hdr)
	c1, c2 := hdr.WALChecksum1, hdr.WALChecksum2
	salt1, salt2 := hdr.WALSalt1, hdr.WALSalt2
	for i := 1; i <= frames; i++ {
		f := make([]byte, wal.FrameHeaderSize+pageSize)
		binary.BigEndian.PutUint32(f[0:], uint32(i))
		if i%3 == 0 {
			binary.BigEndian.PutUint32(f[4:], uint32(i))
		}
		binary.BigEndian.PutUint32(f[8:], salt1)
		binary.BigEndian.PutUint32(f[12:], salt2)
		for j := wal.FrameHeaderSize; j < len(f); j++ {
			f[j] = byte(i * j)
		}
		c1, c2 = wal.Checksum(false, c1, c2, f[:8])
		c1, c2 = wal.Checksum(false, c1, c2, f[wal.FrameHeaderSize:])
		binary.BigEndian.PutUint32(f[16:], c1)
		binary.BigEndian.PutUint32(f[20:], c2)
		ow.Write(f) //nolint:errcheck // a bytes.Buffer
		ow.Flush()  //nolint:errcheck
		if i == restartAfter {
			wh := wal.NewHeader(pageSize, 1, salt1+1, 77, false)
			ow.Write(walsync.AppendRestartRecord(nil, wh, pageSize)) //nolint:errcheck
			ow.Flush()                                               //nolint:errcheck
			salt1, salt2, c1, c2 = wh.Salt1, wh.Salt2, wh.Checksum1, wh.Checksum2
		}
	}
	ow.Abort()
	return buf.Bytes()
}

// scanOpen reads what a crash left in an open segment file: any bytes at
// all. It must not panic, must keep only whole commits, and the second
// reading (the copy into the sealed segment) must give the same frames.
func FuzzScanOpen(f *testing.F) {
	good := openSegmentBytes(7)
	f.Add(good)
	f.Add(openSegmentRestart(10, 6))
	f.Add(good[:len(good)/2])
	f.Add(good[:walsync.HeaderLen])
	f.Add([]byte("not a segment"))
	// The bytes, not a file: a file written and read at every input made
	// this target a hundred times slower than the others.
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, n, restarts, end, err := scanOpenFrom(bytes.NewReader(b), 0)
		if err != nil || n == 0 {
			return
		}
		if (restarts == 0 && end.Frame != hdr.WALFrame+n-1) || end.DBPages == 0 || restarts >= n {
			t.Fatalf("%d records kept (%d restarts), end %+v", n, restarts, end)
		}
		var copied bytes.Buffer
		if _, n2, r2, end2, err := scanOpenFrom(bytes.NewReader(b), n, &copied); err != nil || n2 != n || r2 != restarts || end2 != end {
			t.Fatalf("second reading: %d records, %+v, %v; first: %d, %+v", n2, end2, err, n, end)
		}
		if copied.Len() != int(n)*(wal.FrameHeaderSize+int(hdr.PageSize)) {
			t.Fatalf("copied %d bytes for %d frames", copied.Len(), n)
		}
	})
}

func TestScanOpenKeepsWholeCommits(t *testing.T) {
	b := openSegmentBytes(8) // commits at frames 3 and 6; 7 and 8 do not commit
	path := filepath.Join(t.TempDir(), "x.open")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, n, _, end, err := readOnlySpool(path).scanOpen(path, 0); err != nil || n != 6 || end.Frame != 6 || end.DBPages != 6 {
		t.Fatalf("scanOpen: %d frames, end %+v, %v; want 6 frames ending at frame 6", n, end, err)
	}
}

// An open segment that went on across a WAL restart: recovery keeps the
// new WAL's frames up to their last commit, or, when none of them
// commits, ends before the restart record; the sealed segment says it
// holds restart records only when it keeps one.
func TestRecoverOpenAcrossRestart(t *testing.T) {
	tests := []struct {
		frames          int // frames written; the restart comes after frame 6
		kept, restarts  uint32
		salt1, endFrame uint32
	}{
		{frames: 12, kept: 13, restarts: 1, salt1: 8, endFrame: 6}, // the new WAL's frames 1..6 (6 commits)
		{frames: 8, kept: 6, restarts: 0, salt1: 7, endFrame: 6},   // frames 7, 8 (new WAL 1, 2) do not commit
		{frames: 6, kept: 6, restarts: 0, salt1: 7, endFrame: 6},   // the restart record alone
	}
	for _, tt := range tests {
		dir := t.TempDir()
		s := &spool{dir: dir, fs: fsys.System{}}
		if err := os.WriteFile(filepath.Join(dir, openName(5)), openSegmentRestart(tt.frames, 6), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := s.recoverOpen(5)
		if err != nil {
			t.Fatal(err)
		}
		if r.frames != tt.kept || r.end.Salt1 != tt.salt1 || r.end.Frame != tt.endFrame {
			t.Fatalf("%d frames written: kept %d records, end %+v; want %d, salt1 %d frame %d", tt.frames, r.frames, r.end, tt.kept, tt.salt1, tt.endFrame)
		}
		h, pos, err := s.segmentEnd(spoolEntry{Name: entryName(5, false), Seq: 5})
		if err != nil || pos != r.end || h.FrameCount != tt.kept || h.Restarts != (tt.restarts > 0) {
			t.Fatalf("%d frames written: sealed segment %+v ends at %+v (%v), want %+v", tt.frames, h, pos, err, r.end)
		}
	}
}

// A process waiting for its commit (WaitDurable, walsync_sync=1 in a
// process that does not replicate the database) is done once the sealed
// segments up to state.json's position are uploaded, even while the owner
// keeps an open segment with later frames, as it always has under
// continuous writes.
func TestWaitDurableIgnoresTheOpenSegment(t *testing.T) {
	src, app, w, d := newBatchDB(t)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	if err := d.sync(context.Background()); err != nil { // seals: a commit after a quiet spell
		t.Fatal(err)
	}
	if err := w.uploadAll(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	salt, frame := d.st.Pos.Salt1, d.st.Pos.Frame
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	hookCapture(t, d)
	if _, open := spooled(t, d); len(open) != 1 {
		t.Fatalf("open segments: %d, want 1", len(open))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := WaitDurable(ctx, src, salt, frame); err != nil {
		t.Fatalf("WaitDurable for a commit in an uploaded segment: %v", err)
	}
}

// A flush requested by a process that waits for its commit seals the
// open segment at once, even when a hook's capture took that commit into
// the open segment after the request (nothing left to capture).
func TestFlushRequestSealsTheOpenSegment(t *testing.T) {
	src, app, _, d := newBatchDB(t)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	hookCapture(t, d)
	d.setLastCapture(d.now())         // as Watcher.Flush does: the interval runs
	time.Sleep(20 * time.Millisecond) // file times are coarser than the clock
	if err := RequestFlush(src); err != nil {
		t.Fatal(err)
	}
	if err := d.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, open := spooled(t, d); len(open) != 0 {
		t.Fatalf("open segments after a flush request: %d, want 0", len(open))
	}
}

// CatchUp's advance moves the pin to the WAL's end without capturing, so
// a checkpoint can copy every frame at once; the frames stay in the WAL
// for a later capture. After a restart that no capture has seen yet, it
// must capture first: the restart is proven continuous only while the
// old pin has read mark 0, and the restore stays in one generation.
func TestAdvanceLeavesTheCaptureButNotARestart(t *testing.T) {
	src, app, w, d := newBatchDB(t)
	gen := d.gen
	locked := func(f func() error) {
		t.Helper()
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	hookCapture(t, d)
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	captured := d.st.Pos.Frame
	locked(d.advance)
	h, err := d.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	if d.st.Pos.Frame != captured || d.pinnedAt != h.MaxFrame || d.atZero {
		t.Fatalf("advance: position %d (was %d), pinned at %d of %d, at zero %v; want the pin at the end and nothing captured", d.st.Pos.Frame, captured, d.pinnedAt, h.MaxFrame, d.atZero)
	}
	mustExec(t, app, "PRAGMA wal_checkpoint(PASSIVE)")
	if h, err = d.readIndex(); err != nil || h.NBackfill != h.MaxFrame {
		t.Fatalf("the checkpoint after advance copied %d of %d frames (%v)", h.NBackfill, h.MaxFrame, err)
	}
	locked(d.cycle) // Unpin: captures the rest, then read mark 0
	if !d.atZero || d.st.Pos.Frame != h.MaxFrame {
		t.Fatalf("cycle after the checkpoint: at zero %v, position %d of %d", d.atZero, d.st.Pos.Frame, h.MaxFrame)
	}
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))") // restarts the WAL
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	locked(d.advance) // the position is still in the old WAL
	hookCapture(t, d)
	if d.gen != gen {
		t.Fatal("a new generation began: the restart was not captured before the pin left read mark 0")
	}
	locked(func() error { _, err := d.capture(); return err }) // seal
	uploadAndCompare(t, w, d, src)
}

// BenchmarkCapture is the CPU of the VFS's background capture: frames
// read from the WAL and checked, compressed and hashed into the open
// segment, 100 one-row commits (one page each) per capture. It reports
// ns per frame, the figure docs/BENCHMARKS.md compares.
//
//	go test -run NONE -bench Capture ./replicate/
func BenchmarkCapture(b *testing.B) {
	_, app, _, d := newBatchDB(b)
	app.SetMaxOpenConns(1)
	mustExec(b, app, "PRAGMA wal_autocheckpoint=0")
	frames := 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if d.seg != nil && d.seg.n > 50_000 {
			d.mu.Lock()
			if err := d.sealOpen(); err != nil {
				b.Fatal(err)
			}
			d.mu.Unlock()
		}
		for range 100 {
			mustExec(b, app, "INSERT INTO t (b) VALUES (randomblob(200))")
		}
		b.StartTimer()
		frames += hookCapture(b, d)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
}

// Sealing fsyncs the spool directory once, with state.json, for both
// renames; a crash before that may keep state.json's rename and lose the
// segment's. The next start must seal the complete open file again (its
// zstd stream ends in the trailer) and keep the generation, and the
// restore is exact.
func TestSealLostRenameButNotState(t *testing.T) {
	src, app, w, d := newBatchDB(t)
	gen := d.gen
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
	d.mu.Lock()
	if _, err := d.capture(); err != nil {
		t.Fatal(err)
	}
	seq, next := d.st.NextSeq-1, d.st.NextSeq
	d.mu.Unlock()
	d.close()
	dir := spoolDir(src)
	if err := os.Rename(filepath.Join(dir, entryName(seq, false)), filepath.Join(dir, openName(seq))); err != nil {
		t.Fatal(err)
	}

	d = newTestDB(t, w, src)
	if d.gen != gen || d.st.NextSeq != next {
		t.Fatalf("after the start: generation %s (want %s), next segment %d (want %d)", d.gen, gen, d.st.NextSeq, next)
	}
	if _, err := os.Stat(filepath.Join(dir, entryName(seq, false))); err != nil {
		t.Fatalf("segment %d not sealed again: %v", seq, err)
	}
	uploadAndCompare(t, w, d, src)
}

// A Batch watcher stopped after a seal, with the file made ahead of the
// next segment in its spool, reports nothing left to ship and leaves no
// file behind.
func TestBatchStopAfterSeal(t *testing.T) {
	src, app, st := newSource(t)
	rw := startWatcher(t, &Watcher{Storage: st, Batch: true, SyncInterval: time.Hour}, src, "app")
	commitDurable(t, rw, app, src, 3) // Durable seals at once
	d := rw.w.all()[0]
	d.mu.Lock()
	next := d.nextOpen
	d.mu.Unlock()
	if next == 0 {
		t.Fatal("no file made ahead after a seal")
	}
	rw.stop(t) // fails when the shutdown counts that file as not shipped
	entries, err := readOnlySpool(src).entries()
	if err != nil || len(entries) != 0 {
		t.Fatalf("spool after the stop: %v (%v), want empty", entries, err)
	}
	restoreMatches(t, st, src)
}

// A flush request is seen by a capture that happened just before it, also
// when the request file is made afresh: its mtime then comes from the
// kernel's coarse clock, which lags time.Now by up to a tick.
func TestFlushRequestAfterCapture(t *testing.T) {
	for i := range 20 {
		src := filepath.Join(t.TempDir(), "app.db")
		if err := os.MkdirAll(spoolDir(src), 0o755); err != nil {
			t.Fatal(err)
		}
		captured := time.Now()
		if err := RequestFlush(src); err != nil {
			t.Fatal(err)
		}
		if !readOnlySpool(src).flushRequested(captured) {
			t.Fatalf("try %d: a flush requested after the capture is not seen", i)
		}
	}
}
