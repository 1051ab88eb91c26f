package worker_test

// The guarantees on every Redis topology (internal/testenv): one
// redis-server, a Redis Cluster of 3 masters with a replica each, and a
// master with a replica under 3 Sentinels. The crash, rebalance and outage
// tests run on each (TestCrashRecovery, TestRebalance, TestRedisOutage);
// the tests here add what only a replicated deployment has: a master
// SIGKILLed and its replica promoted, with and without
// redis.min_replicas_acked, and slots moving while the worker runs.
//
// The replicated cases run CI-sized in `make test`; SW_TEST_CHAOS=1 (make chaos)
// runs them at the single server's size and repeats the failover cases
// (SW_TEST_CHAOS_RUNS, default 3). Each case logs one "topology-result" line
// with its figures (RELIABILITY.md, "Redis topologies").

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/worker"
)

// topoChaos reports whether the long versions run (SW_TEST_CHAOS=1, make chaos).
func topoChaos() bool { return os.Getenv("SW_TEST_CHAOS") != "" }

// topoChaosRuns is how many times a failover case repeats under
// SW_TEST_CHAOS.
func topoChaosRuns() int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("SW_TEST_CHAOS_RUNS"), &n); err == nil && n > 0 {
		return n
	}
	return 3
}

// topoEvents scales a test's event count for a topology: the single server
// keeps it; a replicated one runs half of it unless SW_TEST_CHAOS is set.
func topoEvents(topo testenv.Topology, events int) int {
	if topo == testenv.Single || topoChaos() {
		return events
	}
	return events / 2
}

// eachTopology runs f as a subtest on every topology of
// testenv.Topologies.
func eachTopology(t *testing.T, f func(t *testing.T, topo testenv.Topology)) {
	for _, topo := range testenv.Topologies(t) {
		t.Run(string(topo), func(t *testing.T) { f(t, topo) })
	}
}

// newTopoEnv is newEnv on topo.
func newTopoEnv(t testing.TB, partitions int, topo testenv.Topology, kopts ...testenv.KafkaOption) *env {
	t.Helper()
	return newTopoEnvWith(t, partitions, topo, nil, kopts)
}

// newTopoEnvWith is newTopoEnv with options for the single server (the
// nodes of a replicated topology always have the append-only file on).
func newTopoEnvWith(t testing.TB, partitions int, topo testenv.Topology, ropts []testenv.RedisOption, kopts []testenv.KafkaOption) *env {
	t.Helper()
	e := newKafkaEnv(t, partitions, kopts)
	e.topo = testenv.StartRedis(t, topo, ropts...)
	e.redis = e.topo.Server()
	e.prefix = e.topo.Prefix()
	e.store = state.NewRedisStore(e.topo.Client(t), dedupe.Keys{Prefix: e.prefix}, 0)
	return e
}

// topoOptions are the worker options of a newTopoEnv: its client, and
// min_replicas_acked = acks (timeout 500ms).
func (e *env) topoOptions(acks int) worker.Options {
	opts := e.options(nil)
	opts.Store = nil
	opts.Redis = e.topo.Client(e.t)
	opts.KeyPrefix = e.prefix
	opts.MinReplicasAcked, opts.ReplicaAckTimeout = acks, 500*time.Millisecond
	return opts
}

// redisEnv is the Redis configuration of a spawned worker.
func (e *env) redisEnv() []string {
	if e.topo == nil {
		return []string{"SW_REDIS_ADDR=" + e.redis.Addr()}
	}
	vars := []string{"SW_REDIS_ADDR=" + strings.Join(e.topo.Addrs(), ",")}
	if m := e.topo.MasterName(); m != "" {
		vars = append(vars, "SW_REDIS_MASTER_NAME="+m)
	}
	return vars
}

// reportTopology logs the topology-result line of a case (see report) and
// checks everything verify checks.
func (e *env) reportTopology(topo testenv.Topology, name string, events int, o *loadgen.Oracle, recovery []time.Duration) {
	e.t.Helper()
	e.report(fmt.Sprintf("%s (%d events)", name, events), string(topo), o, recovery)
	e.verify(o, processors.DefaultConfig())
}

// masterOfUser returns the master that holds user u's state (u-1 is the
// workload's most active user).
func (e *env) masterOfUser(u string) string {
	return e.topo.MasterFor(dedupe.Keys{Prefix: e.prefix}.State(u))
}

// TestMasterFailover SIGKILLs a master mid-stream on a Cluster and on
// Sentinel, with redis.min_replicas_acked = 1, in the worst moment: its
// replica is stalled (testenv StallReplication), so the master holds
// commits no replica has when it dies. With WAIT those commits never
// counted: the worker's partitions were stuck retrying (ErrReplicas), and
// after the promotion (and the old master back as a replica) it carries on
// with exactly the clean run's result.
func TestMasterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("replicated topologies; skipped with -short")
	}
	for _, topo := range []testenv.Topology{testenv.Cluster, testenv.Sentinel} {
		t.Run(string(topo), func(t *testing.T) {
			runs := 1
			if topoChaos() {
				runs = topoChaosRuns()
			}
			e := newTopoEnv(t, 4, topo)
			events := topoEvents(topo, 16_000)
			wait := e.produceInBackground(workload(events, 11), 1000)
			r := e.start(e.topoOptions(1))
			var recovery []time.Duration
			for i := range runs {
				testenv.Eventually(t, 30*time.Second, func() bool {
					return metric(r.reg, "streamworker_events_processed_total") > float64((i+1)*events/(runs+2))
				}, "worker made no progress")
				recovery = append(recovery, e.failover(r, e.masterOfUser(fmt.Sprintf("u-%d", i+1)), true))
			}
			oracle := wait()
			e.waitDrained(90 * time.Second)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			e.reportTopology(topo, "master SIGKILL, min_replicas_acked=1", events, oracle, recovery)
		})
	}
}

