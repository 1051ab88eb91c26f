package loadgen

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cluster starts a one-broker kfake cluster with a 4-partition
// user.activity topic and returns a client of it.
func cluster(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "user.activity"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// endOffsets returns the sum of the topic's end offsets: the records in it.
func endOffsets(t *testing.T, cl *kgo.Client, topic string) int64 {
	t.Helper()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// TestProduceDelivers produces a mixed stream at full speed, reads it back,
// and checks that the records, their partitioning and their per-user order
// are what the Oracle expects.
func TestProduceDelivers(t *testing.T) {
	const n = 5000
	cfg := mixed(n, 21)
	cfg.Users = 100
	cl := cluster(t)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	st, err := Produce(context.Background(), cl, g, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()

	want := NewOracle()
	var kinds [3]int64
	for _, r := range generate(t, cfg) {
		want.Observe(r)
		kinds[r.Kind]++
	}
	if st.Sent != n || st.Valid != kinds[Valid] || st.Duplicates != kinds[Duplicate] || st.Malformed != kinds[Malformed] || st.Elapsed <= 0 {
		t.Fatalf("stats %+v; want %d sent, by kind %v", st, n, kinds)
	}
	if got := endOffsets(t, cl, "user.activity"); got != n {
		t.Fatalf("topic holds %d records, want %d", got, n)
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumeTopics("user.activity"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := NewOracle()
	partition := make(map[string]int32)
	for read := 0; read < n; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("after %d records: %v", read, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			read++
			if p, ok := partition[string(r.Key)]; ok && p != r.Partition {
				t.Errorf("key %s in partitions %d and %d", r.Key, p, r.Partition)
			}
			partition[string(r.Key)] = r.Partition
			if r.Timestamp.Before(before.Truncate(time.Millisecond)) || r.Timestamp.After(after) {
				t.Errorf("record timestamp %v is not its produce time (%v to %v)", r.Timestamp, before, after)
			}
			got.Observe(Record{Key: r.Key, Value: r.Value, Headers: r.Headers})
		})
	}
	if got.Valid() != want.Valid() || got.Duplicates() != want.Duplicates() || got.Malformed() != want.Malformed() {
		t.Fatalf("read back valid %d dups %d malformed %d; generated %d %d %d",
			got.Valid(), got.Duplicates(), got.Malformed(), want.Valid(), want.Duplicates(), want.Malformed())
	}
	for _, u := range want.Users() {
		if !reflect.DeepEqual(got.Events(u), want.Events(u)) {
			t.Fatalf("user %s: events read back differ from the generated ones", u)
		}
	}
}

func TestProduceRate(t *testing.T) {
	cl := cluster(t)
	g, err := New(Config{Users: 10, Events: 1200, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var last atomic.Int64
	st, err := Produce(context.Background(), cl, g, 1000, func(s Stats) {
		calls.Add(1)
		last.Store(s.Sent)
	})
	if err != nil {
		t.Fatal(err)
	}
	// 1200 records at 1000/s: the last is due after 1.199s.
	if st.Sent != 1200 || st.Elapsed < 1150*time.Millisecond {
		t.Fatalf("stats %+v: want 1200 records in at least 1.15s", st)
	}
	if calls.Load() < 1 || last.Load() > st.Sent {
		t.Fatalf("progress called %d times, last with %d sent", calls.Load(), last.Load())
	}
}

func TestProduceCanceled(t *testing.T) {
	cl := cluster(t)
	g, err := New(Config{Seed: 1}) // unbounded
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err := Produce(ctx, cl, g, 5000, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Produce = %v, want the context's error", err)
	}
	if st.Sent == 0 || st.Sent > 2000 {
		t.Fatalf("sent %d in 300ms at 5000/s", st.Sent)
	}
	if got := endOffsets(t, cl, "user.activity"); got != st.Sent {
		t.Fatalf("topic holds %d records, Stats.Sent says %d", got, st.Sent)
	}
}

func TestProduceErrors(t *testing.T) {
	cl := cluster(t, kgo.UnknownTopicRetries(1), kgo.MetadataMinAge(10*time.Millisecond))
	g, err := New(Config{Events: 10, Topic: "no.such.topic"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Produce(context.Background(), cl, g, 0, nil); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("Produce to a missing topic = %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if _, err := Produce(context.Background(), cl, g, -1, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Produce at rate -1 = %v, want ErrInvalidConfig", err)
	}
}
