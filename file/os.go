package file

import (
	"io"
	"io/fs"
	"os"
)

// OS is the file system under a Client. Every call carries an op label
// naming the step of the Client's operation it serves ("put:link",
// "get:open", ...), so a test can fail exactly one named step and check what
// is left behind. SystemOS is the real one.
type OS interface {
	// CreateTemp creates a new file in dir, named from pattern as
	// os.CreateTemp names it, open for reading and writing.
	CreateTemp(op, dir, pattern string) (File, error)
	// Open opens name (a file or a directory) for reading.
	Open(op, name string) (File, error)
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
	io.Writer
	io.Closer
	// Name is the name the file was opened or created with.
	Name() string
	// Sync commits the file's contents (or a directory's entries) to
	// stable storage.
	Sync() error
	Stat() (fs.FileInfo, error)
}

// SystemOS is the OS of the machine, through package os.
type SystemOS struct{}

var _ OS = SystemOS{}

func (SystemOS) CreateTemp(op, dir, pattern string) (File, error) { return os.CreateTemp(dir, pattern) }
func (SystemOS) Open(op, name string) (File, error)               { return os.Open(name) }
func (SystemOS) Mkdir(op, name string, perm fs.FileMode) error    { return os.Mkdir(name, perm) }
func (SystemOS) Link(op, oldname, newname string) error           { return os.Link(oldname, newname) }
func (SystemOS) Rename(op, oldname, newname string) error         { return os.Rename(oldname, newname) }
func (SystemOS) Remove(op, name string) error                     { return os.Remove(name) }
func (SystemOS) Stat(op, name string) (fs.FileInfo, error)        { return os.Stat(name) }
func (SystemOS) ReadDir(op, name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }
