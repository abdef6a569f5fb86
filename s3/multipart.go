package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/walsync/walsync"
)

// putMultipart uploads an object larger than the part size: see the
// package documentation.
func (c *Client) putMultipart(ctx context.Context, key string, body io.ReadSeeker, size int64, meta map[string]string) (err error) {
	want := meta[metaSHA256]
	// Gigabytes are not sent for a key that is taken: check first.
	// CompleteMultipartUpload's If-None-Match still settles races.
	if err := c.checkAbsent(ctx, "put", key); err != nil {
		return err
	}
	partSize := c.partSize
	if (size+partSize-1)/partSize > maxParts {
		partSize = (size + maxParts - 1) / maxParts
		partSize = (partSize + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}

	created, err := c.api.CreateMultipartUpload(ctx, &s3api.CreateMultipartUploadInput{
		Bucket:   aws.String(c.bucket),
		Key:      c.objectKey(key),
		Metadata: meta,
	})
	if err != nil {
		return c.opError(ctx, "put", key, err)
	}
	uploadID := created.UploadId
	completed := false
	defer func() {
		if completed {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_, abortErr := c.api.AbortMultipartUpload(actx, &s3api.AbortMultipartUploadInput{
			Bucket: aws.String(c.bucket), Key: c.objectKey(key), UploadId: uploadID,
		})
		if abortErr != nil && err != nil {
			err = fmt.Errorf("%w (and abort upload: %v)", err, c.opError(actx, "abort", key, abortErr))
		}
	}()

	total := sha256.New()
	buf := make([]byte, 256<<10)
	var parts []types.CompletedPart
	for number, off := int32(1), int64(0); off < size; number, off = number+1, off+partSize {
		n := min(partSize, size-off)
		part := newSection(body, off, n)
		partSum, err := hashPart(part, n, total, buf)
		if err != nil {
			return fmt.Errorf("put %s: read part %d: %w", c.url(key), number, err)
		}
		if _, err := part.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("put %s: rewind part %d: %w", c.url(key), number, err)
		}
		out, err := c.api.UploadPart(ctx, &s3api.UploadPartInput{
			Bucket:        aws.String(c.bucket),
			Key:           c.objectKey(key),
			UploadId:      uploadID,
			PartNumber:    aws.Int32(number),
			Body:          part,
			ContentLength: aws.Int64(n),
		}, withPayloadHash(partSum, nil))
		if err != nil {
			return c.opError(ctx, fmt.Sprintf("put (part %d)", number), key, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(number)})
	}
	if got := hex.EncodeToString(total.Sum(nil)); got != want {
		return &opError{
			msg:      fmt.Sprintf("put %s: %v: %d bytes hash to %s, want %s", c.url(key), walsync.ErrChecksum, size, got, want),
			sentinel: walsync.ErrChecksum,
		}
	}

	for {
		conditional := !c.noConditional.Load()
		if !conditional {
			if err := c.checkAbsent(ctx, "put", key); err != nil {
				return err
			}
		}
		in := &s3api.CompleteMultipartUploadInput{
			Bucket:          aws.String(c.bucket),
			Key:             c.objectKey(key),
			UploadId:        uploadID,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		}
		if conditional {
			in.IfNoneMatch = aws.String("*")
		}
		var attempts atomic.Int32
		_, err := c.api.CompleteMultipartUpload(ctx, in, withAttempts(&attempts))
		if err == nil {
			completed = true
			return nil
		}
		if conditional && isNotImplemented(err) {
			c.noConditional.Store(true)
			continue
		}
		err = c.settle(ctx, key, meta[metaWriteID], attempts.Load() > 1, err)
		completed = err == nil
		return err
	}
}

// hashPart reads the n bytes of part into total and returns their own hex
// SHA-256, the part's payload hash.
func hashPart(part io.Reader, n int64, total hash.Hash, buf []byte) (string, error) {
	h := sha256.New()
	got, err := io.CopyBuffer(io.MultiWriter(h, total), part, buf)
	if err != nil {
		return "", err
	}
	if got != n {
		return "", fmt.Errorf("body ended %d bytes early", n-got)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func isCode(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}
