package file

import "github.com/walsync/walsync/internal/fsys"

// OS is the file system under a Client (the project's one file-system
// seam, shared with the spool and restore). Every call carries an op label
// naming the step of the Client's operation it serves ("put:link",
// "get:open", ...), so a test can fail exactly one named step and check what
// is left behind. SystemOS is the real one.
type OS = fsys.OS

// File is an open file of an OS.
type File = fsys.File

// SystemOS is the OS of the machine, through package os.
type SystemOS = fsys.System
