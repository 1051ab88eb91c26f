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
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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
	var err error
	if r.bin, err = exec.LookPath("redis-server"); err != nil {
		tb.Skip("testenv: redis-server is not on PATH (apt-get install redis-server)")
	}
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

// KillMaster SIGKILLs the master at addr, waits until a replica is promoted
// in its place (Cluster: its replica is master and every slot served;
// Sentinel: +switch-master) and returns the time from the kill to a
// deployment that serves again. The killed node stays down until
// RestartNode.
func (r *RedisTopology) KillMaster(addr string) time.Duration {
	r.tb.Helper()
	if r.topo == Single {
		r.tb.Fatal("testenv: a single redis-server has no replica to promote")
	}
	n := r.node(addr)
	var switched <-chan *redis.Message
	if r.topo == Sentinel {
		sc := redis.NewSentinelClient(&redis.Options{Addr: r.sents[0].Addr()})
		defer sc.Close()
		sub := sc.Subscribe(context.Background(), "+switch-master")
		defer sub.Close()
		if _, err := sub.Receive(context.Background()); err != nil { // the subscription's confirmation
			r.tb.Fatalf("testenv: subscribe to +switch-master: %v", err)
		}
		switched = sub.Channel()
	}
	start := time.Now()
	n.Kill()
	if r.topo == Sentinel {
		select {
		case m := <-switched:
			r.tb.Logf("testenv: +switch-master %s after %v", m.Payload, time.Since(start).Round(time.Millisecond))
		case <-time.After(30 * time.Second):
			r.tb.Fatalf("testenv: no +switch-master within 30s of killing %s", addr)
		}
	}
	r.waitServing(30 * time.Second)
	if slices.Contains(r.Masters(), addr) {
		r.tb.Fatalf("testenv: %s still listed as a master", addr)
	}
	return time.Since(start)
}

// KillNode SIGKILLs the node at addr and returns at once, for a test that
// must act between the kill and the promotion (then WaitPromoted).
func (r *RedisTopology) KillNode(addr string) {
	r.tb.Helper()
	r.node(addr).Kill()
}

// Down reports whether the node at addr is stopped or killed.
func (r *RedisTopology) Down(addr string) bool {
	n := r.node(addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc == nil
}

// WaitPromoted waits until a replica serves in place of the killed master
// at addr and the deployment serves again.
func (r *RedisTopology) WaitPromoted(addr string) {
	r.tb.Helper()
	if r.topo == Sentinel {
		Eventually(r.tb, 60*time.Second, func() bool {
			for _, s := range r.sents {
				if a := sentinelMasterAt(s.Addr()); a == "" || a == addr {
					return false
				}
			}
			return true
		}, "Sentinels still name %s the master", addr)
	}
	r.waitServing(60 * time.Second)
}

// RestartNode restarts a killed or stopped node; it rejoins as a replica
// of the master promoted in its place.
func (r *RedisTopology) RestartNode(addr string) {
	r.tb.Helper()
	n := r.node(addr)
	if r.topo == Sentinel {
		// Started as a master it would serve stale data until a Sentinel
		// reconfigures it; start it as the new master's replica at once.
		host, port, _ := net.SplitHostPort(r.sentinelMaster())
		if i := slices.Index(n.args, "--replicaof"); i >= 0 {
			n.args = slices.Delete(n.args, i, i+3)
		}
		n.args = append(n.args, "--replicaof", host, port)
	}
	if out, err := n.start(r.bin); err != nil {
		r.tb.Fatalf("testenv: restart %s: %v\n%s", addr, err, out)
	}
	r.waitServing(30 * time.Second)
}

// Failover promotes the replica at replicaAddr of a Cluster with CLUSTER
// FAILOVER (no data lost: the master waits for it to catch up) and waits
// until the deployment serves again.
func (r *RedisTopology) Failover(replicaAddr string) time.Duration {
	r.tb.Helper()
	if r.topo != Cluster {
		r.tb.Fatal("testenv: Failover is for a Cluster")
	}
	start := time.Now()
	c := redis.NewClient(&redis.Options{Addr: replicaAddr})
	defer c.Close()
	if err := c.ClusterFailover(context.Background()).Err(); err != nil {
		r.tb.Fatalf("testenv: CLUSTER FAILOVER on %s: %v", replicaAddr, err)
	}
	Eventually(r.tb, 30*time.Second, func() bool { return role(replicaAddr) == "master" }, "%s not promoted", replicaAddr)
	r.waitServing(30 * time.Second)
	return time.Since(start)
}

// ReplicaOf returns the address of a replica of the master at addr ("" if
// none answers).
func (r *RedisTopology) ReplicaOf(addr string) string {
	r.tb.Helper()
	for _, n := range r.liveNodes() {
		info := infoReplication(n.Addr())
		if info["role"] == "slave" && net.JoinHostPort(info["master_host"], info["master_port"]) == addr {
			return n.Addr()
		}
	}
	return ""
}

// Reshard moves slots slots from the master at from to the master at to
// with redis-cli --cluster reshard while clients keep running (they meet
// MOVED and ASK meanwhile).
func (r *RedisTopology) Reshard(from, to string, slots int) {
	r.tb.Helper()
	if r.topo != Cluster {
		r.tb.Fatal("testenv: Reshard is for a Cluster")
	}
	out, err := exec.Command("redis-cli", "--cluster", "reshard", from,
		"--cluster-from", nodeID(r.tb, from), "--cluster-to", nodeID(r.tb, to),
		"--cluster-slots", strconv.Itoa(slots), "--cluster-yes").CombinedOutput()
	if err != nil {
		r.tb.Fatalf("testenv: reshard %d slots %s -> %s: %v\n%s", slots, from, to, err, out)
	}
	r.waitServing(30 * time.Second)
}

// NodeAddrs returns the addresses of every data node, live or not.
func (r *RedisTopology) NodeAddrs() []string { return addrsOf(r.nodes) }

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

// newNode returns a redis-server (not started) on a port at most 55535
// whose port + 10000 is free too, in a directory of its own, with the
// append-only file on (fsync every second, Redis's default).
func (r *RedisTopology) newNode(extra ...string) *RedisServer {
	r.tb.Helper()
	dir := r.tb.TempDir()
	port := lowPort(r.tb)
	n := &RedisServer{tb: r.tb, backend: Embedded, prefix: "sw",
		addrs: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}}
	n.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--dir", dir, "--loglevel", "warning", "--appendonly", "yes"}, extra...)
	r.tb.Cleanup(n.kill)
	return n
}

