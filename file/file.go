// Package file implements walsync.Storage over a local directory: the
// backend behind bucket URLs such as file:///var/backups/walsync or
// file://./backups.
//
// # Layout
//
// A key maps to the path root/key ('/' is the path separator). Beside each
// object lies a sidecar root/key.sha256 holding the hex SHA-256 of the
// object's bytes and a newline: the file backend's x-amz-meta-sha256.
// Files named .tmp-* are writes in progress (or left by a crash) and are
// never listed. Keys are therefore refused when a component is empty, ".",
// "..", starts with ".tmp-" or ends with ".sha256", when they start with '/'
// or contain a control character. A key cannot also be a directory of other
// keys ("a" and "a/b"), which S3 would allow; walsync's layout never needs it.
//
// # Put: how an object becomes durable and immutable
//
//  1. copy the body into root/dir/.tmp-XXXX, hashing while copying; if the
//     hash is not the expected sum, remove the temp file: ErrChecksum;
//  2. fsync it;
//  3. write the hex sum into a second temp file and fsync it;
//  4. os.Link(data temp, root/key): the commit point. A link never replaces
//     an existing name, so of two writers of one key exactly one wins; the
//     other gets walsync.ErrExists and removes its temp files;
//  5. rename the sidecar temp to root/key.sha256;
//  6. fsync the directory, remove the data temp (the object keeps its inode).
//
// Parent directories are created as needed, and each new directory's parent
// is fsynced. A failure after step 4 removes the object again, so that a
// failed Put leaves nothing behind and can be retried.
//
// Crash window: a crash between steps 4 and 5 (or 6) leaves an object
// without its sidecar. Get and Stat then report it with an empty SHA256,
// which readers treat as walsync.ErrNoChecksum: such an object is never
// trusted, and it is never overwritten either; a writer has to use another
// key. Leftover .tmp-* files are garbage and safe to delete.
//
// # Replace: index objects
//
// state.json is the one key that is rewritten (Replace): data and sidecar
// go to temporary files as for Put, then the sidecar is renamed into place
// and the data last, by a rename that atomically replaces the old file.
// A reader racing a Replace, or finding what a crash between the two
// renames left, may get the old bytes with the new sum: readers of an
// index hash what they read and treat a mismatch as a corrupted index.
//
// # Missing root
//
// Put creates the root directory (mkdir -p): a first backup into a fresh
// local directory just works. Every other operation fails with an error
// wrapping walsync.ErrBucketNotFound that names the directory.
package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
)

// SidecarSuffix ends the name of the file that records an object's SHA-256.
const SidecarSuffix = ".sha256"

// TempPrefix starts the names of files being written.
const TempPrefix = ".tmp-"

// Client stores objects under a local directory. It is safe for concurrent
// use by several goroutines and several processes.
type Client struct {
	root string // absolute, cleaned

	// OS is the file system the client works through: SystemOS unless a
	// test replaces it (before the first call) to fail a named step.
	OS OS
}

var _ walsync.Storage = (*Client)(nil)

// New returns a Client storing objects under the directory root, which is
// made absolute. root need not exist yet: the first Put creates it.
func New(root string) (*Client, error) {
	if root == "" {
		return nil, errors.New("file backend: empty directory path")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("file backend %q: %w", root, err)
	}
	return &Client{root: abs, OS: SystemOS{}}, nil
}

// Root returns the absolute directory the client stores objects under.
func (c *Client) Root() string { return c.root }

// String returns the bucket URL, file:///abs/path.
func (c *Client) String() string { return "file://" + filepath.ToSlash(c.root) }

func (c *Client) url(key string) string { return c.String() + "/" + key }

func (c *Client) path(key string) string { return filepath.Join(c.root, filepath.FromSlash(key)) }

// Prepare implements walsync.Storage: it creates the backup directory.
func (c *Client) Prepare(ctx context.Context) error {
	if err := c.mkdirAll("prepare:mkdir", c.root); err != nil {
		return fmt.Errorf("create backup directory %s: %w", c.root, err)
	}
	return nil
}

