package restore

import (
	"bytes"
	"context"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync"
)

// twoGenerations writes generation A (a snapshot, three segments, a second
// snapshot, two segments), a manual snapshot, and generation B (a snapshot
// and two segments, the first across a WAL restart).
func twoGenerations(s *source) {
	s.insert(100, 500)
	s.snapshot()
	for i := 0; i < 3; i++ {
		s.insert(10, 1000)
		s.segment()
	}
	s.snapshot()
	for i := 0; i < 2; i++ {
		s.insert(10, 1000)
		s.segment()
	}
	s.manualSnapshot(s.clock.Add(time.Second))
	s.clock = s.clock.Add(time.Minute)
	s.gen = otherGen
	s.snapshot()
	for i := 0; i < 2; i++ {
		s.insert(10, 1000)
		if i == 0 { // a segment across a WAL restart (a restart record)
			s.hold()
			s.exec(0, "PRAGMA wal_checkpoint(PASSIVE)")
			s.insert(10, 1000)
		}
		s.segment()
	}
}

func verifyAll(t *testing.T, s *source, names ...string) []GenerationReport {
	t.Helper()
	reps, err := Verify(context.Background(), s.st, VerifyOptions{Names: names, Parallel: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		t.Logf("%s %s %d+%d ok=%v %s %s", r.Name, r.Generation, r.Snapshots, r.Segments, r.OK, r.Error, r.Note)
	}
	return reps
}

func TestVerifyClean(t *testing.T) {
	s := newSource(t, 4096)
	twoGenerations(s)
	if s.restarts != 1 {
		t.Fatalf("restart records: got=%d, want 1", s.restarts)
	}
	reps := verifyAll(t, s)
	if len(reps) != 3 {
		t.Fatalf("reports: got=%d, want 3 (A, the manual snapshot, B)", len(reps))
	}
	want := []struct{ snaps, segs int }{{2, 5}, {1, 0}, {1, 2}}
	for i, r := range reps {
		if !r.OK || r.Error != "" || r.Name != "app" || r.Bytes == 0 || r.From == nil || r.To == nil {
			t.Errorf("report %d: got=%+v, want ok", i, r)
		}
		if r.Snapshots != want[i].snaps || r.Segments != want[i].segs {
			t.Errorf("report %d: got=%d snapshots + %d segments, want %d + %d", i, r.Snapshots, r.Segments, want[i].snaps, want[i].segs)
		}
	}
	if reps[2].Generation != otherGen.String() {
		t.Errorf("last generation: got=%s, want %s", reps[2].Generation, otherGen)
	}
	// Any degree of parallelism gives the same verdicts.
	for _, p := range []int{1, 16} {
		again, err := Verify(context.Background(), s.st, VerifyOptions{Parallel: p})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again, reps) {
			t.Errorf("parallel %d: got=%+v, want %+v", p, again, reps)
		}
	}
}

