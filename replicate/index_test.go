package replicate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"io"
	"iter"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/restore"
)

// countingStorage counts the requests made through it.
type countingStorage struct {
	walsync.Storage
	mu       sync.Mutex
	requests int
	replaces map[string]int
}

func (c *countingStorage) count(replaceKey string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	if replaceKey != "" {
		if c.replaces == nil {
			c.replaces = map[string]int{}
		}
		c.replaces[replaceKey]++
	}
}

func (c *countingStorage) counts() (int, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for k, v := range c.replaces {
		m[k] = v
	}
	return c.requests, m
}

func (c *countingStorage) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) error {
	c.count("")
	return c.Storage.Put(ctx, key, body, size, sum)
}

func (c *countingStorage) Replace(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) error {
	c.count(key)
	return c.Storage.Replace(ctx, key, body, size, sum)
}

func (c *countingStorage) Get(ctx context.Context, key string) (io.ReadCloser, walsync.ObjectInfo, error) {
	c.count("")
	return c.Storage.Get(ctx, key)
}

func (c *countingStorage) Stat(ctx context.Context, key string) (walsync.ObjectInfo, error) {
	c.count("")
	return c.Storage.Stat(ctx, key)
}

func (c *countingStorage) List(ctx context.Context, prefix string) iter.Seq2[walsync.ObjectInfo, error] {
	c.count("")
	return c.Storage.List(ctx, prefix)
}

func (c *countingStorage) Delete(ctx context.Context, key string) error {
	c.count("")
	return c.Storage.Delete(ctx, key)
}

// runningWatcher is a Watcher.Run in the background.
type runningWatcher struct {
	w      *Watcher
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with err
	err    error
}

func startWatcher(t *testing.T, w *Watcher, src, name string) *runningWatcher {
	t.Helper()
	if err := w.Add(src, name); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	w.OnReady = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWatcher{w: w, cancel: cancel, done: make(chan struct{})}
	go func() {
		rw.err = w.Run(ctx)
		close(rw.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-rw.done
	})
	select {
	case <-ready:
	case <-rw.done:
		t.Fatalf("watcher exited before it was ready: %v", rw.err)
	}
	return rw
}

// stop ends Run (a SIGINT in the CLI) and waits for it.
func (rw *runningWatcher) stop(t *testing.T) {
	t.Helper()
	rw.cancel()
	<-rw.done
	if rw.err != nil {
		t.Fatalf("Run: %v", rw.err)
	}
}

