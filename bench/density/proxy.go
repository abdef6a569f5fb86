package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Phases of one run; every request is counted in the phase it started in.
const (
	phaseStartup = iota // the replicator starts and takes its first copies
	phaseLoad           // the write load runs
	phaseDrain          // writes stopped; the last commits are shipped
	phaseIdle           // no writes: what an idle database costs
	phaseStop           // SIGTERM and shutdown
	nPhases
)

var phaseNames = [nPhases]string{"startup", "load", "drain", "idle", "stop"}

// putRec is one completed PUT of a WAL object: when its request reached
// the proxy and when the answer went back, relative to the run's base
// time, and the capture time the tool stamped on it (Unix ms; 0: none).
type putRec struct {
	start, end time.Duration
	stampMs    int64
}

// layout tells the proxy which keys belong to the tool under test.
type layout struct {
	// data: an object that holds database content (the first one of a
	// database ends its start-up).
	data func(key string) bool
	// wal: an object that carries newly committed transactions; its
	// completion is what commit-to-durable lag measures.
	wal func(key string) bool
	// stamp: when the tool read the WAL extent the object holds, as the
	// tool records it on the object (Unix milliseconds, truncated).
	stamp func(r *http.Request, key string) (int64, bool)
}

// walsyncStamp: the segment key's time, <seq>-<YYYYMMDDHHMMSSmmm>.wal, UTC,
// taken right after the wal-index was read (replicate/db.go, capture).
var walsyncStamp = regexp.MustCompile(`/wal/[0-9]+-([0-9]{14})([0-9]{3})\.wal`)

var layouts = map[string]layout{
	// walsync: <name>/snapshots/<time>.db.zst, <name>/wal/<seq>-<time>.wal
	// (docs/FORMAT.md), plus <name>/lock.json (not data).
	"walsync": {
		data: func(k string) bool { return strings.Contains(k, "/snapshots/") || strings.Contains(k, "/wal/") },
		wal:  func(k string) bool { return strings.Contains(k, "/wal/") },
		stamp: func(_ *http.Request, k string) (int64, bool) {
			m := walsyncStamp.FindStringSubmatch(k)
			if m == nil {
				return 0, false
			}
			t, err := time.Parse("20060102150405", m[1])
			if err != nil {
				return 0, false
			}
			ms, _ := strconv.Atoi(m[2])
			return t.UnixMilli() + int64(ms), true
		},
	},
	// Litestream v0.5.18, as observed through the proxy:
	// <path>/<level, 4 digits>/<minTXID>-<maxTXID>.ltx. Level 0000 holds one
	// LTX file per sync of the WAL (every second while it changes), 0001 to
	// 0003 are compactions of it (30 s, 5 min, 1 h), 0009 snapshots. The
	// PUT carries x-amz-meta-litestream-timestamp, the LTX header's
	// timestamp (milliseconds), taken right after the WAL extent was read.
	"litestream": {
		data: func(k string) bool { return strings.HasSuffix(k, ".ltx") },
		wal:  func(k string) bool { return strings.Contains(k, "/0000/") && strings.HasSuffix(k, ".ltx") },
		stamp: func(r *http.Request, _ string) (int64, bool) {
			t, err := time.Parse(time.RFC3339Nano, r.Header.Get("X-Amz-Meta-Litestream-Timestamp"))
			if err != nil {
				return 0, false
			}
			return t.UnixMilli(), true
		},
	},
}

// counter is the counting reverse proxy in front of MinIO.
type counter struct {
	base   time.Time
	bucket string
	lay    layout
	phase  atomic.Int32
	proxy  *httputil.ReverseProxy

	trace io.Writer // every request, one line each (nil: none)

	mu       sync.Mutex
	ops      [nPhases]map[string]int // operation -> requests
	perDB    [nPhases]map[string]int // database name -> requests
	failed   map[string]int          // "PUT 412" -> count (non-2xx answers)
	firstPut map[string]time.Duration
	walPuts  map[string][]putRec
	// proxyErrs: the first failures to reach MinIO (answered 502).
	proxyErrs []string
}

