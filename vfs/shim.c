/*
** The walsync VFS: a thin shim over SQLite's default VFS.
**
** Every method forwards to the VFS that was the default when walsync was
** registered (the "unix" VFS on Linux), shared memory included, so WAL mode,
** several connections and several processes behave exactly as with that VFS.
** Page I/O never leaves C. The shim only observes three things of a main
** database file (docs/ARCHITECTURE.md, "The VFS"):
**
**   open    the first open of a database (in this process) starts its
**           replication in Go (walsyncGoOpen); failure fails the open.
**   write   the taking of the WAL write lock (walsyncGoAcquire): when no
**           process replicates the database at that moment (the one that
**           did has exited), this one takes over before the writer, or a
**           checkpoint that may restart the WAL, goes on. Once Go answers
**           that this process replicates it, only a fully checkpointed
**           WAL (the pin must let go so that the writer can restart it)
**           is reported.
**   commit  the release of the WAL write lock (xShmLock unlock of slot 0)
**           after the wal-index header changed while it was held: a
**           transaction committed (or a WAL recovery ran). Go is told
**           (walsyncGoCommit) after the lock is released, so another
**           writer is never held up. In async mode, while Go's quiet
**           word says that its watcher would do nothing for a commit
**           (its deferred sync is armed), the call is skipped, up to the
**           frame limit Go gave (ws_may_skip).
**   phase two  with walsync_sync=1, SQLITE_FCNTL_COMMIT_PHASETWO, which
**           the pager sends right after that release, waits until the
**           commit is durable in the bucket (walsyncGoSyncCommit); when
**           it cannot be within walsync_sync_timeout, its SQLITE_IOERR
**           fails the COMMIT. The transaction stays committed locally
**           (it is shipped when the bucket can be reached): the
**           application is never told "durable" when it is not.
**   close   the close of the last connection to it (walsyncGoClose) ships
**           what is pending and stops its replication.
**   rollback mode  a database not in WAL mode: after each write
**           transaction (the unlock of the database file after RESERVED),
**           Go switches it to WAL mode (walsyncGoWroteRollback).
** It also answers SQLITE_FCNTL_PERSIST_WAL with "keep": SQLite never
** deletes the WAL of a replicated database, whose frames may not all be
** captured yet when its last connection closes; and the release of the
** checkpoint lock (slot 1), after which a checkpoint that waits for
** readers to leave the WAL may be waiting for walsync.
**
** PRAGMAs (SQLITE_FCNTL_PRAGMA): walsync_status and walsync_flush are
** answered by Go (walsyncGoPragma); journal_mode with any value but WAL is
** refused with a message (walsync replicates the WAL).
** PRAGMA locking_mode=EXCLUSIVE is refused: SQLite then keeps the wal-index
** in heap memory and takes no shared-memory locks, so there would be
** nothing to observe.
*/
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shim.h"

/* walsyncGoOpen, walsyncGoCommit, walsyncGoCheckpoint, walsyncGoClose:
** implemented in Go (export.go). */
#include "_cgo_export.h"

/* wal-index header fields (src/wal.c, WalIndexHdr): native byte order. */
#define WS_HDR_MXFRAME 16
#define WS_HDR_SALT1 32
/* WalCkptInfo follows the two header copies: nBackfill first. */
#define WS_CKPT_NBACKFILL 96
#define WS_WAL_WRITE_LOCK 0
#define WS_WAL_CKPT_LOCK 1

typedef struct WsFile WsFile;
struct WsFile {
	sqlite3_file base;   /* pMethods: ws_io_methods, or NULL if the open failed */
	sqlite3_file *real;  /* the default VFS's file, allocated right after this struct */
	long long id;        /* Go's handle of the replicated database; 0: not replicated */
	volatile unsigned char *shm0; /* region 0 of the wal-index, once mapped */
	int writeLocked;     /* this connection holds the WAL write lock */
	int replicatedHere;  /* Go said this process replicates the database (for good) */
	unsigned int mxFrame, salt1; /* the wal-index header when the write lock was taken */
	/* Skipping walsyncGoCommit (ws_may_skip): Go's quiet word for the
	** database (CLOCK_MONOTONIC ns until which its watcher does nothing
	** for a commit; 0: none), and the frame limit and WAL salt of the
	** last call's answer. */
	long long *quiet;
	unsigned int skipBelow, skipSalt;
	/* walsync_sync=1: the commit this connection just made (the wal-index
	** header after it), until SQLITE_FCNTL_COMMIT_PHASETWO waits for it
	** to be durable in the bucket (wsFileControl). */
	int syncMode, syncPending;
	unsigned int syncMx, syncSalt;
	/* A database not in WAL mode when opened: Go's word (shared by the
	** connections of this process), 1 until walsync has put it in WAL
	** mode. While it is, the end of each write transaction (the unlock
	** of the database file after RESERVED or more) asks Go to switch. */
	int *needWAL;
	int heldWrite; /* this connection took RESERVED or more since its last unlock */
	/* This connection holds the checkpoint lock; and Go's pin let go of
	** the WAL for its checkpoint (walsyncGoCheckpointWrite), to be taken
	** again before the checkpoint lock goes. */
	int ckptHeld, letGo;
};

