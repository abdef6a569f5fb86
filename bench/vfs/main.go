// Command vfs measures the walsync VFS for docs/BENCHMARKS.md ("The VFS"),
// against the S3 server in WALSYNC_TEST_S3_* (bench/vfs.sh starts MinIO):
//
//  1. insert throughput through ?vfs=walsync (async, the default) beside
//     SQLite's default VFS, same machine, same run, rounds alternating;
//  2. commit latency with walsync_sync=1 (p50, p99);
//  3. commit-to-durable lag in async mode, beside `walsync watch`
//     following a database written the same way, measured the same way:
//     from the commit's return until the replicating process's spool has
//     recorded it and uploaded everything (its state.json moved on and no
//     spooled object is left).
//
// After the throughput rounds it prints how many segments each
// vfs=walsync round uploaded. With -ab NAME=VALUE, the rounds alternate,
// two pairs at a time, between the environment as given and NAME=VALUE
// set (for instance WALSYNC_VFS_SKIP=0: the shim calls into Go at every
// commit), and each arm's round-by-round ratio is printed: only such
// in-run comparisons show effects of 1-2 %. -sched-ab is -ab
// WALSYNC_SCHED_BATCH=0 (walsync's background threads at the normal
// policy instead of SCHED_BATCH).
//
// Every database is fresh; writes are single-row transactions with
// synchronous=NORMAL (the usual WAL setting, and the one where any
// per-commit overhead shows most) unless -batch says more rows.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/vfs"
)

