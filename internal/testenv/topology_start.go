// Starting a topology's processes and knowing when it serves: the Cluster's
// agreement on slots, the Sentinels' view of the master, replication links.

package testenv

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
	lookTool(tb, "redis-cli", "redis-tools")
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

// lowPort returns a free port whose port 10000 above (a Cluster node's bus)
// is free too, both below the ephemeral range (portPair).
func lowPort(tb testing.TB) int {
	tb.Helper()
	return portPair(tb, 10000)
}

// Test servers take ports from [minPort, maxPort], below Linux's ephemeral
// range (32768-60999 by default), where the kernel picks the local port of
// every outgoing connection and of every listener on port 0. A server
// stopped and restarted on its port (an outage test) could otherwise find
// it taken meanwhile by any connection of any process on the machine.
const (
	minPort = 10000
	maxPort = 32767
)

// portPair returns a port p on 127.0.0.1 such that p and, when span > 0,
// p+span were both free a moment ago, both within [minPort, maxPort].
func portPair(tb testing.TB, span int) int {
	tb.Helper()
	for range 500 {
		p := minPort + rand.IntN(maxPort-span-minPort+1)
		l1, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		if span == 0 {
			_ = l1.Close()
			return p
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+span)))
		_ = l1.Close()
		if err != nil {
			continue
		}
		_ = l2.Close()
		return p
	}
	tb.Fatalf("testenv: no free port in [%d, %d]", minPort, maxPort)
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

// lookTool returns the path of the command name, or skips tb when it is not
// on PATH (pkg is the Debian package that has it).
func lookTool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		tb.Skipf("testenv: %s is not on PATH (apt-get install %s)", name, pkg)
	}
	return bin
}
