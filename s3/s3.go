// Package s3 implements walsync.Storage over S3-compatible object storage:
// AWS S3, Tigris, MinIO, Cloudflare R2, Backblaze B2, Hetzner. It is the
// only package of walsync that imports the AWS SDK.
//
// # What goes over the wire
//
// Every write is signed with SigV4 over the payload's real SHA-256
// (x-amz-content-sha256), never UNSIGNED-PAYLOAD and never an aws-chunked
// body with trailing checksums (which B2 and Hetzner reject), and without
// Content-MD5 (which Tigris mishandles). The SHA-256 Put is given is the one
// signed, so the server itself refuses bytes that do not hash to it
// (walsync.ErrChecksum) and the SDK never re-reads a body to hash it. The
// same value is stored as the object's metadata sha256
// (x-amz-meta-sha256), which Get and Stat return.
//
// Objects are never overwritten: PutObject (and CompleteMultipartUpload)
// carry If-None-Match: *, and a server that answers 412 PreconditionFailed or
// 409 ConditionalRequestConflict yields walsync.ErrExists. (The one key that
// is rewritten, the index state.json, goes through Replace: the same signed
// PutObject without If-None-Match.) Each Put also
// stores a random write ID (x-amz-meta-walsync-write-id): when a write's
// outcome is uncertain (no answer, a 5xx, or a retry that meets an existing
// object because the first attempt's answer was lost), Put reads the
// object's write ID to tell its own object (success) from another writer's
// (ErrExists), even when both hold the same bytes. A server that
// answers 501 NotImplemented to conditional writes is remembered for the
// Client's lifetime, and each Put then checks with HEAD before it writes.
// That check is not atomic: on such servers two writers racing for one key
// can both succeed, the later one replacing the earlier. A server that
// silently ignores If-None-Match cannot be detected.
//
// Objects larger than Config.PartSize go up in parts of that size (after a
// HEAD, so that gigabytes are not sent for a key that is taken), each part
// signed over its own SHA-256, read twice from the body (once to hash, once
// to send) and never held in memory; the parts' hashes are chained into the object's SHA-256, checked
// against the expected one before CompleteMultipartUpload, and an upload that
// fails for any reason is aborted.
//
// # Configuration, as the AWS tools read it
//
// Credentials, region, profiles, AWS_ENDPOINT_URL_S3 and AWS_CA_BUNDLE come
// from config.LoadDefaultConfig. Config.Endpoint (--endpoint) wins over
// AWS_ENDPOINT_URL_S3; the region defaults to us-east-1. A custom endpoint
// is addressed path-style (MinIO), except the hosts known to want virtual
// hosts (Tigris: *.tigris.dev, *.storage.dev; AWS: *.amazonaws.com).
// Requests to Tigris carry X-Tigris-Consistent: true.
//
// All Clients of a process share one HTTP transport (connect timeout 3 s,
// TLS handshake 5 s, response headers due 10 s after a request is sent,
// pooled idle connections), unless a CA bundle is configured: then the SDK
// derives a transport trusting it for each Client. Every operation has a
// deadline, its retries included, that fits its size: 25 s, plus a second
// per 512 KiB an upload carries (deadline.go); a GET's answer must begin
// within the 25 s, and its body may then stall 30 s between bytes at most
// before the rest is asked for again (resume.go). So an endpoint that
// accepts connections and never answers fails a list, a stat or a small
// upload within 25 s.
//
// # Retries and errors
//
// Requests are retried on 408, 429, 5xx, RequestTimeout, RequestCanceled
// (Tigris sheds load with it) and SlowDown, with jittered exponential backoff,
// five attempts at most (within the operation's deadline) and no
// client-side retry quota. A body cut short (the connection reset, or fewer
// bytes than announced) is retried too: a LIST or an error answer as a
// whole, an object's body from where it broke off (resume.go).
// Errors are one line naming the operation and the object
// (put s3://bucket/prefix/key: ...) and wrap walsync's sentinels:
// fs.ErrNotExist, walsync.ErrExists, ErrChecksum, ErrBucketNotFound,
// ErrAccessDenied. They never contain a secret.
package s3

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/walsync/walsync"
)

// Multipart limits.
const (
	// DefaultPartSize is the multipart threshold and part size when
	// Config.PartSize is zero.
	DefaultPartSize = 64 << 20
	// MinPartSize is S3's smallest part (all but the last); smaller
	// Config.PartSize values are raised to it.
	MinPartSize = 5 << 20
	// maxParts is S3's largest number of parts; the part size grows for
	// objects that would need more.
	maxParts = 10000
)

