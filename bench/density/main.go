// Command density measures what one replicator process costs per database
// when it replicates many databases: memory, storage requests under a
// write load and while idle, and commit-to-durable lag. It runs walsync or
// Litestream (v0.5) the same way, against MinIO behind a counting reverse
// proxy, and appends one JSON result per run to a file:
//
//	density -tool walsync|litestream -bin PATH -n N -endpoint MINIO_URL -out results.jsonl
//	density -report results.jsonl      # the tables of docs/BENCHMARKS.md
//
// One run:
//
//  1. N WAL-mode databases db0001.db ... in one directory, one table, one
//     row each; each stays open in this process (the application) for the
//     whole run. A fresh bucket on MinIO for the run.
//  2. The tool starts as a child process with all N databases, its S3
//     endpoint being the proxy. Start-up lasts until every database has
//     had its first data object PUT (then 2 s more).
//  3. Load (-duration): every database commits one 100-byte row per
//     -period (default 1 s), database i at offset i*period/N, so N commits
//     per second in all, evenly spread.
//  4. Drain (-drain; by default 15 s for walsync, 95 s for Litestream, see
//     drainFor): no writes; the last commits are shipped and the work the
//     load left behind is done.
//  5. Idle (-idle): no writes; every request is what idle databases cost.
//  6. SIGTERM; the tool's shutdown is not measured.
//
// The tool's VmRSS (/proc/PID/status) is sampled every 500 ms; VmHWM is
// read before SIGTERM. Requests are counted by the proxy by operation,
// phase and database (the key's first segment). Credentials come from
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, passed on to the tool.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	var o options
	flag.StringVar(&o.tool, "tool", "walsync", "replicator under test: walsync or litestream")
	flag.StringVar(&o.bin, "bin", "", "the replicator's binary")
	flag.IntVar(&o.n, "n", 10, "number of databases")
	flag.StringVar(&o.endpoint, "endpoint", os.Getenv("WALSYNC_TEST_S3_ENDPOINT"), "MinIO endpoint (the proxy forwards to it)")
	flag.StringVar(&o.work, "work", os.TempDir(), "directory for the databases (a subdirectory per run, removed afterwards)")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "write load duration")
	flag.DurationVar(&o.period, "period", time.Second, "each database commits once per period")
	flag.DurationVar(&o.drain, "drain", 0, "pause between load and idle phase (0: the tool's default, see drainFor)")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "idle phase duration")
	flag.DurationVar(&o.startTimeout, "startup-timeout", 5*time.Minute, "longest wait for every database's first object")
	flag.StringVar(&o.out, "out", "", "append the result as one JSON line to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the databases and the tool's log")
	flag.StringVar(&o.trace, "trace", "", "write every request (phase, start, end, operation, status, method, URI) to this file")
	report := flag.String("report", "", "print the tables for the results in this JSON-lines file and exit")
	flag.Parse()

	if *report != "" {
		if err := printReport(*report); err != nil {
			fmt.Fprintln(os.Stderr, "density:", err)
			os.Exit(1)
		}
		return
	}
	res, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "density:", err)
		os.Exit(1)
	}
	if o.out != "" {
		b, _ := json.Marshal(res)
		f, err := os.OpenFile(o.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.Write(append(b, '\n'))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "density:", err)
			os.Exit(1)
		}
	}
	printTables(os.Stdout, []*result{res})
}

type options struct {
	tool, bin, endpoint, work, out, trace string
	n                                     int
	duration, period, drain, idle         time.Duration
	startTimeout                          time.Duration
	keep                                  bool
}

