package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
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
	fs := newFlagSet(c.env, "watch", "watch [<DB>...] [--dir DIR [--pattern GLOB] [--recursive]]... [-c walsync.yml] -b <BUCKET> [--snapshot-interval 1h] [--name NAME] [--endpoint URL]")
	var sf storageFlags
	sf.register(fs)
	interval := durationFlag(time.Hour)
	fs.Var(&interval, "snapshot-interval", "how often a database that changed gets a snapshot: a duration (1h, 30m) or seconds (0: only when a generation starts)")
	name := fs.String("name", "", "name in the bucket (only with one database; default: file name without extension)")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "how long to keep shipping after SIGINT/SIGTERM")
	uploads := fs.Int("uploads", 4, "concurrent uploads")
	syncInterval := fs.Duration("sync-interval", time.Second, "commits within this interval of the previous capture are shipped together as one segment (0: every commit at once)")
	takeover := fs.Bool("takeover", false, "take over names another walsync (on another host, or for another file) left claimed in the bucket")
	retention := fs.Duration("retention", 0, "keep every restore point of this window (e.g. 72h) and delete what none needs; 0 keeps everything")
	idleClose := fs.Duration("idle-close", 30*time.Second, "close a database's files after it has been idle this long, every commit captured, until it changes again (0: keep them open)")
	var dirs stringList
	fs.Var(&dirs, "dir", "follow the databases under this directory as they come and go (repeatable); a database's name is its path relative to it without the extension")
	pattern := fs.String("pattern", replicate.DefaultPattern, "with --dir: the file names to follow (a glob)")
	recursive := fs.Bool("recursive", false, "with --dir: look in subdirectories too")
	configPath := fs.String("c", os.Getenv("WALSYNC_CONFIG"), "configuration file (YAML, docs/CONFIG.md; also --config and WALSYNC_CONFIG); flags given beside it win; SIGHUP reads it again")
	fs.StringVar(configPath, "config", os.Getenv("WALSYNC_CONFIG"), "configuration file (same as -c)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var cfg *fileConfig
	if *configPath != "" {
		if cfg, err = loadConfig(*configPath, os.LookupEnv); err != nil {
			return err
		}
		cfg.applyTo(&sf, given, &interval, syncInterval, retention, shutdown, idleClose)
	}
	if len(pos) == 0 && len(dirs) == 0 && (cfg == nil || len(cfg.DBs) == 0) {
		return usagef("want at least one database path, --dir, or a configuration file with dbs")
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
	if *idleClose < 0 {
		return usagef("--idle-close %v: want a duration >= 0, e.g. 30s", *idleClose)
	}
	if *name != "" {
		if err := walsync.ValidateName(*name); err != nil {
			return usagef("%v", err)
		}
	}
	set, err := buildSet(pos, *name, dirs, *pattern, *recursive, cfg)
	if err != nil {
		return err
	}
	log, err := sf.logger(c.env, slog.LevelInfo)
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	var reloads sync.WaitGroup
	reloadCtx, stopReloads := context.WithCancel(ctx)
	defer func() {
		stopReloads() // Run returned, at a shutdown or a failed start
		reloads.Wait()
	}()
	ready := make(chan struct{})
	w := &replicate.Watcher{
		Storage:          st,
		Logger:           log,
		SnapshotInterval: time.Duration(interval),
		ShutdownTimeout:  *shutdown,
		Uploads:          *uploads,
		Retention:        *retention,
		IdleClose:        *idleClose,
		Takeover:         *takeover,
		SyncInterval:     *syncInterval,
		Dirs:             set.dirs,
		// A reload may add directories, and retention to some entries.
		Discover:          cfg != nil,
		RetentionPossible: cfg != nil,
		OnReady: func() {
			// Once every database is open, the start-up code is behind us.
			pageOutExecutable()
			close(ready)
		},
	}
	for _, p := range set.order {
		e := set.paths[p]
		if err := w.AddWith(p, e.name, e.o); err != nil {
			return err
		}
		log.Info("replicating", "db", p, "name", e.name)
	}
	logFileLimit(log, len(set.paths))
	watchGC()
	// The CLI's start-up (flags, the AWS configuration) is behind: without
	// this page-out, the first snapshots of every database ran with the
	// whole binary resident, and the process peaked at 25.4 MiB at 100
	// databases (VmHWM) against 23.3 MiB with it.
	pageOutExecutable()
	reloads.Go(func() {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		select {
		case <-ready:
		case <-reloadCtx.Done():
			return
		}
		for {
			select {
			case <-reloadCtx.Done():
				return
			case <-hup:
			}
			if *configPath == "" {
				log.Warn("SIGHUP: there is no configuration file to read again (-c)")
				continue
			}
			next, err := loadConfig(*configPath, os.LookupEnv)
			if err == nil {
				set, err = set.reload(reloadCtx, w, log, cfg, next, pos, *name, dirs, *pattern, *recursive)
			}
			if err != nil {
				log.Warn("SIGHUP: the configuration was not reloaded; the running one stays", "err", err)
				continue
			}
			cfg = next
		}
	})
	return w.Run(ctx)
}

// durationFlag is a flag that takes a Go duration or a number of seconds.
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(v string) error {
	x, err := parseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration such as 1h or a number of seconds")
	}
	*d = durationFlag(x)
	return nil
}

