package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync"
)

// writeIndexBytes replaces s's state.json with b, its sum recorded.
func writeIndexBytes(t *testing.T, s *source, b []byte) {
	t.Helper()
	sum := sha256.Sum256(b)
	if err := s.st.Replace(context.Background(), walsync.StateKey(s.name), bytes.NewReader(b), int64(len(b)), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
}

func writeIndex(t *testing.T, s *source, idx walsync.Index) {
	t.Helper()
	b, err := walsync.MarshalIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	writeIndexBytes(t, s, b)
}

// Verify compares state.json with the listing and reports it in every
// report of the name, without changing anything else it says; List and
// Restore never read it.
func TestVerifyReportsIndex(t *testing.T) {
	s := newSource(t, 4096)
	s.insert(50, 500)
	snapKey, _ := s.snapshot()
	var segs []string
	for i := 0; i < 3; i++ {
		s.insert(10, 1000)
		segs = append(segs, s.segment())
	}
	ctx := context.Background()
	gen := s.gen.String()
	entry := func(key string, g string) *walsync.IndexEntry {
		k, ok := walsync.ParseKey(key)
		if !ok {
			t.Fatalf("bad key %s", key)
		}
		return &walsync.IndexEntry{Key: key, Seq: k.Seq, Time: k.Time, Generation: g}
	}
	index := func(snap, seg *walsync.IndexEntry) walsync.Index {
		return walsync.Index{Version: walsync.IndexVersion, Name: s.name, Generation: gen, LatestSnapshot: snap, LatestSegment: seg,
			Updated: time.Date(2025, 3, 1, 13, 0, 0, 0, time.UTC)}
	}
	baseList, err := List(ctx, s.st)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := s.restoreTo()
	if err != nil {
		t.Fatal(err)
	}
	baseDB := readAll(t, out)
	base := verifyAll(t, s)
	if len(base) != 1 || base[0].Index == nil || base[0].Index.State != IndexMissing {
		t.Fatalf("verify without state.json: got=%+v, want one report, index %s", base, IndexMissing)
	}

	other := walsync.SegmentKey(s.name, 99, s.clock)
	for _, tc := range []struct {
		name  string
		set   func()
		state string
		words []string // in the detail
	}{
		{"matches", func() { writeIndex(t, s, index(entry(snapKey, gen), entry(segs[2], gen))) }, IndexMatches, []string{snapKey, segs[2]}},
		{"matches, a segment known from a listing only", func() { writeIndex(t, s, index(entry(snapKey, gen), entry(segs[2], ""))) }, IndexMatches, nil},
		{"stale segment", func() { writeIndex(t, s, index(entry(snapKey, gen), entry(segs[0], gen))) }, IndexStale, []string{segs[0], segs[2]}},
		{"stale: no segment", func() { writeIndex(t, s, index(entry(snapKey, gen), nil)) }, IndexStale, []string{"no segment", segs[2]}},
		{"stale: nothing", func() { writeIndex(t, s, index(nil, nil)) }, IndexStale, []string{"no snapshot", snapKey}},
		{"a segment the listing lacks", func() { writeIndex(t, s, index(entry(snapKey, gen), entry(other, gen))) }, IndexInconsistent, []string{other}},
		{"another generation", func() { writeIndex(t, s, index(entry(snapKey, gen), entry(segs[2], otherGen.String()))) }, IndexInconsistent, []string{otherGen.String()}},
		{"another name", func() {
			idx := index(nil, nil)
			idx.Name = "other"
			writeIndex(t, s, idx)
		}, IndexCorrupted, []string{"other"}},
		{"another version", func() {
			idx := index(entry(snapKey, gen), entry(segs[2], gen))
			idx.Version = 2
			writeIndex(t, s, idx)
		}, IndexCorrupted, []string{"version 2"}},
		{"a snapshot key as the segment", func() { writeIndex(t, s, index(entry(snapKey, gen), entry(snapKey, gen))) }, IndexCorrupted, []string{snapKey}},
		{"not JSON", func() { writeIndexBytes(t, s, []byte("garbage")) }, IndexCorrupted, []string{"not JSON"}},
		{"too large", func() { writeIndexBytes(t, s, bytes.Repeat([]byte(" "), walsync.MaxIndexSize+1)) }, IndexCorrupted, nil},
		{"no recorded sha256", func() {
			writeIndex(t, s, index(entry(snapKey, gen), entry(segs[2], gen)))
			if err := os.Remove(s.storedPath(walsync.StateKey(s.name)) + ".sha256"); err != nil {
				t.Fatal(err)
			}
		}, IndexCorrupted, []string{"sha256"}},
		{"missing", func() {
			if err := s.st.Delete(ctx, walsync.StateKey(s.name)); err != nil {
				t.Fatal(err)
			}
		}, IndexMissing, []string{walsync.StateKey(s.name)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set()
			reps := verifyAll(t, s)
			if len(reps) != 1 || reps[0].Index == nil {
				t.Fatalf("reports: got=%+v, want one with an index report", reps)
			}
			ir := *reps[0].Index
			t.Logf("index %s: %s", ir.State, ir.Detail)
			if ir.State != tc.state {
				t.Errorf("index state: got=%s (%s), want %s", ir.State, ir.Detail, tc.state)
			}
			for _, w := range tc.words {
				if !strings.Contains(ir.Detail, w) {
					t.Errorf("index detail %q: want it to mention %q", ir.Detail, w)
				}
			}
			if strings.Contains(ir.Detail, "\n") {
				t.Errorf("index detail spans lines: %q", ir.Detail)
			}
			reps[0].Index = base[0].Index
			if !reflect.DeepEqual(reps, base) {
				t.Errorf("verify: got=%+v, want %+v (as without state.json)", reps, base)
			}
			if got, err := List(ctx, s.st); err != nil || !reflect.DeepEqual(got, baseList) {
				t.Errorf("list: got=%+v %v, want %+v", got, err, baseList)
			}
			out, _, err := s.restoreTo()
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if !bytes.Equal(readAll(t, out), baseDB) {
				t.Errorf("restore: not the bytes restored without state.json")
			}
		})
	}
}

// A name with only a state.json (its objects deleted) is not a database
// for list, and verify finds nothing of it to verify.
func TestListIgnoresIndex(t *testing.T) {
	s := newSource(t, 4096)
	writeIndex(t, s, walsync.Index{Version: walsync.IndexVersion, Name: s.name, Generation: s.gen.String(), Updated: time.Now()})
	dbs, err := List(context.Background(), s.st)
	if err != nil || len(dbs) != 0 {
		t.Fatalf("list of a bucket with only a state.json: got=%+v %v, want nothing", dbs, err)
	}
	reps, err := Verify(context.Background(), s.st, VerifyOptions{})
	if err != nil || len(reps) != 0 {
		t.Fatalf("verify of a bucket with only a state.json: got=%+v %v, want nothing", reps, err)
	}
}
