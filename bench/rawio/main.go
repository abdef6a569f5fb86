// Command rawio measures the raw S3 throughput that walsync's figures are
// compared with: one PUT of a file, one GET of an object, or a GET of every
// object under a prefix, with the AWS SDK's defaults and nothing of walsync
// in the path (no checksum, no decoding: the bytes go to io.Discard).
//
//	rawio -endpoint URL -bucket B put FILE KEY
//	rawio -endpoint URL -bucket B get KEY
//	rawio -endpoint URL -bucket B getall PREFIX [-parallel N]
//	rawio -endpoint URL -bucket B mb
//
// getall lists PREFIX and GETs every object under it, N at a time (default
// 1: one after the other), in listing order; the time includes the listing.
// Credentials come from the environment. It prints one line:
// "put|get BYTES SECONDS MiB/s", or "getall BYTES SECONDS MiB/s OBJECTS".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
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

const usage = "usage: rawio -endpoint URL -bucket B put FILE KEY | get KEY | getall PREFIX [-parallel N] | mb"

func run(endpoint, bucket string, args []string) error {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		return err
	}
	client := s3api.NewFromConfig(cfg, func(o *s3api.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		// No checksum is validated either way (walsync's objects carry
		// none the SDK knows); this only silences the SDK saying so.
		o.DisableLogOutputChecksumValidationSkipped = true
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
		if n, err = get(ctx, client, bucket, args[1]); err != nil {
			return err
		}
	case len(args) >= 2 && args[0] == "getall":
		fs := flag.NewFlagSet("getall", flag.ContinueOnError)
		parallel := fs.Int("parallel", 1, "objects read at once")
		if err := fs.Parse(args[2:]); err != nil || fs.NArg() != 0 || *parallel < 1 {
			return fmt.Errorf("%s", usage)
		}
		objects, bytes, err := getAll(ctx, client, bucket, args[1], *parallel)
		if err != nil {
			return err
		}
		secs := time.Since(start).Seconds()
		fmt.Printf("getall %d %.3f %.1f %d\n", bytes, secs, float64(bytes)/secs/(1<<20), objects)
		return nil
	default:
		return fmt.Errorf("%s", usage)
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("%s %d %.3f %.1f\n", args[0], n, secs, float64(n)/secs/(1<<20))
	return nil
}

// get reads one object to its end and returns its length.
func get(ctx context.Context, client *s3api.Client, bucket, key string) (int64, error) {
	out, err := client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	defer out.Body.Close()
	n, err := io.Copy(io.Discard, out.Body)
	if err != nil {
		return n, fmt.Errorf("get %s: %w", key, err)
	}
	return n, nil
}

// getAll lists prefix and reads every object under it, parallel at a time,
// in listing order.
func getAll(ctx context.Context, client *s3api.Client, bucket, prefix string, parallel int) (objects int, total int64, err error) {
	var keys []string
	pages := s3api.NewListObjectsV2Paginator(client, &s3api.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	if len(keys) == 0 {
		return 0, 0, fmt.Errorf("nothing under %s", prefix)
	}
	var (
		next  atomic.Int64
		bytes atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range min(parallel, len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					return
				}
				n, err := get(ctx, client, bucket, keys[i])
				bytes.Add(n)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return len(keys), bytes.Load(), first
}
