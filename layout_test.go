package walsync

import (
	"errors"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"app", true},
		{"romneys/app", true},
		{"a.b-c_d", true},
		{"wal", true},
		{"wal/app", true},
		{"state.json", true},
		{"app/wal.db", true},
		{"app/state.json", false},
		{"c/app/state.json", false},
		{"c/app/lock.json", false},
		{"app/wal", false},
		{"app/wal/x", false},
		{"app/snapshots/y", false},
		{"", false},
		{"../x", false},
		{"x/../y", false},
		{"x/..", false},
		{"./x", false},
		{"/abs", false},
		{"x//y", false},
		{"x/", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\\b", false},
	} {
		err := ValidateName(tc.name)
		if got := err == nil; got != tc.ok {
			t.Errorf("ValidateName(%q): got ok=%v (err %v), want %v", tc.name, got, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q): got=%v, want it to wrap ErrInvalidName", tc.name, err)
		}
	}
}

func TestUniqueNames(t *testing.T) {
	for _, tc := range []struct {
		paths []string
		want  map[string]string
		err   bool
	}{
		{[]string{"/data/app.db"}, map[string]string{"/data/app.db": "app"}, false},
		{[]string{"/x/romneys/app.db", "/x/smiths/app.db", "/x/jones/other.db"},
			map[string]string{"/x/romneys/app.db": "romneys/app", "/x/smiths/app.db": "smiths/app", "/x/jones/other.db": "other"}, false},
		{[]string{"/a/x/t/app.db", "/b/x/t/app.db"},
			map[string]string{"/a/x/t/app.db": "a/x/t/app", "/b/x/t/app.db": "b/x/t/app"}, false},
		{[]string{"/d/app.db", "/d/app.sqlite"}, nil, true},
		{[]string{"/d/noext"}, map[string]string{"/d/noext": "noext"}, false},
	} {
		got, err := UniqueNames(tc.paths)
		if tc.err {
			if err == nil {
				t.Errorf("UniqueNames(%v): got=%v, want an error", tc.paths, got)
			}
			continue
		}
		if err != nil {
			t.Fatalf("UniqueNames(%v): %v", tc.paths, err)
		}
		for p, w := range tc.want {
			if got[p] != w {
				t.Errorf("UniqueNames(%v)[%s]: got=%q, want %q", tc.paths, p, got[p], w)
			}
		}
	}
}

func TestKeysRoundTrip(t *testing.T) {
	ts := time.Date(2024, 1, 10, 12, 0, 1, 234e6, time.UTC)
	for _, name := range []string{"app", "romneys/app", "wal", "snapshots/x"} {
		sk := SnapshotKey(name, ts)
		k, ok := ParseKey(sk)
		if !ok || k.Kind != KindSnapshot || k.Name != name || !k.Time.Equal(ts.Truncate(time.Second)) {
			t.Errorf("ParseKey(%q): got=%+v ok=%v, want snapshot of %q at %v", sk, k, ok, name, ts.Truncate(time.Second))
		}
		wk := SegmentKey(name, 42, ts)
		k, ok = ParseKey(wk)
		if !ok || k.Kind != KindSegment || k.Name != name || k.Seq != 42 || !k.Time.Equal(ts) {
			t.Errorf("ParseKey(%q): got=%+v ok=%v, want segment 42 of %q at %v", wk, k, ok, name, ts)
		}
		k, ok = ParseKey(StateKey(name))
		if !ok || k.Kind != KindState || k.Name != name {
			t.Errorf("ParseKey(%q): got=%+v ok=%v, want state of %q", StateKey(name), k, ok, name)
		}
	}
	if got, want := SnapshotKey("app", ts), "app/snapshots/20240110120001.db.zst"; got != want {
		t.Errorf("SnapshotKey: got=%q, want %q", got, want)
	}
	if got, want := SegmentKey("app", 1, ts), "app/wal/00000001-20240110120001234.wal.zst"; got != want {
		t.Errorf("SegmentKey: got=%q, want %q", got, want)
	}
	for _, bad := range []string{"", "app", "app/snapshots/x.db.zst", "../x/snapshots/20240110120001.db.zst",
		"app/wal/1-20240110120001234.wal.zst", "app/other/20240110120001.db.zst", "/app/state.json"} {
		if k, ok := ParseKey(bad); ok {
			t.Errorf("ParseKey(%q): got=%+v, want not ok", bad, k)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("app/snapshots/20240110120001.db.zst")
	f.Add("a/b/wal/00000001-20240110120001234.wal.zst")
	f.Add("x/state.json")
	f.Fuzz(func(t *testing.T, key string) {
		k, ok := ParseKey(key)
		if !ok {
			return
		}
		if err := ValidateName(k.Name); err != nil {
			t.Fatalf("ParseKey(%q) accepted invalid name %q: %v", key, k.Name, err)
		}
	})
}
