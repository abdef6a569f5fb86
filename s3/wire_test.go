package s3

// Tests of what goes over the wire, against a fake HTTP client: no server,
// no network.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/storagetest"
)

const fakeSecret = "fakeSecretKeyThatMustNeverBePrinted"

// request is one request the fake server saw.
type request struct {
	Method, Host, Path string
	Header             http.Header
	Body               []byte
}

// fakeS3 answers requests with handle and records them.
type fakeS3 struct {
	mu     sync.Mutex
	reqs   []request
	handle func(r request) *http.Response
}

func (f *fakeS3) Do(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body.Close()
	}
	req := request{Method: r.Method, Host: r.URL.Host, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	if r.Host != "" {
		req.Host = r.Host
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	resp := f.handle(req)
	resp.Request = r
	return resp, nil
}

func (f *fakeS3) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

func response(status int, header map[string]string, body string) *http.Response {
	h := http.Header{}
	for k, v := range header {
		h.Set(k, v)
	}
	return &http.Response{
		StatusCode:    status,
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
	}
}

func errorResponse(status int, code, message string) *http.Response {
	return response(status, map[string]string{"Content-Type": "application/xml"},
		`<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>`+message+`</Message><RequestId>1</RequestId></Error>`)
}

func okResponse() *http.Response { return response(200, map[string]string{"ETag": `"etag"`}, "") }

// fakeEnv gives the process static fake credentials and nothing else.
func fakeEnv(t *testing.T) {
	testenv.Isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", fakeSecret)
}

// fakeClient returns a Client sending to fake, with instant retries.
func fakeClient(t *testing.T, fake *fakeS3, cfg Config) *Client {
	t.Helper()
	if cfg.Bucket == "" {
		cfg.Bucket = "bucket"
	}
	cfg.HTTPClient = fake
	cfg.retryBackoff = func(int, error) (time.Duration, error) { return time.Millisecond, nil }
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: got=%v, want nil", err)
	}
	return c
}

func putBytes(c *Client, key string, data []byte) error {
	return c.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), storagetest.Sum(data))
}

func TestAddressing(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		endpoint  string
		envS3     string
		pathStyle *bool
		wantHost  string
		wantPath  string
		tigris    bool
	}{
		{endpoint: "http://127.0.0.1:9000", wantHost: "127.0.0.1:9000", wantPath: "/bucket/p/k"},
		{endpoint: "127.0.0.1:9000", wantHost: "127.0.0.1:9000", wantPath: "/bucket/p/k"},
		{endpoint: "https://minio.example.com", wantHost: "minio.example.com", wantPath: "/bucket/p/k"},
		{endpoint: "https://fly.storage.tigris.dev", wantHost: "bucket.fly.storage.tigris.dev", wantPath: "/p/k", tigris: true},
		{endpoint: "https://t3.storage.dev", wantHost: "bucket.t3.storage.dev", wantPath: "/p/k", tigris: true},
		{endpoint: "https://s3.eu-west-1.amazonaws.com", wantHost: "bucket.s3.eu-west-1.amazonaws.com", wantPath: "/p/k"},
		{endpoint: "https://fly.storage.tigris.dev", pathStyle: &yes, wantHost: "fly.storage.tigris.dev", wantPath: "/bucket/p/k", tigris: true},
		{endpoint: "https://minio.example.com", pathStyle: &no, wantHost: "bucket.minio.example.com", wantPath: "/p/k"},
		{envS3: "http://127.0.0.2:9000", wantHost: "127.0.0.2:9000", wantPath: "/bucket/p/k"},
		{envS3: "https://fly.storage.tigris.dev", wantHost: "bucket.fly.storage.tigris.dev", wantPath: "/p/k", tigris: true},
		{endpoint: "http://127.0.0.1:9000", envS3: "http://127.0.0.2:1", wantHost: "127.0.0.1:9000", wantPath: "/bucket/p/k"},
		{wantHost: "bucket.s3.us-east-1.amazonaws.com", wantPath: "/p/k"},
	} {
		t.Run(tt.endpoint+"|"+tt.envS3, func(t *testing.T) {
			fake := &fakeS3{handle: func(request) *http.Response { return okResponse() }}
			fakeEnv(t)
			if tt.envS3 != "" {
				t.Setenv("AWS_ENDPOINT_URL_S3", tt.envS3)
			}
			c := fakeClient(t, fake, Config{Prefix: "/p/", Endpoint: tt.endpoint, ForcePathStyle: tt.pathStyle})
			if err := putBytes(c, "k", []byte("x")); err != nil {
				t.Fatalf("Put: got=%v, want nil", err)
			}
			if _, err := c.Stat(context.Background(), "k"); err != nil {
				t.Fatalf("Stat: got=%v, want nil", err)
			}
			for _, r := range fake.requests() {
				if r.Host != tt.wantHost || r.Path != tt.wantPath {
					t.Errorf("%s: got=%s%s, want %s%s", r.Method, r.Host, r.Path, tt.wantHost, tt.wantPath)
				}
				if got := r.Header.Get("X-Tigris-Consistent"); (got == "true") != tt.tigris {
					t.Errorf("%s X-Tigris-Consistent: got=%q, want set=%v", r.Method, got, tt.tigris)
				}
			}
		})
	}
}

