package main

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"time"
)

// lagStats are the commit-to-durable lags of a run, sorted.
type lagStats struct {
	// stamped: the lag by the tool's capture stamps (the headline figure).
	stamped           []time.Duration
	notDurableStamped int
	// lower: the lower bound by request times alone.
	lower      []time.Duration
	notDurable int
	// queue: from the capture stamp to the PUT reaching the proxy.
	queue     []time.Duration
	unstamped int // WAL PUTs without a readable stamp
	// ties: commits with a WAL object of d stamped in the commit's own
	// millisecond (not counted as holding it).
	ties int
}

// commitLags computes the commit-to-durable lag of every commit in two
// ways. A commit of database d returned to the application at time t
// (this program's clock, just after the COMMIT returned). Only PUTs of WAL
// objects of d count: walsync's <name>/wal/ segments, Litestream's level-0
// LTX files (<path>/0000/*.ltx); snapshots and compactions do not, nor do
// PUTs that did not complete before the end of the idle phase (until).
//
// Stamped (the figure in the tables): durable at the earliest completion
// (the proxy relayed MinIO's 2xx answer) of a WAL PUT of d whose capture
// stamp is later than t, comparing whole milliseconds (stampMs > tMs).
// Both tools stamp each WAL object with the time they read the extent of
// the WAL it holds (walsync in the key, Litestream in
// x-amz-meta-litestream-timestamp), a few microseconds after reading it,
// truncated to the millisecond. An object stamped after t was read after t
// and therefore holds the commit, except when t falls in those few
// microseconds. Objects stamped in t's own millisecond are not counted
// (they may have been read before t), which can only lengthen a lag.
//
// Lower bound: durable at the earliest completion of a WAL PUT of d whose
// request reached the proxy after t. No PUT that started before t can
// hold the commit, so this is never later than the true time; it is
// earlier when the tool read the WAL before t but started the PUT after t
// (a PUT waiting in a queue): the difference between the two figures shows
// how much of the lag is queueing.
func commitLags(commits map[string][]time.Duration, puts map[string][]putRec, base time.Time, until time.Duration) lagStats {
	var ls lagStats
	for name, cs := range commits {
		all := puts[name]
		var ps, stamped []putRec
		for _, p := range all {
			if p.end > until {
				continue
			}
			ps = append(ps, p)
			if p.stampMs == 0 {
				ls.unstamped++
				continue
			}
			stamped = append(stamped, p)
			ls.queue = append(ls.queue, p.start-time.UnixMilli(p.stampMs).Sub(base))
		}
		slices.SortFunc(stamped, func(a, b putRec) int { return cmp.Compare(a.stampMs, b.stampMs) })
		byStart := earliest(ps, func(p putRec) int64 { return int64(p.start) })
		byStamp := earliest(stamped, func(p putRec) int64 { return p.stampMs })
		for _, t := range cs {
			if e, ok := byStart(int64(t)); ok {
				ls.lower = append(ls.lower, e-t)
			} else {
				ls.notDurable++
			}
			tMs := base.Add(t).UnixMilli()
			if _, found := slices.BinarySearchFunc(stamped, tMs, func(p putRec, v int64) int { return cmp.Compare(p.stampMs, v) }); found {
				ls.ties++
			}
			if e, ok := byStamp(tMs); ok {
				ls.stamped = append(ls.stamped, e-t)
			} else {
				ls.notDurableStamped++
			}
		}
	}
	for _, s := range [][]time.Duration{ls.stamped, ls.lower, ls.queue} {
		slices.Sort(s)
	}
	return ls
}

// earliest returns a function that gives, for a value v, the earliest
// completion among the PUTs whose key(p) > v.
func earliest(ps []putRec, key func(putRec) int64) func(v int64) (time.Duration, bool) {
	ps = slices.Clone(ps)
	sort.Slice(ps, func(i, j int) bool { return key(ps[i]) < key(ps[j]) })
	minEnd := make([]time.Duration, len(ps)+1)
	minEnd[len(ps)] = time.Duration(math.MaxInt64)
	for i := len(ps) - 1; i >= 0; i-- {
		minEnd[i] = min(minEnd[i+1], ps[i].end)
	}
	return func(v int64) (time.Duration, bool) {
		i := sort.Search(len(ps), func(i int) bool { return key(ps[i]) > v })
		return minEnd[i], i < len(ps)
	}
}

// quantile of sorted values (nearest rank); 0 when empty.
func quantile[T int64 | time.Duration](sorted []T, q float64) T {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
