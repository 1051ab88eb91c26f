package state

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/internal/testenv"
)

const benchAggs = 1000

// benchData is an aggregate state of a typical size.
var benchData = bytes.Repeat([]byte(`{"totalActivity":17,"actions":{"click":9}}`), 5)

func benchStore(b *testing.B) *RedisStore {
	srv := testenv.Redis(b)
	s := NewRedisStore(srv.Client(b), dedupe.Keys{Prefix: srv.Prefix()}, time.Hour)
	if err := s.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

func reportPerAggregate(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchAggs), "ns/agg")
}

// scriptUsec returns the microseconds Redis has spent in EVALSHA (INFO
// commandstats), or -1 when it cannot tell (a Cluster spreads the calls).
func scriptUsec(b *testing.B, s *RedisStore) float64 {
	if s.cluster {
		return -1
	}
	info, err := s.client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if stats, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:"); ok {
			for field := range strings.SplitSeq(stats, ",") {
				if v, ok := strings.CutPrefix(field, "usec="); ok {
					n, err := strconv.ParseFloat(v, 64)
					if err != nil {
						b.Fatal(err)
					}
					return n
				}
			}
		}
	}
	return 0
}

// BenchmarkCommit1000Aggregates commits one batch: 1000 aggregates, each a
// new state of about 200 bytes and the marks of 2 events, in one pipeline.
// It also reports the time Redis spent running the script per mark.
func BenchmarkCommit1000Aggregates(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	usec := scriptUsec(b, s)
	writes := make([]Write, benchAggs)
	for i := range writes {
		writes[i] = Write{Aggregate: "u-" + strconv.Itoa(i), Data: benchData, Marks: make([]string, 2)}
	}
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		for i := range writes {
			writes[i].Expect = int64(n)
			writes[i].Marks[0] = "evt-" + strconv.Itoa(n) + "-a"
			writes[i].Marks[1] = "evt-" + strconv.Itoa(n) + "-b"
		}
		b.StartTimer()
		out, err := s.Commit(ctx, writes)
		if err != nil {
			b.Fatal(err)
		}
		if out[benchAggs-1] != Committed {
			b.Fatalf("outcome %v", out[benchAggs-1])
		}
	}
	reportPerAggregate(b)
	if usec >= 0 {
		b.ReportMetric((scriptUsec(b, s)-usec)*1000/float64(b.N*benchAggs*2), "redis-ns/mark")
	}
}

// BenchmarkFetch1000 loads one batch: 1000 stored aggregates and one mark
// per aggregate, in one pipeline.
func BenchmarkFetch1000(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	aggs := make([]string, benchAggs)
	marks := make([]Mark, benchAggs)
	writes := make([]Write, benchAggs)
	for i := range aggs {
		aggs[i] = "u-" + strconv.Itoa(i)
		marks[i] = Mark{aggs[i], "evt-" + strconv.Itoa(i)}
		writes[i] = Write{Aggregate: aggs[i], Data: benchData, Marks: []string{marks[i].EventID}}
	}
	if _, err := s.Commit(ctx, writes); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		snaps, exists, err := s.Fetch(ctx, aggs, marks)
		if err != nil {
			b.Fatal(err)
		}
		if snaps[0].Version != 1 || !exists[0] {
			b.Fatalf("fetched %+v %v", snaps[0], exists[0])
		}
	}
	reportPerAggregate(b)
}
