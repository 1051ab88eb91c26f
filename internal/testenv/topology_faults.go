package testenv

// Faults of a replicated topology: a node paused, replication stalled.

import (
	"context"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// PauseNode stops the node at addr with SIGSTOP: it keeps its connections
// but answers nothing (a replica so stops acknowledging its master's
// stream) until ResumeNode.
func (r *RedisTopology) PauseNode(addr string) { r.signalNode(addr, syscall.SIGSTOP) }

// ResumeNode continues a node paused by PauseNode.
func (r *RedisTopology) ResumeNode(addr string) { r.signalNode(addr, syscall.SIGCONT) }

func (r *RedisTopology) signalNode(addr string, sig syscall.Signal) {
	r.tb.Helper()
	n := r.node(addr)
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		r.tb.Fatalf("testenv: %s is not running", addr)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		r.tb.Fatalf("testenv: signal %s: %v", addr, err)
	}
	if sig == syscall.SIGSTOP {
		// A paused node must not stay paused past the test (its kill would
		// still work, but a replica left stopped hides failures).
		r.tb.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
	}
}

// StallReplication opens the window in which a master acknowledges writes
// that no replica has: it pauses the master's replica (SIGSTOP) and writes
// filler values to the master until the replication stream no longer fits
// the sockets' buffers and waits in the master's own memory (the replica's
// client shows omem of 16 MiB in CLIENT LIST, more than the kernel's send
// buffer could take over, whose content a killed process's socket still
// delivers). From then on every write to that
// master is lost if it dies before ResumeNode of the returned replica.
func (r *RedisTopology) StallReplication(master string) (replica string) {
	const stallBytes = 16 << 20
	r.tb.Helper()
	replica = r.ReplicaOf(master)
	if replica == "" {
		r.tb.Fatalf("testenv: %s has no replica", master)
	}
	r.PauseNode(replica)
	c := redis.NewClient(&redis.Options{Addr: master})
	defer c.Close()
	ctx := context.Background()
	filler := strings.Repeat("f", 1<<20)
	key := ""
	for i := 0; key == ""; i++ {
		k := "testenv-filler-" + strconv.Itoa(i)
		err := c.Set(ctx, k, filler, 0).Err()
		switch {
		case err == nil:
			key = k
		case !redis.HasErrorPrefix(err, "MOVED"):
			r.tb.Fatalf("testenv: filler on %s: %v", master, err)
		}
	}
	for i := 0; ; i++ {
		clients, err := c.ClientList(ctx).Result()
		if err != nil {
			r.tb.Fatalf("testenv: CLIENT LIST on %s: %v", master, err)
		}
		for _, line := range strings.Split(clients, "\n") {
			if !strings.Contains(line, "flags=S") {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "omem="); ok {
					if n, _ := strconv.Atoi(v); n >= stallBytes {
						return replica
					}
				}
			}
		}
		if i == 256 {
			r.tb.Fatalf("testenv: 256 MiB written to %s and its replication stream still fits the sockets", master)
		}
		if err := c.Set(ctx, key, filler, 0).Err(); err != nil {
			r.tb.Fatalf("testenv: filler on %s: %v", master, err)
		}
	}
}
