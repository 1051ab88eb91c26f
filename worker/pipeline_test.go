package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/topics"
)

// workload is the standard test stream: duplicates, out-of-order and
// malformed records, and anomaly bursts.
func workload(events int, seed int64) loadgen.Config {
	return loadgen.Config{Users: 300, Events: events, Duplicates: 0.05, OutOfOrder: 0.03,
		Malformed: 0.02, CloudEvents: 0.1, Bursts: 0.1, Seed: seed}
}

// TestPipeline runs ~20k records through one worker and checks the exact
// state of every user, every expected output ID, and every malformed record
// in the DLQ.
func TestPipeline(t *testing.T) {
	e := newEnv(t, 6)
	oracle := e.produce(workload(20_000, 1))
	if oracle.Duplicates() == 0 || oracle.Malformed() == 0 {
		t.Fatalf("workload has %d duplicates and %d malformed records; want some of each", oracle.Duplicates(), oracle.Malformed())
	}
	opts := e.options(nil)
	r := e.start(opts)
	e.waitDrained(60 * time.Second)
	if err := r.stop(t); err != nil {
		t.Fatalf("drain: %v", err)
	}
	e.verify(oracle, opts.Processors)
	if got := metric(r.reg, "streamworker_events_duplicate_total"); got < float64(oracle.Duplicates()) {
		t.Errorf("duplicates counted %v, want at least the %d produced", got, oracle.Duplicates())
	}
	if got, want := metric(r.reg, "streamworker_dlq_total"), float64(oracle.Malformed()); got != want {
		t.Errorf("dlq_total = %v, want %v", got, want)
	}
	if got := metric(r.reg, "streamworker_anomalies_total"); got == 0 {
		t.Error("no anomaly detected in a workload with bursts")
	}
}

// TestDrainCommitsEverything: after a clean shutdown the committed offsets
// equal the log end, and a restarted worker re-processes nothing.
func TestDrainCommitsEverything(t *testing.T) {
	e := newEnv(t, 4)
	e.produce(workload(3000, 2))
	opts := e.options(nil)
	r := e.start(opts)
	testenv.Eventually(t, 30*time.Second, func() bool {
		return metric(r.reg, "streamworker_events_consumed_total") == float64(totalRecords(e))
	}, "worker did not consume every record")
	if err := r.stop(t); err != nil {
		t.Fatalf("drain: %v", err)
	}
	ends, committed := e.endOffsets(), e.committed()
	for p, end := range ends {
		if committed[p] != end {
			t.Fatalf("partition %d: committed %d after a clean shutdown, log end %d", p, committed[p], end)
		}
	}

	r2 := e.start(e.options(nil))
	testenv.Eventually(t, 20*time.Second, r2.w.Ready, "restarted worker never became ready")
	// Produce one more record and wait for it: the restarted worker must
	// consume exactly that one.
	cl := e.kafka.Client(t)
	ev := `{"id":"after-restart","type":"user.activity","aggregateId":"u-new","data":{"action":"click"}}`
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: e.names.Input, Key: []byte("u-new"), Value: []byte(ev)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		return metric(r2.reg, "streamworker_events_processed_total") == 1
	}, "restarted worker did not process the new record")
	if got := metric(r2.reg, "streamworker_events_consumed_total"); got != 1 {
		t.Fatalf("restarted worker consumed %v records, want only the 1 new one", got)
	}
}

// TestRedisOutage stops Redis (with AOF) for a while mid-stream: the worker
// reports not ready, waits, and resumes with exactly the right result. It
// runs on every Redis topology (testenv.Topologies): every node of a
// Cluster or of Sentinel's master and replica is stopped, then restarted.
func TestRedisOutage(t *testing.T) {
	eachTopology(t, testRedisOutage)
}

