package testenv

// A TCP proxy that injects network faults between a client under test and
// a server (Kafka or Redis): latency with jitter, a bandwidth cap, resets
// in the middle of a request or between a request and its reply, and a
// blackhole. It is written here rather than taken from toxiproxy because
// toxiproxy's toxics act on a byte stream without knowing where a request
// ends, so they cannot reset "after this command was forwarded and before
// its reply", which is what an ambiguous commit needs; and the library
// would add zerolog, gorilla/mux and tomb (and an old client_golang pin) to
// the module for what is about 300 lines.

import (
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// ResetMode says where a matched request's connection is reset.
type ResetMode int

const (
	// ResetMidRequest forwards the first half of the matched chunk, then
	// resets: the server sees a truncated request.
	ResetMidRequest ResetMode = iota
	// ResetBeforeReply forwards the whole matched chunk, then resets the
	// connection when the server's reply arrives, discarding it: the
	// request took effect, the client does not know.
	ResetBeforeReply
)

// Proxy forwards TCP connections from its address to a target and injects
// faults on demand. Its randomness (jitter) comes from a seed. It is safe
// for concurrent use and is closed when its test ends.
type Proxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	rng       *rand.Rand
	latency   time.Duration
	jitter    time.Duration
	bandwidth int // bytes per second per direction; 0: unlimited
	blackhole bool
	rules     []*resetRule
	watches   []*watch
	conns     map[*proxyConn]struct{}
	closed    bool
	accepted  int

	wg sync.WaitGroup
}

type resetRule struct {
	mode  ResetMode
	match func(chunk []byte) bool
	left  int // resets still to do
	done  int
}

type watch struct {
	match  func(chunk []byte) bool
	chunks [][]byte
}

type proxyConn struct {
	client, server net.Conn
	once           sync.Once
	mu             sync.Mutex
	dead           bool // saw the blackhole: never forwards again
	resetOnReply   bool
}

// NewProxy starts a proxy on a free port of 127.0.0.1 in front of target.
func NewProxy(tb testing.TB, target string, seed uint64) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: proxy listen: %v", err)
	}
	p := newProxy(ln, target, seed)
	tb.Cleanup(p.Close)
	return p
}

func newProxy(ln net.Listener, target string, seed uint64) *Proxy {
	p := &Proxy{ln: ln, target: target, rng: rand.New(rand.NewPCG(seed, 0x5eed)), conns: map[*proxyConn]struct{}{}}
	p.wg.Go(p.accept)
	return p
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is the number of connections accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// SetLatency delays every chunk of data, in each direction, by d plus a
// uniformly random [0, jitter).
func (p *Proxy) SetLatency(d, jitter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency, p.jitter = d, jitter
}

// SetBandwidth caps each direction of each connection at bytesPerSec (0:
// no cap).
func (p *Proxy) SetBandwidth(bytesPerSec int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bandwidth = bytesPerSec
}

// Blackhole drops all traffic while on. Connections open meanwhile, and
// those accepted meanwhile, are left half-open: nothing they carry is ever
// forwarded again and neither side is told, so only the clients' own
// timeouts get rid of them. Connections made after the heal work.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = on
	if on {
		for c := range p.conns {
			c.mu.Lock()
			c.dead = true
			c.mu.Unlock()
		}
	}
}

// ResetAll resets every open connection (the client sees ECONNRESET).
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.reset()
	}
}

// ResetOn resets the connection of the next n client chunks that match, as
// mode says, and returns a function that reports how many resets it has
// done so far.
func (p *Proxy) ResetOn(mode ResetMode, n int, match func(chunk []byte) bool) (done func() int) {
	r := &resetRule{mode: mode, match: match, left: n}
	p.mu.Lock()
	p.rules = append(p.rules, r)
	p.mu.Unlock()
	return func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return r.done
	}
}

// Watch records a copy of every client chunk that matches from now on, and
// returns a function that returns them in the order they were forwarded
// (or reset).
func (p *Proxy) Watch(match func(chunk []byte) bool) (seen func() [][]byte) {
	w := &watch{match: match}
	p.mu.Lock()
	p.watches = append(p.watches, w)
	p.mu.Unlock()
	return func() [][]byte {
		p.mu.Lock()
		defer p.mu.Unlock()
		return append([][]byte(nil), w.chunks...)
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.close()
			return
		}
		p.accepted++
		c.dead = p.blackhole
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c, c.client, c.server, true) })
		p.wg.Go(func() { p.pipe(c, c.server, c.client, false) })
	}
}

