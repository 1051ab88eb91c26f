package worker_test

// Hostile producers, against a real redis-server: each test is one finding
// of a review that produced crafted records with a non-Go client. None of
// them may lose another record's event, wedge a partition, or stop the
// worker (docs/contract.md, "Delivery guarantees").

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/processors"
)

// crafted is an activity event of user with the given id and sequence (0:
// none); both may hold any characters.
func crafted(id, user string, seq int64) *kgo.Record {
	s := ""
	if seq != 0 {
		s = fmt.Sprintf(`"sequence":%d,`, seq)
	}
	v := fmt.Sprintf(`{"id":%q,"type":"user.activity","aggregateId":%q,%s"timestamp":"2026-11-22T10:00:01.000Z","data":{"action":"click"}}`, id, user, s)
	return &kgo.Record{Key: []byte(user), Value: []byte(v)}
}

// applied returns the totalActivity of user u in the store.
func (e *env) applied(u string) int64 { return e.decoded(u).TotalActivity }

// TestKeyInjectionDropsNoEvent: user "a" with event "b}:seen:c" and user
// "a}:seen:b" with event "c" once mapped to the same dedupe key, so the
// second event was dropped as a duplicate.
func TestKeyInjectionDropsNoEvent(t *testing.T) {
	e := newEnv(t, 1)
	r := e.start(e.options(nil))
	e.send(crafted("b}:seen:c", "a", 0), crafted("c", "a}:seen:b", 0))
	e.waitDrained(30 * time.Second)
	e.wantApplied(r, map[string]int64{"a": 1, "a}:seen:b": 1})
}

// TestOutputIDsDoNotCollide: user "o:x" with event "e" and user "o" with
// event "x:e" are two events of two users; their aggregated outputs once
// shared the ID "aggregate:o:x:e", and a consumer that drops repeats by ID,
// as the contract tells it to, dropped one of them.
func TestOutputIDsDoNotCollide(t *testing.T) {
	events := map[string]string{"o:x": "e", "o": "x:e", "~o": "x:e"} // user: event ID
	e := newEnv(t, 1)
	r := e.start(e.options(nil))
	want := map[string]int64{}
	for u, id := range events {
		e.send(crafted(id, u, 0))
		want[u] = 1
	}
	e.waitDrained(20 * time.Second)
	e.wantApplied(r, want)
	ids := map[string]string{}
	for _, o := range e.outputs(e.names.Aggregates) {
		if prev, ok := ids[o.env.ID]; ok {
			t.Fatalf("the outputs of %s and %s share the ID %q", prev, o.env.AggregateID, o.env.ID)
		}
		ids[o.env.ID] = o.env.AggregateID
	}
	if len(ids) != len(events) {
		t.Fatalf("%d aggregated outputs, want %d", len(ids), len(events))
	}
}

// TestTransactionalInputCommitsPastMarkers: a producer writing in
// transactions leaves a marker after each one (and the aborted records
// before an abort marker), which a read_committed consumer never sees as
// records. The worker commits past them once every record before is done:
// before, its commit point stopped after the last record it saw, so an
// idle partition showed a lag of one marker (or of a whole aborted
// transaction) forever and a drain never caught up.
func TestTransactionalInputCommitsPastMarkers(t *testing.T) {
	e := newEnv(t, 1)
	r := e.start(e.options(nil))
	ctx := context.Background()
	tx := e.kafka.Client(t, kgo.TransactionalID(e.group+"-tx"), kgo.DefaultProduceTopic(e.names.Input))
	for _, c := range []struct {
		id  string
		end kgo.TransactionEndTry
	}{{"t1", kgo.TryCommit}, {"t2", kgo.TryAbort}} {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := tx.ProduceSync(ctx, crafted(c.id, "u-tx", 0)).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := tx.EndTransaction(ctx, c.end); err != nil {
			t.Fatal(err)
		}
	}
	// t1, its commit marker, t2 (aborted), its abort marker.
	testenv.Eventually(t, 15*time.Second, func() bool { return e.committed()[0] == 4 },
		"the commit point did not pass the transaction markers")
	e.wantApplied(r, map[string]int64{"u-tx": 1})
}

// TestKeyInjectionWedgesNothing: a mark of one user once landed on another
// user's state key (or the reverse), so a fetch got WRONGTYPE or the commit
// script failed, and the partition retried forever (once while reporting
// ready and re-publishing the same aggregate on every retry).
func TestKeyInjectionWedgesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first *kgo.Record
		then  *kgo.Record
		users []string
	}{
		{"mark then state", crafted("x}:state", "v", 0), crafted("e1", "v}:seen:x", 0), []string{"v", "v}:seen:x"}},
		{"state then mark", crafted("e1", "w}:seen:y", 0), crafted("y}:state", "w", 0), []string{"w}:seen:y", "w"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			r := e.start(e.options(nil))
			e.send(tc.first, tc.then)
			e.waitDrained(30 * time.Second)
			for _, u := range tc.users {
				if got := e.applied(u); got != 1 {
					t.Errorf("user %q: %d events applied, want 1", u, got)
				}
			}
			if n := len(e.readAll(e.names.Aggregates)); n != 2 {
				t.Errorf("%d aggregated outputs, want 2 (one per user)", n)
			}
			testenv.Eventually(t, 10*time.Second, r.w.Ready, "worker not ready")
		})
	}
}

