package file

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys/fsystest"
	"github.com/walsync/walsync/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) walsync.Storage {
		c, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func newClient(t *testing.T, root string) *Client {
	t.Helper()
	c, err := New(root)
	if err != nil {
		t.Fatalf("New(%q): got=%v, want nil", root, err)
	}
	return c
}

func put(t *testing.T, c *Client, key string, data []byte) error {
	t.Helper()
	return c.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), storagetest.Sum(data))
}

// files lists every file under root, relative, sorted.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestNew(t *testing.T) {
	if _, err := New(""); err == nil {
		t.Errorf("New(\"\"): got=nil, want an error")
	}
	t.Chdir(t.TempDir())
	c := newClient(t, "./backups")
	wd, _ := os.Getwd()
	if got, want := c.Root(), filepath.Join(wd, "backups"); got != want {
		t.Errorf("Root: got=%q, want %q", got, want)
	}
	if got, want := c.String(), "file://"+filepath.Join(wd, "backups"); got != want {
		t.Errorf("String: got=%q, want %q", got, want)
	}
}

func TestLayout(t *testing.T) {
	root := t.TempDir()
	c := newClient(t, root)
	data := []byte("hello")
	if err := put(t, c, "app/wal/1.wal", data); err != nil {
		t.Fatal(err)
	}
	if got, want := files(t, root), []string{"app/wal/1.wal", "app/wal/1.wal.sha256"}; !slices.Equal(got, want) {
		t.Fatalf("files: got=%q, want %q", got, want)
	}
	side, err := os.ReadFile(filepath.Join(root, "app/wal/1.wal.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(side), storagetest.Sum(data)+"\n"; got != want {
		t.Fatalf("sidecar: got=%q, want %q", got, want)
	}
}

func TestMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "backups", "nested")
	c := newClient(t, root)
	ctx := context.Background()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, walsync.ErrBucketNotFound) {
			t.Errorf("%s: got=%v, want %v", op, err, walsync.ErrBucketNotFound)
			return
		}
		if !strings.Contains(err.Error(), root) {
			t.Errorf("%s: error %q does not name the directory %s", op, err, root)
		}
	}
	_, _, err := c.Get(ctx, "k")
	check("Get", err)
	_, err = c.Stat(ctx, "a/k")
	check("Stat", err)
	check("Delete", c.Delete(ctx, "k"))
	for _, err := range c.List(ctx, "") {
		check("List", err)
	}

	// Put creates the root, parents included.
	if err := put(t, c, "app/state.json", []byte("{}")); err != nil {
		t.Fatalf("Put into a missing root: got=%v, want nil", err)
	}
	if got, want := files(t, root), []string{"app/state.json", "app/state.json.sha256"}; !slices.Equal(got, want) {
		t.Fatalf("files: got=%q, want %q", got, want)
	}
}

func TestInvalidKeys(t *testing.T) {
	root := t.TempDir()
	c := newClient(t, root)
	for _, key := range []string{
		"", "/abs", "a//b", "a/", "./a", "a/./b", "../escape", "a/../../b", "..",
		"a/.tmp-x", ".tmp-1", "x.sha256", "a.sha256/b", "tab\tkey", "nul\x00", "del\x7f",
	} {
		if err := put(t, c, key, []byte("x")); err == nil || !strings.Contains(err.Error(), "invalid key") {
			t.Errorf("Put(%q): got=%v, want an invalid key error", key, err)
		}
		if _, err := c.Stat(context.Background(), key); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q): got=%v, want an invalid key error", key, err)
		}
		if err := c.Delete(context.Background(), key); err == nil {
			t.Errorf("Delete(%q): got=nil, want an invalid key error", key)
		}
	}
	if got := files(t, root); len(got) != 0 {
		t.Fatalf("files after invalid Puts: got=%q, want none", got)
	}
	for _, key := range []string{"a", "a.db", "a/b.sha256x", "x/.tmpx", "ünïcode/ key", "a\\b"} {
		if err := validKey(key); err != nil {
			t.Errorf("validKey(%q): got=%v, want nil", key, err)
		}
	}
}