// applyTo puts the file's settings where no flag was given.
func (c *fileConfig) applyTo(sf *storageFlags, given map[string]bool, snap *durationFlag, syncInterval, retention, shutdown, idleClose *time.Duration) {
	if !given["b"] && !given["bucket"] && c.Bucket != "" {
		sf.bucket = c.Bucket
	}
	if !given["endpoint"] && c.Endpoint != "" {
		sf.endpoint = c.Endpoint
	}
	if !given["region"] && c.Region != "" {
		sf.region = c.Region
	}
	if !given["snapshot-interval"] && c.SnapshotInterval != nil {
		*snap = durationFlag(c.SnapshotInterval.d)
	}
	if !given["sync-interval"] && c.SyncInterval != nil {
		*syncInterval = c.SyncInterval.d
	}
	if !given["retention"] && c.Retention != nil {
		*retention = c.Retention.d
	}
	if !given["shutdown-timeout"] && c.ShutdownTimeout != nil {
		*shutdown = c.ShutdownTimeout.d
	}
	if !given["idle-close"] && c.IdleClose != nil {
		*idleClose = c.IdleClose.d
	}
}

// pathEntry is a database followed by its path.
type pathEntry struct {
	name string
	o    replicate.Overrides
	line int // in the configuration file; 0: the command line
}

// same says whether e and o follow a database the same way: its name
// and settings (by value: each reading of the file makes new ones).
func (e pathEntry) same(o pathEntry) bool { return e.name == o.name && e.o.Equal(o.o) }

// dbSet is what watch follows: databases by path and directories.
type dbSet struct {
	paths map[string]pathEntry
	order []string // paths in the order given
	dirs  []replicate.DirSource
}

// buildSet gathers the databases of the command line and of cfg (nil:
// none). Paths without a name share the shortest-unique-suffix rule; no
// two databases, by path or under a directory, may share a name.
func buildSet(pos []string, name string, dirs []string, pattern string, recursive bool, cfg *fileConfig) (*dbSet, error) {
	set := &dbSet{paths: map[string]pathEntry{}}
	var unnamed []string
	add := func(p string, e pathEntry) error {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		if _, dup := set.paths[abs]; dup {
			return fmt.Errorf("database %s given twice", abs)
		}
		set.paths[abs] = e
		set.order = append(set.order, abs)
		if e.name == "" {
			unnamed = append(unnamed, abs)
		}
		return nil
	}
	for _, p := range pos {
		if err := add(p, pathEntry{name: name}); err != nil {
			return nil, err
		}
	}
	if cfg != nil {
		for _, e := range cfg.DBs {
			if e.Path != "" {
				if err := add(e.Path, pathEntry{name: e.Name, o: e.overrides(), line: e.line}); err != nil {
					return nil, err
				}
			}
		}
	}
	names, err := walsync.UniqueNames(unnamed)
	if err != nil {
		return nil, err
	}
	byName := map[string]string{}
	for _, p := range set.order {
		e := set.paths[p]
		if e.name == "" {
			e.name = names[p]
			set.paths[p] = e
		}
		if other, dup := byName[e.name]; dup {
			return nil, fmt.Errorf("%s and %s would share the name %q", other, p, e.name)
		}
		byName[e.name] = p
	}
	var sources []replicate.DirSource
	for _, d := range dirs {
		sources = append(sources, replicate.DirSource{Dir: d, Pattern: pattern, Recursive: recursive})
	}
	if cfg != nil {
		for _, e := range cfg.DBs {
			if e.Dir != "" {
				sources = append(sources, replicate.DirSource{Dir: e.Dir, Pattern: e.Pattern, Recursive: e.Recursive, Overrides: e.overrides()})
			}
		}
	}
	if set.dirs, err = dirSources(sources, byName); err != nil {
		return nil, err
	}
	return set, nil
}

