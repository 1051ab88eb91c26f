package worker_test

// The fast suite: workers on an in-process kfake cluster and a shared
// state.MemoryStore, no redis-server. It covers the pipeline's edge cases
// (full reorder buffers, write conflicts, retries, revokes) in seconds.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
)

// TestMemPipeline: the standard workload on a MemoryStore gives exactly the
// reference state and outputs.
func TestMemPipeline(t *testing.T) {
	e := newMemEnv(t, 4)
	oracle := e.produce(workload(5000, 11))
	opts := e.options(nil)
	r := e.start(opts)
	e.waitDrained(30 * time.Second)
	if err := r.stop(t); err != nil {
		t.Fatalf("drain: %v", err)
	}
	e.verify(oracle, opts.Processors)
}

// state returns the decoded stored state of user u.
func (e *env) decoded(u string) processors.State {
	e.t.Helper()
	var st processors.State
	if b := e.stateOf(u); b != nil {
		if err := st.UnmarshalBinary(b); err != nil {
			e.t.Fatalf("state of %s: %v", u, err)
		}
	}
	return st
}

// gapRecords returns the gap outputs' data in partition order.
func (e *env) gapRecords() []topics.GapData {
	e.t.Helper()
	var out []topics.GapData
	for _, r := range e.outputs(e.names.Gaps) {
		var d topics.GapData
		if err := json.Unmarshal(r.env.Data, &d); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// TestFullAggregateBuffer: an aggregate whose reorder buffer is full gives
// up its gap and applies what it held, in order.
func TestFullAggregateBuffer(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	opts.Sequencing.MaxPerAggregate = 2
	r := e.start(opts)
	e.send(activity("f1", "u-f", 1, 1), activity("f3", "u-f", 3, 3), activity("f4", "u-f", 4, 4), activity("f5", "u-f", 5, 5))
	testenv.Eventually(t, 10*time.Second, func() bool { return e.committed()[0] == 4 }, "batch not committed")
	st := e.decoded("u-f")
	if st.TotalActivity != 4 || st.LastSequence != 5 {
		t.Fatalf("state %+v; want 4 events applied up to sequence 5", st.Snapshot("u-f"))
	}
	if got, want := e.gapRecords(), []topics.GapData{{AggregateID: "u-f", Expected: 2, ResumedAt: 3, Skipped: 1}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("gap records %+v, want %+v", got, want)
	}
	if got := metric(r.reg, "streamworker_buffered_events"); got != 0 {
		t.Fatalf("%v events still buffered", got)
	}
}

// TestFullPartitionBuffer: when the partition's buffer is full, the oldest
// gap is given up to make room.
func TestFullPartitionBuffer(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	opts.Sequencing.MaxPerPartition = 2
	r := e.start(opts)
	// a, b and c each miss their sequence 1; the third has no room.
	e.send(activity("a2", "u-a", 2, 1), activity("b2", "u-b", 2, 2), activity("c2", "u-c", 2, 3))
	testenv.Eventually(t, 10*time.Second, func() bool { return len(e.readAll(e.names.Gaps)) == 1 },
		"no gap given up for the full partition")
	if got := e.gapRecords()[0]; got.AggregateID != "u-a" || got.Expected != 1 || got.ResumedAt != 2 {
		t.Fatalf("gap %+v; want u-a's, the oldest", got)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_events") == 2 },
		"b and c not buffered")
	if c := e.committed()[0]; c > 1 {
		t.Fatalf("committed %d: past the buffered b2 at offset 1", c)
	}
}

// TestSkippedSequencesHoldOneTimeout: a producer that skips every other
// sequence of a user (2, 4, 6: 1, 3 and 5 never come) holds those records
// for one gap timeout in all, not one per gap: every gap open that long is
// given up at once, and the commit point passes them. Before, giving up a
// gap restarted the timer of the next, and the first record held the
// commit point for sequencing.max_buffered gap timeouts, past what
// dedupe.ttl is sized for.
func TestSkippedSequencesHoldOneTimeout(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	clock := manualClock(&opts)
	opts.Sequencing.GapTimeout = time.Hour // the clock moves only when told to
	r := e.start(opts)
	e.send(activity("s2", "u-s", 2, 2), activity("s4", "u-s", 4, 4), activity("s6", "u-s", 6, 6))
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_events") == 3 },
		"2, 4 and 6 not buffered")
	clock.Add(int64(time.Hour))
	e.send(activity("n1", "u-n", 1, 7)) // a batch, which gives up the expired gaps
	testenv.Eventually(t, 10*time.Second, func() bool { return e.decoded("u-n").TotalActivity == 1 }, "u-n not applied")
	if got := metric(r.reg, "streamworker_gaps_total"); got != 3 {
		t.Fatalf("%v gaps given up an hour after 2, 4 and 6 arrived, want 3", got)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return e.committed()[0] == 4 }, "the held records not committed")
	if st := e.decoded("u-s"); st.TotalActivity != 3 || st.LastSequence != 6 {
		t.Fatalf("u-s: %d events up to sequence %d, want 3 up to 6", st.TotalActivity, st.LastSequence)
	}
}

