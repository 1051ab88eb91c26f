package worker_test

// A batch that fails is run again from the store: every record it had
// taken, whatever earlier poll or the reorder buffer it came from, is run
// again, and a batch of its own (a release, a gap give-up) stays one.

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/worker"
)

// waitClosed waits for c to be closed, failing the test after timeout.
func waitClosed(t *testing.T, c <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(timeout):
		t.Fatalf("%s within %v", what, timeout)
	}
}

// pollWait holds a batch, from a hook on the partition's goroutine, until
// the next poll waits in the queue: the first time only.
type pollWait struct {
	once    sync.Once
	entered chan struct{} // closed once the hook holds the batch
	queued  atomic.Bool   // a poll was queued while it held it
}

func newPollWait() *pollWait { return &pollWait{entered: make(chan struct{})} }

// hold waits, the first time, until queued reports a poll, then calls then.
func (w *pollWait) hold(queued func() int, then func()) {
	w.once.Do(func() {
		close(w.entered)
		w.queued.Store(testenv.Within(10*time.Second, func() bool { return queued() > 0 }))
		then()
	})
}

// failingStore rejects the next fails commits with an error no retry in
// place mends, so that the batch is run again from the store.
type failingStore struct {
	state.Store
	fails atomic.Int32
}

func (s *failingStore) Commit(ctx context.Context, writes []state.Write) ([]state.Outcome, error) {
	for n := s.fails.Load(); n > 0; n = s.fails.Load() {
		if s.fails.CompareAndSwap(n, n-1) {
			return nil, errors.New("injected commit failure")
		}
	}
	return s.Store.Commit(ctx, writes)
}

// appliedOrder records the IDs of the events applied, in order, through
// the apply hook, calling also for each.
func appliedOrder(t *testing.T, also func(*topics.Event)) func() []string {
	var mu sync.Mutex
	var ids []string
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		if also != nil {
			also(ev)
		}
		mu.Lock()
		ids = append(ids, ev.ID)
		mu.Unlock()
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ids)
	}
}

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
	if got := metric(r.reg, "streamworker_events_consumed_total"); got != 3 {
		t.Errorf("%v records consumed; want 3, e2 counted once", got)
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

// TestReleaseTakesNoWaitingPoll: a release is a batch of its own. Run
// again after a failure, with the records of buffered events before it,
// it used to take the poll waiting meanwhile; when that run failed too,
// the next one decoded the released user's new event p3 before the held
// events were read back, so p3 was held again under the park the release
// then cleared, and never applied.
func TestReleaseTakesNoWaitingPoll(t *testing.T) {
	e := newMemEnv(t, 1).withParked()
	store := &failingStore{Store: e.mem}
	e.store = store
	var r *running
	wait := newPollWait()
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		switch ev.ID {
		case "p1":
			panic("boom on " + ev.ID)
		case "p2": // applied by the release: wait for the next poll
			wait.hold(func() int { return r.w.Queued(0) }, func() { store.fails.Store(2) })
		}
	})
	r = e.start(e.parkOptions())
	e.send(plain("p1", "u-p", 1), plain("p2", "u-p", 2))
	e.waitProcessed(r)
	if st := e.decoded("u-p"); st.Park == nil {
		t.Fatal("u-p not parked")
	}
	// u-w's events wait for w1 in the reorder buffer: a rerun of the
	// release starts with them.
	e.send(activity("w2", "u-w", 2, 2), activity("w3", "u-w", 3, 3), activity("w4", "u-w", 4, 4))
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_events") == 3 },
		"w2, w3, w4 not buffered")
	e.send(releaseRecord("u-p"))
	waitClosed(t, wait.entered, 10*time.Second, "the release applied no held event")
	e.send(plain("p3", "u-p", 3))
	testenv.Eventually(t, 10*time.Second, func() bool { return store.fails.Load() == 0 }, "the commits did not fail")
	e.send(activity("w1", "u-w", 1, 1))
	e.waitProcessed(r)
	if !wait.queued.Load() {
		t.Fatal("p3 never waited in the queue during the release")
	}
	st := e.decoded("u-p")
	if st.Park != nil || st.TotalActivity != 2 {
		t.Errorf("u-p %+v park %+v; want p2 and p3 applied and no park", st.Snapshot("u-p"), st.Park)
	}
	if got := e.parkedRecords(); !slices.Equal(got, []string{"p2 0"}) {
		t.Errorf("parked topic %q; want only p2, held since offset 0", got)
	}
	e.wantApplied(r, map[string]int64{"u-w": 4})
}

