package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/walsync/walsync"
)

// The bucket index <name>/state.json is never the truth: List, Restore and
// Verify take every fact from the listing and the objects. Verify only
// reads the index to report how it compares with what the listing holds
// (IndexReport), as information: whatever it says, the verdicts and the
// exit status are the same.

// The states of an index, as Verify reports them.
const (
	// IndexMissing: no state.json for the name.
	IndexMissing = "missing"
	// IndexMatches: it names the listing's latest snapshot and segment.
	IndexMatches = "matches"
	// IndexStale: it names an older latest snapshot or segment than the
	// listing holds (written before the newest uploads).
	IndexStale = "stale"
	// IndexCorrupted: its bytes do not hash to the recorded sum, no sum
	// is recorded, or they are not a state.json of the name.
	IndexCorrupted = "corrupted"
	// IndexInconsistent: it names an object the listing does not hold
	// (newer than the listing's latest, or of another generation).
	IndexInconsistent = "inconsistent"
	// IndexUnreadable: it could not be read (the storage failed).
	IndexUnreadable = "unreadable"
)

// IndexReport says how a name's state.json compares with the listing. The
// JSON field names are those of `walsync verify --json` ("index").
type IndexReport struct {
	State string `json:"state"`
	// Detail says what was found, naming keys, in one line.
	Detail string `json:"detail"`
	// Updated is the index's own updated time, when it could be parsed.
	Updated *time.Time `json:"updated,omitempty"`
	// NotFollowed: the writer said it could not follow the database's
	// local file (replaced or removed) since then, and why: nothing new
	// reaches the bucket meanwhile.
	NotFollowed *walsync.IndexProblem `json:"not_followed,omitempty"`
}

// ReadIndex reads name's state.json and checks it: the stored bytes must
// hash to the recorded SHA-256 (ErrChecksum, ErrNoChecksum) and parse as
// a state.json of name (ErrFormat). A missing index wraps ErrNotExist.
// A mismatch is read a second time before it is reported: on the file
// backend, a reader racing a Replace can get the old bytes with the new
// sum.
func ReadIndex(ctx context.Context, st walsync.Storage, name string) (walsync.Index, error) {
	key := walsync.StateKey(name)
	var idx walsync.Index
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var b []byte
		b, err = readIndexBytes(ctx, st, key)
		if errors.Is(err, walsync.ErrChecksum) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return walsync.Index{}, err
		}
		idx, err = walsync.ParseIndex(b, name)
		if err != nil {
			return walsync.Index{}, fmt.Errorf("%s: %w", key, err)
		}
		return idx, nil
	}
	return walsync.Index{}, err
}

func readIndexBytes(ctx context.Context, st walsync.Storage, key string) ([]byte, error) {
	rc, info, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, walsync.MaxIndexSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if len(b) > walsync.MaxIndexSize {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", key, walsync.ErrFormat, walsync.MaxIndexSize)
	}
	if info.SHA256 == "" {
		return nil, fmt.Errorf("%s: %w", key, walsync.ErrNoChecksum)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != info.SHA256 {
		return nil, fmt.Errorf("%s: %w: its %d bytes hash to %s, recorded %s", key, walsync.ErrChecksum, len(b), got, info.SHA256)
	}
	return b, nil
}

// checkIndex reads name's state.json and compares it with the name's
// listed objects (verified: their headers are known when they could be
// read).
func checkIndex(ctx context.Context, st walsync.Storage, name string, objs []*verified) IndexReport {
	idx, err := ReadIndex(ctx, st, name)
	switch {
	case errors.Is(err, walsync.ErrNotExist):
		return IndexReport{State: IndexMissing, Detail: fmt.Sprintf("no %s", walsync.StateKey(name))}
	case errors.Is(err, walsync.ErrChecksum) || errors.Is(err, walsync.ErrNoChecksum) || errors.Is(err, walsync.ErrFormat):
		return IndexReport{State: IndexCorrupted, Detail: oneLineErr(err)}
	case err != nil:
		return IndexReport{State: IndexUnreadable, Detail: oneLineErr(err)}
	}
	rep := compareIndex(idx, objs)
	updated := idx.Updated
	rep.Updated = &updated
	rep.NotFollowed = idx.NotFollowed
	return rep
}

// compareIndex compares a parsed index with the listing: its latest
// snapshot (by key time) and its latest segment (by number).
func compareIndex(idx walsync.Index, objs []*verified) IndexReport {
	var snap, seg *verified
	byKey := map[string]*verified{}
	for _, v := range objs {
		byKey[v.key] = v
		switch v.kind {
		case walsync.KindSnapshot:
			if snap == nil || v.time.After(snap.time) {
				snap = v
			}
		case walsync.KindSegment:
			if seg == nil || v.seq > seg.seq || (v.seq == seg.seq && v.key > seg.key) {
				seg = v
			}
		}
	}
	var behind, ahead []string
	compare := func(what string, e *walsync.IndexEntry, latest *verified, older func(k walsync.Key) bool) {
		switch {
		case e == nil && latest == nil:
		case e == nil:
			behind = append(behind, fmt.Sprintf("it names no %s, the listing's latest is %s", what, latest.key))
		case latest == nil:
			ahead = append(ahead, fmt.Sprintf("it names %s %s, the listing has no %s", what, e.Key, what))
		default:
			k, _ := walsync.ParseKey(e.Key) // checked by ParseIndex
			listed := byKey[e.Key]
			switch {
			case listed != nil && e.Generation != "" && listed.hdr.Kind != 0 && listed.hdr.Generation.String() != e.Generation:
				ahead = append(ahead, fmt.Sprintf("it names %s %s of generation %s, the object is of generation %s", what, e.Key, e.Generation, listed.hdr.Generation))
			case e.Key == latest.key || (listed != nil && what == "segment" && listed.seq == latest.seq):
			case older(k):
				behind = append(behind, fmt.Sprintf("it names %s %s, the listing's latest is %s", what, e.Key, latest.key))
			default:
				ahead = append(ahead, fmt.Sprintf("it names %s %s, which the listing does not hold (latest: %s)", what, e.Key, latest.key))
			}
		}
	}
	compare("snapshot", idx.LatestSnapshot, snap, func(k walsync.Key) bool { return snap != nil && k.Time.Before(snap.time) })
	compare("segment", idx.LatestSegment, seg, func(k walsync.Key) bool { return seg != nil && k.Seq < seg.seq })
	switch {
	case len(ahead) > 0:
		return IndexReport{State: IndexInconsistent, Detail: strings.Join(append(ahead, behind...), "; ")}
	case len(behind) > 0:
		return IndexReport{State: IndexStale, Detail: strings.Join(behind, "; ")}
	}
	var names []string
	if snap != nil {
		names = append(names, "latest snapshot "+snap.key)
	}
	if seg != nil {
		names = append(names, "latest segment "+seg.key)
	}
	if len(names) == 0 {
		return IndexReport{State: IndexMatches, Detail: "names no object, and none is listed"}
	}
	return IndexReport{State: IndexMatches, Detail: strings.Join(names, ", ")}
}

func oneLineErr(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "walsync: ", "")), " ")
}
