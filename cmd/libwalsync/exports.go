package main

// The C functions (see the package doc). Each one converts its arguments,
// runs the Go function of the same name in api.go or watch.go inside call
// (which recovers panics) and returns the envelope in C memory.

/*
#include <stdlib.h>
*/
import "C"

import (
	"encoding/json"
	"unsafe"
)

// export runs fn as call does and returns the envelope as C memory for
// the caller to free with walsync_free.
func export(fn func(s *sink) (any, error)) *C.char {
	e := call(fn)
	b, err := json.Marshal(e)
	if err != nil {
		b, _ = json.Marshal(envelope{Error: &errorInfo{Kind: kindOther, Message: "encode result: " + err.Error()}})
	}
	return C.CString(string(b))
}

// arg converts a C string argument; NULL is a configuration error naming
// the argument (the first one found is kept in *err).
func arg(p *C.char, what string, err *error) string {
	if p == nil {
		if *err == nil {
			*err = configErrorf("%s is NULL", what)
		}
		return ""
	}
	return C.GoString(p)
}

// optArg converts an optional C string argument: NULL is "".
func optArg(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

//export walsync_free
func walsync_free(p *C.char) {
	C.free(unsafe.Pointer(p))
}

//export walsync_version
func walsync_version() *C.char {
	return export(func(*sink) (any, error) { return versionInfoNow(), nil })
}

//export walsync_check
func walsync_check(config *C.char) *C.char {
	return export(func(s *sink) (any, error) {
		var err error
		cfg := arg(config, "config", &err)
		if err != nil {
			return nil, err
		}
		return check(s, cfg)
	})
}

//export walsync_snapshot
func walsync_snapshot(config, path, name *C.char) *C.char {
	return export(func(s *sink) (any, error) {
		var err error
		cfg, p, n := arg(config, "config", &err), arg(path, "path", &err), optArg(name)
		if err != nil {
			return nil, err
		}
		return snapshot(s, cfg, p, n)
	})
}

//export walsync_list
func walsync_list(config *C.char) *C.char {
	return export(func(s *sink) (any, error) {
		var err error
		cfg := arg(config, "config", &err)
		if err != nil {
			return nil, err
		}
		return list(s, cfg)
	})
}

//export walsync_restore
func walsync_restore(config, name, output, options *C.char) *C.char {
	return export(func(s *sink) (any, error) {
		var err error
		cfg, n, out := arg(config, "config", &err), arg(name, "name", &err), arg(output, "output", &err)
		if err != nil {
			return nil, err
		}
		return restoreDB(s, cfg, n, out, optArg(options))
	})
}

//export walsync_watch_start
func walsync_watch_start(config, options *C.char) *C.char {
	return export(func(s *sink) (any, error) {
		var err error
		cfg, opts := arg(config, "config", &err), arg(options, "options", &err)
		if err != nil {
			return nil, err
		}
		return watchStart(s, cfg, opts)
	})
}

//export walsync_watch_poll
func walsync_watch_poll(handle C.longlong, timeoutMs C.int) *C.char {
	return export(func(s *sink) (any, error) { return watchPoll(s, int64(handle), int(timeoutMs)) })
}

//export walsync_watch_stop
func walsync_watch_stop(handle C.longlong) *C.char {
	return export(func(s *sink) (any, error) { return watchStop(s, int64(handle)) })
}

//export walsync_vfs_register
func walsync_vfs_register(config, options *C.char) *C.char {
	return export(func(s *sink) (any, error) {
		return vfsRegister(s, optArg(config), optArg(options))
	})
}

//export walsync_vfs_logs
func walsync_vfs_logs(timeoutMs C.int) *C.char {
	return export(func(s *sink) (any, error) { return vfsLogsPoll(s, int(timeoutMs)) })
}
