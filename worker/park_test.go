package worker_test

// Parked users (docs/contract.md, "Parked users"): with input.on_poison:
// park a record that fails by itself parks its user; the user's later
// events are held on the parked topic until a release applies them in
// order, exactly once.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/worker"
)

// withParked names and creates the env's parked topic, with the input's
// partition count.
func (e *env) withParked() *env {
	e.names.Parked = e.kafka.Topic(topics.DefaultNames().Parked)
	e.kafka.CreateTopics(e.t, e.parts, e.names.Parked)
	return e
}

// parkOptions are the env's options with input.on_poison: park.
func (e *env) parkOptions() worker.Options {
	opts := e.options(nil)
	opts.OnPoison = worker.PoisonPark
	return opts
}

// releaseRecord is the control record `streamworker parked release` sends.
func releaseRecord(user string) *kgo.Record {
	return &kgo.Record{Key: []byte(user), Headers: []kgo.RecordHeader{{Key: worker.ControlHeader, Value: []byte(worker.ControlRelease)}}}
}

// panicOn makes applying the events with the given IDs panic while on is
// set (nil: always).
func panicOn(t *testing.T, on *atomic.Bool, ids ...string) {
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		if slices.Contains(ids, ev.ID) && (on == nil || on.Load()) {
			panic("boom on " + ev.ID)
		}
	})
}

// plain is an unsequenced activity event of user at second s.
func plain(id, user string, s int) *kgo.Record {
	r := activity(id, user, 0, s)
	r.Value = bytes.Replace(r.Value, []byte(`"sequence":0,`), nil, 1)
	return r
}

// parkedRecords returns the parked topic's records as "eventID since"
// strings (since: the park they were held in), in order.
func (e *env) parkedRecords() []string {
	var out []string
	for _, r := range e.readAll(e.names.Parked) {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			e.t.Fatalf("parked record at %d: %v", r.Offset, err)
		}
		out = append(out, ev.ID+" "+headers(r)[worker.HeldSinceHeader])
	}
	return out
}

// waitProcessed waits until the group has committed the input's log end,
// and the worker is ready.
func (e *env) waitProcessed(r *running) {
	e.t.Helper()
	e.waitDrained(30 * time.Second)
	testenv.Eventually(e.t, 10*time.Second, r.w.Ready, "worker not ready")
}

// TestParkAndRelease: a record that fails by itself goes to the DLQ and
// parks its user; the user's later events are held on the parked topic
// (not applied), other users are unaffected; a release applies the held
// events in order, and the user's state then equals that of a clean run in
// which the failing record was simply absent. A second release is a no-op,
// and later events are applied as usual.
func TestParkAndRelease(t *testing.T) {
	panicOn(t, nil, "p2")
	e := newEnv(t, 1).withParked()
	r := e.start(e.parkOptions())
	recs := []*kgo.Record{activity("p1", "u-p", 1, 1), activity("q1", "u-q", 1, 1), activity("p2", "u-p", 2, 2),
		activity("p3", "u-p", 3, 3), activity("q2", "u-q", 2, 4), activity("p4", "u-p", 4, 5), activity("p5", "u-p", 5, 6)}
	e.send(recs...)
	e.waitProcessed(r)

	e.wantApplied(r, map[string]int64{"u-p": 1, "u-q": 2})
	st := e.decoded("u-p")
	if st.Park == nil || st.Park.Offset != 2 || st.Park.Reason != "internal_error" || st.Park.HeldThrough != 6 {
		t.Fatalf("u-p park %+v; want parked at offset 2 (internal_error), held through 6", st.Park)
	}
	if got := e.parkedRecords(); !slices.Equal(got, []string{"p3 2", "p4 2", "p5 2"}) {
		t.Errorf("parked topic %q, want p3, p4, p5 held since offset 2", got)
	}
	if got := e.dlqReasons(); !slices.Equal(got, []string{"internal_error"}) {
		t.Errorf("DLQ reasons %q, want [internal_error]", got)
	}
	if held, parked := metric(r.reg, "streamworker_events_held_total"), metric(r.reg, "streamworker_users_parked_total"); held != 3 || parked != 1 {
		t.Errorf("held %v parked %v, want 3 and 1", held, parked)
	}

	e.send(releaseRecord("u-p"))
	e.waitProcessed(r)
	got := e.decoded("u-p")
	if got.Park != nil || got.TotalActivity != 4 || got.LastSequence != 5 {
		t.Fatalf("after release: %+v park %+v; want p1, p3, p4, p5 applied and no park", got.Snapshot("u-p"), got.Park)
	}
	if n := metric(r.reg, "streamworker_users_released_total"); n != 1 {
		t.Errorf("released %v, want 1", n)
	}

	// The clean run: the same records without p2, its gap given up.
	ref := newMemEnv(t, 1)
	ropts := ref.options(nil)
	ropts.Sequencing.GapTimeout = 200 * time.Millisecond
	rr := ref.start(ropts)
	ref.send(slices.Concat(recs[:2], recs[3:])...)
	testenv.Eventually(t, 20*time.Second, func() bool { return metric(rr.reg, "streamworker_gaps_total") == 1 }, "the reference gave up no gap")
	ref.waitProcessed(rr)
	if !bytes.Equal(e.stateOf("u-p"), ref.stateOf("u-p")) || !bytes.Equal(e.stateOf("u-q"), ref.stateOf("u-q")) {
		want := ref.decoded("u-p")
		t.Errorf("state after release differs from the clean run:\n got  %+v\n want %+v", got.Snapshot("u-p"), want.Snapshot("u-p"))
	}
	if g := e.gapRecords(); len(g) != 1 || g[0].Expected != 2 || g[0].ResumedAt != 3 {
		t.Errorf("gap records %+v, want the one of p2", g)
	}

	// A release of a user that is not parked changes nothing; later
	// events are applied at once.
	before := e.stateOf("u-p")
	e.send(releaseRecord("u-p"), releaseRecord("u-nobody"))
	e.waitProcessed(r)
	if !bytes.Equal(e.stateOf("u-p"), before) || e.stateOf("u-nobody") != nil || metric(r.reg, "streamworker_users_released_total") != 1 {
		t.Error("a release of a user that is not parked changed something")
	}
	e.send(activity("p6", "u-p", 6, 7))
	e.waitProcessed(r)
	e.wantApplied(r, map[string]int64{"u-p": 5, "u-q": 2})
}

