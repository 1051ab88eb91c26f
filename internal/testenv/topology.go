package testenv

// Replicated Redis topologies built from real redis-server processes: a
// Redis Cluster of three masters with a replica each, and a master with a
// replica watched by three Sentinels. Both run from the redis-server binary
// the single-node backend uses (no extra package), on ports at most 55535
// (a Cluster node's bus is its port + 10000), each node in a directory of
// its own with the append-only file on, so that a node can be stopped and
// restarted.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Topology names a Redis deployment.
type Topology string

// The topologies StartRedis builds.
const (
	// Single is one redis-server (what Redis returns).
	Single Topology = "single"
	// Cluster is a Redis Cluster of 3 masters with 1 replica each.
	Cluster Topology = "cluster"
	// Sentinel is a master and a replica watched by 3 Sentinels (quorum 2),
	// under the master name SentinelMaster.
	Sentinel Topology = "sentinel"
)

// SentinelMaster is the master name the Sentinel topology monitors.
const SentinelMaster = "swmaster"

// nodeTimeout is the Cluster's cluster-node-timeout and the Sentinels'
// down-after-milliseconds: how long a dead master goes unnoticed.
const nodeTimeout = time.Second

// Topologies returns the topologies a table-driven test runs on:
// SW_TEST_REDIS_TOPOLOGIES (comma-separated, e.g. "cluster,sentinel") or
// all three. Only the embedded backend builds replicated topologies; with
// another backend the list is just Single (the external or container Redis).
func Topologies(tb testing.TB) []Topology {
	tb.Helper()
	if backendFor(tb, "REDIS_ADDR") != Embedded {
		return []Topology{Single}
	}
	v := os.Getenv("SW_TEST_REDIS_TOPOLOGIES")
	if v == "" {
		return []Topology{Single, Cluster, Sentinel}
	}
	var out []Topology
	for _, s := range strings.Split(v, ",") {
		switch t := Topology(strings.TrimSpace(s)); t {
		case Single, Cluster, Sentinel:
			out = append(out, t)
		default:
			tb.Fatalf("testenv: SW_TEST_REDIS_TOPOLOGIES names %q, want single, cluster or sentinel", s)
		}
	}
	return out
}

// RedisTopology is a running Redis deployment of one test, released when
// the test ends. Its methods may be called from any goroutine, but the ones
// that kill, restart or reshard must not race with each other.
type RedisTopology struct {
	tb    testing.TB
	topo  Topology
	nodes []*RedisServer // data nodes, in start order
	sents []*RedisServer // Sentinels
	bin   string
	// single is the RedisServer of the Single topology (any backend).
	single *RedisServer
}

// StartRedis starts topo for tb. Single is Redis(tb, opts...) on any
// backend; Cluster and Sentinel need the embedded backend and skip the test
// elsewhere, or where redis-server or redis-cli is missing.
func StartRedis(tb testing.TB, topo Topology, opts ...RedisOption) *RedisTopology {
	tb.Helper()
	r := &RedisTopology{tb: tb, topo: topo}
	if topo == Single {
		r.single = Redis(tb, opts...)
		return r
	}
	if b := backendFor(tb, "REDIS_ADDR"); b != Embedded {
		tb.Skipf("testenv: the %s topology is built only by the embedded backend, not %s", topo, b)
	}
	r.bin = lookTool(tb, "redis-server", "redis-server")
	switch topo {
	case Cluster:
		r.startCluster()
	case Sentinel:
		r.startSentinel()
	default:
		tb.Fatalf("testenv: unknown topology %q", topo)
	}
	return r
}

// Topology reports which deployment this is.
func (r *RedisTopology) Topology() Topology { return r.topo }

// Prefix returns the key prefix the test must use (see RedisServer.Prefix).
func (r *RedisTopology) Prefix() string {
	if r.single != nil {
		return r.single.Prefix()
	}
	return "sw"
}

// Server returns the RedisServer of the Single topology, nil for the
// others.
func (r *RedisTopology) Server() *RedisServer { return r.single }