func TestKeyAndDirectory(t *testing.T) {
	c := newClient(t, t.TempDir())
	if err := put(t, c, "a", []byte("file")); err != nil {
		t.Fatal(err)
	}
	if err := put(t, c, "a/b", []byte("under a file")); err == nil || errors.Is(err, walsync.ErrExists) {
		t.Errorf("Put(a/b) with a file a: got=%v, want an error other than ErrExists", err)
	}
	if err := put(t, c, "x/y", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := put(t, c, "x", []byte("x")); err == nil || errors.Is(err, walsync.ErrExists) {
		t.Errorf("Put(x) with a directory x: got=%v, want an error other than ErrExists", err)
	}
	if err := c.Delete(context.Background(), "x"); err != nil {
		t.Errorf("Delete(x) of a directory: got=%v, want nil", err)
	}
	if _, err := c.Stat(context.Background(), "x/y"); err != nil {
		t.Errorf("Stat(x/y) after Delete(x): got=%v, want nil", err)
	}
}

// TestCrashWindow: an object linked without its sidecar (a crash between
// link and rename) is reported without a SHA256 and is never overwritten.
func TestCrashWindow(t *testing.T) {
	root := t.TempDir()
	c := newClient(t, root)
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(root, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app/orphan", "app/.tmp-123", ".tmp-456"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte("left by a crash"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rc, info, err := c.Get(ctx, "app/orphan")
	if err != nil {
		t.Fatalf("Get: got=%v, want nil", err)
	}
	rc.Close()
	if info.SHA256 != "" {
		t.Errorf("Get SHA256: got=%q, want empty", info.SHA256)
	}
	if err := put(t, c, "app/orphan", []byte("new")); !errors.Is(err, walsync.ErrExists) {
		t.Errorf("Put over an orphan: got=%v, want %v", err, walsync.ErrExists)
	}
	var keys []string
	for info, err := range c.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if want := []string{"app/orphan"}; !slices.Equal(keys, want) {
		t.Errorf("List: got=%q, want %q (temp files skipped)", keys, want)
	}

	// A sidecar that does not hold a SHA-256 is reported, not trusted.
	if err := os.WriteFile(filepath.Join(root, "app/orphan.sha256"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "app/orphan"); !errors.Is(err, walsync.ErrNoChecksum) {
		t.Errorf("Stat with a bad sidecar: got=%v, want %v", err, walsync.ErrNoChecksum)
	}
}

// TestPutFaults fails each step of Put in turn and checks that Put reports
// it and leaves nothing behind: no object, no sidecar, no temp file, and
// the key still free for a retry.
func TestPutFaults(t *testing.T) {
	// Learn the steps from a successful Put into a fresh directory.
	probe := &fsystest.Faulty{}
	c := newClient(t, filepath.Join(t.TempDir(), "root"))
	c.OS = probe
	if err := put(t, c, "app/wal/1.wal", []byte("frames")); err != nil {
		t.Fatal(err)
	}
	steps := probe.Seen()
	for _, want := range []string{
		"put:create-temp", "put:create-temp:write", "put:create-temp:sync", "put:create-sidecar",
		"put:create-sidecar:write", "put:create-sidecar:sync", "put:link", "put:rename-sidecar",
		"put:sync-dir", "put:sync-dir:sync", "put:mkdir", "put:mkdir-sync:sync",
	} {
		if !slices.Contains(steps, want) {
			t.Errorf("step %q not seen; steps: %q", want, steps)
		}
	}

	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			c := newClient(t, root)
			c.OS = faulty(step)
			err := put(t, c, "app/wal/1.wal", []byte("frames"))
			if step == "put:remove-temp" {
				// The object is whole; the data temp stays as
				// garbage (.tmp-*, never listed).
				if err != nil {
					t.Fatalf("Put failing to remove its temp file: got=%v, want nil", err)
				}
				if got, _ := stored(t, c, "app/wal/1.wal"); string(got) != "frames" {
					t.Fatalf("object after a failed temp removal: got=%q", got)
				}
				return
			}
			if !errors.Is(err, fsystest.ErrInjected) {
				t.Fatalf("Put failing at %s: got=%v, want %v", step, err, fsystest.ErrInjected)
			}
			if !strings.Contains(err.Error(), "app/wal/1.wal") {
				t.Errorf("error does not name the key: %q", err)
			}
			if got := files(t, root); len(got) != 0 {
				t.Fatalf("files after failed Put: got=%q, want none", got)
			}
			c.OS = SystemOS{}
			if err := put(t, c, "app/wal/1.wal", []byte("frames")); err != nil {
				t.Fatalf("retry after failure at %s: got=%v, want nil", step, err)
			}
		})
	}
}

