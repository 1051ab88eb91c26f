package state

// RedisStore on a Redis Cluster and on Sentinel (real redis-server
// processes, internal/testenv): the conformance suite, the commit grouped
// by hash slot, and WAIT.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/internal/testenv"
)

var replicated = []testenv.Topology{testenv.Cluster, testenv.Sentinel}

func startTopology(t *testing.T, topo testenv.Topology) *testenv.RedisTopology {
	t.Helper()
	if testing.Short() {
		t.Skip("replicated topology; skipped with -short")
	}
	return testenv.StartRedis(t, topo)
}

// TestRedisStoreTopologies runs the conformance suite on a Cluster and on
// Sentinel, with and without WAIT for one replica.
func TestRedisStoreTopologies(t *testing.T) {
	for _, topo := range replicated {
		t.Run(string(topo), func(t *testing.T) {
			r := startTopology(t, topo)
			client := r.Client(t)
			n := 0
			for _, acks := range []int{0, 1} {
				t.Run("acks="+strconv.Itoa(acks), func(t *testing.T) {
					testStore(t, func(t *testing.T, ttl time.Duration) (Store, func(time.Duration)) {
						n++
						keys := dedupe.Keys{Prefix: r.Prefix() + "-" + strconv.Itoa(n)}
						return NewRedisStore(client, keys, ttl, WithReplicaAcks(acks, time.Second)), func(time.Duration) {}
					})
				})
			}
		})
	}
}

// commandStats sums the calls and microseconds of one command in INFO
// commandstats over the masters.
func commandStats(t *testing.T, r *testenv.RedisTopology, cmd string) (calls, usec int64) {
	t.Helper()
	for _, m := range r.Masters() {
		c := redis.NewClient(&redis.Options{Addr: m})
		info, err := c.Info(context.Background(), "commandstats").Result()
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(info) {
			stats, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
			if !ok {
				continue
			}
			for field := range strings.SplitSeq(stats, ",") {
				k, v, _ := strings.Cut(field, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "calls":
					calls += n
				case "usec":
					usec += n
				}
			}
		}
	}
	return calls, usec
}

