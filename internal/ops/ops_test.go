package ops_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/ops"
	"github.com/streamworker/streamworker/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// hdr is a record header.
func hdr(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }

// redriveTopics returns a cluster with a one-partition DLQ and input topic,
// their names, a group name for the redrive and a client.
func redriveTopics(t *testing.T) (k *testenv.KafkaCluster, dlq, input, group string, cl *kgo.Client) {
	t.Helper()
	k = testenv.Kafka(t)
	dlq, input, group = k.Topic("dlq"), k.Topic("in"), k.Topic("redrive")
	k.CreateTopics(t, 1, dlq, input)
	return k, dlq, input, group, k.Client(t)
}

// readTopic returns the first n records of topic, in order.
func readTopic(t *testing.T, k *testenv.KafkaCluster, topic string, n int) []*kgo.Record {
	t.Helper()
	consumer := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []*kgo.Record
	testenv.Eventually(t, 10*time.Second, func() bool {
		pctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		consumer.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
		return len(got) >= n
	}, "records not on "+topic)
	return got
}

func TestReplayMovesCommittedOffsets(t *testing.T) {
	k := testenv.Kafka(t)
	topic, group := k.Topic("in"), k.Topic("g")
	k.CreateTopics(t, 2, topic)
	cl := k.Client(t)
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range 10 {
		produce(t, cl, &kgo.Record{Topic: topic, Partition: int32(i % 2), Key: []byte(fmt.Sprint(i)),
			Timestamp: base.Add(time.Duration(i) * time.Minute)})
	}
	adm := k.Admin(t)
	ctx := context.Background()

	offs, err := ops.Replay(ctx, adm, group, topic, ops.ReplayFrom{Offset: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	offs.Each(func(o kadm.Offset) {
		if o.At != 3 {
			t.Errorf("partition %d: replay from offset 3 committed %d", o.Partition, o.At)
		}
	})
	// From a time: the first record at or after minute 6 is offset 3 of
	// partition 0 (records 0,2,4,6,8) and offset 3 of partition 1 (7).
	offs, err = ops.Replay(ctx, adm, group, topic, ops.ReplayFrom{Time: base.Add(6 * time.Minute)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]int64{}
	offs.Each(func(o kadm.Offset) { got[o.Partition] = o.At })
	if got[0] != 3 || got[1] != 3 {
		t.Fatalf("replay from minute 6 committed %v, want partition 0 -> 3, partition 1 -> 3", got)
	}

	// A group with a live member is refused.
	member := k.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic))
	testenv.Eventually(t, 10*time.Second, func() bool {
		member.PollRecords(ctx, 1)
		_, gen := member.GroupMetadata()
		return gen > 0
	}, "member did not join")
	if _, err := ops.Replay(ctx, adm, group, topic, ops.ReplayFrom{Offset: 0}, nil); !errors.Is(err, ops.ErrGroupActive) {
		t.Fatalf("replay of a live group: %v, want ErrGroupActive", err)
	}
}

func TestRedriveCopiesOnce(t *testing.T) {
	k := testenv.Kafka(t)
	dlq, input, group := k.Topic("dlq"), k.Topic("in"), k.Topic("redrive")
	k.CreateTopics(t, 1, dlq, input)
	cl := k.Client(t)
	for i, reason := range []string{"late", "malformed", "late"} {
		produce(t, cl, &kgo.Record{Topic: dlq, Key: []byte(fmt.Sprint("u", i)), Value: []byte(fmt.Sprint("v", i)),
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("tp")}, {Key: "dlq.reason", Value: []byte(reason)}}})
	}
	opts := []kgo.Opt{kgo.SeedBrokers(k.Seeds()...)}
	ctx := context.Background()
	st, err := ops.Redrive(ctx, opts, dlq, input, group, "late", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 3 || st.Redriven != 2 || st.Skipped != 1 {
		t.Fatalf("redrive stats %+v, want 3 read, 2 redriven, 1 skipped", st)
	}
	// A second run finds nothing new.
	st, err = ops.Redrive(ctx, opts, dlq, input, group, "late", nil)
	if err != nil || st.Read != 0 {
		t.Fatalf("second redrive: %+v, %v; want nothing read", st, err)
	}
	got := readTopic(t, k, input, 2)
	if len(got) != 2 {
		t.Fatalf("%d records on the input, want 2", len(got))
	}
	for _, r := range got {
		if len(r.Headers) != 1 || r.Headers[0].Key != "traceparent" {
			t.Errorf("redriven record headers %v: want the original ones without dlq.*", r.Headers)
		}
	}
}