// TestParkedRedeliveryHeldOnce: input re-read after the held events were
// persisted (here the group's offsets moved back, as after a crash before
// the offset commit) holds none of them again; the release then applies
// each once.
func TestParkedRedeliveryHeldOnce(t *testing.T) {
	panicOn(t, nil, "p2")
	e := newEnv(t, 1).withParked()
	r := e.start(e.parkOptions())
	e.send(plain("p1", "u-p", 1), plain("p2", "u-p", 2), plain("p3", "u-p", 3), plain("p4", "u-p", 4))
	e.waitProcessed(r)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	adm := e.kafka.Admin(t)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: e.names.Input, Partition: 0, At: 0, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(context.Background(), e.group, offs); err != nil {
		t.Fatal(err)
	}

	r2 := e.start(e.parkOptions())
	e.waitProcessed(r2)
	if got := e.parkedRecords(); !slices.Equal(got, []string{"p3 1", "p4 1"}) {
		t.Errorf("parked topic %q after the redelivery, want p3 and p4 held once", got)
	}
	if n := metric(r2.reg, "streamworker_events_held_total"); n != 0 {
		t.Errorf("the redelivery held %v events again", n)
	}
	e.send(releaseRecord("u-p"))
	e.waitProcessed(r2)
	e.wantApplied(r2, map[string]int64{"u-p": 3})
	if st := e.decoded("u-p"); st.Park != nil {
		t.Errorf("still parked: %+v", st.Park)
	}
}

// lostReplyStore applies a commit of an armed aggregate and then reports
// a connection reset, once per arming: the worker cannot tell whether the
// write happened.
type lostReplyStore struct {
	state.Store
	mu    sync.Mutex
	armed map[string]bool
	lost  atomic.Int32
}

func (s *lostReplyStore) Commit(ctx context.Context, writes []state.Write) ([]state.Outcome, error) {
	out, err := s.Store.Commit(ctx, writes)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range writes {
		if s.armed[w.Aggregate] && err == nil {
			s.armed[w.Aggregate] = false
			s.lost.Add(1)
			return make([]state.Outcome, len(writes)), syscall.ECONNRESET
		}
	}
	return out, err
}

