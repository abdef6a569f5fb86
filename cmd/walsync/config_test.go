package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "walsync.yml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestLoadConfig(t *testing.T) {
	p := writeConfig(t, `# a complete one
bucket: s3://${BUCKET_NAME}/backups
endpoint: https://fly.storage.tigris.dev
sync-interval: 2s
snapshot-interval: 30m
retention: 72h
shutdown-timeout: 45
idle-close: 2m
dbs:
  - path: /data/app.db
    name: main
  - path: rel/other.db
    retention: 24h
  - dir: /data/tenants
    pattern: "*.sqlite"
    recursive: true
    snapshot-interval: 10m
`)
	c, err := loadConfig(p, env(map[string]string{"BUCKET_NAME": "prod"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bucket != "s3://prod/backups" || c.SyncInterval.d != 2*time.Second || c.SnapshotInterval.d != 30*time.Minute ||
		c.Retention.d != 72*time.Hour || c.ShutdownTimeout.d != 45*time.Second || c.IdleClose.d != 2*time.Minute {
		t.Fatalf("settings: %+v", c)
	}
	if len(c.DBs) != 3 || c.DBs[0].Name != "main" || c.DBs[1].Path != filepath.Join(filepath.Dir(p), "rel/other.db") ||
		*c.DBs[1].overrides().Retention != 24*time.Hour || c.DBs[2].Pattern != "*.sqlite" || !c.DBs[2].Recursive ||
		*c.DBs[2].overrides().SnapshotInterval != 10*time.Minute || c.DBs[2].overrides().Retention != nil {
		t.Fatalf("dbs: %+v", c.DBs)
	}
}

// Every mistake is one line naming the file, the line and what is wrong.
func TestLoadConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		text string
		want []string
	}{
		{"bucket: file:///b\nsnapshot_interval: 1h\n", []string{"line 2", `unknown key "snapshot_interval"`}},
		{"bucket: file:///b\ndbs:\n  - path: a.db\n    retension: 1h\n", []string{"line 4", `unknown key "retension"`}},
		{"bucket: file:///b\nsync-interval: soon\n", []string{"line 2", `"soon" is not a duration`}},
		{"bucket: file:///b\nretention: -1h\n", []string{"line 2", ">= 0"}},
		{"bucket: s3://${NOPE}\n", []string{"line 1", "${NOPE} is not set"}},
		{"dbs:\n  - path: a.db\n    dir: d\n", []string{"line 2", "either path or dir"}},
		{"dbs:\n  - name: x\n", []string{"line 2", "needs path"}},
		{"dbs:\n  - dir: d\n    name: x\n", []string{"line 2", "name goes with path"}},
		{"dbs:\n  - path: a.db\n    name: ../x\n", []string{"line 2", "name"}},
		{"bucket: [a\n", []string{"walsync.yml"}},
		{"", []string{"empty"}},
	} {
		p := writeConfig(t, tt.text)
		_, err := loadConfig(p, env(nil))
		if err == nil {
			t.Fatalf("%q: got nil, want an error", tt.text)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, p) {
			t.Errorf("%q: %q: want one line naming the file", tt.text, msg)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q: %q: want %q in it", tt.text, msg, w)
			}
		}
	}
}

// A reload compares entries by value: the same file read twice gives the
// same entries (each reading makes new settings), and a changed setting
// does not.
func TestReloadSeesUnchangedEntries(t *testing.T) {
	text := "dbs:\n  - path: /data/a.db\n    retention: 24h\n  - path: /data/b.db\n"
	first, err := loadConfig(writeConfig(t, text), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	again, err := loadConfig(writeConfig(t, text), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := loadConfig(writeConfig(t, strings.Replace(text, "24h", "48h", 1)), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	set := func(c *fileConfig) *dbSet {
		s, err := buildSet(nil, "", nil, "", false, c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, c := set(first), set(again), set(changed)
	for _, p := range a.order {
		if !a.paths[p].same(b.paths[p]) {
			t.Errorf("%s: the same entry read twice is taken as changed", p)
		}
	}
	if a.paths["/data/a.db"].same(c.paths["/data/a.db"]) {
		t.Error("a changed retention is taken as unchanged")
	}
	if !a.paths["/data/b.db"].same(c.paths["/data/b.db"]) {
		t.Error("an entry without settings of its own is taken as changed")
	}
}
