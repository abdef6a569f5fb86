package replicate

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/walsync/walsync"
)

// Status is what a database's replication looks like now: for `PRAGMA
// walsync_status` (the VFS) and, later, metrics.
type Status struct {
	Name string `json:"name"`
	// Replicating: this process replicates the database now.
	Replicating bool   `json:"replicating"`
	Generation  string `json:"generation,omitempty"`
	// The position captured up to: the WAL (salt-1) and its last frame
	// captured.
	WALSalt1 uint32 `json:"wal_salt1"`
	WALFrame uint32 `json:"wal_frame"`
	// LastDurable is the capture time of the newest object this process
	// put in the bucket (zero when none yet).
	LastDurable time.Time `json:"last_durable,omitzero"`
	// Captured objects not yet in the bucket, and their stored bytes
	// (the open segment included).
	PendingObjects int   `json:"pending_objects"`
	PendingBytes   int64 `json:"pending_bytes"`
	// Lag is the age of the oldest captured commit not yet durable in the
	// bucket; 0 when nothing captured is pending.
	Lag time.Duration `json:"-"`
	// LastError is the last failure of capture or upload, until one
	// succeeds again.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// failure is a DB's last capture or upload error.
type failure struct {
	msg string
	at  time.Time
}

// noteError records err as the database's last error (nil clears it).
func (d *DB) noteError(err error) {
	if err == nil {
		if d.lastErr.Load() != nil {
			d.lastErr.Store(nil)
		}
		return
	}
	d.lastErr.Store(&failure{msg: err.Error(), at: d.now()})
}

// lastErrHolder is embedded in DB.
type lastErrHolder struct {
	lastErr     atomic.Pointer[failure]
	lastDurable atomic.Int64 // unix ns: capture time of the newest uploaded object
	// Upload stalls (checkUploadStall): since when uploads have not caught
	// up (unix ns; 0: they have), when the last line was logged, and
	// whether a stall was reported.
	upSince  atomic.Int64
	upLogged atomic.Int64
	upWarned atomic.Bool
}

// Status returns the database at path's status (as given to Add).
func (w *Watcher) Status(path string) (Status, error) {
	d := w.byPath(path)
	if d == nil {
		return Status{}, fmt.Errorf("database %s: not replicated by this watcher", path)
	}
	s := Status{Name: d.Name}
	d.mu.Lock()
	s.Replicating = d.opened && d.failed == nil && w.ready.Load()
	if d.st != nil {
		s.Generation = d.st.Generation
		s.WALSalt1, s.WALFrame = d.st.Pos.Salt1, d.st.Pos.Frame
	}
	switch {
	case d.failed != nil:
		s.LastError = d.failed.Error()
	case d.lost != "":
		s.LastError = d.lost + " (the new file is not followed yet)"
	case d.genPending != "":
		s.LastError = "a new generation could not start yet (" + d.genPending + ")"
	}
	d.mu.Unlock()
	if ns := d.lastDurable.Load(); ns != 0 {
		s.LastDurable = time.Unix(0, ns).UTC()
	}
	if f := d.lastErr.Load(); f != nil && s.LastError == "" {
		s.LastError, s.LastErrorAt = f.msg, f.at.UTC()
	}
	p, err := SpoolPending(d.Path)
	if err != nil {
		return s, err
	}
	s.PendingObjects, s.PendingBytes = p.Objects, p.Bytes
	if !p.Oldest.IsZero() {
		s.Lag = max(d.now().Sub(p.Oldest), 0)
	}
	return s, nil
}

// Pending is what a database's spool holds that is not in the bucket yet.
type Pending struct {
	Objects int
	Bytes   int64
	// Oldest is the capture time of the oldest of them (zero: none).
	Oldest time.Time
}

// SpoolPending reads the spool of the database at dbPath: what is
// captured and not yet uploaded. Any process may call it (the spool's
// owner or not): it only reads.
func SpoolPending(dbPath string) (Pending, error) {
	var p Pending
	s := readOnlySpool(dbPath)
	entries, err := s.entries()
	if os.IsNotExist(err) || (err != nil && !dirExists(s.dir)) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	for _, e := range entries {
		f, err := s.fs.Open("pending:open", e.path(s))
		if err != nil {
			continue // uploaded and removed meanwhile
		}
		fi, ferr := f.Stat()
		hdr, herr := walsync.ReadObjectHeaderOnly(f)
		f.Close()
		if ferr != nil || (fi.Size() == 0 && e.Open) {
			continue // an empty open file made ahead of its segment
		}
		p.Objects++
		p.Bytes += fi.Size()
		if herr == nil && (p.Oldest.IsZero() || hdr.Created.Before(p.Oldest)) {
			p.Oldest = hdr.Created
		}
	}
	return p, nil
}

func dirExists(dir string) bool {
	fi, err := os.Stat(filepath.Clean(dir))
	return err == nil && fi.IsDir()
}

// captureLogEvery is how often a capture failure that goes on is logged
// again: a full disk failed every capture, one per application write, and
// logged each (290 to 780 lines in 10 s, on a disk the log may share).
const captureLogEvery = time.Minute

// captureFailed logs a failed capture: the first failure at ERROR, then
// at most one line a minute while captures keep failing (the others at
// DEBUG), with how many failed since the last line.
func (d *DB) captureFailed(err error) {
	d.noteError(err)
	d.capMu.Lock()
	now := d.now()
	if d.capFailingSince.IsZero() {
		d.capFailingSince = now
	}
	d.capFailures++
	due := d.capLogged.IsZero() || now.Sub(d.capLogged) >= captureLogEvery
	n := d.capFailures - d.capFailuresLogged
	if due {
		d.capLogged, d.capFailuresLogged = now, d.capFailures
	}
	// Tried again after a backoff too, not only at the next change: what
	// failed (no descriptor left, a full disk) may pass while the
	// application writes nothing more.
	retry := min(soonestRecheck<<min(d.capFailures, 12), captureRetryMax)
	d.capMu.Unlock()
	d.w.syncAfter(d, retry)
	if due {
		if n > 1 {
			d.log.Error("capture failed; retrying (logged once a minute while it lasts)", "err", err, "failures_since_last_line", n)
		} else {
			d.log.Error("capture failed; retrying (logged once a minute while it lasts)", "err", err)
		}
	} else {
		d.log.Debug("capture failed again", "err", err)
	}
}

// captureRetryMax is the longest a failed capture waits before it is
// tried again (it is also tried at the next change).
const captureRetryMax = 5 * time.Second

// captureWorks notes a capture that succeeded: after failures, one line
// says that capture resumed and after how long.
func (d *DB) captureWorks() {
	d.capMu.Lock()
	since, n := d.capFailingSince, d.capFailures
	d.capFailingSince, d.capFailures, d.capFailuresLogged, d.capLogged = time.Time{}, 0, 0, time.Time{}
	d.capMu.Unlock()
	if !since.IsZero() {
		d.log.Info("capture works again", "failing_for", d.now().Sub(since).Round(time.Millisecond), "failures", n)
	}
}

// uploadStallAfter is how long uploads may make no progress before the
// watcher says so (then once a minute per database while it lasts).
const uploadStallAfter = 30 * time.Second

// uploadStarted notes that an object is to be uploaded: the clock of a
// stall starts with the first one not followed by uploadsCaughtUp.
func (d *DB) uploadStarted() {
	if d.upSince.Load() == 0 {
		d.upSince.Store(d.now().UnixNano())
	}
}

// uploadsCaughtUp: everything uploadable is in the bucket. After a stall
// that was reported, one line says how long it lasted.
func (d *DB) uploadsCaughtUp() {
	since := d.upSince.Swap(0)
	d.upLogged.Store(0)
	if since == 0 || !d.upWarned.Swap(false) {
		return
	}
	d.log.Info("uploads go through again", "stalled_for", d.now().Sub(time.Unix(0, since)).Round(time.Second))
}

// checkUploadStall, every second from the watcher's loop: uploads that
// have not caught up for uploadStallAfter are reported (an endpoint that
// accepts connections and never answers left no trace in the log), then
// once a minute while it lasts.
func (d *DB) checkUploadStall() {
	since := d.upSince.Load()
	if since == 0 {
		return
	}
	now := d.now()
	stalled := now.Sub(time.Unix(0, since))
	if stalled < uploadStallAfter {
		return
	}
	if last := d.upLogged.Load(); last != 0 && now.Sub(time.Unix(0, last)) < time.Minute {
		return
	}
	d.upLogged.Store(now.UnixNano())
	d.upWarned.Store(true)
	args := []any{"for", stalled.Round(time.Second)}
	if f := d.lastErr.Load(); f != nil {
		args = append(args, "last_error", f.msg)
	}
	d.log.Warn("uploads are not getting through to the bucket; captured commits wait in the spool (logged once a minute while it lasts)", args...)
}