// TestRedriveReadsTheWorkersReason: a producer that put its own dlq.reason
// on an input record cannot choose how the record is classified. Before
// DLQReason, the spoofed leading dlq.reason was read (issue 12, finding 7).
func TestRedriveReadsTheWorkersReason(t *testing.T) {
	k, dlq, input, group, cl := redriveTopics(t)
	h := hdr
	// As a worker of an earlier release wrote it: the input's headers,
	// then the worker's dlq.* block.
	spoofed := &kgo.Record{Topic: dlq, Key: []byte("u1"), Value: []byte("{"), Headers: []kgo.RecordHeader{
		h("dlq.reason", "late"), h("traceparent", "tp"),
		h("dlq.reason", "malformed"), h("dlq.error", "unexpected end of JSON input"), h("dlq.processor", "decode"),
		h("dlq.topic", input), h("dlq.partition", "0"), h("dlq.offset", "7"),
	}}
	// As the worker writes it now: the input's dlq.reason renamed.
	renamed := &kgo.Record{Topic: dlq, Key: []byte("u2"), Value: []byte("{"), Headers: []kgo.RecordHeader{
		h("original.dlq.reason", "late"), h("dlq.reason", "malformed"), h("dlq.offset", "8"),
	}}
	produce(t, cl, spoofed, renamed)
	if got := ops.DLQReason(spoofed); got != "malformed" {
		t.Fatalf("DLQReason = %q, want the worker's malformed", got)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(k.Seeds()...)}
	ctx := context.Background()
	st, err := ops.Redrive(ctx, opts, dlq, input, group+"-late", "late", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 2 || st.Redriven != 0 || st.Skipped != 2 {
		t.Fatalf("redrive --reason late: %+v, want both skipped", st)
	}
	st, err = ops.Redrive(ctx, opts, dlq, input, group+"-malformed", "malformed", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 2 || st.Redriven != 2 {
		t.Fatalf("redrive --reason malformed: %+v, want both redriven", st)
	}
}

// TestRedriveSkipsTruncatedCopies: a DLQ copy the worker had to cut to fit
// kafka.max_message_bytes (dlq.truncated) is not the original record; sent
// back to the input it is a different event: a prefix of the value, or, for
// a CloudEvents record whose data was cut away whole, the event without its
// data, which the worker applies. Redrive leaves such copies on the DLQ
// and counts them. Before, both records below were redriven.
func TestRedriveSkipsTruncatedCopies(t *testing.T) {
	k, dlq, input, group, cl := redriveTopics(t)
	h := hdr
	whole := &kgo.Record{Topic: dlq, Key: []byte("u1"), Value: []byte(`{"id":"e1"}`), Headers: []kgo.RecordHeader{
		h("dlq.reason", "late"), h("dlq.offset", "3"),
	}}
	// As the worker writes a CloudEvents record whose data did not fit:
	// every header kept, the value cut to nothing.
	cut := &kgo.Record{Topic: dlq, Key: []byte("u2"), Value: nil, Headers: []kgo.RecordHeader{
		h("ce_specversion", "1.0"), h("ce_id", "e2"), h("ce_type", "user.activity"),
		h("dlq.reason", "late"), h("dlq.offset", "4"), h("dlq.truncated", "2000000"),
	}}
	produce(t, cl, whole, cut)
	opts := []kgo.Opt{kgo.SeedBrokers(k.Seeds()...)}
	ctx := context.Background()
	st, err := ops.Redrive(ctx, opts, dlq, input, group, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 2 || st.Redriven != 1 || st.Truncated != 1 {
		t.Fatalf("redrive stats %+v, want 2 read, 1 redriven, 1 truncated", st)
	}
	ends, err := k.Admin(t).ListEndOffsets(ctx, input)
	if err != nil {
		t.Fatal(err)
	}
	if end, _ := ends.Lookup(input, 0); end.Offset != 1 {
		t.Fatalf("%d records on the input, want only the whole one", end.Offset)
	}
}

// TestRedriveKeepsTheRecordTimestamp: a redriven record has the input
// record's timestamp, from the worker's dlq.timestamp (the last one: an
// input's own is renamed), or, on a copy without it, the DLQ record's. An
// event without its own timestamp takes the record's as its event time;
// before, every redriven record was stamped with the time of the redrive,
// and a user's dead-lettered events, redriven together, landed in one
// second of event time.
func TestRedriveKeepsTheRecordTimestamp(t *testing.T) {
	k, dlq, input, group, cl := redriveTopics(t)
	h := hdr
	orig := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)
	deadLettered := orig.Add(time.Hour)
	produce(t, cl,
		&kgo.Record{Topic: dlq, Key: []byte("u1"), Value: []byte("{"), Timestamp: deadLettered, Headers: []kgo.RecordHeader{
			h("original.dlq.timestamp", "1"), h("dlq.reason", "malformed"), h("dlq.timestamp", fmt.Sprint(orig.UnixMilli())),
		}},
		&kgo.Record{Topic: dlq, Key: []byte("u2"), Value: []byte("{"), Timestamp: deadLettered, Headers: []kgo.RecordHeader{
			h("dlq.reason", "malformed"),
		}},
	)
	ctx := context.Background()
	if _, err := ops.Redrive(ctx, []kgo.Opt{kgo.SeedBrokers(k.Seeds()...)}, dlq, input, group, "", nil); err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	for _, r := range readTopic(t, k, input, 2) {
		got[string(r.Key)] = r.Timestamp
	}
	if !got["u1"].Equal(orig) || !got["u2"].Equal(deadLettered) {
		t.Fatalf("redriven timestamps u1 %v, u2 %v; want %v (dlq.timestamp) and %v (the copy's)", got["u1"], got["u2"], orig, deadLettered)
	}
}