func testRedisOutage(t *testing.T, topo testenv.Topology) {
	if topo != testenv.Single && testing.Short() {
		t.Skip("replicated topology; skipped with -short")
	}
	e := newTopoEnvWith(t, 4, topo, []testenv.RedisOption{testenv.WithAOF()}, nil)
	if !e.topo.CanRestart() {
		t.Skip("external Redis cannot be restarted")
	}
	events := topoEvents(topo, 8000)
	down := 10 * time.Second
	if topo != testenv.Single && !topoChaos() {
		down = 3 * time.Second
	}
	wait := e.produceInBackground(workload(events, 3), 1000)
	opts := e.options(nil)
	if e.redis == nil {
		opts = e.topoOptions(0)
	}
	r := e.start(opts)
	srv := httptest.NewServer(app.Handler(r.reg, r.w.Ready))
	defer srv.Close()
	testenv.Eventually(t, 20*time.Second, func() bool {
		return metric(r.reg, "streamworker_events_processed_total") > 500
	}, "worker made no progress")

	e.topo.Stop()
	stoppedAt := time.Now()
	testenv.Eventually(t, 10*time.Second, func() bool { return readyz(srv.URL) == http.StatusServiceUnavailable },
		"/readyz still ready with Redis down")
	stalled := metric(r.reg, "streamworker_events_processed_total")
	// Keep Redis down for a while; the worker must keep retrying meanwhile.
	testenv.Eventually(t, down+10*time.Second, func() bool {
		return time.Since(stoppedAt) >= down && metric(r.reg, "streamworker_redis_errors_total") > 0
	}, "no Redis error observed while it was down")
	if got := metric(r.reg, "streamworker_events_processed_total"); got != stalled {
		t.Fatalf("processed moved from %v to %v while Redis was down: state was not persisted", stalled, got)
	}
	startedAt := time.Now()
	e.topo.Start()

	testenv.Eventually(t, 30*time.Second, func() bool { return readyz(srv.URL) == http.StatusOK }, "/readyz not ready after Redis came back")
	recovery := []time.Duration{time.Since(startedAt)}
	oracle := wait()
	e.waitDrained(60 * time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if metric(r.reg, "streamworker_events_processed_total") <= stalled {
		t.Fatal("no progress after Redis came back")
	}
	e.reportTopology(topo, fmt.Sprintf("all data nodes down %v", down), events, oracle, recovery)
}

func readyz(base string) int {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestZombieWriteIsFenced: when another owner writes a user's state behind
// the worker's back (a zombie's view is then stale), the worker's write is
// rejected, it rebuilds its view from Redis, and no event is applied twice.
func TestZombieWriteIsFenced(t *testing.T) {
	e := newEnv(t, 1)
	cl := e.kafka.Client(t)
	send := func(id string, seq int) {
		t.Helper()
		v := fmt.Sprintf(`{"id":%q,"type":"user.activity","aggregateId":"u-1","sequence":%d,`+
			`"timestamp":"2026-11-22T10:00:%02d.000Z","data":{"action":"click","resource":"/a"}}`, id, seq, seq)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: e.names.Input, Key: []byte("u-1"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	r := e.start(e.options(nil))
	send("e1", 1)
	testenv.Eventually(t, 20*time.Second, func() bool {
		return metric(r.reg, "streamworker_events_processed_total") == 1 && len(e.committed()) > 0 && e.committed()[0] == 1
	}, "first event not processed and committed")

	// Another owner, after a rebalance, applies e2 and e3 in two batches
	// and commits versions 2 and 3 with their marks. This worker still
	// holds version 1. (Had the other owner committed both in one batch,
	// at version 2, a stale write of e2 and e3 together would be the very
	// bytes already stored, which the script takes as a retried commit:
	// nothing is applied twice either way, but no conflict is counted.)
	rc := e.redis.Client(t)
	keys := dedupe.Keys{Prefix: e.prefix}
	ctx := context.Background()
	data, err := rc.HGet(ctx, keys.State("u-1"), "d").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var st processors.State
	if err := st.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	proc, _ := processors.New(processors.DefaultConfig())
	for seq := int64(2); seq <= 3; seq++ {
		ev := topics.Event{ID: fmt.Sprintf("e%d", seq), Type: topics.TypeUserActivity, AggregateID: "u-1", Sequence: seq,
			Time: time.Date(2026, 11, 22, 10, 0, int(seq), 0, time.UTC), Data: topics.Activity{UserID: "u-1", Action: "click", Resource: "/a"}}
		proc.Apply(&st, &ev)
		rc.Set(ctx, keys.Seen("u-1", ev.ID), "1", time.Hour)
		newData, _ := st.MarshalBinary()
		if err := rc.HIncrBy(ctx, keys.State("u-1"), "v", 1).Err(); err != nil {
			t.Fatal(err)
		}
		rc.HSet(ctx, keys.State("u-1"), "d", newData)
	}

	// The late deliveries of e2 and e3 reach the stale owner: its write
	// at version 1 is fenced; it rebuilds from Redis, finds both applied,
	// and applies nothing twice.
	send("e2", 2)
	send("e3", 3)
	testenv.Eventually(t, 20*time.Second, func() bool { return e.committed()[0] == 3 }, "events not committed")
	if got := metric(r.reg, "streamworker_state_conflicts_total"); got < 1 {
		t.Fatalf("state_conflicts_total = %v: the stale write was not fenced", got)
	}
	data, _ = rc.HGet(ctx, keys.State("u-1"), "d").Bytes()
	var final processors.State
	if err := final.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if snap := final.Snapshot("u-1"); snap.TotalActivity != 3 || snap.LastSequence != 3 {
		t.Fatalf("final state %+v: want totalActivity 3 and lastSequence 3 (each event applied once)", snap)
	}
}

func totalRecords(e *env) int64 {
	var n int64
	for _, end := range e.endOffsets() {
		n += end
	}
	return n
}
