package s3

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/storagetest"
)

// TestReplaceWire: Replace is one PutObject signed over the real SHA-256
// like Put, with the sha256 metadata and without If-None-Match; it is
// retried like Put, the body sent whole each time, and sends no HEAD.
func TestReplaceWire(t *testing.T) {
	fakeEnv(t)
	answers := []*http.Response{errorResponse(503, "SlowDown", "Please reduce your request rate."), okResponse()}
	var n int
	fake := &fakeS3{handle: func(r request) *http.Response {
		n++
		return answers[min(n, len(answers))-1]
	}}
	c := fakeClient(t, fake, Config{Endpoint: "https://s3.example.test", Prefix: "p"})
	data := []byte(`{"version":1}`)
	sum := storagetest.Sum(data)
	if err := c.Replace(context.Background(), "app/state.json", bytes.NewReader(data), int64(len(data)), sum); err != nil {
		t.Fatalf("Replace: got=%v, want nil", err)
	}
	reqs := fake.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests: got=%d, want 2 (a retry)", len(reqs))
	}
	for _, r := range reqs {
		if r.Method != "PUT" || !strings.HasSuffix(r.Path, "/p/app/state.json") {
			t.Errorf("request %s %s: want PUT of p/app/state.json", r.Method, r.Path)
		}
		checkSignedPut(t, r, data, sum)
		if got := r.Header.Get("If-None-Match"); got != "" {
			t.Errorf("If-None-Match: got=%q, want none", got)
		}
		if got := r.Header.Get("X-Amz-Meta-Sha256"); got != sum {
			t.Errorf("x-amz-meta-sha256: got=%q, want %q", got, sum)
		}
	}

	// A wrong sum is the server's refusal, ErrChecksum, in one line.
	fake.handle = func(request) *http.Response {
		return errorResponse(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	err := c.Replace(context.Background(), "app/state.json", bytes.NewReader(data), int64(len(data)), storagetest.Sum([]byte("other")))
	if !errors.Is(err, walsync.ErrChecksum) || !strings.Contains(err.Error(), "replace s3://bucket/p/app/state.json") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Replace refused by the server: got=%v, want one line wrapping %v naming the key", err, walsync.ErrChecksum)
	}
	if err := c.Replace(context.Background(), "../x", bytes.NewReader(data), int64(len(data)), sum); err == nil || !strings.Contains(err.Error(), "invalid key") {
		t.Fatalf("Replace of an invalid key: got=%v, want an invalid key error", err)
	}
}
