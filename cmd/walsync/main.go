// Command walsync replicates SQLite databases to S3-compatible storage or a
// local directory and restores them byte for byte. Each subcommand lives in
// its own file with its own command type; main only maps errors to exit
// codes and guarantees that no Go stack trace reaches the user.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	// One glibc malloc arena for the whole process (see the package).
	_ "github.com/walsync/walsync/internal/mallocarena"
	"github.com/walsync/walsync/internal/sqlitemem"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitInternal = 70
)

const usage = `walsync replicates SQLite databases to S3 or a local directory.

Usage:
  walsync watch <DB>... -b <BUCKET> [--snapshot-interval SECS]
  walsync snapshot <DB> -b <BUCKET> [--name NAME]
  walsync list -b <BUCKET> [--json]
  walsync restore <NAME> -o <OUTPUT> -b <BUCKET> [--point-in-time TIME] [--force]
  walsync verify -b <BUCKET> [NAME...] [--json]
  walsync version

BUCKET is s3://bucket[/prefix] or file:///abs/path (file://./dir is relative).
Common flags: --endpoint URL, --region REGION, -v (debug logs), --log-format text|json.
Credentials come from the environment as the AWS CLI reads them.
Run 'walsync <command> -h' for a command's flags.
`

// command is one subcommand.
type command interface {
	Run(ctx context.Context, args []string) error
}

func main() {
	// Small SQLite connections: watch keeps two per database. Must run
	// before anything opens a database.
	if err := sqlitemem.Configure(); err != nil {
		fmt.Fprintf(os.Stderr, "walsync: configure SQLite: %v\n", err)
		os.Exit(exitInternal)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "walsync: internal error: %v (please report it)\n", r)
			code = exitInternal
		}
	}()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var cmd command
	env := &environment{stdout: stdout, stderr: stderr}
	switch args[0] {
	case "watch":
		cmd = &WatchCommand{env: env}
	case "snapshot":
		cmd = &SnapshotCommand{env: env}
	case "list":
		cmd = &ListCommand{env: env}
	case "restore":
		cmd = &RestoreCommand{env: env}
	case "verify":
		cmd = &VerifyCommand{env: env}
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "walsync", version)
		return exitOK
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "walsync: unknown command %q\nRun 'walsync help' for usage.\n", args[0])
		return exitUsage
	}
	err := cmd.Run(ctx, args[1:])
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "walsync %s: %s\nRun 'walsync %s -h' for usage.\n", args[0], oneLine(ue.msg), args[0])
		return exitUsage
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintln(stderr, "walsync: interrupted")
		return exitError
	default:
		// Sentinel errors carry a "walsync: " prefix of their own; one is enough.
		fmt.Fprintf(stderr, "walsync: %s\n", strings.ReplaceAll(oneLine(err.Error()), "walsync: ", ""))
		return exitError
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