// Retry and connection limits.
const (
	maxAttempts           = 5
	maxBackoff            = 2 * time.Second
	baseDelay             = 250 * time.Millisecond
	dialTimeout           = 3 * time.Second
	tlsHandshakeTimeout   = 5 * time.Second
	responseHeaderTimeout = 10 * time.Second
	abortTimeout          = time.Minute
)

// Metadata keys. metaSHA256 (x-amz-meta-sha256) holds an object's hex
// SHA-256. metaWriteID (x-amz-meta-walsync-write-id) is random for each Put:
// it tells an object that a retried write stored from someone else's.
const (
	metaSHA256  = "sha256"
	metaWriteID = "walsync-write-id"
)

// HTTPClient sends HTTP requests; *http.Client is one.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Config says which bucket a Client uses and how to reach it. Everything
// else (credentials, profiles, CA bundle) comes from the environment as the
// AWS tools read it.
type Config struct {
	// Bucket is the bucket name. Required.
	Bucket string
	// Prefix is prepended, with a '/', to every key: the "prefix" of
	// s3://bucket/prefix. Leading and trailing slashes are ignored.
	Prefix string
	// Endpoint is the S3 endpoint URL, as given by --endpoint: it wins
	// over AWS_ENDPOINT_URL_S3. Without a scheme, https:// is assumed.
	Endpoint string
	// Region signs requests; empty means AWS_REGION, the profile's
	// region, or us-east-1.
	Region string
	// ForcePathStyle chooses path-style (true) or virtual-host (false)
	// addressing. Nil chooses: path-style for custom endpoints except
	// Tigris and AWS hosts.
	ForcePathStyle *bool
	// PartSize is the size above which objects are uploaded in parts, and
	// the size of those parts. Zero means DefaultPartSize; values below
	// MinPartSize are raised to it.
	PartSize int64
	// HTTPClient sends the requests instead of the shared transport. A
	// CA bundle from the environment does not apply to it.
	HTTPClient HTTPClient

	// retryBackoff replaces the retry delays (tests).
	retryBackoff func(attempt int, err error) (time.Duration, error)
}

// Client is a walsync.Storage on an S3 bucket. It is safe for concurrent
// use.
type Client struct {
	api      *s3api.Client
	bucket   string
	prefix   string // "" or ending in '/'
	endpoint string // resolved custom endpoint, "" for AWS
	partSize int64

	// noConditional is set once the server answered NotImplemented to
	// If-None-Match: Put then checks with HEAD first.
	noConditional atomic.Bool
}

var _ walsync.Storage = (*Client)(nil)

// sharedHTTPClient is the transport every Client uses unless a CA bundle or
// Config.HTTPClient asks for another.
var sharedHTTPClient = awshttp.NewBuildableClient().
	WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = dialTimeout
		d.KeepAlive = 30 * time.Second
	}).
	WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns = 100
		tr.MaxIdleConnsPerHost = 32
		tr.IdleConnTimeout = 90 * time.Second
		tr.TLSHandshakeTimeout = tlsHandshakeTimeout
		tr.ResponseHeaderTimeout = responseHeaderTimeout
		tr.ExpectContinueTimeout = time.Second
	})

