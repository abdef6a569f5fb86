package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smallFS mounts a tmpfs of size (e.g. "2m") for the test, or skips the
// test when this machine does not let it (not root).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small file system here (%v: %s); the full-disk test needs root", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes into dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for n := len(buf) / 2; n > 0; n /= 2 { // the last bytes too
		if _, err := f.Write(buf[:n]); err != nil {
			continue
		}
	}
	return p
}

// The spool's disk is full while the application writes: walsync watch
// logs the failure once (not once per write), capture resumes by itself
// when space returns and says so, and the restore is exact.
func TestWatchSpoolDiskFull(t *testing.T) {
	tg := fileTarget(t)
	small := smallFS(t, "2m")
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	createDB(t, src, 4096, "wal", 20)
	// The spool lives beside the database; here on the small file system.
	spool := filepath.Join(small, "spool")
	if err := os.Mkdir(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(spool, filepath.Join(dir, ".app.db-walsync")); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, tg.cli, tg.args(src)...)
	app := openDB(t, src)
	app.SetMaxOpenConns(1)
	insertBatches(t, app, 1, 20, 10)
	time.Sleep(500 * time.Millisecond)
	filler := fill(t, small)
	for i := 0; i < 200; i++ { // 200 commits, ~5 s, each one raising a capture
		insertBatches(t, app, 100+i, 2, 2)
		time.Sleep(25 * time.Millisecond)
	}
	lines := strings.Count(w.logs(), `level=ERROR msg="capture failed`)
	if lines == 0 {
		t.Fatalf("no capture failed while the spool's disk was full:\n%s", w.logs())
	}
	if lines > 1 {
		t.Fatalf("%d lines about the failing capture in ~5 s, want one (once a minute):\n%s", lines, w.logs())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	insertBatches(t, app, 400, 10, 10)
	waitLog(t, w, "capture works again", 10*time.Second)
	time.Sleep(1500 * time.Millisecond)
	w.cmd.Process.Signal(os.Interrupt)
	<-w.done
	verifyRestore(t, tg, app, src, "app")
}
