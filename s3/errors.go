package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/walsync/walsync"
)

// opError is an error of one operation on one object: a single line of its
// own, wrapping a walsync sentinel (when one applies) and the SDK's error.
type opError struct {
	msg      string
	sentinel error
	err      error
}

func (e *opError) Error() string { return e.msg }

func (e *opError) Unwrap() []error {
	var errs []error
	if e.sentinel != nil {
		errs = append(errs, e.sentinel)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

const credentialsHint = "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"

// opError describes err, the SDK's failure of op on key, in one line that
// starts with the operation and the object's URL.
func (c *Client) opError(ctx context.Context, op, key string, err error) error {
	prefix := op + " " + c.url(key) + ": "
	wrap := func(sentinel error, format string, args ...any) error {
		return &opError{msg: prefix + fmt.Sprintf(format, args...), sentinel: sentinel, err: err}
	}
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return wrap(nil, "%v", ctxErr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The operation's own deadline (deadline.go), not the caller's.
		return wrap(nil, "no answer in time from %s (the operation's deadline, %v, passed; retries included)", c.endpointName(), opBudget)
	}

	status := 0
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	code, message := "", ""
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code, message = apiErr.ErrorCode(), oneLine(apiErr.ErrorMessage())
	}
	attempts := ""
	var maxErr *retry.MaxAttemptsError
	if errors.As(err, &maxErr) {
		attempts = fmt.Sprintf(" after %d attempts", maxErr.Attempt)
	}
	detail := code
	if message != "" {
		detail += ": " + message
	}
	if status != 0 {
		detail += fmt.Sprintf(" (HTTP %d%s)", status, attempts)
	}

	switch {
	case code == "NoSuchBucket":
		return wrap(walsync.ErrBucketNotFound, "bucket %q does not exist%s", c.bucket, c.at())
	case code == "NoSuchKey" || ((code == "NotFound" || code == "") && status == http.StatusNotFound):
		if op == "stat" || op == "put" || op == "replace" {
			// HEAD has no body to tell a missing key from a missing bucket.
			if berr := c.checkBucket(ctx); berr != nil {
				return wrap(walsync.ErrBucketNotFound, "bucket %q does not exist%s", c.bucket, c.at())
			}
		}
		return wrap(walsync.ErrNotExist, "no such object")
	case code == "PreconditionFailed" || code == "ConditionalRequestConflict" ||
		status == http.StatusPreconditionFailed:
		return wrap(walsync.ErrExists, "%v", walsync.ErrExists)
	case code == "XAmzContentSHA256Mismatch" || code == "BadDigest":
		return wrap(walsync.ErrChecksum, "%v: the server computed another SHA-256 for the bytes sent (%s)", walsync.ErrChecksum, detail)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "AccessDenied" ||
		code == "InvalidToken" || code == "ExpiredToken" || code == "Forbidden" || status == http.StatusForbidden:
		return wrap(walsync.ErrAccessDenied, "%v (%s): %s", walsync.ErrAccessDenied, detail, credentialsHint)
	case code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" || code == "IllegalLocationConstraintException":
		return wrap(nil, "%s: the bucket may be in another region than %q: set AWS_REGION", detail, c.api.Options().Region)
	case apiErr != nil:
		return wrap(nil, "%s", detail)
	}

	// No answer from the server.
	if strings.Contains(err.Error(), "get identity:") {
		return wrap(walsync.ErrAccessDenied, "no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
	}
	if attempts != "" {
		attempts = " (" + attempts[1:] + ")"
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return wrap(nil, "cannot reach %s: %s%s", c.host(), oneLine(urlErr.Err.Error()), attempts)
	}
	return wrap(nil, "%s%s", lastClause(err.Error()), attempts)
}

// checkBucket returns an error when the bucket cannot be found.
func (c *Client) checkBucket(ctx context.Context) error {
	_, err := c.api.HeadBucket(ctx, &s3api.HeadBucketInput{Bucket: aws.String(c.bucket)})
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusNotFound {
		return err
	}
	return nil
}

// at names the endpoint for messages: " at http://127.0.0.1:9000", or ""
// for AWS.
func (c *Client) at() string {
	if c.endpoint == "" {
		return ""
	}
	return " at " + c.endpoint
}

func (c *Client) host() string {
	if c.endpoint == "" {
		return "AWS S3"
	}
	return c.endpoint
}

func isNotImplemented(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NotImplemented" {
		return true
	}
	var respErr *smithyhttp.ResponseError
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusNotImplemented
}

// oneLine folds s onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// lastClause keeps the end of the SDK's comma-chained message ("operation
// error S3: PutObject, https response error ..., <cause>").
func lastClause(s string) string {
	s = oneLine(s)
	if i := strings.LastIndex(s, ", "); i >= 0 && i+2 < len(s) {
		return s[i+2:]
	}
	return s
}

// endpointName names the server in messages: the custom endpoint, or AWS.
func (c *Client) endpointName() string {
	if c.endpoint != "" {
		return c.endpoint
	}
	return "AWS S3"
}
