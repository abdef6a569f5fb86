package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/wal"
)

// ErrGap means the WAL segments after a snapshot cannot be proven to
// continue it: a segment number is missing while a later segment of the
// same generation exists, or a segment does not start where the one before
// it ended (docs/FORMAT.md, "WAL segments"). Restore never stitches across
// such a break; the error names the objects on both sides of it.
var ErrGap = errors.New("restore: gap in the WAL sequence")

// segmentRef is a listed WAL segment object.
type segmentRef struct {
	Key  string
	Seq  uint64
	Time time.Time
	Size int64
}

// segments lists name's WAL segment objects, by sequence number (and key,
// for two objects claiming one number).
func (r *Restorer) segments(ctx context.Context, name string) ([]segmentRef, error) {
	var out []segmentRef
	for obj, err := range r.Storage.List(ctx, name+"/"+walsync.SegmentDir+"/") {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.Storage, err)
		}
		k, ok := walsync.ParseKey(obj.Key)
		if !ok || k.Kind != walsync.KindSegment || k.Name != name {
			continue
		}
		out = append(out, segmentRef{Key: obj.Key, Seq: k.Seq, Time: k.Time, Size: obj.Size})
	}
	slices.SortFunc(out, func(a, b segmentRef) int {
		if a.Seq != b.Seq {
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}

// walPos is where the source WAL stood at the end of an object of the
// chain: its identity (salts, checkpoint sequence, checksum byte order),
// the last frame the object holds (0: none) and the running WAL checksum
// after that frame.
type walPos struct {
	key string // the object that ends here
	walsync.WALPosition
}

func snapshotPos(key string, h walsync.ObjectHeader) walPos {
	return walPos{key: key, WALPosition: h.WALPositionAfter(h.WALFrame)}
}

// continues checks the continuity rule (docs/FORMAT.md, "WAL segments")
// between the end of the previous object, prev, and the segment header h.
// It returns nil when h continues prev, and otherwise says what did not
// match.
//
// Same WAL (the salts are prev's): same checkpoint sequence and byte
// order, h starts at the frame after prev's last one, and h's WAL checksum
// is prev's running checksum after it.
//
// A new WAL (other salts): SQLite restarted the WAL, and h must start at
// its frame 1. The checkpoint sequence and salt-1 of the new WAL are not
// compared with the old one's: SQLite writes its connection's own
// checkpoint counter, and a connection whose counter is 0 picks fresh
// random salts (see the format document for the evidence).
//
// In both cases a segment that starts at frame 1 must carry the checksum
// of its own WAL header, which its header fields determine.
func continues(prev walPos, h walsync.ObjectHeader) error {
	if h.WALFrame == 0 {
		return errors.New("its first WAL frame is 0; frames are numbered from 1")
	}
	if h.WALFrame == 1 {
		wh := wal.NewHeader(h.PageSize, h.WALCheckpointSeq, h.WALSalt1, h.WALSalt2, h.WALBigEndian)
		if h.WALChecksum1 != wh.Checksum1 || h.WALChecksum2 != wh.Checksum2 {
			return fmt.Errorf("it starts a WAL at frame 1, but its WAL checksum %08x%08x is not that WAL header's %08x%08x",
				h.WALChecksum1, h.WALChecksum2, wh.Checksum1, wh.Checksum2)
		}
	}
	if h.WALSalt1 == prev.Salt1 && h.WALSalt2 == prev.Salt2 {
		want := uint64(prev.Frame) + 1
		switch {
		case h.WALCheckpointSeq != prev.CkptSeq:
			return fmt.Errorf("it has the WAL salts of %s (%08x %08x) but checkpoint sequence %d, not %d",
				prev.key, h.WALSalt1, h.WALSalt2, h.WALCheckpointSeq, prev.CkptSeq)
		case h.WALBigEndian != prev.BigEndian:
			return fmt.Errorf("it has the WAL salts of %s (%08x %08x) but the other checksum byte order", prev.key, h.WALSalt1, h.WALSalt2)
		case uint64(h.WALFrame) != want:
			return fmt.Errorf("it starts at WAL frame %d, but %s ends at frame %d of the same WAL (salts %08x %08x): want frame %d",
				h.WALFrame, prev.key, prev.Frame, h.WALSalt1, h.WALSalt2, want)
		case prev.Frame > 0 && (h.WALChecksum1 != prev.Cksum1 || h.WALChecksum2 != prev.Cksum2):
			return fmt.Errorf("its WAL checksum before frame %d is %08x%08x, but %s ends with %08x%08x",
				h.WALFrame, h.WALChecksum1, h.WALChecksum2, prev.key, prev.Cksum1, prev.Cksum2)
		}
		return nil
	}
	if h.WALFrame != 1 {
		return fmt.Errorf("its WAL (salts %08x %08x) is not that of %s (salts %08x %08x), so the WAL was restarted, but it starts at frame %d, not 1",
			h.WALSalt1, h.WALSalt2, prev.key, prev.Salt1, prev.Salt2, h.WALFrame)
	}
	return nil
}

// chain is the state of one restore while it applies segments.
type chain struct {
	r        *Restorer
	name     string
	dst      io.WriterAt
	progress *progressTracker
	fetch    *prefetcher // nil: every segment is read directly
	snap     walsync.ObjectHeader
	buf      []byte // one frame: header and page

	// until, when not zero, is the point in time: segments captured after
	// it end the chain.
	until time.Time

	prev      walPos
	pageCount uint32 // database size in pages after the last applied commit
	applied   int
	lastSeq   uint64
	lastTime  time.Time // capture time of the last applied segment
}

// errOtherGeneration is returned by applySegment for a verified segment of
// another generation: the chain ends before it.
type errOtherGeneration struct{ gen walsync.Generation }

func (e errOtherGeneration) Error() string { return "segment of generation " + e.gen.String() }

// applySegments applies, in sequence order, every segment that continues
// the snapshot: from number snap.Seq on, until the numbers stop, a segment
// of another generation comes, or (with a point in time) the next segment
// was captured after it. A segment whose key time is after the point is
// not read: the key's time is the header's capture time (docs/FORMAT.md).
func (c *chain) applySegments(ctx context.Context, segs []segmentRef) error {
	gen := c.snap.Generation
	expected := c.snap.Seq
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Seq >= expected })
	for i < len(segs) {
		if err := ctx.Err(); err != nil {
			return err
		}
		seq := segs[i].Seq
		j := i + 1
		for j < len(segs) && segs[j].Seq == seq {
			j++
		}
		if seq != expected {
			// Segment expected is missing. It was the end of the chain
			// unless a later segment belongs to this generation. Numbers
			// grow across generations and one writer owns a name, so
			// generations never interleave: the next number decides.
			// Its bytes are verified before its header is believed.
			for _, next := range segs[i:j] {
				h, err := c.r.verifiedHeader(ctx, next, c.progress)
				if err != nil {
					return err
				}
				if h.Generation == gen {
					return fmt.Errorf("%w: WAL segment %08d of %s is missing: %s is followed by %s, also of generation %s",
						ErrGap, expected, c.name, c.prev.key, next.Key, gen)
				}
			}
			c.r.logger().Info("WAL segments end: the next one belongs to another generation",
				"name", c.name, "missing", expected, "next", segs[i].Key)
			return nil
		}
		if !c.until.IsZero() && !slices.ContainsFunc(segs[i:j], func(s segmentRef) bool { return !s.Time.After(c.until) }) {
			c.r.logger().Debug("WAL segments end: the next one was captured after the point in time",
				"name", c.name, "next", segs[i].Key)
			return nil
		}
		ref, ok, err := c.r.pickSegment(ctx, segs[i:j], gen, c.progress)
		if err != nil {
			return err
		}
		if !ok {
			c.r.logger().Info("WAL segments end: the next ones belong to other generations",
				"name", c.name, "seq", seq, "keys", len(segs[i:j]))
			return nil
		}
		err = c.applySegment(ctx, ref)
		var other errOtherGeneration
		if errors.As(err, &other) {
			c.r.logger().Info("WAL segments end: the next one belongs to another generation",
				"name", c.name, "key", ref.Key, "generation", other.gen.String())
			return nil
		}
		var after errAfterPoint
		if errors.As(err, &after) {
			c.r.logger().Debug("WAL segments end: the next one was captured after the point in time",
				"name", c.name, "key", ref.Key, "created", after.created)
			return nil
		}
		if err != nil {
			return err
		}
		c.applied++
		c.lastSeq = seq
		if expected == math.MaxUint64 {
			return nil
		}
		expected++
		i = j
	}
	return nil
}

