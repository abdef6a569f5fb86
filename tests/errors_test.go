package tests

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/internal/testenv"
)

func TestErrorMissingDatabase(t *testing.T) {
	tg := fileTarget(t)
	missing := filepath.Join(t.TempDir(), "nope.db")
	tg.cli.fails(t, tg.args("snapshot", missing), missing, "no such file")
}

func TestErrorNotSQLite(t *testing.T) {
	tg := fileTarget(t)
	for _, content := range []string{"hello, this is not a database", strings.Repeat("z", 4096), ""} {
		p := filepath.Join(t.TempDir(), "text.db")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tg.cli.fails(t, tg.args("snapshot", p), p, "not a SQLite database")
	}
}

func TestErrorUnknownName(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		out := filepath.Join(t.TempDir(), "out.db")
		tg.cli.fails(t, tg.args("restore", "ghost", "-o", out), "ghost")
		assertAbsent(t, out)
	})
}

func TestErrorNameLeavesPrefix(t *testing.T) {
	parent := t.TempDir()
	tg := target{name: "file", cli: fileCLI(t), bucket: "file://" + filepath.Join(parent, "bucket")}
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	createDB(t, src, 4096, "wal", 10)
	for _, name := range []string{"../x", "a/../../x", "/etc/passwd", "a/./b"} {
		out := filepath.Join(dir, "out.db")
		tg.cli.fails(t, tg.args("restore", name, "-o", out), "invalid database name")
		assertAbsent(t, out)
		tg.cli.fails(t, tg.args("snapshot", src, "--name", name), "invalid database name")
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("a refused name wrote something: %v", entries)
	}
}

func TestErrorExistingOutput(t *testing.T) {
	tg := fileTarget(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	createDB(t, src, 4096, "wal", 10)
	tg.cli.ok(t, tg.args("snapshot", src)...)
	out := filepath.Join(dir, "existing.db")
	if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg.cli.fails(t, tg.args("restore", "app", "-o", out), out, "--force")
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Fatalf("existing output changed: got=%q, want %q", b, "precious")
	}
	// A stale -wal beside the output would be applied to the new file by
	// SQLite: refused without --force, removed with it.
	os.Remove(out)
	if err := os.WriteFile(out+"-wal", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg.cli.fails(t, tg.args("restore", "app", "-o", out), out+"-wal")
	if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg.cli.ok(t, tg.args("restore", "app", "-o", out, "--force")...)
	assertAbsent(t, out+"-wal")
	checkRestored(t, out)
}

func TestErrorUnknownScheme(t *testing.T) {
	c := fileCLI(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 10)
	for _, b := range []string{"ftp://host/x", "gs://bucket", "bucket-without-scheme"} {
		c.fails(t, []string{"snapshot", src, "-b", b}, "bucket")
		c.fails(t, []string{"list", "-b", b}, "bucket")
	}
	r := c.run(t, "list")
	if r.code != 2 || !strings.Contains(r.stderr, "-b") {
		t.Fatalf("list without -b: got exit %d %q, want exit 2 naming -b", r.code, r.stderr)
	}
}

func TestErrorUnreachableEndpoint(t *testing.T) {
	c := s3CLI(t, testenv.S3Env{AccessKey: "AKIAEXAMPLE", SecretKey: "secret-not-to-print", Region: "us-east-1"})
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 10)
	for _, args := range [][]string{
		{"snapshot", src, "-b", "s3://bucket", "--endpoint", "http://127.0.0.1:1"},
		{"list", "-b", "s3://bucket", "--endpoint", "http://127.0.0.1:1"},
		{"restore", "app", "-o", filepath.Join(t.TempDir(), "o.db"), "-b", "s3://bucket", "--endpoint", "http://127.0.0.1:1"},
	} {
		r := c.fails(t, args, "127.0.0.1:1")
		t.Logf("%s failed after %v: %s", args[0], r.elapsed.Round(1e6), strings.TrimSpace(r.stderr))
		if r.elapsed.Seconds() > 30 {
			t.Errorf("%s against an unreachable endpoint took %v, want a failure within 30 s", args[0], r.elapsed)
		}
	}
}

func TestErrorBucketMissing(t *testing.T) {
	env := testenv.S3(t)
	c := s3CLI(t, env)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 10)
	bucket := testenv.BucketName(t)
	c.fails(t, []string{"snapshot", src, "-b", "s3://" + bucket, "--endpoint", env.Endpoint}, bucket, "does not exist")
	c.fails(t, []string{"list", "-b", "s3://" + bucket, "--endpoint", env.Endpoint}, bucket, "does not exist")
	dir := filepath.Join(t.TempDir(), "missing")
	fc := fileCLI(t)
	fc.fails(t, []string{"list", "-b", "file://" + dir}, dir, "does not exist")
}