var (
	commits   = flag.Int("commits", 5000, "transactions per throughput round")
	batch     = flag.Int("batch", 1, "rows per transaction")
	rounds    = flag.Int("rounds", 3, "throughput rounds per VFS (alternating)")
	syncN     = flag.Int("sync-commits", 300, "commits for the walsync_sync=1 latency")
	lagN      = flag.Int("lag-commits", 40, "commits for each lag measurement")
	spacing   = flag.Duration("spacing", 1500*time.Millisecond, "pause between the commits of a lag measurement (a commit after a quiet spell ships at once)")
	walsync   = flag.String("walsync", "bin/walsync", "the walsync CLI, for the watch lag")
	cpuprof   = flag.String("cpuprofile", "", "write a CPU profile of the throughput rounds to this file (samples labelled vfs=default or vfs=walsync)")
	blockprof = flag.String("blockprofile", "", "write a profile of where goroutines blocked (sync.Mutex, channels; waits of 1µs and longer, both VFSes) to this file after the throughput rounds")
	memprof   = flag.String("memprofile", "", "write an allocation profile (both VFSes, sampled every 64 KiB) to this file after the throughput rounds; `go tool pprof -sample_index=alloc_space`")
	detail    = flag.Bool("detail", false, "print a line per throughput round: the committing thread's time on a CPU, waiting for one and off CPU; commit times, slow commits, CPU of this process and of MinIO, GC cycles and bytes allocated; the thread and its first and last commit in CLOCK_MONOTONIC seconds (to cut a perf trace: bench/vfs-offcpu.sh)")
	fileBkt   = flag.Bool("file-bucket", false, "throughput rounds replicate to a file:// bucket instead of MinIO")
	schedAB   = flag.Bool("sched-ab", false, "the same as -ab WALSYNC_SCHED_BATCH=0")
	abEnv     = flag.String("ab", "", "NAME=VALUE: alternate the rounds between the environment as given and NAME=VALUE set, and print each arm's ratio")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	ep := os.Getenv("WALSYNC_TEST_S3_ENDPOINT")
	if ep == "" {
		log.Fatal("run through bench/vfs.sh (it starts MinIO)")
	}
	os.Setenv("AWS_ACCESS_KEY_ID", os.Getenv("WALSYNC_TEST_S3_ACCESS_KEY"))
	os.Setenv("AWS_SECRET_ACCESS_KEY", os.Getenv("WALSYNC_TEST_S3_SECRET_KEY"))
	os.Setenv("AWS_REGION", "us-east-1")
	bucket := "bench-vfs"
	client := s3api.New(s3api.Options{Region: "us-east-1", BaseEndpoint: aws.String(ep), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), "")})
	if _, err := client.CreateBucket(context.Background(), &s3api.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil && !strings.Contains(err.Error(), "BucketAlready") {
		log.Fatal(err)
	}
	if err := vfs.Register(vfs.Options{Endpoint: ep}); err != nil {
		log.Fatal(err)
	}
	work, err := os.MkdirTemp("/var/tmp", "walsync-bench-vfs-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	n := 0
	fresh := func() string {
		n++
		return filepath.Join(work, fmt.Sprintf("db%d", n), "app.db")
	}
	// Prefixes carry the work directory's unique name: two bench processes
	// sharing one MinIO never meet in the bucket.
	prefix := func() string { return fmt.Sprintf("%s/run%d", filepath.Base(work), n) }
	s3url := func(p string) string { return fmt.Sprintf("s3://%s/%s", bucket, prefix()) + p }

	fmt.Printf("vfs bench: %s, %d transactions of %d row(s) per round, synchronous=NORMAL, MinIO on loopback\n\n",
		time.Now().UTC().Format(time.RFC3339), *commits, *batch)

	// 1. Throughput.
	if *memprof != "" {
		runtime.MemProfileRate = 64 << 10
	}
	if *blockprof != "" {
		runtime.SetBlockProfileRate(1000)
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f) //nolint:errcheck
	}
	var def, ws []float64
	var segs []int
	// Round-by-round ratios, by arm (-ab: true for the rounds with
	// NAME=VALUE set; without it every round is in arm false).
	if *schedAB && *abEnv == "" {
		*abEnv = "WALSYNC_SCHED_BATCH=0"
	}
	abName, abValue, ab := strings.Cut(*abEnv, "=")
	if *abEnv != "" && (!ab || abName == "") {
		log.Fatalf("-ab %q: want NAME=VALUE", *abEnv)
	}
	abWas, abWasSet := os.LookupEnv(abName)
	restoreEnv := func() {
		if abWasSet {
			os.Setenv(abName, abWas) //nolint:errcheck
		} else {
			os.Unsetenv(abName) //nolint:errcheck
		}
	}
	arms := map[bool][]float64{}
	for r := 0; r < *rounds; r++ {
		// Arms change every two rounds, so each has both orders.
		set := ab && (r/2)%2 == 1
		if set {
			os.Setenv(abName, abValue) //nolint:errcheck
		} else if ab {
			restoreEnv()
		}
		for _, walsyncVFS := range []bool{r%2 == 1, r%2 == 0} {
			p := fresh()
			params := ""
			if walsyncVFS {
				b := s3url("")
				if *fileBkt {
					b = "file://" + filepath.Join(work, "bucket")
				}
				params = "vfs=walsync&walsync_bucket=" + url.QueryEscape(b)
			}
			var rate float64
			label := map[bool]string{true: "walsync", false: "default"}[walsyncVFS]
			pprof.Do(context.Background(), pprof.Labels("vfs", label), func(context.Context) { rate = throughput(p, params) })
			if walsyncVFS {
				ws = append(ws, rate)
				if !*fileBkt {
					segs = append(segs, countObjects(client, bucket, prefix()+"/app/wal/"))
				}
			} else {
				def = append(def, rate)
			}
		}
		arms[set] = append(arms[set], ws[r]/def[r])
	}
	if ab {
		restoreEnv()
	}
	if *cpuprof != "" {
		pprof.StopCPUProfile()
	}
	for _, p := range []struct{ file, profile string }{{*memprof, "allocs"}, {*blockprof, "block"}} {
		if p.file == "" {
			continue
		}
		f, err := os.Create(p.file)
		if err == nil {
			err = pprof.Lookup(p.profile).WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			log.Fatal(err)
		}
	}
	md, mw := median(def), median(ws)
	fmt.Printf("| insert throughput (transactions/s) | default VFS | vfs=walsync (async) | ratio |\n|---|---|---|---|\n")
	fmt.Printf("| median of %d rounds | %.0f | %.0f | %.3f |\n", *rounds, md, mw, mw/md)
	fmt.Printf("| rounds | %s | %s | |\n\n", rates(def), rates(ws))
	// Each walsync round beside the default round next to it: the
	// machine's drift (the same build varies by 10 %% between runs here)
	// cancels out of these ratios.
	fmt.Printf("round-by-round ratio: %s\n\n", quartiles(slices.Concat(arms[false], arms[true])))
	if ab {
		fmt.Printf("round-by-round ratio, environment as given: %s\n", quartiles(arms[false]))
		fmt.Printf("round-by-round ratio, with %s: %s\n\n", *abEnv, quartiles(arms[true]))
	}
	if len(segs) > 0 {
		fmt.Printf("segments uploaded per vfs=walsync round (%d transactions): %v\n\n", *commits, segs)
	}

	// 2. Sync commit latency.
	p := fresh()
	lat := commitLatencies(p, "vfs=walsync&walsync_sync=1&walsync_bucket="+url.QueryEscape(s3url("")), *syncN)
	fmt.Printf("| walsync_sync=1 commit latency, %d commits | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n", *syncN)
	fmt.Printf("| MinIO on loopback | %s | %s | %s | %s |\n\n", pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))

	// 3. Commit-to-durable lag, VFS (async) and walsync watch.
	p = fresh()
	vfsLag := lagVFS(p, "vfs=walsync&walsync_bucket="+url.QueryEscape(s3url("")))
	p = fresh()
	watchLag := lagWatch(p, s3url(""), ep)
	fmt.Printf("| commit-to-durable lag, %d commits %v apart | p50 | p99 | max |\n|---|---|---|---|\n", *lagN, *spacing)
	fmt.Printf("| vfs=walsync (async) | %s | %s | %s |\n", pct(vfsLag, 50), pct(vfsLag, 99), pct(vfsLag, 100))
	fmt.Printf("| walsync watch | %s | %s | %s |\n", pct(watchLag, 50), pct(watchLag, 99), pct(watchLag, 100))
}

