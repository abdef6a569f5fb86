package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
)

// resumingBody is an object's body that survives being cut short: a read
// that fails mid-body (the connection reset, the body ending before its
// Content-Length, or no byte for bodyIdle) asks for the rest with a ranged
// GET, If-Match the first answer's ETag so that another version's bytes
// are never spliced in, up to maxAttempts times with a short backoff. The
// bytes it yields are the object's, in order: the caller's SHA-256 of the
// stored bytes checks them as it would an uncut body.
type resumingBody struct {
	c       *Client
	ctx     context.Context
	key     string
	etag    string
	size    int64 // -1: unknown (then only a failed read, not a short one, is resumed)
	read    int64
	resumed int
	cancels []context.CancelFunc // the contexts of the GETs, ended by Close

	mu      sync.Mutex
	body    io.ReadCloser
	idle    *time.Timer // closes a body that stalls (stall)
	stalled bool
}

func newResumingBody(c *Client, ctx context.Context, key, etag string, size int64, body io.ReadCloser, cancel context.CancelFunc) *resumingBody {
	r := &resumingBody{c: c, ctx: ctx, key: key, etag: etag, size: size, body: body, cancels: []context.CancelFunc{cancel}}
	r.idle = time.AfterFunc(bodyIdle, r.stall)
	r.idle.Stop()
	return r
}

// stall closes the current body: the read blocked on it returns.
func (r *resumingBody) stall() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stalled = true
	r.body.Close()
}

func (r *resumingBody) readOnce(p []byte) (int, error) {
	r.mu.Lock()
	b := r.body
	r.stalled = false
	r.mu.Unlock()
	r.idle.Reset(bodyIdle)
	n, err := b.Read(p)
	r.idle.Stop()
	r.mu.Lock()
	if r.stalled && err != nil {
		err = fmt.Errorf("no byte for %v: %w", bodyIdle, io.ErrUnexpectedEOF)
	}
	r.mu.Unlock()
	return n, err
}

func (r *resumingBody) Read(p []byte) (int, error) {
	for {
		n, err := r.readOnce(p)
		r.read += int64(n)
		if err == io.EOF && r.size >= 0 && r.read < r.size {
			err = io.ErrUnexpectedEOF
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if n > 0 {
			return n, nil // the failure comes back at the next read
		}
		if r.ctx.Err() != nil || r.resumed >= maxAttempts-1 || r.etag == "" {
			return 0, fmt.Errorf("get %s: body cut short after %d bytes: %w", r.c.url(r.key), r.read, err)
		}
		r.resumed++
		r.body.Close()
		select {
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case <-time.After(time.Duration(r.resumed) * 100 * time.Millisecond):
		}
		out, cancel, gerr := r.c.getObject(r.ctx, &s3api.GetObjectInput{
			Bucket:  aws.String(r.c.bucket),
			Key:     r.c.objectKey(r.key),
			Range:   aws.String(fmt.Sprintf("bytes=%d-", r.read)),
			IfMatch: aws.String(r.etag),
		})
		if gerr != nil {
			return 0, fmt.Errorf("get %s: body cut short after %d bytes (%v), and the rest could not be read: %w",
				r.c.url(r.key), r.read, err, r.c.opError(r.ctx, "get", r.key, gerr))
		}
		r.cancels = append(r.cancels, cancel)
		r.mu.Lock()
		r.body = out.Body
		r.mu.Unlock()
	}
}

func (r *resumingBody) Close() error {
	r.idle.Stop()
	r.mu.Lock()
	err := r.body.Close()
	r.mu.Unlock()
	for _, cancel := range r.cancels {
		cancel()
	}
	return err
}

// shortBody makes the SDK retry a request whose answer was cut short
// (a LIST's XML, an error body): the connection reset or ended early.
func shortBody(err error) aws.Ternary {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return aws.TrueTernary
	}
	return aws.UnknownTernary
}

var _ retry.IsErrorRetryable = retry.IsErrorRetryableFunc(shortBody)