// Addrs returns what a client is configured with (redis.addr): the server,
// the Cluster's nodes, or the Sentinels.
func (r *RedisTopology) Addrs() []string {
	switch {
	case r.single != nil:
		return r.single.Options().Addrs
	case r.topo == Sentinel:
		return addrsOf(r.sents)
	default:
		return addrsOf(r.nodes)
	}
}

// MasterName returns the Sentinel master name (redis.master_name), "" for
// the other topologies.
func (r *RedisTopology) MasterName() string {
	if r.topo == Sentinel {
		return SentinelMaster
	}
	return ""
}

// Options returns fresh client options: a Cluster client for Cluster, a
// failover client for Sentinel.
func (r *RedisTopology) Options() *redis.UniversalOptions {
	if r.single != nil {
		return r.single.Options()
	}
	o := &redis.UniversalOptions{Addrs: r.Addrs(), MasterName: r.MasterName()}
	if r.topo == Cluster {
		o.IsClusterMode = true
	}
	return o
}

// Client returns a client of the deployment, closed when tb ends.
func (r *RedisTopology) Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	c := redis.NewUniversalClient(r.Options())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// CanRestart reports whether Stop and Start are available.
func (r *RedisTopology) CanRestart() bool { return r.single == nil || r.single.CanRestart() }

// Stop stops every data node with SIGTERM (Sentinels keep running): the
// whole deployment is down. Their append-only files keep what they had.
func (r *RedisTopology) Stop() {
	r.tb.Helper()
	if r.single != nil {
		r.single.Stop()
		return
	}
	parallel(r.nodes, func(n *RedisServer) { n.Stop() })
}

// Start restarts every stopped data node and waits until the deployment
// serves again (Cluster: cluster_state:ok on every node; Sentinel: the
// Sentinels name a master that answers as one).
func (r *RedisTopology) Start() {
	r.tb.Helper()
	if r.single != nil {
		r.single.Start()
		return
	}
	parallel(r.nodes, func(n *RedisServer) {
		n.mu.Lock()
		running := n.proc != nil
		n.mu.Unlock()
		if !running {
			if out, err := n.start(r.bin); err != nil {
				r.tb.Errorf("testenv: restart %s: %v\n%s", n.Addr(), err, out)
			}
		}
	})
	r.waitServing(30 * time.Second)
}

// Masters returns the addresses of the nodes that are masters now (one for
// Single and Sentinel).
func (r *RedisTopology) Masters() []string {
	r.tb.Helper()
	switch {
	case r.single != nil:
		return []string{r.single.Addr()}
	case r.topo == Sentinel:
		return []string{r.sentinelMaster()}
	}
	var out []string
	for _, n := range r.liveNodes() {
		if role(n.Addr()) == "master" {
			out = append(out, n.Addr())
		}
	}
	return out
}

// MasterFor returns the address of the master that holds key now.
func (r *RedisTopology) MasterFor(key string) string {
	r.tb.Helper()
	if r.topo != Cluster {
		return r.Masters()[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range r.liveNodes() {
		c := redis.NewClient(&redis.Options{Addr: n.Addr()})
		ranges, err := slotRanges(ctx, c)
		var slot int64
		if err == nil {
			slot, err = c.ClusterKeySlot(ctx, key).Result()
		}
		_ = c.Close()
		if err != nil {
			continue
		}
		for _, sr := range ranges {
			if slot >= sr.Start && slot <= sr.End && sr.master != "" {
				return sr.master
			}
		}
	}
	r.tb.Fatalf("testenv: no live node knows the master of %q", key)
	return ""
}

func (r *RedisTopology) node(addr string) *RedisServer {
	r.tb.Helper()
	for _, n := range r.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	r.tb.Fatalf("testenv: no node %s", addr)
	return nil
}

func (r *RedisTopology) liveNodes() []*RedisServer {
	var out []*RedisServer
	for _, n := range r.nodes {
		n.mu.Lock()
		if n.proc != nil {
			out = append(out, n)
		}
		n.mu.Unlock()
	}
	return out
}
