package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/topics"
)

func activity(id, user string, seq int, second int) *kgo.Record {
	v := fmt.Sprintf(`{"id":%q,"type":"user.activity","aggregateId":%q,"sequence":%d,`+
		`"timestamp":"2026-11-22T10:00:%02d.000Z","data":{"action":"click","resource":"/r"}}`, id, user, seq, second)
	return &kgo.Record{Key: []byte(user), Value: []byte(v)}
}

func (e *env) send(recs ...*kgo.Record) {
	e.t.Helper()
	for _, r := range recs {
		r.Topic = e.names.Input
	}
	if err := e.kafka.Client(e.t).ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

// TestGapGivenUp: a permanently missing sequence is given up after the gap
// timeout and recorded on the gaps topic, the buffered successors are
// applied in order, the commit point is held back meanwhile, and the missing
// event, when it finally arrives, goes to the DLQ as late.
func TestGapGivenUp(t *testing.T) {
	e := newEnv(t, 1)
	opts := e.options(nil)
	opts.Sequencing.GapTimeout = 2 * time.Second
	r := e.start(opts)
	// 1, then 4 and 5: 2 and 3 are missing.
	e.send(activity("g1", "u-gap", 1, 1), activity("g4", "u-gap", 4, 4), activity("g5", "u-gap", 5, 5))
	testenv.Eventually(t, 10*time.Second, func() bool {
		return metric(r.reg, "streamworker_buffered_events") == 2
	}, "4 and 5 were not buffered")
	if c := e.committed()[0]; c > 1 {
		t.Fatalf("committed offset %d passes buffered records (offsets 1 and 2)", c)
	}

	testenv.Eventually(t, 15*time.Second, func() bool {
		return metric(r.reg, "streamworker_gaps_total") == 1 && e.committed()[0] == 3
	}, "gap not given up and committed after the timeout")
	gaps := e.outputs(e.names.Gaps)
	if len(gaps) != 1 {
		t.Fatalf("%d gap records, want 1", len(gaps))
	}
	var gd topics.GapData
	if err := json.Unmarshal(gaps[0].env.Data, &gd); err != nil {
		t.Fatal(err)
	}
	if want := (topics.GapData{AggregateID: "u-gap", Expected: 2, ResumedAt: 4, Skipped: 2}); gd != want {
		t.Fatalf("gap record %+v, want %+v", gd, want)
	}
	if gaps[0].env.ID != "gap:u-gap:2:4" {
		t.Fatalf("gap id %q", gaps[0].env.ID)
	}

	// The successors were applied in order: the last aggregate says 3
	// events and lastSequence 5.
	aggs := e.outputs(e.names.Aggregates)
	var last topics.AggregatedData
	if err := json.Unmarshal(aggs[len(aggs)-1].env.Data, &last); err != nil {
		t.Fatal(err)
	}
	if last.TotalActivity != 3 || last.LastSequence != 5 {
		t.Fatalf("after the gap: %+v, want totalActivity 3 and lastSequence 5", last)
	}

	// The missing event arrives late: DLQ with reason "late", state unchanged.
	e.send(activity("g2", "u-gap", 2, 2))
	testenv.Eventually(t, 10*time.Second, func() bool { return e.committed()[0] == 4 }, "late event not committed")
	dlq := e.readAll(e.names.DLQ)
	if len(dlq) != 1 || headers(dlq[0])["dlq.reason"] != "late" || string(dlq[0].Value) != string(activity("g2", "u-gap", 2, 2).Value) {
		t.Fatalf("DLQ after the late event: %d records %v", len(dlq), dlqReasons(dlq))
	}
	if got := metric(r.reg, "streamworker_events_late_total"); got != 1 {
		t.Fatalf("events_late_total = %v, want 1", got)
	}
}

func dlqReasons(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, headers(r)["dlq.reason"])
	}
	return out
}

// TestReplayIsDeterministic processes a recorded stream twice from offset 0
// into fresh state (a new group and key prefix) with one aggregate output
// per event: the output records are byte-identical.
func TestReplayIsDeterministic(t *testing.T) {
	e := newEnv(t, 3)
	e.produce(workload(4000, 6))

	run := func(group, prefix string) map[string][][]byte {
		opts := e.options(nil)
		opts.Group, opts.KeyPrefix, opts.CoalesceAggregates = group, prefix, false
		e.group = group
		r := e.start(opts)
		e.waitDrained(60 * time.Second)
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		out := map[string][][]byte{}
		for _, topic := range []string{e.names.Aggregates, e.names.Milestones, e.names.Anomalies, e.names.DLQ, e.names.Gaps} {
			for _, rec := range e.readAll(topic) {
				out[topic] = append(out[topic], rec.Value)
			}
		}
		return out
	}
	first := run("replay-1", "r1")
	second := run("replay-2", "r2") // the topics now hold both runs' records
	for topic, recs := range first {
		all := second[topic]
		if len(all) != 2*len(recs) {
			t.Fatalf("%s: first run produced %d records, both runs %d", topic, len(recs), len(all))
		}
		// Output topics are keyed by user, so per-partition order is the
		// same in both runs; compare as multisets to ignore interleaving.
		if !twice(recs, all) {
			t.Fatalf("%s: the replay's records are not byte-identical to the first run's", topic)
		}
	}
	if len(first[e.names.Aggregates]) == 0 || len(first[e.names.Milestones]) == 0 {
		t.Fatal("no outputs to compare")
	}
}