// Put implements walsync.Storage: see the package documentation for the
// steps and their durability.
func (c *Client) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) (err error) {
	want, err := c.checkWrite(ctx, "put", key, size, sum)
	if err != nil {
		return err
	}
	final := c.path(key)
	dir := filepath.Dir(final)
	if err := c.mkdirAll("put:mkdir", dir); err != nil {
		return fmt.Errorf("put %s: create directory: %w", c.url(key), err)
	}

	var temps []string // removed on return, whatever happens
	linked := false    // final exists and is ours: removed again on failure
	defer func() {
		if err != nil && linked {
			_ = c.OS.Remove("put:rollback", final)
			_ = c.OS.Remove("put:rollback", final+SidecarSuffix)
		}
		for _, name := range temps {
			_ = c.OS.Remove("put:remove-temp", name)
		}
	}()

	// 1.-3. The data and the sidecar in temporary files, synced.
	data, side, err := c.writeTemps(ctx, "put", key, dir, body, size, want, &temps)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", c.url(key), err)
	}

	// 4. Commit: link never replaces an existing name.
	if err := c.OS.Link("put:link", data, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := c.OS.Stat("put:stat-existing", final); serr == nil && fi.IsDir() {
				return fmt.Errorf("put %s: key is a directory of other keys", c.url(key))
			}
			// A put that crashed between the link and the sidecar left
			// the data without its sha256. If it holds exactly our
			// bytes, this put completes that one.
			if done, cerr := c.completeInterrupted(final, side, want); cerr != nil {
				return fmt.Errorf("put %s: %w", c.url(key), cerr)
			} else if done {
				temps = temps[:1]
				if err := c.syncDir("put:sync-dir", dir); err != nil {
					return fmt.Errorf("put %s: fsync directory %s: %w", c.url(key), dir, err)
				}
				return nil
			}
			return &pathError{msg: fmt.Sprintf("put %s: %v", c.url(key), walsync.ErrExists), err: walsync.ErrExists}
		}
		return fmt.Errorf("put %s: %w", c.url(key), err)
	}
	linked = true

	// 5. The sidecar takes its name.
	if err := c.OS.Rename("put:rename-sidecar", side, final+SidecarSuffix); err != nil {
		return fmt.Errorf("put %s: %w", c.url(key), err)
	}
	temps = temps[:1]

	// 6. Make both names durable, then drop the temp name of the data.
	if err := c.syncDir("put:sync-dir", dir); err != nil {
		return fmt.Errorf("put %s: fsync directory %s: %w", c.url(key), dir, err)
	}
	linked = false // committed: from here on nothing is rolled back
	return nil
}

// Replace implements walsync.Storage: it overwrites key, for index objects
// (state.json). The steps:
//
//  1. the data and the sidecar are written to temporary files, hashed,
//     checked against sum (ErrChecksum) and fsynced, as for Put;
//  2. the sidecar temp is renamed to root/key.sha256;
//  3. the data temp is renamed to root/key: the commit point (a rename
//     replaces the old file atomically, so a reader opens the old or the
//     new bytes, never a mix);
//  4. the directory is fsynced.
//
// Between 2 and 3 (for a racing reader, or after a crash there) the
// sidecar names the new bytes while the old ones are still in place: a
// reader that hashes what it reads sees a mismatch, which readers of an
// index treat as a corrupted index. The next Replace repairs it. A failure
// before 2 leaves the old object as it was; a failure at 3 puts the old
// sidecar back when it can.
func (c *Client) Replace(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) (err error) {
	want, err := c.checkWrite(ctx, "replace", key, size, sum)
	if err != nil {
		return err
	}
	final := c.path(key)
	dir := filepath.Dir(final)
	if err := c.mkdirAll("replace:mkdir", dir); err != nil {
		return fmt.Errorf("replace %s: create directory: %w", c.url(key), err)
	}
	if fi, serr := c.OS.Stat("replace:stat-existing", final); serr == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("replace %s: key is a directory of other keys", c.url(key))
	}
	var temps []string
	defer func() {
		for _, name := range temps {
			_ = c.OS.Remove("replace:remove-temp", name)
		}
	}()
	data, side, err := c.writeTemps(ctx, "replace", key, dir, body, size, want, &temps)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("replace %s: %w", c.url(key), err)
	}
	// The old sum, to put back if the data cannot take its name.
	old, _ := c.readSum("replace:read-sidecar", final)

	if err := c.OS.Rename("replace:rename-sidecar", side, final+SidecarSuffix); err != nil {
		return fmt.Errorf("replace %s: %w", c.url(key), err)
	}
	temps = temps[:1]
	if err := c.OS.Rename("replace:rename-data", data, final); err != nil {
		if old != "" {
			c.restoreSidecar(dir, final, old)
		} else {
			_ = c.OS.Remove("replace:rollback", final+SidecarSuffix)
		}
		return fmt.Errorf("replace %s: %w", c.url(key), err)
	}
	temps = nil
	if err := c.syncDir("replace:sync-dir", dir); err != nil {
		return fmt.Errorf("replace %s: fsync directory %s: %w", c.url(key), dir, err)
	}
	return nil
}

