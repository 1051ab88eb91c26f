package worker_test

// Network and broker faults: every guarantee (final state per user and the
// set of output IDs equal to a clean run, no event applied twice, nothing
// lost) holds through latency, a bandwidth cap, connections reset in the
// middle of a Redis pipeline or a produce, an ambiguous Redis commit, a
// blackhole of Kafka or Redis, and broker errors. Each test is seeded; the
// long forms (`make chaos`, SW_TEST_CHAOS=1) run the same code for longer.

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/worker"
)

// chaos reports whether the long forms run (`make chaos`).
func chaos() bool { return os.Getenv("SW_TEST_CHAOS") != "" }

// chaosSeed is SW_TEST_CHAOS_SEED, or def.
func chaosSeed(t testing.TB, def uint64) uint64 {
	if s := os.Getenv("SW_TEST_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SW_TEST_CHAOS_SEED=%q: %v", s, err)
		}
		return n
	}
	return def
}

// short returns s in `make test` and long under `make chaos`.
func short[T any](s, long T) T {
	if chaos() {
		return long
	}
	return s
}

// proxiedRedis returns a Redis client configured as the worker's own
// (config defaults: redis.timeout 3s) that reaches e's Redis through a
// fault proxy.
func (e *env) proxiedRedis(seed uint64) (*testenv.Proxy, redis.UniversalClient) {
	e.t.Helper()
	px := testenv.NewProxy(e.t, e.redis.Addr(), seed)
	c := config.Default().Redis
	c.Addrs = []string{px.Addr()}
	cl, err := app.RedisClient(c)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cl.Close() })
	return px, cl
}

// outcome is what a fault run ends with, beyond verify's equality: the
// counts that go in RELIABILITY.md.
type outcome struct {
	lost, twice int64 // events, summed over users
	dupOutputs  int   // aggregate, milestone and anomaly records beyond one per ID
}

// tally compares every user's applied event count with the clean run's
// and counts the extra copies of output IDs.
func (e *env) tally(o *loadgen.Oracle, pc processors.Config) outcome {
	e.t.Helper()
	var out outcome
	for u, x := range expect(e.t, o, pc) {
		var want processors.State
		if err := want.UnmarshalBinary(x.state); err != nil {
			e.t.Fatal(err)
		}
		got := e.decoded(u).TotalActivity
		if d := got - want.TotalActivity; d > 0 {
			out.twice += d
		} else {
			out.lost -= d
		}
	}
	for _, topic := range []string{e.names.Aggregates, e.names.Milestones, e.names.Anomalies} {
		ids := map[string]bool{}
		recs := e.outputs(topic)
		for _, r := range recs {
			ids[r.env.ID] = true
		}
		out.dupOutputs += len(recs) - len(ids)
	}
	return out
}

// report logs one RESULT line for RELIABILITY.md (lost and applied-twice
// events, output copies beyond one per ID, the median and maximum time to
// recover) and fails on a loss or a double application; it does not check
// equality, verify does.
func (e *env) report(fault, topology string, o *loadgen.Oracle, recovered []time.Duration) {
	e.t.Helper()
	res := e.tally(o, processors.DefaultConfig())
	if res.lost != 0 || res.twice != 0 {
		e.t.Errorf("%d events lost, %d applied twice", res.lost, res.twice)
	}
	med, mx := durations(recovered)
	e.t.Logf("RESULT fault=%q topology=%q lost=%d twice=%d dup_outputs=%d recover_median=%v recover_max=%v runs=%d",
		fault, topology, res.lost, res.twice, res.dupOutputs, med, mx, len(recovered))
}

func countReasons(rs []string) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		m[r]++
	}
	return m
}

func durations(ds []time.Duration) (median, maximum time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond)
}

// isCommit matches the RESP of the state commit script (EVALSHA): a
// pipeline of one or more commits.
func isCommit(chunk []byte) bool { return bytes.Contains(bytes.ToLower(chunk), []byte("evalsha")) }

