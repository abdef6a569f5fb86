package replicate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/walsync/walsync/wal"
)

// walIndexHeader is the part of the wal-index header (the start of the
// -shm file, https://www.sqlite.org/walformat.html#the_wal_index_file_format)
// that tells which WAL frames SQLite considers committed. Readers decide
// their snapshot from it, not from the WAL file, so it is the truth about
// what a read transaction sees.
type walIndexHeader struct {
	MaxFrame     uint32 // last valid commit frame
	PageCount    uint32 // database size in pages
	Salt1, Salt2 uint32 // as in the WAL header
	PageSize     uint32
	NBackfill    uint32 // frames already copied into the database file
}

var errShmUnusable = errors.New("wal-index header not readable")

// readWALIndexHeader reads and checks the wal-index header (and nBackfill,
// from the checkpoint information that follows it): the two copies
// must be equal, initialised, and carry a valid checksum. Fields are in the
// machine's byte order except the salts, which are copied from the WAL
// header (big-endian).
func readWALIndexHeader(r io.ReaderAt) (walIndexHeader, error) {
	var b [100]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return walIndexHeader{}, errShmUnusable
	}
	c1, c2 := b[:48], b[48:96]
	if !bytes.Equal(c1, c2) || c1[12] != 1 {
		return walIndexHeader{}, errShmUnusable
	}
	ne := binary.NativeEndian
	if ne.Uint32(c1[0:]) != 3007000 {
		return walIndexHeader{}, errShmUnusable
	}
	// The checksum over bytes 0..39 uses native-order words.
	s1, s2 := wal.Checksum(isBigEndianMachine(), 0, 0, c1[:40])
	if s1 != ne.Uint32(c1[40:]) || s2 != ne.Uint32(c1[44:]) {
		return walIndexHeader{}, errShmUnusable
	}
	ps := uint32(ne.Uint16(c1[14:]))
	if ps == 1 {
		ps = 65536
	}
	return walIndexHeader{
		MaxFrame:  ne.Uint32(c1[16:]),
		PageCount: ne.Uint32(c1[20:]),
		Salt1:     binary.BigEndian.Uint32(c1[32:]),
		Salt2:     binary.BigEndian.Uint32(c1[36:]),
		PageSize:  ps,
		NBackfill: ne.Uint32(b[96:]),
	}, nil
}

func isBigEndianMachine() bool {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	return b[0] == 0
}

// The wal-index's lock bytes (src/wal.c): slot i is byte 120+i of the
// -shm file, locked with fcntl; slot 1 is the checkpoint lock.
const (
	shmLockOffset = 120
	shmCkptLock   = 1
)

// checkpointElsewhere reports whether another process holds the
// checkpoint lock of the database whose -shm is open as shm: a checkpoint
// is under way there, and a RESTART, TRUNCATE or FULL one may be waiting
// for walsync's pin. F_GETLK does not see this process's own locks (the
// VFS's in-process checkpoints tell through Watcher.CheckpointStarted).
func checkpointElsewhere(shm *os.File) bool {
	if shm == nil {
		return false
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: shmLockOffset + shmCkptLock, Len: 1}
	if err := syscall.FcntlFlock(shm.Fd(), syscall.F_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != syscall.F_UNLCK
}
