package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one test's broker, store and topic names. The store is a
// redis-server (newEnv) or a state.MemoryStore (newMemEnv).
type env struct {
	t      testing.TB
	kafka  *testenv.KafkaCluster
	redis  *testenv.RedisServer // nil with a MemoryStore
	store  state.Store          // what the workers of the test use
	mem    *state.MemoryStore
	names  topics.Names
	group  string
	prefix string
	parts  int

	// topo is the Redis deployment of newTopoEnv (redis is nil then, but
	// for the single topology).
	topo *testenv.RedisTopology
}

func newEnv(t testing.TB, partitions int, kopts ...testenv.KafkaOption) *env {
	t.Helper()
	return newEnvWith(t, partitions, kopts, nil)
}

func newEnvWith(t testing.TB, partitions int, kopts []testenv.KafkaOption, ropts []testenv.RedisOption) *env {
	t.Helper()
	e := newKafkaEnv(t, partitions, kopts)
	e.redis = testenv.Redis(t, ropts...)
	e.prefix = e.redis.Prefix()
	if e.prefix == "" {
		e.prefix = "sw"
	}
	e.store = state.NewRedisStore(e.redis.Client(t), dedupe.Keys{Prefix: e.prefix}, 0)
	return e
}

// newMemEnv is an env whose workers keep state in one shared MemoryStore:
// no redis-server needed.
func newMemEnv(t testing.TB, partitions int, kopts ...testenv.KafkaOption) *env {
	t.Helper()
	e := newKafkaEnv(t, partitions, kopts)
	e.mem = state.NewMemoryStore(0, nil)
	e.store = e.mem
	return e
}

func newKafkaEnv(t testing.TB, partitions int, kopts []testenv.KafkaOption) *env {
	t.Helper()
	k := testenv.Kafka(t, kopts...)
	e := &env{t: t, kafka: k, parts: partitions}
	d := topics.DefaultNames()
	e.names = topics.Names{Input: k.Topic(d.Input), Aggregates: k.Topic(d.Aggregates), Milestones: k.Topic(d.Milestones),
		Anomalies: k.Topic(d.Anomalies), DLQ: k.Topic(d.DLQ), Gaps: k.Topic(d.Gaps)}
	k.CreateTopics(t, partitions, e.names.Input)
	k.CreateTopics(t, 3, e.names.Aggregates, e.names.Milestones, e.names.Anomalies, e.names.DLQ, e.names.Gaps)
	e.group = k.Topic("group")
	return e
}

