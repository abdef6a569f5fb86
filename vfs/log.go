package vfs

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"unsafe"
)

// SQLite result codes the VFS reports with (sqlite3.h).
const (
	sqliteOK       = 0
	sqliteError    = 1
	sqliteInternal = 2
	sqliteIOErr    = 10
	sqliteCantOpen = 14
	sqliteWarning  = 28
)

// rcKey is the attribute that gives a record's SQLite result code for
// sqlite3_log (default: SQLITE_WARNING for warnings, SQLITE_ERROR for
// errors).
const rcKey = "sqlite_rc"

// sqliteLogHandler passes every warning and error to sqlite3_log, so that
// they reach the application's SQLITE_CONFIG_LOG callback with an SQLite
// result code, as SQLite's own errors do, and then to the logger the
// application gave (Options.Logger), or the default one.
type sqliteLogHandler struct {
	next  slog.Handler
	attrs []slog.Attr
}

func (h *sqliteLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *sqliteLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		code := sqliteWarning
		if r.Level >= slog.LevelError {
			code = sqliteError
		}
		var b strings.Builder
		b.WriteString("walsync: ")
		b.WriteString(r.Message)
		add := func(a slog.Attr) bool {
			if a.Key == rcKey {
				if a.Value.Kind() == slog.KindInt64 {
					code = int(a.Value.Int64())
				}
				return true
			}
			fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
			return true
		}
		for _, a := range h.attrs {
			add(a)
		}
		r.Attrs(add)
		sqliteLog(code, b.String())
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *sqliteLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sqliteLogHandler{next: h.next.WithAttrs(as), attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *sqliteLogHandler) WithGroup(name string) slog.Handler {
	return &sqliteLogHandler{next: h.next.WithGroup(name), attrs: h.attrs}
}

// sqliteLog calls sqlite3_log(code, "%s", msg). SQLite cuts what it
// passes to the callback at about 200 bytes: the message comes first.
func sqliteLog(code int, msg string) {
	cs := C.CString(msg)
	defer C.free(unsafe.Pointer(cs))
	C.walsync_shim_log(C.int(code), cs)
}

// newLogger is the VFS's logger over base: base (Options.Logger), or text
// on stderr at WALSYNC_LOG_LEVEL (default warn); warnings and errors also
// go to sqlite3_log.
func newLogger(base *slog.Logger) *slog.Logger {
	if base == nil {
		level := slog.LevelWarn
		switch strings.ToLower(os.Getenv("WALSYNC_LOG_LEVEL")) {
		case "debug":
			level = slog.LevelDebug
		case "info":
			level = slog.LevelInfo
		case "error":
			level = slog.LevelError
		}
		base = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "walsync-vfs")
	}
	return slog.New(&sqliteLogHandler{next: base.Handler()})
}

var (
	defaultLogOnce sync.Once
	defaultLog     *slog.Logger
)

// defaultLogger is the logger of the environment, for what happens before
// a database's options are known.
func defaultLogger() *slog.Logger {
	defaultLogOnce.Do(func() { defaultLog = newLogger(nil) })
	return defaultLog
}

// openLogger is the logger of Register's options (or the default one),
// for an open that failed before the database's own options were read.
func openLogger() *slog.Logger {
	regMu.Lock()
	l := defaults.Logger
	regMu.Unlock()
	if l == nil {
		return defaultLogger()
	}
	return newLogger(l)
}

// logFailure logs what failed at ERROR, with the SQLite result code
// sqlite3_log gets.
func logFailure(log *slog.Logger, code int, msg string, err error) {
	log.Error(msg, "err", err, rcKey, code)
}
