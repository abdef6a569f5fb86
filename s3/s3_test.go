package s3

// Tests against a real S3 server: the MinIO that `make test` starts
// (scripts/minio.sh run -- go test ./...). Without it they skip.

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/storagetest"
)

// minio returns the test server, with its credentials in the environment
// as a user would set them.
func minio(t *testing.T) testenv.S3Env {
	t.Helper()
	env := testenv.S3(t)
	env.Setenv(t)
	return env
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New(%+v): got=%v, want nil", cfg, err)
	}
	return c
}

func TestConformance(t *testing.T) {
	env := minio(t)
	storagetest.Run(t, func(t *testing.T) walsync.Storage {
		return newClient(t, Config{Bucket: testenv.NewBucket(t, env), Prefix: "backups/prod", Endpoint: env.Endpoint})
	})
}

// TestConformanceMultipart runs the suite with the smallest part size, so
// that the large object goes up in parts.
func TestConformanceMultipart(t *testing.T) {
	env := minio(t)
	storagetest.Run(t, func(t *testing.T) walsync.Storage {
		return newClient(t, Config{Bucket: testenv.NewBucket(t, env), Endpoint: env.Endpoint, PartSize: MinPartSize})
	})
}

// TestServerVerifiesSum: a wrong sum is refused by the server (the signed
// payload hash), not by a check of the client's own.
func TestServerVerifiesSum(t *testing.T) {
	env := minio(t)
	c := newClient(t, Config{Bucket: testenv.NewBucket(t, env), Endpoint: env.Endpoint})
	data := []byte("bytes")
	err := c.Put(context.Background(), "k", bytes.NewReader(data), 5, storagetest.Sum([]byte("other")))
	if !errors.Is(err, walsync.ErrChecksum) || !strings.Contains(err.Error(), "XAmzContentSHA256Mismatch") {
		t.Fatalf("Put with a wrong sum: got=%v, want %v from the server (XAmzContentSHA256Mismatch)", err, walsync.ErrChecksum)
	}
}

// TestMetadataSeenByOthers: another client sees x-amz-meta-sha256 on the
// objects walsync writes, through the SDK and through a plain HTTP GET.
func TestMetadataSeenByOthers(t *testing.T) {
	env := minio(t)
	bucket := testenv.NewBucket(t, env)
	c := newClient(t, Config{Bucket: bucket, Prefix: "p", Endpoint: env.Endpoint})
	data := []byte("snapshot bytes")
	sum := storagetest.Sum(data)
	if err := putBytes(c, "app/snapshots/1.db", data); err != nil {
		t.Fatal(err)
	}
	raw := env.Client()
	ctx := context.Background()
	head, err := raw.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("p/app/snapshots/1.db")})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	if got := head.Metadata["sha256"]; got != sum {
		t.Errorf("HeadObject metadata sha256: got=%q, want %q", got, sum)
	}
	presigned, err := s3api.NewPresignClient(raw).PresignGetObject(ctx, &s3api.GetObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("p/app/snapshots/1.db"),
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(presigned.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if got := resp.Header.Get("X-Amz-Meta-Sha256"); resp.StatusCode != 200 || got != sum || !bytes.Equal(body, data) {
		t.Errorf("GET %s: got=%d x-amz-meta-sha256 %q %q, want 200 %q %q", presigned.URL, resp.StatusCode, got, body, sum, data)
	}
}

func TestBucketMissing(t *testing.T) {
	env := minio(t)
	bucket := testenv.BucketName(t)
	c := newClient(t, Config{Bucket: bucket, Endpoint: env.Endpoint})
	ctx := context.Background()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, walsync.ErrBucketNotFound) {
			t.Errorf("%s: got=%v, want %v", op, err, walsync.ErrBucketNotFound)
			return
		}
		if msg := err.Error(); !strings.Contains(msg, bucket) || !strings.Contains(msg, "does not exist") {
			t.Errorf("%s: message %q does not say that bucket %s does not exist", op, msg, bucket)
		}
	}
	check("Put", putBytes(c, "k", []byte("x")))
	_, _, err := c.Get(ctx, "k")
	check("Get", err)
	_, err = c.Stat(ctx, "k")
	check("Stat", err)
	for _, err := range c.List(ctx, "") {
		check("List", err)
	}
	check("Delete", c.Delete(ctx, "k"))
	check("Prepare", c.Prepare(ctx))
	t.Logf("%v", err)
}