func TestPutCanceled(t *testing.T) {
	root := t.TempDir()
	c := newClient(t, root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := []byte("x")
	if err := c.Put(ctx, "k", bytes.NewReader(data), 1, storagetest.Sum(data)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a canceled context: got=%v, want %v", err, context.Canceled)
	}
	if got := files(t, root); len(got) != 0 {
		t.Fatalf("files: got=%q, want none", got)
	}
}

// TestPutLongBody: only size bytes are stored when the body has more.
func TestPutLongBody(t *testing.T) {
	c := newClient(t, t.TempDir())
	data := []byte("0123456789")
	if err := c.Put(context.Background(), "k", bytes.NewReader(data), 4, storagetest.Sum(data[:4])); err != nil {
		t.Fatal(err)
	}
	rc, _, err := c.Get(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if string(got) != "0123" {
		t.Fatalf("Get: got=%q, want %q", got, "0123")
	}
}

// A put that crashed between linking the data and naming its sidecar left
// an object without a sha256. Putting the same bytes again completes it;
// other bytes are refused and the object stays as it is.
func TestPutCompletesInterruptedPut(t *testing.T) {
	c, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := []byte("segment bytes")
	put := func(b []byte) error {
		return c.Put(ctx, "app/wal/k", bytes.NewReader(b), int64(len(b)), storagetest.Sum(b))
	}
	if err := put(body); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(c.Root(), "app/wal/k"+SidecarSuffix)); err != nil {
		t.Fatal(err)
	}
	if err := put([]byte("other bytes")); !errors.Is(err, walsync.ErrExists) {
		t.Fatalf("put of other bytes over an interrupted put: got=%v, want ErrExists", err)
	}
	if err := put(body); err != nil {
		t.Fatalf("put of the same bytes over an interrupted put: got=%v, want nil", err)
	}
	info, err := c.Stat(ctx, "app/wal/k")
	if err != nil || info.SHA256 != storagetest.Sum(body) {
		t.Fatalf("after completion: got=%+v, %v, want sha256 %s", info, err, storagetest.Sum(body))
	}
}

func replace(c *Client, key string, data []byte) error {
	return c.Replace(context.Background(), key, bytes.NewReader(data), int64(len(data)), storagetest.Sum(data))
}

// stored returns key's bytes and recorded sum as Get gives them.
func stored(t *testing.T, c *Client, key string) ([]byte, string) {
	t.Helper()
	rc, info, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b, info.SHA256
}

// TestReplaceFaults fails each step of a Replace over an existing object:
// Replace reports it, no temporary file is left, and the key holds the old
// object or (a failure after the commit point) the new one, always with
// its own sum.
func TestReplaceFaults(t *testing.T) {
	old, data := []byte(`{"old":1}`), []byte(`{"new":2}`)
	probe := &fsystest.Faulty{}
	c := newClient(t, filepath.Join(t.TempDir(), "root"))
	if err := replace(c, "app/state.json", old); err != nil {
		t.Fatal(err)
	}
	c.OS = probe
	if err := replace(c, "app/state.json", data); err != nil {
		t.Fatal(err)
	}
	steps := probe.Seen()
	for _, want := range []string{
		"replace:create-temp", "replace:create-temp:write", "replace:create-temp:sync", "replace:create-sidecar",
		"replace:create-sidecar:write", "replace:create-sidecar:sync", "replace:rename-sidecar", "replace:rename-data",
		"replace:sync-dir", "replace:sync-dir:sync",
	} {
		if !slices.Contains(steps, want) {
			t.Errorf("step %q not seen; steps: %q", want, steps)
		}
	}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			c := newClient(t, root)
			if err := replace(c, "app/state.json", old); err != nil {
				t.Fatal(err)
			}
			c.OS = faulty(step)
			err := replace(c, "app/state.json", data)
			if step == "replace:read-sidecar" {
				// Reading the old sum (to put it back on a failure) is
				// best effort.
				if err != nil {
					t.Fatalf("Replace with the old sidecar unreadable: got=%v, want nil", err)
				}
				return
			}
			if !errors.Is(err, fsystest.ErrInjected) {
				t.Fatalf("Replace failing at %s: got=%v, want %v", step, err, fsystest.ErrInjected)
			}
			if !strings.Contains(err.Error(), "app/state.json") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line naming the key", err)
			}
			if got, want := files(t, root), []string{"app/state.json", "app/state.json.sha256"}; !slices.Equal(got, want) {
				t.Fatalf("files after failed Replace: got=%q, want %q", got, want)
			}
			c.OS = SystemOS{}
			b, sum := stored(t, c, "app/state.json")
			if sum != storagetest.Sum(b) || (!bytes.Equal(b, old) && !bytes.Equal(b, data)) {
				t.Fatalf("after a failure at %s: %q with sum %s, want the old or the new bytes with their own sum", step, b, sum)
			}
			if step != "replace:sync-dir" && step != "replace:sync-dir:sync" && !bytes.Equal(b, old) {
				t.Fatalf("after a failure at %s before the commit point: got=%q, want the old %q", step, b, old)
			}
			if err := replace(c, "app/state.json", data); err != nil {
				t.Fatalf("retry after failure at %s: got=%v, want nil", step, err)
			}
		})
	}
}

