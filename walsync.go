// Package walsync holds the domain of walsync: the storage interface every
// backend implements, the bucket layout (which key holds what), database
// names, the bytes of snapshot objects, and the errors shared by all layers.
//
// Adapters live in their own packages and import this one, never each other:
// file/ and s3/ implement Storage, replicate/ produces objects, restore/
// consumes them, cmd/walsync/ wires them to the command line.
//
// A frame's path from database to bucket and back:
//
//	app.db (+ app.db-wal) --replicate--> Storage.Put(name/snapshots/T.db.zst)
//	Storage.Get --restore--> verify sha256 --> temp file --> fsync --> rename --> OUT
package walsync

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"iter"
	"time"
)

// Sentinel errors shared by every backend and layer. Test them with errors.Is.
var (
	// ErrNotExist is the single not-found meaning across backends.
	ErrNotExist = fs.ErrNotExist
	// ErrExists is returned by Storage.Put when the key already exists:
	// objects are immutable and never overwritten.
	ErrExists = errors.New("walsync: object already exists")
	// ErrChecksum means bytes do not hash to the SHA-256 recorded for them.
	ErrChecksum = errors.New("walsync: checksum mismatch")
	// ErrNoChecksum means an object carries no recorded SHA-256, so it
	// cannot be verified and is not used.
	ErrNoChecksum = errors.New("walsync: object has no recorded sha256")
	// ErrBucketNotFound means the bucket (or backup directory) does not exist.
	ErrBucketNotFound = errors.New("walsync: bucket does not exist")
	// ErrAccessDenied means the storage refused the credentials.
	ErrAccessDenied = errors.New("walsync: access denied")
	// ErrFormat means an object's bytes are not in the format docs/FORMAT.md describes.
	ErrFormat = errors.New("walsync: invalid object format")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string    // relative to the bucket URL's prefix, '/'-separated
	Size    int64     // stored bytes
	ModTime time.Time // when the backend stored it
	// SHA256 is the hex SHA-256 of the stored bytes as recorded beside the
	// object (x-amz-meta-sha256 on S3). List may leave it empty; Get and
	// Stat fill it, and leave it empty only when nothing was recorded.
	SHA256 string
}

// Storage is where backups live: a flat namespace of immutable objects
// (and one mutable index per name, see Replace) under the prefix of a
// bucket URL. Implementations are safe for concurrent use. Keys are
// '/'-separated and never start with '/'.
type Storage interface {
	// Put stores size bytes read from body under key, recording sum (the
	// hex SHA-256 of those bytes) beside them. It never overwrites: when key
	// exists it returns an error wrapping ErrExists and the old object stays.
	// The backend checks that the stored bytes hash to sum (the S3 server
	// checks the signed payload hash; the file backend hashes while it
	// copies) and fails with ErrChecksum otherwise, leaving nothing behind.
	// body is read from its start; it may be re-read (Seek to 0) on retry.
	Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) error

	// Replace stores size bytes read from body under key like Put, with
	// the same checks and the same recorded sum, but overwrites an
	// existing object. It is for mutable index objects (<name>/state.json)
	// only: snapshots and segments always go through Put. The replacement
	// is atomic for the bytes: a reader gets the old or the new object,
	// never a mix. On the file backend the recorded sum lives in a second
	// file, so a reader racing a Replace (or after a crash inside one) may
	// get one object's bytes with the other's sum; readers of an index
	// therefore verify the bytes against the sum and treat a mismatch as a
	// corrupted index, never as data.
	Replace(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) error

	// Get opens key for a streaming read. The returned info carries the
	// recorded SHA256; the caller verifies the bytes it reads against it.
	// A missing key is an error wrapping ErrNotExist.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)

	// Stat returns what Get would return, without the bytes.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// List yields the objects whose keys start with prefix, in ascending
	// key order. SHA256 may be empty in listed infos.
	List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error]

	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// Prepare readies the bucket for writing before a long operation, so
	// that a missing bucket or wrong credentials fail in one cheap request
	// rather than after reading a large database: S3 lists one key, the
	// file backend creates its directory.
	Prepare(ctx context.Context) error

	// String returns the bucket URL, never with credentials, for messages.
	String() string
}
