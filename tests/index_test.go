package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/internal/testenv"
)

// readStored returns key's bytes and recorded sha256 (sidecar or
// x-amz-meta-sha256), as another client sees them.
func readStored(t *testing.T, tg target, key string) ([]byte, string) {
	t.Helper()
	if tg.name == "file" {
		p := filepath.Join(strings.TrimPrefix(tg.bucket, "file://"), filepath.FromSlash(key))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		side, err := os.ReadFile(p + ".sha256")
		if err != nil {
			t.Fatal(err)
		}
		return b, strings.TrimSpace(string(side))
	}
	client := testenv.S3(t).Client()
	bucket, keyPrefix, _ := strings.Cut(strings.TrimPrefix(tg.bucket, "s3://"), "/")
	obj, err := client.GetObject(context.Background(), &s3api.GetObjectInput{Bucket: &bucket, Key: aws.String(keyPrefix + "/" + key)})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, obj.Metadata["sha256"]
}

// writeStored stores b under key with sum recorded beside it, behind
// walsync's back.
func writeStored(t *testing.T, tg target, key string, b []byte, sum string) {
	t.Helper()
	if tg.name == "file" {
		p := filepath.Join(strings.TrimPrefix(tg.bucket, "file://"), filepath.FromSlash(key))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+".sha256", []byte(sum+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	client := testenv.S3(t).Client()
	bucket, keyPrefix, _ := strings.Cut(strings.TrimPrefix(tg.bucket, "s3://"), "/")
	if _, err := client.PutObject(context.Background(), &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(keyPrefix + "/" + key),
		Body: bytes.NewReader(b), Metadata: map[string]string{"sha256": sum}}); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stateJSON is the part of state.json the tests read.
type stateJSON struct {
	Version        int    `json:"version"`
	Name           string `json:"name"`
	Generation     string `json:"generation"`
	LatestSnapshot *struct {
		Key string `json:"key"`
	} `json:"latest_snapshot"`
	LatestSegment *struct {
		Key string `json:"key"`
		Seq uint64 `json:"seq"`
	} `json:"latest_segment"`
	Uploaded struct {
		Snapshots, Segments int
	} `json:"uploaded"`
	Updated string `json:"updated"`
}

var elapsedRE = regexp.MustCompile(` in [0-9.]+[a-zµ]+: `)

// verifyText splits verify's output into its state.json lines and the
// others (the summary without its elapsed time).
func verifyText(out string) (index, rest []string) {
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(l, " state.json ") {
			index = append(index, l)
			continue
		}
		rest = append(rest, elapsedRE.ReplaceAllString(l, " in …: "))
	}
	return index, rest
}

// verifyJSONWithoutIndex returns verify --json's reports with their index
// member removed, and the index states.
func verifyJSONWithoutIndex(t *testing.T, out string) ([]map[string]any, []string) {
	t.Helper()
	var reps []map[string]any
	if err := json.Unmarshal([]byte(out), &reps); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	var states []string
	for _, r := range reps {
		ir, _ := r["index"].(map[string]any)
		state, _ := ir["state"].(string)
		states = append(states, state)
		delete(r, "index")
	}
	return reps, states
}

// After walsync watch ran and stopped, state.json describes the latest
// objects; with it deleted, replaced by an older valid one, by garbage, or
// by bytes that do not match their recorded sha256, list --json, restore
// and verify give the same answers, and verify's index line names the
// condition (exit status 0 throughout: the index is information).
func TestIndexNotTheTruth(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		src := filepath.Join(t.TempDir(), "app.db")
		createDB(t, src, 4096, "wal", 200)
		app := openDB(t, src)
		app.SetMaxOpenConns(1)
		exec1(t, app, "PRAGMA wal_autocheckpoint=0") // the second run resumes the generation
		w := startWatch(t, tg.cli, append(tg.args(src), "--sync-interval", "0")...)
		insertBatches(t, app, 100, 200, 50)
		w.stop()
		key := "app/state.json"
		stale, staleSum := readStored(t, tg, key)
		if staleSum != sha256Hex(stale) {
			t.Fatalf("state.json after the first run: recorded sha256 %s, its bytes hash to %s", staleSum, sha256Hex(stale))
		}

		w = startWatch(t, tg.cli, append(tg.args(src), "--sync-interval", "0")...)
		insertBatches(t, app, 200, 200, 50)
		w.stop()
		if strings.Contains(w.logs(), "new generation") {
			t.Fatalf("the second run started a new generation:\n%s", w.logs())
		}

		// (a) state.json names the newest snapshot and segment.
		good, sum := readStored(t, tg, key)
		if sum != sha256Hex(good) {
			t.Fatalf("state.json: recorded sha256 %s, its bytes hash to %s", sum, sha256Hex(good))
		}
		var st stateJSON
		if err := json.Unmarshal(good, &st); err != nil {
			t.Fatalf("state.json is not JSON: %v\n%s", err, good)
		}
		snaps, segs := storedKeys(t, tg, "app/snapshots/"), storedKeys(t, tg, "app/wal/")
		if st.Version != 1 || st.Name != "app" || st.Updated == "" || st.LatestSnapshot == nil || st.LatestSegment == nil ||
			st.LatestSnapshot.Key != snaps[len(snaps)-1] || st.LatestSegment.Key != segs[len(segs)-1] {
			t.Fatalf("state.json:\n%s\nwant version 1, name app, latest snapshot %s, latest segment %s", good, snaps[len(snaps)-1], segs[len(segs)-1])
		}
		var old stateJSON
		if err := json.Unmarshal(stale, &old); err != nil || old.LatestSegment == nil || old.LatestSegment.Seq >= st.LatestSegment.Seq {
			t.Fatalf("the first run's state.json (%v):\n%s\nwant one naming an older segment than %s", err, stale, st.LatestSegment.Key)
		}

		want := checkpointed(t, app, src)
		type answers struct {
			list, db   string
			text       []string
			reps       []map[string]any
			indexLines []string
			states     []string
		}
		ask := func(t *testing.T) answers {
			t.Helper()
			var a answers
			a.list = tg.cli.ok(t, tg.args("list", "--json")...).stdout
			out := filepath.Join(t.TempDir(), "restored.db")
			tg.cli.ok(t, tg.args("restore", "app", "-o", out)...)
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			a.db = string(b)
			a.indexLines, a.text = verifyText(tg.cli.ok(t, tg.args("verify")...).stdout)
			a.reps, a.states = verifyJSONWithoutIndex(t, tg.cli.ok(t, tg.args("verify", "--json")...).stdout)
			return a
		}
		base := ask(t)
		mustEqualFiles(t, []byte(base.db), src, want)
		if len(base.indexLines) != 1 || !strings.Contains(base.indexLines[0], " matches: ") || !reflect.DeepEqual(base.states, []string{"matches"}) {
			t.Fatalf("verify with the good state.json: index lines %q, --json states %q; want one saying it matches", base.indexLines, base.states)
		}
		if reps := verifyJSON(t, tg.cli.ok(t, tg.args("verify", "--json")...)); len(reps) != 1 || *reps[0].Generation != st.Generation {
			t.Fatalf("verify --json: %+v, want one generation, state.json's %s", reps, st.Generation)
		}

		for _, tc := range []struct {
			name  string
			set   func(t *testing.T)
			state string
		}{
			{"deleted", func(t *testing.T) { deleteStored(t, tg, key) }, "missing"},
			{"stale", func(t *testing.T) { writeStored(t, tg, key, stale, staleSum) }, "stale"},
			{"garbage", func(t *testing.T) {
				junk := []byte("\x00\x01 this is not a state.json {{{")
				writeStored(t, tg, key, junk, sha256Hex(junk))
			}, "corrupted"},
			{"sha256 mismatch", func(t *testing.T) { writeStored(t, tg, key, stale, sum) }, "corrupted"},
			{"good again", func(t *testing.T) { writeStored(t, tg, key, good, sum) }, "matches"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.set(t)
				got := ask(t)
				if got.list != base.list {
					t.Errorf("list --json:\n%s\nwant, as with the good state.json:\n%s", got.list, base.list)
				}
				if got.db != base.db {
					t.Errorf("restore: %d bytes, not the %d bytes restored with the good state.json", len(got.db), len(base.db))
				}
				if !reflect.DeepEqual(got.text, base.text) {
					t.Errorf("verify:\n%s\nwant, as with the good state.json:\n%s", strings.Join(got.text, "\n"), strings.Join(base.text, "\n"))
				}
				if !reflect.DeepEqual(got.reps, base.reps) {
					t.Errorf("verify --json (without index): got=%v, want %v", got.reps, base.reps)
				}
				if len(got.indexLines) != 1 || !strings.Contains(got.indexLines[0], " "+tc.state+": ") {
					t.Errorf("verify's state.json line: got=%q, want one saying %q", got.indexLines, tc.state)
				}
				if !reflect.DeepEqual(got.states, []string{tc.state}) {
					t.Errorf("verify --json index states: got=%q, want %q", got.states, tc.state)
				}
				t.Logf("%s", got.indexLines)
			})
		}
	})
}