// pickSegment chooses among objects holding the same segment number: the
// one of the snapshot's generation. Two objects can share a number when
// an upload was retried under a new time after an uncertain failure (same
// bytes: either will do), or when a second writer wrote into the same name
// (another generation: not ours). ok is false when none of them belongs to
// the generation: the chain ends. Different bytes of the same generation
// under one number cannot be told apart: refused.
func (r *Restorer) pickSegment(ctx context.Context, group []segmentRef, gen walsync.Generation, p *progressTracker) (ref segmentRef, ok bool, err error) {
	if len(group) == 1 {
		return group[0], true, nil
	}
	sums := make([]string, len(group))
	same := true
	for i, ref := range group {
		info, err := r.Storage.Stat(ctx, ref.Key)
		if err != nil {
			return segmentRef{}, false, fmt.Errorf("stat %s: %w", ref.Key, err)
		}
		if info.SHA256 == "" {
			return segmentRef{}, false, fmt.Errorf("%s: %w: refusing to use it", ref.Key, walsync.ErrNoChecksum)
		}
		sums[i] = info.SHA256
		same = same && sums[i] == sums[0]
	}
	if same {
		return group[0], true, nil
	}
	var mine []int
	for i, ref := range group {
		h, err := r.verifiedHeader(ctx, ref, p)
		if err != nil {
			return segmentRef{}, false, err
		}
		if h.Generation == gen {
			mine = append(mine, i)
		}
	}
	if len(mine) == 0 {
		return segmentRef{}, false, nil
	}
	for _, i := range mine[1:] {
		if sums[i] != sums[mine[0]] {
			return segmentRef{}, false, fmt.Errorf("%w: %s and %s both claim WAL segment %08d of generation %s, with different contents",
				ErrGap, group[mine[0]].Key, group[i].Key, group[i].Seq, gen)
		}
	}
	return group[mine[0]], true, nil
}

