package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/worker"
)

// writeLog records the marks of every write committed to a store.
type writeLog struct {
	state.Store
	mu        sync.Mutex
	writes    [][]string
	calls     []int // writes per Commit
	marksRead int   // marks asked for by Fetch
}

func (l *writeLog) Fetch(ctx context.Context, aggs []string, marks []state.Mark) ([]state.Snapshot, []bool, error) {
	l.mu.Lock()
	l.marksRead += len(marks)
	l.mu.Unlock()
	return l.Store.Fetch(ctx, aggs, marks)
}

// readMarks returns the marks Fetch was asked for so far, and counts from 0
// again.
func (l *writeLog) readMarks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.marksRead
	l.marksRead = 0
	return n
}

func (l *writeLog) Commit(ctx context.Context, writes []state.Write) ([]state.Outcome, error) {
	out, err := l.Store.Commit(ctx, writes)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, len(writes))
	for i, w := range writes {
		if err == nil && out[i] == state.Committed {
			l.writes = append(l.writes, slices.Clone(w.Marks))
		}
	}
	return out, err
}

// newLoggedEnv is a one-partition MemoryStore env whose commits are logged.
func newLoggedEnv(t *testing.T) (*env, *writeLog) {
	e := newMemEnv(t, 1)
	log := &writeLog{Store: e.mem}
	e.store = log
	return e, log
}

// activities returns the records rec(1) to rec(n).
func activities(n int, rec func(i int) *kgo.Record) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = rec(i + 1)
	}
	return recs
}

// TestMergeQueuedPoll: when the next poll is already waiting once a batch
// has been applied, the batch takes it: the user's state is written once
// with the marks of both polls, one aggregated output stands for both, and
// the commit point and the lag figures cover both polls.
func TestMergeQueuedPoll(t *testing.T) {
	e, log := newLoggedEnv(t)
	recs := activities(30, func(i int) *kgo.Record { return activity(fmt.Sprintf("m%d", i), "u-m", i, i) })
	e.send(recs...)

	opts := e.options(nil)
	opts.MaxPollRecords = 10
	var r *running
	var queued atomic.Bool
	// Hold the first batch until the second poll is waiting in the queue
	// (on the partition's goroutine: the test fails below, not here).
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		if ev.ID == "m1" {
			queued.Store(testenv.Within(10*time.Second, func() bool { return r.w.Queued(0) > 0 }))
		}
	})
	r = e.start(opts)
	e.waitDrained(30 * time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool {
		return metric(r.reg, "streamworker_consumer_lag_seconds") == 0
	}, "lag in seconds stays above 0 after the drain")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if !queued.Load() {
		t.Fatal("the second poll never queued while the first batch was held")
	}

	log.mu.Lock()
	writes := log.writes
	log.mu.Unlock()
	var all []string
	for _, m := range writes {
		all = append(all, m...)
	}
	if len(writes) == 0 || len(writes[0]) < 20 || len(all) != 30 || len(slices.Compact(slices.Sorted(slices.Values(all)))) != 30 {
		t.Fatalf("writes %v; want the first to hold the marks of both polls, and every event marked once", writes)
	}
	if got := e.decoded("u-m"); got.TotalActivity != 30 || got.LastSequence != 30 {
		t.Fatalf("state %+v; want 30 events applied once", got.Snapshot("u-m"))
	}
	var causes []string
	for _, o := range e.outputs(e.names.Aggregates) {
		causes = append(causes, o.env.Metadata.CausationID)
	}
	if len(causes) != len(writes) || causes[0] != writes[0][len(writes[0])-1] || causes[len(causes)-1] != "m30" {
		t.Fatalf("aggregated outputs caused by %v; want one per write %v, from its last event", causes, writes)
	}
}

// TestManyEventsOfOneUserInABatch: past linearMarks events of one user in
// a batch, the batch's own marks are looked up in a set: a repeat of an
// early event is still dropped as a duplicate.
func TestManyEventsOfOneUserInABatch(t *testing.T) {
	e := newMemEnv(t, 1)
	recs := activities(40, func(i int) *kgo.Record { return activity(fmt.Sprintf("d%d", i), "u-d", i, i) })
	recs = append(recs, activity("d3", "u-d", 3, 3), activity("d39", "u-d", 39, 39))
	e.send(recs...)
	opts := e.options(nil)
	opts.RecentSize = 0 // only the batch's own marks can tell
	r := e.runDrained(opts)
	if got := e.decoded("u-d"); got.TotalActivity != 40 || got.LastSequence != 40 {
		t.Fatalf("state %+v; want 40 events applied once", got.Snapshot("u-d"))
	}
	if got := metric(r.reg, "streamworker_events_duplicate_total"); got != 2 {
		t.Fatalf("%v duplicates counted; want 2", got)
	}
}