// result is one run's figures (one JSON line).
type result struct {
	Tool    string `json:"tool"`
	Version string `json:"version"`
	N       int    `json:"n"`
	Date    string `json:"date"`

	LoadSeconds   float64 `json:"load_seconds"`
	DrainSeconds  float64 `json:"drain_seconds"`
	PeriodSeconds float64 `json:"period_seconds"`
	IdleSeconds   float64 `json:"idle_seconds"`

	StartupSeconds float64 `json:"startup_seconds"` // until every database had its first data PUT
	Replicated     int     `json:"replicated"`      // databases with a data PUT before the load

	RSSLoadP50KiB int64   `json:"rss_load_p50_kib"`
	RSSLoadMaxKiB int64   `json:"rss_load_max_kib"`
	RSSIdleMaxKiB int64   `json:"rss_idle_max_kib"`
	HWMKiB        int64   `json:"vmhwm_kib"`
	CPULoadPct    float64 `json:"cpu_load_pct"` // of one core
	CPUIdlePct    float64 `json:"cpu_idle_pct"`
	LoadGenCPUPct float64 `json:"loadgen_cpu_pct"` // this program (load + proxy) during the load
	FDs           int     `json:"fds"`
	Threads       int     `json:"threads"`

	Commits      int    `json:"commits"`
	CommitErrors int    `json:"commit_errors"`
	CommitErr    string `json:"commit_error,omitempty"`

	StartupOps []opCount `json:"startup_ops"`
	LoadReq    int       `json:"load_requests"`
	LoadOps    []opCount `json:"load_ops"`
	DrainReq   int       `json:"drain_requests"`
	DrainOps   []opCount `json:"drain_ops"`
	IdleReq    int       `json:"idle_requests"`
	IdleOps    []opCount `json:"idle_ops"`
	IdleDBs    int       `json:"idle_dbs_with_requests"` // databases with at least one request while idle

	LagP50ms   float64 `json:"lag_p50_ms"`
	LagP90ms   float64 `json:"lag_p90_ms"`
	LagP99ms   float64 `json:"lag_p99_ms"`
	LagMaxms   float64 `json:"lag_max_ms"`
	NotDurable int     `json:"not_durable"`
	// The lower bound of the lag (request times only), and the time from
	// the capture stamp to the PUT (see commitLags).
	LowerP50ms      float64 `json:"lag_lower_p50_ms"`
	LowerP99ms      float64 `json:"lag_lower_p99_ms"`
	LowerNotDurable int     `json:"lag_lower_not_durable"`
	QueueP50ms      float64 `json:"capture_to_put_p50_ms"`
	QueueP99ms      float64 `json:"capture_to_put_p99_ms"`
	Unstamped       int     `json:"unstamped_wal_puts"`
	Ties            int     `json:"lag_ties"`

	Failed      map[string]int `json:"failed_requests,omitempty"`
	ProxyErrors []string       `json:"proxy_errors,omitempty"`
	LogErrors   int            `json:"log_errors"`
	LogWarnings int            `json:"log_warnings"`
	LogSample   []string       `json:"log_sample,omitempty"`
	Exit        string         `json:"exit"`
}

type rssSample struct {
	phase int
	kib   int64
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "density: "+format+"\n", args...)
}

