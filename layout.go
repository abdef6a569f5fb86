package walsync

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The bucket layout (SPEC, "Bucket layout"), keys relative to the bucket
// URL's prefix:
//
//	<name>/snapshots/<YYYYMMDDHHMMSS>.db.zst
//	<name>/wal/<NNNNNNNN>-<YYYYMMDDHHMMSSmmm>.wal.zst
//	<name>/state.json
//	<name>/lock.json   the claim of the one watcher replicating the name
//
// Times are UTC. A key is parsed from the right: the last element is the
// file, the one before it the kind, everything before that the name, so a
// name may itself contain '/' (romneys/app) or be called "wal".
const (
	SnapshotDir    = "snapshots"
	SegmentDir     = "wal"
	StateFile      = "state.json"
	LockFile       = "lock.json" // the claim of the watcher replicating the name
	SnapshotSuffix = ".db.zst"
	SegmentSuffix  = ".wal.zst"

	snapshotTimeLayout = "20060102150405"
	segmentTimeLayout  = "20060102150405.000"
)

// ErrInvalidName is wrapped by every name validation failure.
var ErrInvalidName = errors.New("walsync: invalid database name")

// ValidateName checks that name can be used as a key prefix without leaving
// the bucket prefix or an output directory: non-empty '/'-separated
// elements, none of them "." or "..", no leading or trailing '/', no
// backslash and no control characters. And no name's objects can be
// another name's: every key of a name N is N/<word> or N/<word>/<file>,
// with <word> one of walsync's own (snapshots, wal, state.json,
// lock.json), so a name M with such a word after its first element (M =
// N/wal/x, N/state.json) could share keys, or key prefixes, with N's; it
// is refused. docs/FORMAT.md, "Names".
func ValidateName(name string) error {
	if err := validateName(name); err != nil {
		return err
	}
	elems := strings.Split(name, "/")
	for i, elem := range elems[1:] {
		if reservedElem(elem) {
			owner := strings.Join(elems[:i+1], "/")
			return fmt.Errorf("%w %q: %q after %q is one of walsync's own key names (%s, %s, %s, %s): "+
				"its objects would share keys with those of the name %q; choose another name (--name)",
				ErrInvalidName, name, elem, owner, SnapshotDir, SegmentDir, StateFile, LockFile, owner)
		}
	}
	return nil
}

// reservedElem says whether a name element is a word of the layout.
func reservedElem(e string) bool {
	return e == SnapshotDir || e == SegmentDir || e == StateFile || e == LockFile
}

// validateName is ValidateName without the reserved words.
func validateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("%w %q: must not start with '/'", ErrInvalidName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w %q: contains a control character", ErrInvalidName, name)
		}
		if r == '\\' {
			return fmt.Errorf("%w %q: contains a backslash", ErrInvalidName, name)
		}
	}
	for _, elem := range strings.Split(name, "/") {
		switch elem {
		case "":
			return fmt.Errorf("%w %q: empty path element", ErrInvalidName, name)
		case ".", "..":
			return fmt.Errorf("%w %q: contains %q", ErrInvalidName, name, elem)
		}
	}
	return nil
}

// NameFromPath is the default name of a database: its file name without
// extension (/data/app.db is "app").
func NameFromPath(dbPath string) string {
	base := filepath.Base(dbPath)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return base
}

