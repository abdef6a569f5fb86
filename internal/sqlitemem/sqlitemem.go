// Package sqlitemem makes every SQLite connection of this process small.
//
// `walsync watch` keeps an idle SQLite connection per database to pin the
// WAL, and a second one while it moves the pin (replicate/ explains why). With SQLite's defaults each of them costs
// about 150 KB of heap: 48 KB of lookaside memory allocated at open, and a
// bulk allocation of 20 page-cache slots (about 87 KB at 4 KiB pages) at the
// first page read, whatever cache_size says. Measured with
// sqlite3_memory_used on SQLite 3.40 and mattn/go-sqlite3's amalgamation.
// Configure turns both off for the whole process: connections then cost
// about 15 KB plus the pages they actually read.
//
// The settings are process-wide and must be made before SQLite initialises,
// so only the walsync command calls Configure, first thing in main; a Go
// program embedding walsync keeps its own SQLite settings.
//
// This is one of the two places with C (the other is vfs/): the calls are
// variadic C functions, which cgo cannot call directly. The symbols resolve
// to the SQLite that mattn/go-sqlite3 links into the binary (its bundled
// amalgamation, or the system library with the libsqlite3 tag).
package sqlitemem

/*
extern int sqlite3_config(int, ...);
extern long long sqlite3_memory_used(void);

static long long walsync_memory_used(void) { return sqlite3_memory_used(); }

// Values from sqlite3.h; stable parts of SQLite's C interface.
#define WALSYNC_SQLITE_CONFIG_PAGECACHE 7
#define WALSYNC_SQLITE_CONFIG_LOOKASIDE 13

static int walsync_sqlite_small(void) {
	int rc = sqlite3_config(WALSYNC_SQLITE_CONFIG_LOOKASIDE, 0, 0);
	if (rc != 0) return rc;
	return sqlite3_config(WALSYNC_SQLITE_CONFIG_PAGECACHE, (void*)0, 0, 0);
}
*/
import "C"

import (
	"fmt"

	_ "github.com/mattn/go-sqlite3" // provides the SQLite symbols
)

// Configure turns off per-connection lookaside memory and the initial
// page-cache bulk allocation. It fails (SQLITE_MISUSE, 21) if SQLite has
// already been initialised in this process.
func Configure() error {
	if rc := C.walsync_sqlite_small(); rc != 0 {
		return fmt.Errorf("sqlite3_config: result code %d", int(rc))
	}
	return nil
}

// MemoryUsed is SQLite's own count of the heap bytes it holds in this
// process (sqlite3_memory_used).
func MemoryUsed() int64 { return int64(C.walsync_memory_used()) }