func (r *RedisTopology) startNodes(nodes []*RedisServer) {
	r.tb.Helper()
	parallel(nodes, func(n *RedisServer) {
		if out, err := n.start(r.bin); err != nil {
			r.tb.Errorf("testenv: start redis-server %s: %v\n%s", n.Addr(), err, out)
		}
	})
	if r.tb.Failed() {
		r.tb.FailNow()
	}
}

func (r *RedisTopology) startCluster() {
	tb := r.tb
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Skip("testenv: redis-cli is not on PATH (apt-get install redis-tools)")
	}
	for range 6 {
		r.nodes = append(r.nodes, r.newNode("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout.Milliseconds()))))
	}
	r.startNodes(r.nodes)
	args := append([]string{"--cluster", "create"}, addrsOf(r.nodes)...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	r.waitServing(30 * time.Second)
}

func (r *RedisTopology) startSentinel() {
	master := r.newNode()
	r.nodes = []*RedisServer{master}
	r.startNodes(r.nodes)
	host, port, _ := net.SplitHostPort(master.Addr())
	replica := r.newNode("--replicaof", host, port)
	r.nodes = append(r.nodes, replica)
	r.startNodes(r.nodes[1:])
	for range 3 {
		s := r.newNode()
		conf := filepath.Join(r.tb.TempDir(), "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %s %s %s 2\n"+
			"sentinel down-after-milliseconds %[1]s %[4]d\n"+
			"sentinel failover-timeout %[1]s %[5]d\n"+
			"sentinel parallel-syncs %[1]s 1\n",
			SentinelMaster, host, port, nodeTimeout.Milliseconds(), (5 * nodeTimeout).Milliseconds())
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			r.tb.Fatal(err)
		}
		p := s.args[1]
		s.args = []string{conf, "--sentinel", "--port", p, "--bind", "127.0.0.1", "--loglevel", "warning"}
		r.sents = append(r.sents, s)
	}
	r.startNodes(r.sents)
	r.waitServing(30 * time.Second)
}

// waitServing waits until the deployment serves writes: every live Cluster
// node reports cluster_state:ok and every slot has a live master; every
// Sentinel names the same master, which answers as a master with its
// replicas (the live ones) connected.
func (r *RedisTopology) waitServing(timeout time.Duration) {
	r.tb.Helper()
	switch r.topo {
	case Cluster:
		Eventually(r.tb, timeout, r.clusterOK, "Redis Cluster not serving")
	case Sentinel:
		Eventually(r.tb, timeout, r.sentinelOK, "Sentinel deployment not serving")
	}
	Eventually(r.tb, timeout, r.replicasUp, "a live replica's link to its master is not up")
}

// replicasUp reports whether every live replica has finished its sync and
// streams from its master (master_link_status:up), so that WAIT counts it.
func (r *RedisTopology) replicasUp() bool {
	for _, n := range r.liveNodes() {
		info := infoReplication(n.Addr())
		if info["role"] == "slave" && info["master_link_status"] != "up" {
			return false
		}
	}
	return true
}

func (r *RedisTopology) clusterOK() bool {
	live := r.liveNodes()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var owners map[string]bool
	for _, n := range live {
		c := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		info, err := c.ClusterInfo(ctx).Result()
		var ranges []slotRange
		if err == nil {
			ranges, err = slotRanges(ctx, c)
		}
		_ = c.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
		covered, o := int64(0), map[string]bool{}
		for _, sr := range ranges {
			covered += sr.End - sr.Start + 1
			if sr.master == "" {
				return false
			}
			o[sr.master] = true
		}
		if covered != 16384 {
			return false
		}
		if owners == nil {
			owners = o
		} else if !mapsEqual(owners, o) {
			return false // the nodes do not agree yet
		}
	}
	for addr := range owners {
		if role(addr) != "master" {
			return false
		}
	}
	// What redis-cli --cluster checks before it reshards: every node has the
	// same view of which node holds which slots.
	var sig string
	for i, n := range live {
		s := clusterSignature(n.Addr())
		if s == "" || i > 0 && s != sig {
			return false
		}
		sig = s
	}
	return true
}

// slotRange is a range of slots and the address of its online master (""
// if none).
type slotRange struct {
	redis.SlotRange
	master string
}

// slotRanges returns the slot ranges of CLUSTER SHARDS as c sees them.
func slotRanges(ctx context.Context, c *redis.Client) ([]slotRange, error) {
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []slotRange
	for _, sh := range shards {
		master := ""
		for _, n := range sh.Nodes {
			if n.Role == "master" && n.Health == "online" {
				master = net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
			}
		}
		for _, sr := range sh.Slots {
			out = append(out, slotRange{sr, master})
		}
	}
	return out, nil
}

// clusterSignature returns the node IDs and slots of CLUSTER NODES at addr,
// sorted ("" when it does not answer).
func clusterSignature(addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	text, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return ""
	}
	var sig []string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if f := strings.Fields(line); len(f) > 8 {
			sig = append(sig, f[0]+":"+strings.Join(f[8:], ","))
		}
	}
	slices.Sort(sig)
	return strings.Join(sig, "|")
}

