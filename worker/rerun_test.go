package worker_test

// A batch that fails is run again from the store: every record it had
// taken, whatever earlier poll or the reorder buffer it came from, is run
// again, and a batch of its own (a release, a gap give-up) stays one.

import (
	"slices"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testenv"
)

// TestRerunKeepsDrainedEvents: e2 waits in the reorder buffer for e1; the
// batch that brings e1 applies both, then fails on another user's record.
// Its second run must apply e2 again: e2's record was read by an earlier
// batch, and the failed run had taken it out of the buffer.
func TestRerunKeepsDrainedEvents(t *testing.T) {
	panicOn(t, nil, "x1")
	e := newMemEnv(t, 1)
	r := e.start(e.options(nil))
	e.send(activity("e2", "u-e", 2, 2))
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_events") == 1 },
		"e2 not buffered")
	e.send(activity("e1", "u-e", 1, 1), plain("x1", "u-x", 3))
	e.waitDrained(30 * time.Second)
	if got := e.decoded("u-e"); got.TotalActivity != 2 || got.LastSequence != 2 {
		t.Fatalf("u-e %+v; want e1 and e2 applied", got.Snapshot("u-e"))
	}
	if got := e.dlqReasons(); !slices.Equal(got, []string{"internal_error"}) {
		t.Errorf("DLQ reasons %q; want x1's internal_error only", got)
	}
}

// TestGapGiveUpRerunKeepsItsEvent: a gap given up by the timer applies the
// buffered g3, which fails by itself; the give-up runs again with g3, which
// goes to the DLQ instead of being dropped.
func TestGapGiveUpRerunKeepsItsEvent(t *testing.T) {
	panicOn(t, nil, "g3")
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	opts.Sequencing.GapTimeout = 200 * time.Millisecond
	r := e.start(opts)
	e.send(activity("g1", "u-g", 1, 1), activity("g3", "u-g", 3, 3))
	e.waitDrained(30 * time.Second)
	if got := e.dlqReasons(); !slices.Equal(got, []string{"internal_error"}) {
		t.Errorf("DLQ reasons %q; want g3's internal_error", got)
	}
	if got := e.decoded("u-g"); got.TotalActivity != 1 {
		t.Errorf("u-g %+v; want g1 applied", got.Snapshot("u-g"))
	}
	if !r.w.Ready() {
		t.Error("worker not ready")
	}
}