// TestReleaseRetried: a release whose commit reply is lost, or whose write
// the store rejects a few times, is retried and applies each held event
// exactly once.
func TestReleaseRetried(t *testing.T) {
	panicOn(t, nil, "p2")
	for _, tc := range []string{"reply lost", "write rejected"} {
		t.Run(tc, func(t *testing.T) {
			e := newMemEnv(t, 1).withParked()
			lost := &lostReplyStore{Store: e.mem, armed: map[string]bool{}}
			conflicts := &conflictingStore{Store: lost, failing: map[string]bool{}}
			e.store = conflicts
			r := e.start(e.parkOptions())
			e.send(plain("p1", "u-p", 1), plain("p2", "u-p", 2), plain("p3", "u-p", 3), plain("p4", "u-p", 4))
			e.waitProcessed(r)
			e.wantApplied(r, map[string]int64{"u-p": 1})
			if tc == "reply lost" {
				lost.mu.Lock()
				lost.armed["u-p"] = true
				lost.mu.Unlock()
			} else {
				conflicts.set("u-p", true)
			}
			e.send(releaseRecord("u-p"))
			if tc == "reply lost" {
				testenv.Eventually(t, 10*time.Second, func() bool { return lost.lost.Load() == 1 }, "no reply lost")
			} else {
				testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_partition_resets_total") >= 2 },
					"the rejected release was not retried")
				conflicts.set("u-p", false)
			}
			e.waitProcessed(r)
			e.wantApplied(r, map[string]int64{"u-p": 3})
			if st := e.decoded("u-p"); st.Park != nil {
				t.Errorf("still parked: %+v", st.Park)
			}
			if n := metric(r.reg, "streamworker_users_released_total"); n != 1 {
				t.Errorf("released %v times, want 1", n)
			}
		})
	}
}

// TestReleaseFailsAgain: a held event that fails by itself when the release
// applies it goes to the DLQ and parks the user again at it; the held
// events before it are applied, those after it held again under the new
// park; nothing is lost, and a second release applies the rest.
func TestReleaseFailsAgain(t *testing.T) {
	var p4fails atomic.Bool
	worker.SetApplyHook(t.Cleanup, func(ev *topics.Event) {
		if ev.ID == "p2" || (ev.ID == "p4" && p4fails.Load()) {
			panic("boom on " + ev.ID)
		}
	})
	p4fails.Store(true)
	e := newEnv(t, 1).withParked()
	r := e.start(e.parkOptions())
	e.send(plain("p1", "u-p", 1), plain("p2", "u-p", 2), plain("p3", "u-p", 3), plain("p4", "u-p", 4), plain("p5", "u-p", 5))
	e.waitProcessed(r)
	e.send(releaseRecord("u-p"))
	e.waitProcessed(r)

	st := e.decoded("u-p")
	if st.TotalActivity != 2 || st.Park == nil || st.Park.Offset != 3 {
		t.Fatalf("after the release: %d applied, park %+v; want p1 and p3 applied, parked again at p4 (offset 3)", st.TotalActivity, st.Park)
	}
	if got := e.parkedRecords(); !slices.Equal(got, []string{"p3 1", "p4 1", "p5 1", "p5 3"}) {
		t.Errorf("parked topic %q; want p3-p5 held at 1, then p5 held again at 3", got)
	}
	dlq := e.readAll(e.names.DLQ)
	var offsets []string
	for _, d := range dlq {
		offsets = append(offsets, headers(d)["dlq.offset"]+" "+headers(d)["dlq.reason"])
	}
	if !slices.Equal(offsets, []string{"1 internal_error", "3 internal_error"}) {
		t.Errorf("DLQ %q, want p2 (offset 1) and p4 (offset 3)", offsets)
	}

	p4fails.Store(false)
	e.send(releaseRecord("u-p"))
	e.waitProcessed(r)
	st = e.decoded("u-p")
	if st.TotalActivity != 3 || st.Park != nil {
		t.Fatalf("after the second release: %d applied, park %+v; want p1, p3, p5 and no park", st.TotalActivity, st.Park)
	}
	if n := metric(r.reg, "streamworker_users_released_total"); n != 1 {
		t.Errorf("released %v, want 1 (the first release parked again)", n)
	}
}

// TestOnPoisonDLQUnchanged: with the default input.on_poison: dlq, a
// failing record parks nobody: the user's later events are applied and
// nothing reaches the parked topic.
func TestOnPoisonDLQUnchanged(t *testing.T) {
	panicOn(t, nil, "p2")
	e := newMemEnv(t, 1).withParked()
	r := e.start(e.options(nil))
	e.send(plain("p1", "u-p", 1), plain("p2", "u-p", 2), plain("p3", "u-p", 3))
	e.waitProcessed(r)
	e.wantApplied(r, map[string]int64{"u-p": 2})
	if st := e.decoded("u-p"); st.Park != nil {
		t.Errorf("parked with on_poison dlq: %+v", st.Park)
	}
	if n := len(e.readAll(e.names.Parked)); n != 0 {
		t.Errorf("%d records on the parked topic, want none", n)
	}
}