// TestNetworkFaults: latency with jitter and a bandwidth cap on Kafka and
// Redis throughout, connections reset in the middle of produce requests
// and in the middle of Redis commit pipelines, and every open connection
// reset at once: the run equals a clean one.
func TestNetworkFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection; skipped with -short")
	}
	seed := chaosSeed(t, 11)
	kpx := testenv.NewProxySet(t, seed)
	e := newEnvWith(t, 4, []testenv.KafkaOption{testenv.WithFaultProxies(kpx)}, nil)
	rpx, rcl := e.proxiedRedis(seed + 100)
	kpx.Each(func(p *testenv.Proxy) { p.SetLatency(2*time.Millisecond, 6*time.Millisecond); p.SetBandwidth(4 << 20) })
	rpx.SetLatency(time.Millisecond, 3*time.Millisecond)
	rpx.SetBandwidth(2 << 20)

	events := short(6000, 40_000)
	oracle := e.produce(workload(events, int64(seed)))

	// Resets of the worker's first produce requests and commit pipelines,
	// then of every connection once progress is seen.
	kp := kpx.All()[0]
	produceResets := kp.ResetOn(testenv.ResetMidRequest, short(3, 10), testenv.IsKafkaRequest(0))
	redisResets := rpx.ResetOn(testenv.ResetMidRequest, short(3, 10), isCommit)
	opts := e.options(nil)
	opts.Redis = rcl
	r := e.start(opts)
	e.waitCommitted(int64(events / 5))
	kp.ResetAll()
	rpx.ResetAll()
	e.waitDrained(short(90*time.Second, 5*time.Minute))
	if produceResets() == 0 || redisResets() == 0 {
		t.Fatalf("faults not injected: %d produce and %d Redis commit resets", produceResets(), redisResets())
	}
	t.Logf("%d produce requests and %d Redis commit pipelines reset mid-request", produceResets(), redisResets())
	testenv.Eventually(t, 20*time.Second, r.w.Ready, "worker not ready after the faults")
	t.Logf("gaps given up %v, late events %v, DLQ reasons %v", metric(r.reg, "streamworker_gaps_total"),
		metric(r.reg, "streamworker_events_late_total"), countReasons(e.dlqReasons()))
	e.verify(oracle, opts.Processors)
	e.report("latency+jitter, bandwidth cap, resets mid-produce and mid-pipeline", "kfake 1 broker, Redis standalone", oracle, nil)
}

// TestAmbiguousRedisCommit: a state commit reaches Redis and is applied,
// and its reply is lost (the connection is reset after the request is
// forwarded, before the reply). The retry meets the version fence (or the
// dedupe marks), the partition reloads from Redis, and nothing is applied
// twice.
func TestAmbiguousRedisCommit(t *testing.T) {
	e := newEnv(t, 1)
	rpx, rcl := e.proxiedRedis(chaosSeed(t, 12))
	opts := e.options(nil)
	opts.Redis = rcl
	r := e.start(opts)
	testenv.Eventually(t, 10*time.Second, r.w.Ready, "worker never ready")
	commits := rpx.Watch(isCommit)

	// One reply lost: go-redis sends the pipeline again on a new
	// connection (redis.max_retries), and the script finds its own write.
	lost := rpx.ResetOn(testenv.ResetBeforeReply, 1, isCommit)
	e.send(activity("m1", "u-m", 1, 1), activity("m2", "u-m", 2, 2), activity("n1", "u-n", 1, 3))
	e.waitDrained(30 * time.Second)
	if lost() != 1 {
		t.Fatalf("%d commit replies lost, want 1", lost())
	}
	wantResent(t, commits(), 1)
	e.wantApplied(r, map[string]int64{"u-m": 2, "u-n": 1})

	// Four replies lost: go-redis gives up (1 + 3 retries), the worker's
	// own retry sends the same writes, fenced by the same expected
	// versions.
	before := len(commits())
	lost = rpx.ResetOn(testenv.ResetBeforeReply, 4, isCommit)
	e.send(activity("m3", "u-m", 3, 4), activity("n2", "u-n", 2, 5))
	e.waitDrained(30 * time.Second)
	if lost() != 4 {
		t.Fatalf("%d commit replies lost, want 4", lost())
	}
	if got := metric(r.reg, "streamworker_redis_errors_total", "op", "commit"); got == 0 {
		t.Error("no failed commit round trip counted: the worker's own retry did not run")
	}
	wantResent(t, commits()[before:], 4)
	e.wantApplied(r, map[string]int64{"u-m": 3, "u-n": 2})

	e.send(activity("m4", "u-m", 4, 6))
	e.waitDrained(30 * time.Second)
	e.wantApplied(r, map[string]int64{"u-m": 4, "u-n": 2})
}

// wantResent checks that the commit pipelines seen on the wire hold n
// resends: the first n+1 of them carry the very same request (the same
// expected versions and marks) — the retries of a commit whose replies
// were lost.
func wantResent(t *testing.T, seen [][]byte, n int) {
	t.Helper()
	if len(seen) < n+1 {
		t.Fatalf("%d commit pipelines on the wire, want at least %d", len(seen), n+1)
	}
	for i := 1; i <= n; i++ {
		if !bytes.Equal(seen[i], seen[0]) {
			t.Fatalf("commit pipeline %d differs from the one whose reply was lost:\n%q\n%q", i, seen[i], seen[0])
		}
	}
}

// blackhole runs one blackhole of the proxies of target while a stream is
// produced, and checks the worker goes not ready within bound, reports a
// stuck partition, and recovers by itself after the heal.
func TestKafkaBlackhole(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection; skipped with -short")
	}
	seed := chaosSeed(t, 13)
	kpx := testenv.NewProxySet(t, seed)
	e := newEnvWith(t, 4, []testenv.KafkaOption{testenv.WithFaultProxies(kpx), fastGroups}, nil)
	blackholeRun(t, e, "Kafka", func(on bool) { kpx.Each(func(p *testenv.Proxy) { p.Blackhole(on) }) }, e.options(nil))
}

