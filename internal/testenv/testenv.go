// Package testenv gives tests the real S3 server they run against.
//
// `make test` (or `scripts/minio.sh run -- go test ./...`) starts a
// throw-away MinIO on loopback and exports its address and root credentials
// as WALSYNC_TEST_S3_ENDPOINT, WALSYNC_TEST_S3_ACCESS_KEY and
// WALSYNC_TEST_S3_SECRET_KEY. S3 reads them; without them it skips the test
// with a message saying how to run it.
//
// NewBucket gives each test a bucket of its own, so tests that create
// buckets never see each other's objects, and removes it afterwards.
//
// This package talks to the server with the raw AWS SDK, on purpose: it checks
// walsync's s3 package from the outside (as another client would see the
// bucket), so it must not use it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Environment variables set by scripts/minio.sh run.
const (
	EnvEndpoint  = "WALSYNC_TEST_S3_ENDPOINT"
	EnvAccessKey = "WALSYNC_TEST_S3_ACCESS_KEY"
	EnvSecretKey = "WALSYNC_TEST_S3_SECRET_KEY"
)

// SkipMessage is what S3 skips with when no server is configured.
const SkipMessage = "S3 tests need MinIO: run `make test` (or scripts/minio.sh run -- go test ./...)"

// Region is the region test clients sign for; MinIO accepts any.
const Region = "us-east-1"

// S3Env is a running S3 server and its root credentials.
type S3Env struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string
}

// S3 returns the test S3 server, or skips the test when there is none.
func S3(t testing.TB) S3Env {
	t.Helper()
	env := S3Env{
		Endpoint:  os.Getenv(EnvEndpoint),
		AccessKey: os.Getenv(EnvAccessKey),
		SecretKey: os.Getenv(EnvSecretKey),
		Region:    Region,
	}
	if env.Endpoint == "" || env.AccessKey == "" || env.SecretKey == "" {
		t.Skip(SkipMessage)
	}
	return env
}

// Setenv points the AWS environment of this test process at env, the way a
// user would configure the walsync CLI: AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_REGION. It isolates the test from the
// machine's own AWS set-up (config files, profiles, session token, endpoint
// variables, EC2 metadata), restoring everything when the test ends. Like
// t.Setenv it cannot be used in parallel tests. The endpoint itself is not
// set: pass env.Endpoint as the --endpoint, or set AWS_ENDPOINT_URL_S3.
func (env S3Env) Setenv(t testing.TB) {
	t.Helper()
	Isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", env.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", env.SecretKey)
	t.Setenv("AWS_REGION", env.Region)
}

// Isolate clears the AWS configuration that the machine running the test
// might carry (profiles, credentials, endpoints, CA bundle) and turns off
// the EC2 metadata service, so that no test reaches a real AWS account or
// any address off this machine. Values come back when the test ends.
func Isolate(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION",
	} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "aws-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// Client returns a raw AWS SDK client for env, path-style, with static
// credentials and no retries beyond the SDK's defaults. It ignores the
// process environment entirely.
func (env S3Env) Client() *s3api.Client {
	return s3api.New(s3api.Options{
		Region:       env.Region,
		BaseEndpoint: aws.String(env.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, ""),
	})
}

// NewBucket creates a fresh bucket with a unique name on env's server and
// returns its name. The bucket and everything in it (objects and unfinished
// multipart uploads) is removed when the test ends.
func NewBucket(t testing.TB, env S3Env) string {
	t.Helper()
	client := env.Client()
	name := BucketName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.CreateBucket(ctx, &s3api.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create test bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := RemoveBucket(ctx, client, name); err != nil {
			t.Errorf("remove test bucket %s: %v", name, err)
		}
	})
	return name
}

// BucketName returns a unique, valid bucket name for t, such as
// "walsync-testputget-1a2b3c4d5e6f". It creates nothing.
func BucketName(t testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 30 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	var random [6]byte
	_, _ = rand.Read(random[:])
	return "walsync-" + b.String() + "-" + hex.EncodeToString(random[:])
}

// RemoveBucket deletes every object and unfinished multipart upload in
// bucket, then the bucket. A bucket that is already gone is not an error.
func RemoveBucket(ctx context.Context, client *s3api.Client, bucket string) error {
	uploads, err := client.ListMultipartUploads(ctx, &s3api.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if isCode(err, "NoSuchBucket") {
		return nil
	}
	if err != nil {
		return err
	}
	for _, u := range uploads.Uploads {
		_, _ = client.AbortMultipartUpload(ctx, &s3api.AbortMultipartUploadInput{
			Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId,
		})
	}
	pages := s3api.NewListObjectsV2Paginator(client, &s3api.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]types.ObjectIdentifier, 0, len(page.Contents))
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		out, err := client.DeleteObjects(ctx, &s3api.DeleteObjectsInput{
			Bucket: aws.String(bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return err
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return errors.New("delete " + aws.ToString(e.Key) + ": " + aws.ToString(e.Code) + ": " + aws.ToString(e.Message))
		}
	}
	_, err = client.DeleteBucket(ctx, &s3api.DeleteBucketInput{Bucket: aws.String(bucket)})
	if isCode(err, "NoSuchBucket") {
		return nil
	}
	return err
}

func isCode(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}