// New returns a Client for cfg. It loads the AWS configuration (which can
// read files) but sends no request: a wrong bucket or credentials show up in
// the first operation.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: empty bucket name: use s3://bucket[/prefix]")
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := validKey(prefix); err != nil {
			return nil, fmt.Errorf("s3://%s/%s: invalid prefix: %w", cfg.Bucket, cfg.Prefix, err)
		}
		prefix += "/"
	}
	c := &Client{bucket: cfg.Bucket, prefix: prefix, partSize: cfg.PartSize}
	switch {
	case c.partSize == 0:
		c.partSize = DefaultPartSize
	case c.partSize < MinPartSize:
		c.partSize = MinPartSize
	}

	endpoint := cfg.Endpoint
	if endpoint != "" {
		if !strings.Contains(endpoint, "://") {
			endpoint = "https://" + endpoint
		}
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("%s: invalid endpoint %q: want http(s)://host[:port]", c, cfg.Endpoint)
		}
	}

	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(sharedHTTPClient),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithRetryer(func() aws.Retryer { return newRetryer(cfg.retryBackoff) }),
		// The SDK's own log lines ("SDK 2026/... WARN failed to discard
		// remaining HTTP response body") never reach the user: walsync
		// reports failures itself.
		config.WithLogger(logging.Nop{}),
		config.WithClientLogMode(0),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: load AWS configuration: %s", c, oneLine(err.Error()))
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}

	var resolveErr error
	c.api = s3api.NewFromConfig(awsCfg, func(o *s3api.Options) {
		// The SDK resolved AWS_ENDPOINT_URL_S3 (and the profile's
		// endpoint) into BaseEndpoint before this runs.
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		host := ""
		if o.BaseEndpoint != nil {
			c.endpoint = *o.BaseEndpoint
			u, err := url.Parse(c.endpoint)
			if err != nil || u.Host == "" {
				resolveErr = fmt.Errorf("%s: invalid endpoint %q", c, c.endpoint)
				return
			}
			host = strings.ToLower(u.Hostname())
		}
		switch {
		case cfg.ForcePathStyle != nil:
			o.UsePathStyle = *cfg.ForcePathStyle
		case host != "":
			o.UsePathStyle = !virtualHostProvider(host)
		}
		if isTigris(host) {
			o.APIOptions = append(o.APIOptions, addHeader("X-Tigris-Consistent", "true"))
		}
		o.APIOptions = append(o.APIOptions, addDeadline)
		// Use the configured transport as it is: the SDK would otherwise
		// derive a copy (a transport of its own) for each Client.
		o.HTTPClient = awsCfg.HTTPClient
		if cfg.HTTPClient != nil {
			o.HTTPClient = cfg.HTTPClient
		}
	})
	if resolveErr != nil {
		return nil, resolveErr
	}
	return c, nil
}

// String returns the bucket URL, s3://bucket or s3://bucket/prefix.
func (c *Client) String() string {
	if c.prefix == "" {
		return "s3://" + c.bucket
	}
	return "s3://" + c.bucket + "/" + strings.TrimSuffix(c.prefix, "/")
}

// Endpoint returns the custom endpoint the client talks to, or "" for AWS.
func (c *Client) Endpoint() string { return c.endpoint }

func (c *Client) url(key string) string { return "s3://" + c.bucket + "/" + c.prefix + key }

func (c *Client) objectKey(key string) *string { return aws.String(c.prefix + key) }

// Put implements walsync.Storage.
func (c *Client) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("put %s: %w", c.url(key), err)
	}
	want, err := walsync.NormalizeSum(sum)
	if err != nil {
		return fmt.Errorf("put %s: %w", c.url(key), err)
	}
	if size < 0 {
		return fmt.Errorf("put %s: negative size %d", c.url(key), size)
	}
	if body == nil && size == 0 {
		body = strings.NewReader("")
	}
	meta := map[string]string{metaSHA256: want, metaWriteID: newWriteID()}
	if size > c.partSize {
		return c.putMultipart(ctx, key, body, size, meta)
	}
	for {
		conditional := !c.noConditional.Load()
		if !conditional {
			if err := c.checkAbsent(ctx, "put", key); err != nil {
				return err
			}
		}
		in := &s3api.PutObjectInput{
			Bucket:        aws.String(c.bucket),
			Key:           c.objectKey(key),
			Body:          newSection(body, 0, size),
			ContentLength: aws.Int64(size),
			Metadata:      meta,
		}
		if conditional {
			in.IfNoneMatch = aws.String("*")
		}
		var attempts atomic.Int32
		_, err := c.api.PutObject(ctx, in, withPayloadHash(want, &attempts))
		if err == nil {
			return nil
		}
		if conditional && isNotImplemented(err) {
			c.noConditional.Store(true)
			continue // again, checking with HEAD first
		}
		return c.settle(ctx, key, meta[metaWriteID], attempts.Load() > 1, err)
	}
}

// maxSinglePut is the largest object one PutObject may carry (5 GiB).
const maxSinglePut = 5 << 30

// Replace implements walsync.Storage: one PutObject without If-None-Match,
// which overwrites an existing object atomically (S3 readers see the old
// or the new object). It is signed over sum, carries it as
// x-amz-meta-sha256 and is retried like Put; a retry after a lost answer
// writes the same bytes again, which is harmless. Index objects are small:
// Replace never uses multipart uploads and refuses bodies over 5 GiB.
func (c *Client) Replace(ctx context.Context, key string, body io.ReadSeeker, size int64, sum string) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("replace %s: %w", c.url(key), err)
	}
	want, err := walsync.NormalizeSum(sum)
	if err != nil {
		return fmt.Errorf("replace %s: %w", c.url(key), err)
	}
	if size < 0 || size > maxSinglePut {
		return fmt.Errorf("replace %s: size %d: want 0 to %d bytes", c.url(key), size, int64(maxSinglePut))
	}
	if body == nil && size == 0 {
		body = strings.NewReader("")
	}
	_, err = c.api.PutObject(ctx, &s3api.PutObjectInput{
		Bucket:        aws.String(c.bucket),
		Key:           c.objectKey(key),
		Body:          newSection(body, 0, size),
		ContentLength: aws.Int64(size),
		Metadata:      map[string]string{metaSHA256: want},
	}, withPayloadHash(want, nil))
	if err != nil {
		return c.opError(ctx, "replace", key, err)
	}
	return nil
}

