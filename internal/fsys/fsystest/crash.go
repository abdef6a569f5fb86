//go:build linux

package fsystest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/walsync/walsync/internal/fsys"
)

// ErrCrashed is the error of every call after the crash point.
var ErrCrashed = errors.New("crashed (test)")

// Crash is the real file system up to a crash point, after which every
// call fails with ErrCrashed, as if the machine had stopped there. Reboot
// then rewrites what went through it to what a machine that lost power
// would keep: a file's content as of its last fsync (empty if never
// synced), a name as of the last fsync of its directory (a directory never
// synced keeps the names it had when first used). Files and names that
// never went through it (the application's database) are left alone.
//
// Steps are the calls that change something: creating, opening for
// writing, writing, truncating, fsyncing, making directories, linking,
// renaming, removing. Steps counts them; CrashAt(n) stops before the n-th.
type Crash struct {
	mu      sync.Mutex
	steps   int
	crashAt int // 0: never
	crashed bool
	log     []string

	ids     map[uint64]int // inode → identity of the file it holds now
	nextID  int
	content map[int][]byte              // identity → content as of its last fsync
	names   map[string]map[string]entry // directory → its durable names
	touched map[string]bool             // paths whose durable state Reboot restores
}

type entry struct {
	dir bool
	id  int
}

var _ fsys.OS = (*Crash)(nil)

// NewCrash returns a Crash that never crashes until CrashAt is called.
func NewCrash() *Crash {
	return &Crash{ids: map[uint64]int{}, content: map[int][]byte{}, names: map[string]map[string]entry{}, touched: map[string]bool{}}
}

// CrashAt makes step n (counted from 1 since NewCrash) and every call
// after it fail.
func (c *Crash) CrashAt(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.crashAt = n
}

// Steps is the number of steps done (a crashed one not counted).
func (c *Crash) Steps() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.steps
}

// Crashed reports whether the crash point was reached.
func (c *Crash) Crashed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crashed
}

// Log is the op label of every step done, in order.
func (c *Crash) Log() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log...)
}

// step admits one call; mutating calls count. Called with c.mu held.
func (c *Crash) step(op string, mutating bool) error {
	if c.crashed {
		return &fs.PathError{Op: op, Path: "(crashed)", Err: ErrCrashed}
	}
	if !mutating {
		return nil
	}
	if c.crashAt > 0 && c.steps+1 >= c.crashAt {
		c.crashed = true
		return &fs.PathError{Op: op, Path: "(crashed)", Err: ErrCrashed}
	}
	c.steps++
	c.log = append(c.log, op)
	return nil
}

func (c *Crash) gate(step string, mutating bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.step(step, mutating)
}

// touch records that the durable state of path matters, first noting what
// its directory durably holds now. Called with c.mu held, before the
// change.
func (c *Crash) touch(path string) {
	path = filepath.Clean(path)
	c.noteDir(filepath.Dir(path))
	if !c.touched[path] {
		c.touched[path] = true
		// A file that was there before: its content now is durable.
		if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
			id := c.idOf(fi)
			if _, ok := c.content[id]; !ok {
				if b, err := os.ReadFile(path); err == nil {
					c.content[id] = b
				}
			}
		}
	}
}

// noteDir records what dir durably holds, if not known yet: what it
// holds now, before the first change made through c. Called with c.mu
// held.
func (c *Crash) noteDir(dir string) {
	dir = filepath.Clean(dir)
	if _, ok := c.names[dir]; !ok {
		c.names[dir] = c.listing(dir)
	}
}

// idOf is the identity of the file fi describes.
func (c *Crash) idOf(fi fs.FileInfo) int {
	ino := fi.Sys().(*syscall.Stat_t).Ino
	id, ok := c.ids[ino]
	if !ok {
		c.nextID++
		id = c.nextID
		c.ids[ino] = id
	}
	return id
}

// fresh gives the file fi describes a new identity: it was just created.
func (c *Crash) fresh(fi fs.FileInfo) {
	c.nextID++
	c.ids[fi.Sys().(*syscall.Stat_t).Ino] = c.nextID
}

// listing is what the directory dir holds now.
func (c *Crash) listing(dir string) map[string]entry {
	m := map[string]entry{}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		fi, err := os.Lstat(filepath.Join(dir, de.Name()))
		if err != nil {
			continue
		}
		if fi.IsDir() {
			m[de.Name()] = entry{dir: true}
		} else {
			m[de.Name()] = entry{id: c.idOf(fi)}
		}
	}
	return m
}