// twice reports whether all holds each record of recs exactly twice.
func twice(recs, all [][]byte) bool {
	count := map[string]int{}
	for _, r := range recs {
		count[string(r)] += 2
	}
	for _, r := range all {
		count[string(r)]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestFailingBatchIsNeverSkipped: a batch that cannot be persisted (here: a
// stored state this build cannot read) stops its partition, retrying and not
// ready, without committing past it; once the cause is fixed the same
// records are processed and committed.
func TestFailingBatchIsNeverSkipped(t *testing.T) {
	e := newEnv(t, 1)
	rc := e.redis.Client(t)
	ctx := context.Background()
	stateKey := fmt.Sprintf("%s:{u-bad}:state", e.prefix)
	if err := rc.HSet(ctx, stateKey, "v", "1", "d", "not a state").Err(); err != nil {
		t.Fatal(err)
	}
	r := e.start(e.options(nil))
	e.send(activity("ok1", "u-ok", 1, 1), activity("bad1", "u-bad", 1, 1), activity("ok2", "u-ok", 2, 2))
	testenv.Eventually(t, 20*time.Second, func() bool {
		return metric(r.reg, "streamworker_partition_resets_total") >= 2 && !r.w.Ready()
	}, "worker did not report the failing partition as not ready")
	if c := e.committed()[0]; c != 0 {
		t.Fatalf("committed offset %d past a batch that failed", c)
	}
	if err := rc.Del(ctx, stateKey).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return e.committed()[0] == 3 && r.w.Ready() },
		"records not processed after the cause was fixed")
	if got := metric(r.reg, "streamworker_events_processed_total"); got != 3 {
		t.Fatalf("processed %v events, want 3", got)
	}
}

// TestPermutationMatchesInOrder delivers each user's events in a random
// local permutation (within the reorder buffer's bounds, no gap outlives
// the timeout) and checks the final state and the milestone and anomaly
// outputs against in-order application.
func TestPermutationMatchesInOrder(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			e := newEnv(t, 2)
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			oracle := loadgen.NewOracle()
			var recs []*kgo.Record
			for u := range 6 {
				user := fmt.Sprintf("u-%d", u)
				var evs []loadgen.Record
				base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
				for seq := 1; seq <= 150; seq++ {
					// One event a minute; every 3rd user then bursts:
					// 50 events within 10 seconds, which fires.
					at := base.Add(time.Duration(seq) * time.Minute)
					if u%3 == 0 && seq > 100 {
						at = base.Add(101*time.Minute + time.Duration(seq-100)*200*time.Millisecond)
					}
					v := fmt.Sprintf(`{"id":"%s-%d","type":"user.activity","aggregateId":%q,"sequence":%d,`+
						`"timestamp":%q,"data":{"action":"a%d","resource":"/r%d"}}`,
						user, seq, user, seq, topics.FormatTime(at), seq%3, seq%7)
					evs = append(evs, loadgen.Record{Key: []byte(user), Value: []byte(v), Kind: loadgen.Valid,
						ID: fmt.Sprintf("%s-%d", user, seq), User: user, Sequence: int64(seq)})
				}
				for _, r := range evs { // the oracle sees them in order
					oracle.Observe(r)
				}
				// Shuffle within windows of 8: every event stays within 8
				// places of its sequence position.
				for i := 0; i < len(evs); i += 8 {
					w := evs[i:min(i+8, len(evs))]
					rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
				}
				for _, r := range evs {
					recs = append(recs, &kgo.Record{Key: r.Key, Value: r.Value})
				}
			}
			e.send(recs...)
			opts := e.options(nil)
			r := e.start(opts)
			e.waitDrained(30 * time.Second)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			e.verify(oracle, opts.Processors)
			if got := metric(r.reg, "streamworker_anomalies_total"); got == 0 {
				t.Fatal("no anomaly: the bursts should fire")
			}
			if got := metric(r.reg, "streamworker_gaps_total"); got != 0 {
				t.Fatalf("%v gaps given up; the permutation stays within the buffer", got)
			}
		})
	}
}

// TestDuplicatesWithoutRecentFront: with the in-memory front disabled,
// duplicates inside one batch and across batches are still dropped.
func TestDuplicatesWithoutRecentFront(t *testing.T) {
	e := newEnv(t, 1)
	opts := e.options(nil)
	opts.RecentSize = 0
	e.send(activity("d1", "u-d", 1, 1), activity("d1", "u-d", 1, 1), activity("d2", "u-d", 2, 2),
		activity("d1", "u-d", 1, 1), activity("d2", "u-d", 2, 2))
	r := e.start(opts)
	testenv.Eventually(t, 20*time.Second, func() bool { return e.committed()[0] == 5 }, "batch not committed")
	e.send(activity("d2", "u-d", 2, 2), activity("d3", "u-d", 3, 3))
	testenv.Eventually(t, 20*time.Second, func() bool { return e.committed()[0] == 7 }, "second batch not committed")
	if p, d := metric(r.reg, "streamworker_events_processed_total"), metric(r.reg, "streamworker_events_duplicate_total"); p != 3 || d != 4 {
		t.Fatalf("processed %v, duplicates %v; want 3 and 4", p, d)
	}
}