// TestRedisBlackhole is TestKafkaBlackhole with Redis blackholed.
func TestRedisBlackhole(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection; skipped with -short")
	}
	e := newEnv(t, 4, fastGroups)
	rpx, rcl := e.proxiedRedis(chaosSeed(t, 14))
	opts := e.options(nil)
	opts.Redis = rcl
	blackholeRun(t, e, "Redis", rpx.Blackhole, opts)
}

func blackholeRun(t *testing.T, e *env, what string, blackhole func(bool), opts worker.Options) {
	hole := short(8*time.Second, 30*time.Second)
	events := short(8000, 30_000)
	rate := float64(events) / (hole.Seconds() + 6)
	r := e.start(opts)
	t.Cleanup(func() { blackhole(false) }) // before the worker stops, if the test fails midway
	testenv.Eventually(t, 20*time.Second, r.w.Ready, "worker never ready")
	wait := e.produceInBackground(workload(events, 15), rate)
	e.waitCommitted(int64(events / 8))

	bound := worker.StallBound(opts)
	start := time.Now()
	blackhole(true)
	// Not ready within the bound: the configured stall bound, plus the
	// slack of one lag interval for the gauges.
	testenv.Eventually(t, bound+opts.LagInterval+2*time.Second, func() bool { return !r.w.Ready() },
		"%s blackholed: the worker stayed ready for longer than %v", what, bound)
	notReady := time.Since(start)
	testenv.Eventually(t, bound+opts.LagInterval+2*time.Second, func() bool { return metric(r.reg, "streamworker_partition_stuck_seconds") > 0 },
		"%s blackholed: no partition reported stuck", what)
	if rest := hole - time.Since(start); rest > 0 {
		// The blackhole lasts its whole length whatever the worker does;
		// this is the fault's duration, not a wait for async work.
		testenv.Pace(t, rest)
	}
	blackhole(false)
	healed := time.Now()
	before := e.committedTotal()
	testenv.Eventually(t, 2*time.Minute, func() bool { return r.w.Ready() && e.committedTotal() > before },
		"the worker did not recover by itself after the %s heal", what)
	recovered := time.Since(healed)
	t.Logf("%s blackhole %v: not ready after %v (bound %v), ready and committing again %v after the heal",
		what, hole, notReady.Round(time.Millisecond), bound, recovered.Round(time.Millisecond))
	oracle := wait()
	e.waitDrained(2 * time.Minute)
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_partition_stuck_seconds") == 0 },
		"stuck time not reset after the heal")
	t.Logf("gaps given up %v, late events %v, DLQ reasons %v", metric(r.reg, "streamworker_gaps_total"),
		metric(r.reg, "streamworker_events_late_total"), countReasons(e.dlqReasons()))
	e.verify(oracle, opts.Processors)
	e.report(fmt.Sprintf("%s blackhole %v", what, hole), "kfake 1 broker, Redis standalone", oracle, []time.Duration{recovered})
}

// TestShutdownDuringKafkaBlackhole: a worker asked to stop while Kafka
// does not answer returns from Run within shutdown.timeout (plus the 2s
// grace for the client to close), with an error, instead of waiting on
// its offset commit and leave request for as long as the client retries;
// nothing is lost: a new worker finishes the stream after the heal.
func TestShutdownDuringKafkaBlackhole(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection; skipped with -short")
	}
	kpx := testenv.NewProxySet(t, chaosSeed(t, 16))
	e := newEnvWith(t, 4, []testenv.KafkaOption{testenv.WithFaultProxies(kpx), fastGroups}, nil)
	blackhole := func(on bool) { kpx.Each(func(p *testenv.Proxy) { p.Blackhole(on) }) }
	oracle := e.produce(workload(3000, 16))
	opts := e.options(nil)
	opts.ShutdownTimeout = 2 * time.Second
	r := e.start(opts)
	e.waitCommitted(500)
	blackhole(true)
	t.Cleanup(func() { blackhole(false) })
	r.cancel()
	limit := opts.ShutdownTimeout + 2*time.Second
	select {
	case err := <-r.done:
		close(r.done)
		if err == nil {
			t.Error("Run reported a clean drain while Kafka did not answer")
		}
	case <-time.After(limit + 3*time.Second):
		t.Fatalf("Run did not return within %v of the stop while Kafka was blackholed", limit)
	}
	blackhole(false)
	testenv.Eventually(t, 2*time.Minute, func() bool {
		select {
		case <-r.w.ClientClosed():
			return true
		default:
			return false
		}
	}, "the Kafka client never closed after the heal")
	e.start(e.options(nil))
	e.waitDrained(2 * time.Minute)
	e.verify(oracle, opts.Processors)
}
