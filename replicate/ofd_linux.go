package replicate

import (
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// SQLite's unix locking bytes of a database file: a connection that reads
// holds a read lock on the SHARED range; one that closes the last
// connection takes a write lock on it (EXCLUSIVE) before it checkpoints
// the WAL into the database file and removes it.
const (
	sqlitePendingByte = 0x40000000
	sqliteSharedFirst = sqlitePendingByte + 2
	sqliteSharedSize  = 510
)

// holdShared takes a read lock on the SHARED range of the database open
// as f, as an open-file-description lock: it is f's, not the process's,
// so SQLite's own locks in this process neither merge with it nor release
// it, and it goes when f is closed. While it is held, no process can take
// the EXCLUSIVE lock with which the application's last close copies the
// WAL into the database file and removes it (idle.go).
func holdShared(f *os.File) error { return ofdLock(f, unix.F_RDLCK) }

// releaseShared lets go of holdShared's lock.
func releaseShared(f *os.File) error { return ofdLock(f, unix.F_UNLCK) }

func ofdLock(f *os.File, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: sqliteSharedFirst, Len: sqliteSharedSize}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// ctimeNs is a file's change time: every write moves it, and user space
// cannot set it back.
func ctimeNs(st *syscall.Stat_t) int64 { return st.Ctim.Sec*1e9 + st.Ctim.Nsec }

// fileLimit is the process's descriptor limit (0: unknown), read once:
// the tick asks it for every database asleep.
var fileLimit = sync.OnceValue(func() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
})
