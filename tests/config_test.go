package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// walsync watch -c: the databases and directories of a YAML file, with
// ${VAR} from the environment (the endpoint here); SIGHUP reads it again:
// an entry added starts, one removed stops (its last commits shipped),
// the others go on untouched; a file that no longer parses is refused
// and the running configuration stays. Against MinIO.
func TestWatchConfigAndReload(t *testing.T) {
	tg := s3Target(t)
	dir := t.TempDir()
	tenants := filepath.Join(dir, "tenants")
	if err := os.MkdirAll(tenants, 0o755); err != nil {
		t.Fatal(err)
	}
	a, b, t1 := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db"), filepath.Join(tenants, "t1.db")
	for _, p := range []string{a, b, t1} {
		createDB(t, p, 4096, "wal", 10)
	}
	cfg := filepath.Join(dir, "walsync.yml")
	write := func(body string) {
		t.Helper()
		text := fmt.Sprintf("bucket: %s\nendpoint: ${TEST_S3_ENDPOINT}\nsync-interval: 200ms\ndbs:\n%s", tg.bucket, body)
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("  - path: %s\n    name: alpha\n  - dir: tenants\n", a))
	c := &cli{env: append(append([]string{}, tg.cli.env...), "TEST_S3_ENDPOINT="+tg.flags[1])}
	w := startWatch(t, c, "-c", cfg)
	waitLog(t, w, "name=alpha", 5*time.Second)
	waitLog(t, w, "name=t1", 5*time.Second)

	appA, appT1 := openDB(t, a), openDB(t, t1)
	insertBatches(t, appA, 100, 2, 30)
	insertBatches(t, appT1, 100, 2, 30)

	write(fmt.Sprintf("  - path: %s\n    name: beta\n  - dir: tenants\n", b))
	w.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, w, "SIGHUP: configuration reloaded", 10*time.Second)
	logs := w.logs()
	if !strings.Contains(logs, "SIGHUP: no longer replicated") || !strings.Contains(logs, "SIGHUP: replicating") {
		t.Fatalf("reload did not stop alpha and start beta:\n%s", logs)
	}
	if strings.Count(logs, "name=t1") != 1 {
		t.Fatalf("the directory's database was touched by the reload:\n%s", logs)
	}

	if err := os.WriteFile(cfg, []byte("bucket: x\ndbz: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, w, "the configuration was not reloaded", 10*time.Second)
	if !strings.Contains(w.logs(), `unknown key \"dbz\"`) && !strings.Contains(w.logs(), `unknown key "dbz"`) {
		t.Fatalf("the refusal does not name the key:\n%s", w.logs())
	}
	appB := openDB(t, b)
	insertBatches(t, appB, 100, 3, 30)
	insertBatches(t, appT1, 200, 1, 30)
	w.stop()
	verifyRestore(t, tg, appA, a, "alpha")
	verifyRestore(t, tg, appB, b, "beta")
	verifyRestore(t, tg, appT1, t1, "t1")

	// A configuration with a mistake fails the start, naming line and key.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("bucket: %s\ndbs:\n  - path: %s\n    retension: 1h\n", tg.bucket, a)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.fails(t, []string{"watch", "-c", cfg}, "line 4", `unknown key "retension"`)
}