// synced records an fsync of f: a file's content, or a directory's names.
func (c *Crash) synced(f fsys.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	if fi.IsDir() {
		c.names[filepath.Clean(f.Name())] = c.listing(f.Name())
		return
	}
	of, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return
	}
	// Through the descriptor: the file may have been renamed.
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", of.Fd()))
	if err == nil {
		c.content[c.idOf(fi)] = b
	}
}

func (c *Crash) wrap(op string) func(*os.File, error) (fsys.File, error) {
	return func(f *os.File, err error) (fsys.File, error) {
		if err != nil {
			return nil, err
		}
		return &gatedFile{File: f, op: op, gate: c.gate, synced: c.synced}, nil
	}
}

func (c *Crash) CreateTemp(op, dir, pattern string) (fsys.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step(op, true); err != nil {
		return nil, err
	}
	c.noteDir(dir)
	f, err := os.CreateTemp(dir, pattern)
	if err == nil {
		c.touched[filepath.Clean(f.Name())] = true
		if fi, serr := f.Stat(); serr == nil {
			c.fresh(fi)
		}
	}
	return c.wrap(op)(f, err)
}

func (c *Crash) Open(op, name string) (fsys.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step(op, false); err != nil {
		return nil, err
	}
	return c.wrap(op)(os.Open(name))
}

func (c *Crash) OpenFile(op, name string, flag int, perm fs.FileMode) (fsys.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	writes := flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0
	if err := c.step(op, writes); err != nil {
		return nil, err
	}
	if !writes {
		return c.wrap(op)(os.OpenFile(name, flag, perm))
	}
	_, existed := os.Lstat(name)
	c.touch(name)
	f, err := os.OpenFile(name, flag, perm)
	if err == nil && existed != nil {
		if fi, serr := f.Stat(); serr == nil {
			c.fresh(fi)
		}
	}
	return c.wrap(op)(f, err)
}

// change runs a call that changes the names of paths, as a step.
func (c *Crash) change(op string, do func() error, paths ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step(op, true); err != nil {
		return err
	}
	for _, p := range paths {
		c.touch(p)
	}
	return do()
}

func (c *Crash) Mkdir(op, name string, perm fs.FileMode) error {
	return c.change(op, func() error { return os.Mkdir(name, perm) }, name)
}

func (c *Crash) Link(op, oldname, newname string) error {
	return c.change(op, func() error { return os.Link(oldname, newname) }, oldname, newname)
}

func (c *Crash) Rename(op, oldname, newname string) error {
	return c.change(op, func() error { return os.Rename(oldname, newname) }, oldname, newname)
}

func (c *Crash) Remove(op, name string) error {
	return c.change(op, func() error { return os.Remove(name) }, name)
}

func (c *Crash) Stat(op, name string) (fs.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step(op, false); err != nil {
		return nil, err
	}
	return os.Stat(name)
}

func (c *Crash) ReadDir(op, name string) ([]fs.DirEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step(op, false); err != nil {
		return nil, err
	}
	return os.ReadDir(name)
}

// Reboot puts every path that went through c back to its durable state
// (the type's comment) and makes c the real file system again, counting
// steps anew with no crash point. Files must be closed first.
func (c *Crash) Reboot() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	paths := make([]string, 0, len(c.touched))
	for p := range c.touched {
		paths = append(paths, p)
	}
	// Parents before children.
	sort.Slice(paths, func(i, j int) bool {
		di, dj := strings.Count(paths[i], string(filepath.Separator)), strings.Count(paths[j], string(filepath.Separator))
		if di != dj {
			return di < dj
		}
		return paths[i] < paths[j]
	})
	gone := map[string]bool{} // directories not kept
	for _, p := range paths {
		dir := filepath.Dir(p)
		if gone[dir] {
			gone[p] = true
			continue
		}
		names, known := c.names[dir]
		if !known {
			continue
		}
		e, kept := names[filepath.Base(p)]
		switch {
		case !kept:
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			gone[p] = true
		case e.dir:
			if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
				if err := os.Remove(p); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		default:
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			if err := os.WriteFile(p, c.content[e.id], 0o644); err != nil {
				return err
			}
		}
	}
	c.steps, c.crashAt, c.crashed, c.log = 0, 0, false, nil
	c.ids, c.content, c.names, c.touched = map[uint64]int{}, map[int][]byte{}, map[string]map[string]entry{}, map[string]bool{}
	return nil
}
