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
)

func recoverInto(what string) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "walsync: internal error in %s: %v\n", what, r)
	}
}

//export walsyncGoOpen
func walsyncGoOpen(zName *C.char, walMode C.int) (id C.longlong) {
	id = -1
	defer recoverInto("open")
	path := C.GoString(zName)
	n, err := open(path, zName, walMode != 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "walsync: cannot replicate %s: %v\n", path, err)
		return -1
	}
	return C.longlong(n)
}

//export walsyncGoCommit
func walsyncGoCommit(id C.longlong, mxFrame, salt1 C.uint) C.int {
	defer recoverInto("commit")
	commit(int64(id), uint32(mxFrame), uint32(salt1))
	return 0
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
