package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/restore"
)

// VerifyCommand is `walsync verify -b BUCKET [NAME...] [--json]`: read
// every stored object, check every checksum and the chain of every
// generation, and prove each generation's newest state restorable without
// writing a database.
type VerifyCommand struct {
	env *environment
}

// Run executes the command.
func (c *VerifyCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet(c.env, "verify", "verify -b <BUCKET> [NAME...] [--json] [--parallel N] [--endpoint URL]")
	var sf storageFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print a JSON array, one object per database and generation")
	parallel := fs.Int("parallel", 4, "objects read at once")
	names, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *parallel < 1 {
		return usagef("--parallel %d: want at least 1", *parallel)
	}
	if _, err := sf.logger(c.env, slog.LevelWarn); err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	bar := newProgress(c.env.stderr, "verify")
	reports, err := restore.Verify(ctx, st, restore.VerifyOptions{Names: names, Parallel: *parallel, Progress: bar.update})
	bar.finish()
	if err != nil {
		return err
	}
	if *asJSON {
		if reports == nil {
			reports = []restore.GenerationReport{}
		}
		enc := json.NewEncoder(c.env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(c.env.stdout, 0, 4, 2, ' ', 0)
		for i, r := range reports {
			gen := "generation " + shortGen(r.Generation)
			if r.Generation == "" {
				gen = "-"
			}
			verdict := "ok"
			if !r.OK {
				verdict = "FAILED: " + oneLine(r.Error)
			} else if r.Note != "" {
				verdict = "ok (" + r.Note + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, gen, counts(r), humanBytes(r.Bytes), verdict)
			if last := i == len(reports)-1 || reports[i+1].Name != r.Name; last && r.Index != nil {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, "state.json", "index only", "-", indexLine(*r.Index))
			}
		}
		tw.Flush()
	}

	names = names[:0]
	var objects, failed int
	var bytes int64
	var first string
	for _, r := range reports {
		if len(names) == 0 || names[len(names)-1] != r.Name {
			names = append(names, r.Name)
		}
		objects += r.Snapshots + r.Segments
		bytes += r.Bytes
		if !r.OK {
			failed++
			if first == "" {
				first = r.Name + ": " + oneLine(r.Error)
			}
		}
	}
	if len(reports) == 0 {
		return fmt.Errorf("no databases in %s: nothing to verify", st)
	}
	summary := fmt.Sprintf("%d database(s), %d generation(s), %d objects, %s in %s", len(names), len(reports), objects,
		humanBytes(bytes), time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		if !*asJSON {
			fmt.Fprintf(c.env.stdout, "verified %s: %d generation(s) FAILED\n", summary, failed)
		}
		return errors.New("verify: " + fmt.Sprintf("%d of %d generation(s) failed; first: %s", failed, len(reports), first))
	}
	if !*asJSON {
		fmt.Fprintf(c.env.stdout, "verified %s: all ok\n", summary)
	}
	return nil
}

// indexLine describes a name's state.json for the text output: its state
// first. Information only: verify never depends on it.
func indexLine(ir restore.IndexReport) string {
	line := ir.State
	if ir.Detail != "" {
		line += ": " + oneLine(ir.Detail)
	}
	if ir.State != restore.IndexMatches {
		line += " (not used: the listing is the truth)"
	}
	if nf := ir.NotFollowed; nf != nil {
		line += fmt.Sprintf("; WARNING: the writer cannot follow the local database file since %s (%s): nothing new is replicated",
			nf.Since.Format(time.RFC3339), oneLine(nf.Reason))
	}
	return line
}

func shortGen(g string) string {
	if len(g) > 12 {
		return g[:12] + "…"
	}
	return g
}

func counts(r restore.GenerationReport) string {
	plural := func(n int, one, many string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, one)
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	return plural(r.Snapshots, "snapshot", "snapshots") + " + " + plural(r.Segments, "segment", "segments")
}