func TestRegion(t *testing.T) {
	for _, tt := range []struct{ env, cfg, want string }{
		{"", "", "us-east-1"},
		{"eu-central-1", "", "eu-central-1"},
		{"eu-central-1", "auto", "auto"},
	} {
		fakeEnv(t)
		if tt.env != "" {
			t.Setenv("AWS_REGION", tt.env)
		}
		fake := &fakeS3{handle: func(request) *http.Response { return okResponse() }}
		c := fakeClient(t, fake, Config{Endpoint: "http://127.0.0.1:9000", Region: tt.cfg})
		if err := putBytes(c, "k", nil); err != nil {
			t.Fatal(err)
		}
		auth := fake.requests()[0].Header.Get("Authorization")
		if !strings.Contains(auth, "/"+tt.want+"/s3/aws4_request") {
			t.Errorf("env %q config %q: Authorization %q, want region %s", tt.env, tt.cfg, auth, tt.want)
		}
	}
}

// TestPutWire: a Put is signed over the real SHA-256 (even over TLS, where
// the SDK would send UNSIGNED-PAYLOAD), with no aws-chunked trailer, no
// Content-MD5, the sha256 metadata and If-None-Match: *.
func TestPutWire(t *testing.T) {
	for _, endpoint := range []string{"https://s3.example.test", "http://127.0.0.1:9000"} {
		t.Run(endpoint, func(t *testing.T) {
			fakeEnv(t)
			fake := &fakeS3{handle: func(request) *http.Response { return okResponse() }}
			c := fakeClient(t, fake, Config{Endpoint: endpoint})
			data := []byte("frames of a WAL")
			sum := storagetest.Sum(data)
			if err := putBytes(c, "app/wal/1.wal", data); err != nil {
				t.Fatal(err)
			}
			reqs := fake.requests()
			if len(reqs) != 1 {
				t.Fatalf("requests: got=%d, want 1", len(reqs))
			}
			checkSignedPut(t, reqs[0], data, sum)
			if got := reqs[0].Header.Get("If-None-Match"); got != "*" {
				t.Errorf("If-None-Match: got=%q, want %q", got, "*")
			}
			if got := reqs[0].Header.Get("X-Amz-Meta-Sha256"); got != sum {
				t.Errorf("x-amz-meta-sha256: got=%q, want %q", got, sum)
			}
		})
	}
}

func checkSignedPut(t *testing.T, r request, data []byte, sum string) {
	t.Helper()
	if got := r.Header.Get("X-Amz-Content-Sha256"); got != sum {
		t.Errorf("%s %s x-amz-content-sha256: got=%q, want %q", r.Method, r.Path, got, sum)
	}
	if auth := r.Header.Get("Authorization"); !strings.Contains(auth, "x-amz-content-sha256") {
		t.Errorf("Authorization does not sign x-amz-content-sha256: %q", auth)
	}
	for _, h := range []string{"Content-Md5", "X-Amz-Trailer", "X-Amz-Decoded-Content-Length", "X-Amz-Sdk-Checksum-Algorithm"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("header %s: got=%q, want none", h, v)
		}
	}
	for h := range r.Header {
		if strings.HasPrefix(strings.ToLower(h), "x-amz-checksum-") {
			t.Errorf("header %s: got=%q, want none", h, r.Header.Get(h))
		}
	}
	if enc := r.Header.Get("Content-Encoding"); strings.Contains(enc, "aws-chunked") {
		t.Errorf("Content-Encoding: got=%q, want no aws-chunked", enc)
	}
	if !bytes.Equal(r.Body, data) {
		t.Errorf("body: got=%d bytes, want the %d bytes put", len(r.Body), len(data))
	}
}

