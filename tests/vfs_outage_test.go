package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
)

// commitSQL is one transaction of n rows of batch that keeps counter.n
// equal to the row count.
func commitSQL(batch, n int) string {
	return fmt.Sprintf("BEGIN; INSERT INTO t (batch, v) SELECT %d, hex(randomblob(100)) FROM generate_series(1, %d); UPDATE counter SET n = n + %d; COMMIT;", batch, n, n)
}

// Through the sqlite3 shell: a database in rollback-journal mode opened
// through the VFS is switched to WAL mode at the open, and a new one after
// its first write; both are replicated (never silently left out).
func TestVFSShellNonWAL(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		lib := extension(t)
		dir := t.TempDir()
		src := filepath.Join(dir, "app.db")
		createDB(t, src, 4096, "delete", 100)
		fresh := filepath.Join(dir, "fresh.db")
		sh := startShell(t, tg.cli.env)
		sh.send(t, ".load "+strings.TrimSuffix(lib, ".so"), ".open '"+tg.vfsURI(src)+"'",
			"SELECT 'mode=' || journal_mode FROM pragma_journal_mode;")
		sh.expect(t, "mode=wal")
		sh.send(t, commitSQL(7, 20))
		// A new database: created by its first transaction, in rollback
		// mode with the shell's page size, then switched.
		sh.send(t, ".open '"+tg.vfsURI(fresh)+"'", "PRAGMA page_size=8192;",
			"CREATE TABLE t (id INTEGER PRIMARY KEY, batch INTEGER, v TEXT);",
			"CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0);",
			"BEGIN; INSERT INTO t (batch, v) VALUES (1, 'a'), (1, 'b'), (1, 'c'); UPDATE counter SET n = n + 3; COMMIT;",
			"SELECT 'fresh=' || journal_mode || '/' || (SELECT page_size FROM pragma_page_size) FROM pragma_journal_mode;")
		sh.expect(t, "fresh=wal/8192")
		sh.close(t)
		verifyRestore(t, tg, openDB(t, src), src, "app")
		verifyRestore(t, tg, openDB(t, fresh), fresh, "fresh")
	})
}

// Through the sqlite3 shell with walsync_sync=1, MinIO behind a proxy
// that cuts every connection: the INSERT fails ("disk I/O error"), the
// row is committed locally, PRAGMA walsync_flush ships it once the bucket
// is back, and the restore holds every row.
func TestVFSShellSyncOutage(t *testing.T) {
	env := testenv.S3(t)
	p := faultproxy.Start(t, env.Endpoint)
	tg := s3Target(t)
	tg.flags = []string{"--endpoint", p.URL()}
	lib := extension(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 50)
	sh := startShell(t, tg.cli.env, "-batch")
	// .log stdout: what SQLite (and walsync) pass to sqlite3_log, as
	// "(CODE) MESSAGE" lines.
	sh.send(t, ".log stdout", ".load "+strings.TrimSuffix(lib, ".so"),
		".open '"+tg.vfsURI(src)+"&walsync_sync=1&walsync_sync_timeout=2s'",
		"BEGIN; INSERT INTO t (batch, v) VALUES (1, 'ok'); UPDATE counter SET n = n + 1; COMMIT;",
		"SELECT 'one';")
	sh.expect(t, "one")
	p.Set(faultproxy.Refuse)
	start := time.Now()
	sh.send(t, "BEGIN; INSERT INTO t (batch, v) VALUES (2, 'cut'); UPDATE counter SET n = n + 1; COMMIT;",
		"SELECT 'after=' || count(*) FROM t WHERE batch = 2;")
	logged := sh.expectPrefix(t, "(10) walsync: walsync_sync=1 commit failed")
	if !strings.Contains(logged, "not durable in the bucket") {
		t.Fatalf("sqlite3_log line: %s; want the reason", logged)
	}
	sh.expect(t, "after=1") // committed locally, as documented
	t.Logf("the failed commit returned after %v", time.Since(start).Round(time.Millisecond))
	for wait := time.Now(); !strings.Contains(sh.stderr(), "disk I/O error"); time.Sleep(20 * time.Millisecond) {
		if time.Since(wait) > 10*time.Second {
			t.Fatalf("the shell did not report the failed commit; stderr: %s", sh.stderr())
		}
	}
	p.Set(faultproxy.Pass)
	sh.send(t, "PRAGMA walsync_flush='60s';", "SELECT 'flushed';")
	sh.expect(t, "flushed")
	sh.send(t, "BEGIN; INSERT INTO t (batch, v) VALUES (3, 'back'); UPDATE counter SET n = n + 1; COMMIT;",
		"SELECT 'status=' || (SELECT json_extract(walsync_status, '$.pending_objects') FROM pragma_walsync_status);")
	sh.send(t, ".quit")
	select {
	case <-sh.done:
	case <-time.After(60 * time.Second):
		t.Fatal("sqlite3 shell did not exit")
	}
	if n := strings.Count(sh.stderr(), "disk I/O error"); n != 1 {
		t.Fatalf("errors in the shell: %d, want the one failed commit; stderr: %s", n, sh.stderr())
	}
	app := openDB(t, src)
	verifyRestore(t, tg, app, src, "app")
	var n int
	if err := app.QueryRow("SELECT count(*) FROM t WHERE batch IN (1, 2, 3)").Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows of the three commits in the source: %d (%v), want 3", n, err)
	}
}
