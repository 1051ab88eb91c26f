package topics_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// benchView is a user with 3 actions and the given number of resources, as
// a state holds it.
func benchView(resources int) *topics.AggregatedView {
	v := &topics.AggregatedView{
		UserID:              "u-42",
		TotalActivity:       1234,
		Actions:             []topics.Count{{Key: "click", N: 1000}, {Key: "purchase", N: 34}, {Key: "view", N: 200}},
		FirstActivityMillis: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC).UnixMilli(),
		LastActivityMillis:  time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC).UnixMilli(),
		LastSequence:        1234,
	}
	for i := range resources {
		v.Resources = append(v.Resources, topics.Count{Key: "/page/" + strconv.Itoa(i), N: int64(i + 1)})
	}
	return v
}

// BenchmarkAppendAggregatedView encodes into a reused buffer ("reused") and
// into a new one each time ("nil").
func BenchmarkAppendAggregatedView(b *testing.B) {
	m := topics.OutputMeta{ID: topics.AggregateID("u-42", "evt-8f14e45f"), AggregateID: "u-42",
		Time: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC), CorrelationID: "corr-8f14e45f", CausationID: "evt-8f14e45f"}
	for _, n := range []int{8, 100} {
		v := benchView(n)
		buf := topics.AppendAggregatedView(nil, m, v)
		b.Run(strconv.Itoa(n)+"_resources/reused", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = topics.AppendAggregatedView(buf[:0], m, v)
			}
		})
		b.Run(strconv.Itoa(n)+"_resources/nil", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = topics.AppendAggregatedView(nil, m, v)
			}
		})
	}
}

// BenchmarkFormatTime formats an output time.
func BenchmarkFormatTime(b *testing.B) {
	t := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = topics.AppendTime(buf[:0], t)
	}
}