// settle turns the failure of a write into Put's answer. When the failure
// leaves open whether an attempt stored the object (no answer, a 5xx, or a
// retry that met the object: 412, or NoSuchUpload for a completed
// multipart upload), it looks: the object is ours when it carries this
// Put's write ID, and someone else's (walsync.ErrExists) otherwise.
//
// That settles the case of MinIO and others answering an If-None-Match PUT
// of a large body by resetting the connection: the SDK retries, and the
// outcome must not depend on how many resets happened first.
func (c *Client) settle(ctx context.Context, key, writeID string, retried bool, err error) error {
	mapped := c.opError(ctx, "put", key, err)
	if ctx.Err() != nil {
		return mapped
	}
	status := 0
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	var apiErr smithy.APIError
	answered := errors.As(err, &apiErr) && status != 0
	ambiguous := !answered || status >= 500 ||
		(retried && (errors.Is(mapped, walsync.ErrExists) || isCode(err, "NoSuchUpload")))
	if !ambiguous || errors.Is(mapped, walsync.ErrAccessDenied) || errors.Is(mapped, walsync.ErrBucketNotFound) {
		return mapped
	}
	out, herr := c.head(ctx, key)
	switch {
	case herr != nil:
		return mapped
	case out.Metadata[metaWriteID] == writeID:
		return nil // an attempt whose answer was lost stored it
	default:
		return &opError{msg: fmt.Sprintf("put %s: %v", c.url(key), walsync.ErrExists), sentinel: walsync.ErrExists, err: err}
	}
}

// newWriteID returns a random ID telling this write's object from others.
func newWriteID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// checkAbsent returns nil when key does not exist and an error wrapping
// walsync.ErrExists when it does.
func (c *Client) checkAbsent(ctx context.Context, op, key string) error {
	_, err := c.Stat(ctx, key)
	switch {
	case err == nil:
		return &opError{msg: fmt.Sprintf("%s %s: %v", op, c.url(key), walsync.ErrExists), sentinel: walsync.ErrExists}
	case errors.Is(err, walsync.ErrNotExist):
		return nil
	default:
		return err
	}
}

// Get implements walsync.Storage. The body streams from the server.
func (c *Client) Get(ctx context.Context, key string) (io.ReadCloser, walsync.ObjectInfo, error) {
	if err := validKey(key); err != nil {
		return nil, walsync.ObjectInfo{}, fmt.Errorf("get %s: %w", c.url(key), err)
	}
	// The body outlives the call: the deadline covers the answer's start
	// only (getCtx), the body has its idle limit (resumingBody).
	out, cancel, err := c.getObject(ctx, &s3api.GetObjectInput{Bucket: aws.String(c.bucket), Key: c.objectKey(key)})
	if err != nil {
		return nil, walsync.ObjectInfo{}, c.opError(ctx, "get", key, err)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	body := newResumingBody(c, ctx, key, aws.ToString(out.ETag), size, out.Body, cancel)
	return body, walsync.ObjectInfo{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		SHA256:  strings.ToLower(out.Metadata[metaSHA256]),
	}, nil
}

// Stat implements walsync.Storage with HeadObject.
func (c *Client) Stat(ctx context.Context, key string) (walsync.ObjectInfo, error) {
	if err := validKey(key); err != nil {
		return walsync.ObjectInfo{}, fmt.Errorf("stat %s: %w", c.url(key), err)
	}
	out, err := c.head(ctx, key)
	if err != nil {
		return walsync.ObjectInfo{}, err
	}
	return walsync.ObjectInfo{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		SHA256:  strings.ToLower(out.Metadata[metaSHA256]),
	}, nil
}

func (c *Client) head(ctx context.Context, key string) (*s3api.HeadObjectOutput, error) {
	out, err := c.api.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: aws.String(c.bucket), Key: c.objectKey(key)})
	if err != nil {
		return nil, c.opError(ctx, "stat", key, err)
	}
	return out, nil
}