// countObjects counts the objects under prefix.
func countObjects(client *s3api.Client, bucket, prefix string) int {
	n := 0
	p := s3api.NewListObjectsV2Paginator(client, &s3api.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		n += len(page.Contents)
	}
	return n
}

func open(path, params string) *sql.DB {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Fatal(err)
	}
	dsn := "file:" + path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000"
	if params != "" {
		dsn += "&" + params
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		log.Fatal(err)
	}
	return db
}

var payload = func() []byte {
	b := make([]byte, 200)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}()

func insert(db *sql.DB) {
	tx, err := db.Begin()
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < *batch; i++ {
		if _, err := tx.Exec("INSERT INTO t (v) VALUES (?)", payload); err != nil {
			log.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
}

// throughput returns transactions per second; closing (which ships what
// is pending with the VFS) is not counted.
func throughput(path, params string) float64 {
	if *detail {
		// One thread commits, so that the kernel's accounting of that
		// thread (threadSched) describes the committing work alone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	db := open(path, params)
	insert(db) // the first commit starts the replication
	time.Sleep(500 * time.Millisecond)
	var ru0, ru1 syscall.Rusage
	var ms0, ms1 runtime.MemStats
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0) //nolint:errcheck
	runtime.ReadMemStats(&ms0)
	minio0 := minioCPU()
	durs := make([]time.Duration, 0, *commits)
	run0, wait0, schedOK := threadSched()
	mono0 := monotonic()
	start := time.Now()
	for i := 0; i < *commits; i++ {
		t := time.Now()
		insert(db)
		durs = append(durs, time.Since(t))
	}
	wall := time.Since(start)
	mono1 := monotonic()
	rate := float64(*commits) / wall.Seconds()
	if *detail {
		if run1, wait1, ok := threadSched(); ok && schedOK {
			run, wait := run1-run0, wait1-wait0
			fmt.Printf("thread on CPU %v, waiting for a CPU %v, off CPU %v; ", run.Round(time.Millisecond), wait.Round(time.Millisecond), (wall - run - wait).Round(time.Millisecond))
		}
		if fi, err := os.Stat(path + "-wal"); err == nil {
			fmt.Printf("WAL %d KiB; ", fi.Size()>>10)
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1) //nolint:errcheck
		runtime.ReadMemStats(&ms1)
		cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
		var slow time.Duration
		nslow := 0
		for _, d := range durs {
			if d > time.Millisecond {
				slow += d
				nslow++
			}
		}
		slices.Sort(durs)
		vfsName := "default"
		if params != "" {
			vfsName = "walsync"
		}
		fmt.Printf("round %-7s %6.0f tx/s, wall %v: commit p50 %v p99 %v max %v; %d over 1 ms, %v in all; CPU %v (MinIO %v); %d GC cycles, %.1f MiB allocated; thread %d, %.6f-%.6f s\n",
			vfsName, rate, wall.Round(time.Millisecond), durs[len(durs)/2].Round(time.Microsecond), durs[len(durs)*99/100].Round(time.Microsecond),
			durs[len(durs)-1].Round(time.Microsecond), nslow, slow.Round(time.Millisecond), cpu.Round(time.Millisecond), (minioCPU() - minio0).Round(time.Millisecond), ms1.NumGC-ms0.NumGC, float64(ms1.TotalAlloc-ms0.TotalAlloc)/(1<<20),
			syscall.Gettid(), mono0, mono1)
	}
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}
	return rate
}

// monotonic is CLOCK_MONOTONIC in seconds, the clock of `perf record -k
// mono`, so that a trace can be cut at a round's first and last commit.
func monotonic() float64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) //nolint:errcheck
	return float64(ts.Nano()) / 1e9
}

