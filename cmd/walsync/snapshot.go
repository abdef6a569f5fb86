package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/replicate"
)

// SnapshotCommand is `walsync snapshot DB -b BUCKET`: one consistent
// snapshot of a live database, now.
type SnapshotCommand struct {
	env *environment
}

// Run executes the command.
func (c *SnapshotCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet(c.env, "snapshot", "snapshot <DB> -b <BUCKET> [--name NAME] [--endpoint URL]")
	var sf storageFlags
	sf.register(fs)
	name := fs.String("name", "", "name in the bucket (default: the file name without extension)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one database path, got %d", len(pos))
	}
	dbPath := pos[0]
	if *name == "" {
		*name = walsync.NameFromPath(dbPath)
	}
	if err := walsync.ValidateName(*name); err != nil {
		return usagef("%v", err)
	}
	log, err := sf.logger(c.env, slog.LevelWarn)
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	bar := newProgress(c.env.stderr, "snapshot "+*name)
	s := &replicate.Snapshotter{Storage: st, Logger: log, Progress: bar.update}
	info, err := s.Snapshot(ctx, dbPath, *name)
	bar.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.env.stdout, "snapshot %s: %s/%s (%s database, %s stored, sha256 %s, %s)\n",
		*name, st, info.Key, humanBytes(info.DBSize), humanBytes(info.StoredSize), info.SHA256,
		info.Duration.Round(1e6))
	return nil
}
