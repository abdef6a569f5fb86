package replicate

import (
	"bytes"
	"context"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync"
)

// Objects made at known times by a follower with a fake clock; retention
// keeps the newest snapshot at or before now-window and everything after
// it, deletes the rest, and the newest state still restores exactly.
func TestPrune(t *testing.T) {
	src, app, st := newSource(t)
	base := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	clock := base
	w := &Watcher{Storage: st, Now: func() time.Time { return clock }, SnapshotInterval: time.Second}
	ctx := context.Background()
	d := newTestDB(t, w, src) // snapshot at +0s
	step := func(at time.Duration, snapshot bool) {
		t.Helper()
		clock = base.Add(at)
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
		if snapshot {
			if err := d.periodicSnapshot(ctx); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := d.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	step(10*time.Second, false)
	step(20*time.Second, false)
	step(30*time.Second, true) // captures the insert, then snapshots
	step(40*time.Second, false)
	step(50*time.Second, false)
	step(60*time.Second, true)
	step(70*time.Second, false)
	if err := w.uploadAll(ctx, d); err != nil {
		t.Fatal(err)
	}
	keys := func() []string {
		var ks []string
		for o, err := range st.List(ctx, "app/") {
			if err != nil {
				t.Fatal(err)
			}
			ks = append(ks, o.Key)
		}
		sort.Strings(ks)
		return ks
	}
	before := keys()

	// Window reaching before the first snapshot: nothing goes.
	if res, err := prune(ctx, st, "app", 100*time.Second, base.Add(75*time.Second)); err != nil || res != (pruneResult{}) {
		t.Fatalf("prune with a window older than every snapshot: got=%+v, %v, want nothing deleted", res, err)
	}
	// Window from +55s: the snapshot at +30s serves it; older objects go.
	res, err := prune(ctx, st, "app", 20*time.Second, base.Add(75*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	after := keys()
	var snaps, segs int
	for _, k := range after {
		pk, _ := walsync.ParseKey(k)
		if pk.Kind == walsync.KindSnapshot {
			snaps++
			if pk.Time.Before(base.Add(30 * time.Second)) {
				t.Errorf("kept snapshot %s older than the one the window needs", k)
			}
		}
		if pk.Kind == walsync.KindSegment {
			segs++
			if pk.Time.Before(base.Add(30 * time.Second)) {
				t.Errorf("kept segment %s captured before the snapshot the window needs", k)
			}
		}
	}
	if res.Snapshots != 1 || res.Segments != 3 || snaps != 2 || segs != 4 {
		t.Fatalf("after prune: deleted %+v, kept %d snapshots and %d segments (from %v to %v); want 1 snapshot and 3 segments deleted, 2 snapshots and 4 segments kept", res, snaps, segs, before, after)
	}
	restoreMatches(t, st, src)
}

// A retention pass that shutdown cuts short is not an error: watch must not
// log one, and the database stays due for the next pass.
func TestPruneCutByShutdown(t *testing.T) {
	src, _, st := newSource(t)
	var logs bytes.Buffer
	w := &Watcher{Storage: st, Retention: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	d := newTestDB(t, w, src)
	d.uploadedSincePrune.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.pruneAll(ctx)
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a pass cut by shutdown logged an error:\n%s", logs.String())
	}
	if !d.uploadedSincePrune.Load() {
		t.Error("a pass cut short left the database marked as pruned")
	}
}
