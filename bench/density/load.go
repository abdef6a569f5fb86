package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// appDB is one application database and the connection that writes it,
// open for the whole run (as an application's would be).
type appDB struct {
	name, path string
	db         *sql.DB
	commits    []time.Duration // when each load commit returned, from base
	errs       int
	lastErr    error
}

// createDBs creates n small WAL-mode databases db0001.db ... in dir (one
// directory for all of them), each with one table and one row.
func createDBs(dir string, n int) ([]*appDB, error) {
	dbs := make([]*appDB, n)
	for i := range dbs {
		name := fmt.Sprintf("db%04d", i+1)
		path := filepath.Join(dir, name+".db")
		// synchronous=NORMAL: in WAL mode a commit does not fsync (the
		// usual setting for applications; Litestream recommends it too).
		db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000")
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
		if _, err := db.Exec(`CREATE TABLE t(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, v BLOB NOT NULL);
			INSERT INTO t(ts, v) VALUES(0, randomblob(100))`); err != nil {
			db.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var mode string
		if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			db.Close()
			return nil, fmt.Errorf("%s: journal_mode %q, %v", path, mode, err)
		}
		dbs[i] = &appDB{name: name, path: path, db: db}
	}
	return dbs, nil
}

// runLoad gives every database one small committed transaction (one row of
// 100 random bytes) per period until ctx ends, database i at offset
// i*period/n within each period, so commits are spread evenly.
func runLoad(ctx context.Context, dbs []*appDB, base time.Time, period time.Duration) {
	start := time.Now()
	var wg sync.WaitGroup
	for i, d := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(i) * period / time.Duration(len(dbs)))
			v := make([]byte, 100)
			for {
				t := time.NewTimer(time.Until(next))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				rand.Read(v)
				if _, err := d.db.Exec("INSERT INTO t(ts, v) VALUES(?, ?)", time.Now().UnixNano(), v); err != nil {
					d.errs++
					d.lastErr = err
				} else {
					d.commits = append(d.commits, time.Since(base))
				}
				next = next.Add(period)
				if now := time.Now(); next.Before(now) {
					next = now // behind: do not burst to catch up
				}
			}
		}()
	}
	wg.Wait()
}
