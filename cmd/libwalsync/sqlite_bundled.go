//go:build !libsqlite3

package main

import "github.com/walsync/walsync/internal/sqlitemem"

// sqliteMode: this build carries its own SQLite.
const sqliteMode = "bundled"

// The SQLite of this library is its own (the amalgamation inside it), so
// its process-wide settings are ours to choose: small connections, as the
// CLI makes them, set before anything opens a database. A failure (SQLite
// already initialised) only costs memory.
func init() {
	_ = sqlitemem.Configure()
}
