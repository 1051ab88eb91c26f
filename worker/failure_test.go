package worker_test

// Failures caused by one record stay with that record; failures that last
// are never silent (docs/contract.md, "Delivery guarantees", points 5, 6).

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/worker"
)

// dlqReasons returns the dlq.reason of every record on the DLQ topic.
func (e *env) dlqReasons() []string {
	var out []string
	for _, r := range e.readAll(e.names.DLQ) {
		out = append(out, headers(r)["dlq.reason"])
	}
	return out
}

// bigID returns an event of user u without a sequence whose id has n bytes.
func bigID(u string, n int) *kgo.Record {
	v := fmt.Sprintf(`{"id":%q,"type":"user.activity","aggregateId":%q,`+
		`"timestamp":"2026-11-22T10:00:05.000Z","data":{"action":"click","resource":"/r"}}`, strings.Repeat("x", n), u)
	return &kgo.Record{Key: []byte(u), Value: []byte(v)}
}

// TestOutputTooLargeIsolated: an event whose outputs cannot be produced (a
// 360 KB id is copied three times into its aggregated output, over the 1 MiB record
// limit) goes to the DLQ as output_too_large; it does not wedge its
// partition, and the events around it, of its own user and of another, are
// applied. (The default input.max_id_bytes rejects such an id earlier; the
// record size check is what holds whatever the bounds are set to.)
func TestOutputTooLargeIsolated(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	opts.Limits.MaxIDBytes = 1 << 20
	r := e.start(opts)
	e.send(activity("a1", "u-a", 1, 1), activity("b1", "u-b", 1, 3), bigID("u-b", 360_000), activity("a2", "u-a", 2, 2))
	e.waitDrained(20 * time.Second)
	// u-b: b1 only; the big one is on the DLQ.
	e.wantApplied(r, map[string]int64{"u-a": 2, "u-b": 1})
	if got := e.dlqReasons(); len(got) != 1 || got[0] != "output_too_large" {
		t.Errorf("DLQ reasons %q, want [output_too_large]", got)
	}
}

// TestDLQCopyTruncated: an input over input.max_bytes whose DLQ copy would
// not fit in kafka.max_message_bytes is sent truncated, with its reason and
// its original size in dlq.truncated.
func TestDLQCopyTruncated(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	opts.Limits.MaxBytes = 4096
	opts.MaxMessageBytes = 8192
	e.start(opts)
	big := &kgo.Record{Key: []byte("u-t"), Value: []byte(strings.Repeat("y", 20_000)),
		Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
	e.send(big, activity("t1", "u-t", 1, 1))
	e.waitDrained(20 * time.Second)
	dlq := e.readAll(e.names.DLQ)
	if len(dlq) != 1 {
		t.Fatalf("%d DLQ records, want 1", len(dlq))
	}
	h := headers(dlq[0])
	if h["dlq.reason"] != "too_large" || h["dlq.truncated"] != "20000" || h["h"] != "v" {
		t.Errorf("DLQ headers %v; want reason too_large, truncated 20000 and the original header", h)
	}
	if n := len(dlq[0].Value); n == 0 || n > 8192 {
		t.Errorf("DLQ value of %d bytes; want a prefix of the original within 8192", n)
	}
	if got := e.decoded("u-t"); got.TotalActivity != 1 {
		t.Errorf("u-t: %d events applied, want 1", got.TotalActivity)
	}
}

// TestSpoofedDLQReason: a dlq.reason header that arrives on input is kept as
// original.dlq.reason; the DLQ record's dlq.reason is the worker's.
func TestSpoofedDLQReason(t *testing.T) {
	e := newMemEnv(t, 1)
	e.start(e.options(nil))
	e.send(&kgo.Record{Key: []byte("u-s"), Value: []byte("{not json"),
		Headers: []kgo.RecordHeader{{Key: "dlq.reason", Value: []byte("late")}}})
	e.waitDrained(20 * time.Second)
	dlq := e.readAll(e.names.DLQ)
	if len(dlq) != 1 {
		t.Fatalf("%d DLQ records, want 1", len(dlq))
	}
	var reasons []string
	for _, h := range dlq[0].Headers {
		if h.Key == "dlq.reason" {
			reasons = append(reasons, string(h.Value))
		}
	}
	if len(reasons) != 1 || reasons[0] != "malformed" || headers(dlq[0])["original.dlq.reason"] != "late" {
		t.Errorf("dlq.reason headers %q and original.dlq.reason %q; want [malformed] and late",
			reasons, headers(dlq[0])["original.dlq.reason"])
	}
}

// TestDLQKeepsTheRecordTimestamp: the DLQ copy names the input record's
// timestamp in dlq.timestamp (milliseconds), so that dlq redrive gives the
// record back its time: an event without its own timestamp takes the
// record's as its event time. An incoming dlq.timestamp is kept as
// original.dlq.timestamp.
func TestDLQKeepsTheRecordTimestamp(t *testing.T) {
	e := newMemEnv(t, 1)
	e.start(e.options(nil))
	ts := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)
	e.send(&kgo.Record{Key: []byte("u-s"), Value: []byte("{not json"), Timestamp: ts,
		Headers: []kgo.RecordHeader{{Key: "dlq.timestamp", Value: []byte("1")}}})
	e.waitDrained(20 * time.Second)
	dlq := e.readAll(e.names.DLQ)
	if len(dlq) != 1 {
		t.Fatalf("%d DLQ records, want 1", len(dlq))
	}
	h := headers(dlq[0])
	if want := fmt.Sprint(ts.UnixMilli()); h["dlq.timestamp"] != want || h["original.dlq.timestamp"] != "1" {
		t.Errorf("dlq.timestamp %q, original.dlq.timestamp %q; want %s and 1", h["dlq.timestamp"], h["original.dlq.timestamp"], want)
	}
}

