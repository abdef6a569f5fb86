package replicate

import (
	"context"
	"path/filepath"
	"sync"
	"time"
)

// registry is the set of databases a Watcher follows, replaced whole
// (copy on write) when one is added or removed, so that the event loop,
// the workers and the hooks read it without a lock while databases come
// and go.
type registry struct {
	dbs    []*DB
	byFile map[string]*DB // database, -wal, and the spool's request files
}

// all returns the databases followed now.
func (w *Watcher) all() []*DB {
	if r := w.reg.Load(); r != nil {
		return r.dbs
	}
	return nil
}

// byPath returns the database that file belongs to, or nil.
func (w *Watcher) byPath(file string) *DB {
	if r := w.reg.Load(); r != nil {
		return r.byFile[file]
	}
	return nil
}

// files are the paths whose events concern d.
func (d *DB) files() []string {
	return []string{d.Path, d.Path + "-wal", filepath.Join(spoolDir(d.Path), changedFileName), filepath.Join(spoolDir(d.Path), flushFileName)}
}

// update replaces the registry with f's change of a copy. Called with
// w.regMu held.
func (w *Watcher) update(f func(r *registry)) {
	old := w.reg.Load()
	r := &registry{byFile: map[string]*DB{}}
	if old != nil {
		r.dbs = append(r.dbs, old.dbs...)
		for k, v := range old.byFile {
			r.byFile[k] = v
		}
	}
	f(r)
	w.reg.Store(r)
}

// dbQueue is a FIFO of databases in which each is at most once: a
// database asked for again while it waits keeps its place. Unbounded, so
// that whoever pushes (the event loop, timers, hooks) never blocks,
// however many databases there are.
type dbQueue struct {
	mu    sync.Mutex
	items []*DB
	in    map[*DB]bool
	ready chan struct{} // a token while items may be waiting
}

func newDBQueue() *dbQueue {
	return &dbQueue{in: map[*DB]bool{}, ready: make(chan struct{}, 1)}
}

func (q *dbQueue) push(d *DB) {
	q.mu.Lock()
	if q.in[d] {
		q.mu.Unlock()
		return
	}
	q.in[d] = true
	q.items = append(q.items, d)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the first database waiting, waiting for one until ctx ends
// (then nil).
func (q *dbQueue) pop(ctx context.Context) *DB {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			d := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			delete(q.in, d)
			more := len(q.items) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.ready <- struct{}{}:
				default:
				}
			}
			return d
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-q.ready:
		}
	}
}

// Overrides are settings of one database (or one DirSource's) that
// replace the watcher's; nil keeps the watcher's.
type Overrides struct {
	SyncInterval     *time.Duration
	SnapshotInterval *time.Duration
	Retention        *time.Duration
}

// Equal says whether o and p set the same values.
func (o Overrides) Equal(p Overrides) bool {
	eq := func(a, b *time.Duration) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	return eq(o.SyncInterval, p.SyncInterval) && eq(o.SnapshotInterval, p.SnapshotInterval) && eq(o.Retention, p.Retention)
}

// settings are the intervals and retention of one database.
type settings struct {
	syncInterval, snapshotInterval, retention time.Duration
}

// settingsFor applies o to w's settings.
func (w *Watcher) settingsFor(o Overrides) settings {
	s := settings{syncInterval: w.SyncInterval, snapshotInterval: w.SnapshotInterval, retention: w.Retention}
	if o.SyncInterval != nil {
		s.syncInterval = *o.SyncInterval
	}
	if o.SnapshotInterval != nil {
		s.snapshotInterval = *o.SnapshotInterval
	}
	if o.Retention != nil {
		s.retention = *o.Retention
	}
	return s
}
