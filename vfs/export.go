package vfs

// The functions the C shim calls (shim.c). They must never panic into C:
// a panic is logged as one line and the call does nothing.

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"sync/atomic"
)

// commitCalls counts the commits the shim reported (the tests read it:
// the shim skips most in async mode).
var commitCalls atomic.Int64

func recoverInto(what string) {
	if r := recover(); r != nil {
		logFailure(defaultLogger(), sqliteInternal, fmt.Sprintf("internal error in %s", what), fmt.Errorf("%v", r))
	}
}

//export walsyncGoOpen
func walsyncGoOpen(zName *C.char, walMode, hasContent C.int, quiet **C.longlong, syncMode *C.int, needWAL **C.int) (id C.longlong) {
	id = -1
	defer recoverInto("open")
	path := C.GoString(zName)
	d, err := open(path, zName, walMode != 0, hasContent != 0)
	if err != nil {
		logFailure(openLogger(), sqliteCantOpen, "cannot open "+path+" through the walsync VFS", err)
		return -1
	}
	*quiet, *needWAL = d.quiet, d.needWAL
	if d.cfg.sync {
		*syncMode = 1
	}
	return C.longlong(d.id)
}

// walsyncGoWroteRollback: a write transaction ended on a database that
// is not in WAL mode yet.
//
//export walsyncGoWroteRollback
func walsyncGoWroteRollback(id C.longlong) {
	defer recoverInto("switch to WAL")
	wroteRollback(int64(id))
}

// walsyncGoPragma answers PRAGMA walsync_status and walsync_flush (name,
// arg: the PRAGMA's value or NULL) with a text value in *out (malloc'd,
// freed by the shim) and SQLITE_OK, or an error message and SQLITE_ERROR.
// mxFrame and salt1 are the wal-index header as the connection sees it.
//
//export walsyncGoPragma
func walsyncGoPragma(id C.longlong, name, arg *C.char, mxFrame, salt1 C.uint, out **C.char) (rc C.int) {
	rc = sqliteError
	defer recoverInto("pragma")
	a := ""
	if arg != nil {
		a = C.GoString(arg)
	}
	text, code := pragma(int64(id), C.GoString(name), a, uint32(mxFrame), uint32(salt1))
	*out = C.CString(text)
	return C.int(code)
}

// walsyncGoSyncCommit waits until the commit that left the wal-index
// header at mxFrame and salt1 is durable in the bucket (walsync_sync=1).
// It returns SQLITE_OK, or the SQLite error code the COMMIT fails with.
//
//export walsyncGoSyncCommit
func walsyncGoSyncCommit(id C.longlong, mxFrame, salt1 C.uint) (rc C.int) {
	rc = sqliteIOErr
	defer recoverInto("sync commit")
	return C.int(syncCommit(int64(id), uint32(mxFrame), uint32(salt1)))
}

// walsyncGoCommit returns the frame limit below which the shim may skip
// the next calls while the quiet word holds (commit); 0: none.
//
//export walsyncGoCommit
func walsyncGoCommit(id C.longlong, mxFrame, salt1 C.uint) (skipBelow C.uint) {
	defer recoverInto("commit")
	commitCalls.Add(1)
	return C.uint(commit(int64(id), uint32(mxFrame), uint32(salt1)))
}

// walsyncGoCheckpoint: the connection took (start 1) or released (0) the
// checkpoint lock.
//
//export walsyncGoCheckpoint
func walsyncGoCheckpoint(id C.longlong, start C.int) {
	defer recoverInto("checkpoint")
	checkpoint(int64(id), start != 0)
}

//export walsyncGoClose
func walsyncGoClose(id C.longlong) {
	defer recoverInto("close")
	closeConn(int64(id))
}

//export walsyncGoAcquire
func walsyncGoAcquire(id C.longlong, mxFrame, nBackfill C.uint) (here C.int) {
	defer recoverInto("write lock")
	if acquire(int64(id), uint32(mxFrame), uint32(nBackfill)) {
		here = 1
	}
	return here
}

// walsyncGoCheckpointWrite: the connection that holds the checkpoint lock
// took the write lock (a RESTART, TRUNCATE or FULL checkpoint). It returns
// 1 when walsync's pin let go of the WAL (walsyncGoCheckpointResume must
// follow before the checkpoint lock is released).
//
//export walsyncGoCheckpointWrite
func walsyncGoCheckpointWrite(id C.longlong) (letGo C.int) {
	defer recoverInto("checkpoint")
	if checkpointLetGo(int64(id)) {
		letGo = 1
	}
	return letGo
}

//export walsyncGoCheckpointResume
func walsyncGoCheckpointResume(id C.longlong) {
	defer recoverInto("checkpoint")
	checkpointResume(int64(id))
}
