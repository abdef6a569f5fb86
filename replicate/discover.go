package replicate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/walsync/walsync"
)

// DirSource is a directory whose databases a watcher follows as they
// come and go (`walsync watch --dir`): every regular file under Dir whose
// base name matches Pattern (in subdirectories too with Recursive) and
// that is a SQLite database in WAL mode. Its name in the bucket is its
// path relative to Dir without the extension, so that it never changes
// as other databases come and go.
type DirSource struct {
	Dir       string // absolute, clean
	Pattern   string // filepath.Match pattern of base names; "" means *.db
	Recursive bool
	Overrides // settings of the databases under it
}

// covers says whether a file at path would be a candidate of s.
func (s DirSource) covers(path string) bool {
	rel, err := filepath.Rel(s.Dir, path)
	if err != nil || strings.HasPrefix(rel, "..") || rel == "." {
		return false
	}
	if !s.Recursive && filepath.Dir(rel) != "." {
		return false
	}
	for _, part := range strings.Split(filepath.ToSlash(filepath.Dir(rel)), "/") {
		if strings.HasPrefix(part, ".") && part != "." {
			return false
		}
	}
	ok, _ := filepath.Match(s.pattern(), filepath.Base(path))
	return ok
}

// DefaultPattern is the pattern of a DirSource that gives none.
const DefaultPattern = "*.db"

func (s DirSource) pattern() string {
	if s.Pattern == "" {
		return DefaultPattern
	}
	return s.Pattern
}

// Name is the bucket name of the database at path under s.
func (s DirSource) Name(path string) (string, error) {
	rel, err := filepath.Rel(s.Dir, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("%s is not under %s", path, s.Dir)
	}
	rel = filepath.ToSlash(rel)
	base := walsync.NameFromPath(filepath.Base(rel))
	if dir := filepath.ToSlash(filepath.Dir(rel)); dir != "." {
		base = dir + "/" + base
	}
	if err := walsync.ValidateName(base); err != nil {
		return "", err
	}
	return base, nil
}

// Candidates lists the files under s that match its pattern, with their
// names. Hidden directories (walsync's spools among them) are skipped.
func (s DirSource) Candidates() (map[string]string, error) {
	out := map[string]string{}
	var walk func(dir string) error
	walk = func(dir string) error {
		des, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, de := range des {
			n := de.Name()
			p := filepath.Join(dir, n)
			if de.IsDir() {
				if s.Recursive && !strings.HasPrefix(n, ".") {
					if err := walk(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return err
					}
				}
				continue
			}
			if !de.Type().IsRegular() {
				continue
			}
			if ok, _ := filepath.Match(s.pattern(), n); !ok {
				continue
			}
			if name, err := s.Name(p); err == nil {
				out[p] = name
			}
		}
		return nil
	}
	return out, walk(s.Dir)
}

// walDatabase says whether the file at path is a SQLite database in WAL
// mode, and if not, why (for the log).
func walDatabase(path string) (bool, string) {
	f, h, err := openDatabase(path)
	if err != nil {
		return false, err.Error()
	}
	f.Close()
	if h.WriteVersion != 2 {
		return false, "not in WAL mode (walsync follows the WAL; PRAGMA journal_mode=WAL)"
	}
	return true, ""
}

// discoverEvery is how often the directories are looked through: a
// database that appears is followed within about this long.
const discoverEvery = time.Second

// discoverWorkers is how many new databases discovery starts at once.
const discoverWorkers = 8

// discovered is what discovery knows of one file.
type discovered struct {
	name     string
	followed bool
	why      string // why it is not followed (logged once while it stays the same)
	next     time.Time
	backoff  time.Duration
}

