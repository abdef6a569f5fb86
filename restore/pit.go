package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/walsync/walsync"
)

// Choosing what to restore (docs/FORMAT.md, "Point in time").
//
// Every object has a capture time: its header's Created. A segment's key
// carries the same time to the millisecond, so segments after the point
// need not be read; a snapshot's key carries its second (or a later one,
// up to keyTimeSlack, when two snapshots met in one second), so the
// snapshots near the point are chosen by their headers, read alone.
//
// The base is the newest snapshot captured at or before the point T whose
// state is not after T: a snapshot follows the segments numbered below its
// first one (a snapshot of a running generation is taken after capturing
// what was committed before it), so one with such a segment captured after
// T is itself after T. A snapshot made by `walsync snapshot` (first
// segment number 0: nothing ever continues it) is the base only when no
// segment of a watched generation was captured between it and T; when one
// was, the newest watched snapshot is the base and its chain carries the
// state past the manual snapshot.
//
// A point T is refused when it falls before every snapshot (ErrBeforeFirst)
// or into a gap between two watched generations (ErrTimeGap): the newest
// watched snapshot at or before T and the oldest one after T belong to
// different generations, and the last capture before the latter (that
// snapshot, or a segment numbered below the oldest one after T) was
// before T. A new generation starts when walsync could not prove
// continuity, so transactions committed between the end of the old
// generation and the start of the new one may never have been captured:
// the state at such a T is unknown.

var (
	// ErrBeforeFirst means the point in time is before the first snapshot
	// of the name: nothing was captured at or before it.
	ErrBeforeFirst = errors.New("restore: point in time before the first backup")
	// ErrTimeGap means the point in time falls between the end of one
	// generation and the start of the next, where transactions may not
	// have been captured.
	ErrTimeGap = errors.New("restore: point in time in a gap between generations")
)

// keyTimeSlack is how much later than its capture time a snapshot's key
// time can be: a snapshot whose second is taken moves to the next free
// one, at most 60 times (replicate).
const keyTimeSlack = 60 * time.Second

// catalog is what one listing shows of a name.
type catalog struct {
	name  string
	snaps []snapshotRef // by key time, then key
	segs  []segmentRef  // by number, then key
	// below[i] is the latest key time among segs[:i] (zero for none).
	below []time.Time
	hdrs  map[string]walsync.ObjectHeader // snapshot headers read so far
}

func (r *Restorer) catalog(ctx context.Context, name string) (*catalog, error) {
	snaps, err := r.snapshots(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("no snapshots of %q in %s (walsync list shows what is stored): %w", name, r.Storage, walsync.ErrNotExist)
	}
	segs, err := r.segments(ctx, name)
	if err != nil {
		return nil, err
	}
	c := &catalog{name: name, snaps: snaps, segs: segs, below: make([]time.Time, len(segs)+1),
		hdrs: map[string]walsync.ObjectHeader{}}
	for i, s := range segs {
		c.below[i+1] = c.below[i]
		if s.Time.After(c.below[i]) {
			c.below[i+1] = s.Time
		}
	}
	return c, nil
}

// capturedBelow is the latest key time of the segments numbered below seq,
// and one of them with that time (ok false when there is none).
func (c *catalog) capturedBelow(seq uint64) (time.Time, segmentRef, bool) {
	i := sort.Search(len(c.segs), func(i int) bool { return c.segs[i].Seq >= seq })
	t := c.below[i]
	if i == 0 {
		return t, segmentRef{}, false
	}
	for j := i - 1; j >= 0; j-- {
		if c.segs[j].Time.Equal(t) {
			return t, c.segs[j], true
		}
	}
	return t, segmentRef{}, false
}

// capturedBetween reports whether a segment numbered seq or higher was
// captured after after and at or before until (no upper bound when zero).
func (c *catalog) capturedBetween(seq uint64, after, until time.Time) bool {
	i := sort.Search(len(c.segs), func(i int) bool { return c.segs[i].Seq >= seq })
	for _, s := range c.segs[i:] {
		if s.Time.After(after) && (until.IsZero() || !s.Time.After(until)) {
			return true
		}
	}
	return false
}

// candidate is a snapshot with its header.
type candidate struct {
	ref snapshotRef
	hdr walsync.ObjectHeader
}

// header reads a snapshot's header, only its first bytes, to choose among
// snapshots. The snapshot restored from is read again in full and
// verified before anything of it is used.
func (r *Restorer) header(ctx context.Context, c *catalog, ref snapshotRef) (walsync.ObjectHeader, error) {
	if h, ok := c.hdrs[ref.Key]; ok {
		return h, nil
	}
	body, _, err := r.Storage.Get(ctx, ref.Key)
	if err != nil {
		return walsync.ObjectHeader{}, fmt.Errorf("get %s: %w", ref.Key, err)
	}
	defer body.Close()
	h, err := walsync.ReadObjectHeaderOnly(io.LimitReader(body, walsync.HeaderLen))
	if err != nil {
		return h, fmt.Errorf("%s: %w", ref.Key, err)
	}
	if h.Kind != walsync.KindByteSnapshot {
		return h, fmt.Errorf("%s: %w: not a snapshot object", ref.Key, walsync.ErrFormat)
	}
	c.hdrs[ref.Key] = h
	return h, nil
}