func newCounter(target *url.URL, bucket string, lay layout, base time.Time) *counter {
	c := &counter{base: base, bucket: bucket, lay: lay, failed: map[string]int{},
		firstPut: map[string]time.Duration{}, walPuts: map[string][]putRec{}}
	for i := range c.ops {
		c.ops[i] = map[string]int{}
		c.perDB[i] = map[string]int{}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 1024
	c.proxy = &httputil.ReverseProxy{
		// The Host header stays as the client sent it: it is part of the
		// SigV4 signature MinIO checks.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = target.Scheme
			pr.Out.URL.Host = target.Host
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			c.mu.Lock()
			if len(c.proxyErrs) < 5 {
				c.proxyErrs = append(c.proxyErrs, r.Method+" "+r.URL.RequestURI()+": "+err.Error())
			}
			c.mu.Unlock()
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return c
}

// statusWriter remembers the status code of the answer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (c *counter) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Since(c.base)
	phase := int(c.phase.Load())
	op, key, name := c.classify(r)
	sw := &statusWriter{ResponseWriter: rw}
	c.proxy.ServeHTTP(sw, r)
	end := time.Since(c.base)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.trace != nil {
		fmt.Fprintf(c.trace, "%s\t%.3f\t%.3f\t%s\t%d\t%s\t%s\n", phaseNames[phase], start.Seconds(), end.Seconds(), op, sw.code, r.Method, r.URL.RequestURI())
	}
	c.ops[phase][op]++
	c.perDB[phase][name]++
	if sw.code < 200 || sw.code > 299 {
		c.failed[op+" "+http.StatusText(sw.code)]++
		return
	}
	if op != "PUT" || name == "" {
		return
	}
	if _, ok := c.firstPut[name]; !ok && c.lay.data(key) {
		c.firstPut[name] = end
	}
	if c.lay.wal(key) {
		rec := putRec{start: start, end: end}
		if ms, ok := c.lay.stamp(r, key); ok {
			rec.stampMs = ms
		}
		c.walPuts[name] = append(c.walPuts[name], rec)
	}
}

// classify names the S3 operation of a path-style request, its key and
// the database it concerns (the key's first segment; for a LIST, the
// prefix's).
func (c *counter) classify(r *http.Request) (op, key, name string) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	_, key, _ = strings.Cut(p, "/")
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && key == "" && (q.Has("list-type") || q.Has("prefix") || len(q) == 0):
		op = "LIST"
		key = q.Get("prefix")
	case r.Method == http.MethodGet:
		op = "GET"
	case r.Method == http.MethodPut && q.Has("uploadId"):
		op = "PUT-part"
	case r.Method == http.MethodPut:
		op = "PUT"
	case r.Method == http.MethodPost && q.Has("delete"):
		op = "DELETE-multi"
	case r.Method == http.MethodPost:
		op = "POST"
	case r.Method == http.MethodHead:
		op = "HEAD"
	case r.Method == http.MethodDelete:
		op = "DELETE"
	default:
		op = r.Method
	}
	if key == "" {
		op += "(bucket)"
	}
	name, _, _ = strings.Cut(key, "/")
	return op, key, name
}

// opCounts returns the operation counts of a phase, sorted by count.
func (c *counter) opCounts(phase int) []opCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []opCount
	for op, n := range c.ops[phase] {
		out = append(out, opCount{op, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].N != out[j].N {
			return out[i].N > out[j].N
		}
		return out[i].Op < out[j].Op
	})
	return out
}

// total returns the number of requests of a phase.
func (c *counter) total(phase int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.ops[phase] {
		n += v
	}
	return n
}

// replicated returns how many of names have had their first data PUT.
func (c *counter) replicated(names []string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, name := range names {
		if _, ok := c.firstPut[name]; ok {
			n++
		}
	}
	return n
}

type opCount struct {
	Op string `json:"op"`
	N  int    `json:"n"`
}
