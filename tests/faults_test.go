package tests

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
)

// Through a proxy in front of MinIO that cuts GET bodies in half (LIST
// included), delays some, answers 500 and 408 RequestTimeout to GETs, 503
// SlowDown and 408 to PUTs (walsync makes no HEAD on these paths): every
// restore, list, snapshot, watch and verify succeeds, byte-exact, and no
// line of the SDK's own logger reaches stderr.
func TestStorageFaultsRetried(t *testing.T) {
	env := testenv.S3(t)
	tg := s3Target(t)
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 300)
	w := startWatch(t, tg.cli, tg.args(src)...)
	app := openDB(t, src)
	app.SetMaxOpenConns(1)
	for i := 0; i < 8; i++ {
		insertBatches(t, app, 10*i, 200, 50)
		exec1(t, app, "SELECT 1") // a pause between segments
	}
	w.stop()

	p := faultproxy.StartHTTP(t, env.Endpoint)
	var gets, puts atomic.Int64
	p.SetRule(func(r *http.Request) faultproxy.Fault {
		switch r.Method {
		case http.MethodGet: // objects and listings
			n := gets.Add(1)
			switch {
			case n%10 == 0:
				return faultproxy.Fault{Status: http.StatusInternalServerError, Code: "InternalError"}
			case n%10 == 5:
				return faultproxy.Fault{Status: http.StatusRequestTimeout, Code: "RequestTimeout"}
			case n%7 == 0:
				return faultproxy.Fault{Delay: 200 * time.Millisecond}
			case n%3 == 0:
				return faultproxy.Fault{CutBody: true}
			}
		case http.MethodPut:
			switch n := puts.Add(1); {
			case n%4 == 1:
				return faultproxy.Fault{Status: http.StatusServiceUnavailable, Code: "SlowDown"}
			case n%4 == 3:
				return faultproxy.Fault{Status: http.StatusRequestTimeout, Code: "RequestTimeout"}
			}
		}
		return faultproxy.Fault{}
	})
	faulty := tg
	faulty.flags = []string{"--endpoint", p.URL()}
	want := checkpointed(t, app, src)
	for i := 0; i < 10; i++ {
		out := filepath.Join(t.TempDir(), "restored.db")
		r := faulty.cli.ok(t, faulty.args("restore", "app", "-o", out)...)
		if strings.Contains(r.stderr, "SDK ") {
			t.Fatalf("the SDK's own logger reached stderr:\n%s", r.stderr)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		mustEqualFiles(t, got, src, want)
	}
	faulty.cli.ok(t, faulty.args("list")...)
	faulty.cli.ok(t, faulty.args("snapshot", src, "--name", "again")...)

	// watch through the faults: its uploads, the bucket index and the
	// claim go through retries; what it shipped restores exactly.
	w = startWatch(t, faulty.cli, faulty.args(src)...)
	for i := 8; i < 12; i++ {
		insertBatches(t, app, 10*i, 200, 50)
		exec1(t, app, "SELECT 1")
	}
	w.stop()
	want = checkpointed(t, app, src)
	out := filepath.Join(t.TempDir(), "after-watch.db")
	faulty.cli.ok(t, faulty.args("restore", "app", "-o", out)...)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualFiles(t, got, src, want)
	faulty.cli.ok(t, faulty.args("verify")...)
	t.Logf("faults injected: %d (GETs %d, PUTs %d)", p.Faults.Load(), gets.Load(), puts.Load())
	if p.Faults.Load() < 20 {
		t.Fatalf("only %d faults injected: the test did not exercise the retries", p.Faults.Load())
	}
}

// An endpoint that accepts connections and never answers: `walsync list`
// fails (the docs say within 25 s; it took 151 s), and `walsync watch`
// says within 30 s that uploads are not getting through, then when they
// go through again; the restore is exact.
func TestSilentEndpoint(t *testing.T) {
	env := testenv.S3(t)
	tg := s3Target(t)
	p := faultproxy.Start(t, env.Endpoint)
	silent := tg
	silent.flags = []string{"--endpoint", p.URL()}
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 100)
	w := startWatch(t, silent.cli, silent.args(src)...)
	app := openDB(t, src)
	app.SetMaxOpenConns(1)
	insertBatches(t, app, 1, 50, 10)
	time.Sleep(1500 * time.Millisecond)
	p.Set(faultproxy.Blackhole)
	start := time.Now()
	r := silent.cli.run(t, silent.args("list")...)
	took := time.Since(start)
	t.Logf("list against a silent endpoint failed after %v: %s", took.Round(time.Second), strings.TrimSpace(r.stderr))
	if r.code == 0 {
		t.Fatal("list against a silent endpoint succeeded")
	}
	if took > 60*time.Second {
		t.Fatalf("list against a silent endpoint took %v to fail (the docs say 25 s)", took)
	}
	insertBatches(t, app, 2, 50, 10)
	waitLog(t, w, "uploads are not getting through", 45*time.Second)
	p.Set(faultproxy.Pass)
	waitLog(t, w, "uploads go through again", 90*time.Second)
	w.cmd.Process.Signal(os.Interrupt)
	<-w.done
	verifyRestore(t, tg, app, src, "app")
}

// A TLS endpoint that rejects aws-chunked uploads, as Tigris, R2, B2 and
// Hetzner do (and slow: every request held 20 ms): watch, snapshot,
// restore and verify work through it, and no upload is rejected.
func TestTLSEndpointRejectingAWSChunked(t *testing.T) {
	env := testenv.S3(t)
	tg := s3Target(t)
	p := faultproxy.StartHTTPS(t, env.Endpoint)
	var rejected atomic.Int64
	p.SetRule(func(r *http.Request) faultproxy.Fault {
		f := faultproxy.RejectAWSChunked(r)
		if f.Status != 0 {
			rejected.Add(1)
		}
		f.Delay = 20 * time.Millisecond
		return f
	})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, p.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	strict := tg
	strict.cli = &cli{env: append(append([]string{}, tg.cli.env...), "AWS_CA_BUNDLE="+ca)}
	strict.flags = []string{"--endpoint", p.URL()}
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src, 4096, "wal", 200)
	w := startWatch(t, strict.cli, strict.args(src)...)
	app := openDB(t, src)
	app.SetMaxOpenConns(1)
	for i := 0; i < 5; i++ {
		insertBatches(t, app, 10*i, 100, 25)
		time.Sleep(300 * time.Millisecond)
	}
	w.stop()
	strict.cli.ok(t, strict.args("snapshot", src, "--name", "manual")...)
	verifyRestore(t, strict, app, src, "app")
	strict.cli.ok(t, strict.args("verify")...)
	if n := rejected.Load(); n > 0 {
		t.Fatalf("%d uploads in aws-chunked encoding were sent (and rejected)", n)
	}
}