// restoreSidecar writes sum back as final's sidecar after a Replace whose
// data could not take its name (best effort: a failure leaves a sidecar
// that does not match, which readers of an index report as corrupted).
func (c *Client) restoreSidecar(dir, final, sum string) {
	f, err := c.OS.CreateTemp("replace:restore-sidecar", dir, TempPrefix+"*")
	if err != nil {
		return
	}
	_, werr := io.WriteString(f, sum+"\n")
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = c.OS.Rename("replace:restore-sidecar", f.Name(), final+SidecarSuffix)
	}
	if werr != nil {
		_ = c.OS.Remove("replace:remove-temp", f.Name())
	}
}

// checkWrite validates the arguments of a write (op "put" or "replace")
// and returns the normalised sum.
func (c *Client) checkWrite(ctx context.Context, op, key string, size int64, sum string) (string, error) {
	if err := validKey(key); err != nil {
		return "", fmt.Errorf("%s %s: %w", op, c.url(key), err)
	}
	want, err := walsync.NormalizeSum(sum)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", op, c.url(key), err)
	}
	if size < 0 {
		return "", fmt.Errorf("%s %s: negative size %d", op, c.url(key), size)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s %s: %w", op, c.url(key), err)
	}
	return want, nil
}

// writeTemps copies size bytes of body into a temporary file in dir,
// hashing while copying (ErrChecksum when they do not hash to want), and
// writes want into a second temporary file, the sidecar to be; both are
// fsynced and closed. Their names are appended to temps (data first) as
// soon as they exist, for the caller to remove.
func (c *Client) writeTemps(ctx context.Context, op, key, dir string, body io.ReadSeeker, size int64, want string, temps *[]string) (data, side string, err error) {
	if body == nil && size == 0 {
		body = strings.NewReader("")
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return "", "", fmt.Errorf("%s %s: rewind body: %w", op, c.url(key), err)
	}
	df, err := c.OS.CreateTemp(op+":create-temp", dir, TempPrefix+"*")
	if err != nil {
		return "", "", fmt.Errorf("%s %s: %w", op, c.url(key), err)
	}
	*temps = append(*temps, df.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(df, h), io.LimitReader(ctxReader{ctx, body}, size))
	if err == nil && n < size {
		err = fmt.Errorf("body ended after %d of %d bytes", n, size)
	}
	if err != nil {
		df.Close()
		return "", "", fmt.Errorf("%s %s: write %s: %w", op, c.url(key), df.Name(), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		df.Close()
		return "", "", fmt.Errorf("%s %s: %w: %d bytes hash to %s, want %s", op, c.url(key), walsync.ErrChecksum, size, got, want)
	}
	if err := df.Sync(); err != nil {
		df.Close()
		return "", "", fmt.Errorf("%s %s: fsync %s: %w", op, c.url(key), df.Name(), err)
	}
	if err := df.Close(); err != nil {
		return "", "", fmt.Errorf("%s %s: close %s: %w", op, c.url(key), df.Name(), err)
	}

	sf, err := c.OS.CreateTemp(op+":create-sidecar", dir, TempPrefix+"*")
	if err != nil {
		return "", "", fmt.Errorf("%s %s: %w", op, c.url(key), err)
	}
	*temps = append(*temps, sf.Name())
	if _, err := io.WriteString(sf, want+"\n"); err != nil {
		sf.Close()
		return "", "", fmt.Errorf("%s %s: write %s: %w", op, c.url(key), sf.Name(), err)
	}
	if err := sf.Sync(); err != nil {
		sf.Close()
		return "", "", fmt.Errorf("%s %s: fsync %s: %w", op, c.url(key), sf.Name(), err)
	}
	if err := sf.Close(); err != nil {
		return "", "", fmt.Errorf("%s %s: close %s: %w", op, c.url(key), sf.Name(), err)
	}
	return df.Name(), sf.Name(), nil
}

// completeInterrupted handles an existing final file without a sidecar:
// when its bytes hash to want, the prepared sidecar takes its name and the
// interrupted put is complete (true). Any other existing object stays.
func (c *Client) completeInterrupted(final, sidecarTemp, want string) (bool, error) {
	if _, err := c.OS.Stat("put:stat-sidecar", final+SidecarSuffix); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	f, err := c.OS.Open("put:open-existing", final)
	if err != nil {
		return false, nil
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil || hex.EncodeToString(h.Sum(nil)) != want {
		return false, nil
	}
	if err := c.OS.Rename("put:rename-sidecar", sidecarTemp, final+SidecarSuffix); err != nil {
		return false, err
	}
	return true, nil
}

// Get implements walsync.Storage. The returned reader is the open file.
func (c *Client) Get(ctx context.Context, key string) (io.ReadCloser, walsync.ObjectInfo, error) {
	if err := validKey(key); err != nil {
		return nil, walsync.ObjectInfo{}, fmt.Errorf("get %s: %w", c.url(key), err)
	}
	if err := ctx.Err(); err != nil {
		return nil, walsync.ObjectInfo{}, fmt.Errorf("get %s: %w", c.url(key), err)
	}
	p := c.path(key)
	f, err := c.OS.Open("get:open", p)
	if err != nil {
		return nil, walsync.ObjectInfo{}, c.openError("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, walsync.ObjectInfo{}, fmt.Errorf("get %s: %w", c.url(key), err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, walsync.ObjectInfo{}, c.notExist("get", key)
	}
	sum, err := c.readSum("get:read-sidecar", p)
	if err != nil {
		f.Close()
		return nil, walsync.ObjectInfo{}, fmt.Errorf("get %s: %w", c.url(key), err)
	}
	return f, walsync.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), SHA256: sum}, nil
}

// Stat implements walsync.Storage.
func (c *Client) Stat(ctx context.Context, key string) (walsync.ObjectInfo, error) {
	if err := validKey(key); err != nil {
		return walsync.ObjectInfo{}, fmt.Errorf("stat %s: %w", c.url(key), err)
	}
	if err := ctx.Err(); err != nil {
		return walsync.ObjectInfo{}, fmt.Errorf("stat %s: %w", c.url(key), err)
	}
	p := c.path(key)
	fi, err := c.OS.Stat("stat:stat", p)
	if err != nil {
		return walsync.ObjectInfo{}, c.openError("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return walsync.ObjectInfo{}, c.notExist("stat", key)
	}
	sum, err := c.readSum("stat:read-sidecar", p)
	if err != nil {
		return walsync.ObjectInfo{}, fmt.Errorf("stat %s: %w", c.url(key), err)
	}
	return walsync.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), SHA256: sum}, nil
}

