package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/backend"
)

// environment is what every command writes to.
type environment struct {
	stdout, stderr io.Writer
}

// storageFlags are the flags every command that touches a bucket shares.
type storageFlags struct {
	bucket    string
	endpoint  string
	region    string
	verbose   bool
	logFormat string
}

func (f *storageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.bucket, "b", "", "bucket URL: s3://bucket[/prefix] or file:///path (also --bucket)")
	fs.StringVar(&f.bucket, "bucket", "", "bucket URL (same as -b)")
	fs.StringVar(&f.endpoint, "endpoint", "", "S3 endpoint URL (wins over AWS_ENDPOINT_URL_S3)")
	fs.StringVar(&f.region, "region", "", "S3 region (default: AWS_REGION, profile, or us-east-1)")
	fs.BoolVar(&f.verbose, "v", false, "verbose: debug logs")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
}

// open checks the flags and opens the bucket.
func (f *storageFlags) open(ctx context.Context) (walsync.Storage, error) {
	if f.bucket == "" {
		return nil, usagef("missing -b BUCKET (s3://bucket[/prefix] or file:///path)")
	}
	return backend.Open(ctx, f.bucket, backend.Options{Endpoint: f.endpoint, Region: f.region})
}

// logger builds the structured logger: info (debug with -v) on stderr.
func (f *storageFlags) logger(env *environment, quietLevel slog.Level) (*slog.Logger, error) {
	level := quietLevel
	if f.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text", "":
		return slog.New(slog.NewTextHandler(env.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.stderr, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", f.logFormat)
}

// newFlagSet makes a flag set that returns errors instead of exiting and
// prints its usage to stderr only when asked with -h.
func newFlagSet(env *environment, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: walsync %s\n\nFlags:\n", synopsis)
		fs.SetOutput(env.stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseArgs parses flags placed before, between or after positional
// arguments (walsync watch a.db b.db -b s3://x), as users of the AWS CLI
// and Litestream expect. Everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		rest := args
		dashdash := -1
		for i, a := range rest {
			if a == "--" {
				dashdash = i
				break
			}
		}
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err // flag has printed the usage already
			}
			msg := err.Error()
			if f, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
				msg = "unknown flag " + f
			}
			return nil, usagef("%s", msg)
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		// fs.Parse stopped at a positional argument or just after "--".
		consumed := len(rest) - len(args)
		if dashdash >= 0 && consumed == dashdash+1 {
			return append(positional, args...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}
