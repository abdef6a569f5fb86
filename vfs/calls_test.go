package vfs

// CommitCalls is how many commits the shim has reported to Go so far.
func CommitCalls() int64 { return commitCalls.Load() }