func TestVerifyProblems(t *testing.T) {
	flip := func(t *testing.T, s *source, key string, at func(n int) int) {
		p := s.storedPath(key)
		b := readAll(t, p)
		b[at(len(b))] ^= 0x01
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		// build damages the history and returns the index of the failing
		// report and what its error must say.
		build func(t *testing.T, s *source) (int, []string)
	}{
		{"flipped byte in a segment", func(t *testing.T, s *source) (int, []string) {
			flip(t, s, s.keys[1], func(n int) int { return n / 2 })
			return 0, []string{s.keys[1], "checksum mismatch"}
		}},
		{"flipped byte in a snapshot", func(t *testing.T, s *source) (int, []string) {
			flip(t, s, s.snapKey, func(n int) int { return n / 2 })
			return 2, []string{s.snapKey, "checksum mismatch"}
		}},
		{"content sha256 in a snapshot's trailer wrong, stored bytes' sha256 right", func(t *testing.T, s *source) (int, []string) {
			// Restore leaves this check to verify (the content is as
			// zstd's frame checksum says), verify makes it.
			p := s.storedPath(s.snapKey)
			b := readAll(t, p)
			b[len(b)-5] ^= 0x01 // inside the trailer's content SHA-256
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p+".sha256", []byte(sha256Hex(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return 2, []string{s.snapKey, "content sha256 differs from the trailer"}
		}},
		{"flipped byte in a segment's header magic", func(t *testing.T, s *source) (int, []string) {
			flip(t, s, s.keys[0], func(int) int { return 9 })
			return 3, []string{s.keys[0], "checksum mismatch"} // no readable header: a line of its own
		}},
		{"deleted middle segment", func(t *testing.T, s *source) (int, []string) {
			if err := s.st.Delete(context.Background(), s.keys[1]); err != nil {
				t.Fatal(err)
			}
			return 0, []string{"gap", "segment 00000002", "missing", s.keys[0], s.keys[2]}
		}},
		{"deleted segments after a snapshot", func(t *testing.T, s *source) (int, []string) {
			for _, k := range s.keys[2:4] {
				if err := s.st.Delete(context.Background(), k); err != nil {
					t.Fatal(err)
				}
			}
			return 0, []string{"segments 00000003 to 00000004", "missing", s.keys[1], s.keys[4]}
		}},
		{"forged WAL frame: valid sha256, broken continuity", func(t *testing.T, s *source) (int, []string) {
			s.insert(10, 1000)
			key := s.segment(func(h *walsync.ObjectHeader, _ []byte) { h.WALFrame++ })
			return 2, []string{"gap", key, "does not continue " + s.keys[len(s.keys)-2], "want frame"}
		}},
		{"forged WAL checksum: valid sha256, broken chain", func(t *testing.T, s *source) (int, []string) {
			s.insert(10, 1000)
			key := s.segment(func(h *walsync.ObjectHeader, _ []byte) { h.WALChecksum1 ^= 1 })
			return 2, []string{key, "WAL checksum chain broken"}
		}},
		{"forged page: broken WAL checksum chain", func(t *testing.T, s *source) (int, []string) {
			s.insert(10, 1000)
			key := s.segment(func(h *walsync.ObjectHeader, content []byte) { h.Unhashed = false; content[100] ^= 1 })
			return 2, []string{key, "WAL checksum chain broken"}
		}},
		{"forged page in a segment without a content sha256", func(t *testing.T, s *source) (int, []string) {
			// The chain is all that is left to catch it: the stored bytes'
			// sha256 and the zstd frame checksum are those of the forgery.
			s.insert(10, 1000)
			key := s.segment(func(h *walsync.ObjectHeader, content []byte) { h.Unhashed = true; content[4200] ^= 1 })
			return 2, []string{key, "WAL checksum chain broken"}
		}},
		{"two different objects claim one number", func(t *testing.T, s *source) (int, []string) {
			// Segment 2 again, valid, with another capture time: other bytes.
			f, err := os.Open(s.storedPath(s.keys[1]))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			or, err := walsync.NewObjectReader(f, fi.Size())
			if err != nil {
				t.Fatal(err)
			}
			content, err := io.ReadAll(or)
			if err != nil {
				t.Fatal(err)
			}
			h := or.Header
			h.Created = h.Created.Add(time.Hour)
			key := walsync.SegmentKey(s.name, 2, h.Created)
			putObject(t, s.st, key, h, content)
			return 0, []string{key, s.keys[1], "different contents"}
		}},
		{"a copy of a segment under another key", func(t *testing.T, s *source) (int, []string) {
			b := readAll(t, s.storedPath(s.keys[1]))
			sum := strings.TrimSpace(string(readAll(t, s.storedPath(s.keys[1])+".sha256")))
			key := walsync.SegmentKey(s.name, 2, s.clock.Add(time.Hour))
			if err := s.st.Put(context.Background(), key, bytes.NewReader(b), int64(len(b)), sum); err != nil {
				t.Fatal(err)
			}
			return 0, []string{key, "the key's time is not the capture time"}
		}},
		{"segments whose snapshot is gone", func(t *testing.T, s *source) (int, []string) {
			s.insert(10, 1000)
			s.gen = walsync.Generation{0x55}
			key := s.segment()
			return 3, []string{"no snapshot", key}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, 4096)
			twoGenerations(s)
			i, contains := tt.build(t, s)
			reps := verifyAll(t, s)
			if i >= len(reps) {
				t.Fatalf("reports: got=%d, want the one at %d to fail", len(reps), i)
			}
			for j, r := range reps {
				if j != i && !r.OK {
					t.Errorf("report %d: got=%s, want ok", j, r.Error)
				}
			}
			r := reps[i]
			if r.OK {
				t.Fatalf("report %d: got=ok, want a failure", i)
			}
			for _, c := range contains {
				if !strings.Contains(r.Error, c) {
					t.Errorf("error %q does not contain %q", r.Error, c)
				}
			}
		})
	}
}

func TestVerifyRetentionLeftovers(t *testing.T) {
	s := newSource(t, 4096)
	twoGenerations(s)
	// An interrupted retention pass: A's snapshots deleted, some of its
	// segments left.
	for obj, err := range s.st.List(context.Background(), "app/snapshots/") {
		if err != nil {
			t.Fatal(err)
		}
		if k, _ := walsync.ParseKey(obj.Key); k.Time.Before(s.clock.Add(-30 * time.Second)) {
			if err := s.st.Delete(context.Background(), obj.Key); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.st.Delete(context.Background(), s.keys[0]); err != nil {
		t.Fatal(err)
	}
	reps := verifyAll(t, s)
	if len(reps) != 2 || !reps[0].OK || !strings.Contains(reps[0].Note, "no restore point needs them") || !reps[1].OK {
		t.Fatalf("reports: got=%+v, want A's leftovers ok with a note, B ok", reps)
	}
}

func TestVerifyNames(t *testing.T) {
	s := newSource(t, 4096)
	twoGenerations(s)
	reps := verifyAll(t, s, "app", "ghost")
	if len(reps) != 4 {
		t.Fatalf("reports: got=%d, want 4", len(reps))
	}
	ghost := reps[3]
	if ghost.Name != "ghost" || ghost.OK || !strings.Contains(ghost.Error, "nothing stored") {
		t.Fatalf("unknown name: got=%+v, want a failure saying nothing is stored", ghost)
	}
	if _, err := Verify(context.Background(), s.st, VerifyOptions{Names: []string{"../x"}}); err == nil {
		t.Fatal("an invalid name: got=nil error, want one")
	}
}
