#ifndef WALSYNC_SHIM_H
#define WALSYNC_SHIM_H

#define WALSYNC_VFS_NAME "walsync"

/* walsync_shim_register registers the walsync VFS over the current default
** VFS (not as the default). Registering twice is a no-op. */
int walsync_shim_register(void);

/* walsync_shim_uri_parameter is sqlite3_uri_parameter, for Go. */
const char *walsync_shim_uri_parameter(const char *zName, const char *zParam);

/* walsync_shim_base_vfs names the VFS walsync forwards to. */
const char *walsync_shim_base_vfs(void);

/* walsync_shim_now_ns is CLOCK_MONOTONIC in nanoseconds: the clock of the
** quiet word (see ws_may_skip in shim.c). */
long long walsync_shim_now_ns(void);

/* walsync_shim_log passes msg to sqlite3_log (the application's
** SQLITE_CONFIG_LOG callback, if any) with an SQLite result code. */
void walsync_shim_log(int code, const char *msg);

#endif