// verifiedHeader reads a whole object, checks its stored bytes against the
// recorded SHA-256 and returns its header.
func (r *Restorer) verifiedHeader(ctx context.Context, ref segmentRef, p *progressTracker) (walsync.ObjectHeader, error) {
	o, err := openStored(ctx, r.Storage, ref.Key, p)
	if err != nil {
		return walsync.ObjectHeader{}, err
	}
	defer o.close()
	h, herr := walsync.ReadObjectHeaderOnly(o)
	if err := o.verify(); err != nil {
		return h, err
	}
	if herr != nil {
		return h, fmt.Errorf("%s: %w", ref.Key, herr)
	}
	return h, nil
}

// applySegment verifies one segment and writes its pages into c.dst.
//
// Frames are applied as they stream in, one frame buffer at a time; a
// failure anywhere fails the whole restore, whose temporary output is then
// removed, so pages of a segment that later proves bad never reach the
// output path. A segment of another generation ends the chain
// (errOtherGeneration), and so does one captured after the point in time
// (errAfterPoint): both only once the object's stored bytes are verified,
// so a damaged header cannot pass for either.
func (c *chain) applySegment(ctx context.Context, ref segmentRef) error {
	ps := int64(c.snap.PageSize)
	var o *opened
	var err error
	if c.fetch != nil {
		o, err = c.fetch.open(ctx, ref)
	} else {
		o, err = openStored(ctx, c.r.Storage, ref.Key, c.progress)
	}
	if err != nil {
		return err
	}
	defer o.close()
	seg, err := readSegment(ctx, o, ref, &c.buf, func(h walsync.ObjectHeader) error {
		if h.Generation != c.snap.Generation {
			return errOtherGeneration{h.Generation}
		}
		if !c.until.IsZero() && h.Created.After(c.until) {
			return errAfterPoint{h.Created}
		}
		if h.PageSize != c.snap.PageSize {
			return fmt.Errorf("%s: %w: page size %d, the snapshot's is %d", ref.Key, walsync.ErrFormat, h.PageSize, c.snap.PageSize)
		}
		if err := continues(c.prev, h); err != nil {
			return fmt.Errorf("%w: %s does not continue %s: %v", ErrGap, ref.Key, c.prev.key, err)
		}
		return nil
	}, func(pgno uint32, page []byte) error {
		if _, err := c.dst.WriteAt(page, int64(pgno-1)*ps); err != nil {
			return fmt.Errorf("write restored database: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.prev = seg.end
	c.pageCount = seg.hdr.PageCount
	c.lastTime = seg.hdr.Created
	return nil
}

// errAfterPoint is returned for a verified segment captured after the
// point in time: the chain ends before it.
type errAfterPoint struct{ created time.Time }

func (e errAfterPoint) Error() string {
	return "segment captured at " + e.created.Format(time.RFC3339Nano)
}

// segmentRead is what reading one segment object established.
type segmentRead struct {
	hdr walsync.ObjectHeader // Kind is 0 when the header could not be read
	end walPos               // the WAL position after its last frame
	sum string               // the recorded SHA-256 of its stored bytes
}

// readSegment streams one WAL segment object, opened from storage or from
// a prefetched download (o), and checks everything that can be checked
// from the object alone (docs/FORMAT.md, "WAL segments"): the stored bytes
// against their recorded SHA-256 (o.verify; a prefetched object was
// verified as it was downloaded); the header (kind 'W';
// then check; then the number in the key, at least one frame); then, for
// each frame, its salts, a page number other than 0 and the WAL checksum
// chain from the header's WAL checksum; the frame count against the
// content, the content against the trailer, and the last frame a commit
// leaving the header's page count. It returns the position after the last
// frame, which the continuity rule compares with the next object's header.
//
// check, when given, is called with the header before anything else of it
// is checked (restore checks the generation there, so that a segment of
// another generation ends the chain whatever else is wrong with it, then
// the point in time, the page size and continuity); its error ends the
// read. page, when given, receives each frame's page number and data as
// the frames stream in; *buf is the frame buffer, reused across calls.
// Whatever fails, a mismatch of the stored bytes' SHA-256 is reported
// first: it names the cause better than whatever check the damaged bytes
// broke. Memory is one frame buffer (the prefetched object aside).
func readSegment(ctx context.Context, o *opened, ref segmentRef, buf *[]byte,
	check func(walsync.ObjectHeader) error, page func(pgno uint32, data []byte) error) (segmentRead, error) {
	var res segmentRead
	res.sum = o.info.SHA256
	fail := func(err error) (segmentRead, error) {
		if verr := o.verify(); verr != nil {
			return res, verr
		}
		return res, err
	}
	or, err := walsync.NewObjectReader(o, o.info.Size)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", ref.Key, err))
	}
	defer or.Close()

	h := or.Header
	res.hdr = h
	if h.Kind != walsync.KindByteSegment {
		return fail(fmt.Errorf("%s: %w: not a WAL segment object (kind %q)", ref.Key, walsync.ErrFormat, h.Kind))
	}
	if check != nil {
		if err := check(h); err != nil {
			return fail(err)
		}
	}
	switch {
	case h.Seq != ref.Seq:
		return fail(fmt.Errorf("%s: %w: header says segment %d, the key says %d", ref.Key, walsync.ErrFormat, h.Seq, ref.Seq))
	case h.FrameCount == 0:
		return fail(fmt.Errorf("%s: %w: a segment without frames", ref.Key, walsync.ErrFormat))
	case !h.Restarts && uint64(h.WALFrame)+uint64(h.FrameCount)-1 > math.MaxUint32:
		return fail(fmt.Errorf("%s: %w: frames %d+%d run past the largest frame number", ref.Key, walsync.ErrFormat, h.WALFrame, h.FrameCount))
	}

	if need := wal.FrameHeaderSize + int(h.PageSize); len(*buf) != need {
		*buf = make([]byte, need)
	}
	frame, data := *buf, (*buf)[wal.FrameHeaderSize:]
	ch := walsync.NewSegmentChain(h, false)
	for n := uint32(0); n < h.FrameCount; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return res, err
			}
		}
		if _, err := io.ReadFull(or, frame); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fail(fmt.Errorf("%s: %w: content holds %d whole records, the header says %d", ref.Key, walsync.ErrFormat, n, h.FrameCount))
			}
			return fail(fmt.Errorf("%s: %w", ref.Key, err))
		}
		isFrame, err := ch.Next(frame)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", ref.Key, err))
		}
		if isFrame && page != nil {
			if err := page(ch.Last().Pgno, data); err != nil {
				return res, err
			}
		}
	}
	// The end of the content: the object reader checks the trailer here.
	if n, err := io.ReadFull(or, frame[:1]); !errors.Is(err, io.EOF) {
		if err == nil || n > 0 {
			return fail(fmt.Errorf("%s: %w: content continues after the %d records the header announces", ref.Key, walsync.ErrFormat, h.FrameCount))
		}
		return fail(fmt.Errorf("%s: %w", ref.Key, err))
	}
	if err := o.verify(); err != nil {
		return res, err
	}
	end, last := ch.Pos(), ch.Last()
	if !last.IsCommit() {
		return res, fmt.Errorf("%s: %w: its last record (WAL frame %d) is not a commit frame", ref.Key, walsync.ErrFormat, end.Frame)
	}
	if last.Commit != h.PageCount {
		return res, fmt.Errorf("%s: %w: its last commit leaves %d pages, the header says %d", ref.Key, walsync.ErrFormat, last.Commit, h.PageCount)
	}
	res.end = walPos{key: ref.Key, WALPosition: end}
	return res, nil
}
