package vfs_test

import (
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/walsync/walsync/vfs"
)

// A Go program replicates its database by opening it through the walsync
// VFS: every commit is shipped to the bucket, and closing the last
// connection ships what is pending. `walsync restore app -o app.db -b
// BUCKET` gives it back.
func Example() {
	dir, _ := os.MkdirTemp("", "walsync-example-")
	defer os.RemoveAll(dir)
	bucket := "file://" + filepath.Join(dir, "backups") // or s3://bucket/prefix

	// Defaults for every database opened through the VFS; URI parameters
	// (walsync_bucket, walsync_endpoint, walsync_sync, walsync_name) win.
	if err := vfs.Register(vfs.Options{Bucket: bucket}); err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "app.db")+"?vfs=walsync&_journal_mode=WAL")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('replicated')"); err != nil {
		log.Fatal(err)
	}
	if err := db.Close(); err != nil { // ships what is pending
		log.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "backups", "app", "snapshots", "*.db.zst"))
	fmt.Println("snapshots:", len(snaps))
	// Output: snapshots: 1
}
