package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/restore"
)

// RestoreCommand is `walsync restore NAME -o OUTPUT -b BUCKET`.
type RestoreCommand struct {
	env *environment
}

// Run executes the command.
func (c *RestoreCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet(c.env, "restore", "restore <NAME> -o <OUTPUT> -b <BUCKET> [--force] [--endpoint URL]")
	var sf storageFlags
	sf.register(fs)
	var output string
	fs.StringVar(&output, "o", "", "output database path (also --output)")
	fs.StringVar(&output, "output", "", "output database path (same as -o)")
	force := fs.Bool("force", false, "replace an existing output file")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one database name, got %d", len(pos))
	}
	name := pos[0]
	if err := walsync.ValidateName(name); err != nil {
		return err
	}
	if output == "" {
		return usagef("missing -o OUTPUT")
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
	res, err := r.Restore(ctx, name, output, restore.Options{Force: *force})
	bar.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.env.stdout, "restored %s to %s (%s, from %s and %d WAL segments, %s)\n", name, res.Output,
		humanBytes(res.DBSize), res.SnapshotKey, res.Segments, res.Duration.Round(1e6))
	return nil
}
