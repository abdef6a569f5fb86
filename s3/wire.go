package s3

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// payloadHash gives SigV4 the SHA-256 of the request body that the caller
// already knows. It must be set from a middleware: the SDK clears the
// context's stack values when an operation starts, so a hash put into the
// caller's context would be lost. Placed right after endpoint resolution,
// it runs on every attempt before the checksum and payload-hash middlewares,
// which leave a hash that is already set alone (so the SDK never re-reads
// the body to hash it, nor falls back to UNSIGNED-PAYLOAD over TLS).
type payloadHash struct {
	hash     string
	attempts *atomic.Int32 // counts attempts when non-nil
}

func (*payloadHash) ID() string { return "WalsyncPayloadHash" }

func (m *payloadHash) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	if m.attempts != nil {
		m.attempts.Add(1)
	}
	return next.HandleFinalize(v4.SetPayloadHash(ctx, m.hash), in)
}

// withPayloadHash is a per-operation option signing the body with hash.
func withPayloadHash(hash string, attempts *atomic.Int32) func(*s3api.Options) {
	return func(o *s3api.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Insert(&payloadHash{hash: hash, attempts: attempts}, "ResolveEndpointV2", middleware.After)
		})
	}
}

// withAttempts is a per-operation option counting attempts.
func withAttempts(attempts *atomic.Int32) func(*s3api.Options) {
	return func(o *s3api.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Insert(&attemptCounter{attempts}, "ResolveEndpointV2", middleware.After)
		})
	}
}

type attemptCounter struct{ n *atomic.Int32 }

func (*attemptCounter) ID() string { return "WalsyncAttempts" }

func (m *attemptCounter) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	m.n.Add(1)
	return next.HandleFinalize(ctx, in)
}

// addHeader sets a header on every request.
func addHeader(name, value string) func(*middleware.Stack) error {
	return smithyhttp.SetHeaderValue(name, value)
}

// section reads the n bytes of rs that start at offset base; its Seek
// offsets are relative to base. It reads through ReadAt when rs has it,
// otherwise it seeks rs before reading after any Seek of its own, so
// sections of one body must be read one at a time. Nothing is buffered:
// a part of a multi-gigabyte snapshot streams from the file.
type section struct {
	rs     io.ReadSeeker
	ra     io.ReaderAt
	base   int64
	n      int64
	pos    int64
	synced bool // rs is at base+pos (only when ra is nil)
}

func newSection(rs io.ReadSeeker, base, n int64) *section {
	s := &section{rs: rs, base: base, n: n}
	if ra, ok := rs.(io.ReaderAt); ok {
		s.ra = ra
	}
	return s
}

func (s *section) Read(p []byte) (int, error) {
	if s.pos >= s.n {
		return 0, io.EOF
	}
	if rest := s.n - s.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	if s.ra != nil {
		k, err := s.ra.ReadAt(p, s.base+s.pos)
		s.pos += int64(k)
		if err == io.EOF && k == len(p) {
			err = nil
		}
		return k, err
	}
	if !s.synced {
		if _, err := s.rs.Seek(s.base+s.pos, io.SeekStart); err != nil {
			return 0, err
		}
		s.synced = true
	}
	k, err := s.rs.Read(p)
	s.pos += int64(k)
	return k, err
}

func (s *section) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = s.pos + offset
	case io.SeekEnd:
		abs = s.n + offset
	default:
		return 0, errors.New("s3: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("s3: negative position")
	}
	if abs != s.pos {
		s.synced = false
	}
	s.pos = abs
	return abs, nil
}