// TestBufferSmallerThanEvent: with sequencing.max_buffered_bytes below one
// event's size, an out-of-order event once made the worker dereference nil
// and crash, again on every restart.
func TestBufferSmallerThanEvent(t *testing.T) {
	e := newEnv(t, 1)
	opts := e.options(nil)
	opts.Sequencing.MaxBytes = 64
	r := e.start(opts)
	e.send(crafted("l1", "u-l", 1), crafted("l3", "u-l", 3), crafted("l4", "u-l", 4))
	e.waitDrained(30 * time.Second)
	e.wantApplied(r, map[string]int64{"u-l": 3}) // the gap before 3 given up
}

// TestSequenceOverflow: sequence 9223372036854775807 then 5 once wrapped
// the expected sequence: 5 was applied after the maximum and the gap record
// said expected -9223372036854775808. A sequence beyond the documented
// maximum (2^53-1) is invalid.
func TestSequenceOverflow(t *testing.T) {
	e := newEnv(t, 1)
	opts := e.options(nil)
	opts.Sequencing.GapTimeout = time.Second // m5 waits for 2..4 until then
	r := e.start(opts)
	e.send(crafted("m1", "u-m", 1), crafted("huge", "u-m", 9223372036854775807), crafted("m5", "u-m", 5))
	e.waitDrained(30 * time.Second)
	reasons := e.dlqReasons()
	if len(reasons) != 1 || reasons[0] != "invalid_sequence" {
		t.Errorf("DLQ reasons %q, want [invalid_sequence]", reasons)
	}
	for _, g := range e.gapRecords() {
		if g.Expected < 1 || g.ResumedAt <= g.Expected {
			t.Errorf("gap record %+v", g)
		}
	}
	if st := e.decoded("u-m"); st.LastSequence > 1<<53-1 {
		t.Errorf("lastSequence %d beyond the maximum", st.LastSequence)
	}
	e.wantApplied(r, nil)
}

// TestHostileSoak mixes every hostile category into the standard workload
// (a seeded short run; `make soak` runs it for 10 minutes at a steady rate,
// with SW_SOAK_FOR and SW_SOAK_RATE). The worker never stops, every
// partition's committed offset reaches the log end, every user (the normal
// ones and the hostile ones) ends exactly as the reference says, and every
// rejected record is on the DLQ exactly once.
func TestHostileSoak(t *testing.T) {
	cfg := workload(3000, 21)
	cfg.Hostile = 0.03
	soakFor, _ := time.ParseDuration(os.Getenv("SW_SOAK_FOR"))
	rate, _ := strconv.ParseFloat(os.Getenv("SW_SOAK_RATE"), 64)
	if soakFor > 0 {
		rate = cmp.Or(rate, 2000)
		cfg.Events = int(rate * soakFor.Seconds())
		cfg.Hostile = 0.002 // a few thousand, a tenth of them 300 KB
		cfg.Users = 10_000
	}
	e := newEnv(t, 4)
	opts := e.options(nil)
	// The reference gives up no gap; on a loaded machine a partition can
	// be starved of fetches for longer than the 30s default.
	opts.Sequencing.GapTimeout = 10 * time.Minute
	r := e.start(opts)
	var oracle *loadgen.Oracle
	start := time.Now()
	if rate > 0 {
		oracle = e.produceInBackground(cfg, rate)()
	} else {
		oracle = e.produce(cfg)
	}
	e.waitDrained(max(2*time.Minute, soakFor/2))
	select {
	case err := <-r.done:
		t.Fatalf("the worker stopped: %v", err)
	default:
	}
	reasons := map[string]int{}
	for _, x := range e.dlqReasons() {
		reasons[x]++
	}
	t.Logf("%d records (%d rejected) in %v; DLQ by reason %v; %d gaps given up; worker ready: %v", cfg.Events, oracle.Malformed(),
		time.Since(start).Round(time.Second), reasons, len(e.gapRecords()), r.w.Ready())
	e.verify(oracle, processors.DefaultConfig())
	if n := len(e.readAll(e.names.DLQ)); n != oracle.Malformed() {
		t.Errorf("%d DLQ records, want each of the %d rejected records once", n, oracle.Malformed())
	}
}