// conflictingStore rejects every write of the aggregates marked failing as
// a version conflict, as a store holding something else under their keys
// would.
type conflictingStore struct {
	state.Store
	mu      sync.Mutex
	failing map[string]bool
}

func (c *conflictingStore) set(agg string, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failing[agg] = on
}

func (c *conflictingStore) Commit(ctx context.Context, writes []state.Write) ([]state.Outcome, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range writes {
		if c.failing[w.Aggregate] {
			out := make([]state.Outcome, len(writes))
			for i := range out {
				out[i] = state.VersionConflict
			}
			return out, nil
		}
	}
	return c.Store.Commit(ctx, writes)
}

// TestRepeatedConflictsNotReady: a write that the store rejects on every
// attempt makes the worker not ready, with the partition's stuck time
// reported, instead of retrying forever while it says it is healthy; once
// the store takes the write, the worker is ready again and nothing is lost.
func TestRepeatedConflictsNotReady(t *testing.T) {
	e := newMemEnv(t, 1)
	cs := &conflictingStore{Store: e.mem, failing: map[string]bool{"u-c": true}}
	e.store = cs
	opts := e.options(nil)
	r := e.start(opts)
	testenv.Eventually(t, 10*time.Second, r.w.Ready, "worker never ready")
	e.send(activity("c1", "u-c", 1, 1))
	testenv.Eventually(t, 10*time.Second, func() bool {
		return !r.w.Ready() && metric(r.reg, "streamworker_partition_stuck_seconds") > 0
	}, "the worker stayed ready, or reported no stuck partition, while its write was rejected")
	cs.set("u-c", false)
	e.waitDrained(20 * time.Second)
	testenv.Eventually(t, 10*time.Second, r.w.Ready, "worker not ready after the store took the write")
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_partition_stuck_seconds") == 0 },
		"the stuck time was not reset")
	if got := e.decoded("u-c"); got.TotalActivity != 1 {
		t.Errorf("u-c: %d events applied, want 1", got.TotalActivity)
	}
}

// TestHeldBytesCountHeaders: the reorder buffer's byte bound counts a held
// record's headers and key, not only its value.
func TestHeldBytesCountHeaders(t *testing.T) {
	e := newMemEnv(t, 1)
	r := e.start(e.options(nil))
	rec := activity("h2", "u-h", 2, 2) // held: sequence 1 is missing
	rec.Headers = []kgo.RecordHeader{{Key: "x-big", Value: make([]byte, 100_000)}}
	e.send(rec)
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_bytes") >= 100_000 },
		"a held record's 100 KB header is not counted in streamworker_buffered_bytes")
}

// TestPanicIsolated: an event that makes the processing code panic goes to
// the DLQ as internal_error and is counted; the state it half changed is
// rebuilt from the store, and every other event of the batch, of its own
// user too, is applied once.
func TestPanicIsolated(t *testing.T) {
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		if ev.ID == "p2" {
			panic("boom on " + ev.ID)
		}
	})
	e := newMemEnv(t, 1)
	r := e.start(e.options(nil))
	e.send(activity("p1", "u-p", 1, 1), activity("q1", "u-q", 1, 1),
		&kgo.Record{Key: []byte("u-p"), Value: []byte(`{"id":"p2","type":"user.activity","aggregateId":"u-p","timestamp":"2026-11-22T10:00:02.000Z","data":{"action":"x"}}`)},
		activity("p3", "u-p", 2, 3))
	e.waitDrained(20 * time.Second)
	if got := e.decoded("u-p"); got.TotalActivity != 2 || got.LastSequence != 2 {
		t.Errorf("u-p: %+v; want p1 and p3 applied once each", got.Snapshot("u-p"))
	}
	if got := e.decoded("u-q"); got.TotalActivity != 1 {
		t.Errorf("u-q: %d events applied, want 1", got.TotalActivity)
	}
	dlq := e.readAll(e.names.DLQ)
	if len(dlq) != 1 || headers(dlq[0])["dlq.reason"] != "internal_error" || headers(dlq[0])["dlq.offset"] != "2" {
		t.Fatalf("DLQ %d records; want the record at offset 2 as internal_error", len(dlq))
	}
	if got := metric(r.reg, "streamworker_internal_errors_total", "stage", "process"); got != 1 {
		t.Errorf("internal errors in process = %v, want 1", got)
	}
	if !r.w.Ready() {
		t.Error("worker not ready after a poison record")
	}
}

