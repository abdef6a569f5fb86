package tests

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/internal/testenv"
)

// storedKeys lists the keys under prefix (relative to the target's bucket
// URL), sorted, as another client sees them.
func storedKeys(t *testing.T, tg target, prefix string) []string {
	t.Helper()
	var keys []string
	if tg.name == "file" {
		root := strings.TrimPrefix(tg.bucket, "file://")
		filepath.WalkDir(filepath.Join(root, prefix), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".sha256") {
				rel, _ := filepath.Rel(root, p)
				keys = append(keys, filepath.ToSlash(rel))
			}
			return nil
		})
	} else {
		client := testenv.S3(t).Client()
		bucket, keyPrefix, _ := strings.Cut(strings.TrimPrefix(tg.bucket, "s3://"), "/")
		list, err := client.ListObjectsV2(context.Background(), &s3api.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(keyPrefix + "/" + prefix)})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Contents {
			keys = append(keys, strings.TrimPrefix(*o.Key, keyPrefix+"/"))
		}
	}
	sort.Strings(keys)
	return keys
}

// deleteStored removes key (and the file backend's sidecar) behind
// walsync's back.
func deleteStored(t *testing.T, tg target, key string) {
	t.Helper()
	if tg.name == "file" {
		p := filepath.Join(strings.TrimPrefix(tg.bucket, "file://"), filepath.FromSlash(key))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		os.Remove(p + ".sha256")
		return
	}
	client := testenv.S3(t).Client()
	bucket, keyPrefix, _ := strings.Cut(strings.TrimPrefix(tg.bucket, "s3://"), "/")
	if _, err := client.DeleteObject(context.Background(), &s3api.DeleteObjectInput{Bucket: &bucket, Key: aws.String(keyPrefix + "/" + key)}); err != nil {
		t.Fatal(err)
	}
}

// verifyReport is one element of `walsync verify --json`.
type verifyReport struct {
	Name       string  `json:"name"`
	Generation *string `json:"generation"`
	Snapshots  *int    `json:"snapshots"`
	Segments   *int    `json:"segments"`
	Bytes      *int64  `json:"bytes"`
	OK         *bool   `json:"ok"`
	Error      *string `json:"error"`
}

func verifyJSON(t *testing.T, r result) []verifyReport {
	t.Helper()
	var reps []verifyReport
	if err := json.Unmarshal([]byte(r.stdout), &reps); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}
	for i, rep := range reps {
		if rep.Name == "" || rep.Generation == nil || rep.Snapshots == nil || rep.Segments == nil || rep.Bytes == nil || rep.OK == nil || rep.Error == nil {
			t.Fatalf("verify --json element %d lacks a field (name, generation, snapshots, segments, bytes, ok, error):\n%s", i, r.stdout)
		}
	}
	return reps
}

// twoGenerationsUnderWatch replicates app (two generations: the WAL
// changes while walsync is stopped) and other (one), and returns app's
// source path.
func twoGenerationsUnderWatch(t *testing.T, tg target) string {
	t.Helper()
	dir := t.TempDir()
	src, other := filepath.Join(dir, "app.db"), filepath.Join(dir, "other.db")
	createDB(t, src, 4096, "wal", 200)
	createDB(t, other, 1024, "wal", 100)
	app, oapp := openDB(t, src), openDB(t, other)
	app.SetMaxOpenConns(1)
	oapp.SetMaxOpenConns(1)
	w := startWatch(t, tg.cli, append(tg.args(src, other), "--sync-interval", "0")...)
	for i := 0; i < 8; i++ {
		insertBatches(t, app, 100+i, 40, 40)
		insertBatches(t, oapp, 100+i, 30, 30)
		time.Sleep(40 * time.Millisecond) // separate segments
	}
	w.stop()
	insertBatches(t, app, 200, 100, 50)
	var a, b, c int
	if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&a, &b, &c); err != nil {
		t.Fatal(err)
	}
	w = startWatch(t, tg.cli, append(tg.args(src), "--sync-interval", "0")...)
	insertBatches(t, app, 300, 300, 30)
	w.stop()
	if !strings.Contains(w.logs(), "new generation") {
		t.Fatalf("want a second generation:\n%s", w.logs())
	}
	return src
}