// options are the worker options of this env: the configuration's
// defaults with fast timings for tests.
func (e *env) options(reg prometheus.Registerer) worker.Options {
	opts, err := app.WorkerOptions(config.Default())
	if err != nil {
		e.t.Fatal(err)
	}
	opts.Kafka = []kgo.Opt{kgo.SeedBrokers(e.kafka.Seeds()...)}
	opts.Group = e.group
	opts.Topics = e.names
	opts.CommitInterval = 200 * time.Millisecond
	opts.SessionTimeout = 6 * time.Second
	opts.RebalanceTimeout = 10 * time.Second
	if e.redis != nil {
		opts.Redis = e.redis.Client(e.t)
		opts.KeyPrefix = e.prefix
	} else {
		opts.Store = e.store
	}
	opts.Retry = worker.Backoff{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	opts.ShutdownTimeout = 15 * time.Second
	opts.LagInterval = 200 * time.Millisecond
	opts.Logger = testLogger()
	opts.Registerer = reg
	return opts
}

func testLogger() *slog.Logger {
	if os.Getenv("SW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// running is a worker running in this test process.
type running struct {
	w      *worker.Worker
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// wantApplied checks how many events each user's state has applied and
// that the worker is ready: what every hostile-input test ends with.
func (e *env) wantApplied(r *running, want map[string]int64) {
	e.t.Helper()
	for _, u := range slices.Sorted(maps.Keys(want)) {
		if got := e.applied(u); got != want[u] {
			e.t.Errorf("user %q: %d events applied, want %d", u, got, want[u])
		}
	}
	if !r.w.Ready() {
		e.t.Error("worker not ready")
	}
}

func (e *env) start(opts worker.Options) *running {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Registerer == nil {
		opts.Registerer = reg
	}
	w, err := worker.New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// stop cancels the worker and waits for its drain.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop within 30s")
		return nil
	}
}

// produce writes the generator's whole stream and returns its oracle.
func (e *env) produce(cfg loadgen.Config) *loadgen.Oracle {
	e.t.Helper()
	cfg.Topic = e.names.Input
	gen, err := loadgen.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	cl := e.kafka.Client(e.t, kgo.ProducerLinger(time.Millisecond))
	oracle := loadgen.NewOracle()
	var recs []*kgo.Record
	for {
		r, ok := gen.Next()
		if !ok {
			break
		}
		oracle.Observe(r)
		recs = append(recs, &kgo.Record{Topic: e.names.Input, Key: r.Key, Value: r.Value, Headers: r.Headers})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return oracle
}

// admin returns an admin client of its own, closed when done is called:
// the helpers that poll offsets call it every 10ms, and clients kept until
// the test ends would hold thousands of connections (the in-process kfake
// then runs out of file descriptors and stops accepting). A new client
// each time also keeps polls off connections a fault left half-open.
func (e *env) admin() (adm *kadm.Client, done func()) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kafka.Seeds()...))
	if err != nil {
		e.t.Fatal(err)
	}
	return kadm.NewClient(cl), cl.Close
}

// endOffsets returns the log-end offset of every input partition.
func (e *env) endOffsets() map[int32]int64 {
	e.t.Helper()
	adm, done := e.admin()
	defer done()
	ends, err := adm.ListEndOffsets(context.Background(), e.names.Input)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// committed returns the group's committed offsets on the input.
func (e *env) committed() map[int32]int64 {
	e.t.Helper()
	adm, done := e.admin()
	defer done()
	offs, err := adm.FetchOffsets(context.Background(), e.group)
	if err != nil {
		return nil
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == e.names.Input {
			out[o.Partition] = o.At
		}
	})
	return out
}

// waitDrained waits until the group has committed the log end of every
// input partition.
// runDrained runs a worker with opts until the group has committed the
// log end of every partition, stops it, and returns it.
func (e *env) runDrained(opts worker.Options) *running {
	e.t.Helper()
	r := e.start(opts)
	e.waitDrained(60 * time.Second)
	if err := r.stop(e.t); err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) waitDrained(timeout time.Duration) {
	e.t.Helper()
	ends := e.endOffsets()
	testenv.Eventually(e.t, timeout, func() bool {
		c := e.committed()
		for p, end := range ends {
			if c[p] != end {
				return false
			}
		}
		return true
	}, "group did not commit the log end of every partition")
}

// expectation is what a correct run leaves behind for one user.
type expectation struct {
	state      []byte // MarshalBinary of the final state
	snapshot   topics.AggregatedData
	milestones []string // output IDs
	anomalies  []string
}

// expect applies the oracle's unique valid events of every user, in order,
// to fresh state: the reference a run must match.
func expect(t testing.TB, o *loadgen.Oracle, pc processors.Config) map[string]*expectation {
	t.Helper()
	proc, err := processors.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*expectation{}
	for _, u := range o.Users() {
		var st processors.State
		x := &expectation{}
		for _, ev := range o.Events(u) {
			ev := ev
			eff := proc.Apply(&st, &ev)
			if c := eff.Milestone; c > 0 {
				x.milestones = append(x.milestones, topics.MilestoneID(u, c))
			}
			if eff.Anomaly != nil {
				x.anomalies = append(x.anomalies, topics.AnomalyID(u, ev.ID))
			}
		}
		b, err := st.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		x.state, x.snapshot = b, st.Snapshot(u)
		out[u] = x
	}
	return out
}

// outputRecord is one consumed output.
type outputRecord struct {
	rec *kgo.Record
	env topics.Output
}

// readAll returns every record of topic, in partition-offset order.
func (e *env) readAll(topic string) []*kgo.Record {
	e.t.Helper()
	ends, err := e.kafka.Admin(e.t).ListEndOffsets(context.Background(), topic)
	if err != nil {
		e.t.Fatal(err)
	}
	want := map[int32]int64{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			total += o.Offset
		}
	})
	if total == 0 {
		return nil
	}
	cl := e.kafka.Client(e.t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var recs []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for int64(len(recs)) < total {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			e.t.Fatalf("reading %s: got %d of %d records", topic, len(recs), total)
		}
		f.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
	return recs
}