func (r *RedisTopology) sentinelOK() bool {
	var master string
	for _, s := range r.sents {
		a := sentinelMasterAt(s.Addr())
		if a == "" || master != "" && a != master {
			return false
		}
		master = a
	}
	info := infoReplication(master)
	if info["role"] != "master" {
		return false
	}
	return strconv.Itoa(len(r.liveNodes())-1) == info["connected_slaves"]
}

func (r *RedisTopology) sentinelMaster() string {
	for _, s := range r.sents {
		if a := sentinelMasterAt(s.Addr()); a != "" {
			return a
		}
	}
	r.tb.Fatal("testenv: no Sentinel names a master")
	return ""
}

func sentinelMasterAt(addr string) string {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hp, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil || len(hp) != 2 {
		return ""
	}
	return net.JoinHostPort(hp[0], hp[1])
}

// infoReplication returns the fields of INFO replication at addr (empty
// when it does not answer).
func infoReplication(addr string) map[string]string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	text, err := c.Info(ctx, "replication").Result()
	out := map[string]string{}
	if err != nil {
		return out
	}
	for _, line := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out
}

func role(addr string) string { return infoReplication(addr)["role"] }

func nodeID(tb testing.TB, addr string) string {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	id, err := c.Do(context.Background(), "cluster", "myid").Text()
	if err != nil {
		tb.Fatalf("testenv: CLUSTER MYID on %s: %v", addr, err)
	}
	return id
}

// lowPort returns a port in [20000, 55535] that is free, as is the port
// 10000 above it (a Cluster node's bus).
func lowPort(tb testing.TB) int {
	tb.Helper()
	for range 200 {
		p := 20000 + rand.IntN(35536)
		l1, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		_ = l1.Close()
		if err != nil {
			continue
		}
		_ = l2.Close()
		return p
	}
	tb.Fatal("testenv: no free port pair below 55536")
	return 0
}

func addrsOf(ns []*RedisServer) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Addr()
	}
	return out
}

// parallel calls f on every node at once and waits for all.
func parallel(ns []*RedisServer, f func(*RedisServer)) {
	done := make(chan struct{}, len(ns))
	for _, n := range ns {
		go func() { f(n); done <- struct{}{} }()
	}
	for range ns {
		<-done
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// WaitReplicated waits until every replica connected to the master at addr
// has acknowledged the master's whole replication stream (its offset in
// INFO replication reaches master_repl_offset).
func (r *RedisTopology) WaitReplicated(addr string) {
	r.tb.Helper()
	Eventually(r.tb, 20*time.Second, func() bool {
		info := infoReplication(addr)
		off, n := info["master_repl_offset"], info["connected_slaves"]
		if off == "" || n == "" || n == "0" {
			return false
		}
		want, _ := strconv.ParseInt(off, 10, 64)
		count, _ := strconv.Atoi(n)
		for i := range count {
			for _, f := range strings.Split(info["slave"+strconv.Itoa(i)], ",") {
				if v, ok := strings.CutPrefix(f, "offset="); ok {
					if got, _ := strconv.ParseInt(v, 10, 64); got < want {
						return false
					}
				}
			}
		}
		return true
	}, "the replicas of %s did not catch up", addr)
}