// reload applies the configuration next to a running watcher: databases
// by path that are new start, those gone stop, those whose name or
// settings changed restart; the directories are replaced; the rest is
// untouched. Settings that only a restart can change are logged as such.
func (set *dbSet) reload(ctx context.Context, w *replicate.Watcher, log *slog.Logger, old, next *fileConfig,
	pos []string, name string, dirs []string, pattern string, recursive bool) (*dbSet, error) {
	ns, err := buildSet(pos, name, dirs, pattern, recursive, next)
	if err != nil {
		return nil, err
	}
	for _, k := range []struct {
		key      string
		was, now any
	}{
		{"bucket", old.Bucket, next.Bucket}, {"endpoint", old.Endpoint, next.Endpoint}, {"region", old.Region, next.Region},
		{"sync-interval", old.SyncInterval, next.SyncInterval}, {"snapshot-interval", old.SnapshotInterval, next.SnapshotInterval},
		{"retention", old.Retention, next.Retention}, {"shutdown-timeout", old.ShutdownTimeout, next.ShutdownTimeout},
		{"idle-close", old.IdleClose, next.IdleClose},
	} {
		if fmt.Sprint(deref(k.was)) != fmt.Sprint(deref(k.now)) {
			log.Warn("SIGHUP: this setting changes at the next start, not now", "key", k.key)
		}
	}
	for _, p := range set.order {
		e, keep := ns.paths[p]
		if keep && e.same(set.paths[p]) {
			continue
		}
		if err := w.Release(ctx, p); err != nil {
			log.Warn("SIGHUP: stopped; what its spool holds is shipped at the next start", "db", p, "err", err)
		} else {
			log.Info("SIGHUP: no longer replicated", "db", p, "name", set.paths[p].name)
		}
	}
	for _, p := range ns.order {
		e := ns.paths[p]
		if was, ok := set.paths[p]; ok && was.same(e) {
			continue
		}
		if err := w.FollowWith(ctx, p, e.name, e.o); err != nil {
			log.Warn("SIGHUP: cannot replicate this database", "db", p, "name", e.name, "err", err)
			continue
		}
		log.Info("SIGHUP: replicating", "db", p, "name", e.name)
	}
	w.SetDirs(ns.dirs)
	log.Info("SIGHUP: configuration reloaded", "databases", len(ns.paths), "directories", len(ns.dirs))
	return ns, nil
}

// deref prints a *duration's value, not its address.
func deref(v any) any {
	if d, ok := v.(*duration); ok {
		if d == nil {
			return "unset"
		}
		return d.d
	}
	return v
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

// dirSources checks the directories and what they hold now: each must
// be a directory, and no two databases (under the directories, or by
// path: byName) may share a name; both paths are named.
func dirSources(sources []replicate.DirSource, byName map[string]string) ([]replicate.DirSource, error) {
	explicit := map[string]bool{}
	for _, p := range byName {
		explicit[p] = true
	}
	var out []replicate.DirSource
	for _, s := range sources {
		abs, err := filepath.Abs(s.Dir)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("dir %s: %w", s.Dir, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("dir %s: not a directory", s.Dir)
		}
		s.Dir = abs
		found, err := s.Candidates()
		if err != nil {
			return nil, fmt.Errorf("dir %s: %w", s.Dir, err)
		}
		for p, n := range found {
			if explicit[p] {
				continue // given by its path: followed as such
			}
			if other, dup := byName[n]; dup && other != p {
				return nil, fmt.Errorf("%s and %s would share the name %q (use one dir, or name the database by its path)", other, p, n)
			}
			byName[n] = p
		}
		out = append(out, s)
	}
	return out, nil
}