// commitDurable commits n transactions, each waited for until it is in
// the bucket.
func commitDurable(t *testing.T, rw *runningWatcher, app *sql.DB, src string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		mustExec(t, app, "INSERT INTO t (b) VALUES (randomblob(3000))")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := rw.w.Durable(ctx, src)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// latest returns the newest snapshot key and the highest-numbered segment
// key of name in st, from the listing.
func latest(t *testing.T, st walsync.Storage, name string) (snap, seg string, snaps, segs int) {
	t.Helper()
	var segSeq uint64
	var snapTime time.Time
	for o, err := range st.List(context.Background(), name+"/") {
		if err != nil {
			t.Fatal(err)
		}
		k, ok := walsync.ParseKey(o.Key)
		if !ok || k.Name != name {
			continue
		}
		switch k.Kind {
		case walsync.KindSnapshot:
			snaps++
			if snap == "" || !k.Time.Before(snapTime) {
				snap, snapTime = o.Key, k.Time
			}
		case walsync.KindSegment:
			segs++
			if seg == "" || k.Seq >= segSeq {
				seg, segSeq = o.Key, k.Seq
			}
		}
	}
	return snap, seg, snaps, segs
}

func readStored(t *testing.T, st walsync.Storage, key string) []byte {
	t.Helper()
	rc, _, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replaceStored(t *testing.T, st walsync.Storage, key string, b []byte) {
	t.Helper()
	sum := sha256.Sum256(b)
	if err := st.Replace(context.Background(), key, bytes.NewReader(b), int64(len(b)), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
}

// storedBytes sums the sizes of name's snapshots and segments.
func storedBytes(t *testing.T, st walsync.Storage, name string) int64 {
	t.Helper()
	var n int64
	for o, err := range st.List(context.Background(), name+"/") {
		if err != nil {
			t.Fatal(err)
		}
		if k, ok := walsync.ParseKey(o.Key); ok && (k.Kind == walsync.KindSnapshot || k.Kind == walsync.KindSegment) {
			n += o.Size
		}
	}
	return n
}

// After a watcher ran and stopped, state.json names the latest snapshot
// and segment of the listing, counts what the watcher uploaded, and was
// written only by Replace: once soon after the first upload and once at
// shutdown (the interval, an hour here, holds back every other write).
func TestIndexWrittenByWatcher(t *testing.T) {
	src, app, fst := newSource(t)
	cs := &countingStorage{Storage: fst}
	rw := startWatcher(t, &Watcher{Storage: cs, IndexInterval: time.Hour}, src, "app")
	commitDurable(t, rw, app, src, 5)
	rw.stop(t)

	_, replaces := cs.counts()
	if n := replaces[walsync.StateKey("app")]; n < 1 || n > 2 || len(replaces) != 1 {
		t.Fatalf("Replace calls: got=%v, want 1 or 2 of app/state.json (the first write, and one at shutdown)", replaces)
	}
	ctx := context.Background()
	idx, err := restore.ReadIndex(ctx, fst, "app")
	if err != nil {
		t.Fatal(err)
	}
	snap, seg, snaps, segs := latest(t, fst, "app")
	if idx.LatestSnapshot == nil || idx.LatestSnapshot.Key != snap || idx.LatestSegment == nil || idx.LatestSegment.Key != seg {
		t.Fatalf("index names %+v and %+v, want the listing's latest %s and %s", idx.LatestSnapshot, idx.LatestSegment, snap, seg)
	}
	if k, _ := walsync.ParseKey(seg); idx.LatestSegment.Seq != k.Seq || idx.LatestSegment.Time.IsZero() || idx.LatestSnapshot.Time.IsZero() {
		t.Errorf("index entries: got=%+v %+v, want the segment's number %d and capture times", idx.LatestSnapshot, idx.LatestSegment, k.Seq)
	}
	want := walsync.IndexCounts{Since: idx.Uploaded.Since, Snapshots: int64(snaps), Segments: int64(segs), Bytes: storedBytes(t, fst, "app")}
	if idx.Uploaded != want || idx.Uploaded.Since.IsZero() {
		t.Errorf("uploaded: got=%+v, want %+v", idx.Uploaded, want)
	}
	if idx.Version != walsync.IndexVersion || idx.Name != "app" || idx.Updated.IsZero() {
		t.Errorf("index: got=%+v, want version %d, name app, an updated time", idx, walsync.IndexVersion)
	}
	reps, err := restore.Verify(ctx, fst, restore.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || !reps[0].OK || reps[0].Generation != idx.Generation || idx.LatestSnapshot.Generation != idx.Generation {
		t.Fatalf("verify: got=%+v, want one ok generation %s", reps, idx.Generation)
	}
	if ir := reps[0].Index; ir == nil || ir.State != restore.IndexMatches {
		t.Fatalf("verify's index report: got=%+v, want %s", ir, restore.IndexMatches)
	}
}

// An idle database costs no request: once the index is written after the
// last upload, nothing more is sent, however many intervals pass.
func TestIndexIdleDatabaseCostsNothing(t *testing.T) {
	src, app, fst := newSource(t)
	cs := &countingStorage{Storage: fst}
	w := &Watcher{Storage: cs, IndexInterval: 10 * time.Millisecond}
	rw := startWatcher(t, w, src, "app")
	commitDurable(t, rw, app, src, 3)
	x := &w.all()[0].index
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		x.mu.Lock()
		done := x.version == x.written && !x.pending
		x.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the index was not written within a minute of the last upload")
		}
	}
	before, replaces := cs.counts()
	if replaces[walsync.StateKey("app")] == 0 {
		t.Fatal("no index written")
	}
	time.Sleep(30 * w.IndexInterval)
	if after, _ := cs.counts(); after != before {
		t.Fatalf("requests while idle: got=%d, want 0", after-before)
	}
	rw.stop(t)
	if _, again := cs.counts(); !reflect.DeepEqual(again, replaces) {
		t.Fatalf("Replace calls at shutdown with nothing new: got=%v, want none (still %v)", again, replaces)
	}
}

// state.json is an index, not the truth: with it missing, stale (an older
// valid state.json), garbage, or bytes that do not match their recorded
// sum, list, restore and verify give the same answers as with the good
// one; verify's index report names the condition.
func TestIndexNotTheTruth(t *testing.T) {
	src, app, st := newSource(t)
	ctx := context.Background()
	key := walsync.StateKey("app")
	rw := startWatcher(t, &Watcher{Storage: st}, src, "app")
	commitDurable(t, rw, app, src, 3)
	rw.stop(t)
	stale := readStored(t, st, key)

	// A second run resumes the generation: no new snapshot, yet its index
	// names the first run's (the spool's hint), and counts only its own.
	rw = startWatcher(t, &Watcher{Storage: st}, src, "app")
	commitDurable(t, rw, app, src, 3)
	rw.stop(t)
	good := readStored(t, st, key)
	idx, err := restore.ReadIndex(ctx, st, "app")
	if err != nil {
		t.Fatal(err)
	}
	snap, seg, snaps, _ := latest(t, st, "app")
	if snaps != 1 || idx.LatestSnapshot == nil || idx.LatestSnapshot.Key != snap || idx.LatestSegment == nil || idx.LatestSegment.Key != seg {
		t.Fatalf("index after a resumed run names %+v, %+v; want the listing's %s (the only snapshot, of the first run) and %s", idx.LatestSnapshot, idx.LatestSegment, snap, seg)
	}
	if idx.Uploaded.Snapshots != 0 || idx.Uploaded.Segments != 3 {
		t.Errorf("uploaded by the second run: got=%+v, want 0 snapshots and 3 segments", idx.Uploaded)
	}
	if old, err := walsync.ParseIndex(stale, "app"); err != nil || old.LatestSegment.Seq >= idx.LatestSegment.Seq {
		t.Fatalf("the first run's index: %+v, %v; want a valid one naming an older segment", old.LatestSegment, err)
	}

	want := checkpointedCopy(t, src)
	type answers struct {
		list    []restore.DBInfo
		db      []byte
		reports []restore.GenerationReport
		index   string
	}
	ask := func(t *testing.T) answers {
		t.Helper()
		var a answers
		var err error
		if a.list, err = restore.List(ctx, st); err != nil {
			t.Fatalf("list: %v", err)
		}
		out := filepath.Join(t.TempDir(), "out.db")
		if _, err := (&restore.Restorer{Storage: st}).Restore(ctx, "app", out, restore.Options{}); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if a.db, err = os.ReadFile(out); err != nil {
			t.Fatal(err)
		}
		if a.reports, err = restore.Verify(ctx, st, restore.VerifyOptions{}); err != nil {
			t.Fatalf("verify: %v", err)
		}
		for i := range a.reports {
			if a.reports[i].Index == nil {
				t.Fatalf("verify report %d has no index report", i)
			}
			a.index = a.reports[i].Index.State + ": " + a.reports[i].Index.Detail
			a.reports[i].Index = nil
		}
		return a
	}
	base := ask(t)
	if !bytes.Equal(base.db, want) {
		t.Fatalf("restore with the good index: %d bytes, want the source's %d", len(base.db), len(want))
	}
	if len(base.list) != 1 || len(base.reports) != 1 || !base.reports[0].OK {
		t.Fatalf("with the good index: list %+v, verify %+v; want one database, one ok generation", base.list, base.reports)
	}
	for _, tc := range []struct {
		name  string
		set   func(t *testing.T)
		state string
	}{
		{"good", func(t *testing.T) {}, restore.IndexMatches},
		{"missing", func(t *testing.T) {
			if err := st.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}, restore.IndexMissing},
		{"stale", func(t *testing.T) { replaceStored(t, st, key, stale) }, restore.IndexStale},
		{"garbage", func(t *testing.T) { replaceStored(t, st, key, []byte("\x00\xffnot json at all{")) }, restore.IndexCorrupted},
		{"another name's", func(t *testing.T) {
			replaceStored(t, st, key, bytes.Replace(good, []byte(`"name": "app"`), []byte(`"name": "other"`), 1))
		}, restore.IndexCorrupted},
		{"sha256 mismatch", func(t *testing.T) {
			// New bytes under the old sidecar, as a crash inside a
			// Replace can leave them.
			if err := os.WriteFile(filepath.Join(st.Root(), "app", walsync.StateFile), stale, 0o644); err != nil {
				t.Fatal(err)
			}
		}, restore.IndexCorrupted},
		{"good again", func(t *testing.T) { replaceStored(t, st, key, good) }, restore.IndexMatches},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replaceStored(t, st, key, good)
			tc.set(t)
			got := ask(t)
			if !reflect.DeepEqual(got.list, base.list) {
				t.Errorf("list: got=%+v, want %+v", got.list, base.list)
			}
			if !bytes.Equal(got.db, base.db) {
				t.Errorf("restore: got=%d bytes, not the %d bytes restored with the good index", len(got.db), len(base.db))
			}
			if !reflect.DeepEqual(got.reports, base.reports) {
				t.Errorf("verify: got=%+v, want %+v", got.reports, base.reports)
			}
			if !strings.HasPrefix(got.index, tc.state+":") {
				t.Errorf("verify's index report: got=%q, want %s", got.index, tc.state)
			}
			t.Logf("index: %s", got.index)
		})
	}
}
