// Command killsoak kills `walsync watch` with SIGKILL over and over while
// an application writes and runs TRUNCATE checkpoints, then checks that
// the restore equals the source, and counts the new generations walsync
// started, with their reasons (issue: "a restart continues the
// generation").
//
//	go build -o bin/walsync ./cmd/walsync && go build -o bin/killsoak ./bench/killsoak
//	bin/killsoak -walsync bin/walsync -kills 100
package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

var (
	walsyncBin = flag.String("walsync", "bin/walsync", "the walsync binary")
	kills      = flag.Int("kills", 100, "how many times watch is killed")
	every      = flag.Int("truncate-every", 200, "commits between the application's TRUNCATE checkpoints")
	pause      = flag.Duration("pause", 2*time.Millisecond, "pause between the application's commits")
	alive      = flag.Duration("alive", 1500*time.Millisecond, "how long watch runs before a kill, at most (at least a fifth of it)")
)

var (
	reasonRE = regexp.MustCompile(`msg="starting a new generation".*reason="([^"]*)"`)
	saltRE   = regexp.MustCompile(`\(salt [0-9a-f]+ -> [0-9a-f]+\)`)
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "killsoak-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "app.db")
	bucket := "file://" + filepath.Join(dir, "bucket")
	db, err := sql.Open("sqlite3", "file:"+src+"?_busy_timeout=30000")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		log.Fatal(err)
	}
	var stop atomic.Bool
	var commits, truncates atomic.Int64
	var appErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if _, err := db.Exec("INSERT INTO t (v) VALUES (randomblob(300))"); err != nil {
				appErr = err
				return
			}
			if commits.Add(1)%int64(*every) == 0 {
				if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
					appErr = err
					return
				}
				truncates.Add(1)
			}
			time.Sleep(*pause)
		}
	}()
	var logs bytes.Buffer
	run := func() *exec.Cmd {
		cmd := exec.Command(*walsyncBin, "watch", src, "-b", bucket)
		out, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				logs.WriteString(sc.Text() + "\n")
			}
		}()
		return cmd
	}
	start := time.Now()
	for i := 0; i < *kills; i++ {
		cmd := run()
		time.Sleep(*alive/5 + time.Duration(rand.Int64N(int64(*alive)*4/5)))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	cmd := run()
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	if appErr != nil {
		log.Fatalf("the application failed: %v", appErr)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	time.Sleep(100 * time.Millisecond)
	// The truth: the source after TRUNCATE.
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		log.Fatal(err)
	}
	db.Close()
	want, err := os.ReadFile(src)
	if err != nil {
		log.Fatal(err)
	}
	out := filepath.Join(dir, "restored.db")
	if b, err := exec.Command(*walsyncBin, "restore", "app", "-o", out, "-b", bucket).CombinedOutput(); err != nil {
		log.Fatalf("restore: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		log.Fatal(err)
	}
	reasons := map[string]int{}
	for _, m := range reasonRE.FindAllStringSubmatch(logs.String(), -1) {
		r := m[1]
		r = saltRE.ReplaceAllString(r, "(salts)")
		reasons[r]++
	}
	var keys []string
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Printf("kills: %d in %v; commits: %d; application TRUNCATEs: %d\n", *kills, time.Since(start).Round(time.Second), commits.Load(), truncates.Load())
	total := 0
	for _, k := range keys {
		total += reasons[k]
		fmt.Printf("new generation, %3d times: %s\n", reasons[k], k)
	}
	fmt.Printf("generations started: %d (the first run's included)\n", total)
	if !bytes.Equal(got, want) {
		log.Fatalf("restore differs from the source: %d bytes against %d", len(got), len(want))
	}
	fmt.Printf("restore: byte-identical to the source (%d bytes)\n", len(got))
}
