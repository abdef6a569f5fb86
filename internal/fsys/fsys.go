// Package fsys is the file-system seam of walsync's own files: the file
// backend's objects (package file), the spool of captured frames and its
// segments (package replicate) and a restore's output (package restore)
// are written through an OS, never through package os directly. Every call
// carries an op label naming the step it serves ("state:rename",
// "segment:sync", "restore:rename", ...), so that a test can fail exactly
// one named step, or stop at any step and keep only what was synced
// (package fsystest), and check what is left behind. System is the real
// file system.
//
// What stays outside: the application's own files (the database, its WAL
// and wal-index, which walsync reads and locks, never writes), the spool's
// owner lock (an flock, not data) and the signal files other processes
// touch (Nudge, RequestFlush): losing them loses no data.
package fsys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// OS is a file system. The op label of each call names the step for
// tests; the real file system ignores it.
type OS interface {
	// CreateTemp creates a new file in dir, named from pattern as
	// os.CreateTemp names it, open for reading and writing.
	CreateTemp(op, dir, pattern string) (File, error)
	// Open opens name (a file or a directory) for reading.
	Open(op, name string) (File, error)
	// OpenFile opens name as os.OpenFile does.
	OpenFile(op, name string, flag int, perm fs.FileMode) (File, error)
	// Mkdir creates the directory name; it fails with fs.ErrExist when
	// name exists.
	Mkdir(op, name string, perm fs.FileMode) error
	// Link makes newname a hard link to oldname; it fails with fs.ErrExist
	// when newname exists, whatever newname is.
	Link(op, oldname, newname string) error
	// Rename moves oldname to newname, replacing a file at newname.
	Rename(op, oldname, newname string) error
	// Remove removes the file or empty directory name.
	Remove(op, name string) error
	// Stat describes name, following symbolic links.
	Stat(op, name string) (fs.FileInfo, error)
	// ReadDir lists the directory name sorted by file name.
	ReadDir(op, name string) ([]fs.DirEntry, error)
}

// File is an open file of an OS.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Seeker
	io.Closer
	// Name is the name the file was opened or created with.
	Name() string
	// Sync commits the file's contents (or a directory's entries) to
	// stable storage.
	Sync() error
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
}

// System is the OS of the machine, through package os.
type System struct{}

var _ OS = System{}

func (System) CreateTemp(op, dir, pattern string) (File, error) {
	return wrap(os.CreateTemp(dir, pattern))
}
func (System) Open(op, name string) (File, error) { return wrap(os.Open(name)) }
func (System) OpenFile(op, name string, flag int, perm fs.FileMode) (File, error) {
	return wrap(os.OpenFile(name, flag, perm))
}
func (System) Mkdir(op, name string, perm fs.FileMode) error  { return os.Mkdir(name, perm) }
func (System) Link(op, oldname, newname string) error         { return os.Link(oldname, newname) }
func (System) Rename(op, oldname, newname string) error       { return os.Rename(oldname, newname) }
func (System) Remove(op, name string) error                   { return os.Remove(name) }
func (System) Stat(op, name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (System) ReadDir(op, name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// wrap keeps a nil *os.File from becoming a non-nil File.
func wrap(f *os.File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Or returns o, or System when o is nil.
func Or(o OS) OS {
	if o == nil {
		return System{}
	}
	return o
}

// ReadFile reads the whole file name.
func ReadFile(o OS, op, name string) ([]byte, error) {
	f, err := o.Open(op, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// SyncDir fsyncs the directory dir: the entries made, renamed or removed
// in it before are then durable. The open is op, the fsync op+":sync".
func SyncDir(o OS, op, dir string) error {
	d, err := o.Open(op, dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// MkdirAll makes the directory dir and any parent missing, as
// os.MkdirAll does, and fsyncs the parent of each directory it makes, so
// that what is written inside later does not vanish with its directory in
// a crash. The stat and mkdir are op, each parent's fsync op+"-sync".
func MkdirAll(o OS, op, dir string, perm fs.FileMode) error {
	fi, err := o.Stat(op, dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(o, op, parent, perm); err != nil {
			return err
		}
	}
	if err := o.Mkdir(op, dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := SyncDir(o, op+"-sync", parent); err != nil {
		return fmt.Errorf("fsync directory %s: %w", parent, err)
	}
	return nil
}