func run(o options) (*result, error) {
	lay, ok := layouts[o.tool]
	if !ok {
		return nil, fmt.Errorf("-tool %q: want walsync or litestream", o.tool)
	}
	if o.bin == "" || o.endpoint == "" || o.n < 1 {
		return nil, errors.New("need -bin, -endpoint and -n >= 1")
	}
	target, err := url.Parse(o.endpoint)
	if err != nil {
		return nil, err
	}
	if o.drain <= 0 {
		o.drain = drainFor[o.tool]
	}
	ctx := context.Background()
	base := time.Now()
	res := &result{Tool: o.tool, N: o.n, Date: base.UTC().Format("2006-01-02"),
		LoadSeconds: o.duration.Seconds(), DrainSeconds: o.drain.Seconds(), PeriodSeconds: o.period.Seconds(), IdleSeconds: o.idle.Seconds()}
	if out, err := exec.Command(o.bin, "version").Output(); err == nil {
		res.Version = strings.TrimSpace(string(out))
	}

	// A fresh bucket, made directly on MinIO (not counted).
	bucket := fmt.Sprintf("density-%s-%d-%d", o.tool, o.n, base.Unix())
	if err := makeBucket(ctx, o.endpoint, bucket); err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", bucket, err)
	}

	dir, err := os.MkdirTemp(o.work, fmt.Sprintf("density-%s-%d-", o.tool, o.n))
	if err != nil {
		return nil, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	dbDir := filepath.Join(dir, "dbs")
	if err := os.Mkdir(dbDir, 0o755); err != nil {
		return nil, err
	}
	logf("%s, %d databases: creating them in %s", o.tool, o.n, dbDir)
	dbs, err := createDBs(dbDir, o.n)
	defer func() {
		for _, d := range dbs {
			if d != nil {
				d.db.Close()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(dbs))
	for i, d := range dbs {
		names[i] = d.name
	}

	// The counting proxy.
	ctr := newCounter(target, bucket, lay, base)
	if o.trace != "" {
		tf, err := os.Create(o.trace)
		if err != nil {
			return nil, err
		}
		defer tf.Close()
		bw := bufio.NewWriter(tf)
		defer bw.Flush()
		ctr.trace = bw
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: ctr, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	defer srv.Close()
	proxyURL := "http://" + ln.Addr().String()

	// The replicator.
	var args []string
	switch o.tool {
	case "walsync":
		args = append([]string{"watch"}, dbPaths(dbs)...)
		args = append(args, "-b", "s3://"+bucket, "--endpoint", proxyURL)
	case "litestream":
		cfg := filepath.Join(dir, "litestream.yml")
		if err := os.WriteFile(cfg, litestreamConfig(dbs, bucket, proxyURL), 0o644); err != nil {
			return nil, err
		}
		args = []string{"replicate", "-config", cfg}
	}
	logPath := filepath.Join(dir, o.tool+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(o.bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The endpoint is plain HTTP on loopback: AWS_CA_BUNDLE plays no part,
	// and Litestream v0.5.18 refuses to start when it is set ("unable to
	// add custom RootCAs HTTPClient"), so neither tool gets it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if os.Getenv("AWS_REGION") == "" {
		cmd.Env = append(cmd.Env, "AWS_REGION=us-east-1")
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill() //nolint:errcheck // best effort on an error path
			<-exited
		}
	}()
	alive := func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	}

	// RSS sampler.
	var smu sync.Mutex
	var samples []rssSample
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			if kib, err := statusKiB(pid, "VmRSS"); err == nil {
				smu.Lock()
				samples = append(samples, rssSample{int(ctr.phase.Load()), kib})
				smu.Unlock()
			}
			select {
			case <-stopSampler:
				return
			case <-exited:
				return
			case <-tick.C:
			}
		}
	}()

	// Start-up: until every database has its first data object.
	logf("%s started (pid %d), waiting for the first object of every database", o.tool, pid)
	deadline := time.Now().Add(o.startTimeout)
	for alive() && time.Now().Before(deadline) {
		if ctr.replicated(names) == len(names) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.StartupSeconds = time.Since(base).Seconds()
	res.Replicated = ctr.replicated(names)
	if !alive() {
		return nil, fmt.Errorf("%s exited during start-up (%v); its log: %s", o.tool, waitErr, tail(logPath))
	}
	if res.Replicated < len(names) {
		logf("warning: only %d of %d databases had an object after %v; starting the load anyway", res.Replicated, len(names), o.startTimeout)
	}
	time.Sleep(2 * time.Second)

	// Load.
	logf("load: %d commits/s for %v", int(float64(o.n)/o.period.Seconds()), o.duration)
	ctr.phase.Store(phaseLoad)
	cpu0, _ := cpuSeconds(pid)
	self0, _ := cpuSeconds(0)
	loadStart := time.Now()
	lctx, cancel := context.WithTimeout(ctx, o.duration)
	runLoad(lctx, dbs, base, o.period)
	cancel()
	loadSecs := time.Since(loadStart).Seconds()
	cpu1, _ := cpuSeconds(pid)
	self1, _ := cpuSeconds(0)
	res.CPULoadPct = 100 * (cpu1 - cpu0) / loadSecs
	res.LoadGenCPUPct = 100 * (self1 - self0) / loadSecs
	res.FDs, res.Threads = openFDs(pid), threads(pid)

	// Drain, then idle.
	ctr.phase.Store(phaseDrain)
	logf("drain %v, then idle %v", o.drain, o.idle)
	time.Sleep(o.drain)
	ctr.phase.Store(phaseIdle)
	idleStart := time.Now()
	cpu2, _ := cpuSeconds(pid)
	time.Sleep(o.idle)
	idleSecs := time.Since(idleStart).Seconds()
	cpu3, _ := cpuSeconds(pid)
	res.CPUIdlePct = 100 * (cpu3 - cpu2) / idleSecs
	res.HWMKiB, _ = statusKiB(pid, "VmHWM")
	until := time.Since(base)
	ctr.phase.Store(phaseStop)
	earlyExit := !alive()

	// Stop the tool.
	close(stopSampler)
	<-samplerDone
	if earlyExit {
		res.Exit = fmt.Sprintf("exited before the end of the run: %v", waitErr)
	} else {
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it is alive
		select {
		case <-exited:
			res.Exit = "ok"
			if waitErr != nil {
				res.Exit = "after SIGTERM: " + waitErr.Error()
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill() //nolint:errcheck // it did not stop
			<-exited
			res.Exit = "killed: no exit within 60 s of SIGTERM"
		}
	}

	// Figures.
	var load, idle []int64
	for _, s := range samples {
		switch s.phase {
		case phaseLoad:
			load = append(load, s.kib)
		case phaseIdle:
			idle = append(idle, s.kib)
		}
	}
	slices.Sort(load)
	slices.Sort(idle)
	res.RSSLoadP50KiB = quantile(load, 0.5)
	if len(load) > 0 {
		res.RSSLoadMaxKiB = load[len(load)-1]
	}
	if len(idle) > 0 {
		res.RSSIdleMaxKiB = idle[len(idle)-1]
	}

	commits := map[string][]time.Duration{}
	for _, d := range dbs {
		commits[d.name] = d.commits
		res.Commits += len(d.commits)
		res.CommitErrors += d.errs
		if d.lastErr != nil {
			res.CommitErr = d.lastErr.Error()
		}
	}
	ctr.mu.Lock()
	ls := commitLags(commits, ctr.walPuts, base, until)
	res.Failed = ctr.failed
	res.ProxyErrors = ctr.proxyErrs
	idleDBs := 0
	for _, name := range names {
		if ctr.perDB[phaseIdle][name] > 0 {
			idleDBs++
		}
	}
	ctr.mu.Unlock()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	q := func(s []time.Duration, p float64) float64 { return ms(quantile(s, p)) }
	res.LagP50ms, res.LagP90ms, res.LagP99ms = q(ls.stamped, 0.5), q(ls.stamped, 0.9), q(ls.stamped, 0.99)
	res.LagMaxms = q(ls.stamped, 1)
	res.NotDurable = ls.notDurableStamped
	res.LowerP50ms, res.LowerP99ms, res.LowerNotDurable = q(ls.lower, 0.5), q(ls.lower, 0.99), ls.notDurable
	res.QueueP50ms, res.QueueP99ms, res.Unstamped = q(ls.queue, 0.5), q(ls.queue, 0.99), ls.unstamped
	res.Ties = ls.ties
	res.StartupOps = ctr.opCounts(phaseStartup)
	res.LoadReq, res.LoadOps = ctr.total(phaseLoad), ctr.opCounts(phaseLoad)
	res.DrainReq, res.DrainOps = ctr.total(phaseDrain), ctr.opCounts(phaseDrain)
	res.IdleReq, res.IdleOps = ctr.total(phaseIdle), ctr.opCounts(phaseIdle)
	res.IdleDBs = idleDBs
	// Use the measured phase lengths from here on.
	res.LoadSeconds, res.IdleSeconds = loadSecs, idleSecs
	res.LogErrors, res.LogWarnings, res.LogSample = scanLog(logPath)
	if o.keep {
		logf("kept %s (log %s)", dir, logPath)
	}
	return res, nil
}

// drainFor is the default pause between the end of the load and the idle
// phase: long enough for the work the load leaves behind, so that the idle
// phase sees the steady state of a database nobody writes.
//
//   - walsync: 15 s. The last segment is up within milliseconds of the
//     last commit; its bucket index (<name>/state.json) follows within the
//     index interval (10 s), once, and nothing after it (the drain's
//     request count shows it).
//   - Litestream v0.5.18: 95 s. It checkpoints each database every minute
//     and uploads one more level-0 LTX file after the checkpoint that
//     follows the last write; its level-1 compaction (every 30 s, on the
//     clock) then merges it. After that only its LISTs remain (two per
//     database every 15 s), plus a level-2 compaction at the next 5-minute
//     mark of the clock if level 1 changed.
var drainFor = map[string]time.Duration{"walsync": 15 * time.Second, "litestream": 95 * time.Second}

func dbPaths(dbs []*appDB) []string {
	ps := make([]string, len(dbs))
	for i, d := range dbs {
		ps[i] = d.path
	}
	return ps
}

// litestreamConfig is a Litestream v0.5 configuration with one S3 replica
// per database, at <bucket>/<name>. Credentials come from the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Everything else is left at
// Litestream's defaults (1 s monitor and sync intervals, compaction levels
// at 30 s, 5 min and 1 h, a snapshot a day).
func litestreamConfig(dbs []*appDB, bucket, endpoint string) []byte {
	var b strings.Builder
	b.WriteString("dbs:\n")
	for _, d := range dbs {
		fmt.Fprintf(&b, "  - path: %s\n    replica:\n      type: s3\n      bucket: %s\n      path: %s\n      endpoint: %s\n      region: us-east-1\n      force-path-style: true\n",
			d.path, bucket, d.name, endpoint)
	}
	return []byte(b.String())
}

func makeBucket(ctx context.Context, endpoint, bucket string) error {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		return err
	}
	client := s3api.NewFromConfig(cfg, func(o *s3api.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	_, err = client.CreateBucket(ctx, &s3api.CreateBucketInput{Bucket: &bucket})
	return err
}

// scanLog counts error and warning lines of the tool's log (slog text or
// JSON: both tools log that way) and keeps the first few of them.
func scanLog(path string) (errs, warns int, sample []string) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.Contains(l, "level=ERROR"), strings.Contains(l, `"level":"ERROR"`), strings.Contains(l, "panic:"):
			errs++
		case strings.Contains(l, "level=WARN"), strings.Contains(l, `"level":"WARN"`):
			warns++
		default:
			continue
		}
		if len(sample) < 5 {
			if len(l) > 300 {
				l = l[:300] + "..."
			}
			sample = append(sample, l)
		}
	}
	return errs, warns, sample
}

// tail returns the last lines of a file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}
