//go:build linux

package fsystest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/walsync/walsync/internal/fsys"
)

func write(t *testing.T, c *Crash, path, data string, sync bool) {
	t.Helper()
	f, err := c.OpenFile("w", path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Reboot keeps a file's synced content under the names its directory's
// last fsync saw, and leaves files that never went through it alone.
func TestCrashKeepsOnlySynced(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	if err := os.WriteFile(p("app.db"), []byte("app"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("old"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := NewCrash()
	write(t, c, p("unsynced"), "u", false) // never synced, name never synced
	write(t, c, p("synced"), "s1", true)   // synced, then the directory
	if err := fsys.SyncDir(c, "d", dir); err != nil {
		t.Fatal(err)
	}
	write(t, c, p("synced"), "s2", false) // rewritten, not synced: s1 stays
	write(t, c, p("noname"), "n", true)   // synced, its name never is
	if err := c.Rename("r", p("old"), p("renamed")); err != nil {
		t.Fatal(err) // not synced: old stays old
	}
	if err := c.Remove("rm", p("synced")); err != nil {
		t.Fatal(err) // not synced: synced comes back
	}
	if err := os.WriteFile(p("app.db"), []byte("app2"), 0o644); err != nil {
		t.Fatal(err) // the application's write, not through c
	}
	c.CrashAt(c.Steps() + 2)
	f, err := c.OpenFile("late", p("late"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("l")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("write at the crash point: got=%v, want %v", err, ErrCrashed)
	}
	f.Close()
	if err := c.Reboot(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"app.db": "app2", "old": "old", "renamed": "<none>", "unsynced": "",
		"synced": "s1", "noname": "<none>", "late": "<none>",
	} {
		if got := content(t, p(name)); got != want {
			t.Errorf("%s after reboot: got=%q, want %q", name, got, want)
		}
	}
}

func TestCrashFailsEverythingAfterThePoint(t *testing.T) {
	dir := t.TempDir()
	c := NewCrash()
	c.CrashAt(1)
	if _, err := c.CreateTemp("t", dir, "x-*"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("step 1: got=%v, want %v", err, ErrCrashed)
	}
	if _, err := c.Stat("s", dir); !errors.Is(err, ErrCrashed) {
		t.Fatalf("a read after the crash: got=%v, want %v", err, ErrCrashed)
	}
}