func TestWrongCredentials(t *testing.T) {
	env := minio(t)
	bucket := testenv.NewBucket(t, env)
	const secret = "wR0ngS3cretValue/ThatMustNeverPrint"
	for _, tt := range []struct{ name, id, secret string }{
		{"wrong secret", env.AccessKey, secret},
		{"unknown key id", "AKIAUNKNOWNKEY", secret},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", tt.id)
			t.Setenv("AWS_SECRET_ACCESS_KEY", tt.secret)
			c := newClient(t, Config{Bucket: bucket, Endpoint: env.Endpoint})
			ctx := context.Background()
			var errs []error
			errs = append(errs, putBytes(c, "k", []byte("x")))
			_, _, err := c.Get(ctx, "k")
			errs = append(errs, err)
			_, err = c.Stat(ctx, "k")
			errs = append(errs, err)
			for _, err := range c.List(ctx, "") {
				errs = append(errs, err)
			}
			errs = append(errs, c.Delete(ctx, "k"))
			errs = append(errs, c.Prepare(ctx))
			for i, err := range errs {
				if !errors.Is(err, walsync.ErrAccessDenied) {
					t.Errorf("op %d: got=%v, want %v", i, err, walsync.ErrAccessDenied)
					continue
				}
				msg := err.Error()
				if strings.Contains(msg, secret) || strings.Contains(msg, "wR0ng") {
					t.Errorf("op %d: the secret appears in %q", i, msg)
				}
				if !strings.Contains(msg, "AWS_SECRET_ACCESS_KEY") || strings.Contains(msg, "\n") {
					t.Errorf("op %d: message %q: want one line naming AWS_SECRET_ACCESS_KEY", i, msg)
				}
			}
			t.Logf("%v", errs[0])
		})
	}
}

// TestEndpointBeatsEnvironment: Config.Endpoint (--endpoint) wins over
// AWS_ENDPOINT_URL_S3, and the variable works on its own.
func TestEndpointBeatsEnvironment(t *testing.T) {
	env := minio(t)
	bucket := testenv.NewBucket(t, env)
	t.Setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
	c := newClient(t, Config{Bucket: bucket, Endpoint: env.Endpoint})
	if err := putBytes(c, "via-config", []byte("x")); err != nil {
		t.Fatalf("Put with Config.Endpoint and a bogus AWS_ENDPOINT_URL_S3: got=%v, want nil", err)
	}
	t.Setenv("AWS_ENDPOINT_URL_S3", env.Endpoint)
	c = newClient(t, Config{Bucket: bucket})
	if c.Endpoint() != env.Endpoint {
		t.Errorf("Endpoint from AWS_ENDPOINT_URL_S3: got=%q, want %q", c.Endpoint(), env.Endpoint)
	}
	if _, err := c.Stat(context.Background(), "via-config"); err != nil {
		t.Fatalf("Stat with AWS_ENDPOINT_URL_S3 alone: got=%v, want nil", err)
	}
}

// tlsProxy serves MinIO over TLS with a self-signed certificate and records
// the requests' headers. It returns the proxy's URL and the certificate as
// PEM.
func tlsProxy(t *testing.T, target string) (string, []byte, func() []http.Header) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []http.Header
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv.URL, cert, func() []http.Header {
		mu.Lock()
		defer mu.Unlock()
		return append([]http.Header(nil), seen...)
	}
}

// TestCABundle: AWS_CA_BUNDLE does not break start-up (Litestream v0.5.18
// failed there) and is really used: MinIO behind a TLS proxy with a
// self-signed certificate works with the bundle, and fails without it.
// Over TLS the payload is still signed (no UNSIGNED-PAYLOAD).
func TestCABundle(t *testing.T) {
	env := minio(t)
	bucket := testenv.NewBucket(t, env)
	proxyURL, cert, seen := tlsProxy(t, env.Endpoint)
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	data := []byte("over tls")

	t.Run("without bundle", func(t *testing.T) {
		c := newClient(t, Config{Bucket: bucket, Endpoint: proxyURL})
		err := putBytes(c, "k", data)
		if err == nil || !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Put over TLS to an unknown CA: got=%v, want a one-line certificate error", err)
		}
		t.Logf("%v", err)
	})
	t.Run("with bundle", func(t *testing.T) {
		t.Setenv("AWS_CA_BUNDLE", bundle)
		c := newClient(t, Config{Bucket: bucket, Endpoint: proxyURL})
		if err := putBytes(c, "k", data); err != nil {
			t.Fatalf("Put over TLS with AWS_CA_BUNDLE: got=%v, want nil", err)
		}
		rc, info, err := c.Get(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) || info.SHA256 != storagetest.Sum(data) {
			t.Fatalf("Get: got=%q %s, want %q %s", got, info.SHA256, data, storagetest.Sum(data))
		}
		var puts int
		for _, h := range seen() {
			if h.Get("X-Amz-Meta-Sha256") != "" {
				puts++
				if got := h.Get("X-Amz-Content-Sha256"); got != storagetest.Sum(data) {
					t.Errorf("PUT over TLS x-amz-content-sha256: got=%q, want %q", got, storagetest.Sum(data))
				}
			}
		}
		if puts != 1 {
			t.Errorf("PUTs seen by the proxy: got=%d, want 1", puts)
		}
	})
	t.Run("with bundle, plain http", func(t *testing.T) {
		t.Setenv("AWS_CA_BUNDLE", bundle)
		c := newClient(t, Config{Bucket: bucket, Endpoint: env.Endpoint})
		if _, err := c.Stat(context.Background(), "k"); err != nil {
			t.Fatalf("Stat over http with AWS_CA_BUNDLE set: got=%v, want nil", err)
		}
	})
}