static void ws_header(WsFile *w, unsigned int *mxFrame, unsigned int *salt1);

static sqlite3_vfs ws_vfs;
static sqlite3_vfs *ws_base; /* the VFS walsync forwards to */

#define REAL(f) (((WsFile *)(f))->real)

static int wsClose(sqlite3_file *f) {
	WsFile *w = (WsFile *)f;
	int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
	if (w->id) {
		long long id = w->id;
		w->id = 0;
		walsyncGoClose(id);
	}
	return rc;
}
static int wsRead(sqlite3_file *f, void *p, int n, sqlite3_int64 off) {
	return REAL(f)->pMethods->xRead(REAL(f), p, n, off);
}
static int wsWrite(sqlite3_file *f, const void *p, int n, sqlite3_int64 off) {
	return REAL(f)->pMethods->xWrite(REAL(f), p, n, off);
}
static int wsTruncate(sqlite3_file *f, sqlite3_int64 size) {
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int wsSync(sqlite3_file *f, int flags) {
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int wsFileSize(sqlite3_file *f, sqlite3_int64 *pSize) {
	return REAL(f)->pMethods->xFileSize(REAL(f), pSize);
}
static int wsLock(sqlite3_file *f, int lock) {
	WsFile *w = (WsFile *)f;
	int rc = REAL(f)->pMethods->xLock(REAL(f), lock);
	if (rc == SQLITE_OK && lock >= SQLITE_LOCK_RESERVED) w->heldWrite = 1;
	return rc;
}
static int wsUnlock(sqlite3_file *f, int lock) {
	WsFile *w = (WsFile *)f;
	int rc = REAL(f)->pMethods->xUnlock(REAL(f), lock);
	if (lock == SQLITE_LOCK_NONE && w->heldWrite) {
		w->heldWrite = 0;
		/* A write transaction in rollback-journal mode ended (WAL-mode
		** writers take no RESERVED lock on the database file): walsync
		** puts the database in WAL mode now, with no lock of this
		** connection held. */
		if (w->id && w->needWAL && __atomic_load_n(w->needWAL, __ATOMIC_ACQUIRE)) walsyncGoWroteRollback(w->id);
	}
	return rc;
}
static int wsCheckReservedLock(sqlite3_file *f, int *pResOut) {
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), pResOut);
}

/* ws_is_exclusive reports whether a locking_mode pragma value asks for
** exclusive mode. */
static int ws_is_exclusive(const char *v) {
	return v && (sqlite3_stricmp(v, "exclusive") == 0 || sqlite3_stricmp(v, "1") == 0);
}

