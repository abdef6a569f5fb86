package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync"
)

// restoreAt restores s.name as of t into a fresh directory.
func (s *source) restoreAt(t time.Time) (string, *Result, error) {
	s.t.Helper()
	out := filepath.Join(s.t.TempDir(), "out.db")
	r := &Restorer{Storage: s.st}
	res, err := r.Restore(context.Background(), s.name, out, Options{PointInTime: t})
	return out, res, err
}

// point is a restore point of a test history: the state captured at a time.
type point struct {
	at   time.Time
	want []byte
	what string
}

// step writes a transaction and ships it as one segment captured gap
// after the previous object; it returns the restore point.
func (s *source) step(gap time.Duration, what string) point {
	s.t.Helper()
	s.insert(5, 700)
	s.clock = s.clock.Add(gap - time.Millisecond) // segment() adds 1 ms
	key := s.segment()
	return point{at: s.clock, want: s.expected(), what: what + " " + key}
}

// manualSnapshot stores what `walsync snapshot` stores: a snapshot of a
// generation of its own, continued by nothing (first segment number 0).
func (s *source) manualSnapshot(at time.Time) point {
	s.t.Helper()
	content := s.expected()
	key := walsync.SnapshotKey(s.name, at)
	putObject(s.t, s.st, key, walsync.ObjectHeader{
		Kind: walsync.KindByteSnapshot, Generation: walsync.Generation{0x77, byte(at.Second())}, PageSize: s.pageSize,
		PageCount: uint32(len(content) / int(s.pageSize)), Seq: 0, Created: at,
	}, content)
	return point{at: at, want: content, what: "manual snapshot " + key}
}

// checkPoints restores every point: at its capture time, and just before
// the next one (for the last point, after later), the state must be the
// point's.
func checkPoints(t *testing.T, s *source, points []point, later time.Duration) {
	t.Helper()
	for i, p := range points {
		times := []time.Time{p.at}
		if i+1 < len(points) {
			times = append(times, points[i+1].at.Add(-time.Millisecond))
		} else {
			times = append(times, p.at.Add(later))
		}
		for _, at := range times {
			out, res, err := s.restoreAt(at)
			if err != nil {
				t.Fatalf("restore at %s (%s): %v", fmtTime(at), p.what, err)
			}
			sameBytes(t, readAll(t, out), p.want, s.pageSize)
			integrityOK(t, out)
			if !res.StateTime.Equal(p.at) {
				t.Errorf("restore at %s: StateTime got=%s, want %s (%s)", fmtTime(at), fmtTime(res.StateTime), fmtTime(p.at), p.what)
			}
		}
	}
}

