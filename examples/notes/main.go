// Command notes is a small HTTP service whose data lives in SQLite and is
// replicated by the walsync VFS: zero polling, every commit shipped to the
// bucket within a second (or before the request returns, with -sync).
//
//	go run ./examples/notes -db notes.db -bucket file://./backups
//	curl -d 'buy milk' localhost:8080/notes
//	curl localhost:8080/notes
//	walsync restore notes -o restored.db -b file://./backups
//
// For S3: -bucket s3://my-bucket/notes, with credentials in the AWS
// environment and -endpoint for MinIO, Tigris or R2.
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/walsync/walsync/vfs"
)

func main() {
	dbPath := flag.String("db", "notes.db", "database file")
	bucket := flag.String("bucket", "file://./backups", "where to replicate: s3://bucket/prefix or file:///dir")
	endpoint := flag.String("endpoint", "", "S3 endpoint URL (MinIO, Tigris, R2)")
	syncMode := flag.Bool("sync", false, "a request returns only once its commit is durable in the bucket")
	addr := flag.String("addr", "localhost:8080", "listen address")
	flag.Parse()

	if err := vfs.Register(vfs.Options{Bucket: *bucket, Endpoint: *endpoint, Sync: *syncMode}); err != nil {
		log.Fatal(err)
	}
	abs, err := filepath.Abs(*dbPath)
	if err != nil {
		log.Fatal(err)
	}
	u := url.URL{Path: abs}
	db, err := sql.Open("sqlite3", "file:"+u.EscapedPath()+"?vfs=walsync&_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, created TEXT DEFAULT CURRENT_TIMESTAMP)"); err != nil {
		log.Fatal(err)
	}

	http.HandleFunc("/notes", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
			if err != nil || len(body) == 0 {
				http.Error(w, "want a note in the request body", http.StatusBadRequest)
				return
			}
			res, err := db.Exec("INSERT INTO notes (body) VALUES (?)", string(body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			id, _ := res.LastInsertId()
			fmt.Fprintf(w, "%d\n", id)
		case http.MethodGet:
			rows, err := db.Query("SELECT id, created, body FROM notes ORDER BY id")
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer rows.Close()
			for rows.Next() {
				var id int
				var created, body string
				if err := rows.Scan(&id, &created, &body); err == nil {
					fmt.Fprintf(w, "%d\t%s\t%s\n", id, created, body)
				}
			}
		default:
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
		}
	})

	srv := &http.Server{Addr: *addr}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		srv.Close()
	}()
	log.Printf("notes on http://%s, replicating %s to %s", *addr, abs, *bucket)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Print(err)
	}
	// Closing the last connection ships what is pending.
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}
}
