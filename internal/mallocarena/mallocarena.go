// Package mallocarena makes glibc's malloc use one arena for every thread
// of the process (M_ARENA_MAX=1), from before the Go runtime starts its
// threads. Only the walsync command imports it: the setting is
// process-wide, and a program embedding walsync keeps its own.
//
// SQLite allocates from whichever OS thread the Go scheduler runs a cgo
// call on, and by default glibc gives each such thread an arena of its own,
// up to 8 per core, each holding on to its freed memory. `walsync watch`
// at 100 databases had six arenas, 5.3 MB of RSS for the 1.9 MB that SQLite
// held (sqlite3_memory_used); with one arena, 2.3 MB (bench/density.sh at
// 100 databases: 26.4 MiB RSS against 23.8 MiB). The cost is one lock
// shared by the few threads that allocate at once, which a watcher, waiting
// on the disk and the network, does not feel.
//
// The setting is made in a C constructor, which runs before main and
// before any thread exists: mallopt only limits arenas created after it,
// and threads keep the arena they first used. A no-op on C libraries other
// than glibc.
package mallocarena

/*
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>

__attribute__((constructor)) static void walsync_one_arena(void) { mallopt(M_ARENA_MAX, 1); }

// The number of arenas: malloc_info writes one <heap> element per arena.
static int walsync_arenas(void) {
	char *buf = 0;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) return -1;
	malloc_info(0, f);
	fclose(f);
	int n = 0;
	for (char *p = buf; (p = strstr(p, "<heap nr=")) != 0; p++) n++;
	free(buf);
	return n;
}
#else
static int walsync_arenas(void) { return -1; }
#endif

// Allocates and frees a little from the calling thread (for the test).
static void walsync_malloc_touch(void) {
	char *p = malloc(1024);
	if (p) memset(p, 1, 1024);
	free(p);
}
*/
import "C"

// arenas is the number of glibc malloc arenas, or -1 when not glibc.
func arenas() int { return int(C.walsync_arenas()) }

// mallocFromThisThread allocates and frees a little C memory from the
// calling OS thread.
func mallocFromThisThread() { C.walsync_malloc_touch() }