// pipe copies one direction of c (up: client to server) chunk by chunk,
// applying the faults in force.
func (p *Proxy) pipe(c *proxyConn, from, to net.Conn, up bool) {
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			if !p.forward(c, to, buf[:n], up) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forward writes chunk to `to` after the faults; false ends the connection.
func (p *Proxy) forward(c *proxyConn, to net.Conn, chunk []byte, up bool) bool {
	p.mu.Lock()
	delay := p.latency
	if p.jitter > 0 {
		delay += time.Duration(p.rng.Int64N(int64(p.jitter)))
	}
	if p.bandwidth > 0 {
		delay += time.Duration(int64(len(chunk)) * int64(time.Second) / int64(p.bandwidth))
	}
	var rule *resetRule
	if up {
		for _, w := range p.watches {
			if w.match(chunk) {
				w.chunks = append(w.chunks, append([]byte(nil), chunk...))
			}
		}
		for _, r := range p.rules {
			if r.left > 0 && r.match(chunk) {
				r.left--
				r.done++
				rule = r
				break
			}
		}
	}
	p.mu.Unlock()

	c.mu.Lock()
	dead, resetNow := c.dead, !up && c.resetOnReply
	if rule != nil && rule.mode == ResetBeforeReply {
		c.resetOnReply = true
	}
	c.mu.Unlock()
	switch {
	case dead:
		return true // dropped
	case resetNow:
		c.reset()
		return false
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if rule != nil && rule.mode == ResetMidRequest {
		_, _ = to.Write(chunk[:len(chunk)/2])
		c.reset()
		return false
	}
	_, err := to.Write(chunk)
	return err == nil
}

// reset closes both sides, the client's with an RST.
func (c *proxyConn) reset() {
	if tc, ok := c.client.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	if tc, ok := c.server.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.close()
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		_ = c.client.Close()
		_ = c.server.Close()
	})
}

// ProxySet is the fault proxies in front of the brokers of an embedded
// Kafka cluster, one per broker; see WithFaultProxies.
type ProxySet struct {
	seed    uint64
	mu      sync.Mutex
	proxies []*Proxy
}

// NewProxySet returns an empty set whose proxies are closed when tb ends.
func NewProxySet(tb testing.TB, seed uint64) *ProxySet {
	s := &ProxySet{seed: seed}
	tb.Cleanup(func() {
		for _, p := range s.All() {
			p.Close()
		}
	})
	return s
}

// All returns the proxies, one per broker listener created so far.
func (s *ProxySet) All() []*Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Proxy(nil), s.proxies...)
}

// Each calls f on every proxy.
func (s *ProxySet) Each(f func(*Proxy)) {
	for _, p := range s.All() {
		f(p)
	}
}

// listen is a kfake.ListenFn: the broker listens on a port of its own and
// advertises the address of a new proxy, which takes the address asked for,
// so every connection of every client goes through the proxy.
func (s *ProxySet) listen(network, address string) (net.Listener, error) {
	front, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	back, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		_ = front.Close()
		return nil, err
	}
	s.mu.Lock()
	px := newProxy(front, back.Addr().String(), s.seed+uint64(len(s.proxies)))
	s.proxies = append(s.proxies, px)
	s.mu.Unlock()
	return &advertised{Listener: back, addr: front.Addr()}, nil
}

// advertised is a listener that reports another address (the proxy's):
// kfake advertises a broker at its listener's Addr.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (a *advertised) Addr() net.Addr { return a.addr }

// WithFaultProxies puts a proxy of s in front of every broker of the
// embedded kfake cluster (other backends ignore it).
func WithFaultProxies(s *ProxySet) KafkaOption {
	return WithKfakeOpts(kfake.ListenFn(s.listen))
}

// IsKafkaRequest reports whether chunk starts a Kafka request of the API
// key (kmsg.Produce is 0): a 4-byte length, then the key.
func IsKafkaRequest(key int16) func([]byte) bool {
	return func(chunk []byte) bool {
		return len(chunk) >= 8 && int16(chunk[4])<<8|int16(chunk[5]) == key
	}
}