// A clean bucket: exit 0, one line per database and generation, counts
// that match what is stored, and --json with every field.
func TestVerifyClean(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		twoGenerationsUnderWatch(t, tg)
		r := tg.cli.ok(t, tg.args("verify")...)
		t.Logf("verify:\n%s", r.stdout)
		indexLines, lines := verifyText(r.stdout)
		if len(lines) != 4 || !strings.Contains(lines[3], "all ok") {
			t.Fatalf("verify output: got=%q, want 3 generation lines and a summary saying all ok", r.stdout)
		}
		// One line per database on its state.json (written by watch).
		if len(indexLines) != 2 || !strings.HasPrefix(indexLines[0], "app ") || !strings.HasPrefix(indexLines[1], "other ") ||
			!strings.Contains(indexLines[0], " matches: ") || !strings.Contains(indexLines[1], " matches: ") {
			t.Fatalf("verify's state.json lines: got=%q, want one for app and one for other, each saying it matches", indexLines)
		}
		for _, l := range lines[:3] {
			if !strings.HasSuffix(l, "ok") || !strings.Contains(l, "generation ") {
				t.Errorf("verify line %q: want a generation and ok", l)
			}
		}

		reps := verifyJSON(t, tg.cli.ok(t, tg.args("verify", "--json")...))
		perName := map[string][2]int{}
		for _, rep := range reps {
			if !*rep.OK || *rep.Error != "" || len(*rep.Generation) != 32 || *rep.Bytes <= 0 || *rep.Snapshots < 1 {
				t.Errorf("report %+v: want ok with a generation, bytes and a snapshot", rep)
			}
			n := perName[rep.Name]
			perName[rep.Name] = [2]int{n[0] + *rep.Snapshots, n[1] + *rep.Segments}
		}
		if len(reps) != 3 || reps[0].Name != "app" || reps[1].Name != "app" || reps[2].Name != "other" {
			t.Fatalf("reports: got=%d (%v), want app twice (two generations) and other", len(reps), perName)
		}
		for _, name := range []string{"app", "other"} {
			snaps := len(storedKeys(t, tg, name+"/snapshots/"))
			segs := len(storedKeys(t, tg, name+"/wal/"))
			if got := perName[name]; got != [2]int{snaps, segs} || segs == 0 {
				t.Errorf("%s: verify counted %d snapshots + %d segments, the bucket holds %d + %d", name, got[0], got[1], snaps, segs)
			}
		}

		// Names select: only other.
		reps = verifyJSON(t, tg.cli.ok(t, tg.args("verify", "other", "--json", "--parallel", "1")...))
		if len(reps) != 1 || reps[0].Name != "other" {
			t.Fatalf("verify other: got=%+v, want one report for other", reps)
		}
	})
}

// A flipped byte in a segment: non-zero exit, the key and "checksum" in
// the error; the other generations still verify.
func TestVerifyCorruptSegment(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		twoGenerationsUnderWatch(t, tg)
		key := flipStoredByte(t, tg, "app/wal/")
		r := tg.cli.fails(t, tg.args("verify"), key, "checksum")
		if !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, key) {
			t.Fatalf("verify output: want a FAILED line naming %s:\n%s", key, r.stdout)
		}
		reps := verifyJSON(t, tg.cli.fails(t, tg.args("verify", "--json"), key))
		bad := 0
		for _, rep := range reps {
			if !*rep.OK {
				bad++
				if !strings.Contains(*rep.Error, key) || !strings.Contains(*rep.Error, "checksum") {
					t.Errorf("report error %q: want it to name %s and say checksum", *rep.Error, key)
				}
			}
		}
		if bad != 1 {
			t.Fatalf("failed reports: got=%d, want 1\n%+v", bad, reps)
		}
	})
}

// A deleted middle segment: non-zero exit naming its number and the
// segments around it.
func TestVerifyDeletedSegment(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		twoGenerationsUnderWatch(t, tg)
		segs := storedKeys(t, tg, "other/wal/")
		if len(segs) < 3 {
			t.Fatalf("want at least 3 segments of other, got %d", len(segs))
		}
		middle := segs[len(segs)/2]
		deleteStored(t, tg, middle)
		seq := strings.SplitN(filepath.Base(middle), "-", 2)[0]
		tg.cli.fails(t, tg.args("verify"), "other", "missing", seq, segs[len(segs)/2-1], segs[len(segs)/2+1])
		// The other database is not affected.
		tg.cli.ok(t, tg.args("verify", "app")...)
	})
}

// An unknown name is an error naming it; an empty bucket has nothing to
// verify, which is not a success either.
func TestVerifyUnknownName(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		tg.cli.fails(t, tg.args("verify"), "nothing to verify")
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 10)
		tg.cli.ok(t, tg.args("snapshot", src)...)
		tg.cli.fails(t, tg.args("verify", "app", "ghost"), "ghost", "nothing stored")
		tg.cli.fails(t, tg.args("verify", "../x"), "invalid database name")
		tg.cli.ok(t, tg.args("verify", "app")...)
	})
}