// TestReleaseKilled: a worker process killed by SIGKILL after a release
// was committed to Redis but before its offset was: the next worker reads
// the release again, finds the user no longer parked, and applies nothing
// twice. One held event is on the parked topic twice, as a crash between
// its copy and the state commit leaves it: the release applies it once.
func TestReleaseKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("separate processes; skipped with -short")
	}
	e := newEnv(t, 1, fastGroups).withParked()
	// u-k was parked at input offset 0 (the record on the DLQ), and 40 of
	// its events were held since, as a worker holds them.
	const held = 40
	e.parkByHand("u-k", held)
	var recs []*kgo.Record
	for i := range held {
		r := plain(fmt.Sprintf("k%d", i+1), "u-k", i%60)
		r.Topic = e.names.Parked
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: worker.HeldTopicHeader, Value: []byte(e.names.Input)},
			kgo.RecordHeader{Key: worker.HeldPartitionHeader, Value: []byte("0")},
			kgo.RecordHeader{Key: worker.HeldOffsetHeader, Value: []byte(strconv.Itoa(i + 1))},
			kgo.RecordHeader{Key: worker.HeldSinceHeader, Value: []byte("0")})
		recs = append(recs, r)
		if i == 7 {
			dup := *r
			recs = append(recs, &dup)
		}
	}
	if err := e.kafka.Client(t).ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	parkEnv := e.parkEnv()

	p := e.spawnWith("release-0", append(parkEnv, "SW_KAFKA_COMMIT_INTERVAL=1h")...)
	p.waitLog(t, "partitions assigned")
	e.send(releaseRecord("u-k"))
	p.waitLog(t, "user released")
	p.signal(syscall.SIGKILL)
	if n := len(e.readAll(e.names.Parked)); n != held+1 {
		t.Fatalf("%d records on the parked topic, want %d", n, held+1)
	}
	if c := e.committed()[0]; c != 0 {
		t.Fatalf("committed offset %d; the kill was meant to come before the release's offset commit", c)
	}
	if got := e.decoded("u-k"); got.Park != nil || got.TotalActivity != held {
		t.Fatalf("before the restart: %d applied, park %+v", got.TotalActivity, got.Park)
	}

	p = e.spawnWith("release-1", parkEnv...)
	e.waitDrained(60 * time.Second)
	p.waitLog(t, "release of a user that is not parked: nothing to do")
	p.signal(syscall.SIGTERM)
	if got := e.decoded("u-k"); got.Park != nil || got.TotalActivity != held {
		t.Errorf("after the restart: %d applied, park %+v; want each of the %d held events once", got.TotalActivity, got.Park, held)
	}
}

// TestParkHoldsBufferedEvents: a user's events waiting in the reorder
// buffer when it is parked are held with the later ones (the commit point
// no longer waits for them), and the release applies them in sequence
// order: no gap is given up.
func TestParkHoldsBufferedEvents(t *testing.T) {
	panicOn(t, nil, "bad")
	e := newMemEnv(t, 1).withParked()
	r := e.start(e.parkOptions())
	e.send(activity("s1", "u-s", 1, 1), activity("s3", "u-s", 3, 3))
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_events") == 1 }, "s3 was not buffered")
	e.send(plain("bad", "u-s", 4), activity("s2", "u-s", 2, 2))
	e.waitProcessed(r)
	if got := e.parkedRecords(); !slices.Equal(got, []string{"s3 2", "s2 2"}) {
		t.Errorf("parked topic %q; want the buffered s3, then s2, held since the bad record (offset 2)", got)
	}
	// The gauge follows the lag update (kafka.lag_interval), not the commit.
	testenv.Eventually(t, 10*time.Second, func() bool { return metric(r.reg, "streamworker_buffered_events") == 0 },
		"events still buffered after the park")
	e.send(releaseRecord("u-s"))
	e.waitProcessed(r)
	st := e.decoded("u-s")
	if st.TotalActivity != 3 || st.LastSequence != 3 || st.Park != nil || len(e.gapRecords()) != 0 {
		t.Errorf("after the release: %+v, park %+v, %d gaps; want s1-s3 applied in order, no gap", st.Snapshot("u-s"), st.Park, len(e.gapRecords()))
	}
}

