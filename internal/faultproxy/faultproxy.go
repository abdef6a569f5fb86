// Package faultproxy is a TCP proxy on loopback in front of a real server
// (MinIO in the tests) that can take the server away the ways a network
// does: refuse (every connection is reset, open ones are cut) or blackhole
// (connections are accepted and never answered, open ones stall). Test
// code only: it is what "the bucket is unreachable" means in the tests of
// the VFS and of the storage faults, with the real S3 server behind it.
package faultproxy

import (
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Mode is what the proxy does with connections.
type Mode int32

const (
	// Pass forwards every connection to the target.
	Pass Mode = iota
	// Refuse resets every new connection at once and cuts the open ones:
	// an endpoint that is down.
	Refuse
	// Blackhole accepts connections and never answers; open ones stop
	// moving bytes: an endpoint that hangs.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Refuse:
		return "refuse"
	case Blackhole:
		return "blackhole"
	}
	return "unknown"
}

// Proxy forwards a loopback port to a target address.
type Proxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32

	mu    sync.Mutex
	conns map[net.Conn]struct{} // client and upstream sides of every open connection
	held  map[net.Conn]struct{} // blackholed client connections
	wg    sync.WaitGroup
}

// Start starts a proxy to target (host:port, or a URL whose host is
// taken) and stops it when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// New starts a proxy to target; Close stops it.
func New(target string) (*Proxy, error) {
	if u, err := url.Parse(target); err == nil && u.Host != "" {
		target = u.Host
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, held: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy as an http:// endpoint.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode { return Mode(p.mode.Load()) }

// Set switches the mode. Refuse and Blackhole also cut (Refuse) or stall
// (Blackhole) every connection open now; Pass lets held connections go
// (they are closed: a client retries on a new one).
func (p *Proxy) Set(m Mode) {
	p.mode.Store(int32(m))
	p.mu.Lock()
	defer p.mu.Unlock()
	switch m {
	case Refuse:
		for c := range p.conns {
			reset(c)
		}
		for c := range p.held {
			reset(c)
		}
		clear(p.held)
	case Blackhole:
		// Cutting the upstream side stops the bytes; the client side
		// stays open and silent.
		for c := range p.conns {
			if isUpstream(c) {
				c.Close()
			}
		}
	case Pass:
		for c := range p.held {
			c.Close()
		}
		clear(p.held)
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	for c := range p.held {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// upstream marks the proxy's side towards the target.
type upstream struct{ net.Conn }

func isUpstream(c net.Conn) bool { _, ok := c.(upstream); return ok }

// reset closes c with an RST where it can (SO_LINGER 0): the client sees
// "connection reset by peer", as from a server that went away.
func reset(c net.Conn) {
	if u, ok := c.(upstream); ok {
		c = u.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) //nolint:errcheck // a plain close then
	}
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		switch p.Mode() {
		case Refuse:
			reset(c)
			continue
		case Blackhole:
			p.mu.Lock()
			p.held[c] = struct{}{}
			p.mu.Unlock()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(c)
		return
	}
	u := upstream{up}
	p.mu.Lock()
	if p.Mode() != Pass {
		p.mu.Unlock()
		reset(c)
		up.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	var done sync.WaitGroup
	done.Add(2)
	go func() {
		defer done.Done()
		io.Copy(up, c) //nolint:errcheck // either side ending ends the pair
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite() //nolint:errcheck
		}
	}()
	go func() {
		defer done.Done()
		io.Copy(c, up) //nolint:errcheck
		if p.Mode() == Blackhole {
			return // the client side stays open and silent
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite() //nolint:errcheck
		}
	}()
	done.Wait()
	p.mu.Lock()
	delete(p.conns, u)
	if p.Mode() == Blackhole {
		// Kept open, silent, until the mode changes.
		delete(p.conns, c)
		p.held[c] = struct{}{}
		p.mu.Unlock()
		up.Close()
		return
	}
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
	up.Close()
}
