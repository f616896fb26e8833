// Package faultproxy is a TCP proxy for fault tests: put it between a client and Redis,
// PostgreSQL or Temporal, then take the server away (Down), cut every connection (Reset), or
// break a random fraction of the traffic (FailRate), the way a network or a restart would.
package faultproxy

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
)

// Proxy forwards connections on its address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	down      atomic.Bool
	failRate  atomic.Uint64 // a float64's bits
	failEvery atomic.Int64
	chunks    atomic.Int64
	cuts      atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Start listens on a free local port and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDown takes the target away (every connection cut, new ones closed at once) or brings it back.
func (p *Proxy) SetDown(down bool) {
	p.down.Store(down)
	if down {
		p.Reset()
	}
}

// Reset cuts every open connection, as a server restart does.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// SetFailRate makes each forwarded chunk of data cut its connection with probability r: the call
// in flight on it fails.
func (p *Proxy) SetFailRate(r float64) { p.failRate.Store(math.Float64bits(r)) }

// SetFailEvery makes every n-th forwarded chunk cut its connection (0: never): a fail rate of 1/n
// that a short run cannot dodge by chance.
func (p *Proxy) SetFailEvery(n int64) { p.failEvery.Store(n) }

// Cuts counts the connections cut by the fail rate.
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

// Close stops the proxy and cuts every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.Reset()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.track(client, true)
	p.track(server, true)
	if p.down.Load() { // went down while this one was being dialled: Reset may have missed it
		_ = client.Close()
		_ = server.Close()
	}
	defer func() {
		p.track(client, false)
		p.track(server, false)
		_ = client.Close()
		_ = server.Close()
	}()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				chunk, every := p.chunks.Add(1), p.failEvery.Load()
				if r := math.Float64frombits(p.failRate.Load()); (r > 0 && rand.Float64() < r) || (every > 0 && chunk%every == 0) {
					p.cuts.Add(1)
					_ = client.Close()
					_ = server.Close()
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return
				}
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				return
			}
		}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	_ = client.Close()
	_ = server.Close()
	<-done
}