func TestPointInTime(t *testing.T) {
	t.Run("segments of one generation", func(t *testing.T) {
		s := newSource(t, 4096)
		s.insert(50, 500)
		s.snapshot()
		points := []point{{at: s.clock, want: s.expected(), what: "snapshot"}}
		for i := 0; i < 5; i++ {
			points = append(points, s.step(time.Duration(100+i*300)*time.Millisecond, "segment"))
		}
		checkPoints(t, s, points, time.Hour)
	})

	t.Run("across a snapshot of the same generation", func(t *testing.T) {
		s := newSource(t, 4096)
		s.insert(50, 500)
		s.snapshot()
		points := []point{{at: s.clock, want: s.expected(), what: "snapshot"}}
		points = append(points, s.step(time.Second, "segment"), s.step(time.Second, "segment"))
		s.insert(3, 100)
		key, content := s.snapshot() // uncaptured commits go into the snapshot
		points = append(points, point{at: s.clock, want: content, what: "snapshot " + key})
		points = append(points, s.step(time.Second, "segment"), s.step(time.Second, "segment"))
		checkPoints(t, s, points, time.Hour)
	})

	t.Run("generations: points inside each, a gap between", func(t *testing.T) {
		s := newSource(t, 4096)
		s.insert(50, 500)
		s.snapshot()
		a := []point{{at: s.clock, want: s.expected(), what: "snapshot A"}}
		a = append(a, s.step(time.Second, "A"), s.step(time.Second, "A"))
		s.insert(20, 300) // committed while nobody watched: never captured
		s.clock = s.clock.Add(time.Minute)
		s.gen = otherGen
		key, content := s.snapshot()
		b := []point{{at: s.clock, want: content, what: "snapshot B " + key}}
		b = append(b, s.step(time.Second, "B"))
		checkPoints(t, s, a, 0) // A's last state, at its capture time: still A
		checkPoints(t, s, b, time.Hour)
		// After it and before B: the gap.
		for _, at := range []time.Time{a[len(a)-1].at.Add(time.Millisecond), b[0].at.Add(-time.Millisecond)} {
			out, _, err := s.restoreAt(at)
			if !errors.Is(err, ErrTimeGap) {
				t.Fatalf("restore at %s: got=%v, want %v", fmtTime(at), err, ErrTimeGap)
			}
			for _, want := range []string{fmtTime(a[len(a)-1].at), fmtTime(b[0].at), key, s.gen.String()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("gap error %q does not name %q", err, want)
				}
			}
			assertNothingAt(t, out)
		}
	})

	t.Run("a generation that captured after T is not a gap", func(t *testing.T) {
		s := newSource(t, 4096)
		s.insert(50, 500)
		s.snapshot()
		first := s.step(time.Second, "A")
		last := s.step(10*time.Second, "A")
		s.gen = otherGen
		s.clock = s.clock.Add(time.Second)
		s.snapshot()
		out, _, err := s.restoreAt(last.at.Add(-time.Second)) // A was still capturing
		if err != nil {
			t.Fatal(err)
		}
		sameBytes(t, readAll(t, out), first.want, s.pageSize)
	})

	t.Run("before the first snapshot", func(t *testing.T) {
		s := newSource(t, 4096)
		s.insert(50, 500)
		key, _ := s.snapshot()
		first := s.clock
		s.step(time.Second, "segment")
		out, _, err := s.restoreAt(first.Add(-time.Millisecond))
		if !errors.Is(err, ErrBeforeFirst) {
			t.Fatalf("restore before the first snapshot: got=%v, want %v", err, ErrBeforeFirst)
		}
		for _, want := range []string{fmtTime(first), key, "earliest"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		assertNothingAt(t, out)
	})

	t.Run("a manual snapshot inside a watched generation", func(t *testing.T) {
		s := newSource(t, 4096)
		s.insert(50, 500)
		s.snapshot()
		points := []point{{at: s.clock, want: s.expected(), what: "snapshot"}}
		points = append(points, s.step(time.Second, "segment"))
		s.insert(2, 100) // not shipped yet: only the manual snapshot has it
		points = append(points, s.manualSnapshot(s.clock.Add(500*time.Millisecond)))
		points = append(points, s.step(time.Second, "segment"), s.step(time.Second, "segment"))
		checkPoints(t, s, points, time.Hour)
		// The newest state, without a point in time, is the watched chain's.
		out, res, err := s.restoreTo()
		if err != nil {
			t.Fatal(err)
		}
		sameBytes(t, readAll(t, out), points[len(points)-1].want, s.pageSize)
		if res.Segments != 3 {
			t.Errorf("segments applied: got=%d, want 3", res.Segments)
		}
	})

	t.Run("manual snapshots only", func(t *testing.T) {
		s := newSource(t, 4096)
		s.insert(50, 500)
		p1 := s.manualSnapshot(s.clock)
		s.insert(50, 500)
		p2 := s.manualSnapshot(s.clock.Add(time.Hour))
		checkPoints(t, s, []point{p1, p2}, time.Hour)
	})

	t.Run("a snapshot taken before the segment it follows was stamped", func(t *testing.T) {
		// A snapshot of a running generation captures what was committed
		// first (segment k) and then pins; its own time may be older than
		// segment k's. Between the two, its state is after T.
		s := newSource(t, 4096)
		s.insert(50, 500)
		s.snapshot()
		p1 := s.step(time.Second, "segment")
		s.insert(5, 700)
		s.clock = s.clock.Add(time.Second)
		k := s.segment()
		kTime := s.clock
		want := s.expected()
		s.clock = kTime.Add(-300*time.Millisecond - time.Second) // snapshot() adds 1 s
		s.snapshot()
		out, _, err := s.restoreAt(kTime.Add(-100 * time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		sameBytes(t, readAll(t, out), p1.want, s.pageSize)
		out, _, err = s.restoreAt(kTime)
		if err != nil {
			t.Fatal(err)
		}
		sameBytes(t, readAll(t, out), want, s.pageSize)
		_ = k
	})

	t.Run("segments after T are not read", func(t *testing.T) {
		s := newSource(t, 4096)
		s.insert(50, 500)
		s.snapshot()
		p := s.step(time.Second, "segment")
		p2 := s.step(time.Second, "segment")
		s.step(time.Second, "segment")
		s.step(time.Second, "segment")
		damaged := s.storedPath(s.keys[3])
		good := readAll(t, damaged)
		if err := os.WriteFile(damaged, []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.st.Delete(context.Background(), s.keys[2]); err != nil {
			t.Fatal(err)
		}
		// The chain stops at segment 2, captured after T: neither the
		// missing segment 3 nor the damaged 4 matter.
		out, _, err := s.restoreAt(p.at.Add(500 * time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		sameBytes(t, readAll(t, out), p.want, s.pageSize)
		if err := os.WriteFile(damaged, good, 0o644); err != nil {
			t.Fatal(err)
		}
		// A missing segment before the stop point is a gap, whatever its
		// time was.
		out, _, err = s.restoreAt(p2.at.Add(time.Millisecond))
		if !errors.Is(err, ErrGap) || !strings.Contains(err.Error(), "00000003") {
			t.Fatalf("restore over a missing segment: got=%v, want %v naming 00000003", err, ErrGap)
		}
		assertNothingAt(t, out)
	})
}
