package replicate

import (
	"os"
	"path/filepath"
	"testing"
)

// Names under a --dir are paths relative to it without the extension;
// candidates match the pattern, in subdirectories only when recursive,
// never in hidden directories (spools).
func TestDirSourceCandidates(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"top.db", "notes.txt", "tenants/42/app.db", "tenants/42/app.db-wal", ".app.db-walsync/x.db", "tenants/.hidden/y.db"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	flat, err := DirSource{Dir: root}.Candidates()
	if err != nil {
		t.Fatal(err)
	}
	if len(flat) != 1 || flat[filepath.Join(root, "top.db")] != "top" {
		t.Fatalf("not recursive: got=%v, want top.db only", flat)
	}
	deep, err := DirSource{Dir: root, Recursive: true}.Candidates()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{filepath.Join(root, "top.db"): "top", filepath.Join(root, "tenants/42/app.db"): "tenants/42/app"}
	if len(deep) != len(want) {
		t.Fatalf("recursive: got=%v, want %v", deep, want)
	}
	for p, n := range want {
		if deep[p] != n {
			t.Fatalf("recursive: %s named %q, want %q", p, deep[p], n)
		}
	}
	txt, err := DirSource{Dir: root, Pattern: "*.txt"}.Candidates()
	if err != nil || txt[filepath.Join(root, "notes.txt")] != "notes" {
		t.Fatalf("pattern *.txt: got=%v, %v", txt, err)
	}
}
