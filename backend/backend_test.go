package backend

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/file"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/s3"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want URL
	}{
		{"s3://bucket", URL{Scheme: "s3", Bucket: "bucket"}},
		{"s3://bucket/", URL{Scheme: "s3", Bucket: "bucket"}},
		{"s3://bucket/prefix", URL{Scheme: "s3", Bucket: "bucket", Prefix: "prefix"}},
		{"s3://bucket/a/b/", URL{Scheme: "s3", Bucket: "bucket", Prefix: "a/b"}},
		{"S3://my.bucket-1/p", URL{Scheme: "s3", Bucket: "my.bucket-1", Prefix: "p"}},
		{"file:///var/backups", URL{Scheme: "file", Path: "/var/backups"}},
		{"file:///var/backups/", URL{Scheme: "file", Path: "/var/backups"}},
		{"file://./backups", URL{Scheme: "file", Path: "backups"}},
		{"file://./a/../b", URL{Scheme: "file", Path: "b"}},
		{"file://backups", URL{Scheme: "file", Path: "backups"}},
		{"file://backups/sub", URL{Scheme: "file", Path: "backups/sub"}},
		{"file://../up", URL{Scheme: "file", Path: "../up"}},
		{"file:///dir with space/%41", URL{Scheme: "file", Path: "/dir with space/%41"}},
	} {
		got, err := Parse(tt.raw)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q): got=%+v, %v, want %+v", tt.raw, got, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want string // the whole message, or a part of it
	}{
		{"ftp://x", `unknown bucket scheme "ftp" in "ftp://x": use s3://bucket[/prefix] or file:///path`},
		{"gs://bucket/p", `unknown bucket scheme "gs" in "gs://bucket/p"`},
		{"./backups", `has no scheme: use s3://bucket[/prefix] or file:///path`},
		{"", `has no scheme`},
		{"s3://", `empty bucket name`},
		{"s3:///prefix", `empty bucket name`},
		{"s3://bucket:9000/p", `is not a bucket name`},
		{"s3://bucket/a//b", `invalid prefix`},
		{"s3://bucket/a/../b", `invalid prefix`},
		{"s3://bucket/p?region=x", `no query`},
		{"file://", `has no directory`},
		{"file:///x?y", `no query`},
		{"s3://user:hunter2@bucket/p", `must not carry credentials`},
	} {
		_, err := Parse(tt.raw)
		if err == nil {
			t.Errorf("Parse(%q): got=nil, want an error containing %q", tt.raw, tt.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tt.want) {
			t.Errorf("Parse(%q): got=%q, want %q in it", tt.raw, msg, tt.want)
		}
		if strings.Contains(msg, "\n") || strings.Contains(msg, "hunter2") {
			t.Errorf("Parse(%q): message %q spans lines or shows a password", tt.raw, msg)
		}
	}
	if _, err := Parse("ftp://x"); err.Error() != `unknown bucket scheme "ftp" in "ftp://x": use s3://bucket[/prefix] or file:///path` {
		t.Errorf("Parse(ftp://x): got=%q", err)
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, tt := range []struct {
		raw  string
		want string // the client's root
	}{
		{"file://" + filepath.Join(dir, "abs"), filepath.Join(dir, "abs")},
		{"file://./rel", filepath.Join(dir, "rel")},
		{"file://plain", filepath.Join(dir, "plain")},
	} {
		s, err := Open(context.Background(), tt.raw, Options{Endpoint: "ignored"})
		if err != nil {
			t.Fatalf("Open(%q): got=%v, want nil", tt.raw, err)
		}
		c, ok := s.(*file.Client)
		if !ok {
			t.Fatalf("Open(%q): got=%T, want *file.Client", tt.raw, s)
		}
		if c.Root() != tt.want {
			t.Errorf("Open(%q) root: got=%q, want %q", tt.raw, c.Root(), tt.want)
		}
		// The directory does not exist yet: reading says so, naming it.
		if _, err := s.Stat(context.Background(), "k"); err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Stat in a missing directory: got=%v, want a bucket-not-found error naming %s", err, tt.want)
		}
	}
}

func TestOpenS3(t *testing.T) {
	testenv.Isolate(t)
	for _, tt := range []struct {
		raw, want string
	}{
		{"s3://bucket", "s3://bucket"},
		{"s3://bucket/prefix/", "s3://bucket/prefix"},
		{"s3://bucket/a/b", "s3://bucket/a/b"},
	} {
		s, err := Open(context.Background(), tt.raw, Options{Endpoint: "http://127.0.0.1:1", Region: "eu-west-1"})
		if err != nil {
			t.Fatalf("Open(%q): got=%v, want nil", tt.raw, err)
		}
		c, ok := s.(*s3.Client)
		if !ok {
			t.Fatalf("Open(%q): got=%T, want *s3.Client", tt.raw, s)
		}
		if got := c.String(); got != tt.want {
			t.Errorf("Open(%q).String(): got=%q, want %q", tt.raw, got, tt.want)
		}
		if got := c.Endpoint(); got != "http://127.0.0.1:1" {
			t.Errorf("Open(%q).Endpoint(): got=%q, want %q", tt.raw, got, "http://127.0.0.1:1")
		}
	}
}
