package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/restore"
)

// envelope is what every function returns.
type envelope struct {
	OK    any         `json:"ok,omitempty"`
	Error *errorInfo  `json:"error,omitempty"`
	Logs  []logRecord `json:"logs,omitempty"`
}

type errorInfo struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// call runs fn with a log sink and returns its result or error with the
// records logged meanwhile. A panic becomes an error of kind "other".
func call(fn func(s *sink) (any, error)) (e envelope) {
	s := newSink(defaultLevel, 1000)
	defer func() {
		if r := recover(); r != nil {
			e = envelope{Error: &errorInfo{Kind: kindOther,
				Message: fmt.Sprintf("internal error: %v (please report it)", r)}, Logs: s.drain()}
		}
	}()
	res, err := fn(s)
	if err != nil {
		return envelope{Error: classify(err), Logs: s.drain()}
	}
	return envelope{OK: res, Logs: s.drain()}
}

type versionInfo struct {
	Version       string `json:"version"`
	Go            string `json:"go"`
	SQLite        string `json:"sqlite"`
	SQLiteVersion string `json:"sqlite_version"`
	PointInTime   bool   `json:"point_in_time"`
}

func versionInfoNow() versionInfo {
	return versionInfo{Version: version, Go: runtime.Version(), SQLite: sqliteMode,
		SQLiteVersion: sqliteVersion(), PointInTime: true}
}

// check opens the bucket of config, which makes no request.
func check(s *sink, config string) (any, error) {
	cfg, err := parseConfig(config, s)
	if err != nil {
		return nil, err
	}
	st, err := cfg.open(context.Background())
	if err != nil {
		return nil, err
	}
	return map[string]string{"bucket": st.String()}, nil
}

type snapshotResult struct {
	Name       string  `json:"name"`
	Key        string  `json:"key"`
	URL        string  `json:"url"`
	Generation string  `json:"generation"`
	PageSize   uint32  `json:"page_size"`
	PageCount  uint32  `json:"page_count"`
	DBSize     int64   `json:"db_size"`
	Size       int64   `json:"size"`
	SHA256     string  `json:"sha256"`
	WALFrame   uint32  `json:"wal_frame"`
	Duration   float64 `json:"duration"`
}

// snapshot is `walsync snapshot PATH [--name NAME]`.
func snapshot(s *sink, config, dbPath, name string) (any, error) {
	cfg, err := parseConfig(config, s)
	if err != nil {
		return nil, err
	}
	if dbPath == "" {
		return nil, configErrorf("empty database path")
	}
	if err := checkDatabase(dbPath); err != nil {
		return nil, err
	}
	if name == "" {
		name = walsync.NameFromPath(dbPath)
	}
	if err := walsync.ValidateName(name); err != nil {
		return nil, configError{err}
	}
	ctx := context.Background()
	st, err := cfg.open(ctx)
	if err != nil {
		return nil, err
	}
	sn := &replicate.Snapshotter{Storage: st, Logger: s.logger()}
	info, err := sn.Snapshot(ctx, dbPath, name)
	if err != nil {
		return nil, err
	}
	return snapshotResult{Name: info.Name, Key: info.Key, URL: st.String() + "/" + info.Key,
		Generation: info.Generation.String(), PageSize: info.PageSize, PageCount: info.PageCount,
		DBSize: info.DBSize, Size: info.StoredSize, SHA256: info.SHA256, WALFrame: info.WALFrame,
		Duration: info.Duration.Seconds()}, nil
}

// list is `walsync list --json`.
func list(s *sink, config string) (any, error) {
	cfg, err := parseConfig(config, s)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	st, err := cfg.open(ctx)
	if err != nil {
		return nil, err
	}
	dbs, err := restore.List(ctx, st)
	if err != nil {
		return nil, err
	}
	if dbs == nil {
		dbs = []restore.DBInfo{}
	}
	return dbs, nil
}

type restoreOptions struct {
	Force       bool    `json:"force"`
	PointInTime *string `json:"point_in_time"`
}

type restoreResult struct {
	Name        string  `json:"name"`
	Output      string  `json:"output"`
	SnapshotKey string  `json:"snapshot_key"`
	Generation  string  `json:"generation"`
	DBSize      int64   `json:"db_size"`
	Segments    int     `json:"segments"`
	LastSeq     uint64  `json:"last_seq"`
	StateTime   string  `json:"state_time"`
	Duration    float64 `json:"duration"`
}

// restoreDB is `walsync restore NAME -o OUTPUT [--force] [--point-in-time T]`.
func restoreDB(s *sink, config, name, output, options string) (any, error) {
	cfg, err := parseConfig(config, s)
	if err != nil {
		return nil, err
	}
	if err := walsync.ValidateName(name); err != nil {
		return nil, configError{err}
	}
	if output == "" {
		return nil, configErrorf("missing output path")
	}
	var ro restoreOptions
	if err := decodeJSON(options, "options", &ro); err != nil {
		return nil, err
	}
	opts := restore.Options{Force: ro.Force}
	if ro.PointInTime != nil {
		t, err := time.Parse(time.RFC3339Nano, *ro.PointInTime)
		if err != nil {
			return nil, configErrorf("point_in_time %q: want an RFC 3339 time such as 2024-01-10T12:00:00Z", *ro.PointInTime)
		}
		opts.PointInTime = t.UTC()
	}
	ctx := context.Background()
	st, err := cfg.open(ctx)
	if err != nil {
		return nil, err
	}
	r := &restore.Restorer{Storage: st, Logger: s.logger()}
	res, err := r.Restore(ctx, name, output, opts)
	if err != nil {
		return nil, err
	}
	return restoreResult{Name: res.Name, Output: res.Output, SnapshotKey: res.SnapshotKey,
		Generation: res.Generation.String(), DBSize: res.DBSize, Segments: res.Segments,
		LastSeq: res.LastSeq, StateTime: res.StateTime.UTC().Format(time.RFC3339Nano),
		Duration: res.Duration.Seconds()}, nil
}

// decodeJSON decodes the JSON object s into v, refusing unknown fields;
// "" decodes as {}.
func decodeJSON(s, what string, v any) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return configErrorf("%s: invalid JSON: %v", what, err)
		}
		return configErrorf("%s: %v", what, strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
