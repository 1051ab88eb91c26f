package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server child process without persistence.
type redisServer struct {
	cmd    *exec.Cmd
	addr   string
	client *redis.Client
	out    bytes.Buffer
	done   chan struct{}
}

// startRedis starts redis-server on a free loopback port with persistence
// off and waits until it answers PING. args are more redis-server options.
func startRedis(ctx context.Context, dir string, args ...string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("bench: redis-server is not on PATH (apt-get install redis-server): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning"}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start redis-server: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	s.client = redis.NewClient(&redis.Options{Addr: s.addr})
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := s.client.Ping(pctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("bench: redis-server exited: %s", s.out.String())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("bench: redis-server did not answer PING within 10s: %w", err)
		}
	}
}

// startReplica starts a replica of s and waits until its link to s is up.
func (s *redisServer) startReplica(ctx context.Context, dir string) (*redisServer, error) {
	host, port, _ := net.SplitHostPort(s.addr)
	r, err := startRedis(ctx, dir, "--replicaof", host, port)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := r.client.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("bench: the replica's link to %s is not up after 10s (%v): %s", s.addr, err, info)
		}
		select {
		case <-ctx.Done():
			r.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pid returns the server's process ID.
func (s *redisServer) pid() int { return s.cmd.Process.Pid }

// flush empties every database, so each measurement starts from no state.
func (s *redisServer) flush(ctx context.Context) error {
	if err := s.client.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("bench: FLUSHALL: %w", err)
	}
	return nil
}

// stop terminates the server and waits for it.
func (s *redisServer) stop() {
	_ = s.client.Close()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: find a free port: %w", err)
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("bench: listener address is not TCP")
	}
	return addr.Port, nil
}

// tempDir creates a directory for the run's files.
func tempDir() (string, error) { return os.MkdirTemp("", "swbench-") }

// redisUse is what redis-server reports of its own work, from INFO: the CPU
// it used (used_cpu_sys + used_cpu_user, microsecond resolution) and the
// calls of every command (commandstats, by lower-case name such as "set" or
// "evalsha"; INFO itself left out).
type redisUse struct {
	cpu   time.Duration
	calls map[string]int64
}

// usage reads the server's CPU time and command counts.
func (s *redisServer) usage(ctx context.Context) (redisUse, error) {
	cpu, err := s.client.Info(ctx, "cpu").Result()
	if err != nil {
		return redisUse{}, fmt.Errorf("bench: INFO cpu: %w", err)
	}
	stats, err := s.client.Info(ctx, "commandstats").Result()
	if err != nil {
		return redisUse{}, fmt.Errorf("bench: INFO commandstats: %w", err)
	}
	return parseRedisUse(cpu, stats)
}

// parseRedisUse reads the answers of INFO cpu and INFO commandstats.
func parseRedisUse(cpu, stats string) (redisUse, error) {
	u := redisUse{calls: map[string]int64{}}
	var found int
	for _, line := range strings.Split(cpu, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_sys" && k != "used_cpu_user") {
			continue
		}
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return redisUse{}, fmt.Errorf("bench: INFO cpu %s: %w", k, err)
		}
		u.cpu += time.Duration(math.Round(secs*1e6)) * time.Microsecond // printed to the microsecond
		found++
	}
	if found != 2 {
		return redisUse{}, fmt.Errorf("bench: INFO cpu lacks used_cpu_sys or used_cpu_user: %q", cpu)
	}
	// cmdstat_set:calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=0
	for _, line := range strings.Split(stats, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || name == "info" {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(strings.TrimPrefix(calls, "calls="), 10, 64)
		if err != nil || !strings.HasPrefix(calls, "calls=") {
			return redisUse{}, fmt.Errorf("bench: INFO commandstats line %q", line)
		}
		u.calls[strings.ToLower(name)] = n
	}
	return u, nil
}

// since returns what the server did between before and u.
func (u redisUse) since(before redisUse) redisUse {
	d := redisUse{cpu: u.cpu - before.cpu, calls: map[string]int64{}}
	for cmd, n := range u.calls {
		if n -= before.calls[cmd]; n > 0 {
			d.calls[cmd] = n
		}
	}
	return d
}