func TestMultipart(t *testing.T) {
	env := minio(t)
	bucket := testenv.NewBucket(t, env)
	c := newClient(t, Config{Bucket: bucket, Prefix: "p", Endpoint: env.Endpoint, PartSize: MinPartSize})
	ctx := context.Background()
	data := make([]byte, 2*MinPartSize+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	sum := storagetest.Sum(data)

	// Through a body that is not an io.ReaderAt: parts seek it.
	type onlySeeker struct{ io.ReadSeeker }
	if err := c.Put(ctx, "big", onlySeeker{bytes.NewReader(data)}, int64(len(data)), sum); err != nil {
		t.Fatalf("multipart Put: got=%v, want nil", err)
	}
	raw := env.Client()
	head, err := raw.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("p/big")})
	if err != nil {
		t.Fatal(err)
	}
	if etag := aws.ToString(head.ETag); !strings.HasSuffix(etag, `-3"`) {
		t.Errorf("ETag: got=%s, want a 3-part upload", etag)
	}
	if got := head.Metadata["sha256"]; got != sum {
		t.Errorf("metadata sha256: got=%q, want %q", got, sum)
	}
	rc, info, err := c.Get(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) || info.SHA256 != sum {
		t.Fatalf("Get: got=%d bytes %s, want %d bytes %s", len(got), info.SHA256, len(data), sum)
	}

	if err := c.Put(ctx, "big", bytes.NewReader(data), int64(len(data)), sum); !errors.Is(err, walsync.ErrExists) {
		t.Errorf("multipart Put of an existing key: got=%v, want %v", err, walsync.ErrExists)
	}
	if err := c.Put(ctx, "bad", bytes.NewReader(data), int64(len(data)), storagetest.Sum(nil)); !errors.Is(err, walsync.ErrChecksum) {
		t.Errorf("multipart Put with a wrong sum: got=%v, want %v", err, walsync.ErrChecksum)
	}
	if _, err := c.Stat(ctx, "bad"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after a failed multipart Put: got=%v, want %v", err, fs.ErrNotExist)
	}

	// Two uploads racing for one key: CompleteMultipartUpload's
	// If-None-Match lets one win.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			body := bytes.Clone(data)
			body[0] = byte(i)
			errs[i] = c.Put(ctx, "race", bytes.NewReader(body), int64(len(body)), storagetest.Sum(body))
		})
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Errorf("racing multipart Puts: got=%v and %v, want exactly one nil", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, walsync.ErrExists) {
			t.Errorf("losing multipart Put: got=%v, want %v", err, walsync.ErrExists)
		}
	}

	uploads, err := raw.ListMultipartUploads(ctx, &s3api.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(uploads.Uploads) != 0 {
		t.Errorf("unfinished multipart uploads: got=%d, want 0 (aborted)", len(uploads.Uploads))
	}
}

// TestUnreachable: an endpoint nobody listens on fails quickly, in one
// line naming it.
func TestUnreachable(t *testing.T) {
	testenv.Isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-not-to-print")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close()
	c := newClient(t, Config{Bucket: "bucket", Endpoint: endpoint})
	start := time.Now()
	err = putBytes(c, "k", []byte("x"))
	elapsed := time.Since(start)
	t.Logf("Put to a closed port failed after %v: %v", elapsed.Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Put to a closed port: got=%v, want a one-line error naming %s", err, l.Addr())
	}
	if strings.Contains(err.Error(), "secret-not-to-print") {
		t.Fatalf("the secret appears in %q", err)
	}
	if elapsed > 30*time.Second {
		t.Errorf("Put to a closed port took %v, want well under 30 s", elapsed)
	}
}

// TestSharedTransport: clients share one HTTP transport.
func TestSharedTransport(t *testing.T) {
	fakeEnv(t)
	a := newClient(t, Config{Bucket: "a", Endpoint: "http://127.0.0.1:9000"})
	b := newClient(t, Config{Bucket: "b", Endpoint: "http://127.0.0.1:9001"})
	if a.api.Options().HTTPClient != sharedHTTPClient || b.api.Options().HTTPClient != sharedHTTPClient {
		t.Fatalf("clients do not share the transport: %p %p, want %p", a.api.Options().HTTPClient, b.api.Options().HTTPClient, sharedHTTPClient)
	}
}