// newest returns the snapshot captured last at or before t (of all, when
// t is zero) among those keep accepts. Headers are read newest key first,
// only as far as a key time allows a later capture time.
func (r *Restorer) newest(ctx context.Context, c *catalog, t time.Time, keep func(walsync.ObjectHeader) bool) (candidate, bool, error) {
	var best candidate
	found := false
	for i := len(c.snaps) - 1; i >= 0; i-- {
		ref := c.snaps[i]
		if !t.IsZero() && ref.Time.After(t.Add(keyTimeSlack)) {
			continue // captured at least a second after t
		}
		if found && !ref.Time.Add(time.Second).After(best.hdr.Created) {
			break // this one and all older ones were captured before best
		}
		h, err := r.header(ctx, c, ref)
		if err != nil {
			return best, false, err
		}
		if (!t.IsZero() && h.Created.After(t)) || (keep != nil && !keep(h)) {
			continue
		}
		if !found || h.Created.After(best.hdr.Created) {
			best, found = candidate{ref, h}, true
		}
	}
	return best, found, nil
}

// oldest returns the snapshot captured first after t (of all, when t is
// zero) among those keep accepts.
func (r *Restorer) oldest(ctx context.Context, c *catalog, t time.Time, keep func(walsync.ObjectHeader) bool) (candidate, bool, error) {
	var best candidate
	found := false
	for _, ref := range c.snaps {
		if !t.IsZero() && !ref.Time.Add(time.Second).After(t) {
			continue // captured within a second before its key time: not after t
		}
		if found && !ref.Time.Add(-keyTimeSlack).Before(best.hdr.Created) {
			break // this one and all newer ones were captured after best
		}
		h, err := r.header(ctx, c, ref)
		if err != nil {
			return best, false, err
		}
		if (!t.IsZero() && !h.Created.After(t)) || (keep != nil && !keep(h)) {
			continue
		}
		if !found || h.Created.Before(best.hdr.Created) {
			best, found = candidate{ref, h}, true
		}
	}
	return best, found, nil
}

func watched(h walsync.ObjectHeader) bool { return h.Seq != 0 }

// choose returns the snapshots to restore from for the point t (zero: the
// newest state), in order of preference: the second, if any, is used when
// the chain from the first does not reach past its capture time.
func (r *Restorer) choose(ctx context.Context, c *catalog, t time.Time) ([]candidate, error) {
	// A snapshot's state is at or before t when the segments it follows
	// were captured at or before t.
	notAfter := func(h walsync.ObjectHeader) bool {
		if t.IsZero() {
			return true
		}
		below, _, _ := c.capturedBelow(h.Seq)
		return !below.After(t)
	}
	s, ok, err := r.newest(ctx, c, t, notAfter)
	if err != nil {
		return nil, err
	}
	if !ok {
		first, _, err := r.oldest(ctx, c, time.Time{}, nil)
		if err != nil {
			return nil, err
		}
		earliest := first.hdr.Created
		if below, _, _ := c.capturedBelow(first.hdr.Seq); below.After(earliest) {
			earliest = below
		}
		return nil, fmt.Errorf("%w: nothing of %q was captured at or before %s; the earliest restorable time is %s (%s)",
			ErrBeforeFirst, c.name, fmtTime(t), fmtTime(earliest), first.ref.Key)
	}
	if !t.IsZero() {
		if err := r.checkGap(ctx, c, t); err != nil {
			return nil, err
		}
	}
	if watched(s.hdr) || !c.capturedBetween(0, s.hdr.Created, t) {
		return []candidate{s}, nil
	}
	// A manual snapshot: a watched generation may have captured more
	// since, and its chain is the newer state.
	w, ok, err := r.newest(ctx, c, t, func(h walsync.ObjectHeader) bool { return watched(h) && notAfter(h) })
	if err != nil {
		return nil, err
	}
	if ok && c.capturedBetween(w.hdr.Seq, s.hdr.Created, t) {
		return []candidate{w, s}, nil
	}
	return []candidate{s}, nil
}

// checkGap refuses a point t between two watched generations (see above).
func (r *Restorer) checkGap(ctx context.Context, c *catalog, t time.Time) error {
	h, okH, err := r.newest(ctx, c, t, watched)
	if err != nil || !okH {
		return err
	}
	b, okB, err := r.oldest(ctx, c, t, watched)
	if err != nil || !okB || b.hdr.Generation == h.hdr.Generation {
		return err
	}
	lastTime, lastKey := h.hdr.Created, h.ref.Key
	if below, last, ok := c.capturedBelow(b.hdr.Seq); ok && below.After(lastTime) {
		lastTime, lastKey = below, last.Key
	}
	if !lastTime.Before(t) {
		return nil // captured at t, or a generation started before t captured after it
	}
	return fmt.Errorf("%w: %s falls between generation %s of %q, last captured at %s (%s), and generation %s, started at %s (%s); "+
		"walsync could not prove that nothing was committed in between: pick a time at or before %s, or at or after %s",
		ErrTimeGap, fmtTime(t), h.hdr.Generation, c.name, fmtTime(lastTime), lastKey, b.hdr.Generation,
		fmtTime(b.hdr.Created), b.ref.Key, fmtTime(lastTime), fmtTime(b.hdr.Created))
}

// fmtTime formats a capture time for messages: UTC, milliseconds.
func fmtTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
