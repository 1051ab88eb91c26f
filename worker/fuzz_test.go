package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
)

// FuzzRecord sends each input as one record (key, value, traceparent
// header) through the whole per-record path of a running worker: decode,
// sequence, process, encode and produce the outputs, persist to a
// MemoryStore. Whatever the bytes, the record is done within seconds, the
// code never panics (a recovered panic counts as a failure here), no output
// exceeds the record size bound, and no partition is left retrying.
// `make fuzz` runs it for a while; its seeds run in `make test`.
func FuzzRecord(f *testing.F) {
	for _, s := range []struct{ key, value, tp string }{
		{"u-1", `{"id":"e1","type":"user.activity","aggregateId":"u-1","sequence":1,"timestamp":"2026-11-22T10:00:00.000Z","data":{"action":"click","resource":"/r"}}`, ""},
		{"u-1", `{"id":"e3","type":"user.activity","sequence":3,"data":{"action":"a"}}`, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"a", `{"id":"b}:seen:c","type":"user.activity","aggregateId":"a"}`, ""},
		{"a}:seen:b", `{"id":"c","type":"user.activity"}`, ""},
		{"v", `{"id":"x}:state","type":"user.activity","aggregateId":"v"}`, ""},
		{"~%7D", `{"id":"~","type":"user.activity","sequence":9007199254740991}`, ""},
		{"q", `{"id":"big","type":"user.activity","sequence":9223372036854775807}`, ""},
		{"", `{"id":"k","type":"other","sequence":2}`, "00-zz"},
		{"u", `{"id":"x","type":"user.activity","version":1,"data":{"action":"\u0000"},"metadata":{"correlationId":"c"}}`, ""},
		{"u", `[]`, ""},
	} {
		f.Add([]byte(s.key), []byte(s.value), []byte(s.tp))
	}
	e := newMemEnv(f, 1)
	opts := e.options(nil)
	opts.Sequencing.GapTimeout = 100 * time.Millisecond // held records do not pile up
	r := e.start(opts)
	cl := e.kafka.Client(f)
	f.Fuzz(func(t *testing.T, key, value, traceparent []byte) {
		rec := &kgo.Record{Topic: e.names.Input, Key: key, Value: value}
		if len(traceparent) > 0 {
			rec.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: traceparent}}
		}
		before := metric(r.reg, "streamworker_events_consumed_total")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Skipf("the broker refused the record: %v", err)
		}
		testenv.Eventually(t, 20*time.Second, func() bool { return metric(r.reg, "streamworker_events_consumed_total") > before },
			"the record was never done")
		if n := metric(r.reg, "streamworker_internal_errors_total"); n > 0 {
			t.Fatalf("%v panics recovered", n)
		}
		if n := metric(r.reg, "streamworker_dlq_total", "reason", "output_too_large"); n > 0 {
			t.Fatalf("an output over the record size bound")
		}
		if n := metric(r.reg, "streamworker_partition_stuck_seconds"); n > 0 {
			t.Fatalf("a partition is retrying")
		}
	})
}