// failover stalls the replication of master, waits until the worker's
// commits are stuck on it (with acks) or have gone on past it (without),
// SIGKILLs it, resumes the replica, waits for the promotion, restarts the
// old master (a replica now) and returns the time from the kill until the
// worker is ready again.
func (e *env) failover(r *running, master string, acks bool) time.Duration {
	e.t.Helper()
	replica := e.topo.StallReplication(master)
	before := metric(r.reg, "streamworker_events_processed_total")
	if acks {
		// WAIT falls short: the commit is retried, the partition reported
		// stuck and the worker not ready.
		testenv.Eventually(e.t, 20*time.Second, func() bool {
			return !r.w.Ready() && metric(r.reg, "streamworker_partition_stuck_seconds") > 0
		}, "the worker stayed ready, no partition stuck, with the replica of %s stalled", master)
	} else {
		testenv.Eventually(e.t, 20*time.Second, func() bool {
			return metric(r.reg, "streamworker_events_processed_total") > before+200
		}, "the worker made no progress with the replica of %s stalled", master)
	}
	start := time.Now()
	e.topo.KillNode(master)
	e.topo.ResumeNode(replica)
	e.topo.WaitPromoted(master)
	e.topo.RestartNode(master)
	testenv.Eventually(e.t, 60*time.Second, r.w.Ready, "worker not ready after the failover")
	took := time.Since(start)
	e.t.Logf("master %s killed; %s promoted; worker ready after %v", master, replica, took.Round(time.Millisecond))
	return took
}

// TestLossWithoutReplicaAcks is TestMasterFailover without
// redis.min_replicas_acked: the commits the dead master held and no
// replica had are lost with it, while their offsets were committed. It
// demonstrates the window the setting closes; it runs under SW_TEST_CHAOS only.
func TestLossWithoutReplicaAcks(t *testing.T) {
	if !topoChaos() {
		t.Skip("a demonstration of loss; runs with SW_TEST_CHAOS=1 (make chaos)")
	}
	for _, topo := range []testenv.Topology{testenv.Cluster, testenv.Sentinel} {
		t.Run(string(topo), func(t *testing.T) {
			e := newTopoEnv(t, 4, topo)
			events := topoEvents(topo, 16_000)
			wait := e.produceInBackground(workload(events, 12), 1000)
			opts := e.topoOptions(0)
			// The lost state holds sequence numbers: events after them wait
			// for predecessors that are gone until the gap timeout.
			opts.Sequencing.GapTimeout = time.Second
			r := e.start(opts)
			testenv.Eventually(t, 30*time.Second, func() bool {
				return metric(r.reg, "streamworker_events_processed_total") > float64(events/4)
			}, "worker made no progress")
			took := e.failover(r, e.masterOfUser("u-1"), false)
			oracle := wait()
			e.waitDrained(90 * time.Second)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			res := e.tally(oracle, processors.DefaultConfig())
			t.Logf("RESULT fault=%q topology=%q lost=%d twice=%d dup_outputs=%d recover_median=%v events=%d",
				"master SIGKILL, min_replicas_acked=0", topo, res.lost, res.twice, res.dupOutputs, took.Round(10*time.Millisecond), events)
			if res.lost == 0 {
				t.Errorf("no event lost without WAIT: the window was not forced")
			}
		})
	}
}

// TestReshard moves a third of the slots between Cluster masters with
// redis-cli --cluster reshard while the worker runs (its commits meet MOVED
// and ASK), then a third back, with and without min_replicas_acked (whose
// commits go to each master directly and retry after MOVED or ASK); the
// result equals a clean run's.
func TestReshard(t *testing.T) {
	if testing.Short() {
		t.Skip("replicated topology; skipped with -short")
	}
	for _, acks := range []int{1, 0} {
		t.Run(fmt.Sprintf("acks=%d", acks), func(t *testing.T) {
			if acks == 0 && !topoChaos() {
				t.Skip("the Cluster client's own MOVED and ASK handling; runs with SW_TEST_CHAOS=1")
			}
			e := newTopoEnv(t, 4, testenv.Cluster)
			events := topoEvents(testenv.Cluster, 16_000)
			wait := e.produceInBackground(workload(events, 13+int64(acks)), 1000)
			r := e.start(e.topoOptions(acks))
			testenv.Eventually(t, 30*time.Second, func() bool {
				return metric(r.reg, "streamworker_events_processed_total") > float64(events/5)
			}, "worker made no progress")
			ms := e.topo.Masters()
			var took []time.Duration
			for _, move := range [][2]string{{ms[0], ms[1]}, {ms[1], ms[2]}} {
				start := time.Now()
				e.topo.Reshard(move[0], move[1], 2000)
				took = append(took, time.Since(start))
			}
			t.Logf("Redis errors the worker met (MOVED, ASK, TRYAGAIN) and retried: %v", metric(r.reg, "streamworker_redis_errors_total"))
			oracle := wait()
			e.waitDrained(90 * time.Second)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			e.reportTopology(testenv.Cluster, fmt.Sprintf("reshard 2x2000 slots, min_replicas_acked=%d", acks), events, oracle, took)
		})
	}
}
