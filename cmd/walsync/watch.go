package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/replicate"
)

// WatchCommand is `walsync watch DB... -b BUCKET`: continuous replication
// of any number of databases by one process.
type WatchCommand struct {
	env *environment
}

// Run executes the command until SIGINT or SIGTERM, then ships what was
// captured and returns.
func (c *WatchCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet(c.env, "watch", "watch [<DB>...] [--dir DIR [--pattern GLOB] [--recursive]]... -b <BUCKET> [--snapshot-interval SECS] [--name NAME] [--endpoint URL]")
	var sf storageFlags
	sf.register(fs)
	interval := fs.Int("snapshot-interval", 3600, "seconds between snapshots of a database that changed (0: only when a generation starts)")
	name := fs.String("name", "", "name in the bucket (only with one database; default: file name without extension)")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "how long to keep shipping after SIGINT/SIGTERM")
	uploads := fs.Int("uploads", 4, "concurrent uploads")
	syncInterval := fs.Duration("sync-interval", time.Second, "commits within this interval of the previous capture are shipped together as one segment (0: every commit at once)")
	takeover := fs.Bool("takeover", false, "take over names another walsync (on another host, or for another file) left claimed in the bucket")
	retention := fs.Duration("retention", 0, "keep every restore point of this window (e.g. 72h) and delete what none needs; 0 keeps everything")
	var dirs stringList
	fs.Var(&dirs, "dir", "follow the databases under this directory as they come and go (repeatable); a database's name is its path relative to it without the extension")
	pattern := fs.String("pattern", replicate.DefaultPattern, "with --dir: the file names to follow (a glob)")
	recursive := fs.Bool("recursive", false, "with --dir: look in subdirectories too")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 && len(dirs) == 0 {
		return usagef("want at least one database path or --dir")
	}
	if _, err := filepath.Match(*pattern, "x"); err != nil {
		return usagef("--pattern %q: %v", *pattern, err)
	}
	if *name != "" && len(pos) != 1 {
		return usagef("--name works with one database; %d given", len(pos))
	}
	if *syncInterval < 0 {
		return usagef("--sync-interval %v: want a duration >= 0, e.g. 1s", *syncInterval)
	}
	if *retention < 0 {
		return usagef("--retention %v: want a duration >= 0, e.g. 72h", *retention)
	}
	if *interval < 0 {
		return usagef("--snapshot-interval %d: want seconds >= 0", *interval)
	}
	paths := make([]string, len(pos))
	for i, p := range pos {
		if paths[i], err = filepath.Abs(p); err != nil {
			return err
		}
	}
	names, err := walsync.UniqueNames(paths)
	if err != nil {
		return err
	}
	sources, err := dirSources(dirs, *pattern, *recursive, names)
	if err != nil {
		return err
	}
	if *name != "" {
		if err := walsync.ValidateName(*name); err != nil {
			return usagef("%v", err)
		}
		names[paths[0]] = *name
	}
	log, err := sf.logger(c.env, slog.LevelInfo)
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	w := &replicate.Watcher{
		Storage:          st,
		Logger:           log,
		SnapshotInterval: time.Duration(*interval) * time.Second,
		ShutdownTimeout:  *shutdown,
		Uploads:          *uploads,
		Retention:        *retention,
		Takeover:         *takeover,
		SyncInterval:     *syncInterval,
		Dirs:             sources,
		// Once every database is open, the start-up code is behind us.
		OnReady: pageOutExecutable,
	}
	for _, p := range paths {
		if err := w.Add(p, names[p]); err != nil {
			return err
		}
		log.Info("replicating", "db", p, "name", names[p])
	}
	logFileLimit(log, len(paths))
	watchGC()
	// The CLI's start-up (flags, the AWS configuration) is behind: without
	// this page-out, the first snapshots of every database ran with the
	// whole binary resident, and the process peaked at 25.4 MiB at 100
	// databases (VmHWM) against 23.3 MiB with it.
	pageOutExecutable()
	return w.Run(ctx)
}

// watchGC sets the garbage collector's target to 50 % heap growth instead
// of Go's 100 %, unless GOGC says otherwise. A watcher's live heap is small
// (about 2.5 MB at 100 databases) and most of what it allocates is garbage
// within one capture or one request, so the heap goal, twice the live heap,
// was a quarter of its RSS. At 100 databases under load (bench/density.sh,
// same run) 50 % gave 22.4 MiB RSS against 23.9 MiB, at 38 % of a core
// against 40 %.
func watchGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// dirSources checks the --dir directories and what they hold now: each
// must be a directory, and no two databases (under the directories, or
// given by path with names) may share a name; both paths are named.
func dirSources(dirs []string, pattern string, recursive bool, names map[string]string) ([]replicate.DirSource, error) {
	byName := map[string]string{}
	for p, n := range names {
		byName[n] = p
	}
	var out []replicate.DirSource
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("--dir %s: %w", d, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("--dir %s: not a directory", d)
		}
		s := replicate.DirSource{Dir: abs, Pattern: pattern, Recursive: recursive}
		found, err := s.Candidates()
		if err != nil {
			return nil, fmt.Errorf("--dir %s: %w", d, err)
		}
		for p, n := range found {
			if _, given := names[p]; given {
				continue // named by its path already
			}
			if other, dup := byName[n]; dup && other != p {
				return nil, fmt.Errorf("%s and %s would share the name %q (use one --dir, or name the database by its path with --name)", other, p, n)
			}
			byName[n] = p
		}
		out = append(out, s)
	}
	return out, nil
}
