package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOption configures Redis.
type RedisOption func(*redisConfig)

type redisConfig struct {
	aof     bool
	backend Backend // empty: from the environment
}

// WithAOF turns on the append-only file (fsync on every write) in a
// per-test directory, so that data survives Stop, Kill and Start. Only the
// embedded backend honors it; elsewhere restarts are not available anyway.
func WithAOF() RedisOption { return func(c *redisConfig) { c.aof = true } }

// withRedisBackend forces a backend, for the harness's own tests.
func withRedisBackend(b Backend) RedisOption { return func(c *redisConfig) { c.backend = b } }

// RedisServer is the Redis of one test. Its methods may be called from any
// goroutine, but Stop, Start and Kill must not race with each other.
type RedisServer struct {
	tb       testing.TB
	backend  Backend
	addrs    []string
	password string
	prefix   string

	// embedded only
	args []string

	mu   sync.Mutex
	proc *redisProc // nil while stopped
}

type redisProc struct {
	cmd  *exec.Cmd
	out  *LockedBuffer
	done chan struct{} // closed once the process has exited and been reaped
}

// Redis returns a Redis for tb, released when tb ends: a fresh redis-server
// child process on a free port (embedded), the server at REDIS_ADDR
// (external), or a container (testcontainers). It skips the test when the
// backend is unavailable: no redis-server on PATH, REDIS_ADDR unset, no
// container engine.
func Redis(tb testing.TB, opts ...RedisOption) *RedisServer {
	tb.Helper()
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.backend == "" {
		cfg.backend = backendFor(tb, "REDIS_ADDR")
	}
	s := &RedisServer{tb: tb, backend: cfg.backend, prefix: "sw"}
	switch cfg.backend {
	case External:
		addr := os.Getenv("REDIS_ADDR")
		if addr == "" {
			tb.Skip("testenv: external Redis backend selected but REDIS_ADDR is not set")
		}
		s.addrs = strings.Split(addr, ",")
		s.password = os.Getenv("REDIS_PASSWORD")
		s.prefix = "sw-" + uniqueSuffix()
		tb.Cleanup(s.deletePrefix)
	case Testcontainers:
		s.addrs = []string{redisContainer(tb)}
	default:
		s.startEmbedded(cfg)
	}
	return s
}

func (s *RedisServer) startEmbedded(cfg redisConfig) {
	tb := s.tb
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("testenv: redis-server is not on PATH (apt-get install redis-server), or set REDIS_ADDR and SW_TEST_BACKEND=external")
	}
	dir := tb.TempDir()
	tb.Cleanup(func() { s.kill() })
	// A port that was free may be taken before redis-server binds it: try a
	// few.
	var out string
	for range 3 {
		port := FreePort(tb)
		s.addrs = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		s.args = []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--dir", dir, "--loglevel", "warning",
		}
		if cfg.aof {
			s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
		} else {
			s.args = append(s.args, "--appendonly", "no")
		}
		if out, err = s.start(bin); err == nil {
			return
		}
		if !strings.Contains(out, "in use") {
			break
		}
	}
	tb.Fatalf("testenv: start redis-server: %v\n%s", err, out)
}

// start runs redis-server with s.args and waits until it answers PING. On
// failure it returns the server's output.
func (s *RedisServer) start(bin string) (string, error) {
	p := &redisProc{out: &LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, s.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return "", err
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	if err := waitPing(s.addrs[0], p.done, 10*time.Second); err != nil {
		p.stop(os.Kill)
		return p.out.String(), err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return "", nil
}

// waitPing polls addr with PING until it answers PONG (not LOADING), the
// process exits, or the timeout passes.
func waitPing(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := ping(addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return err
		}
		select {
		case <-exited:
			return errors.New("redis-server exited")
		case <-tick.C:
		}
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return errors.New("redis: " + strings.TrimSpace(line))
	}
	return nil
}

// stop sends sig and waits for the process to exit, killing it after 10s.
func (p *redisProc) stop(sig os.Signal) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Addr returns the server's address (host:port; the first seed of an
// external Cluster).
func (s *RedisServer) Addr() string { return s.addrs[0] }

// Prefix returns the key prefix this test must use (dedupe.Keys.Prefix), or
// extend ("<prefix>-2"): "sw" on a server of its own, a unique one on a
// shared external server, where every key that begins with it is deleted
// when the test ends.
func (s *RedisServer) Prefix() string { return s.prefix }

// Backend reports where the server runs.
func (s *RedisServer) Backend() Backend { return s.backend }

// CanRestart reports whether Stop, Start and Kill are available: only for
// the embedded redis-server.
func (s *RedisServer) CanRestart() bool { return s.backend == Embedded }

// Client returns a client of the server, closed when tb ends. A
// comma-separated REDIS_ADDR gives a Cluster client.
func (s *RedisServer) Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	c := s.newClient()
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Options returns fresh client options for the server (addresses and
// password), for a test that needs a client tuned its own way.
func (s *RedisServer) Options() *redis.UniversalOptions {
	return &redis.UniversalOptions{Addrs: append([]string(nil), s.addrs...), Password: s.password}
}

func (s *RedisServer) newClient() redis.UniversalClient { return redis.NewUniversalClient(s.Options()) }

// Stop stops the server with SIGTERM and waits for it to exit; with WithAOF
// its data is persisted. It skips the test where CanRestart is false.
func (s *RedisServer) Stop() {
	s.tb.Helper()
	s.requireRestart()
	s.halt(syscall.SIGTERM)
}

// Kill kills the server with SIGKILL and waits for it to exit, as a crash
// would. With WithAOF every acknowledged write survives. It skips the test
// where CanRestart is false.
func (s *RedisServer) Kill() {
	s.tb.Helper()
	s.requireRestart()
	s.halt(os.Kill)
}

// Start restarts a stopped server on the same port and directory and waits
// until it answers PING (after loading its AOF). It skips the test where
// CanRestart is false.
func (s *RedisServer) Start() {
	s.tb.Helper()
	s.requireRestart()
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		s.tb.Fatal("testenv: Start of a running redis-server")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.tb.Fatalf("testenv: %v", err)
	}
	if out, err := s.start(bin); err != nil {
		s.tb.Fatalf("testenv: restart redis-server on %s: %v\n%s", s.Addr(), err, out)
	}
}

func (s *RedisServer) requireRestart() {
	s.tb.Helper()
	if !s.CanRestart() {
		s.tb.Skipf("testenv: the %s Redis backend cannot be stopped or restarted", s.backend)
	}
}

func (s *RedisServer) halt(sig os.Signal) {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.stop(sig)
	}
}

func (s *RedisServer) kill() { s.halt(os.Kill) }

// deletePrefix removes the keys that begin with the test's prefix from a
// shared server.
func (s *RedisServer) deletePrefix() {
	c := s.newClient()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	del := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, s.prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return del(ctx, m) })
	} else {
		err = del(ctx, c)
	}
	if err != nil {
		s.tb.Logf("testenv: delete keys %s*: %v", s.prefix, err)
	}
}

// LockedBuffer collects a child process's output; it is safe for
// concurrent use.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