// TestReusedIDHeldThenApplied: an event ID sent twice with two sequences,
// the higher one first (held for the gap before it), is applied once. The
// second copy is a duplicate of a buffered event and is dropped, so the gap
// it would have filled is given up; it used to be applied too, and its ID
// marked twice in one write (which Redis rejects on every retry).
func TestReusedIDHeldThenApplied(t *testing.T) {
	e := newMemEnv(t, 1)
	e.send(activity("r1", "u-r", 1, 1), activity("rx", "u-r", 4, 4), activity("rx", "u-r", 2, 2), activity("r3", "u-r", 3, 3))
	opts := e.options(nil)
	opts.Sequencing.GapTimeout = 500 * time.Millisecond
	r := e.runDrained(opts)
	if got := e.decoded("u-r"); got.TotalActivity != 3 || got.LastSequence != 4 {
		t.Fatalf("state %+v; want r1, rx, r3 applied once and sequence 4 passed", got.Snapshot("u-r"))
	}
	if got := metric(r.reg, "streamworker_events_duplicate_total"); got != 1 {
		t.Fatalf("%v duplicates counted; want 1", got)
	}
	if gaps := e.gapRecords(); len(gaps) != 1 || gaps[0].Expected != 2 || gaps[0].ResumedAt != 3 {
		t.Fatalf("gaps %+v; want the gap at 2 given up, resumed at 3", gaps)
	}
}

// TestLargePollCut: a poll of more records than a batch starts with, of
// users with one event each, is written in batches of at most 5000 users:
// merging would save nothing there and hold more memory.
func TestLargePollCut(t *testing.T) {
	e, log := newLoggedEnv(t)
	recs := activities(12000, func(i int) *kgo.Record { return activity(fmt.Sprintf("c%d", i), fmt.Sprintf("u-c%d", i), 1, 1) })
	e.send(recs...)
	opts := e.options(nil)
	opts.MaxPollRecords = 10000
	e.runDrained(opts)
	log.mu.Lock()
	defer log.mu.Unlock()
	total := 0
	for _, n := range log.calls {
		if n > 5000 {
			t.Fatalf("a commit of %d users (calls %v); want batches of at most 5000", n, log.calls)
		}
		total += n
	}
	if total != 12000 {
		t.Fatalf("%d users written (calls %v); want 12000", total, log.calls)
	}
}

// TestMergeAfterConflictKeepsReady: an event ID applied and written before
// comes again, in every poll, with the sequence its user expects. Its mark
// is not asked for (the cached user's sequence is below it), so its write
// is rejected and the batch runs again from the store, where the mark is
// seen. The batch run again must not merge the next poll, whose copy would
// be rejected the same way: three rejections in one batch make the
// partition report a fault (not ready) over one producer's records.
func TestMergeAfterConflictKeepsReady(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	opts.RecentSize = 0
	opts.MaxPollRecords = 2
	logs := &lineCounter{n: map[string]int{}}
	opts.Logger = slog.New(logs)
	var r *running
	var phase2, queued atomic.Bool
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		if phase2.Load() && ev.ID == "a" && !queued.Load() {
			queued.Store(testenv.Within(10*time.Second, func() bool { return r.w.Queued(0) > 0 }))
		}
	})
	r = e.start(opts)
	e.send(activity("a", "u-a", 1, 1))
	e.waitDrained(30 * time.Second)
	phase2.Store(true)
	var recs []*kgo.Record
	for range 12 {
		recs = append(recs, activity("a", "u-a", 2, 2))
	}
	e.send(recs...)
	e.stopDrained(r, &queued)
	e.wantTotal("u-a", 1)
	if n := logs.count("partition stuck: retrying a failed call"); n > 0 {
		t.Fatalf("the partition reported a fault %d times over duplicates", n)
	}
}