func (e *env) outputs(topic string) []outputRecord {
	e.t.Helper()
	var out []outputRecord
	for _, r := range e.readAll(topic) {
		var o topics.Output
		if err := json.Unmarshal(r.Value, &o); err != nil {
			e.t.Fatalf("%s offset %d: not an output envelope: %v", topic, r.Offset, err)
		}
		out = append(out, outputRecord{rec: r, env: o})
	}
	return out
}

// stateOf returns the stored state of user u (nil when none).
func (e *env) stateOf(u string) []byte {
	e.t.Helper()
	snaps, _, err := e.store.Fetch(context.Background(), []string{u}, nil)
	if err != nil {
		e.t.Fatalf("reading the state of %s: %v", u, err)
	}
	return snaps[0].Data
}

// verify checks the stored state and every output topic against the oracle.
func (e *env) verify(o *loadgen.Oracle, pc processors.Config) {
	t := e.t
	t.Helper()
	want := expect(t, o, pc)
	bad := 0
	for u, x := range want {
		got := e.stateOf(u)
		if !bytes.Equal(got, x.state) {
			if bad < 5 {
				var st processors.State
				_ = st.UnmarshalBinary(got)
				t.Errorf("user %s: stored state differs:\n got  %+v\n want %+v", u, st.Snapshot(u), x.snapshot)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d users have a wrong state", bad, len(want))
	}

	// Milestones and anomalies: exactly the expected IDs, and every copy
	// of an ID byte-identical (deterministic outputs).
	checkIDs := func(topic string, pick func(*expectation) []string) {
		seen := map[string][]byte{}
		for _, r := range e.outputs(topic) {
			if prev, ok := seen[r.env.ID]; ok && !bytes.Equal(prev, r.rec.Value) {
				t.Errorf("%s: two different payloads for id %s", topic, r.env.ID)
			}
			seen[r.env.ID] = r.rec.Value
		}
		var wantIDs []string
		for _, x := range want {
			wantIDs = append(wantIDs, pick(x)...)
		}
		var missing, extra []string
		for _, id := range wantIDs {
			if _, ok := seen[id]; !ok {
				missing = append(missing, id)
			}
			delete(seen, id)
		}
		for id := range seen {
			extra = append(extra, id)
		}
		if len(missing)+len(extra) > 0 {
			t.Errorf("%s: %d expected ids missing (e.g. %v), %d unexpected (e.g. %v)", topic,
				len(missing), head(missing), len(extra), head(extra))
		}
		t.Logf("%s: %d distinct ids as expected", topic, len(wantIDs))
	}
	checkIDs(e.names.Milestones, func(x *expectation) []string { return x.milestones })
	checkIDs(e.names.Anomalies, func(x *expectation) []string { return x.anomalies })

	// Aggregates: the last snapshot of each user equals the expected one.
	last := map[string]topics.Output{}
	for _, r := range e.outputs(e.names.Aggregates) {
		last[r.env.AggregateID] = r.env
	}
	for u, x := range want {
		got, ok := last[u]
		if !ok {
			t.Errorf("no aggregate output for user %s", u)
			continue
		}
		wantData, _ := json.Marshal(x.snapshot)
		if !jsonEqual(got.Data, wantData) {
			t.Errorf("user %s: last aggregate\n got  %s\n want %s", u, got.Data, wantData)
		}
	}

	// DLQ: every malformed input exactly once by origin, each with a reason.
	origins := map[string]bool{}
	for _, r := range e.readAll(e.names.DLQ) {
		h := headers(r)
		if h["dlq.reason"] == "" || h["dlq.error"] == "" || h["dlq.processor"] == "" {
			t.Errorf("DLQ record without reason headers: %v", h)
		}
		origins[h["dlq.topic"]+"/"+h["dlq.partition"]+"/"+h["dlq.offset"]] = true
	}
	if len(origins) != o.Malformed() {
		t.Errorf("DLQ holds %d distinct inputs, want the %d malformed ones", len(origins), o.Malformed())
	}
}

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

func head(s []string) []string {
	sort.Strings(s)
	if len(s) > 3 {
		return s[:3]
	}
	return s
}

// metric returns the sum of a counter or gauge family in reg, over the
// series that have the label pairs given (name, value, ...).
func metric(reg prometheus.Gatherer, name string, labels ...string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
					return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}) {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

var errTimeout = errors.New("timeout")

var _ = strings.TrimSpace
var _ = errTimeout