// TestMultipartWire: each part signed over its own SHA-256, the object's
// metadata on CreateMultipartUpload, If-None-Match on Complete.
func TestMultipartWire(t *testing.T) {
	fakeEnv(t)
	fake := &fakeS3{handle: func(r request) *http.Response {
		switch {
		case r.Method == "HEAD" && r.Path == "/bucket":
			return response(200, nil, "")
		case r.Method == "HEAD":
			return response(404, nil, "")
		case r.Method == "POST" && strings.Contains(r.Header.Get("Content-Type"), "xml"), r.Method == "POST" && len(r.Body) > 0:
			return response(200, map[string]string{"Content-Type": "application/xml"},
				`<CompleteMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><ETag>"e-3"</ETag></CompleteMultipartUploadResult>`)
		case r.Method == "POST":
			return response(200, map[string]string{"Content-Type": "application/xml"},
				`<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><UploadId>up1</UploadId></InitiateMultipartUploadResult>`)
		default:
			return okResponse()
		}
	}}
	c := fakeClient(t, fake, Config{Endpoint: "https://s3.example.test", PartSize: 1})
	if c.partSize != MinPartSize {
		t.Fatalf("part size: got=%d, want %d", c.partSize, MinPartSize)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), (2*MinPartSize+1000)/16)
	if err := putBytes(c, "big", data); err != nil {
		t.Fatalf("Put: got=%v, want nil", err)
	}
	var methods []string
	var parts [][]byte
	for _, r := range fake.requests() {
		methods = append(methods, r.Method)
		switch r.Method {
		case "PUT":
			parts = append(parts, r.Body)
			checkSignedPut(t, r, r.Body, storagetest.Sum(r.Body))
		case "POST":
			if len(r.Body) == 0 {
				if got := r.Header.Get("X-Amz-Meta-Sha256"); got != storagetest.Sum(data) {
					t.Errorf("CreateMultipartUpload x-amz-meta-sha256: got=%q, want %q", got, storagetest.Sum(data))
				}
			} else if got := r.Header.Get("If-None-Match"); got != "*" {
				t.Errorf("CompleteMultipartUpload If-None-Match: got=%q, want *", got)
			}
		}
	}
	if want := []string{"HEAD", "HEAD", "POST", "PUT", "PUT", "PUT", "POST"}; strings.Join(methods, " ") != strings.Join(want, " ") {
		t.Errorf("requests: got=%v, want %v", methods, want)
	}
	if got := bytes.Join(parts, nil); !bytes.Equal(got, data) {
		t.Errorf("parts joined: got=%d bytes, want the %d bytes put", len(got), len(data))
	}
}

// TestMultipartWrongSum: the parts are uploaded, the whole object's hash
// differs, the upload is aborted.
func TestMultipartWrongSum(t *testing.T) {
	fakeEnv(t)
	fake := &fakeS3{handle: func(r request) *http.Response {
		switch {
		case r.Method == "HEAD" && r.Path == "/bucket":
			return response(200, nil, "")
		case r.Method == "HEAD":
			return response(404, nil, "")
		case r.Method == "POST":
			return response(200, map[string]string{"Content-Type": "application/xml"},
				`<InitiateMultipartUploadResult><UploadId>up1</UploadId></InitiateMultipartUploadResult>`)
		case r.Method == "DELETE":
			return response(204, nil, "")
		default:
			return okResponse()
		}
	}}
	c := fakeClient(t, fake, Config{Endpoint: "http://127.0.0.1:9000", PartSize: MinPartSize})
	data := make([]byte, MinPartSize+1)
	err := c.Put(context.Background(), "big", bytes.NewReader(data), int64(len(data)), storagetest.Sum([]byte("other")))
	if !errors.Is(err, walsync.ErrChecksum) {
		t.Fatalf("Put: got=%v, want %v", err, walsync.ErrChecksum)
	}
	reqs := fake.requests()
	if last := reqs[len(reqs)-1]; last.Method != "DELETE" {
		t.Errorf("last request: got=%s %s, want the DELETE of AbortMultipartUpload", last.Method, last.Path)
	}
}