// TestReplaceCrashWindow: a crash between the sidecar's rename and the
// data's (simulated: the data's rename fails and so does putting the old
// sidecar back) leaves the old bytes with the new sum. Get reports them as
// they are, so that a reader hashing them sees the mismatch; the next
// Replace repairs the pair. On a fresh key the same crash leaves no
// object at all.
func TestReplaceCrashWindow(t *testing.T) {
	old, data := []byte(`{"old":1}`), []byte(`{"new":2}`)
	root := t.TempDir()
	c := newClient(t, root)
	if err := replace(c, "app/state.json", old); err != nil {
		t.Fatal(err)
	}
	c.OS = faulty("replace:rename-data", "replace:restore-sidecar")
	if err := replace(c, "app/state.json", data); !errors.Is(err, fsystest.ErrInjected) {
		t.Fatalf("Replace: got=%v, want %v", err, fsystest.ErrInjected)
	}
	if err := replace(c, "fresh/state.json", data); !errors.Is(err, fsystest.ErrInjected) {
		t.Fatalf("Replace of a fresh key: got=%v, want %v", err, fsystest.ErrInjected)
	}
	c.OS = SystemOS{}
	b, sum := stored(t, c, "app/state.json")
	if !bytes.Equal(b, old) || sum != storagetest.Sum(data) {
		t.Fatalf("after the crash: %q with sum %s, want the old bytes with the new sum %s", b, sum, storagetest.Sum(data))
	}
	if _, err := c.Stat(context.Background(), "fresh/state.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("fresh key after the crash: got=%v, want %v", err, fs.ErrNotExist)
	}
	if err := replace(c, "app/state.json", data); err != nil {
		t.Fatal(err)
	}
	if b, sum := stored(t, c, "app/state.json"); !bytes.Equal(b, data) || sum != storagetest.Sum(data) {
		t.Fatalf("after the next Replace: %q with sum %s, want %q with its sum", b, sum, data)
	}
}

// TestReplaceDirectory: a key that is a directory of other keys cannot be
// replaced, and what is under it stays.
func TestReplaceDirectory(t *testing.T) {
	c := newClient(t, t.TempDir())
	if err := put(t, c, "x/y", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := replace(c, "x", []byte("x")); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("Replace(x) with a directory x: got=%v, want an error saying directory", err)
	}
	if _, err := c.Stat(context.Background(), "x/y"); err != nil {
		t.Fatalf("Stat(x/y): got=%v, want nil", err)
	}
}

// faulty is a file system failing each of steps every time.
func faulty(steps ...string) *fsystest.Faulty {
	f := &fsystest.Faulty{}
	for _, s := range steps {
		f.Fail(s, -1)
	}
	return f
}
