//go:build linux

package restore

import (
	"github.com/walsync/walsync/internal/fsys"
	"os"
	"syscall"
	"unsafe"
)

// openUnbuffered opens path for writes that bypass the page cache
// (O_DIRECT): buffer address, length and file offset must be multiples of
// directAlign. File systems without direct I/O refuse the open or the
// first write (EINVAL); the caller then writes through the page cache.
func openUnbuffered(o fsys.OS, path string) (fsys.File, error) {
	return o.OpenFile("restore:open-direct", path, os.O_WRONLY|syscall.O_DIRECT, 0)
}

// directAlign is the alignment direct I/O needs: the largest logical
// block size of common devices, and the page size.
const directAlign = 4096

func aligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%directAlign == 0 && len(b)%directAlign == 0
}

// alignedBlock returns n bytes starting at a multiple of directAlign.
func alignedBlock(n int) []byte {
	b := make([]byte, n+directAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) % directAlign)
	if off != 0 {
		off = directAlign - off
	}
	return b[off : off+n : off+n]
}
