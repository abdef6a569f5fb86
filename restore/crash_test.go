//go:build linux

package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/walsync/walsync/internal/fsys/fsystest"
)

// crashSource is a bucket with a snapshot and segments, some larger than
// the memory budget of the options crashOpts (they wait in temporary
// files), and the bytes a restore must give.
func crashSource(t *testing.T) (*source, []byte) {
	s := newSource(t, 4096)
	s.insert(20, 3000)
	s.snapshot()
	for range 3 {
		s.insert(10, 3000)
		s.segment()
	}
	return s, s.expected()
}

var crashOpts = Options{Parallel: 2, MemoryPerObject: 1}

// A restore's output is written through the file-system seam: the machine
// stops at each of its steps in turn (creating the temporary file, each
// write, the truncation, the fsync, the removal of stale -wal/-shm, the
// rename, the directory's fsync) and comes back with only what was
// synced. The output path then holds the file it held before (none, or
// the old database under --force) or the whole restored database: never
// a part of it. And each step failing once makes the restore fail with
// the output left as it was and no temporary file left beside it.
func TestRestoreCrashAtEveryStep(t *testing.T) {
	s, want := crashSource(t)
	old := []byte("an older database, replaced only with --force")
	for _, force := range []bool{false, true} {
		prepare := func(t *testing.T) string {
			out := filepath.Join(t.TempDir(), "out.db")
			if force {
				for _, f := range []struct {
					name string
					b    []byte
				}{{out, old}, {out + "-wal", []byte("stale wal")}} {
					if err := os.WriteFile(f.name, f.b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			return out
		}
		opts := crashOpts
		opts.Force = force

		probe := fsystest.NewCrash()
		out := prepare(t)
		if _, err := (&Restorer{Storage: s.st, FS: probe}).Restore(context.Background(), s.name, out, opts); err != nil {
			t.Fatal(err)
		}
		sameBytes(t, readAll(t, out), want, s.pageSize)
		steps := probe.Log()
		for _, step := range []string{"restore:create", "restore:create:write", "restore:download-temp", "restore:create:sync", "restore:rename", "restore:sync-dir:sync"} {
			if !slices.Contains(steps, step) {
				t.Fatalf("force=%v: step %s not seen: %q", force, step, steps)
			}
		}
		if force && !slices.Contains(steps, "restore:remove-stale") {
			t.Fatalf("no removal of the stale -wal: %q", steps)
		}
		t.Logf("force=%v: %d steps", force, len(steps))

		for n := 1; n <= len(steps); n++ {
			out := prepare(t)
			crash := fsystest.NewCrash()
			crash.CrashAt(n)
			_, err := (&Restorer{Storage: s.st, FS: crash}).Restore(context.Background(), s.name, out, opts)
			if !crash.Crashed() || err == nil {
				t.Fatalf("force=%v, crash at step %d (%s): crashed %v, restore error %v", force, n, steps[n-1], crash.Crashed(), err)
			}
			if err := crash.Reboot(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			switch {
			case errors.Is(err, os.ErrNotExist) && !force:
			case err == nil && force && bytes.Equal(got, old):
			case err == nil && bytes.Equal(got, want):
			default:
				t.Fatalf("force=%v, crash at step %d (%s): the output after the reboot is neither what was there nor the restore (%d bytes, %v)", force, n, steps[n-1], len(got), err)
			}
		}

		// Each step failing once: Restore fails, the output is as it
		// was, nothing is left beside it.
		for _, step := range slices.Compact(slices.Sorted(slices.Values(steps))) {
			faulty := &fsystest.Faulty{}
			faulty.Fail(step, 1)
			out := prepare(t)
			_, err := (&Restorer{Storage: s.st, FS: faulty}).Restore(context.Background(), s.name, out, opts)
			switch step {
			case "restore:open-direct":
				// Direct I/O refused: the page cache instead.
				if err != nil {
					t.Fatalf("force=%v, %s failing: %v", force, step, err)
				}
				fallthrough
			case "restore:remove-download-temp", "restore:sync-dir", "restore:sync-dir:sync":
				// After the rename (or no failure at all): the restore
				// is whole. A download's temporary file left is named
				// as walsync's; the directory's fsync failing is
				// reported.
				if got := readAll(t, out); !bytes.Equal(got, want) {
					t.Fatalf("force=%v, %s failing: the output differs from the restore", force, step)
				}
				continue
			}
			if !errors.Is(err, fsystest.ErrInjected) {
				t.Fatalf("force=%v, %s failing: got=%v, want %v", force, step, err, fsystest.ErrInjected)
			}
			if force {
				if got := readAll(t, out); !bytes.Equal(got, old) {
					t.Fatalf("force=%v, %s failing: the old output was changed", force, step)
				}
				os.Remove(out)
				os.Remove(out + "-wal")
			}
			assertNothingAt(t, out)
		}
	}
}
