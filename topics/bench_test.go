package topics_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// benchJSON is a typical input: the README's example with short metadata.
const benchJSON = `{"id":"evt-8f14e45f","type":"user.activity","version":1,"source":"web",` +
	`"aggregateId":"u-42","sequence":17,"timestamp":"2026-11-22T10:00:00.123Z",` +
	`"data":{"userId":"u-42","action":"click","resource":"/home"},` +
	`"metadata":{"correlationId":"corr-8f14e45f"}}`

func BenchmarkDecodeJSON(b *testing.B) {
	r := &topics.Record{Key: []byte("u-42"), Value: []byte(benchJSON), Headers: []topics.Header{
		{Key: "traceparent", Value: []byte(traceParent)},
	}}
	var d topics.Decoder
	b.SetBytes(int64(len(r.Value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCloudEvents(b *testing.B) {
	r := ceRecord()
	var d topics.Decoder
	b.SetBytes(int64(len(r.Value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeInvalid(b *testing.B) {
	r := &topics.Record{Key: []byte("u-42"), Value: []byte(`{"id":"evt-1","type":"user.activity","sequence":0}`)}
	var d topics.Decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(r); err == nil {
			b.Fatal("no error")
		}
	}
}

func benchAggregated(resources int) *topics.AggregatedData {
	d := &topics.AggregatedData{
		UserID:          "u-42",
		TotalActivity:   1234,
		Actions:         map[string]int64{"click": 1000, "view": 200, "purchase": 34},
		Resources:       map[string]int64{},
		FirstActivityAt: "2026-11-22T09:00:00.000Z",
		LastActivityAt:  "2026-11-22T10:00:00.123Z",
		LastSequence:    1234,
	}
	for i := range resources {
		d.Resources["/page/"+strconv.Itoa(i)] = int64(i + 1)
	}
	return d
}

func BenchmarkAppendAggregated(b *testing.B) {
	for _, n := range []int{8, 100} {
		b.Run(strconv.Itoa(n)+"_resources", func(b *testing.B) {
			d := benchAggregated(n)
			m := topics.OutputMeta{ID: topics.AggregateID("u-42", "evt-8f14e45f"), AggregateID: "u-42",
				Time: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC), CorrelationID: "corr-8f14e45f", CausationID: "evt-8f14e45f"}
			buf := topics.AppendAggregated(nil, m, d)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = topics.AppendAggregated(buf[:0], m, d)
			}
		})
	}
}

func BenchmarkAppendAnomaly(b *testing.B) {
	m := topics.OutputMeta{ID: topics.AnomalyID("u-42", "evt-8f14e45f"), AggregateID: "u-42",
		Time: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC), CorrelationID: "corr-8f14e45f", CausationID: "evt-8f14e45f"}
	d := &topics.AnomalyData{UserID: "u-42", AnomalyType: "high-activity", CurrentRate: 12.4, AverageRate: 0.8333333333333334, WindowCount: 62, Severity: "critical"}
	buf := topics.AppendAnomaly(nil, m, d)
	b.ReportAllocs()
	for b.Loop() {
		buf = topics.AppendAnomaly(buf[:0], m, d)
	}
}
