package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/restore"
)

func cfgJSON(t *testing.T, bucket string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"bucket": bucket, "log_level": "info"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantKind(t *testing.T, e envelope, kind string) {
	t.Helper()
	if e.Error == nil {
		t.Fatalf("got=ok %v, want an error of kind %q", e.OK, kind)
	}
	if e.Error.Kind != kind {
		t.Fatalf("got kind=%q (%s), want %q", e.Error.Kind, e.Error.Message, kind)
	}
}

func wantOK(t *testing.T, e envelope) any {
	t.Helper()
	if e.Error != nil {
		t.Fatalf("got error %s: %s, want ok", e.Error.Kind, e.Error.Message)
	}
	return e.OK
}

// newDB makes a WAL database with a few rows.
func newDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{fmt.Errorf("get a/b: %w", walsync.ErrChecksum), kindChecksum},
		{fmt.Errorf("a/b: %w: refusing to use it", walsync.ErrNoChecksum), kindChecksum},
		{fmt.Errorf("%w: missing", restore.ErrGap), kindIntegrity},
		{fmt.Errorf("x: %w", walsync.ErrFormat), kindIntegrity},
		{fmt.Errorf("no snapshots: %w", walsync.ErrNotExist), kindNotFound},
		{fmt.Errorf("list: %w", walsync.ErrBucketNotFound), kindNotFound},
		{fmt.Errorf("pit: %w", restore.ErrBeforeFirst), kindNotFound},
		{fmt.Errorf("%w: out.db", restore.ErrOutputExists), kindExists},
		{fmt.Errorf("%w: empty", walsync.ErrInvalidName), kindConfig},
		{fmt.Errorf("list: %w", walsync.ErrAccessDenied), kindConfig},
		{configErrorf("bad"), kindConfig},
		{errors.New("disk on fire"), kindOther},
	} {
		if got := classify(tc.err).Kind; got != tc.kind {
			t.Errorf("classify(%v): got=%q, want %q", tc.err, got, tc.kind)
		}
	}
	if got, want := classify(fmt.Errorf("get k: %w", walsync.ErrChecksum)).Message, "get k: checksum mismatch"; got != want {
		t.Errorf("message: got=%q, want %q", got, want)
	}
}

func TestCallRecoversPanics(t *testing.T) {
	e := call(func(*sink) (any, error) { panic("boom") })
	wantKind(t, e, kindOther)
	if e.Error.Message != "internal error: boom (please report it)" {
		t.Errorf("message: got=%q", e.Error.Message)
	}
}

func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	good := cfgJSON(t, "file://"+dir+"/b")
	for name, tc := range map[string]struct {
		e    envelope
		kind string
	}{
		"invalid JSON":    {call(func(s *sink) (any, error) { return check(s, "{") }), kindConfig},
		"unknown field":   {call(func(s *sink) (any, error) { return check(s, `{"bucket":"file:///x","bukket":1}`) }), kindConfig},
		"no bucket":       {call(func(s *sink) (any, error) { return check(s, `{}`) }), kindConfig},
		"unknown scheme":  {call(func(s *sink) (any, error) { return check(s, cfgJSON(t, "ftp://x")) }), kindConfig},
		"no scheme":       {call(func(s *sink) (any, error) { return check(s, cfgJSON(t, "bucket")) }), kindConfig},
		"bad log level":   {call(func(s *sink) (any, error) { return check(s, `{"bucket":"file:///x","log_level":"loud"}`) }), kindConfig},
		"missing db":      {call(func(s *sink) (any, error) { return snapshot(s, good, dir+"/nope.db", "") }), kindNotFound},
		"bad name":        {call(func(s *sink) (any, error) { return snapshot(s, good, dir, "../x") }), kindConfig},
		"restore nothing": {call(func(s *sink) (any, error) { return restoreDB(s, good, "app", dir+"/out.db", "") }), kindNotFound},
		"restore bad pit": {call(func(s *sink) (any, error) {
			return restoreDB(s, good, "app", dir+"/out.db", `{"point_in_time":"yesterday"}`)
		}), kindConfig},
		"watch nothing": {call(func(s *sink) (any, error) { return watchStart(s, good, `{"paths":[]}`) }), kindConfig},
		"watch missing": {call(func(s *sink) (any, error) { return watchStart(s, good, `{"paths":["`+dir+`/nope.db"]}`) }), kindNotFound},
		"no handle":     {call(func(s *sink) (any, error) { return watchStop(s, 1<<40) }), kindConfig},
	} {
		t.Run(name, func(t *testing.T) { wantKind(t, tc.e, tc.kind) })
	}
}

