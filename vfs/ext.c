/*
** The loadable-extension entry point: `.load libwalsync` in the sqlite3
** shell (or sqlite3_load_extension) finds sqlite3_walsync_init and, through
** it, registers the walsync VFS. The library must link the very SQLite of
** the program that loads it (build with -tags libsqlite3, and the program
** dynamically linked with the same libsqlite3): the VFS registers into the
** library's SQLite, and a second copy of SQLite in one process would
** neither see the registration nor share POSIX locks with the host.
** The host's API table tells: its sqlite3_vfs_find must be ours.
*/
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include "shim.h"

extern void *walsync_shim_vfs_find(void);

int sqlite3_walsync_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
	SQLITE_EXTENSION_INIT2(pApi);
	(void)db;
	if ((void *)pApi->vfs_find != walsync_shim_vfs_find()) {
		if (pzErrMsg) {
			*pzErrMsg = sqlite3_mprintf(
			    "walsync: this libwalsync carries another copy of SQLite than this program "
			    "(SQLite %s here); build it with -tags libsqlite3 (make build does) and load it "
			    "into a program linked with the shared libsqlite3",
			    sqlite3_libversion());
		}
		return SQLITE_ERROR;
	}
	int rc = walsync_shim_register();
	if (rc != SQLITE_OK) {
		if (pzErrMsg) *pzErrMsg = sqlite3_mprintf("walsync: cannot register the VFS (SQLite error %d)", rc);
		return rc;
	}
	return SQLITE_OK_LOAD_PERMANENTLY;
}
