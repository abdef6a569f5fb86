// Package backend opens a walsync.Storage from a bucket URL, the -b of
// every command:
//
//	s3://bucket[/prefix]   S3-compatible storage (package s3)
//	file:///abs/path       a local directory (package file)
//	file://./rel/path      a directory relative to the working directory
//	file://rel/path        the same
//
// It is the one place that knows both backends; they never import each
// other.
package backend

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/file"
	"github.com/walsync/walsync/s3"
)

// Options configure the S3 backend; the file backend ignores them.
type Options struct {
	// Endpoint is the S3 endpoint URL (--endpoint); it wins over
	// AWS_ENDPOINT_URL_S3.
	Endpoint string
	// Region overrides AWS_REGION and the profile's region.
	Region string
}

const hint = "use s3://bucket[/prefix] or file:///path"

// Open returns the storage that rawURL names.
func Open(ctx context.Context, rawURL string, opts Options) (walsync.Storage, error) {
	u, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "file":
		return file.New(u.Path)
	default:
		return s3.New(ctx, s3.Config{Bucket: u.Bucket, Prefix: u.Prefix, Endpoint: opts.Endpoint, Region: opts.Region})
	}
}

// URL is a parsed bucket URL.
type URL struct {
	Scheme string // "s3" or "file"
	Bucket string // s3: the bucket name
	Prefix string // s3: the key prefix, without leading or trailing '/'
	Path   string // file: the directory, as given (absolute or relative)
}

// Parse checks a bucket URL and splits it into its parts.
func Parse(rawURL string) (URL, error) {
	shown := redact(rawURL)
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return URL{}, fmt.Errorf("bucket %q has no scheme: %s", shown, hint)
	}
	switch strings.ToLower(scheme) {
	case "file":
		if rest == "" {
			return URL{}, fmt.Errorf("bucket %q has no directory: %s", shown, hint)
		}
		if strings.ContainsAny(rest, "?#") {
			return URL{}, fmt.Errorf("bucket %q: a file bucket takes no query or fragment: %s", shown, hint)
		}
		if strings.ContainsFunc(rest, isControl) {
			return URL{}, fmt.Errorf("bucket %q: control character in path", shown)
		}
		// file:///abs keeps its leading '/'; file://./rel and file://rel
		// are relative to the working directory.
		return URL{Scheme: "file", Path: filepath.Clean(filepath.FromSlash(rest))}, nil
	case "s3":
		u, err := url.Parse(rawURL)
		if err != nil {
			return URL{}, fmt.Errorf("bucket %q: %s: %s", shown, parseError(err), hint)
		}
		if u.User != nil {
			return URL{}, errors.New("bucket URL must not carry credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return URL{}, fmt.Errorf("bucket %q: an s3 bucket takes no query or fragment: %s", shown, hint)
		}
		if u.Host == "" {
			return URL{}, fmt.Errorf("bucket %q has an empty bucket name: %s", shown, hint)
		}
		if strings.ContainsAny(u.Host, ":") {
			return URL{}, fmt.Errorf("bucket %q: %q is not a bucket name (an endpoint goes in --endpoint)", shown, u.Host)
		}
		prefix := strings.Trim(u.Path, "/")
		for part := range strings.SplitSeq(prefix, "/") {
			if prefix != "" && (part == "" || part == "." || part == "..") {
				return URL{}, fmt.Errorf("bucket %q: invalid prefix %q", shown, prefix)
			}
		}
		if strings.ContainsFunc(prefix, isControl) {
			return URL{}, fmt.Errorf("bucket %q: control character in prefix", shown)
		}
		return URL{Scheme: "s3", Bucket: u.Host, Prefix: prefix}, nil
	default:
		return URL{}, fmt.Errorf("unknown bucket scheme %q in %q: %s", scheme, shown, hint)
	}
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// redact hides a password in rawURL, for messages.
func redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		return u.Redacted()
	}
	if i := strings.Index(rawURL, "@"); i >= 0 && strings.Contains(rawURL[:i], ":") {
		if j := strings.Index(rawURL, "://"); j >= 0 && j < i {
			return rawURL[:j+3] + "xxxxx" + rawURL[i:]
		}
	}
	return rawURL
}

func parseError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
