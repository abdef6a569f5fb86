// Command libwalsync is walsync as a C library, built with
//
//	go build -buildmode=c-shared -o _libwalsync.so ./cmd/libwalsync
//
// The Python package (python/) loads it with ctypes; any other language
// with a C FFI can do the same. It adds no logic of its own: each function
// decodes its JSON arguments, calls the Go API the CLI calls
// (backend.Open, replicate.Snapshotter, replicate.Watcher, restore), and
// encodes the result.
//
// # The C API
//
// Every function takes NUL-terminated UTF-8 strings (NULL is an error, never
// a crash) and returns a JSON document in memory the caller owns and
// releases with walsync_free:
//
//	{"ok": RESULT, "logs": [LOG...]}                                on success
//	{"error": {"kind": KIND, "message": MSG}, "logs": [LOG...]}     on failure
//
// KIND tells the class of failure without parsing MSG: "checksum" (bytes
// do not match their recorded SHA-256, or carry none), "integrity" (a gap in
// the WAL sequence, an object not in walsync's format), "not_found" (no such
// database file, object, name or bucket; no restore point at the
// point in time asked for), "exists" (restore would replace an
// existing output), "config" (a bad argument: bucket URL, name, option,
// credentials refused) and "other". MSG is the one line the CLI would print
// after "walsync: ". LOG is {"time": RFC3339, "level": "DEBUG"|"INFO"|
// "WARN"|"ERROR", "msg": MSG, "attrs": [[KEY, VALUE]...]}: what the call
// logged at or above the config's log_level.
//
// CONFIG, the first argument of most functions, is a JSON object:
//
//	{"bucket": "s3://bucket/prefix" | "file:///path",   required
//	 "endpoint": "https://...",                         optional, wins over AWS_ENDPOINT_URL_S3
//	 "region": "us-east-1",                             optional
//	 "log_level": "debug"|"info"|"warn"|"error",        optional, default "warn"
//	 "env": {"AWS_ACCESS_KEY_ID": "...", ...}}          optional
//
// "env", when present, is the caller's current view of the environment:
// every AWS_* variable of the process is made equal to it (AWS_* variables
// it lacks are unset) and any other variable it names (HOME) is set, before
// the bucket is opened. A Go library copies the environment once, at load
// time, so without it a credential exported by the host program afterwards
// would go unseen.
//
// The functions:
//
//	char* walsync_version(void);
//	    {"version": "...", "go": "go1.26...", "sqlite": "bundled"|"system",
//	     "sqlite_version": "3.x.y", "point_in_time": true|false}
//	char* walsync_check(const char* config);
//	    opens the bucket without a request: {"bucket": URL}
//	char* walsync_snapshot(const char* config, const char* path, const char* name);
//	    name "" means the file name without extension. RESULT:
//	    {"name", "key", "url", "generation", "page_size", "page_count",
//	     "db_size", "size", "sha256", "wal_frame", "duration"} (duration in seconds)
//	char* walsync_list(const char* config);
//	    RESULT: the array `walsync list --json` prints
//	char* walsync_restore(const char* config, const char* name, const char* output, const char* options);
//	    options: {"force": bool, "point_in_time": RFC3339 or null}. RESULT:
//	    {"name", "output", "snapshot_key", "generation", "db_size",
//	     "segments", "last_seq", "state_time", "duration"}; state_time is
//	    when the restored state was captured (RFC 3339)
//	char* walsync_watch_start(const char* config, const char* options);
//	    options: {"paths": [...], "name": "", "snapshot_interval": secs,
//	     "shutdown_timeout": secs, "sync_interval": secs, "retention": secs,
//	     "uploads": n, "takeover": bool}: the flags of `walsync watch`, with
//	    its defaults (3600, 30, 1, 0, 4, false). Returns once every
//	    database is replicating, or with the error that stopped it.
//	    RESULT: {"handle": N, "databases": [{"path", "name"}]}
//	char* walsync_watch_poll(long long handle, int timeout_ms);
//	    waits up to timeout_ms for log records or the watcher's end.
//	    RESULT: {"running": bool, "stats": STATS}
//	char* walsync_watch_stop(long long handle);
//	    stops the watcher: ships what was captured (bounded by
//	    shutdown_timeout) and releases the handle. RESULT: {"stats": STATS}
//	    or the error the watcher ended with. STATS: {"frames_captured",
//	    "objects_uploaded", "bytes_uploaded", "upload_errors"}
//	char* walsync_vfs_register(const char* config, const char* options);
//	    registers the walsync SQLite VFS into the library's SQLite (the
//	    host's, in a -tags libsqlite3 build), with config's bucket,
//	    endpoint and region as defaults for databases whose URI names none
//	    ("bucket" may be empty here). options: {"sync": bool,
//	    "sync_interval", "sync_timeout", "close_timeout": seconds}.
//	    RESULT: {"vfs": "walsync", "base": "unix", "sqlite": MODE}
//	void walsync_free(char* p);
//
// Calls block the calling thread (a Python caller releases the GIL) and
// may be made from any thread concurrently. A panic inside a call is
// recovered into an error of kind "other"; a watcher runs in goroutines of
// the Go runtime inside the host process.
//
// # SQLite
//
// Built as is, the library carries its own SQLite (mattn/go-sqlite3's
// amalgamation) and shrinks its connections with sqlitemem.Configure when
// loaded, as the CLI does. Built with -tags libsqlite3, it links the
// system's libsqlite3 instead: loaded into a process whose SQLite is that
// same library (Python's sqlite3 module, usually), there is then one SQLite
// in the process, whose locks see both the host's connections and walsync's
// (two copies of SQLite in one process do not see each other's POSIX
// locks). The host's SQLite settings are then left alone.
package main

// The walsync VFS (vfs/) is part of the library: its C shim and the
// loadable-extension entry point sqlite3_walsync_init, so that the same
// file serves `.load libwalsync` in the sqlite3 shell.
import _ "github.com/walsync/walsync/vfs"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {}
