// Command rawio measures the raw S3 throughput that walsync's figures are
// compared with: one PUT of a file and one GET of the same object, with
// the AWS SDK's defaults and nothing of walsync in the path.
//
//	rawio -endpoint URL -bucket B put FILE KEY
//	rawio -endpoint URL -bucket B get KEY
//	rawio -endpoint URL -bucket B mb
//
// Credentials come from the environment. It prints one line:
// "put|get BYTES SECONDS MiB/s".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	endpoint := flag.String("endpoint", "", "S3 endpoint")
	bucket := flag.String("bucket", "", "bucket")
	flag.Parse()
	if err := run(*endpoint, *bucket, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "rawio:", err)
		os.Exit(1)
	}
}

func run(endpoint, bucket string, args []string) error {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		return err
	}
	client := s3api.NewFromConfig(cfg, func(o *s3api.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	start := time.Now()
	var n int64
	switch {
	case len(args) == 1 && args[0] == "mb":
		_, err := client.CreateBucket(ctx, &s3api.CreateBucketInput{Bucket: &bucket})
		return err
	case len(args) == 3 && args[0] == "put":
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		fi, _ := f.Stat()
		n = fi.Size()
		start = time.Now()
		if _, err := client.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: &args[2], Body: f, ContentLength: &n}); err != nil {
			return err
		}
	case len(args) == 2 && args[0] == "get":
		out, err := client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &bucket, Key: &args[1]})
		if err != nil {
			return err
		}
		n, err = io.Copy(io.Discard, out.Body)
		out.Body.Close()
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("usage: rawio -endpoint URL -bucket B put FILE KEY | get KEY")
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("%s %d %.3f %.1f\n", args[0], n, secs, float64(n)/secs/(1<<20))
	return nil
}