// List implements walsync.Storage with ListObjectsV2, page by page.
func (c *Client) List(ctx context.Context, prefix string) iter.Seq2[walsync.ObjectInfo, error] {
	return func(yield func(walsync.ObjectInfo, error) bool) {
		// No key has an empty, "." or ".." component, and servers refuse
		// (MinIO) or resolve (proxies) such prefixes: answer without
		// asking, or ask for less and filter when only the unfinished
		// last component is "." or "..".
		full := c.prefix + prefix
		parts := strings.Split(full, "/")
		for _, part := range parts[:len(parts)-1] {
			if part == "" || part == "." || part == ".." {
				return
			}
		}
		ask := full
		if last := parts[len(parts)-1]; last == "." || last == ".." {
			ask = strings.TrimSuffix(full, last)
		}
		pages := s3api.NewListObjectsV2Paginator(c.api, &s3api.ListObjectsV2Input{
			Bucket: aws.String(c.bucket),
			Prefix: aws.String(ask),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(walsync.ObjectInfo{}, c.opError(ctx, "list", prefix, err))
				return
			}
			for _, o := range page.Contents {
				key, ok := strings.CutPrefix(aws.ToString(o.Key), c.prefix)
				if !ok || key == "" || !strings.HasPrefix(key, prefix) {
					continue
				}
				info := walsync.ObjectInfo{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}

// Prepare implements walsync.Storage: one listing request for at most one
// key proves the bucket exists and the credentials may read it.
func (c *Client) Prepare(ctx context.Context) error {
	_, err := c.api.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{
		Bucket:  aws.String(c.bucket),
		Prefix:  aws.String(c.prefix),
		MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return c.opError(ctx, "list", "", err)
	}
	return nil
}

// Delete implements walsync.Storage.
func (c *Client) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("delete %s: %w", c.url(key), err)
	}
	_, err := c.api.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(c.bucket), Key: c.objectKey(key)})
	if err != nil {
		err = c.opError(ctx, "delete", key, err)
		if errors.Is(err, walsync.ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}

func newRetryer(backoff func(int, error) (time.Duration, error)) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = maxBackoff
		o.BaseDelay = baseDelay
		// A client-side retry quota would turn a long outage into
		// immediate failures; the replicator above retries anyway.
		o.RateLimiter = ratelimit.None
		// A certificate that does not verify will not verify on retry.
		o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(certificateError)}, o.Retryables...)
		o.Retryables = append(o.Retryables,
			retry.IsErrorRetryableFunc(shortBody),
			retry.RetryableHTTPStatusCode{Codes: map[int]struct{}{
				http.StatusRequestTimeout: {}, http.StatusTooManyRequests: {},
				http.StatusInternalServerError: {}, http.StatusBadGateway: {},
				http.StatusServiceUnavailable: {}, http.StatusGatewayTimeout: {},
			}},
			retry.RetryableErrorCode{Codes: map[string]struct{}{
				"RequestTimeout": {}, "RequestCanceled": {}, "SlowDown": {},
				"InternalError": {}, "ServiceUnavailable": {},
			}},
		)
		o.Throttles = append(o.Throttles, retry.ThrottleErrorCode{Codes: map[string]struct{}{
			"RequestCanceled": {}, "SlowDown": {}, "TooManyRequests": {},
		}})
		if backoff != nil {
			o.Backoff = retry.BackoffDelayerFunc(backoff)
		}
	})
}

func certificateError(err error) aws.Ternary {
	var verify *tls.CertificateVerificationError
	var authority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
}

// virtualHostProvider reports whether host belongs to a provider that
// addresses buckets as virtual hosts (bucket.host).
func virtualHostProvider(host string) bool {
	return host == "amazonaws.com" || strings.HasSuffix(host, ".amazonaws.com") || isTigris(host)
}

func isTigris(host string) bool {
	return strings.HasSuffix(host, ".tigris.dev") || strings.HasSuffix(host, ".storage.dev")
}

// validKey reports why key cannot name an object: the rules of the file
// backend that matter on S3 too (a "." or ".." component would be
// resolved away by some servers and proxies in path-style URLs).
func validKey(key string) error {
	if key == "" {
		return errors.New("invalid key: empty")
	}
	if key[0] == '/' {
		return fmt.Errorf("invalid key %q: starts with '/'", key)
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("invalid key %q: contains a control character", key)
	}
	for part := range strings.SplitSeq(key, "/") {
		switch part {
		case "":
			return fmt.Errorf("invalid key %q: empty path component", key)
		case ".", "..":
			return fmt.Errorf("invalid key %q: %q component", key, part)
		}
	}
	return nil
}
