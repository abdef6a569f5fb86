// Command vfsdensity measures what the walsync VFS costs per open
// database (docs/BENCHMARKS.md, "The VFS: many databases in one process"):
// for each count N it runs a fresh process that opens N small WAL
// databases, one connection each, writes one row to each and keeps them
// open, once through SQLite's default VFS and once through ?vfs=walsync
// (bucket file://), and prints goroutines, threads, open descriptors and
// RSS after the writes settled, and the walsync figures less the plain
// ones per database.
//
//	go run ./bench/vfsdensity -n 1,100,1000
package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/walsync/walsync/internal/sqlitemem"
	"github.com/walsync/walsync/vfs"
)

var (
	counts = flag.String("n", "1,100,1000", "database counts, comma-separated")
	settle = flag.Duration("settle", 3*time.Second, "wait after the writes before measuring")
)

type figures struct {
	Mode       string  `json:"mode"`
	N          int     `json:"n"`
	Goroutines int     `json:"goroutines"`
	Threads    int     `json:"threads"`
	FDs        int     `json:"fds"`
	RSSMB      float64 `json:"rss_mb"`
	GoHeapMB   float64 `json:"go_heap_mb"`
	SQLiteMB   float64 `json:"sqlite_mb"`
	OpenSec    float64 `json:"open_seconds"`
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	if mode := os.Getenv("VFSDENSITY_CHILD"); mode != "" {
		n, _ := strconv.Atoi(os.Getenv("VFSDENSITY_N"))
		f, err := child(mode, n)
		if err != nil {
			log.Fatal(err)
		}
		json.NewEncoder(os.Stdout).Encode(f) //nolint:errcheck
		return
	}
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%-7s %6s %11s %8s %6s %9s %9s %9s %8s\n", "mode", "N", "goroutines", "threads", "fds", "RSS MB", "Go heap", "SQLite", "open s")
	var rows [][2]figures
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			log.Fatalf("-n: %v", err)
		}
		var pair [2]figures
		for i, mode := range []string{"plain", "walsync"} {
			cmd := exec.Command(exe, "-settle", settle.String())
			cmd.Env = append(os.Environ(), "VFSDENSITY_CHILD="+mode, "VFSDENSITY_N="+strconv.Itoa(n))
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				log.Fatalf("%s, %d databases: %v", mode, n, err)
			}
			var f figures
			if err := json.Unmarshal(out, &f); err != nil {
				log.Fatalf("%s, %d databases: %v (%q)", mode, n, err, out)
			}
			pair[i] = f
			fmt.Printf("%-7s %6d %11d %8d %6d %9.1f %9.1f %9.1f %8.2f\n", f.Mode, f.N, f.Goroutines, f.Threads, f.FDs, f.RSSMB, f.GoHeapMB, f.SQLiteMB, f.OpenSec)
		}
		rows = append(rows, pair)
	}
	fmt.Println("\nwalsync less plain, per database (N > 1: (walsync - plain) / N):")
	for _, p := range rows {
		n := float64(p[0].N)
		fmt.Printf("N=%-6d goroutines %+d (%.2f each), threads %+d, fds %.1f each, RSS %.0f KB each (Go heap %.0f KB, SQLite heap %.0f KB)\n", p[0].N,
			p[1].Goroutines-p[0].Goroutines, float64(p[1].Goroutines-p[0].Goroutines)/n, p[1].Threads-p[0].Threads,
			float64(p[1].FDs-p[0].FDs)/n, (p[1].RSSMB-p[0].RSSMB)*1024/n, (p[1].GoHeapMB-p[0].GoHeapMB)*1024/n, (p[1].SQLiteMB-p[0].SQLiteMB)*1024/n)
	}
}

func child(mode string, n int) (figures, error) {
	f := figures{Mode: mode, N: n}
	dir, err := os.MkdirTemp("", "vfsdensity-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	bucket := filepath.Join(dir, "bucket")
	if err := os.MkdirAll(bucket, 0o755); err != nil {
		return f, err
	}
	if mode == "walsync" {
		if err := vfs.Register(vfs.Options{Bucket: "file://" + bucket}); err != nil {
			return f, err
		}
	}
	start := time.Now()
	dbs := make([]*sql.DB, 0, n)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("t%05d.db", i))
		dsn := "file:" + p
		if mode == "walsync" {
			dsn += "?vfs=walsync"
		}
		db, err := sql.Open("sqlite3", dsn)
		if err != nil {
			return f, err
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		for _, q := range []string{"PRAGMA journal_mode=wal", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t (v) VALUES ('tenant row')"} {
			if _, err := db.Exec(q); err != nil {
				return f, fmt.Errorf("%s: %s: %w", p, q, err)
			}
		}
		dbs = append(dbs, db)
	}
	f.OpenSec = time.Since(start).Seconds()
	time.Sleep(*settle)
	runtime.GC()
	f.Goroutines = runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f.GoHeapMB = float64(ms.HeapInuse) / (1 << 20)
	f.SQLiteMB = float64(sqlitemem.MemoryUsed()) / (1 << 20)
	f.Threads, f.RSSMB = procStatus()
	if des, err := os.ReadDir("/proc/self/fd"); err == nil {
		f.FDs = len(des)
	}
	for _, db := range dbs {
		db.Close()
	}
	return f, nil
}

// procStatus reads the thread count and the resident set (MB).
func procStatus() (threads int, rssMB float64) {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "Threads:":
			threads, _ = strconv.Atoi(fields[1])
		case "VmRSS:":
			kb, _ := strconv.ParseFloat(fields[1], 64)
			rssMB = kb / 1024
		}
	}
	return threads, rssMB
}