func TestErrorWrongCredentials(t *testing.T) {
	env := testenv.S3(t)
	bucket := testenv.NewBucket(t, env)
	const secret = "wR0ngS3cretValue/ThatMustNeverPrint"
	bad := env
	bad.SecretKey = secret
	c := s3CLI(t, bad)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 10)
	for _, args := range [][]string{
		{"snapshot", src, "-b", "s3://" + bucket, "--endpoint", env.Endpoint, "-v"},
		{"list", "-b", "s3://" + bucket, "--endpoint", env.Endpoint, "-v"},
		{"list", "-b", "s3://" + bucket, "--endpoint", env.Endpoint, "-v", "--log-format", "json"},
	} {
		r := c.fails(t, args, "access denied")
		if strings.Contains(r.stdout+r.stderr, secret) || strings.Contains(r.stdout+r.stderr, "wR0ng") {
			t.Fatalf("the secret key appears in the output of %v:\n%s%s", args, r.stdout, r.stderr)
		}
	}
}

// A flipped byte in a stored snapshot: non-zero exit, a message naming the
// object and saying checksum, nothing at the output path.
func TestErrorCorruptedObject(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		dir := t.TempDir()
		src := filepath.Join(dir, "app.db")
		createDB(t, src, 4096, "wal", 2000)
		tg.cli.ok(t, tg.args("snapshot", src)...)
		key := flipStoredByte(t, tg, "app/snapshots/")
		outDir := t.TempDir()
		out := filepath.Join(outDir, "out.db")
		tg.cli.fails(t, tg.args("restore", "app", "-o", out), key, "checksum")
		assertAbsent(t, out)
		if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
			t.Fatalf("a failed restore left files behind: %v", entries)
		}
	})
}

// flipStoredByte flips one byte in the middle of the first object under
// prefix, behind walsync's back (keeping its recorded sha256), and returns
// its key.
func flipStoredByte(t *testing.T, tg target, prefix string) string {
	t.Helper()
	flip := func(b []byte) { b[len(b)/2] ^= 0x01 }
	if tg.name == "file" {
		root := strings.TrimPrefix(tg.bucket, "file://")
		var found string
		filepath.WalkDir(filepath.Join(root, prefix), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".sha256") && found == "" {
				found = p
			}
			return nil
		})
		if found == "" {
			t.Fatalf("no object under %s", prefix)
		}
		b, err := os.ReadFile(found)
		if err != nil {
			t.Fatal(err)
		}
		flip(b)
		if err := os.WriteFile(found, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, found)
		return filepath.ToSlash(rel)
	}
	env := testenv.S3(t)
	client := env.Client()
	ctx := context.Background()
	bucket, keyPrefix, _ := strings.Cut(strings.TrimPrefix(tg.bucket, "s3://"), "/")
	list, err := client.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(keyPrefix + "/" + prefix)})
	if err != nil || len(list.Contents) == 0 {
		t.Fatalf("list %s: %v (%d objects)", prefix, err, len(list.Contents))
	}
	key := *list.Contents[0].Key
	obj, err := client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if obj.Metadata["sha256"] == "" {
		t.Fatalf("object %s has no x-amz-meta-sha256 as seen by another client", key)
	}
	flip(b)
	if _, err := client.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(b), Metadata: obj.Metadata}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(key, keyPrefix+"/")
}

func assertAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("%s exists, want nothing written", path)
	}
}

// A name whose objects would share keys with another name's is refused
// with a message that says so, on both backends, by every command that
// writes; names that only look alike are fine.
func TestReservedNameElements(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		dir := t.TempDir()
		src := filepath.Join(dir, "app.db")
		createDB(t, src, 4096, "wal", 10)
		for _, name := range []string{"c/app/state.json", "c/app/lock.json", "c/app/wal", "c/app/snapshots/x"} {
			tg.cli.fails(t, tg.args("snapshot", src, "--name", name), name, "choose another name")
			tg.cli.fails(t, tg.args("watch", src, "--name", name), name, "choose another name")
		}
		tg.cli.ok(t, tg.args("snapshot", src, "--name", "c/app")...)
		tg.cli.ok(t, tg.args("snapshot", src, "--name", "c/app/state.json.x")...)
		out := tg.cli.ok(t, tg.args("list", "--json")...)
		for _, want := range []string{`"c/app"`, `"c/app/state.json.x"`} {
			if !strings.Contains(out.stdout, want) {
				t.Fatalf("list --json does not show %s: %s", want, out.stdout)
			}
		}
		tg.cli.ok(t, tg.args("verify")...)
	})
}
