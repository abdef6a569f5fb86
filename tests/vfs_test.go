package tests

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The loadable extension (cmd/libwalsync built as make build builds it),
// built once for the tests that need it.
var (
	extOnce sync.Once
	extPath string
	extErr  error
)

func extension(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Fatal("the sqlite3 shell is not installed (make test installs it: apt-get install sqlite3)")
	}
	extOnce.Do(func() {
		extPath = filepath.Join(filepath.Dir(binary), "libwalsync.so")
		build := exec.Command("go", "build", "-buildmode=c-shared", "-tags", "libsqlite3", "-o", extPath, "../cmd/libwalsync")
		out, err := build.CombinedOutput()
		if err != nil {
			extErr = fmt.Errorf("build libwalsync: %v\n%s", err, out)
		}
	})
	if extErr != nil {
		t.Fatal(extErr)
	}
	return extPath
}

// shell is a sqlite3 shell process fed line by line.
type shell struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	mu    sync.Mutex
	out   strings.Builder
	done  chan struct{}
	lines chan string
}

// startShell starts the sqlite3 shell with args (default -bail: the
// first error ends it).
func startShell(t *testing.T, env []string, args ...string) *shell {
	t.Helper()
	if len(args) == 0 {
		args = []string{"-bail"}
	}
	s := &shell{cmd: exec.Command("sqlite3", args...), done: make(chan struct{}), lines: make(chan string, 1000)}
	s.cmd.Env = env
	var err error
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = &lockedWriter{s: s}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.in.Close()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
		}
	})
	return s
}

type lockedWriter struct{ s *shell }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

func (s *shell) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func (s *shell) send(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(s.in, l+"\n"); err != nil {
			t.Fatalf("sqlite3 shell: %v (stderr: %s)", err, s.stderr())
		}
	}
}

// expect waits for the shell to print want (a SELECT's output).
func (s *shell) expect(t *testing.T, want string) {
	t.Helper()
	s.expectLine(t, want, func(l string) bool { return l == want })
}

// expectPrefix waits for a line that starts with prefix and returns it.
func (s *shell) expectPrefix(t *testing.T, prefix string) string {
	t.Helper()
	return s.expectLine(t, prefix+"...", func(l string) bool { return strings.HasPrefix(l, prefix) })
}

func (s *shell) expectLine(t *testing.T, want string, match func(string) bool) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l := <-s.lines:
			if match(l) {
				return l
			}
		case <-s.done:
			t.Fatalf("sqlite3 shell exited before printing %q; stderr: %s", want, s.stderr())
		case <-timeout:
			t.Fatalf("sqlite3 shell did not print %q; stderr: %s", want, s.stderr())
		}
	}
}

// close ends the shell (closing its last connection ships what is
// pending) and checks its exit.
func (s *shell) close(t *testing.T) {
	t.Helper()
	s.in.Close()
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatal("sqlite3 shell did not exit")
	}
	if !s.cmd.ProcessState.Success() || strings.Contains(s.stderr(), "Error") {
		t.Fatalf("sqlite3 shell: %v; stderr: %s", s.cmd.ProcessState, s.stderr())
	}
}

// vfsURI is the .open argument for src through the walsync VFS into tg.
func (tg target) vfsURI(src string) string {
	u := "file:" + src + "?vfs=walsync&walsync_bucket=" + tg.bucket
	for i := 0; i+1 < len(tg.flags); i += 2 {
		if tg.flags[i] == "--endpoint" {
			u += "&walsync_endpoint=" + tg.flags[i+1]
		}
	}
	return u
}

// The sqlite3 shell with the extension replicates with nothing else
// running: .load, .open with ?vfs=walsync, write, quit; the restore equals
// the checkpointed source.
func TestVFSSqliteShell(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		lib := extension(t)
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 100)
		sh := startShell(t, tg.cli.env)
		sh.send(t, ".load "+strings.TrimSuffix(lib, ".so"), ".open '"+tg.vfsURI(src)+"'")
		for i := 0; i < 30; i++ {
			sh.send(t, "BEGIN;",
				fmt.Sprintf("INSERT INTO t (batch, v) SELECT %d, hex(randomblob(200)) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3);", 1000+i),
				"UPDATE counter SET n = n + 3;", "COMMIT;")
		}
		sh.send(t, "SELECT 'count=' || count(*) FROM t;")
		sh.expect(t, "count=190")
		sh.close(t)
		app := openDB(t, src)
		verifyRestore(t, tg, app, src, "app")
	})
}

// walsync watch refuses a database that the VFS in another process
// replicates, and says so; once that process is gone, watch takes it.
func TestWatchRefusesVFSDatabase(t *testing.T) {
	tg := fileTarget(t)
	lib := extension(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 100)
	sh := startShell(t, tg.cli.env)
	sh.send(t, ".load "+strings.TrimSuffix(lib, ".so"), ".open '"+tg.vfsURI(src)+"'",
		"INSERT INTO t (batch, v) VALUES (7, 'x'); UPDATE counter SET n = n + 1;", "SELECT 'ok';")
	sh.expect(t, "ok")
	tg.cli.fails(t, tg.args("watch", src), "already replicated", "walsync VFS", "sqlite3")
	sh.close(t)
	w := startWatch(t, tg.cli, tg.args(src)...)
	w.stop()
	app := openDB(t, src)
	verifyRestore(t, tg, app, src, "app")
	if _, err := os.Stat(src + "-wal"); err != nil {
		t.Logf("WAL after the shell closed: %v", err)
	}
}