// UniqueNames gives each database path its name: the file name without
// extension, or, when several paths would share it, the shortest trailing
// path (without extension) that tells them apart (/x/romneys/app.db and
// /x/smiths/app.db are romneys/app and smiths/app). Paths should be
// absolute and clean. Two paths that cannot be told apart are an error.
func UniqueNames(paths []string) (map[string]string, error) {
	type entry struct {
		path  string
		elems []string // reversed path elements, extension stripped from the first
		depth int
	}
	entries := make([]*entry, len(paths))
	for i, p := range paths {
		clean := filepath.ToSlash(filepath.Clean(p))
		parts := strings.Split(strings.Trim(clean, "/"), "/")
		rev := make([]string, 0, len(parts))
		for j := len(parts) - 1; j >= 0; j-- {
			rev = append(rev, parts[j])
		}
		rev[0] = NameFromPath(rev[0])
		entries[i] = &entry{path: p, elems: rev, depth: 1}
	}
	nameOf := func(e *entry) string {
		d := min(e.depth, len(e.elems))
		parts := make([]string, d)
		for j := 0; j < d; j++ {
			parts[d-1-j] = e.elems[j]
		}
		return strings.Join(parts, "/")
	}
	for {
		groups := map[string][]*entry{}
		for _, e := range entries {
			n := nameOf(e)
			groups[n] = append(groups[n], e)
		}
		grew := false
		for n, g := range groups {
			if len(g) < 2 {
				continue
			}
			for _, e := range g {
				if e.depth < len(e.elems) {
					e.depth++
					grew = true
				}
			}
			if !grew {
				others := make([]string, len(g))
				for i, e := range g {
					others[i] = e.path
				}
				sort.Strings(others)
				return nil, fmt.Errorf("databases %s would share the name %q: give one of them --name", strings.Join(others, ", "), n)
			}
		}
		if !grew {
			break
		}
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		out[e.path] = nameOf(e)
	}
	return out, nil
}

// SnapshotKey is the key of name's snapshot taken at t.
func SnapshotKey(name string, t time.Time) string {
	return path.Join(name, SnapshotDir, t.UTC().Format(snapshotTimeLayout)+SnapshotSuffix)
}

// SegmentKey is the key of name's WAL segment number seq, written at t.
func SegmentKey(name string, seq uint64, t time.Time) string {
	ts := strings.Replace(t.UTC().Format(segmentTimeLayout), ".", "", 1)
	return path.Join(name, SegmentDir, fmt.Sprintf("%08d-%s%s", seq, ts, SegmentSuffix))
}

// StateKey is the key of name's state.json index.
func StateKey(name string) string { return path.Join(name, StateFile) }

// KeyKind tells what a parsed key holds.
type KeyKind int

// The kinds of keys in the layout.
const (
	KindUnknown KeyKind = iota
	KindSnapshot
	KindSegment
	KindState
)

// Key is a parsed bucket key.
type Key struct {
	Name string
	Kind KeyKind
	Time time.Time // snapshot or segment time, UTC
	Seq  uint64    // segment sequence number
}

// ParseKey parses a key of the layout. Keys that are not part of it (and
// temporary or foreign objects) give ok=false.
func ParseKey(key string) (k Key, ok bool) {
	if key == "" || strings.HasPrefix(key, "/") {
		return Key{}, false
	}
	i := strings.LastIndexByte(key, '/')
	if i <= 0 {
		return Key{}, false
	}
	file, rest := key[i+1:], key[:i]
	if file == StateFile {
		if ValidateName(rest) != nil {
			return Key{}, false
		}
		return Key{Name: rest, Kind: KindState}, true
	}
	j := strings.LastIndexByte(rest, '/')
	if j <= 0 {
		return Key{}, false
	}
	dir, name := rest[j+1:], rest[:j]
	if ValidateName(name) != nil {
		return Key{}, false
	}
	switch dir {
	case SnapshotDir:
		stem, found := strings.CutSuffix(file, SnapshotSuffix)
		if !found || len(stem) != len(snapshotTimeLayout) {
			return Key{}, false
		}
		t, err := time.Parse(snapshotTimeLayout, stem)
		if err != nil {
			return Key{}, false
		}
		return Key{Name: name, Kind: KindSnapshot, Time: t}, true
	case SegmentDir:
		stem, found := strings.CutSuffix(file, SegmentSuffix)
		if !found {
			return Key{}, false
		}
		seqStr, ts, found := strings.Cut(stem, "-")
		if !found || len(seqStr) < 8 || len(ts) != 17 {
			return Key{}, false
		}
		seq, err := strconv.ParseUint(seqStr, 10, 64)
		if err != nil {
			return Key{}, false
		}
		t, err := time.Parse(segmentTimeLayout, ts[:14]+"."+ts[14:])
		if err != nil {
			return Key{}, false
		}
		return Key{Name: name, Kind: KindSegment, Time: t, Seq: seq}, true
	}
	return Key{}, false
}
