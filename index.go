package walsync

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// The bucket index <name>/state.json (docs/FORMAT.md, "state.json"): what
// the watcher replicating a name last uploaded, rewritten in place with
// Storage.Replace. It is an index, not the truth (SPEC, integrity rule 6):
// list, restore and verify take every fact from the listing and the
// objects, and work the same when it is missing, stale or corrupted;
// verify only reports how it compares.

// IndexVersion is the version of state.json this walsync writes and reads.
const IndexVersion = 1

// MaxIndexSize bounds what a reader accepts as state.json.
const MaxIndexSize = 64 << 10

// Index is the content of <name>/state.json.
type Index struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Generation is the generation the writer replicates: that of its
	// latest snapshot (hex, 32 digits).
	Generation     string      `json:"generation"`
	LatestSnapshot *IndexEntry `json:"latest_snapshot"`
	LatestSegment  *IndexEntry `json:"latest_segment"`
	// Uploaded counts what the writing watcher uploaded since it started.
	Uploaded IndexCounts `json:"uploaded"`
	// Updated is when the writer wrote this content.
	Updated time.Time `json:"updated"`
	// NotFollowed, when set, says that the writer could not follow the
	// database's local file (replaced by something that is not a SQLite
	// database in WAL mode yet, or removed) since Since: nothing new
	// reaches the bucket until it can. verify reports it.
	NotFollowed *IndexProblem `json:"not_followed,omitempty"`
}

// IndexProblem is why, and since when, a writer cannot do its work.
type IndexProblem struct {
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// IndexEntry names one object of the layout.
type IndexEntry struct {
	Key string `json:"key"`
	// Seq is a segment's number; for a snapshot, the number of the first
	// segment continuing it (0 for a manual snapshot).
	Seq uint64 `json:"seq"`
	// Time is the capture time in the object's header (created), UTC.
	Time time.Time `json:"time"`
	// Generation is the object's generation, or "" when the writer knows
	// the object only from a listing.
	Generation string `json:"generation"`
}

// IndexCounts are the objects and stored bytes one watcher uploaded.
type IndexCounts struct {
	Since     time.Time `json:"since"`
	Snapshots int64     `json:"snapshots"`
	Segments  int64     `json:"segments"`
	Bytes     int64     `json:"bytes"`
}

// MarshalIndex returns the bytes of state.json for idx: indented JSON and
// a newline.
func MarshalIndex(idx Index) ([]byte, error) {
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseIndex parses the bytes of name's state.json and checks that they
// describe name: the version, the name, generations in hex, and keys of
// the layout that belong to name with the kind and number they claim. Any
// failure wraps ErrFormat.
func ParseIndex(b []byte, name string) (Index, error) {
	var idx Index
	if len(b) > MaxIndexSize {
		return idx, fmt.Errorf("%w: %d bytes, more than %d", ErrFormat, len(b), MaxIndexSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&idx); err != nil {
		return Index{}, fmt.Errorf("%w: not JSON (%v)", ErrFormat, err)
	}
	if dec.More() {
		return Index{}, fmt.Errorf("%w: more than one JSON value", ErrFormat)
	}
	if idx.Version != IndexVersion {
		return Index{}, fmt.Errorf("%w: version %d, want %d", ErrFormat, idx.Version, IndexVersion)
	}
	if idx.Name != name {
		return Index{}, fmt.Errorf("%w: describes %q, not %q", ErrFormat, idx.Name, name)
	}
	if err := checkGeneration(idx.Generation, false); err != nil {
		return Index{}, err
	}
	if idx.Updated.IsZero() {
		return Index{}, fmt.Errorf("%w: no updated time", ErrFormat)
	}
	for _, e := range []struct {
		entry *IndexEntry
		kind  KeyKind
		what  string
	}{{idx.LatestSnapshot, KindSnapshot, "latest_snapshot"}, {idx.LatestSegment, KindSegment, "latest_segment"}} {
		if e.entry == nil {
			continue
		}
		k, ok := ParseKey(e.entry.Key)
		if !ok || k.Kind != e.kind || k.Name != name {
			return Index{}, fmt.Errorf("%w: %s key %q is not a %s key of %q", ErrFormat, e.what, e.entry.Key, kindName(e.kind), name)
		}
		if e.kind == KindSegment && k.Seq != e.entry.Seq {
			return Index{}, fmt.Errorf("%w: %s key %q has number %d, the entry says %d", ErrFormat, e.what, e.entry.Key, k.Seq, e.entry.Seq)
		}
		if err := checkGeneration(e.entry.Generation, true); err != nil {
			return Index{}, fmt.Errorf("%s: %w", e.what, err)
		}
	}
	return idx, nil
}

func checkGeneration(g string, mayBeEmpty bool) error {
	if g == "" && mayBeEmpty {
		return nil
	}
	if b, err := hex.DecodeString(g); err != nil || len(b) != len(Generation{}) {
		return fmt.Errorf("%w: generation %q is not %d hex digits", ErrFormat, g, 2*len(Generation{}))
	}
	return nil
}

func kindName(k KeyKind) string {
	switch k {
	case KindSnapshot:
		return "snapshot"
	case KindSegment:
		return "segment"
	case KindState:
		return "state"
	}
	return "unknown"
}
