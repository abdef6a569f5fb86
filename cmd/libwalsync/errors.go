package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/restore"
)

// Error kinds (see the package doc).
const (
	kindChecksum  = "checksum"
	kindIntegrity = "integrity"
	kindNotFound  = "not_found"
	kindExists    = "exists"
	kindConfig    = "config"
	kindOther     = "other"
)

// configError marks a bad argument, as the CLI's usageError does.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func configErrorf(format string, a ...any) error {
	return configError{fmt.Errorf(format, a...)}
}

// classify gives err its kind and its message: the one line the CLI
// prints after "walsync: ".
func classify(err error) *errorInfo {
	var ce configError
	kind := kindOther
	switch {
	case errors.Is(err, walsync.ErrChecksum), errors.Is(err, walsync.ErrNoChecksum):
		kind = kindChecksum
	case errors.Is(err, restore.ErrGap), errors.Is(err, walsync.ErrFormat):
		kind = kindIntegrity
	case errors.Is(err, walsync.ErrNotExist), errors.Is(err, walsync.ErrBucketNotFound),
		errors.Is(err, restore.ErrBeforeFirst), errors.Is(err, restore.ErrTimeGap):
		kind = kindNotFound
	case errors.Is(err, restore.ErrOutputExists):
		kind = kindExists
	case errors.As(err, &ce), errors.Is(err, walsync.ErrInvalidName), errors.Is(err, walsync.ErrAccessDenied):
		kind = kindConfig
	}
	return &errorInfo{Kind: kind, Message: message(err)}
}

// message is err on one line, without the "walsync: " prefixes of the
// sentinel errors (the CLI prints one in front; Python's exception class
// names the package).
func message(err error) string {
	s := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
	return strings.ReplaceAll(s, "walsync: ", "")
}