// TestNotImplementedFallback: a server without conditional writes is
// remembered, and Put checks with HEAD instead.
func TestNotImplementedFallback(t *testing.T) {
	fakeEnv(t)
	stored := map[string]bool{}
	var mu sync.Mutex
	fake := &fakeS3{handle: func(r request) *http.Response {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Header.Get("If-None-Match") != "":
			return errorResponse(501, "NotImplemented", "A header you provided implies functionality that is not implemented")
		case r.Method == "HEAD" && (stored[r.Path] || r.Path == "/bucket"):
			return response(200, map[string]string{"Content-Length": "1"}, "")
		case r.Method == "HEAD":
			return response(404, nil, "")
		case r.Method == "PUT":
			stored[r.Path] = true
			return okResponse()
		}
		return okResponse()
	}}
	c := fakeClient(t, fake, Config{Endpoint: "http://127.0.0.1:9000"})
	if err := putBytes(c, "a", []byte("1")); err != nil {
		t.Fatalf("first Put: got=%v, want nil", err)
	}
	if err := putBytes(c, "b", []byte("2")); err != nil {
		t.Fatalf("second Put: got=%v, want nil", err)
	}
	if err := putBytes(c, "a", []byte("3")); !errors.Is(err, walsync.ErrExists) {
		t.Fatalf("Put of an existing key: got=%v, want %v", err, walsync.ErrExists)
	}
	var got []string
	for _, r := range fake.requests() {
		got = append(got, r.Method+" "+r.Path+map[bool]string{true: " (conditional)"}[r.Header.Get("If-None-Match") != ""])
	}
	want := []string{
		"PUT /bucket/a (conditional)", "HEAD /bucket/a", "HEAD /bucket", "PUT /bucket/a",
		"HEAD /bucket/b", "HEAD /bucket", "PUT /bucket/b",
		"HEAD /bucket/a",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\ngot=%q\nwant %q", got, want)
	}
}

// TestRetries: 408 RequestCanceled (Tigris shedding load), 503 SlowDown
// and 500 are retried, and the body is sent whole each time.
func TestRetries(t *testing.T) {
	fakeEnv(t)
	answers := []*http.Response{
		errorResponse(408, "RequestCanceled", "Request canceled"),
		errorResponse(503, "SlowDown", "Please reduce your request rate."),
		errorResponse(429, "TooManyRequests", "slow down"),
		errorResponse(500, "InternalError", "We encountered an internal error."),
		okResponse(),
	}
	var n int
	fake := &fakeS3{handle: func(r request) *http.Response {
		if r.Method == "HEAD" {
			return response(404, nil, "")
		}
		n++
		return answers[n-1]
	}}
	c := fakeClient(t, fake, Config{Endpoint: "https://fly.storage.tigris.dev"})
	data := []byte("retry me")
	if err := putBytes(c, "k", data); err != nil {
		t.Fatalf("Put: got=%v, want nil", err)
	}
	reqs := fake.requests()
	if len(reqs) != 5 {
		t.Fatalf("requests: got=%d, want 5 attempts", len(reqs))
	}
	for _, r := range reqs {
		checkSignedPut(t, r, data, storagetest.Sum(data))
	}

	// Five failures: give up, in one line.
	n = 0
	answers = []*http.Response{
		errorResponse(503, "SlowDown", "a"), errorResponse(503, "SlowDown", "b"), errorResponse(503, "SlowDown", "c"),
		errorResponse(503, "SlowDown", "d"), errorResponse(503, "SlowDown", "e"), okResponse(),
	}
	err := putBytes(c, "k2", data)
	if err == nil || !strings.Contains(err.Error(), "SlowDown") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Put after 5 failures: got=%v, want a one-line SlowDown error", err)
	}
	t.Logf("error after 5 attempts: %v", err)
}

// TestRetryLostResponse: the first attempt stored the object but its answer
// was lost; the retry meets 412, and Put sees by the write ID that the
// object is its own. An object of another write is ErrExists, even with
// the same bytes.
func TestRetryLostResponse(t *testing.T) {
	fakeEnv(t)
	data := []byte("mine")
	sum := storagetest.Sum(data)
	var mu sync.Mutex
	var puts int
	var storedID string
	fake := &fakeS3{handle: func(r request) *http.Response {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case "PUT":
			puts++
			switch puts {
			case 1:
				if storedID == "" {
					storedID = r.Header.Get("X-Amz-Meta-Walsync-Write-Id")
				}
				return errorResponse(500, "InternalError", "lost")
			default:
				return errorResponse(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
			}
		case "HEAD":
			return response(200, map[string]string{"Content-Length": "4", "X-Amz-Meta-Sha256": sum, "X-Amz-Meta-Walsync-Write-Id": storedID}, "")
		}
		return okResponse()
	}}
	c := fakeClient(t, fake, Config{Endpoint: "http://127.0.0.1:9000"})
	if err := putBytes(c, "k", data); err != nil {
		t.Fatalf("Put whose first answer was lost: got=%v, want nil", err)
	}
	if storedID == "" {
		t.Fatalf("no x-amz-meta-walsync-write-id sent")
	}
	// Another write of the same bytes: its own ID, so the 412 stands,
	// with a retry (the 500 first) and without one.
	for _, first := range []int{0, 1} {
		puts = first
		if err := putBytes(c, "k", data); !errors.Is(err, walsync.ErrExists) {
			t.Fatalf("Put of an existing key (puts before: %d): got=%v, want %v", first, err, walsync.ErrExists)
		}
	}
}

