package replicate

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/walsync/walsync"
)

// One writer per name (SPEC, integrity rule 7). Before it writes anything,
// a watcher creates <name>/lock.json with a conditional create. A second
// watcher finds it and is refused, with the holder named in the error. The
// holder deletes it on a clean exit. A claim left by a crash is taken over
// automatically by the same database on the same host (the usual restart);
// from anywhere else only with --takeover, since walsync cannot tell a
// dead writer from a quiet one without a heartbeat, and heartbeats would
// cost requests for idle databases.

// writerClaim is the content of lock.json.
type writerClaim struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Database string    `json:"database"`
	Started  time.Time `json:"started"`
}

func claimKey(name string) string { return name + "/" + walsync.LockFile }

// claim takes the name for this watcher.
func (d *DB) claim(ctx context.Context) error {
	host, _ := os.Hostname()
	id := make([]byte, 8)
	rand.Read(id) //nolint:errcheck // crypto/rand does not fail
	me := writerClaim{ID: hex.EncodeToString(id), Host: host, PID: os.Getpid(), Database: d.Path, Started: d.now().UTC()}
	body, err := json.Marshal(me)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	key := claimKey(d.Name)
	for attempt := 0; ; attempt++ {
		err := d.w.Storage.Put(ctx, key, bytes.NewReader(body), int64(len(body)), hex.EncodeToString(sum[:]))
		if err == nil {
			d.claimID = me.ID
			return nil
		}
		if !errors.Is(err, walsync.ErrExists) || attempt >= 3 {
			return err
		}
		other, rerr := readClaim(ctx, d.w.Storage, key)
		if errors.Is(rerr, walsync.ErrNotExist) {
			// Released between our Put and the read (a clean exit just
			// then): the name is free, ask again.
			continue
		}
		mine := rerr == nil && other.Host == me.Host && other.Database == me.Database
		if !mine && !d.w.Takeover {
			if rerr != nil {
				return fmt.Errorf("%w: %s exists but cannot be read (%v); if no other walsync replicates %q, start with --takeover", errAnotherWriter, key, rerr, d.Name)
			}
			return fmt.Errorf("%w: %q in %s is replicated by walsync on %s (pid %d, database %s, since %s); stop that one, or if it is gone for good start this one with --takeover",
				errAnotherWriter, d.Name, d.w.Storage, other.Host, other.PID, other.Database, other.Started.Format(time.RFC3339))
		}
		if !mine {
			d.log.Warn("taking over the name from another writer", "host", other.Host, "pid", other.PID, "database", other.Database)
		}
		if err := d.w.Storage.Delete(ctx, key); err != nil {
			return err
		}
	}
}

// release deletes the claim if it is still ours.
func (d *DB) release(ctx context.Context) {
	if d.claimID == "" {
		return
	}
	key := claimKey(d.Name)
	if c, err := readClaim(ctx, d.w.Storage, key); err == nil && c.ID == d.claimID {
		if err := d.w.Storage.Delete(ctx, key); err != nil {
			d.log.Warn("could not release the name", "key", key, "err", err)
		}
	}
	d.claimID = ""
}

func readClaim(ctx context.Context, st walsync.Storage, key string) (writerClaim, error) {
	var c writerClaim
	body, _, err := st.Get(ctx, key)
	if err != nil {
		return c, err
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, 64<<10))
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}
