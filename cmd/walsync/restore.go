package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/restore"
)

// RestoreCommand is `walsync restore NAME -o OUTPUT -b BUCKET`.
type RestoreCommand struct {
	env *environment
}

// Run executes the command.
func (c *RestoreCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet(c.env, "restore", "restore <NAME> -o <OUTPUT> -b <BUCKET> [--point-in-time TIME] [--force] [--parallel N] [--endpoint URL]")
	var sf storageFlags
	sf.register(fs)
	var output string
	fs.StringVar(&output, "o", "", "output database path (also --output)")
	fs.StringVar(&output, "output", "", "output database path (same as -o)")
	force := fs.Bool("force", false, "replace an existing output file")
	pit := fs.String("point-in-time", "", "restore the state after the last transaction captured at or before TIME\n(RFC 3339 with a zone: 2026-01-10T12:00:00Z, 2026-01-10T14:00:00.250+02:00)")
	parallel := fs.Int("parallel", restore.DefaultParallel, "objects downloaded at once: the next segments download and are\nverified while the snapshot and the segments before them are applied\n(1: one after the other)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one database name, got %d", len(pos))
	}
	if *parallel < 1 {
		return usagef("--parallel %d: want at least 1", *parallel)
	}
	name := pos[0]
	if err := walsync.ValidateName(name); err != nil {
		return err
	}
	if output == "" {
		return usagef("missing -o OUTPUT")
	}
	var at time.Time
	if *pit != "" {
		if at, err = parsePointInTime(*pit); err != nil {
			return err
		}
	}
	log, err := sf.logger(c.env, slog.LevelWarn)
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	bar := newProgress(c.env.stderr, "restore "+name)
	r := &restore.Restorer{Storage: st, Logger: log, Progress: bar.update}
	res, err := r.Restore(ctx, name, output, restore.Options{Force: *force, PointInTime: at, Parallel: *parallel})
	bar.finish()
	if err != nil {
		return err
	}
	state := ""
	if !at.IsZero() {
		state = ", the state captured at " + res.StateTime.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	fmt.Fprintf(c.env.stdout, "restored %s to %s (%s, from %s and %d WAL segments%s, %s)\n", name, res.Output,
		humanBytes(res.DBSize), res.SnapshotKey, res.Segments, state, res.Duration.Round(1e6))
	return nil
}

// parsePointInTime reads --point-in-time: RFC 3339 (ISO 8601 with a zone),
// 'Z' or an offset, optional fractional seconds; a space may stand for the
// 'T'. A time without a zone is refused rather than guessed.
func parsePointInTime(s string) (time.Time, error) {
	v := strings.TrimSpace(s)
	if len(v) > 10 && (v[10] == ' ' || v[10] == 't') {
		v = v[:10] + "T" + v[11:]
	}
	if strings.HasSuffix(v, "z") {
		v = v[:len(v)-1] + "Z"
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if _, err := time.Parse(layout, v); err == nil {
			return time.Time{}, usagef("--point-in-time %q has no time zone: add Z for UTC or an offset (e.g. %s)", s, "2026-01-10T12:00:00Z or 2026-01-10T14:00:00+02:00")
		}
	}
	return time.Time{}, usagef("--point-in-time %q is not an RFC 3339 time (e.g. 2026-01-10T12:00:00Z, 2026-01-10T14:00:00.250+02:00)", s)
}