func commitLatencies(path, params string, n int) []time.Duration {
	db := open(path, params)
	insert(db)
	var out []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		insert(db)
		out = append(out, time.Since(start))
	}
	db.Close()
	return out
}

// spoolState is the part of state.json the lag needs.
type spoolState struct {
	NextSeq uint64 `json:"next_seq"`
}

func spoolDir(db string) string {
	return filepath.Join(filepath.Dir(db), "."+filepath.Base(db)+"-walsync")
}

// nextSeq reads the spool's next segment number.
func nextSeq(db string) uint64 {
	b, err := os.ReadFile(filepath.Join(spoolDir(db), "state.json"))
	if err != nil {
		return 0
	}
	var st spoolState
	json.Unmarshal(b, &st) //nolint:errcheck
	return st.NextSeq
}

// spoolEmpty reports whether no spooled object waits for upload.
func spoolEmpty(db string) bool {
	entries, err := os.ReadDir(spoolDir(db))
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".segment") || strings.HasSuffix(e.Name(), ".snapshot") {
			return false
		}
	}
	return true
}

// waitDurable waits until the spool moved past before and is empty.
func waitDurable(db string, before uint64) time.Duration {
	start := time.Now()
	for time.Since(start) < 30*time.Second {
		if nextSeq(db) > before && spoolEmpty(db) {
			return time.Since(start)
		}
		time.Sleep(200 * time.Microsecond)
	}
	log.Fatalf("%s: not durable after 30 s", db)
	return 0
}

func measureLag(db string, w *sql.DB) []time.Duration {
	var out []time.Duration
	for i := 0; i < *lagN; i++ {
		time.Sleep(*spacing)
		before := nextSeq(db)
		insert(w)
		out = append(out, waitDurable(db, before)) // from the commit's return
	}
	return out
}

func lagVFS(path, params string) []time.Duration {
	db := open(path, params)
	insert(db)
	waitDurable(path, 0)
	lag := measureLag(path, db)
	db.Close()
	return lag
}

func lagWatch(path, bucket, endpoint string) []time.Duration {
	db := open(path, "")
	insert(db)
	cmd := exec.Command(*walsync, "watch", path, "-b", bucket, "--endpoint", endpoint)
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	waitDurable(path, 0)
	lag := measureLag(path, db)
	db.Close()
	return lag
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func rates(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf("%.0f", x))
	}
	return strings.Join(parts, ", ")
}

func pct(v []time.Duration, p int) string {
	s := slices.Clone(v)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)].Round(10 * time.Microsecond).String()
}

// quartiles describes ratios: median, quartiles, count.
func quartiles(r []float64) string {
	if len(r) == 0 {
		return "no rounds"
	}
	r = slices.Sorted(slices.Values(r))
	n4 := len(r) / 4
	return fmt.Sprintf("median %.3f, quartiles %.3f-%.3f, of %d pairs", r[len(r)/2], r[n4], r[len(r)-1-n4], len(r))
}

// threadSched is the calling thread's time on a CPU and time runnable but
// waiting for one, so far (/proc/thread-self/schedstat); ok is false when
// the kernel does not say.
func threadSched() (run, wait time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0, 0, false
	}
	var r, w int64
	if _, err := fmt.Sscan(string(b), &r, &w); err != nil {
		return 0, 0, false
	}
	return time.Duration(r), time.Duration(w), true
}

// minioCPU is the CPU time MinIO (WALSYNC_TEST_MINIO_PID) has used so far,
// from /proc (clock ticks of 10 ms); 0 when unknown.
func minioCPU() time.Duration {
	b, err := os.ReadFile("/proc/" + os.Getenv("WALSYNC_TEST_MINIO_PID") + "/stat")
	if err != nil {
		return 0
	}
	st := string(b)
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime) //nolint:errcheck
	fmt.Sscan(f[12], &stime) //nolint:errcheck
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