// List implements walsync.Storage. It walks the directory tree in the order
// that yields keys in ascending byte order, without collecting them first,
// and leaves SHA256 empty.
func (c *Client) List(ctx context.Context, prefix string) iter.Seq2[walsync.ObjectInfo, error] {
	return func(yield func(walsync.ObjectInfo, error) bool) {
		if fi, err := c.OS.Stat("list:stat-root", c.root); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				yield(walsync.ObjectInfo{}, c.bucketNotFound("list", prefix))
			} else {
				yield(walsync.ObjectInfo{}, fmt.Errorf("list %s: %w", c.url(prefix), err))
			}
			return
		} else if !fi.IsDir() {
			yield(walsync.ObjectInfo{}, fmt.Errorf("list %s: %s is not a directory", c.url(prefix), c.root))
			return
		}
		// Start at the deepest directory the prefix names, when it is a
		// valid key path; otherwise walk everything and filter (a prefix
		// never leads the walk outside root).
		dirKey := ""
		if i := strings.LastIndexByte(prefix, '/'); i > 0 && validKey(prefix[:i]) == nil {
			dirKey = prefix[:i+1]
		}
		c.walk(ctx, c.path(dirKey), dirKey, prefix, yield)
	}
}

// walk yields the objects under dir (whose keys start with dirKey) that
// match prefix, in ascending key order. It returns false when the caller
// stopped or an error was yielded.
func (c *Client) walk(ctx context.Context, dir, dirKey, prefix string, yield func(walsync.ObjectInfo, error) bool) bool {
	if err := ctx.Err(); err != nil {
		yield(walsync.ObjectInfo{}, fmt.Errorf("list %s: %w", c.url(prefix), err))
		return false
	}
	entries, err := c.OS.ReadDir("list:read-dir", dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return true // nothing there, or removed while we walked
		}
		yield(walsync.ObjectInfo{}, fmt.Errorf("list %s: %w", c.url(prefix), err))
		return false
	}
	// A directory's keys all start with "name/": sorting directories by
	// that string interleaves them with files in key order ("a-c" < "a/b").
	type entry struct {
		sortKey string
		e       fs.DirEntry
	}
	list := make([]entry, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if validComponent(name) != nil {
			continue // temp files, sidecars, names no key can have
		}
		switch {
		case e.IsDir():
			list = append(list, entry{name + "/", e})
		case e.Type().IsRegular():
			list = append(list, entry{name, e})
		}
	}
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.sortKey, b.sortKey) })
	for _, en := range list {
		key := dirKey + en.sortKey
		if en.e.IsDir() {
			if !strings.HasPrefix(key, prefix) && !strings.HasPrefix(prefix, key) {
				continue
			}
			if !c.walk(ctx, filepath.Join(dir, en.e.Name()), key, prefix, yield) {
				return false
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		fi, err := en.e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while we walked
		}
		if err != nil {
			yield(walsync.ObjectInfo{}, fmt.Errorf("list %s: %w", c.url(key), err))
			return false
		}
		if !yield(walsync.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil) {
			return false
		}
	}
	return true
}