// TestEventLargerThanBuffer: an out-of-order event bigger than the whole
// partition buffer (with nothing else buffered) gives up its own gap
// instead of crashing the worker.
func TestEventLargerThanBuffer(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	opts.Sequencing.MaxBytes = 64 // below one event
	r := e.start(opts)
	e.send(activity("l1", "u-l", 1, 1), activity("l3", "u-l", 3, 3), activity("l4", "u-l", 4, 4))
	testenv.Eventually(t, 10*time.Second, func() bool { return e.committed()[0] == 3 }, "batch not committed")
	if st := e.decoded("u-l"); st.TotalActivity != 3 || st.LastSequence != 4 {
		t.Fatalf("state %+v; want 3 events up to sequence 4", st.Snapshot("u-l"))
	}
	if got := e.gapRecords(); len(got) != 1 || got[0].Expected != 2 || got[0].ResumedAt != 3 {
		t.Fatalf("gap records %+v; want one for sequence 2", got)
	}
	if !r.w.Ready() {
		t.Fatal("worker not ready")
	}
}

// TestWriteConflictRebuilds: another owner wrote a user after this worker
// cached it; the stale write is rejected, the worker rebuilds its view from
// the store, and every event is applied exactly once.
func TestWriteConflictRebuilds(t *testing.T) {
	e := newMemEnv(t, 1)
	r := e.start(e.options(nil))
	e.send(activity("w1", "u-w", 1, 1))
	testenv.Eventually(t, 10*time.Second, func() bool { return e.committed()[0] == 1 }, "w1 not committed")

	// The other owner applies w2 and writes version 2 with its mark.
	proc, err := processors.New(processors.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	st := e.decoded("u-w")
	ev := topics.Event{ID: "w2", Type: topics.TypeUserActivity, AggregateID: "u-w", Sequence: 2,
		Time: time.Date(2026, 11, 22, 10, 0, 2, 0, time.UTC), Data: topics.Activity{Action: "click", Resource: "/r"}}
	proc.Apply(&st, &ev)
	data, _ := st.MarshalBinary()
	if out, err := e.mem.Commit(context.Background(), []state.Write{{Aggregate: "u-w", Expect: 1, Data: data, Marks: []string{"w2"}}}); err != nil || out[0] != state.Committed {
		t.Fatalf("other owner's write: %v %v", out, err)
	}

	e.send(activity("w2", "u-w", 2, 2), activity("w3", "u-w", 3, 3))
	testenv.Eventually(t, 10*time.Second, func() bool { return e.committed()[0] == 3 }, "w2, w3 not committed")
	if got := e.decoded("u-w"); got.TotalActivity != 3 || got.LastSequence != 3 {
		t.Fatalf("state %+v; want w1, w2, w3 applied once each", got.Snapshot("u-w"))
	}
	if metric(r.reg, "streamworker_state_conflicts_total") < 1 || metric(r.reg, "streamworker_partition_resets_total") < 1 {
		t.Fatal("the stale write was not counted as a conflict and a rebuild")
	}
}

// TestStoreOutageRetries: while the store fails, the worker is not ready
// and nothing is committed; once it answers, everything is processed.
func TestStoreOutageRetries(t *testing.T) {
	e := newMemEnv(t, 2)
	r := e.start(e.options(nil))
	testenv.Eventually(t, 10*time.Second, r.w.Ready, "worker never ready")
	e.mem.SetError(syscall.ECONNREFUSED)
	oracle := e.produce(workload(500, 12))
	testenv.Eventually(t, 10*time.Second, func() bool {
		return !r.w.Ready() && metric(r.reg, "streamworker_events_consumed_total") == 0
	}, "worker still ready while the store fails")
	if got := e.committedTotal(); got != 0 {
		t.Fatalf("committed %d records while the store failed", got)
	}
	e.mem.SetError(nil)
	e.waitDrained(30 * time.Second)
	testenv.Eventually(t, 10*time.Second, r.w.Ready, "worker not ready after the store recovered")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	e.verify(oracle, processors.DefaultConfig())
}

// gatedStore holds every Commit while armed, until the test says what
// the held call returns, and fails every Commit of an aggregate marked
// failing.
type gatedStore struct {
	state.Store
	mu       sync.Mutex
	armed    bool
	failing  map[string]bool
	held     chan heldCommit
	failures atomic.Int64 // calls failed because their aggregate is failing
}

// heldCommit is one Commit held by a gatedStore.
type heldCommit struct {
	agg     string     // the first write's aggregate
	release chan error // what the call returns; nil lets it through
}

func newGatedStore(s state.Store) *gatedStore {
	return &gatedStore{Store: s, held: make(chan heldCommit, 64), failing: map[string]bool{}}
}

func (g *gatedStore) fail(agg string, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failing[agg] = on
}

func (g *gatedStore) arm(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = on
}

func (g *gatedStore) Commit(ctx context.Context, writes []state.Write) ([]state.Outcome, error) {
	g.mu.Lock()
	armed, failing := g.armed, len(writes) > 0 && g.failing[writes[0].Aggregate]
	g.mu.Unlock()
	if failing {
		g.failures.Add(1)
		return make([]state.Outcome, len(writes)), syscall.ECONNRESET
	}
	if armed && len(writes) > 0 {
		h := heldCommit{agg: writes[0].Aggregate, release: make(chan error, 1)}
		g.held <- h
		select {
		case err := <-h.release:
			if err != nil {
				return make([]state.Outcome, len(writes)), err
			}
		case <-ctx.Done():
			return make([]state.Outcome, len(writes)), ctx.Err()
		}
	}
	return g.Store.Commit(ctx, writes)
}

// TestRevokeDuringRetry: a partition whose batch fails while it is being
// revoked must not stay paused: its fetching is resumed only after its
// goroutine has exited, so when the partition comes back to this worker it
// fetches again. And a revoke does not wait for a batch that is retrying.
func TestRevokeDuringRetry(t *testing.T) {
	e := newMemEnv(t, 4)
	gate := newGatedStore(e.mem)
	e.store = gate
	opts := e.options(nil)
	opts.ShutdownTimeout = time.Minute // a revoke must not wait for it
	a := e.start(opts)
	assigned := func(r *running, n float64) func() bool {
		return func() bool { return metric(r.reg, "streamworker_assigned_partitions") == n }
	}
	testenv.Eventually(t, 10*time.Second, assigned(a, 4), "a never owned the 4 partitions")

	// Every partition's first batch is held in Commit.
	gate.arm(true)
	user := func(prefix string, p int32) string { return fmt.Sprintf("u-%s%d", prefix, p) }
	send := func(prefix string) {
		var recs []*kgo.Record
		for p := range int32(4) {
			r := activity(prefix+fmt.Sprint(p), user(prefix, p), 1, 1)
			r.Partition = p
			recs = append(recs, r)
		}
		e.sendTo(recs...)
	}
	send("r")
	ofA := map[string]heldCommit{}
	for range 4 {
		h := <-gate.held
		ofA[h.agg] = h
	}

	// b joins: a revokes two partitions while their batches are held.
	// Their lag series are gone once they are detached, which names them.
	testenv.Eventually(t, 10*time.Second, func() bool { return len(labelValues(a.reg, "streamworker_consumer_lag", "partition")) == 4 },
		"a never published the lag of its 4 partitions")
	e.store = e.mem // b's calls are not gated
	b := e.start(e.options(nil))
	testenv.Eventually(t, 10*time.Second, assigned(a, 2), "a did not give up two partitions")
	kept := labelValues(a.reg, "streamworker_consumer_lag", "partition")
	var revoked []heldCommit
	for p := range int32(4) {
		if !slices.Contains(kept, fmt.Sprint(p)) {
			revoked = append(revoked, ofA[user("r", p)])
		}
	}
	if len(revoked) != 2 {
		t.Fatalf("a still publishes the lag of partitions %v", kept)
	}
	t.Logf("a kept partitions %v; revoked %s and %s", kept, revoked[0].agg, revoked[1].agg)
	// a stops revoked partitions in partition order and is now waiting
	// for the first. The second one's batch fails first, and keeps
	// failing: it is still running, so it retries (and pauses its
	// fetching); then the first one's fails, it exits, and the second is
	// stopped while it retries.
	gate.fail(revoked[1].agg, true)
	ofA[revoked[1].agg].release <- syscall.ECONNRESET
	testenv.Eventually(t, 10*time.Second, func() bool { return gate.failures.Load() >= 2 }, "the failed batch was not retried")
	ofA[revoked[0].agg].release <- syscall.ECONNRESET
	testenv.Eventually(t, 20*time.Second, assigned(b, 2), "b never got the revoked partitions")
	gate.fail(revoked[1].agg, false)

	gate.arm(false)
	for agg, h := range ofA {
		if agg != revoked[0].agg && agg != revoked[1].agg {
			h.release <- nil
		}
	}

	// b leaves: its partitions come back to a, which must fetch them.
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, assigned(a, 4), "a did not get the partitions back")
	send("s")
	e.waitDrained(20 * time.Second)
	for p := range int32(4) {
		for _, prefix := range []string{"r", "s"} {
			if got := e.decoded(user(prefix, p)); got.TotalActivity != 1 {
				t.Errorf("%s: %d events applied, want 1", user(prefix, p), got.TotalActivity)
			}
		}
	}
}

// sendTo produces records to the partitions they name.
func (e *env) sendTo(recs ...*kgo.Record) {
	e.t.Helper()
	cl := e.kafka.Client(e.t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, r := range recs {
		r.Topic = e.names.Input
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

// labelValues returns the values of label over the series of the metric
// family name in reg.
func labelValues(reg prometheus.Gatherer, name, label string) []string {
	mfs, err := reg.Gather()
	if err != nil {
		return nil
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}
