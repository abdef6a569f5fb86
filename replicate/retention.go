package replicate

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/walsync/walsync"
)

// Retention: keep every restore point of the last Window, and the newest
// state, and nothing else.
//
// A restore point at time T needs the newest snapshot at or before T and
// the segments that continue it up to T. So for the oldest point of the
// window, T0 = now - Window, the snapshot S0 = the newest snapshot at or
// before T0 is needed, and with it every object after it (in time for
// snapshots, in sequence number for segments: S0's header names the first
// segment continuing it). Everything older than S0 (older snapshots, and
// segments numbered below S0's first continuing segment, of this or any
// older generation) serves no point in the window and is deleted, oldest
// first. When no snapshot is as old as T0, nothing is deleted.

// pruneResult counts what a pass deleted.
type pruneResult struct {
	Snapshots, Segments int
}

// prune deletes name's objects that no restore point in the window needs.
func prune(ctx context.Context, st walsync.Storage, name string, window time.Duration, now time.Time) (pruneResult, error) {
	var res pruneResult
	type obj struct {
		key  string
		kind walsync.KeyKind
		t    time.Time
		seq  uint64
	}
	var snaps, segs []obj
	for o, err := range st.List(ctx, name+"/") {
		if err != nil {
			return res, err
		}
		k, ok := walsync.ParseKey(o.Key)
		if !ok || k.Name != name {
			continue
		}
		switch k.Kind {
		case walsync.KindSnapshot:
			snaps = append(snaps, obj{o.Key, k.Kind, k.Time, 0})
		case walsync.KindSegment:
			segs = append(segs, obj{o.Key, k.Kind, k.Time, k.Seq})
		}
	}
	slices.SortFunc(snaps, func(a, b obj) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return compareStrings(a.key, b.key)
	})
	t0 := now.Add(-window)
	s0 := -1
	for i, s := range snaps {
		if !s.t.After(t0) {
			s0 = i
		}
	}
	if s0 < 0 {
		return res, nil
	}
	hdr, err := readHeader(ctx, st, snaps[s0].key)
	if err != nil {
		return res, err
	}
	slices.SortFunc(segs, func(a, b obj) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return compareStrings(a.key, b.key)
	})
	// A snapshot's first continuing segment number is trusted only if the
	// segments numbered below it were all captured before it: a damaged
	// header must not make retention delete the history.
	for _, s := range segs {
		if s.seq < hdr.Seq && s.t.After(snaps[s0].t.Add(time.Second)) {
			return res, fmt.Errorf("retention: %s says segments below %d precede it, but %s is newer: not pruning %s", snaps[s0].key, hdr.Seq, s.key, name)
		}
	}
	for _, s := range snaps[:s0] {
		if err := st.Delete(ctx, s.key); err != nil {
			return res, err
		}
		res.Snapshots++
	}
	for _, s := range segs {
		if s.seq >= hdr.Seq {
			break
		}
		if err := st.Delete(ctx, s.key); err != nil {
			return res, err
		}
		res.Segments++
	}
	return res, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readHeader reads an object's header (and verifies nothing else: the
// header only decides what to keep; restore verifies what it uses).
func readHeader(ctx context.Context, st walsync.Storage, key string) (walsync.ObjectHeader, error) {
	body, _, err := st.Get(ctx, key)
	if err != nil {
		return walsync.ObjectHeader{}, err
	}
	defer body.Close()
	h, err := walsync.ReadObjectHeaderOnly(io.LimitReader(body, walsync.HeaderLen))
	if err != nil {
		return h, fmt.Errorf("%s: %w", key, err)
	}
	if h.Kind != walsync.KindByteSnapshot {
		return h, fmt.Errorf("%s: %w: not a snapshot", key, walsync.ErrFormat)
	}
	return h, nil
}
