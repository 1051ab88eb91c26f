package dev

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// localRedis is a Redis for the embedded mode: a redis-server child process
// when one is on PATH, else in-process miniredis.
type localRedis struct {
	Addr string
	Kind string // "redis-server <version> (child process)" or "miniredis (in-process)"
	stop func()
}

func startRedis(ctx context.Context) (*localRedis, error) {
	if path, err := exec.LookPath("redis-server"); err == nil {
		r, err := startRedisServer(ctx, path)
		if err == nil {
			return r, nil
		}
		fmt.Fprintf(os.Stderr, "redis-server did not start (%v); using in-process miniredis\n", err)
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("starting miniredis: %w", err)
	}
	return &localRedis{Addr: m.Addr(), Kind: "miniredis (in-process; install redis-server for the real thing)", stop: m.Close}, nil
}

func startRedisServer(ctx context.Context, path string) (*localRedis, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("no answer on %s: %w", addr, err)
		}
		t := time.NewTimer(20 * time.Millisecond)
		<-t.C
	}
	version := "redis-server"
	if info, err := c.InfoMap(ctx, "server").Result(); err == nil {
		version += " " + info["Server"]["redis_version"]
	}
	return &localRedis{Addr: addr, Kind: version + " (child process)", stop: func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}}, nil
}
