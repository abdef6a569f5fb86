package testenv_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/walsync/walsync/internal/testenv"
)

func TestS3SkipsWithoutServer(t *testing.T) {
	t.Setenv(testenv.EnvEndpoint, "")
	var inner *testing.T
	t.Run("inner", func(t *testing.T) {
		inner = t
		testenv.S3(t)
		t.Error("S3 returned without a server: want a skip")
	})
	if !inner.Skipped() {
		t.Fatalf("Skipped: got=false, want true")
	}
}

func TestBucketName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	seen := map[string]bool{}
	for range 100 {
		name := testenv.BucketName(t)
		if !valid.MatchString(name) {
			t.Fatalf("BucketName: got=%q, want a valid bucket name", name)
		}
		if seen[name] {
			t.Fatalf("BucketName: %q twice", name)
		}
		seen[name] = true
	}
	t.Run("A very long test name, with Spaces and / slashes and more and more", func(t *testing.T) {
		if name := testenv.BucketName(t); !valid.MatchString(name) {
			t.Fatalf("BucketName: got=%q, want a valid bucket name", name)
		}
	})
}

func TestIsolate(t *testing.T) {
	t.Setenv("AWS_PROFILE", "someone")
	t.Run("inner", func(t *testing.T) {
		testenv.Isolate(t)
		if v, ok := lookup("AWS_PROFILE"); ok {
			t.Errorf("AWS_PROFILE: got=%q, want unset", v)
		}
		if v, _ := lookup("AWS_EC2_METADATA_DISABLED"); v != "true" {
			t.Errorf("AWS_EC2_METADATA_DISABLED: got=%q, want true", v)
		}
	})
	if v, _ := lookup("AWS_PROFILE"); v != "someone" {
		t.Errorf("AWS_PROFILE after the test: got=%q, want restored", v)
	}
}

// TestNewBucket: the bucket exists during the test and is gone, contents
// and unfinished uploads included, after it.
func TestNewBucket(t *testing.T) {
	env := testenv.S3(t)
	client := env.Client()
	ctx := context.Background()
	var bucket string
	t.Run("inner", func(t *testing.T) {
		bucket = testenv.NewBucket(t, env)
		for _, key := range []string{"a", "b/c"} {
			if _, err := client.PutObject(ctx, &s3api.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(key),
			}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := client.CreateMultipartUpload(ctx, &s3api.CreateMultipartUploadInput{
			Bucket: aws.String(bucket), Key: aws.String("unfinished"),
		}); err != nil {
			t.Fatal(err)
		}
	})
	_, err := client.HeadBucket(ctx, &s3api.HeadBucketInput{Bucket: aws.String(bucket)})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "NotFound" {
		t.Fatalf("HeadBucket after the test: got=%v, want NotFound", err)
	}
	if err := testenv.RemoveBucket(ctx, client, bucket); err != nil {
		t.Fatalf("RemoveBucket of a missing bucket: got=%v, want nil", err)
	}
}

func lookup(name string) (string, bool) { return os.LookupEnv(name) }
