// Command killsoak kills `walsync watch` with SIGKILL over and over while
// an application writes and runs TRUNCATE checkpoints, then checks that
// the restore equals the source, and counts the new generations walsync
// started, with their reasons (issue: "a restart continues the
// generation").
//
//	go build -o bin/walsync ./cmd/walsync && go build -o bin/killsoak ./bench/killsoak
//	bin/killsoak -walsync bin/walsync -kills 100
//
// With -s3 (under scripts/minio.sh run, which exports the server's
// address and credentials) the bucket is MinIO, reached through a proxy
// that injects storage faults: cut GET bodies, 500s, 503 SlowDown on PUTs,
// added latency; and a restore runs every -restore-every during the load
// (each must succeed and pass integrity_check). -duration runs kills until
// that time has passed instead of a count: bench/soak.sh is the 10-minute
// version.
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
)

var (
	walsyncBin = flag.String("walsync", "bin/walsync", "the walsync binary")
	kills      = flag.Int("kills", 100, "how many times watch is killed")
	every      = flag.Int("truncate-every", 200, "commits between the application's TRUNCATE checkpoints")
	pause      = flag.Duration("pause", 2*time.Millisecond, "pause between the application's commits")
	alive      = flag.Duration("alive", 1500*time.Millisecond, "how long watch runs before a kill, at most (at least a fifth of it)")
	duration   = flag.Duration("duration", 0, "kill until this much time has passed (instead of -kills)")
	useS3      = flag.Bool("s3", false, "replicate to MinIO (WALSYNC_TEST_S3_*) through a fault-injecting proxy")
	restoreEv  = flag.Duration("restore-every", 20*time.Second, "with -s3: a restore during the load this often")
	catchUp    = flag.Bool("catch-up", true, "let the last watch empty its spool before stopping it (false: stop it 1.5 s after the load, as before)")
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
	var extra []string // flags of every walsync command
	var proxy *faultproxy.HTTPProxy
	if *useS3 {
		var err error
		bucket, extra, proxy, err = s3Bucket()
		if err != nil {
			log.Fatal(err)
		}
		defer proxy.Close()
	}
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
		cmd := exec.Command(*walsyncBin, append([]string{"watch", src, "-b", bucket}, extra...)...)
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
	killed, restores := 0, 0
	lastRestore := time.Now()
	for (*duration == 0 && killed < *kills) || (*duration > 0 && time.Since(start) < *duration) {
		cmd := run()
		time.Sleep(*alive/5 + time.Duration(rand.Int64N(int64(*alive)*4/5)))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		killed++
		if *useS3 && time.Since(lastRestore) >= *restoreEv {
			lastRestore = time.Now()
			out := filepath.Join(dir, fmt.Sprintf("during-%d.db", restores))
			if b, err := exec.Command(*walsyncBin, append([]string{"restore", "app", "-o", out, "-b", bucket}, extra...)...).CombinedOutput(); err != nil {
				log.Fatalf("restore during the load: %v\n%s", err, b)
			}
			if err := integrityOK(out); err != nil {
				log.Fatalf("restore during the load: %v", err)
			}
			os.Remove(out)
			restores++
		}
	}
	finalLogs := logs.Len()
	cmd := run()
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	if appErr != nil {
		log.Fatalf("the application failed: %v", appErr)
	}
	// Caught up (the contract's condition for an exact restore): nothing
	// captured is left in the spool, the last commits included.
	time.Sleep(1500 * time.Millisecond)
	for waited := time.Now(); *catchUp; time.Sleep(200 * time.Millisecond) {
		p, err := replicate.SpoolPending(src)
		if err == nil && p.Objects == 0 {
			break
		}
		if time.Since(waited) > 5*time.Minute {
			log.Printf("the last watch has not caught up after 5 minutes (%d objects in the spool, %v)", p.Objects, err)
			break
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitErr := cmd.Wait()
	time.Sleep(100 * time.Millisecond)
	finalLog := logs.String()[finalLogs:]
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
	if b, err := exec.Command(*walsyncBin, append([]string{"restore", "app", "-o", out, "-b", bucket}, extra...)...).CombinedOutput(); err != nil {
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
	fmt.Printf("kills: %d in %v; commits: %d; application TRUNCATEs: %d\n", killed, time.Since(start).Round(time.Second), commits.Load(), truncates.Load())
	if proxy != nil {
		fmt.Printf("storage faults injected: %d; restores during the load: %d, all ok\n", proxy.Faults.Load(), restores)
	}
	total := 0
	for _, k := range keys {
		total += reasons[k]
		fmt.Printf("new generation, %3d times: %s\n", reasons[k], k)
	}
	fmt.Printf("generations started: %d (the first run's included)\n", total)
	if !bytes.Equal(got, want) {
		var tail []string
		for _, l := range strings.Split(finalLog, "\n") {
			if !strings.Contains(l, "level=DEBUG") {
				tail = append(tail, l)
			}
		}
		if len(tail) > 40 {
			tail = tail[len(tail)-40:]
		}
		log.Fatalf("restore differs from the source: %d bytes against %d; the last watch exited with %v and logged:\n%s",
			len(got), len(want), waitErr, strings.Join(tail, "\n"))
	}
	fmt.Printf("restore: byte-identical to the source (%d bytes)\n", len(got))
}

// s3Bucket makes a bucket on the MinIO of WALSYNC_TEST_S3_* and a fault
// proxy in front of it; it returns the bucket URL and the flags that
// reach it through the proxy (the credentials go to the environment).
func s3Bucket() (string, []string, *faultproxy.HTTPProxy, error) {
	endpoint := os.Getenv("WALSYNC_TEST_S3_ENDPOINT")
	if endpoint == "" {
		return "", nil, nil, fmt.Errorf("-s3 needs a MinIO: run under scripts/minio.sh run")
	}
	os.Setenv("AWS_ACCESS_KEY_ID", os.Getenv("WALSYNC_TEST_S3_ACCESS_KEY"))
	os.Setenv("AWS_SECRET_ACCESS_KEY", os.Getenv("WALSYNC_TEST_S3_SECRET_KEY"))
	os.Setenv("AWS_REGION", "us-east-1")
	name := fmt.Sprintf("killsoak-%d", time.Now().UnixNano())
	if err := makeBucket(endpoint, name); err != nil {
		return "", nil, nil, err
	}
	p, err := faultproxy.NewHTTP(endpoint, false)
	if err != nil {
		return "", nil, nil, err
	}
	var n atomic.Int64
	p.SetRule(func(r *http.Request) faultproxy.Fault {
		i := n.Add(1)
		f := faultproxy.Fault{Delay: 10 * time.Millisecond}
		switch {
		case r.Method == http.MethodGet && i%20 == 0:
			f.CutBody = true
		case r.Method == http.MethodGet && i%20 == 7:
			f.Status, f.Code = http.StatusInternalServerError, "InternalError"
		case r.Method == http.MethodPut && i%5 == 0:
			f.Status, f.Code = http.StatusServiceUnavailable, "SlowDown"
		}
		return f
	})
	return "s3://" + name + "/soak", []string{"--endpoint", p.URL()}, p, nil
}

// integrityOK runs PRAGMA integrity_check on the database at path.
func integrityOK(path string) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil {
		return err
	}
	if ok != "ok" {
		return fmt.Errorf("integrity_check of %s: %s", path, ok)
	}
	return nil
}

// makeBucket creates the bucket on MinIO with the raw SDK.
func makeBucket(endpoint, name string) error {
	env := testenv.S3Env{Endpoint: endpoint, AccessKey: os.Getenv("WALSYNC_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("WALSYNC_TEST_S3_SECRET_KEY"), Region: testenv.Region}
	_, err := env.Client().CreateBucket(context.Background(), &s3api.CreateBucketInput{Bucket: aws.String(name)})
	return err
}
