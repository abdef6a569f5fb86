package vfs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/walsync/walsync/replicate"
)

// One replication engine (a Dynamic replicate.Watcher) serves every
// database of the process that has the same bucket and settings: one
// upload pool, one set of sync workers, one file notification instance
// and one index writer, however many databases the application opens.
// A database joins it with Follow when it is opened and leaves it with
// Release when its last connection closes.

// engineKey is what databases sharing an engine have in common.
type engineKey struct {
	bucket, endpoint, region string
	syncInterval             time.Duration
	snapshotInterval         time.Duration
	closeTimeout             time.Duration
	logger                   *slog.Logger // Options.Logger (nil: the default)
}

type engine struct {
	w    *replicate.Watcher
	done chan struct{} // closed when Run returned (a start that failed)
}

var (
	engineMu sync.Mutex
	engines  = map[engineKey]*engine{}
	// quietByPath routes the watchers' OnQuiet to the databases: looked
	// up without dbMu, which open holds while it starts a database.
	quietByPath sync.Map // path → *database
)

// key is the engine d's settings select.
func (c config) engineKey() engineKey {
	syncInterval := orDefault(c.opts.SyncInterval, time.Second)
	if syncInterval < 0 || c.sync {
		syncInterval = 0
	}
	snapInterval := orDefault(c.opts.SnapshotInterval, time.Hour)
	if snapInterval < 0 {
		snapInterval = 0
	}
	return engineKey{bucket: c.bucket, endpoint: c.endpoint, region: c.region, syncInterval: syncInterval,
		snapshotInterval: snapInterval, closeTimeout: orDefault(c.opts.CloseTimeout, 10*time.Second), logger: c.opts.Logger}
}

// engineFor returns the running engine for c's settings, starting it
// when there is none (its storage reached within ctx).
func engineFor(ctx context.Context, c config) (*replicate.Watcher, error) {
	k := c.engineKey()
	engineMu.Lock()
	defer engineMu.Unlock()
	if e := engines[k]; e != nil {
		select {
		case <-e.done:
		default:
			return e.w, nil
		}
	}
	st, err := openStorage(ctx, c)
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	w := &replicate.Watcher{
		Storage:          st,
		Logger:           c.logger(),
		SnapshotInterval: k.snapshotInterval,
		SyncInterval:     k.syncInterval,
		ShutdownTimeout:  k.closeTimeout,
		Owner:            "the walsync VFS in " + processName(),
		SpoolNotify:      true, // its own commits come through Kick
		KeepSpare:        true, // pin moves come from the committing thread
		Batch:            true, // one segment per sync interval, not per hook capture
		StartTimeout:     startTimeout,
		Dynamic:          true,
		OnReady:          func() { close(ready) },
		OnQuiet: func(path string, left time.Duration) {
			if d, ok := quietByPath.Load(path); ok {
				d.(*database).setQuiet(path, left)
			}
		},
	}
	e := &engine{w: w, done: make(chan struct{})}
	var runErr error
	go func() {
		defer close(e.done)
		// The engine runs as long as the process: databases leave it
		// with Release.
		runErr = w.Run(context.Background())
	}()
	select {
	case <-ready:
	case <-e.done:
		if runErr == nil {
			runErr = errors.New("replication engine stopped")
		}
		return nil, runErr
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	engines[k] = e
	return w, nil
}
