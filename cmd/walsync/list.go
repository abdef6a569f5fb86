package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/restore"
)

// ListCommand is `walsync list -b BUCKET [--json]`: what is stored.
type ListCommand struct {
	env *environment
}

// Run executes the command.
func (c *ListCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet(c.env, "list", "list -b <BUCKET> [--json] [--endpoint URL]")
	var sf storageFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print a JSON array, one object per database")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if _, err := sf.logger(c.env, slog.LevelWarn); err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	dbs, err := restore.List(ctx, st)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(dbs)
	}
	if len(dbs) == 0 {
		fmt.Fprintf(c.env.stdout, "no databases in %s\n", st)
		return nil
	}
	tw := tabwriter.NewWriter(c.env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSNAPSHOTS\tLATEST SNAPSHOT\tLATEST WAL\tSIZE")
	for _, d := range dbs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", d.Name, d.Snapshots, fmtTime(d.LatestSnapshot), fmtTime(d.LatestWAL), humanBytes(d.Size))
	}
	return tw.Flush()
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
