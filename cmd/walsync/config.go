package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/replicate"
)

// fileConfig is a watch configuration file (docs/CONFIG.md).
type fileConfig struct {
	Bucket           string    `yaml:"bucket"`
	Endpoint         string    `yaml:"endpoint"`
	Region           string    `yaml:"region"`
	SyncInterval     *duration `yaml:"sync-interval"`
	SnapshotInterval *duration `yaml:"snapshot-interval"`
	Retention        *duration `yaml:"retention"`
	ShutdownTimeout  *duration `yaml:"shutdown-timeout"`
	IdleClose        *duration `yaml:"idle-close"`
	DBs              []dbEntry `yaml:"dbs"`
}

// dbEntry is one item of dbs: a database by path, or a directory.
type dbEntry struct {
	Path             string    `yaml:"path"`
	Name             string    `yaml:"name"`
	Dir              string    `yaml:"dir"`
	Pattern          string    `yaml:"pattern"`
	Recursive        bool      `yaml:"recursive"`
	SyncInterval     *duration `yaml:"sync-interval"`
	SnapshotInterval *duration `yaml:"snapshot-interval"`
	Retention        *duration `yaml:"retention"`
	line             int
}

// duration is a Go duration ("90s", "1h") or a number of seconds, >= 0.
type duration struct {
	d time.Duration
}

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 30s or 1h", n.Line)
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	d.d = v
	return nil
}

// parseDuration reads a Go duration ("90s", "1h") or a number of
// seconds, >= 0 (the configuration file's durations, --snapshot-interval).
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return 0, fmt.Errorf("%q is not a duration (want 30s, 1h, or a number of seconds)", v)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: want a duration >= 0", v)
	}
	return d, nil
}

// entryKeys are the keys of a dbs entry (a custom UnmarshalYAML does not
// inherit the decoder's check of unknown fields).
var entryKeys = map[string]bool{"path": true, "name": true, "dir": true, "pattern": true, "recursive": true,
	"sync-interval": true, "snapshot-interval": true, "retention": true}

func (e *dbEntry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: an entry of dbs is a mapping (path: ... or dir: ...)", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !entryKeys[k.Value] {
			return fmt.Errorf("line %d: unknown key %q", k.Line, k.Value)
		}
	}
	type plain dbEntry
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*e = dbEntry(p)
	e.line = n.Line
	return nil
}

func (d *duration) ptr() *time.Duration {
	if d == nil {
		return nil
	}
	v := d.d
	return &v
}

// varRef is ${NAME} in a configuration file.
var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces every ${NAME} with the environment's value; an unset
// variable is an error naming its line (a secret left empty would fail
// later with a less clear message).
func expandEnv(b []byte, lookup func(string) (string, bool)) ([]byte, error) {
	var err error
	out := varRef.ReplaceAllFunc(b, func(m []byte) []byte {
		name := string(varRef.FindSubmatch(m)[1])
		v, ok := lookup(name)
		if !ok && err == nil {
			line := 1 + bytes.Count(b[:bytes.Index(b, m)], []byte("\n"))
			err = fmt.Errorf("line %d: ${%s} is not set in the environment", line, name)
		}
		return []byte(v)
	})
	return out, err
}

// unknownField is yaml's message for a key the type does not have.
var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)

// loadConfig reads the configuration file at path. Every error is one
// line naming the file, the line and the key or value at fault.
func loadConfig(path string, lookup func(string) (string, bool)) (*fileConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	b, err := expandEnv(raw, lookup)
	if err != nil {
		return nil, fmt.Errorf("config %s %w", path, err)
	}
	var c fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg := te.Errors[0]
			if m := unknownField.FindStringSubmatch(msg); m != nil {
				msg = fmt.Sprintf("line %s: unknown key %q", m[1], m[2])
			}
			return nil, fmt.Errorf("config %s %s", path, msg)
		}
		if err.Error() == "EOF" {
			return nil, fmt.Errorf("config %s: empty", path)
		}
		return nil, fmt.Errorf("config %s %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := c.check(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("config %s %w", path, err)
	}
	return &c, nil
}

// check validates the entries and makes their paths absolute (relative
// ones are relative to the file's directory).
func (c *fileConfig) check(base string) error {
	for i := range c.DBs {
		e := &c.DBs[i]
		switch {
		case e.Path != "" && e.Dir != "":
			return fmt.Errorf("line %d: an entry has either path or dir, not both", e.line)
		case e.Path == "" && e.Dir == "":
			return fmt.Errorf("line %d: an entry needs path (a database) or dir (a directory of databases)", e.line)
		case e.Path != "" && (e.Pattern != "" || e.Recursive):
			return fmt.Errorf("line %d: pattern and recursive go with dir, not path", e.line)
		case e.Dir != "" && e.Name != "":
			return fmt.Errorf("line %d: name goes with path; under dir, names are paths relative to it", e.line)
		}
		if e.Name != "" {
			if err := walsync.ValidateName(e.Name); err != nil {
				return fmt.Errorf("line %d: name: %w", e.line, err)
			}
		}
		if e.Pattern != "" {
			if _, err := filepath.Match(e.Pattern, "x"); err != nil {
				return fmt.Errorf("line %d: pattern %q: %w", e.line, e.Pattern, err)
			}
		}
		for _, p := range []*string{&e.Path, &e.Dir} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(base, *p)
			}
			if *p != "" {
				*p = filepath.Clean(*p)
			}
		}
	}
	return nil
}

// overrides are the entry's own settings.
func (e dbEntry) overrides() replicate.Overrides {
	return replicate.Overrides{SyncInterval: e.SyncInterval.ptr(), SnapshotInterval: e.SnapshotInterval.ptr(), Retention: e.Retention.ptr()}
}
