// Package fsystest has file systems for tests of walsync's own files
// (package fsys): Faulty fails named steps, Crash stops at a step and then
// keeps only what was synced, as a machine that lost power would.
package fsystest

import (
	"errors"
	"io/fs"
	"maps"
	"slices"
	"sync"

	"github.com/walsync/walsync/internal/fsys"
)

// ErrInjected is the error of a step Faulty fails.
var ErrInjected = errors.New("injected fault")

// Faulty passes every call to Base (fsys.System when nil) and fails the
// steps set with Fail. A step is the op label of a call; a file's writes,
// truncations and fsyncs are the label of the call that opened it plus
// ":write", ":truncate" or ":sync". Reads (Stat, ReadDir, a file's reads)
// are never failed.
type Faulty struct {
	Base fsys.OS

	mu   sync.Mutex
	fail map[string]int // step → failures left (<0: always)
	seen map[string]int // step → times seen
}

var _ fsys.OS = (*Faulty)(nil)

// Fail makes the next times calls of step fail with ErrInjected (times <
// 0: every call; 0: none again).
func (f *Faulty) Fail(step string, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[string]int{}
	}
	if times == 0 {
		delete(f.fail, step)
		return
	}
	f.fail[step] = times
}

// Seen returns the steps seen so far, sorted.
func (f *Faulty) Seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.seen))
}

// Count is how many times step was seen.
func (f *Faulty) Count(step string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[step]
}

func (f *Faulty) gate(step string, mutating bool) error {
	if !mutating {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]int{}
	}
	f.seen[step]++
	switch n := f.fail[step]; {
	case n == 0:
		return nil
	case n > 0:
		if n == 1 {
			delete(f.fail, step)
		} else {
			f.fail[step] = n - 1
		}
	}
	return &fs.PathError{Op: step, Path: "(injected)", Err: ErrInjected}
}

func (f *Faulty) base() fsys.OS { return fsys.Or(f.Base) }

func (f *Faulty) CreateTemp(op, dir, pattern string) (fsys.File, error) {
	if err := f.gate(op, true); err != nil {
		return nil, err
	}
	return f.file(op, true)(f.base().CreateTemp(op, dir, pattern))
}

func (f *Faulty) Open(op, name string) (fsys.File, error) {
	if err := f.gate(op, true); err != nil {
		return nil, err
	}
	return f.file(op, true)(f.base().Open(op, name))
}

func (f *Faulty) OpenFile(op, name string, flag int, perm fs.FileMode) (fsys.File, error) {
	if err := f.gate(op, true); err != nil {
		return nil, err
	}
	return f.file(op, true)(f.base().OpenFile(op, name, flag, perm))
}

func (f *Faulty) file(op string, _ bool) func(fsys.File, error) (fsys.File, error) {
	return func(file fsys.File, err error) (fsys.File, error) {
		if err != nil {
			return nil, err
		}
		return &gatedFile{File: file, op: op, gate: f.gate}, nil
	}
}

func (f *Faulty) Mkdir(op, name string, perm fs.FileMode) error {
	if err := f.gate(op, true); err != nil {
		return err
	}
	return f.base().Mkdir(op, name, perm)
}

func (f *Faulty) Link(op, oldname, newname string) error {
	if err := f.gate(op, true); err != nil {
		return err
	}
	return f.base().Link(op, oldname, newname)
}

func (f *Faulty) Rename(op, oldname, newname string) error {
	if err := f.gate(op, true); err != nil {
		return err
	}
	return f.base().Rename(op, oldname, newname)
}

func (f *Faulty) Remove(op, name string) error {
	if err := f.gate(op, true); err != nil {
		return err
	}
	return f.base().Remove(op, name)
}

// Stat is never failed: a step that only reads leaves nothing to check.
func (f *Faulty) Stat(op, name string) (fs.FileInfo, error) { return f.base().Stat(op, name) }

// ReadDir is never failed (Stat).
func (f *Faulty) ReadDir(op, name string) ([]fs.DirEntry, error) { return f.base().ReadDir(op, name) }

// gatedFile asks gate before each call: with mutating true before a
// write, truncation or fsync, false before a read.
type gatedFile struct {
	fsys.File
	op     string
	gate   func(step string, mutating bool) error
	synced func(fsys.File) // after a successful Sync, if set
}

func (f *gatedFile) Read(p []byte) (int, error) {
	if err := f.gate(f.op+":read", false); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *gatedFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.gate(f.op+":read", false); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *gatedFile) Write(p []byte) (int, error) {
	if err := f.gate(f.op+":write", true); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *gatedFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.gate(f.op+":write", true); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *gatedFile) Truncate(size int64) error {
	if err := f.gate(f.op+":truncate", true); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *gatedFile) Sync() error {
	if err := f.gate(f.op+":sync", true); err != nil {
		return err
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	if f.synced != nil {
		f.synced(f.File)
	}
	return nil
}
