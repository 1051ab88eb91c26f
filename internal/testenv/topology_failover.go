// Failovers of a topology's nodes: a master killed and its replica promoted, a
// manual failover, a node restarted, slots resharded while clients run.

package testenv

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

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
