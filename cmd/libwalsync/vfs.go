package main

import (
	"time"

	"github.com/walsync/walsync/backend"
	"github.com/walsync/walsync/vfs"
)

// vfsOptions are the options of walsync_vfs_register.
type vfsOptions struct {
	Sync         bool     `json:"sync"`
	SyncInterval *float64 `json:"sync_interval"` // seconds; null: 1
	SyncTimeout  *float64 `json:"sync_timeout"`  // seconds; null: 10 (vfs.DefaultSyncTimeout)
	CloseTimeout *float64 `json:"close_timeout"` // seconds; null: 10
}

// optSeconds converts an optional duration in seconds: null is 0 (the
// VFS's default); 0 itself is "none" (-1) where allow0 says it may be.
func optSeconds(what string, p *float64, allow0 bool) (time.Duration, error) {
	if p == nil {
		return 0, nil
	}
	d, err := seconds(what, *p)
	if err != nil {
		return 0, err
	}
	if d == 0 {
		if !allow0 {
			return 0, configErrorf("%s must be positive", what)
		}
		return -1, nil
	}
	return d, nil
}

// vfsRegister makes the walsync VFS available to the SQLite of this
// process (the one the library links), with the bucket, endpoint and
// region of cfgJSON as defaults for databases whose URI names none.
func vfsRegister(s *sink, cfgJSON, options string) (any, error) {
	var cfg config
	if cfgJSON != "" {
		if err := decodeJSON(cfgJSON, "config", &cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Env != nil {
		syncEnv(*cfg.Env)
	}
	if cfg.Bucket != "" {
		if _, err := backend.Parse(cfg.Bucket); err != nil {
			return nil, configErrorf("%v", err)
		}
	}
	var o vfsOptions
	if options != "" {
		if err := decodeJSON(options, "options", &o); err != nil {
			return nil, err
		}
	}
	syncInterval, err := optSeconds("sync_interval", o.SyncInterval, true)
	if err != nil {
		return nil, err
	}
	syncTimeout, err := optSeconds("sync_timeout", o.SyncTimeout, false)
	if err != nil {
		return nil, err
	}
	closeTimeout, err := optSeconds("close_timeout", o.CloseTimeout, false)
	if err != nil {
		return nil, err
	}
	level := defaultLevel
	if cfg.LogLevel != "" {
		if level, err = parseLevel(cfg.LogLevel); err != nil {
			return nil, err
		}
	}
	vfsLogs.setLevel(level)
	if err := vfs.Register(vfs.Options{
		Bucket: cfg.Bucket, Endpoint: cfg.Endpoint, Region: cfg.Region, Sync: o.Sync,
		SyncInterval: syncInterval, SyncTimeout: syncTimeout, CloseTimeout: closeTimeout,
		Logger: vfsLogs.logger(),
	}); err != nil {
		return nil, err
	}
	return map[string]string{"vfs": vfs.Name, "base": vfs.BaseVFS(), "sqlite": sqliteMode}, nil
}

// vfsLogs keeps what the VFS logs until the host takes it
// (walsync_vfs_logs): the Python package forwards it to its logging, so
// the VFS's warnings and errors reach the application's logging, not
// stderr.
var vfsLogs = newSink(defaultLevel, 1000)

// vfsLogsPoll waits up to timeoutMs for a record of the VFS and returns
// what was kept (in the envelope's logs).
func vfsLogsPoll(s *sink, timeoutMs int) (any, error) {
	vfsLogs.await(timeoutMs, nil)
	s.absorb(vfsLogs)
	return map[string]any{}, nil
}
