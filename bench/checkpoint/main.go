// Command checkpoint measures what walsync does to an application's own
// checkpoints (issue: "checkpoints stall the application"): the time of
// PRAGMA wal_checkpoint(TRUNCATE), RESTART and FULL after a burst of
// commits, and the commit latency of writers while a checkpointer runs,
// without walsync, under `walsync watch`, and through the walsync VFS, in
// one run, rounds alternating. The bucket is a local directory (file://):
// storage plays no part in the checkpoint interplay.
//
//	go build -o bin/bench-checkpoint ./bench/checkpoint
//	bin/bench-checkpoint -walsync bin/walsync -rounds 3
//
// It prints, per mode, p50 and p99 of each checkpoint kind, of a TRUNCATE
// right after a large transaction (-large-mb) and of that transaction and
// the TRUNCATE together, and of commit latency with
// four writers and a RESTART checkpointer every 0.5 s. -snapshot-interval
// 1s makes walsync snapshot every second meanwhile.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/vfs"
)

var (
	walsyncBin = flag.String("walsync", "bin/walsync", "the walsync binary (for watch)")
	rounds     = flag.Int("rounds", 3, "rounds per mode (alternating)")
	burst      = flag.Int("burst", 20, "commits before each checkpoint")
	checks     = flag.Int("checkpoints", 20, "checkpoints of each kind per round")
	loadFor    = flag.Duration("load", 5*time.Second, "duration of the four-writer load per round")
	largeMB    = flag.Int("large-mb", 50, "size of the large transaction before a timed TRUNCATE (0: none)")
	manual     = flag.Bool("manual", false, "also run SQLite alone with wal_autocheckpoint=0 (mode manual)")
	snapEvery  = flag.Duration("snapshot-interval", 0, "walsync's snapshot interval (watch and VFS; 0: their default, 1h), e.g. 1s to checkpoint while snapshots run")
)

func init() {
	sql.Register("sqlite3-manual", &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec("PRAGMA wal_autocheckpoint=0", nil)
		return err
	}})
}

type sample map[string][]time.Duration

func (s sample) add(k string, d time.Duration) { s[k] = append(s[k], d) }

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	c := slices.Clone(ds)
	slices.Sort(c)
	return c[min(len(c)-1, int(float64(len(c))*p))]
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *snapEvery > 0 {
		vfs.Register(vfs.Options{SnapshotInterval: *snapEvery}) //nolint:errcheck // registered at import already
	}
	modes := []string{"none", "watch", "vfs"}
	if *manual {
		// SQLite alone with the copy in the TRUNCATE, as under watch:
		// walsync's pin keeps the commit's automatic checkpoint from
		// copying the frames committed after it began.
		modes = append(modes, "manual")
	}
	res := map[string]sample{}
	for _, m := range modes {
		res[m] = sample{}
	}
	for r := 0; r < *rounds; r++ {
		for _, m := range modes {
			if err := round(m, res[m]); err != nil {
				log.Fatalf("round %d, %s: %v", r, m, err)
			}
		}
	}
	kinds := []string{"TRUNCATE", "RESTART", "FULL", "TRUNCATE after large txn", "large txn + TRUNCATE", "commit under RESTART load"}
	fmt.Printf("%-8s", "mode")
	for _, k := range kinds {
		fmt.Printf("  %-26s", k+" p50/p99")
	}
	fmt.Println()
	for _, m := range modes {
		fmt.Printf("%-8s", m)
		for _, k := range kinds {
			ds := res[m][k]
			fmt.Printf("  %-26s", fmt.Sprintf("%.1f/%.1f ms (n=%d)", ms(pct(ds, .5)), ms(pct(ds, .99)), len(ds)))
		}
		fmt.Println()
	}
	for _, m := range res {
		if n := len(m["busy"]); n > 0 {
			fmt.Printf("checkpoints that returned busy: %d\n", n)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// round runs one round of mode m into s.
func round(m string, s sample) error {
	dir, err := os.MkdirTemp("", "bench-checkpoint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "app.db")
	bucket := "file://" + filepath.Join(dir, "bucket")
	plain, err := sql.Open("sqlite3", "file:"+src+"?_busy_timeout=30000")
	if err != nil {
		return err
	}
	if _, err := plain.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, w INTEGER, v BLOB)"); err != nil {
		return err
	}
	plain.Close()
	dsn := "file:" + src + "?_busy_timeout=30000&_synchronous=NORMAL"
	var watch *exec.Cmd
	switch m {
	case "watch":
		args := []string{"watch", src, "-b", bucket}
		if *snapEvery > 0 {
			args = append(args, "--snapshot-interval", fmt.Sprint(int(snapEvery.Seconds()))) // the CLI takes seconds
		}
		watch = exec.Command(*walsyncBin, args...)
		watch.Stderr = os.Stderr
		if err := watch.Start(); err != nil {
			return err
		}
		defer func() {
			watch.Process.Signal(syscall.SIGTERM)
			watch.Wait()
		}()
		time.Sleep(time.Second) // its first snapshot
	case "vfs":
		dsn += "&vfs=walsync&walsync_bucket=" + bucket
	}
	driver := "sqlite3"
	if m == "manual" {
		driver = "sqlite3-manual"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(8)
	ctx := context.Background()
	for _, kind := range []string{"TRUNCATE", "RESTART", "FULL"} {
		for i := 0; i < *checks; i++ {
			for c := 0; c < *burst; c++ {
				if _, err := db.Exec("INSERT INTO t (w, v) VALUES (0, randomblob(200))"); err != nil {
					return err
				}
			}
			start := time.Now()
			var busy, logN, ckptN int
			if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+kind+")").Scan(&busy, &logN, &ckptN); err != nil {
				return err
			}
			s.add(kind, time.Since(start))
			if busy != 0 {
				s.add("busy", 0)
			}
		}
	}
	// A large transaction, then a TRUNCATE.
	for i := 0; *largeMB > 0 && i < 3; i++ {
		began := time.Now()
		if _, err := db.Exec("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < ?) INSERT INTO t (w, v) SELECT 9, randomblob(1000) FROM c", *largeMB*1000); err != nil {
			return err
		}
		start := time.Now()
		var busy, logN, ckptN int
		if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logN, &ckptN); err != nil {
			return err
		}
		s.add("TRUNCATE after large txn", time.Since(start))
		s.add("large txn + TRUNCATE", time.Since(began))
		if busy != 0 {
			s.add("busy", 0)
		}
	}
	// Four writers, a RESTART checkpointer every 0.5 s.
	stop := time.Now().Add(*loadFor)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				start := time.Now()
				if _, err := db.Exec("INSERT INTO t (w, v) VALUES (?, randomblob(200))", w+1); err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					return
				}
				d := time.Since(start)
				mu.Lock()
				s.add("commit under RESTART load", d)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for time.Now().Before(stop) {
		time.Sleep(500 * time.Millisecond)
		if _, err := db.Exec("PRAGMA wal_checkpoint(RESTART)"); err != nil {
			errs = append(errs, err.Error())
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