// TestConnectionResetSettled: a server that resets the connection instead
// of answering 412 (MinIO does, for a large conditional PUT of an existing
// key) gives ErrExists, not a network error.
func TestConnectionResetSettled(t *testing.T) {
	fakeEnv(t)
	fake := &fakeS3{handle: func(r request) *http.Response {
		if r.Method == "HEAD" {
			return response(200, map[string]string{"Content-Length": "1", "X-Amz-Meta-Walsync-Write-Id": "someone-else"}, "")
		}
		return okResponse()
	}}
	reset := &resetting{fake}
	c := fakeClient(t, fake, Config{Endpoint: "http://127.0.0.1:9000"})
	c.api = s3api.New(c.api.Options(), func(o *s3api.Options) { o.HTTPClient = reset })
	if err := putBytes(c, "k", []byte("x")); !errors.Is(err, walsync.ErrExists) {
		t.Fatalf("Put with connection resets: got=%v, want %v", err, walsync.ErrExists)
	}
}

// resetting fails every PUT as a reset connection would.
type resetting struct{ *fakeS3 }

func (r *resetting) Do(req *http.Request) (*http.Response, error) {
	if req.Method == "PUT" {
		return nil, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return r.fakeS3.Do(req)
}

func TestErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		resp    func(r request) *http.Response
		op      string
		want    error
		message []string
	}{
		{"no such bucket", func(request) *http.Response {
			return errorResponse(404, "NoSuchBucket", "The specified bucket does not exist")
		}, "put", walsync.ErrBucketNotFound, []string{"put s3://bucket/p/k: ", `bucket "bucket" does not exist at http://127.0.0.1:9000`}},
		{"no such bucket on HEAD", func(request) *http.Response { return response(404, nil, "") },
			"stat", walsync.ErrBucketNotFound, []string{"stat s3://bucket/p/k: ", `bucket "bucket" does not exist`}},
		{"no such key on HEAD", func(r request) *http.Response {
			if r.Path == "/bucket" {
				return response(200, nil, "")
			}
			return response(404, nil, "")
		}, "stat", fs.ErrNotExist, []string{"stat s3://bucket/p/k: no such object"}},
		{"no such key", func(request) *http.Response {
			return errorResponse(404, "NoSuchKey", "The specified key does not exist.")
		}, "get", fs.ErrNotExist, []string{"get s3://bucket/p/k: no such object"}},
		{"invalid access key", func(request) *http.Response {
			return errorResponse(403, "InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records.")
		}, "put", walsync.ErrAccessDenied, []string{"put s3://bucket/p/k: walsync: access denied (InvalidAccessKeyId", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}},
		{"signature", func(request) *http.Response {
			return errorResponse(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		}, "get", walsync.ErrAccessDenied, []string{"SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"}},
		{"403 on HEAD", func(request) *http.Response { return response(403, nil, "") },
			"stat", walsync.ErrAccessDenied, []string{"access denied", "AWS_ACCESS_KEY_ID"}},
		{"checksum", func(request) *http.Response {
			return errorResponse(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
		}, "put", walsync.ErrChecksum, []string{"put s3://bucket/p/k: walsync: checksum mismatch"}},
		{"exists", func(request) *http.Response {
			return errorResponse(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
		}, "put", walsync.ErrExists, []string{"put s3://bucket/p/k: walsync: object already exists"}},
		{"conflict", func(request) *http.Response {
			return errorResponse(409, "ConditionalRequestConflict", "A conflicting conditional operation is currently in progress")
		}, "put", walsync.ErrExists, nil},
		{"other", func(request) *http.Response {
			return errorResponse(400, "InvalidArgument", "multi\nline\nmessage")
		}, "list", nil, []string{"list s3://bucket/p/k: InvalidArgument: multi line message (HTTP 400)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fakeEnv(t)
			c := fakeClient(t, &fakeS3{handle: tt.resp}, Config{Endpoint: "http://127.0.0.1:9000", Prefix: "p"})
			var err error
			switch tt.op {
			case "put":
				err = putBytes(c, "k", []byte("x"))
			case "get":
				_, _, err = c.Get(context.Background(), "k")
			case "stat":
				_, err = c.Stat(context.Background(), "k")
			case "list":
				for _, e := range c.List(context.Background(), "k") {
					err = e
				}
			}
			if err == nil {
				t.Fatalf("got=nil, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got=%v, want %v", err, tt.want)
			}
			msg := err.Error()
			for _, part := range tt.message {
				if !strings.Contains(msg, part) {
					t.Errorf("message %q: want %q in it", msg, part)
				}
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, fakeSecret) {
				t.Errorf("message %q spans lines or holds the secret", msg)
			}
		})
	}
}

func TestNoCredentials(t *testing.T) {
	testenv.Isolate(t)
	c, err := New(context.Background(), Config{Bucket: "b", Endpoint: "http://127.0.0.1:9000",
		HTTPClient: &fakeS3{handle: func(request) *http.Response { return okResponse() }}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stat(context.Background(), "k")
	if !errors.Is(err, walsync.ErrAccessDenied) || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Stat without credentials: got=%v, want a one-line error naming AWS_ACCESS_KEY_ID", err)
	}
	t.Logf("%v", err)
}

func TestNewErrors(t *testing.T) {
	fakeEnv(t)
	for _, cfg := range []Config{
		{},
		{Bucket: "b", Prefix: "a//b"},
		{Bucket: "b", Prefix: "../x"},
		{Bucket: "b", Endpoint: "ftp://x"},
		{Bucket: "b", Endpoint: "http://"},
	} {
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("New(%+v): got=nil, want an error", cfg)
		}
	}
	t.Setenv("AWS_PROFILE", "no-such-profile")
	_, err := New(context.Background(), Config{Bucket: "b"})
	if err == nil || !strings.Contains(err.Error(), "no-such-profile") {
		t.Errorf("New with a missing profile: got=%v, want an error naming it", err)
	}
}

func TestInvalidKeys(t *testing.T) {
	fakeEnv(t)
	fake := &fakeS3{handle: func(request) *http.Response { return okResponse() }}
	c := fakeClient(t, fake, Config{Endpoint: "http://127.0.0.1:9000"})
	for _, key := range []string{"", "/abs", "a//b", "a/", "../x", "a/./b", "tab\tkey"} {
		if err := putBytes(c, key, []byte("x")); err == nil || !strings.Contains(err.Error(), "invalid key") {
			t.Errorf("Put(%q): got=%v, want an invalid key error", key, err)
		}
	}
	if n := len(fake.requests()); n != 0 {
		t.Errorf("requests sent for invalid keys: got=%d, want 0", n)
	}
}

func TestSection(t *testing.T) {
	data := []byte("0123456789")
	type onlySeeker struct{ io.ReadSeeker }
	for _, body := range []io.ReadSeeker{bytes.NewReader(data), onlySeeker{bytes.NewReader(data)}} {
		s := newSection(body, 3, 4)
		got, _ := io.ReadAll(s)
		if string(got) != "3456" {
			t.Errorf("%T read: got=%q, want %q", body, got, "3456")
		}
		if pos, err := s.Seek(1, io.SeekStart); pos != 1 || err != nil {
			t.Errorf("Seek: got=%d %v, want 1 nil", pos, err)
		}
		got, _ = io.ReadAll(s)
		if string(got) != "456" {
			t.Errorf("%T read after Seek: got=%q, want %q", body, got, "456")
		}
		if end, _ := s.Seek(0, io.SeekEnd); end != 4 {
			t.Errorf("Seek end: got=%d, want 4", end)
		}
	}
}

func TestString(t *testing.T) {
	fakeEnv(t)
	for _, tt := range []struct{ prefix, want string }{
		{"", "s3://bucket"}, {"/", "s3://bucket"}, {"p", "s3://bucket/p"}, {"/a/b/", "s3://bucket/a/b"},
	} {
		c := fakeClient(t, &fakeS3{}, Config{Prefix: tt.prefix})
		if got := c.String(); got != tt.want {
			t.Errorf("String with prefix %q: got=%q, want %q", tt.prefix, got, tt.want)
		}
	}
}
