//go:build !linux

package replicate

import (
	"errors"
	"os"
	"syscall"
)

// holdShared needs open-file-description locks (Linux): elsewhere an idle
// database holds no lock, and the application's last close may copy and
// remove the WAL; a commit made just before it then starts a new
// generation at the wake (idle.go).
func holdShared(*os.File) error { return errors.ErrUnsupported }

func releaseShared(*os.File) error { return nil }

// ctimeNs: 0 where walsync does not read the change time (fileStamp then
// rests on the size and the modification time).
func ctimeNs(*syscall.Stat_t) int64 { return 0 }

// fileLimit: unknown here.
func fileLimit() uint64 { return 0 }