// discover follows the databases that appear under w.Dirs and releases
// those that are deleted, until ctx ends.
func (w *Watcher) discover(ctx context.Context, seen map[string]*discovered) {
	t := time.NewTicker(discoverEvery)
	defer t.Stop()
	for {
		w.discoverOnce(ctx, seen)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// discoverOnce looks through w.Dirs once.
func (w *Watcher) discoverOnce(ctx context.Context, seen map[string]*discovered) {
	sources := w.dirs()
	present := map[string]string{}
	from := map[string]int{}
	for i, s := range sources {
		c, err := s.Candidates()
		if err != nil {
			w.logger().Warn("cannot look through the directory; looking again", "dir", s.Dir, "err", err)
			continue
		}
		for p, n := range c {
			if _, dup := present[p]; !dup {
				present[p], from[p] = n, i
			}
		}
	}
	now := time.Now()
	// New databases are followed discoverWorkers at a time: a start is
	// mostly waiting for fsyncs (spool, snapshot, state), and 10,000
	// databases one after the other took 5 minutes.
	var (
		mu   sync.Mutex // guards the entries of seen while followers run
		wg   sync.WaitGroup
		slot = make(chan struct{}, discoverWorkers)
	)
	for p, name := range present {
		e := seen[p]
		if e == nil {
			e = &discovered{name: name}
			seen[p] = e
		}
		if e.followed || now.Before(e.next) || ctx.Err() != nil {
			continue
		}
		if w.byPath(p) != nil {
			continue // given by its path (or a configuration entry): followed as such
		}
		if ok, why := walDatabase(p); !ok {
			mu.Lock()
			e.note(w, p, why)
			mu.Unlock()
			continue
		}
		slot <- struct{}{}
		wg.Go(func() {
			defer func() { <-slot }()
			err := w.FollowWith(ctx, p, name, sources[from[p]].Overrides)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				e.note(w, p, err.Error())
				e.backoff = min(max(2*e.backoff, discoverEvery), time.Minute)
				e.next = now.Add(e.backoff)
				return
			}
			e.followed, e.why, e.backoff = true, "", 0
			w.logger().Info("replicating", "db", p, "name", name)
		})
	}
	wg.Wait()
	for p, e := range seen {
		if _, ok := present[p]; ok || ctx.Err() != nil {
			continue
		}
		if !e.followed {
			delete(seen, p)
			continue
		}
		if _, err := os.Stat(p); err == nil {
			covered := false
			for _, s := range sources {
				covered = covered || s.covers(p)
			}
			if covered {
				continue // created again after the listing: the next one finds it
			}
			// Its directory is no longer one to follow (a reload).
			delete(seen, p)
			if err := w.Release(ctx, p); err != nil {
				w.logger().Warn("no longer replicated; what its spool holds is shipped at the next start", "db", p, "err", err)
			} else {
				w.logger().Info("no longer replicated: its directory left the configuration", "db", p, "name", e.name)
			}
			continue
		}
		delete(seen, p)
		w.forget(ctx, p, e.name)
	}
}

// note logs why p is not followed, once while the reason stays the same.
func (e *discovered) note(w *Watcher, p, why string) {
	if why == e.why {
		return
	}
	e.why = why
	w.logger().Info("not replicated yet; looking again", "db", p, "name", e.name, "why", why)
}

// forget stops following a database whose file was deleted: what was
// captured is shipped, then its spool is removed; its backups stay.
func (w *Watcher) forget(ctx context.Context, p, name string) {
	if err := w.Release(ctx, p); err != nil {
		w.logger().Warn("the database was deleted; what it left in its spool is kept for the next start", "db", p, "name", name, "err", err)
		return
	}
	if err := os.RemoveAll(spoolDir(p)); err != nil {
		w.logger().Warn("could not remove the spool of a deleted database", "db", p, "err", err)
	}
	w.logger().Info("the database was deleted: no longer replicated (its backups stay)", "db", p, "name", name)
}

// dirs returns the directories followed now.
func (w *Watcher) dirs() []DirSource {
	w.dirMu.Lock()
	defer w.dirMu.Unlock()
	return w.Dirs
}

// SetDirs replaces the directories of a running watcher (a configuration
// reload): the next listing follows what the new ones hold and releases
// what only the old ones held (their spools stay).
func (w *Watcher) SetDirs(dirs []DirSource) {
	w.dirMu.Lock()
	defer w.dirMu.Unlock()
	w.Dirs = slices.Clone(dirs)
}
