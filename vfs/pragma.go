package vfs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/walsync/walsync/replicate"
)

// Status is a database's replication as the application can ask for it:
// `PRAGMA walsync_status` returns it as one JSON object (one row, one
// column), Status returns it to Go.
type Status struct {
	Name string `json:"name"`
	// Replicating: this process ships the database's commits now.
	Replicating bool `json:"replicating"`
	// ReplicatedElsewhere: another process (another application, or
	// walsync watch) does; it ships this process's commits too.
	ReplicatedElsewhere bool `json:"replicated_elsewhere"`
	// WAL: the database is in WAL mode (walsync replicates only then;
	// the VFS switches it after its first write).
	WAL        bool   `json:"wal"`
	Generation string `json:"generation,omitempty"`
	// The position captured so far: the WAL's salt-1 and its last frame.
	WALSalt1 uint32 `json:"wal_salt1"`
	WALFrame uint32 `json:"wal_frame"`
	// LastDurable: capture time of the newest object this process put in
	// the bucket (RFC 3339; absent when none yet).
	LastDurable *time.Time `json:"last_durable,omitempty"`
	// LagSeconds: age of the oldest captured commit not yet durable in
	// the bucket; 0 when everything captured is.
	LagSeconds     float64 `json:"lag_seconds"`
	PendingObjects int     `json:"pending_objects"`
	PendingBytes   int64   `json:"pending_bytes"`
	LastError      string  `json:"last_error,omitempty"`
}

// pragma answers the walsync PRAGMAs of database id: the text value and
// the SQLite result code.
func pragma(id int64, name, arg string, mxFrame, salt1 uint32) (string, int) {
	d := lookup(id)
	if d == nil {
		return "walsync: database not open", sqliteError
	}
	switch strings.ToLower(name) {
	case "walsync_status":
		if arg != "" {
			return "walsync: PRAGMA walsync_status takes no value", sqliteError
		}
	case "walsync_flush":
		timeout := d.cfg.syncTimeout
		if arg != "" {
			var err error
			if timeout, err = parseTimeout("walsync_flush", arg); err != nil {
				return "walsync: PRAGMA " + err.Error(), sqliteError
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := d.flush(ctx, mxFrame, salt1)
		cancel()
		if err != nil {
			d.log.Error("PRAGMA walsync_flush failed", "err", err, rcKey, sqliteError)
			return "walsync: " + err.Error(), sqliteError
		}
	default:
		return "walsync: unknown PRAGMA " + name, sqliteError
	}
	b, err := json.Marshal(d.status())
	if err != nil {
		return "walsync: " + err.Error(), sqliteError
	}
	return string(b), sqliteOK
}

// flush waits until every transaction committed to d so far (up to the
// wal-index header mxFrame, salt1) is durable in the bucket.
func (d *database) flush(ctx context.Context, mxFrame, salt1 uint32) error {
	if w := d.ownWatcher(ctx); w != nil {
		return w.Durable(ctx, d.path)
	}
	if d.needsWAL() {
		return fmt.Errorf("%s is not in WAL mode (yet): nothing of it is replicated", d.path)
	}
	if !replicate.OwnedElsewhere(d.path) {
		d.mu.Lock()
		err := d.startErr
		d.mu.Unlock()
		if err == nil {
			err = errors.New("replication is not running")
		}
		return fmt.Errorf("%s cannot be replicated now: %w", d.path, err)
	}
	replicate.RequestFlush(d.path) //nolint:errcheck // the wait below times out without it
	if err := replicate.WaitDurable(ctx, d.path, salt1, mxFrame); err != nil {
		return fmt.Errorf("not durable in %s within %v: %w", d.cfg.bucket, deadlineLeft(ctx), err)
	}
	return nil
}

func deadlineLeft(ctx context.Context) string {
	if dl, ok := ctx.Deadline(); ok {
		return "the timeout (" + time.Until(dl).Round(time.Millisecond).String() + " left)"
	}
	return "the timeout"
}

// status is d's Status.
func (d *database) status() Status {
	s := Status{Name: d.cfg.name}
	d.mu.Lock()
	w, startErr := d.w, d.startErr
	s.WAL = d.wal
	d.mu.Unlock()
	if w != nil {
		rs, err := w.Status(d.path)
		s.Replicating = rs.Replicating
		s.Generation, s.WALSalt1, s.WALFrame = rs.Generation, rs.WALSalt1, rs.WALFrame
		if !rs.LastDurable.IsZero() {
			t := rs.LastDurable
			s.LastDurable = &t
		}
		s.LagSeconds = rs.Lag.Seconds()
		s.PendingObjects, s.PendingBytes = rs.PendingObjects, rs.PendingBytes
		s.LastError = rs.LastError
		if err != nil && s.LastError == "" {
			s.LastError = err.Error()
		}
		return s
	}
	s.ReplicatedElsewhere = replicate.OwnedElsewhere(d.path)
	if p, err := replicate.SpoolPending(d.path); err == nil {
		s.PendingObjects, s.PendingBytes = p.Objects, p.Bytes
		if !p.Oldest.IsZero() {
			s.LagSeconds = max(time.Since(p.Oldest).Seconds(), 0)
		}
	}
	switch {
	case !s.WAL:
		s.LastError = "not in WAL mode: not replicated until walsync can switch it"
	case startErr != nil && !errors.Is(startErr, replicate.ErrOwned):
		s.LastError = startErr.Error()
	}
	return s
}

// Queryer is what runs a PRAGMA: *sql.DB, *sql.Conn or *sql.Tx of a
// database opened through the VFS.
type Queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ReadStatus returns the replication status of db's main database (PRAGMA
// walsync_status).
func ReadStatus(ctx context.Context, db Queryer) (Status, error) {
	return pragmaStatus(ctx, db, "PRAGMA walsync_status")
}

// Flush waits until every transaction committed so far to db's main
// database is durable in the bucket (PRAGMA walsync_flush), within ctx's
// deadline, or else the database's walsync_sync_timeout. A commit made
// in the default, asynchronous, mode is made durable this way without
// switching every commit to walsync_sync=1. It returns the status after.
func Flush(ctx context.Context, db Queryer) (Status, error) {
	q := "PRAGMA walsync_flush"
	if dl, ok := ctx.Deadline(); ok {
		q = fmt.Sprintf("PRAGMA walsync_flush='%dms'", max(time.Until(dl).Milliseconds(), 1))
	}
	return pragmaStatus(ctx, db, q)
}

func pragmaStatus(ctx context.Context, db Queryer, q string) (Status, error) {
	var s Status
	var text string
	if err := db.QueryRowContext(ctx, q).Scan(&text); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return s, errors.New("walsync: the database is not open through the walsync VFS")
		}
		return s, err
	}
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		return s, fmt.Errorf("walsync: %s: %w", q, err)
	}
	return s, nil
}
