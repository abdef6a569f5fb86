package vfs

// The functions the C shim calls (shim.c). They must never panic into C:
// a panic is logged as one line and the call does nothing.

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"os"
	"sync/atomic"
)

// commitCalls counts the commits the shim reported (the tests read it:
// the shim skips most in async mode).
var commitCalls atomic.Int64

func recoverInto(what string) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "walsync: internal error in %s: %v\n", what, r)
	}
}

//export walsyncGoOpen
func walsyncGoOpen(zName *C.char, walMode C.int, quiet **C.longlong) (id C.longlong) {
	id = -1
	defer recoverInto("open")
	path := C.GoString(zName)
	n, q, err := open(path, zName, walMode != 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "walsync: cannot replicate %s: %v\n", path, err)
		return -1
	}
	*quiet = q
	return C.longlong(n)
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

//export walsyncGoCheckpoint
func walsyncGoCheckpoint(id C.longlong) {
	defer recoverInto("checkpoint")
	checkpoint(int64(id))
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