// The seed's sequence through the library: snapshot, list, restore, with
// the output byte-identical to the source after a TRUNCATE checkpoint.
func TestSnapshotListRestore(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	db := newDB(t, src)
	cfg := cfgJSON(t, "file://"+filepath.Join(dir, "backups"))
	res := wantOK(t, call(func(s *sink) (any, error) { return snapshot(s, cfg, src, "") })).(snapshotResult)
	if res.Name != "app" || res.Size <= 0 || len(res.SHA256) != 64 {
		t.Fatalf("snapshot result: %+v", res)
	}
	dbs := wantOK(t, call(func(s *sink) (any, error) { return list(s, cfg) })).([]restore.DBInfo)
	if len(dbs) != 1 || dbs[0].Name != "app" || dbs[0].Snapshots != 1 {
		t.Fatalf("list: %+v", dbs)
	}
	out := filepath.Join(dir, "restored.db")
	wantOK(t, call(func(s *sink) (any, error) { return restoreDB(s, cfg, "app", out, "") }))
	wantKind(t, call(func(s *sink) (any, error) { return restoreDB(s, cfg, "app", out, "") }), kindExists)
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	assertSameFile(t, src, out)
}

func assertSameFile(t *testing.T, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s (%d bytes) differs from %s (%d bytes)", got, len(b), want, len(a))
	}
}

// watchStart returns when the watcher logs readyMessage. If replicate
// renamed that record, watchStart would wait for the watcher's end: this
// test says so instead of hanging.
func TestWatchStartWaitsForReady(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	db := newDB(t, src)
	cfg := cfgJSON(t, "file://"+filepath.Join(dir, "backups"))
	opts := `{"paths":["` + src + `"],"snapshot_interval":0,"shutdown_timeout":10}`
	started := make(chan envelope, 1)
	go func() { started <- call(func(s *sink) (any, error) { return watchStart(s, cfg, opts) }) }()
	var e envelope
	select {
	case e = <-started:
	case <-time.After(60 * time.Second):
		t.Fatalf("watchStart did not return within 60s: does replicate.Watcher.Run still log %q when it is ready?", readyMessage)
	}
	res := wantOK(t, e).(map[string]any)
	handle := res["handle"].(int64)
	sawReady := false
	for _, r := range e.Logs {
		sawReady = sawReady || r.Msg == readyMessage
	}
	if !sawReady {
		t.Errorf("logs at level info: no %q record in %+v", readyMessage, e.Logs)
	}
	for i := 0; i < 20; i++ {
		if _, err := db.Exec("INSERT INTO t VALUES (?)", i); err != nil {
			t.Fatal(err)
		}
	}
	wantOK(t, call(func(s *sink) (any, error) { return watchPoll(s, handle, 10) }))
	stop := wantOK(t, call(func(s *sink) (any, error) { return watchStop(s, handle) })).(map[string]any)
	if st := stop["stats"].(watchStats); st.FramesCaptured == 0 || st.ObjectsUploaded == 0 {
		t.Errorf("stats after 20 commits: %+v", st)
	}
	wantKind(t, call(func(s *sink) (any, error) { return watchPoll(s, handle, 0) }), kindConfig)

	out := filepath.Join(dir, "restored.db")
	wantOK(t, call(func(s *sink) (any, error) { return restoreDB(s, cfg, "app", out, "") }))
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	assertSameFile(t, src, out)
}

func TestSyncEnv(t *testing.T) {
	t.Setenv("AWS_WALSYNC_TEST_GONE", "x")
	t.Setenv("AWS_WALSYNC_TEST_KEPT", "old")
	t.Setenv("WALSYNC_TEST_OTHER", "stays")
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := cutEnv(kv); k != "AWS_WALSYNC_TEST_GONE" {
			env[k] = v
		}
	}
	env["AWS_WALSYNC_TEST_KEPT"] = "new"
	delete(env, "WALSYNC_TEST_OTHER")
	syncEnv(env)
	if _, ok := os.LookupEnv("AWS_WALSYNC_TEST_GONE"); ok {
		t.Error("AWS_WALSYNC_TEST_GONE: still set, want unset")
	}
	if got := os.Getenv("AWS_WALSYNC_TEST_KEPT"); got != "new" {
		t.Errorf("AWS_WALSYNC_TEST_KEPT: got=%q, want new", got)
	}
	if got := os.Getenv("WALSYNC_TEST_OTHER"); got != "stays" {
		t.Errorf("WALSYNC_TEST_OTHER (not AWS_*): got=%q, want stays", got)
	}
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}
