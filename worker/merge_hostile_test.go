package worker_test

// Merged batches under a hostile producer: a hot user at the batch limits
// with IDs of odd bytes at their longest, duplicates in the merged part, a
// record that always fails inside a merged poll, and a release among
// merged polls.

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/worker"
)

// holdFirstUntilQueued holds the batch applying id until a poll waits in
// the queue, then calls also for every event.
func holdFirstUntilQueued(t *testing.T, r **running, id string, queued *atomic.Bool, also func(*topics.Event)) {
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		if ev.ID == id {
			queued.Store(testenv.Within(10*time.Second, func() bool { return (*r).w.Queued(0) > 0 }))
		}
		if also != nil {
			also(ev)
		}
	})
}

// stopDrained waits until the group has committed the log end, stops r,
// and fails unless queued is set (nil: not asked): a poll waited in the
// queue while a batch was held.
func (e *env) stopDrained(r *running, queued *atomic.Bool) {
	e.t.Helper()
	e.waitDrained(60 * time.Second)
	if err := r.stop(e.t); err != nil {
		e.t.Fatal(err)
	}
	if queued != nil && !queued.Load() {
		e.t.Fatal("no poll was queued while a batch was held")
	}
}

// wantTotal fails unless user's stored state counts total events.
func (e *env) wantTotal(user string, total int64) {
	e.t.Helper()
	if got := e.decoded(user).TotalActivity; got != total {
		e.t.Fatalf("%.40s: %d events applied; want %d", user, got, total)
	}
}

// TestMergeHotUserDuplicates: one user's 12000 events read in polls of
// 10000 (a batch of 5000 takes the rest of its poll), with repeats of early
// IDs (odd bytes, the longest ID) placed in the merged part.
func TestMergeHotUserDuplicates(t *testing.T) { hotUser(t, 12000, false) }

// TestMergeHotUser20000: the same with 20000 events, the queued poll
// merged too (the batch reaches mergeRecords).
func TestMergeHotUser20000(t *testing.T) { hotUser(t, 20000, true) }

func hotUser(t *testing.T, n int, hold bool) {
	e := newMemEnv(t, 1)
	user := strings.Repeat("U{:}", topics.DefaultMaxAggregateIDBytes/4)
	id := func(i int) string {
		s := fmt.Sprintf("{\"a\":%d}:", i)
		return s + strings.Repeat("x", topics.DefaultMaxIDBytes-len(s))
	}
	recs := activities(n, func(i int) *kgo.Record { return activity(id(i), user, i, i%60) })
	var dups []*kgo.Record
	for i := 1; i <= 40; i++ {
		dups = append(dups, activity(id(i), user, i, i%60))
	}
	recs = slices.Insert(recs, 7000, dups...)
	e.send(recs...)
	opts := e.options(nil)
	opts.MaxPollRecords = 10000
	opts.RecentSize = 0
	var r *running
	var queued atomic.Bool
	if hold {
		holdFirstUntilQueued(t, &r, id(1), &queued, nil)
	}
	r = e.start(opts)
	if hold {
		e.stopDrained(r, &queued)
	} else {
		e.stopDrained(r, nil)
	}
	if got := e.decoded(user); got.TotalActivity != int64(n) || got.LastSequence != int64(n) {
		t.Fatalf("total %d last %d; want %d applied once", got.TotalActivity, got.LastSequence, n)
	}
	if got := metric(r.reg, "streamworker_events_duplicate_total"); got != 40 {
		t.Fatalf("%v duplicates; want 40", got)
	}
}

// TestMergePoisonDLQ: a record that always fails, in a poll merged into
// the batch: it goes to the DLQ, the rest of both polls is applied once.
func TestMergePoisonDLQ(t *testing.T) {
	e := newMemEnv(t, 1)
	var recs []*kgo.Record
	for i := 1; i <= 30; i++ {
		recs = append(recs, plain(fmt.Sprintf("m%d", i), "u-m", i%60), plain(fmt.Sprintf("o%d", i), "u-o", i%60))
	}
	e.send(recs...)
	opts := e.options(nil)
	opts.MaxPollRecords = 10
	var r *running
	var queued atomic.Bool
	holdFirstUntilQueued(t, &r, "m1", &queued, func(ev *topics.Event) {
		if ev.ID == "m15" {
			panic("boom")
		}
	})
	r = e.start(opts)
	e.stopDrained(r, &queued)
	e.wantTotal("u-m", 29)
	e.wantTotal("u-o", 30)
	if got := e.dlqReasons(); !slices.Equal(got, []string{"internal_error"}) {
		t.Fatalf("DLQ %q", got)
	}
}

// TestMergePoisonPark: the same with on_poison park, then a release
// in a later poll among other users' events, merged runs on both sides.
func TestMergePoisonPark(t *testing.T) {
	e := newMemEnv(t, 1).withParked()
	var recs []*kgo.Record
	for i := 1; i <= 30; i++ {
		recs = append(recs, plain(fmt.Sprintf("m%d", i), "u-m", i%60), plain(fmt.Sprintf("o%d", i), "u-o", i%60))
	}
	e.send(recs...)
	opts := e.parkOptions()
	opts.MaxPollRecords = 10
	var r *running
	var queued, fail atomic.Bool
	fail.Store(true)
	var queued2 atomic.Bool
	holdFirstUntilQueued(t, &r, "m1", &queued, func(ev *topics.Event) {
		if ev.ID == "m15" && fail.Load() {
			panic("boom")
		}
		if ev.ID == "o31" {
			queued2.Store(testenv.Within(10*time.Second, func() bool { return r.w.Queued(0) > 0 }))
		}
	})
	r = e.start(opts)
	e.waitDrained(30 * time.Second)
	if !queued.Load() {
		t.Fatal("no poll queued")
	}
	if got := e.decoded("u-m"); got.TotalActivity != 14 || got.Park == nil {
		t.Fatalf("u-m total %d park %v; want 14 and parked", got.TotalActivity, got.Park)
	}
	fail.Store(false)
	var more []*kgo.Record
	for i := 31; i <= 45; i++ {
		more = append(more, plain(fmt.Sprintf("o%d", i), "u-o", i%60))
	}
	more = append(more, plain("o31", "u-o", 31), plain("m20", "u-m", 20)) // a duplicate, and one of a held event
	more = append(more, releaseRecord("u-m"))
	for i := 46; i <= 60; i++ {
		more = append(more, plain(fmt.Sprintf("o%d", i), "u-o", i%60), plain(fmt.Sprintf("m%d", i), "u-m", i%60))
	}
	e.send(more...)
	e.stopDrained(r, &queued2)
	e.wantTotal("u-o", 60)
	if got := e.decoded("u-m"); got.TotalActivity != 29+15 || got.Park != nil {
		t.Fatalf("u-m total %d park %v; want 44, released", got.TotalActivity, got.Park)
	}
}
