package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// walsync watch --dir: databases that appear under the directory are
// followed within seconds under their path relative to it (and keep that
// name when others appear), a file not in WAL mode is reported once and
// followed once it is, a deleted database is released (its spool removed,
// its backups kept), and two roots that would give one name are refused
// at start.
func TestWatchDirDiscovery(t *testing.T) {
	tg := fileTarget(t)
	root := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	first := filepath.Join(root, "a", "app.db")
	createDB(t, first, 4096, "wal", 10)
	w := startWatch(t, tg.cli, tg.args("--dir", root, "--recursive")...)
	waitLog(t, w, "name=a/app", 5*time.Second)

	second := filepath.Join(root, "b", "app.db")
	createDB(t, second, 4096, "wal", 12)
	waitLog(t, w, "name=b/app", 5*time.Second)

	legacy := filepath.Join(root, "legacy.db")
	createDB(t, legacy, 4096, "delete", 5)
	waitLog(t, w, "not in WAL mode", 5*time.Second)
	time.Sleep(3 * time.Second) // three more looks
	if n := strings.Count(w.logs(), "not in WAL mode"); n != 1 {
		t.Fatalf("the file not in WAL mode was reported %d times in 3 s, want once:\n%s", n, w.logs())
	}
	legacyApp := openDB(t, legacy)
	exec1(t, legacyApp, "PRAGMA journal_mode=wal")
	waitLog(t, w, "name=legacy", 5*time.Second)

	app := openDB(t, second)
	insertBatches(t, app, 100, 3, 40)
	insertBatches(t, legacyApp, 100, 3, 40)

	firstApp := openDB(t, first)
	insertBatches(t, firstApp, 100, 2, 40)
	time.Sleep(1500 * time.Millisecond) // shipped before it goes
	firstApp.Close()
	for _, ext := range []string{"", "-wal", "-shm"} {
		os.Remove(first + ext)
	}
	waitLog(t, w, "the database was deleted", 5*time.Second)
	if _, err := os.Stat(filepath.Join(root, "a", ".app.db-walsync")); !os.IsNotExist(err) {
		t.Fatalf("the spool of the deleted database is still there: %v", err)
	}
	w.stop()
	verifyRestore(t, tg, app, second, "b/app")
	verifyRestore(t, tg, legacyApp, legacy, "legacy")
	out := filepath.Join(t.TempDir(), "gone.db")
	tg.cli.ok(t, tg.args("restore", "a/app", "-o", out)...) // its backups stay

	// Two roots that would both give "app".
	x, y := t.TempDir(), t.TempDir()
	createDB(t, filepath.Join(x, "app.db"), 4096, "wal", 1)
	createDB(t, filepath.Join(y, "app.db"), 4096, "wal", 1)
	tg.cli.fails(t, tg.args("watch", "--dir", x, "--dir", y), filepath.Join(x, "app.db"), filepath.Join(y, "app.db"), "share the name")
}
