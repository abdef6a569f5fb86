// Command tightwriter commits one-row transactions in a tight loop (no
// pause at all) for -duration and prints the commit rate and the largest
// WAL it saw: the load under which walsync's pin could keep SQLite from
// ever restarting the WAL (bench/wal-growth.sh).
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	db := flag.String("db", "", "database (WAL mode)")
	d := flag.Duration("duration", 8*time.Second, "how long to write")
	flag.Parse()
	if *db == "" {
		log.Fatal("want -db")
	}
	u := url.URL{Path: *db}
	conn, err := sql.Open("sqlite3", "file:"+u.EscapedPath()+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000")
	if err != nil {
		log.Fatal(err)
	}
	conn.SetMaxOpenConns(1)
	if _, err := conn.Exec("CREATE TABLE IF NOT EXISTS t (v BLOB)"); err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	n := 0
	var most int64
	for time.Since(start) < *d {
		if _, err := conn.Exec("INSERT INTO t VALUES (randomblob(200))"); err != nil {
			log.Fatal(err)
		}
		n++
		if n%200 == 0 {
			if fi, err := os.Stat(*db + "-wal"); err == nil && fi.Size() > most {
				most = fi.Size()
			}
		}
	}
	fmt.Printf("%.0f commits/s, largest WAL %d bytes (%d frames of 4 KiB pages)\n",
		float64(n)/time.Since(start).Seconds(), most, most/(4096+24))
}
