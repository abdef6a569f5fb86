package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/backend"
)

// config is the CONFIG argument (see the package doc).
type config struct {
	Bucket   string             `json:"bucket"`
	Endpoint string             `json:"endpoint"`
	Region   string             `json:"region"`
	LogLevel string             `json:"log_level"`
	Env      *map[string]string `json:"env"`
}

// parseConfig decodes CONFIG, applies its environment and sets the
// level of the call's log sink.
func parseConfig(js string, s *sink) (*config, error) {
	var cfg config
	if err := decodeJSON(js, "config", &cfg); err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		return nil, configErrorf("missing bucket (s3://bucket[/prefix] or file:///path)")
	}
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	if s != nil {
		s.setLevel(level)
	}
	if cfg.Env != nil {
		syncEnv(*cfg.Env)
	}
	return &cfg, nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "warn", "warning":
		return slog.LevelWarn, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, configErrorf("log_level %q: want debug, info, warn or error", s)
}

// open opens the bucket; every failure is a configuration error (a bad
// URL, an unknown scheme, an unreadable AWS profile).
func (c *config) open(ctx context.Context) (walsync.Storage, error) {
	st, err := backend.Open(ctx, c.Bucket, backend.Options{Endpoint: c.Endpoint, Region: c.Region})
	if err != nil {
		return nil, configError{err}
	}
	return st, nil
}

var envMu sync.Mutex

// syncEnv makes the AWS_* variables of the process those of env and sets
// its other variables (see the package doc, "env").
func syncEnv(env map[string]string) {
	envMu.Lock()
	defer envMu.Unlock()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, keep := env[k]; !keep && strings.HasPrefix(k, "AWS_") {
			os.Unsetenv(k)
		}
	}
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			continue
		}
		if old, ok := os.LookupEnv(k); !ok || old != v {
			os.Setenv(k, v)
		}
	}
}

// checkDatabase fails with a not-found error, as the CLI words it, when
// path does not exist (replicate reports it without wrapping
// fs.ErrNotExist).
func checkDatabase(path string) error {
	if _, err := os.Stat(path); err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("database %s: no such file: %w", path, walsync.ErrNotExist)
		}
		return fmt.Errorf("database %s: %w", path, err)
	}
	return nil
}

func sqliteVersion() string {
	v, _, _ := sqlite3.Version()
	return v
}
