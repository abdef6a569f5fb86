package walsync

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIndexRoundTrip(t *testing.T) {
	gen := Generation{1, 2, 3}.String()
	at := time.Date(2026, 1, 10, 12, 0, 0, 123e6, time.UTC)
	idx := Index{
		Version: IndexVersion, Name: "romneys/app", Generation: gen,
		LatestSnapshot: &IndexEntry{Key: SnapshotKey("romneys/app", at), Seq: 1, Time: at, Generation: gen},
		LatestSegment:  &IndexEntry{Key: SegmentKey("romneys/app", 42, at), Seq: 42, Time: at, Generation: gen},
		Uploaded:       IndexCounts{Since: at, Snapshots: 1, Segments: 42, Bytes: 4096},
		Updated:        at,
	}
	b, err := MarshalIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "}\n") {
		t.Errorf("MarshalIndex: want JSON and a newline, got %q", b)
	}
	got, err := ParseIndex(b, "romneys/app")
	if err != nil {
		t.Fatal(err)
	}
	if *got.LatestSnapshot != *idx.LatestSnapshot || *got.LatestSegment != *idx.LatestSegment || got.Uploaded != idx.Uploaded || !got.Updated.Equal(at) {
		t.Fatalf("round trip: got=%+v, want %+v", got, idx)
	}
	// Unknown fields are ignored (later additions keep version 1).
	if _, err := ParseIndex([]byte(strings.Replace(string(b), `"version": 1,`, `"version": 1, "future": [1, 2],`, 1)), "romneys/app"); err != nil {
		t.Errorf("unknown field: got=%v, want nil", err)
	}
	edit := func(f func(x *Index)) string {
		x := idx
		s, g := *idx.LatestSnapshot, *idx.LatestSegment
		x.LatestSnapshot, x.LatestSegment = &s, &g
		f(&x)
		out, err := MarshalIndex(x)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	for name, bad := range map[string]string{
		"other name":           edit(func(x *Index) { x.Name = "app" }),
		"version 2":            edit(func(x *Index) { x.Version = 2 }),
		"bad generation":       edit(func(x *Index) { x.Generation = "xyz" }),
		"bad entry generation": edit(func(x *Index) { x.LatestSegment.Generation = "00" }),
		"seq not the key's":    edit(func(x *Index) { x.LatestSegment.Seq = 41 }),
		"segment as snapshot":  edit(func(x *Index) { x.LatestSnapshot = x.LatestSegment }),
		"another name's key":   edit(func(x *Index) { x.LatestSnapshot.Key = SnapshotKey("smiths/app", at) }),
		"no updated":           edit(func(x *Index) { x.Updated = time.Time{} }),
		"two values":           string(b) + "{}",
		"not json":             "state",
	} {
		if bad == string(b) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if _, err := ParseIndex([]byte(bad), "romneys/app"); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got=%v, want %v", name, err, ErrFormat)
		}
	}
}

// FuzzParseIndex: state.json comes from the bucket; whatever its bytes,
// ParseIndex returns an index or an error wrapping ErrFormat, never
// panics, and what it accepts survives a round trip.
func FuzzParseIndex(f *testing.F) {
	gen := Generation{9}.String()
	at := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	good, _ := MarshalIndex(Index{Version: IndexVersion, Name: "app", Generation: gen, Updated: at,
		LatestSegment: &IndexEntry{Key: SegmentKey("app", 7, at), Seq: 7, Time: at, Generation: gen}})
	f.Add(good)
	f.Add([]byte("{}"))
	f.Add([]byte(`{"version":1,"name":"app"}`))
	f.Add([]byte("\x00garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := ParseIndex(b, "app")
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		again, err := MarshalIndex(idx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseIndex(again, "app"); err != nil {
			t.Fatalf("accepted index does not survive a round trip: %v", err)
		}
	})
}