// TestStructuredCloudEventRejected: a CloudEvents record in structured mode
// (the event's attributes in the JSON value, not in ce_* headers) goes to
// the DLQ as invalid_specversion. Before, it was read as the JSON envelope:
// its time ignored (the record's timestamp used instead, here a year
// later), its aggregateid ignored, and the event applied.
func TestStructuredCloudEventRejected(t *testing.T) {
	ce := &kgo.Record{Key: []byte("u-ce"), Timestamp: time.Date(2027, 11, 22, 10, 0, 0, 0, time.UTC),
		Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/cloudevents+json")}},
		Value: []byte(`{"specversion":"1.0","id":"c1","type":"user.activity","source":"/app",` +
			`"time":"2026-11-22T10:00:01Z","aggregateid":"u-ce","data":{"action":"click"}}`)}
	plain := &kgo.Record{Key: []byte("u-ce"), Value: []byte(`{"id":"c2","type":"user.activity","timestamp":"2026-11-22T10:00:02Z"}`)}
	e := newEnv(t, 1)
	r := e.start(e.options(nil))
	e.send(ce, plain)
	e.waitDrained(20 * time.Second)
	e.wantApplied(r, map[string]int64{"u-ce": 1})
	if got := e.dlqReasons(); len(got) != 1 || got[0] != "invalid_specversion" {
		t.Errorf("DLQ reasons %q, want [invalid_specversion]", got)
	}
}

// TestFutureEventTimeRejected: an event dated 9999 once became its user's
// newest event for good: every later event fell out of the anomaly window
// behind it and lastActivityAt stayed in 9999. An event time further than
// input.max_time_ahead after its record's timestamp goes to the DLQ.
func TestFutureEventTimeRejected(t *testing.T) {
	e := newEnv(t, 1)
	r := e.start(e.options(nil))
	future := crafted("far", "f", 0)
	future.Value = []byte(strings.Replace(string(future.Value), "2026-11-22T10:00:01.000Z", "9999-12-31T23:59:59.000Z", 1))
	e.send(future, crafted("next", "f", 0))
	e.waitDrained(30 * time.Second)
	e.wantApplied(r, map[string]int64{"f": 1})
	if got, want := e.decoded("f").LastActivityMillis, time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC).UnixMilli(); got != want {
		t.Errorf("lastActivity %v, want %v", time.UnixMilli(got).UTC(), time.UnixMilli(want).UTC())
	}
	if got := e.dlqReasons(); len(got) != 1 || got[0] != "invalid_timestamp" {
		t.Errorf("DLQ reasons %v, want [invalid_timestamp]", got)
	}
}

// TestReusedAppliedIDRebuildsOnce: an event ID applied long ago (out of the
// in-memory recent front) comes back in every batch at the sequence its
// user expects next. Such an event is above the user's last sequence, so
// its mark is not read before the write, and the write is rejected. Each
// rejection rebuilt the whole partition (every user's state read again
// from Redis): a producer could force one rebuild per batch. After the
// first, the user's every event has its mark read before the write.
func TestReusedAppliedIDRebuildsOnce(t *testing.T) {
	const rounds = 5
	e := newEnv(t, 1)
	opts := e.options(nil)
	opts.RecentSize = 0 // the applied ID has left the recent front
	r := e.start(opts)
	e.send(activity("a", "u-a", 1, 1))
	e.waitDrained(30 * time.Second)
	for i := range rounds {
		e.send(activity("a", "u-a", 2, 2), activity(fmt.Sprintf("b-%d", i), "u-b", i+1, 3))
		e.waitDrained(30 * time.Second)
	}
	e.wantApplied(r, map[string]int64{"u-a": 1, "u-b": rounds})
	if n := metric(r.reg, "streamworker_partition_resets_total"); n > 1 {
		t.Fatalf("%v partition rebuilds for %d batches carrying one reused ID; want at most 1", n, rounds)
	}
}

// TestLoadReadsMarksOnlyWhereNeeded: the sequenced events of users not in
// the cache are new when above the stored last sequence, so their marks are
// not read (every one was, one mark read per event with many users); the
// same events delivered again to a fresh worker are read and dropped.
func TestLoadReadsMarksOnlyWhereNeeded(t *testing.T) {
	const users = 200
	e, log := newLoggedEnv(t)
	var recs []*kgo.Record
	for u := range users {
		for seq := 1; seq <= 2; seq++ {
			recs = append(recs, activity(fmt.Sprintf("e-%d-%d", u, seq), fmt.Sprintf("u-%d", u), seq, seq))
		}
	}
	e.send(recs...)
	opts := e.options(nil)
	opts.RecentSize = 0
	e.runDrained(opts)
	if n := log.readMarks(); n != 0 {
		t.Fatalf("%d marks read for %d new events of users not in the cache; want 0", n, len(recs))
	}
	e.send(recs...) // delivered again: a fresh worker has nothing in memory
	e.runDrained(opts)
	if n := log.readMarks(); n != len(recs) {
		t.Fatalf("%d marks read for %d redelivered events; want every one", n, len(recs))
	}
	for u := range users {
		e.wantTotal(fmt.Sprintf("u-%d", u), 2)
	}
}
