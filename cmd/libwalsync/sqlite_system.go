//go:build libsqlite3

package main

// sqliteMode: this build links the system's libsqlite3, which the host
// process (Python's sqlite3 module) usually uses too. Its process-wide
// settings belong to the host, so sqlitemem.Configure is not called: it
// would change the host's connections, or fail if the host already
// opened one.
const sqliteMode = "system"