// TestTopicSmallerThanMaxMessageBytesRefused: an output topic whose
// max.message.bytes is below kafka.max_message_bytes refuses some records
// the worker accepts and must write there (here the DLQ copy of a 10 KB
// malformed record), so the partition would retry that write for ever.
// The worker refuses to start instead, naming the key and the topic.
// Before, it started and the partition stuck on the first such record.
func TestTopicSmallerThanMaxMessageBytesRefused(t *testing.T) {
	e := newMemEnv(t, 1)
	small := "4096"
	ctx := context.Background()
	resp, err := e.kafka.Admin(t).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &small}}, e.names.DLQ)
	if err == nil {
		_, err = resp.On(e.names.DLQ, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := e.start(e.options(nil))
	noise := make([]byte, 10_000) // incompressible: the broker checks the compressed size
	_, _ = rand.NewChaCha8([32]byte{1}).Read(noise)
	e.send(&kgo.Record{Key: []byte("u-m"), Value: noise})
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup's stop
		if err == nil || !strings.Contains(err.Error(), "kafka.max_message_bytes") || !strings.Contains(err.Error(), e.names.DLQ) {
			t.Fatalf("Run returned %v; want an error naming kafka.max_message_bytes and %s", err, e.names.DLQ)
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("the worker runs (ready %v) with %s smaller than kafka.max_message_bytes", r.w.Ready(), e.names.DLQ)
	}
}

// lineCounter is a slog.Handler that counts records by message.
type lineCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *lineCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *lineCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *lineCounter) WithGroup(string) slog.Handler            { return c }
func (c *lineCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r.Message]++
	return nil
}

// countLogs sends opts' logs to a lineCounter and gives it a clock that
// moves only when told to.
func countLogs(opts *worker.Options) (*lineCounter, *atomic.Int64) {
	logs := &lineCounter{n: map[string]int{}}
	opts.Logger = slog.New(logs)
	return logs, manualClock(opts)
}

// manualClock makes opts' clock read the returned nanoseconds since the
// Unix epoch, now at first: it moves only when a test adds to it.
func manualClock(opts *worker.Options) *atomic.Int64 {
	clock := new(atomic.Int64)
	clock.Store(time.Now().UnixNano())
	opts.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	return clock
}

func (c *lineCounter) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

// TestDLQLogBounded: a flood of bad records does not make a log line each:
// at most a few a second per partition, then one line with how many were
// not logged (each is still on the DLQ and counted). Before, every record
// logged a warning of up to 2 KB, so a hostile producer chose the log
// volume.
func TestDLQLogBounded(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	logs, clock := countLogs(&opts)
	r := e.start(opts)
	bad := make([]*kgo.Record, 200)
	for i := range bad {
		bad[i] = &kgo.Record{Key: []byte("u-f"), Value: []byte("{not json")}
	}
	e.send(bad...)
	testenv.Eventually(t, 20*time.Second, func() bool { return metric(r.reg, "streamworker_dlq_total", "reason", "malformed") == 200 },
		"the bad records not on the DLQ")
	if n := logs.count("record sent to the DLQ"); n > 20 {
		t.Fatalf("%d DLQ log lines for 200 bad records within one second of the worker's clock, want at most 20", n)
	}
	clock.Add(int64(2 * time.Second))
	e.send(bad[0])
	testenv.Eventually(t, 20*time.Second, func() bool { return logs.count("DLQ records not logged") == 1 },
		"no line saying how many DLQ records were not logged")
}

// TestGapLogBounded: gaps given up one after another (here a partition
// buffer of one event and 60 users that each skip their sequence 1) log at
// most a few lines a second, then how many were not logged; every gap is
// still on the gaps topic and counted.
func TestGapLogBounded(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	logs, clock := countLogs(&opts)
	opts.Sequencing.MaxPerPartition = 1
	r := e.start(opts)
	var recs []*kgo.Record
	for i := range 60 {
		recs = append(recs, activity(fmt.Sprint("g", i), fmt.Sprint("u-g", i), 2, 1))
	}
	e.send(recs...)
	testenv.Eventually(t, 20*time.Second, func() bool { return metric(r.reg, "streamworker_gaps_total") == 59 },
		"the gaps not given up")
	if n := logs.count("sequence gap given up"); n > 20 {
		t.Fatalf("%d gap log lines for 59 gaps within one second of the worker's clock, want at most 20", n)
	}
	clock.Add(int64(2 * time.Second))
	e.send(activity("g-last", "u-g-last", 2, 1))
	testenv.Eventually(t, 20*time.Second, func() bool { return logs.count("gaps given up not logged") == 1 },
		"no line saying how many gaps were not logged")
}