func resetStats(t *testing.T, r *testenv.RedisTopology) {
	t.Helper()
	for _, m := range r.Masters() {
		c := redis.NewClient(&redis.Options{Addr: m})
		err := c.ConfigResetStat(context.Background()).Err()
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// slotWorkload is a fixed workload of TestRedisStoreClusterSlots: batches
// commits of up to writes distinct aggregates each, drawn from users users,
// one mark per write.
type slotWorkload struct{ batches, writes, users int }

// The workloads: a batch as large as a poll (kafka.max_poll_records 5000)
// over 20,000 users, and one of 16,384 distinct users (as many as slots),
// where slots are shared most.
var slotWorkloads = []slotWorkload{{10, 5000, 20_000}, {4, 16_384, 50_000}}

// TestRedisStoreClusterSlots commits fixed workloads on a Cluster and
// counts, from INFO commandstats of the masters, the EVALSHA calls they
// took: one per hash slot of a batch (no longer one per aggregate), every
// write committed. It also checks Keys.Slot against CLUSTER KEYSLOT, escaped
// IDs included. The figures are logged (-v).
func TestRedisStoreClusterSlots(t *testing.T) {
	r := startTopology(t, testenv.Cluster)
	client := r.Client(t)
	ctx := context.Background()
	keys := dedupe.Keys{Prefix: r.Prefix()}
	for _, agg := range []string{"u-1", "u-42", "}odd", "~tilde", "%}", "", "a}:seen:b"} {
		want, err := client.ClusterKeySlot(ctx, keys.State(agg)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keys.Slot(agg); int64(got) != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT %d", agg, got, want)
		}
	}
	for n, wl := range slotWorkloads {
		keys := dedupe.Keys{Prefix: r.Prefix() + "-" + strconv.Itoa(n)}
		s := NewRedisStore(client, keys, time.Hour)
		if err := s.Load(ctx); err != nil {
			t.Fatal(err)
		}
		version := map[string]int64{}
		resetStats(t, r)
		wantCalls, writes := 0, 0
		for b := range wl.batches {
			var batch []Write
			slots, seen := map[uint16]bool{}, map[string]bool{}
			for i := range wl.writes {
				agg := "u-" + strconv.Itoa((b*7919+i*104729)%wl.users)
				if seen[agg] {
					continue
				}
				seen[agg] = true
				batch = append(batch, Write{Aggregate: agg, Expect: version[agg], Data: []byte("d" + strconv.Itoa(b)),
					Marks: []string{fmt.Sprintf("e-%d-%d", b, i)}})
				version[agg]++
				slots[keys.Slot(agg)] = true
			}
			out, err := s.Commit(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range out {
				if o != Committed {
					t.Fatalf("batch %d write %d (%s): %v", b, i, batch[i].Aggregate, o)
				}
			}
			wantCalls += len(slots)
			writes += len(batch)
		}
		calls, usec := commandStats(t, r, "evalsha")
		if calls != int64(wantCalls) {
			t.Errorf("%d EVALSHA calls for %d writes, want one per slot of each batch: %d", calls, writes, wantCalls)
		}
		if calls >= int64(writes) {
			t.Errorf("%d EVALSHA calls for %d writes: no fewer than one per aggregate", calls, writes)
		}
		t.Logf("cluster commit, %d batches of %d writes over %d users: %d writes, %d EVALSHA calls (%.1f%% fewer than one per write), %d usec in Redis (%.2f usec a write)",
			wl.batches, wl.writes, wl.users, writes, calls, 100*(1-float64(calls)/float64(writes)), usec, float64(usec)/float64(writes))
	}
}

// TestRedisStoreReplicaAcks: with WithReplicaAcks(1), a commit its replica
// does not acknowledge fails with the retryable ErrReplicas (the write is on
// the master), and so does its retry on a fresh connection while the replica
// is still behind; once the replica is back the retry succeeds. Then the window WAIT closes is forced: with the master's
// replication stream stalled (testenv StallReplication), a commit without
// WAIT succeeds on the master, the master is SIGKILLed and its replica,
// resumed, is promoted without the write; in the same window a commit with
// WAIT fails, so its caller does not go on as if it were durable.
func TestRedisStoreReplicaAcks(t *testing.T) {
	for _, topo := range replicated {
		t.Run(string(topo), func(t *testing.T) {
			r := startTopology(t, topo)
			ctx := context.Background()
			keys := dedupe.Keys{Prefix: r.Prefix()}
			master := r.MasterFor(keys.State("u-1"))
			w := []Write{{Aggregate: "u-1", Data: []byte("zero"), Marks: []string{"e0"}}}
			replica := r.ReplicaOf(master)
			r.PauseNode(replica)
			s := NewRedisStore(r.Client(t), keys, time.Hour, WithReplicaAcks(1, 200*time.Millisecond))
			if _, err := s.Commit(ctx, w); !errors.Is(err, ErrReplicas) || !IsRetryable(err) {
				t.Fatalf("Commit with the replica paused: %v; want retryable ErrReplicas", err)
			}
			s = NewRedisStore(r.Client(t), keys, time.Hour, WithReplicaAcks(1, 200*time.Millisecond))
			if _, err := s.Commit(ctx, w); !errors.Is(err, ErrReplicas) {
				t.Fatalf("the same Commit on a fresh connection with the replica paused: %v; want ErrReplicas", err)
			}
			r.ResumeNode(replica)
			// The replica has a backlog to take first: give WAIT time.
			s = NewRedisStore(r.Client(t), keys, time.Hour, WithReplicaAcks(1, 5*time.Second))
			if out, err := s.Commit(ctx, w); err != nil || out[0] != Committed {
				t.Fatalf("the same Commit with the replica back = %v, %v; want committed and acknowledged", out, err)
			}

			client := r.Client(t)
			plain := NewRedisStore(client, keys, time.Hour)
			acked := NewRedisStore(client, keys, time.Hour, WithReplicaAcks(1, 200*time.Millisecond))
			first := []Write{{Aggregate: "u-1", Expect: 1, Data: []byte("one"), Marks: []string{"e1"}}}
			if out, err := acked.Commit(ctx, first); err != nil || out[0] != Committed {
				t.Fatalf("first Commit = %v, %v", out, err)
			}
			r.StallReplication(master)
			second := []Write{{Aggregate: "u-1", Expect: 2, Data: []byte("two"), Marks: []string{"e2"}}}
			if _, err := acked.Commit(ctx, second); !errors.Is(err, ErrReplicas) {
				t.Fatalf("acknowledged Commit with replication stalled: %v, want ErrReplicas", err)
			}
			third := []Write{{Aggregate: "u-1", Expect: 3, Data: []byte("three"), Marks: []string{"e3"}}}
			if out, err := plain.Commit(ctx, third); err != nil || out[0] != Committed {
				t.Fatalf("Commit without WAIT = %v, %v; want committed (by the master alone)", out, err)
			}
			start := time.Now()
			r.KillNode(master)
			r.ResumeNode(replica)
			r.WaitPromoted(master)
			t.Logf("promoted after %v", time.Since(start).Round(time.Millisecond))
			var snaps []Snapshot
			var err error
			testenv.Eventually(t, 20*time.Second, func() bool {
				snaps, _, err = plain.Fetch(ctx, []string{"u-1"}, nil)
				if err != nil {
					t.Log(err)
				}
				return err == nil
			}, "no fetch after the failover")
			if err != nil {
				t.Fatal(err)
			}
			if snaps[0].Version != 2 || string(snaps[0].Data) != "one" {
				t.Fatalf("after the failover u-1 is version %d %q; want the acknowledged version 2 %q, the later writes lost",
					snaps[0].Version, snaps[0].Data, "one")
			}
			t.Logf("%s: the commit acknowledged by the master alone was lost in the failover; the replicated one survived", topo)
		})
	}
}