// TestControlRecordsHarmless: a control record asks for a release or goes
// to the DLQ (invalid_control); a release of a user that is not parked, or
// read on another partition than the user's park, changes nothing.
func TestControlRecordsHarmless(t *testing.T) {
	panicOn(t, nil, "bad")
	e := newMemEnv(t, 2).withParked()
	r := e.start(e.parkOptions())
	bad := plain("bad", "u-c", 1)
	bad.Partition = 0
	e.sendTo(bad)
	e.waitProcessed(r)
	odd := releaseRecord("u-c")
	odd.Headers[0].Value = []byte("apply-everything")
	keyless := releaseRecord("")
	elsewhere := releaseRecord("u-c")
	elsewhere.Partition = 1
	odd.Partition, keyless.Partition = 0, 0
	e.sendTo(odd, keyless, elsewhere, func() *kgo.Record { x := releaseRecord("u-free"); x.Partition = 1; return x }())
	e.waitProcessed(r)
	if got := slices.Sorted(slices.Values(e.dlqReasons())); !slices.Equal(got, []string{"internal_error", "invalid_control", "invalid_control"}) {
		t.Errorf("DLQ reasons %q; want the bad record and the two invalid control records", got)
	}
	if st := e.decoded("u-c"); st.Park == nil || metric(r.reg, "streamworker_users_released_total") != 0 {
		t.Errorf("a control record released u-c: park %+v", st.Park)
	}
	if e.stateOf("u-free") != nil {
		t.Error("a release of a user that is not parked wrote its state")
	}
}

// parkByHand stores user as parked at input offset 0 (as if the record
// there had failed), with events held through heldThrough.
func (e *env) parkByHand(user string, heldThrough int64) {
	e.t.Helper()
	st := processors.State{Park: &processors.Park{Offset: 0, HeldThrough: heldThrough, Reason: "internal_error"}}
	data, err := st.MarshalBinary()
	if err != nil {
		e.t.Fatal(err)
	}
	if out, err := e.store.Commit(context.Background(), []state.Write{{Aggregate: user, Data: data}}); err != nil || out[0] != state.Committed {
		e.t.Fatalf("parking %s: %v %v", user, out, err)
	}
}

// parkEnv is the environment of a spawned worker that parks.
func (e *env) parkEnv() []string {
	return []string{"SW_INPUT_ON_POISON=park", "SW_TOPICS_PARKED=" + e.names.Parked}
}

// TestHeldKilled: a worker process killed by SIGKILL after it held a
// parked user's events (the holds persisted) but before their offsets were
// committed: the next worker reads them again and holds none of them a
// second time; the release applies each once. Another user's events, read
// twice too, are applied once.
func TestHeldKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("separate processes; skipped with -short")
	}
	e := newEnv(t, 1, fastGroups).withParked()
	e.send(plain("h0", "u-h", 0)) // offset 0: stands for the record that parked u-h
	e.parkByHand("u-h", 0)
	const n = 30
	var recs []*kgo.Record
	for i := 1; i <= n; i++ {
		recs = append(recs, plain(fmt.Sprintf("h%d", i), "u-h", i), plain(fmt.Sprintf("o%d", i), "u-o", i))
	}
	last := int64(2 * n) // the offset of the last record

	p := e.spawnWith("held-0", append(e.parkEnv(), "SW_KAFKA_COMMIT_INTERVAL=1h")...)
	p.waitLog(t, "partitions assigned")
	e.send(recs...)
	testenv.Eventually(t, 30*time.Second, func() bool {
		st := e.decoded("u-h")
		return st.Park != nil && st.Park.HeldThrough >= last-1 && e.applied("u-o") == n
	}, "the worker did not persist the holds")
	p.signal(syscall.SIGKILL)
	if c := e.committed()[0]; c > last {
		t.Fatalf("committed offset %d; the kill was meant to come before the offset commit", c)
	}
	if got := len(e.readAll(e.names.Parked)); got != n {
		t.Fatalf("%d events held before the kill, want %d", got, n)
	}

	p = e.spawnWith("held-1", e.parkEnv()...)
	e.waitDrained(60 * time.Second)
	if got := len(e.readAll(e.names.Parked)); got != n {
		t.Errorf("%d records on the parked topic after the restart, want the %d held once", got, n)
	}
	e.send(releaseRecord("u-h"))
	e.waitDrained(60 * time.Second)
	p.waitLog(t, "user released")
	p.signal(syscall.SIGTERM)
	if st := e.decoded("u-h"); st.Park != nil || st.TotalActivity != n {
		t.Errorf("u-h after the release: %d applied, park %+v; want each of the %d held events once", st.TotalActivity, st.Park, n)
	}
	if got := e.applied("u-o"); got != n {
		t.Errorf("u-o: %d applied, want %d", got, n)
	}
}
