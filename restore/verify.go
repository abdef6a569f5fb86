package restore

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/walsync/walsync"
)

// Verify (`walsync verify`): every object of every generation is read in
// full, with the checks restore makes (readSnapshot, readSegment: stored
// SHA-256, framing, content SHA-256 against the trailer where the object
// has one, each segment's WAL checksum chain), and the generation's chain
// is checked with the continuity rule restore applies (continues): from
// each snapshot through every segment of its generation, no number
// missing. Nothing is written: pages go to io.Discard. Objects are
// independent until they are linked, so they are read concurrently
// (Parallel at a time, largest first, across names and generations), each
// one streamed with one buffer.
//
// When every object of a generation passes and every link holds, every
// restore point of the generation is restorable (restore makes no other
// check), the newest state among them: that is the proof verify gives
// without writing a database.
//
// The index state.json takes no part in any of it (the objects come from
// the listing); each name's index is read at the end and compared with the
// listing, for the report only (index.go).

// VerifyOptions tune one verify run.
type VerifyOptions struct {
	// Names limits the run to these databases; empty means every name in
	// the bucket.
	Names []string
	// Parallel is how many objects are read at once (default 4).
	Parallel int
	// Progress, when set, is called as stored bytes are read.
	Progress func(done, total int64)
}

// GenerationReport is the verdict on one generation of one name. The
// JSON field names are those of `walsync verify --json`.
type GenerationReport struct {
	Name string `json:"name"`
	// Generation is the id in hex; empty for objects whose header could
	// not be read (and for a name with nothing stored).
	Generation string `json:"generation"`
	Snapshots  int    `json:"snapshots"`
	Segments   int    `json:"segments"`
	// Bytes is the stored size of the generation's objects.
	Bytes int64 `json:"bytes"`
	// From and To are the capture times of the oldest snapshot and of the
	// newest object: the span of its restore points.
	From *time.Time `json:"from,omitempty"`
	To   *time.Time `json:"to,omitempty"`
	OK   bool       `json:"ok"`
	// Error is the first problem found, naming the object and why; empty
	// when OK. Problems lists all of them.
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"`
	// Note says something that is not a problem (segments no restore point
	// needs any more).
	Note string `json:"note,omitempty"`
	// Index says how the name's state.json compares with the listing
	// (the same on every report of the name). Information only: it never
	// makes a report fail, and nothing above depends on it.
	Index *IndexReport `json:"index,omitempty"`
}

// verified is what reading one object established.
type verified struct {
	kind walsync.KeyKind
	key  string
	seq  uint64    // a segment's number, from its key
	time time.Time // from the key
	size int64
	hdr  walsync.ObjectHeader // Kind 0: not read
	end  walPos               // where the object leaves the WAL
	sum  string               // recorded SHA-256
	err  error
}

