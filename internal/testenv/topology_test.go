package testenv

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestTopologies builds each replicated topology, writes through its
// client, kills the master that holds a key and checks that the promoted
// replica serves what had been replicated; on the Cluster it then moves
// slots with redis-cli while the client keeps writing, and promotes a
// replica with CLUSTER FAILOVER.
func TestTopologies(t *testing.T) {
	for _, topo := range []Topology{Cluster, Sentinel} {
		t.Run(string(topo), func(t *testing.T) {
			if testing.Short() {
				t.Skip("replicated topology; skipped with -short")
			}
			r := StartRedis(t, topo)
			if got := len(r.Masters()); topo == Cluster && got != 3 || topo == Sentinel && got != 1 {
				t.Fatalf("%d masters", got)
			}
			c := r.Client(t)
			ctx := context.Background()
			for i := range 100 {
				k := fmt.Sprintf("sw:{u-%d}:state", i)
				if err := c.Set(ctx, k, i, 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			key := "sw:{u-7}:state"
			master := r.MasterFor(key)
			replica := r.ReplicaOf(master)
			if replica == "" {
				t.Fatalf("no replica of %s", master)
			}
			r.WaitReplicated(master)
			took := r.KillMaster(master)
			t.Logf("%s: master %s killed, %s promoted in %v", topo, master, replica, took)
			if got := r.MasterFor(key); got != replica {
				t.Fatalf("master of %s is %s, want the promoted replica %s", key, got, replica)
			}
			testEventuallyGet(t, r, key, "7")
			r.RestartNode(master)
			if slices.Contains(r.Masters(), master) {
				t.Fatalf("restarted %s came back as a master", master)
			}
			if topo != Cluster {
				return
			}
			ms := r.Masters()
			done := make(chan error, 1)
			go func() {
				for i := 0; ; i++ {
					select {
					case <-done:
						done <- nil
						return
					default:
					}
					if err := c.Incr(ctx, fmt.Sprintf("sw:{u-%d}:n", i%50)).Err(); err != nil {
						done <- err
						return
					}
				}
			}()
			r.Reshard(ms[0], ms[1], 500)
			done <- nil
			if err := <-done; err != nil {
				t.Fatalf("a write failed during the reshard: %v", err)
			}
			// A failover without loss: the replica takes over on request.
			replica = r.ReplicaOf(ms[2])
			r.Failover(replica)
			if ms := r.Masters(); !slices.Contains(ms, replica) {
				t.Fatalf("%s not a master after CLUSTER FAILOVER: %v", replica, ms)
			}
		})
	}
}

func testEventuallyGet(t *testing.T, r *RedisTopology, key, want string) {
	t.Helper()
	c := r.Client(t)
	Eventually(t, 20*time.Second, func() bool {
		v, err := c.Get(context.Background(), key).Result()
		return err == nil && v == want
	}, "%s never read %q after the failover", key, want)
}
