package faultproxy

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is what the HTTP proxy does to one request.
type Fault struct {
	// Delay holds the request this long before anything else.
	Delay time.Duration
	// Status, when not 0, answers the request with this status and an S3
	// error body of Code (SlowDown, InternalError, RequestTimeout)
	// without passing it on.
	Status int
	Code   string
	// CutBody passes the request on and sends the answer's status and
	// Content-Length, but only half its body, then closes the connection.
	CutBody bool
}

// HTTPProxy is an HTTP reverse proxy in front of an S3 server that
// applies a rule to each request: an error status, or a body cut short.
type HTTPProxy struct {
	srv  *httptest.Server
	rp   *httputil.ReverseProxy
	rule atomic.Pointer[func(*http.Request) Fault]
	// Faults counts the requests a fault was applied to.
	Faults atomic.Int64
}

// StartHTTP starts an HTTP proxy to target (http://host:port) and stops it
// when the test ends. With no rule it passes everything on.
func StartHTTP(t testing.TB, target string) *HTTPProxy { return start(t, target, false) }

// StartHTTPS is StartHTTP over TLS, with a certificate of its own
// (CertPEM: point AWS_CA_BUNDLE at it).
func StartHTTPS(t testing.TB, target string) *HTTPProxy { return start(t, target, true) }

// CertPEM is the TLS proxy's certificate, PEM-encoded.
func (p *HTTPProxy) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
}

// RejectAWSChunked is a rule that answers 400, as Tigris, R2, B2 and
// Hetzner do, to an upload whose body is in aws-chunked encoding (a
// streaming signature, or trailing checksums), and passes the rest on.
func RejectAWSChunked(r *http.Request) Fault {
	if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") ||
		strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") ||
		r.Header.Get("X-Amz-Decoded-Content-Length") != "" || r.Header.Get("X-Amz-Trailer") != "" {
		return Fault{Status: http.StatusBadRequest, Code: "NotImplemented"}
	}
	return Fault{}
}

func start(t testing.TB, target string, useTLS bool) *HTTPProxy {
	t.Helper()
	p, err := NewHTTP(target, useTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy.
func (p *HTTPProxy) Close() { p.srv.Close() }

// NewHTTP starts an HTTP (or, with useTLS, HTTPS) proxy to target; Close
// stops it. For programs (bench/); tests use StartHTTP.
func NewHTTP(target string, useTLS bool) (*HTTPProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	p := &HTTPProxy{}
	p.rp = &httputil.ReverseProxy{
		// The Host header stays as the client sent it: it is part of the
		// SigV4 signature the server checks.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = u.Scheme
			pr.Out.URL.Host = u.Host
			pr.Out.Host = pr.In.Host
		},
		// A client that goes away (killed, timed out) is expected here.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if useTLS {
		p.srv = httptest.NewTLSServer(p)
	} else {
		p.srv = httptest.NewServer(p)
	}
	return p, nil
}

// URL is the proxy's endpoint.
func (p *HTTPProxy) URL() string { return p.srv.URL }

// SetRule sets the rule (nil: pass everything on).
func (p *HTTPProxy) SetRule(rule func(*http.Request) Fault) {
	if rule == nil {
		p.rule.Store(nil)
		return
	}
	p.rule.Store(&rule)
}

func (p *HTTPProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if rule := p.rule.Load(); rule != nil {
		f = (*rule)(r)
	}
	if f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	switch {
	case f.Status != 0:
		p.Faults.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by faultproxy</Message></Error>`, f.Code)
	case f.CutBody:
		p.Faults.Add(1)
		p.rp.ServeHTTP(&cutWriter{ResponseWriter: w, limit: -1}, r)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// cutWriter sends the status and headers, then half the body, then
// aborts the connection (http.ErrAbortHandler: the server closes it).
type cutWriter struct {
	http.ResponseWriter
	limit, written int64
}

func (c *cutWriter) WriteHeader(code int) {
	if n, err := strconv.ParseInt(c.Header().Get("Content-Length"), 10, 64); err == nil {
		c.limit = n / 2
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if c.limit < 0 {
		return c.ResponseWriter.Write(b)
	}
	if c.written+int64(len(b)) > c.limit {
		n, _ := c.ResponseWriter.Write(b[:c.limit-c.written])
		c.written += int64(n)
		if fl, ok := c.ResponseWriter.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	n, err := c.ResponseWriter.Write(b)
	c.written += int64(n)
	return n, err
}
