package worker_test

import (
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testenv"
)

// TestRebuildKeepsGapGiveUp: a batch gives up a gap open for the gap
// timeout, and the user's write is then refused (an applied ID sent again
// at a later sequence, drained with the give-up). The gap record and g3's
// outputs were produced; the batch run again must give the gap up again
// rather than hold g3 with a fresh timer (it did: g3 waited one more gap
// timeout, its gap record already on the topic).
func TestRebuildKeepsGapGiveUp(t *testing.T) {
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	clock := manualClock(&opts)
	opts.Sequencing.GapTimeout = time.Hour
	opts.RecentSize = 0
	r := e.start(opts)
	e.send(activity("g1", "u-g", 1, 1), activity("g3", "u-g", 3, 3))
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_events") == 1 },
		"g3 not buffered")
	clock.Add(int64(time.Hour))
	e.send(activity("g1", "u-g", 4, 4)) // g1 again, behind the gap: drained with the give-up
	e.waitDrained(30 * time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_events") == 0 },
		"g3 still held in the reorder buffer: the rerun restarted its gap's timeout")
	st := e.decoded("u-g")
	if st.TotalActivity != 2 || st.LastSequence != 3 {
		t.Fatalf("u-g: %d events applied up to sequence %d; want g3 applied past the gap given up (2 events up to 3)",
			st.TotalActivity, st.LastSequence)
	}
	// The first attempt's gap record was produced: the attempt run again
	// may repeat it (outputs are at least once), with the same ID and data.
	gaps := map[string]string{}
	for _, o := range e.outputs(e.names.Gaps) {
		if d, ok := gaps[o.env.ID]; ok && d != string(o.env.Data) {
			t.Fatalf("gap record %s produced with two payloads: %s, then %s", o.env.ID, d, o.env.Data)
		}
		gaps[o.env.ID] = string(o.env.Data)
	}
	if len(gaps) != 1 {
		t.Fatalf("%d distinct gap records, want 1: %v", len(gaps), gaps)
	}
	e.wantApplied(r, map[string]int64{"u-g": 2})
}