static int wsFileControl(sqlite3_file *f, int op, void *pArg) {
	WsFile *w = (WsFile *)f;
	if (op == SQLITE_FCNTL_VFSNAME && pArg) {
		int rc = REAL(f)->pMethods->xFileControl(REAL(f), op, pArg);
		if (rc == SQLITE_OK && *(char **)pArg) {
			char *inner = *(char **)pArg;
			*(char **)pArg = sqlite3_mprintf("walsync/%z", inner);
		} else {
			*(char **)pArg = sqlite3_mprintf("walsync");
			rc = SQLITE_OK;
		}
		return rc;
	}
	if (op == SQLITE_FCNTL_PERSIST_WAL && w->id && pArg && *(int *)pArg < 0) {
		/* Asked by the last connection to close, before it deletes the
		** WAL: keep it. Its frames may not be captured yet (another
		** process replicates the database, or none is running); the next
		** open, or `walsync watch`, captures them. */
		*(int *)pArg = 1;
		return SQLITE_OK;
	}
	if (op == SQLITE_FCNTL_COMMIT_PHASETWO && w->id) {
		/* Sent by the pager after the commit, once the WAL write lock is
		** released; its error fails the COMMIT (the transaction stays
		** committed: src/pager.c, pager_end_transaction). With
		** walsync_sync=1 the commit is acknowledged only once durable in
		** the bucket: otherwise the application gets an error, never a
		** success. */
		int rc = REAL(f)->pMethods->xFileControl(REAL(f), op, pArg);
		if (rc != SQLITE_OK && rc != SQLITE_NOTFOUND) return rc;
		if (!w->syncPending) return rc;
		w->syncPending = 0;
		int src = walsyncGoSyncCommit(w->id, w->syncMx, w->syncSalt);
		if (src != SQLITE_OK) {
			/* SQLite records the VFS's errno with an I/O error
			** (xGetLastError): say what happened, not a stale one. */
			errno = ETIMEDOUT;
			return src;
		}
		return rc;
	}
	if (op == SQLITE_FCNTL_PRAGMA && w->id && pArg) {
		char **a = (char **)pArg;
		if (a[1] && (sqlite3_stricmp(a[1], "walsync_status") == 0 || sqlite3_stricmp(a[1], "walsync_flush") == 0)) {
			/* Answered by Go: one text value (a JSON object), or an error. */
			unsigned int mx = 0, salt = 0, mx2 = 1, salt2 = 1;
			for (int i = 0; i < 100 && (mx != mx2 || salt != salt2); i++) {
				ws_header(w, &mx, &salt); /* no lock held: read until two reads agree */
				ws_header(w, &mx2, &salt2);
			}
			char *out = 0;
			int rc = walsyncGoPragma(w->id, (char *)a[1], (char *)a[2], mx, salt, &out);
			if (out) {
				a[0] = sqlite3_mprintf("%s", out);
				free(out);
			}
			return rc;
		}
		if (a[1] && sqlite3_stricmp(a[1], "journal_mode") == 0 && a[2] && sqlite3_stricmp(a[2], "wal") != 0) {
			a[0] = sqlite3_mprintf("walsync: PRAGMA journal_mode=%s is not supported by the walsync VFS: it replicates "
			                       "the WAL, so a database opened through it stays in WAL mode (open it without "
			                       "vfs=walsync to change its journal mode)", a[2]);
			return SQLITE_ERROR;
		}
		if (a[1] && sqlite3_stricmp(a[1], "locking_mode") == 0 && ws_is_exclusive(a[2])) {
			a[0] = sqlite3_mprintf("walsync: PRAGMA locking_mode=EXCLUSIVE is not supported by the walsync VFS "
			                       "(SQLite then keeps the WAL index private and walsync cannot see commits)");
			return SQLITE_ERROR;
		}
	}
	return REAL(f)->pMethods->xFileControl(REAL(f), op, pArg);
}
static int wsSectorSize(sqlite3_file *f) {
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int wsDeviceCharacteristics(sqlite3_file *f) {
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int wsShmMap(sqlite3_file *f, int iPg, int pgsz, int bExtend, void volatile **pp) {
	WsFile *w = (WsFile *)f;
	int rc = REAL(f)->pMethods->xShmMap(REAL(f), iPg, pgsz, bExtend, pp);
	if (rc == SQLITE_OK && iPg == 0 && *pp) w->shm0 = (volatile unsigned char *)*pp;
	return rc;
}

/* ws_header reads mxFrame and salt-1 of the wal-index header. The caller
** holds the write lock, so no other connection changes the header. */
static void ws_header(WsFile *w, unsigned int *mxFrame, unsigned int *salt1) {
	*mxFrame = 0;
	*salt1 = 0;
	if (w->shm0) {
		/* mxFrame in native order; the salts are the WAL header's bytes,
		** which are big-endian (as the WAL file and replicate/ read them). */
		const volatile unsigned char *s = w->shm0 + WS_HDR_SALT1;
		memcpy(mxFrame, (const void *)(w->shm0 + WS_HDR_MXFRAME), 4);
		*salt1 = ((unsigned int)s[0] << 24) | ((unsigned int)s[1] << 16) | ((unsigned int)s[2] << 8) | s[3];
	}
}

long long walsync_shim_now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ws_may_skip reports whether the commit that ended at mx (WAL salt-1
** salt) needs no call into Go: Go answered the connection's last call
** with a frame limit that this commit stays below, in the same WAL, and
** its quiet word has not run out. Go then would only Kick a watcher that
** does nothing: its deferred sync is armed and captures this commit when
** it fires, and the firing clears the word before it captures. Anything
** else (the flushFrames boundary, the auto-checkpoint, a WAL restart,
** sync mode, another process replicating) makes Go answer 0. */
static int ws_may_skip(WsFile *w, unsigned int mx, unsigned int salt) {
	if (!w->quiet || mx >= w->skipBelow || salt != w->skipSalt) return 0;
	long long until = __atomic_load_n(w->quiet, __ATOMIC_ACQUIRE);
return until != 0 && walsync_shim_now_ns() < until;
}

static int wsShmLock(sqlite3_file *f, int offset, int n, int flags) {
	WsFile *w = (WsFile *)f;
	sqlite3_file *r = REAL(f);
	if (!w->id || !(flags & SQLITE_SHM_EXCLUSIVE)) {
		return r->pMethods->xShmLock(r, offset, n, flags);
	}
	if (flags & SQLITE_SHM_UNLOCK) {
		int wasWriter = w->writeLocked && offset <= WS_WAL_WRITE_LOCK && WS_WAL_WRITE_LOCK < offset + n;
		int ckpt = offset <= WS_WAL_CKPT_LOCK && WS_WAL_CKPT_LOCK < offset + n;
		unsigned int mx = 0, salt = 0;
		int changed = 0;
		if (wasWriter) {
			ws_header(w, &mx, &salt);
			changed = mx != w->mxFrame || salt != w->salt1;
			w->writeLocked = 0;
		}
		if (ckpt && w->letGo) {
			/* Walsync pins the WAL again while this connection still holds
			** the checkpoint lock: no other checkpoint can run first. */
			w->letGo = 0;
			walsyncGoCheckpointResume(w->id);
		}
		if (ckpt) w->ckptHeld = 0;
		int rc = r->pMethods->xShmLock(r, offset, n, flags);
		if (changed) {
			if (!ws_may_skip(w, mx, salt)) {
				w->skipBelow = walsyncGoCommit(w->id, mx, salt);
				w->skipSalt = salt;
			}
			if (w->syncMode) {
				w->syncPending = 1;
				w->syncMx = mx;
				w->syncSalt = salt;
			}
		} else if (ckpt) {
			walsyncGoCheckpoint(w->id, 0);
		}
		return rc;
	}
	if (offset <= WS_WAL_WRITE_LOCK && WS_WAL_WRITE_LOCK < offset + n) {
		/* Before a writer (or a checkpoint that may restart the WAL) goes
		** on: if no process replicates the database now, this one takes
		** over first, so no frame is written over uncaptured ones; and
		** when the WAL is fully checkpointed, walsync's pin lets go of it
		** so that this writer can restart it (as without walsync). */
		unsigned int mx = 0, salt = 0, backfill = 0;
		ws_header(w, &mx, &salt);
		if (w->shm0) memcpy(&backfill, (const void *)(w->shm0 + WS_CKPT_NBACKFILL), 4);
		/* Once this process replicates the database, only the second
		** case needs Go: a call per transaction would cost more than the
		** rest of the shim. */
		if (!w->replicatedHere || (mx > 0 && backfill == mx)) {
			w->replicatedHere = walsyncGoAcquire(w->id, mx, backfill);
		}
	}
	int rc = r->pMethods->xShmLock(r, offset, n, flags);
	if (rc == SQLITE_OK && offset <= WS_WAL_CKPT_LOCK && WS_WAL_CKPT_LOCK < offset + n) {
		/* A checkpoint starts: a RESTART, TRUNCATE or FULL one will wait
		** for walsync's pin; Go captures at once instead of batching. */
		w->ckptHeld = 1;
		walsyncGoCheckpoint(w->id, 1);
	}
	if (rc == SQLITE_OK && offset <= WS_WAL_WRITE_LOCK && WS_WAL_WRITE_LOCK < offset + n) {
		w->writeLocked = 1;
		w->syncPending = 0; /* a new write transaction: any earlier one was answered */
		ws_header(w, &w->mxFrame, &w->salt1);
		if (w->ckptHeld && !w->letGo && w->replicatedHere) {
			/* The checkpoint lock, then the write lock: a RESTART,
			** TRUNCATE or FULL checkpoint, which waits for every reader.
			** No commit can come now: walsync captures what the WAL holds
			** and lets go of it until the checkpoint lock is released, so
			** the checkpoint waits for no one (and needs no busy timeout). */
			w->letGo = walsyncGoCheckpointWrite(w->id);
		}
	}
	return rc;
}
static void wsShmBarrier(sqlite3_file *f) {
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int wsShmUnmap(sqlite3_file *f, int deleteFlag) {
	WsFile *w = (WsFile *)f;
	w->shm0 = 0;
	return REAL(f)->pMethods->xShmUnmap(REAL(f), deleteFlag);
}
static int wsFetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp) {
	return REAL(f)->pMethods->xFetch(REAL(f), off, amt, pp);
}
static int wsUnfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
	return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

/* Two method tables: version 3 for files whose real methods have it (the
** unix VFS gives every file version 3), and the real file's own version
** otherwise, so SQLite never calls a method the real file lacks. */
static const sqlite3_io_methods ws_io3 = {
	3, wsClose, wsRead, wsWrite, wsTruncate, wsSync, wsFileSize, wsLock, wsUnlock,
	wsCheckReservedLock, wsFileControl, wsSectorSize, wsDeviceCharacteristics,
	wsShmMap, wsShmLock, wsShmBarrier, wsShmUnmap, wsFetch, wsUnfetch,
};
static const sqlite3_io_methods ws_io2 = {
	2, wsClose, wsRead, wsWrite, wsTruncate, wsSync, wsFileSize, wsLock, wsUnlock,
	wsCheckReservedLock, wsFileControl, wsSectorSize, wsDeviceCharacteristics,
	wsShmMap, wsShmLock, wsShmBarrier, wsShmUnmap, 0, 0,
};
static const sqlite3_io_methods ws_io1 = {
	1, wsClose, wsRead, wsWrite, wsTruncate, wsSync, wsFileSize, wsLock, wsUnlock,
	wsCheckReservedLock, wsFileControl, wsSectorSize, wsDeviceCharacteristics,
	0, 0, 0, 0, 0, 0,
};

static int wsOpen(sqlite3_vfs *vfs, const char *zName, sqlite3_file *f, int flags, int *pOutFlags) {
	WsFile *w = (WsFile *)f;
	memset(w, 0, sizeof(*w));
	w->real = (sqlite3_file *)&w[1];
	int rc = ws_base->xOpen(ws_base, zName, w->real, flags, pOutFlags);
	if (!w->real->pMethods) {
		w->base.pMethods = 0;
		return rc;
	}
	int v = w->real->pMethods->iVersion;
	w->base.pMethods = v >= 3 ? &ws_io3 : v == 2 ? &ws_io2 : &ws_io1;
	if (rc != SQLITE_OK || !(flags & SQLITE_OPEN_MAIN_DB) || !zName) return rc;
	/* The journal mode from the database header (bytes 18 and 19 are 2
	** in WAL mode), read through SQLite's own file: opening and closing
	** a descriptor of our own would drop this process's POSIX locks. */
	unsigned char hdr[20];
	int walMode = 0;
	if (w->real->pMethods->xRead(w->real, hdr, sizeof hdr, 0) == SQLITE_OK) {
		walMode = hdr[18] == 2 && hdr[19] == 2;
	}
	sqlite3_int64 size = 0;
	if (w->real->pMethods->xFileSize(w->real, &size) != SQLITE_OK) size = 0;
	long long id = walsyncGoOpen((char *)zName, walMode, size > 0, &w->quiet, &w->syncMode, &w->needWAL);
	if (id < 0) {
		/* Go printed why; the app sees SQLITE_CANTOPEN. */
		w->real->pMethods->xClose(w->real);
		w->base.pMethods = 0;
		return SQLITE_CANTOPEN;
	}
	w->id = id;
	return SQLITE_OK;
}

static int wsDelete(sqlite3_vfs *vfs, const char *z, int syncDir) {
	return ws_base->xDelete(ws_base, z, syncDir);
}
static int wsAccess(sqlite3_vfs *vfs, const char *z, int flags, int *pResOut) {
	return ws_base->xAccess(ws_base, z, flags, pResOut);
}
static int wsFullPathname(sqlite3_vfs *vfs, const char *z, int n, char *out) {
	return ws_base->xFullPathname(ws_base, z, n, out);
}
static void *wsDlOpen(sqlite3_vfs *vfs, const char *z) { return ws_base->xDlOpen(ws_base, z); }
static void wsDlError(sqlite3_vfs *vfs, int n, char *z) { ws_base->xDlError(ws_base, n, z); }
static void (*wsDlSym(sqlite3_vfs *vfs, void *p, const char *z))(void) { return ws_base->xDlSym(ws_base, p, z); }
static void wsDlClose(sqlite3_vfs *vfs, void *p) { ws_base->xDlClose(ws_base, p); }
static int wsRandomness(sqlite3_vfs *vfs, int n, char *z) { return ws_base->xRandomness(ws_base, n, z); }
static int wsSleep(sqlite3_vfs *vfs, int us) { return ws_base->xSleep(ws_base, us); }
static int wsCurrentTime(sqlite3_vfs *vfs, double *t) { return ws_base->xCurrentTime(ws_base, t); }
static int wsGetLastError(sqlite3_vfs *vfs, int n, char *z) {
	return ws_base->xGetLastError ? ws_base->xGetLastError(ws_base, n, z) : 0;
}
static int wsCurrentTimeInt64(sqlite3_vfs *vfs, sqlite3_int64 *t) {
	if (ws_base->iVersion >= 2 && ws_base->xCurrentTimeInt64) return ws_base->xCurrentTimeInt64(ws_base, t);
	double d;
	int rc = ws_base->xCurrentTime(ws_base, &d);
	*t = (sqlite3_int64)(d * 86400000.0);
	return rc;
}
static int wsSetSystemCall(sqlite3_vfs *vfs, const char *z, sqlite3_syscall_ptr p) {
	return ws_base->xSetSystemCall(ws_base, z, p);
}
static sqlite3_syscall_ptr wsGetSystemCall(sqlite3_vfs *vfs, const char *z) {
	return ws_base->xGetSystemCall(ws_base, z);
}
static const char *wsNextSystemCall(sqlite3_vfs *vfs, const char *z) {
	return ws_base->xNextSystemCall(ws_base, z);
}

int walsync_shim_register(void) {
	if (sqlite3_vfs_find(WALSYNC_VFS_NAME)) return SQLITE_OK;
	int rc = sqlite3_initialize();
	if (rc != SQLITE_OK) return rc;
	ws_base = sqlite3_vfs_find(0);
	if (!ws_base) return SQLITE_ERROR;
	ws_vfs.iVersion = ws_base->iVersion < 3 ? ws_base->iVersion : 3;
	ws_vfs.szOsFile = (int)sizeof(WsFile) + ws_base->szOsFile;
	ws_vfs.mxPathname = ws_base->mxPathname;
	ws_vfs.zName = WALSYNC_VFS_NAME;
	ws_vfs.xOpen = wsOpen;
	ws_vfs.xDelete = wsDelete;
	ws_vfs.xAccess = wsAccess;
	ws_vfs.xFullPathname = wsFullPathname;
	ws_vfs.xDlOpen = wsDlOpen;
	ws_vfs.xDlError = wsDlError;
	ws_vfs.xDlSym = wsDlSym;
	ws_vfs.xDlClose = wsDlClose;
	ws_vfs.xRandomness = wsRandomness;
	ws_vfs.xSleep = wsSleep;
	ws_vfs.xCurrentTime = wsCurrentTime;
	ws_vfs.xGetLastError = wsGetLastError;
	ws_vfs.xCurrentTimeInt64 = wsCurrentTimeInt64;
	if (ws_vfs.iVersion >= 3) {
		ws_vfs.xSetSystemCall = wsSetSystemCall;
		ws_vfs.xGetSystemCall = wsGetSystemCall;
		ws_vfs.xNextSystemCall = wsNextSystemCall;
	}
	return sqlite3_vfs_register(&ws_vfs, 0);
}

void walsync_shim_log(int code, const char *msg) {
	sqlite3_log(code, "%s", msg);
}

const char *walsync_shim_uri_parameter(const char *zName, const char *zParam) {
	return sqlite3_uri_parameter(zName, zParam);
}

const char *walsync_shim_base_vfs(void) {
	return ws_base ? ws_base->zName : "";
}

/* walsync_shim_vfs_find is the address of the sqlite3_vfs_find this code
** links, for ext.c to compare with the host's. */
void *walsync_shim_vfs_find(void) {
	return (void *)sqlite3_vfs_find;
}