// Delete implements walsync.Storage: it removes the object, then its
// sidecar. Empty directories are left in place.
func (c *Client) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("delete %s: %w", c.url(key), err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", c.url(key), err)
	}
	p := c.path(key)
	fi, err := c.OS.Stat("delete:stat", p)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return nil // a directory of other keys: no object by that name
	case err == nil:
		if err := c.OS.Remove("delete:remove", p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", c.url(key), err)
		}
	case isNotExist(err):
		if _, rerr := c.OS.Stat("delete:stat-root", c.root); errors.Is(rerr, fs.ErrNotExist) {
			return c.bucketNotFound("delete", key)
		}
	default:
		return fmt.Errorf("delete %s: %w", c.url(key), err)
	}
	if err := c.OS.Remove("delete:remove-sidecar", p+SidecarSuffix); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete %s: %w", c.url(key), err)
	}
	return nil
}

// readSum returns the recorded SHA-256 beside the object at p, or "" when
// there is none.
func (c *Client) readSum(op, p string) (string, error) {
	f, err := c.OS.Open(op, p+SidecarSuffix)
	if isNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 2*sha256.Size+2)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", fmt.Errorf("read %s: %w", f.Name(), err)
	}
	sum, err := walsync.NormalizeSum(strings.TrimSpace(string(buf[:n])))
	if err != nil || n > 2*sha256.Size+1 {
		return "", fmt.Errorf("%w: %s does not hold a hex SHA-256", walsync.ErrNoChecksum, f.Name())
	}
	return sum, nil
}

// mkdirAll creates dir and its missing parents, fsyncing the parent of each
// directory it creates (or finds just created by a concurrent writer).
func (c *Client) mkdirAll(op, dir string) error {
	return fsys.MkdirAll(c.OS, op, dir, 0o755)
}

func (c *Client) syncDir(op, dir string) error { return fsys.SyncDir(c.OS, op, dir) }

// openError turns the error of opening key into the error of op: a
// missing object or a missing root directory.
func (c *Client) openError(op, key string, err error) error {
	if !isNotExist(err) {
		return fmt.Errorf("%s %s: %w", op, c.url(key), err)
	}
	if _, rerr := c.OS.Stat(op+":stat-root", c.root); errors.Is(rerr, fs.ErrNotExist) {
		return c.bucketNotFound(op, key)
	}
	return c.notExist(op, key)
}

func (c *Client) notExist(op, key string) error {
	return &pathError{msg: fmt.Sprintf("%s %s: no such object", op, c.url(key)), err: walsync.ErrNotExist}
}

func (c *Client) bucketNotFound(op, key string) error {
	return &pathError{
		msg: fmt.Sprintf("%s %s: backup directory %s does not exist", op, c.url(key), c.root),
		err: walsync.ErrBucketNotFound,
	}
}

// pathError is an error with a message of its own wrapping a sentinel.
type pathError struct {
	msg string
	err error
}

func (e *pathError) Error() string { return e.msg }
func (e *pathError) Unwrap() error { return e.err }

// isNotExist reports whether err means a path is missing, including a
// file standing where a directory of the path should be.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// validKey reports why key cannot name an object of this backend.
func validKey(key string) error {
	if key == "" {
		return errors.New("invalid key: empty")
	}
	if key[0] == '/' {
		return fmt.Errorf("invalid key %q: starts with '/'", key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("invalid key %q: contains a control character", key)
		}
	}
	for part := range strings.SplitSeq(key, "/") {
		if err := validComponent(part); err != nil {
			return fmt.Errorf("invalid key %q: %w", key, err)
		}
	}
	return nil
}

func validComponent(part string) error {
	switch {
	case part == "":
		return errors.New("empty path component")
	case part == "." || part == "..":
		return fmt.Errorf("%q component", part)
	case strings.HasPrefix(part, TempPrefix):
		return fmt.Errorf("component %q starts with %q, reserved for temporary files", part, TempPrefix)
	case strings.HasSuffix(part, SidecarSuffix):
		return fmt.Errorf("component %q ends with %q, reserved for checksum files", part, SidecarSuffix)
	case strings.ContainsFunc(part, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("control character")
	}
	return nil
}

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