// Verify checks every object of the names asked for (all by default) and
// returns one report per name and generation, sorted by name and then by
// age. The error is for failures to list or a cancelled context; problems
// with objects are in the reports.
func Verify(ctx context.Context, st walsync.Storage, opts VerifyOptions) ([]GenerationReport, error) {
	byName := map[string][]*verified{}
	var names []string
	add := func(obj walsync.ObjectInfo, k walsync.Key) {
		if k.Kind != walsync.KindSnapshot && k.Kind != walsync.KindSegment {
			return
		}
		if _, ok := byName[k.Name]; !ok {
			names = append(names, k.Name)
		}
		byName[k.Name] = append(byName[k.Name], &verified{kind: k.Kind, key: obj.Key, seq: k.Seq, time: k.Time, size: obj.Size})
	}
	if len(opts.Names) == 0 {
		for obj, err := range st.List(ctx, "") {
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", st, err)
			}
			if k, ok := walsync.ParseKey(obj.Key); ok {
				add(obj, k)
			}
		}
	} else {
		for _, name := range opts.Names {
			if err := walsync.ValidateName(name); err != nil {
				return nil, err
			}
			if _, ok := byName[name]; ok {
				continue
			}
			for obj, err := range st.List(ctx, name+"/") {
				if err != nil {
					return nil, fmt.Errorf("list %s: %w", st, err)
				}
				if k, ok := walsync.ParseKey(obj.Key); ok && k.Name == name {
					add(obj, k)
				}
			}
			if _, ok := byName[name]; !ok {
				byName[name] = nil
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)

	var all []*verified
	var total int64
	for _, name := range names {
		all = append(all, byName[name]...)
		for _, v := range byName[name] {
			total += v.size
		}
	}
	// Largest first: a big snapshot started last would finish alone.
	slices.SortStableFunc(all, func(a, b *verified) int {
		switch {
		case a.size > b.size:
			return -1
		case a.size < b.size:
			return 1
		}
		return 0
	})
	progress := &progressTracker{fn: opts.Progress}
	progress.add(0, total)
	if err := verifyObjects(ctx, st, all, max(opts.Parallel, 1), progress); err != nil {
		return nil, err
	}

	// The indexes, read after the objects: reported, never used.
	indexes := make([]IndexReport, len(names))
	sem := make(chan struct{}, max(opts.Parallel, 1))
	var wg sync.WaitGroup
	for i, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			indexes[i] = checkIndex(ctx, st, name, byName[name])
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []GenerationReport
	for i, name := range names {
		reps := link(st, name, byName[name])
		for j := range reps {
			reps[j].Index = &indexes[i]
		}
		out = append(out, reps...)
	}
	return out, nil
}

// verifyObjects reads every object, parallel at a time.
func verifyObjects(ctx context.Context, st walsync.Storage, objs []*verified, parallel int, p *progressTracker) error {
	jobs := make(chan *verified)
	var wg sync.WaitGroup
	for range min(parallel, max(len(objs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for v := range jobs {
				verifyObject(ctx, st, v, &buf, p)
			}
		}()
	}
	var err error
	for _, v := range objs {
		if err = ctx.Err(); err != nil {
			break
		}
		jobs <- v
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

func verifyObject(ctx context.Context, st walsync.Storage, v *verified, buf *[]byte, p *progressTracker) {
	switch v.kind {
	case walsync.KindSnapshot:
		v.hdr, v.err = readSnapshot(ctx, func(ctx context.Context) (*opened, error) {
			return openStored(ctx, st, v.key, p)
		}, snapshotRef{Key: v.key, Time: v.time, Size: v.size}, io.Discard, true)
		if v.err == nil {
			v.end = snapshotPos(v.key, v.hdr)
			// The key's time is the capture time's second, or a later
			// one when that second was taken (restore relies on it).
			if sec := v.hdr.Created.Truncate(time.Second); v.time.Before(sec) || v.time.After(sec.Add(keyTimeSlack)) {
				v.err = fmt.Errorf("%s: %w: the key's time is not the capture time in its header (%s)", v.key, walsync.ErrFormat, fmtTime(v.hdr.Created))
			}
		}
	case walsync.KindSegment:
		var r segmentRead
		o, err := openStored(ctx, st, v.key, p)
		if err != nil {
			v.err = err
			break
		}
		r, v.err = readSegment(ctx, o, segmentRef{Key: v.key, Seq: v.seq, Time: v.time, Size: v.size}, buf, nil, nil)
		o.close()
		v.hdr, v.end, v.sum = r.hdr, r.end, r.sum
		if v.err == nil && !v.hdr.Created.Equal(v.time) {
			// Point-in-time restore decides from the key's time which
			// segments to read.
			v.err = fmt.Errorf("%s: %w: the key's time is not the capture time in its header (%s)", v.key, walsync.ErrFormat, fmtTime(v.hdr.Created))
		}
	}
	if v.err != nil && ctx.Err() == nil {
		v.err = fmt.Errorf("%s", strings.ReplaceAll(v.err.Error(), "walsync: ", ""))
	}
}

// genGroup collects one generation's objects of one name.
type genGroup struct {
	gen   walsync.Generation
	known bool // false: objects whose header could not be read
	snaps []*verified
	segs  []*verified
	first time.Time
}

// link groups a name's verified objects by generation and checks each
// generation's chain.
func link(st walsync.Storage, name string, objs []*verified) []GenerationReport {
	if len(objs) == 0 {
		return []GenerationReport{{Name: name, Error: fmt.Sprintf("nothing stored for %q in %s", name, st),
			Problems: []string{fmt.Sprintf("nothing stored for %q in %s", name, st)}}}
	}
	groups := map[walsync.Generation]*genGroup{}
	unknown := &genGroup{}
	// broken holds the numbers of segments that failed on their own, so
	// that the chain reports them once, not again as missing.
	broken := map[uint64]bool{}
	// gensOf: which generations hold each number.
	gensOf := map[uint64]map[walsync.Generation]bool{}
	minWatchedSeq := uint64(0)
	for _, v := range objs {
		g := unknown
		if v.hdr.Kind != 0 {
			g = groups[v.hdr.Generation]
			if g == nil {
				g = &genGroup{gen: v.hdr.Generation, known: true}
				groups[v.hdr.Generation] = g
			}
		}
		if g.first.IsZero() || v.time.Before(g.first) {
			g.first = v.time
		}
		switch v.kind {
		case walsync.KindSnapshot:
			g.snaps = append(g.snaps, v)
			if v.err == nil && v.hdr.Seq != 0 && (minWatchedSeq == 0 || v.hdr.Seq < minWatchedSeq) {
				minWatchedSeq = v.hdr.Seq
			}
		case walsync.KindSegment:
			g.segs = append(g.segs, v)
			if v.err != nil {
				broken[v.seq] = true
			} else {
				if gensOf[v.seq] == nil {
					gensOf[v.seq] = map[walsync.Generation]bool{}
				}
				gensOf[v.seq][v.hdr.Generation] = true
			}
		}
	}
	list := make([]*genGroup, 0, len(groups)+1)
	for _, g := range groups {
		list = append(list, g)
	}
	slices.SortFunc(list, func(a, b *genGroup) int { return a.first.Compare(b.first) })
	if len(unknown.snaps)+len(unknown.segs) > 0 {
		list = append(list, unknown)
	}
	out := make([]GenerationReport, 0, len(list))
	for _, g := range list {
		out = append(out, g.check(name, broken, gensOf, minWatchedSeq))
	}
	return out
}

// check verifies one generation's chain and makes its report.
func (g *genGroup) check(name string, broken map[uint64]bool, gensOf map[uint64]map[walsync.Generation]bool, minWatchedSeq uint64) GenerationReport {
	rep := GenerationReport{Name: name, Snapshots: len(g.snaps), Segments: len(g.segs)}
	if g.known {
		rep.Generation = g.gen.String()
	}
	var problems []string
	problem := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	var from, to time.Time
	for _, v := range append(slices.Clone(g.snaps), g.segs...) {
		rep.Bytes += v.size
		if v.err != nil {
			problems = append(problems, v.err.Error())
			continue
		}
		if to.IsZero() || v.hdr.Created.After(to) {
			to = v.hdr.Created
		}
	}
	slices.SortFunc(g.segs, func(a, b *verified) int {
		if a.seq != b.seq {
			if a.seq < b.seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.key, b.key)
	})
	slices.SortFunc(g.snaps, func(a, b *verified) int { return a.hdr.Created.Compare(b.hdr.Created) })

	var good []*verified // verified snapshots
	for _, s := range g.snaps {
		if s.err == nil {
			good = append(good, s)
			if from.IsZero() || s.hdr.Created.Before(from) {
				from = s.hdr.Created
			}
		}
	}
	if g.known {
		switch {
		case len(good) == 0 && len(g.snaps) > 0:
			// Its snapshots failed: reported above.
		case len(good) == 0 && minWatchedSeq > 0 && g.segs[len(g.segs)-1].seq < minWatchedSeq:
			rep.Note = fmt.Sprintf("no snapshot: its %d segments precede every snapshot of %q, and no restore point needs them (left by an interrupted retention pass)", len(g.segs), name)
		case len(good) == 0:
			problem("generation %s of %q has no snapshot: its %d segments (%s ... %s) cannot be restored",
				g.gen, name, len(g.segs), g.segs[0].key, g.segs[len(g.segs)-1].key)
		default:
			g.checkChain(good, broken, gensOf, problem, &rep)
		}
	}
	if len(problems) > 0 {
		rep.Problems = problems
		rep.Error = problems[0]
		if len(problems) > 1 {
			rep.Error += fmt.Sprintf(" (and %d more problems)", len(problems)-1)
		}
	}
	rep.OK = len(problems) == 0
	if !from.IsZero() {
		rep.From = &from
	}
	if !to.IsZero() {
		rep.To = &to
	}
	return rep
}

// checkChain checks the links of a generation with at least one verified
// snapshot: from the first number its snapshots name to its last segment,
// every number present (a missing one is a gap), one object per number
// (or identical copies), the page size of the snapshots, and the
// continuity rule from each segment to the next and from each snapshot to
// the segment that continues it. Segments numbered below every snapshot of
// the generation are left from a retention pass and belong to no restore
// point: they are verified but not linked.
func (g *genGroup) checkChain(good []*verified, broken map[uint64]bool, gensOf map[uint64]map[walsync.Generation]bool,
	problem func(string, ...any), rep *GenerationReport) {
	pageSize := good[0].hdr.PageSize
	firstSeq := uint64(0)
	bySeq := map[uint64][]*verified{}
	for _, s := range good {
		if s.hdr.PageSize != pageSize {
			problem("%s: page size %d, but %s of the same generation has %d", s.key, s.hdr.PageSize, good[0].key, pageSize)
		}
		if firstSeq == 0 || s.hdr.Seq < firstSeq {
			firstSeq = s.hdr.Seq
		}
		bySeq[s.hdr.Seq] = append(bySeq[s.hdr.Seq], s)
	}
	if firstSeq == 0 {
		// Snapshots made by `walsync snapshot`: nothing continues them.
		if len(g.segs) > 0 {
			problem("%s: a segment of a generation whose snapshot says nothing continues it", g.segs[0].key)
		}
		return
	}
	unused := 0
	var prev *walPos
	var prevKey string
	i := 0
	for i < len(g.segs) && g.segs[i].seq < firstSeq {
		unused++
		i++
	}
	for n := firstSeq; i < len(g.segs); n++ {
		if next := g.segs[i].seq; next != n {
			// Numbers n .. next-1 are missing (or failed on their own).
			var missing []uint64
			for m := n; m < next; m++ {
				if !broken[m] {
					missing = append(missing, m)
				}
			}
			before := prevKey
			if before == "" {
				before = snapshotBefore(good, n)
			}
			switch {
			case len(missing) == 1:
				problem("gap in the WAL sequence: WAL segment %08d of generation %s is missing: %s is followed by %s", missing[0], g.gen, before, g.segs[i].key)
			case len(missing) > 1:
				problem("gap in the WAL sequence: WAL segments %08d to %08d of generation %s are missing (%d of them): %s is followed by %s",
					missing[0], missing[len(missing)-1], g.gen, len(missing), before, g.segs[i].key)
			}
			prev, prevKey = nil, ""
			n = next - 1
			continue
		}
		j := i + 1
		for j < len(g.segs) && g.segs[j].seq == n {
			j++
		}
		group := g.segs[i:j]
		i = j
		if len(gensOf[n]) > 1 {
			problem("WAL segment %08d exists in %d generations: two writers replicated into %q", n, len(gensOf[n]), rep.Name)
		}
		seg := group[0]
		ok := seg.err == nil
		for _, other := range group[1:] {
			if other.err != nil || seg.err != nil {
				ok = false
				continue
			}
			if other.sum != seg.sum {
				problem("gap in the WAL sequence: %s and %s both claim WAL segment %08d of generation %s, with different contents", seg.key, other.key, n, g.gen)
				ok = false
			}
		}
		if !ok {
			prev, prevKey = nil, ""
			continue
		}
		if seg.hdr.PageSize != pageSize {
			problem("%s: page size %d, the generation's snapshots have %d", seg.key, seg.hdr.PageSize, pageSize)
		}
		if prev != nil {
			if err := continues(*prev, seg.hdr); err != nil {
				problem("gap in the WAL sequence: %s does not continue %s: %v", seg.key, prevKey, err)
			}
		}
		for _, s := range bySeq[n] {
			if err := continues(s.end, seg.hdr); err != nil {
				problem("gap in the WAL sequence: %s does not continue %s: %v", seg.key, s.key, err)
			}
		}
		prev, prevKey = &seg.end, seg.key
	}
	if unused > 0 {
		rep.Note = fmt.Sprintf("%d segments precede the generation's oldest snapshot; no restore point needs them", unused)
	}
}

// snapshotBefore names the newest snapshot among good (sorted by capture
// time) that segment n would continue, for messages.
func snapshotBefore(good []*verified, n uint64) string {
	key := "the snapshot"
	for _, s := range good {
		if s.hdr.Seq <= n {
			key = s.key
		}
	}
	return key
}