// TestGapGiveUpTakesNoPoll: a gap give-up run by the timer has no poll of
// its own; run again after a failure, it used to take the waiting poll,
// and leave it aside for a batch of its own when it held a control record:
// that poll was then processed only after the next one (c1 before b1, the
// commit point past b1 meanwhile).
func TestGapGiveUpTakesNoPoll(t *testing.T) {
	var r *running
	wait := newPollWait()
	order := appliedOrder(t, func(ev *topics.Event) {
		if ev.ID == "g3" {
			wait.hold(func() int { return r.w.Queued(0) }, func() {})
			panic("boom on " + ev.ID)
		}
	})
	e := newMemEnv(t, 1)
	opts := e.options(nil)
	opts.Sequencing.GapTimeout = 200 * time.Millisecond
	r = e.start(opts)
	e.send(activity("g1", "u-g", 1, 1), activity("g3", "u-g", 3, 3))
	waitClosed(t, wait.entered, 10*time.Second, "the gap was not given up")
	e.send(plain("b1", "u-b", 4), releaseRecord("u-nobody"))
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_dlq_total") == 1 },
		"g3 not sent to the DLQ")
	e.send(plain("c1", "u-b", 5))
	e.waitDrained(30 * time.Second)
	if !wait.queued.Load() {
		t.Fatal("b1 never waited in the queue during the give-up")
	}
	got := order()
	if i, j := slices.Index(got, "b1"), slices.Index(got, "c1"); i < 0 || j < 0 || i > j {
		t.Errorf("applied %q; want b1 before c1", got)
	}
}

// gateStore holds the next commit, once armed, until open is closed.
type gateStore struct {
	state.Store
	armed   atomic.Bool
	entered chan struct{}
	open    chan struct{}
}

func (s *gateStore) Commit(ctx context.Context, writes []state.Write) ([]state.Outcome, error) {
	if s.armed.CompareAndSwap(true, false) {
		close(s.entered)
		<-s.open
	}
	return s.Store.Commit(ctx, writes)
}

// TestStopKeepsPollOrder: a batch set aside the waiting poll B (it holds a
// control record) for a batch of its own, and the partition was asked to
// stop before that batch ran. The next poll C, queued meanwhile, must not
// be processed instead: its commit point, past B's records, would be
// committed on the revoke, and B never processed. Several rounds, as the
// goroutine picks among ready channels at random.
func TestStopKeepsPollOrder(t *testing.T) {
	for round := range 6 {
		t.Logf("round %d", round)
		stopKeepsPollOrder(t)
		if t.Failed() {
			return
		}
	}
}

func stopKeepsPollOrder(t *testing.T) {
	e := newMemEnv(t, 1)
	store := &gateStore{Store: e.mem, entered: make(chan struct{}), open: make(chan struct{})}
	e.store = store
	var r *running
	wait := newPollWait()
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		if ev.ID == "a1" {
			wait.hold(func() int { return r.w.Queued(0) }, func() { store.armed.Store(true) })
		}
	})
	r = e.start(e.options(nil))
	e.send(plain("a1", "u-a", 1), plain("a2", "u-a", 2)) // two events per user: the batch may take more
	waitClosed(t, wait.entered, 10*time.Second, "a1 not applied")
	stopRequested := r.w.StopRequested(0)
	e.send(plain("b1", "u-b", 3), releaseRecord("u-nobody")) // B, offsets 2 and 3
	waitClosed(t, store.entered, 10*time.Second, "the batch of a1 did not commit")
	if !wait.queued.Load() {
		t.Fatal("B never waited in the queue during a1's batch")
	}
	e.send(plain("c1", "u-c", 4)) // C, offset 4
	testenv.Eventually(t, 10*time.Second, func() bool { return r.w.Queued(0) > 0 }, "C not queued")
	r.cancel()
	testenv.Eventually(t, 10*time.Second, stopRequested, "the partition was not asked to stop")
	close(store.open)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := e.committed()[0]; got != 2 {
		t.Errorf("committed %d after the stop; want 2: a1 and a2 done, B and C not processed", got)
	}
}
