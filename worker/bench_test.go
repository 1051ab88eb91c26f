package worker_test

import (
	"context"
	dto "github.com/prometheus/client_model/go"
	"runtime"
	"testing"
	"time"

	"github.com/streamworker/streamworker/loadgen"
)

// BenchmarkPipeline measures the whole pipeline in this process: kfake,
// redis-server (a child process) and the worker share the machine. One op is
// one input record; it reports events/s and allocations per event.
func BenchmarkPipeline(b *testing.B) {
	events := max(b.N, 1000) // loadgen needs a few events per user
	e := newEnv(b, 6)
	e.produce(loadgen.Config{Users: min(10_000, events/10), Events: events, Duplicates: 0.05, OutOfOrder: 0.03, Seed: 1})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	r := e.start(e.options(nil))
	e.waitDrained(5 * time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	if testing.Verbose() {
		if info, err := e.redis.Client(b).Info(context.Background(), "commandstats", "cpu").Result(); err == nil {
			b.Log(info)
		}
	}

	runtime.ReadMemStats(&after)
	if err := r.stop(b); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	if n := histCount(r.reg, "streamworker_batch_duration_seconds"); n > 0 {
		b.ReportMetric(metric(r.reg, "streamworker_events_consumed_total")/n, "events/batch")
		b.ReportMetric(histSum(r.reg, "streamworker_batch_duration_seconds")/n*1000, "ms/batch")
		b.ReportMetric(histSum(r.reg, "streamworker_redis_duration_seconds")/histCount(r.reg, "streamworker_redis_duration_seconds")*1000, "ms/redis-call")
	}
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(events), "allocs/event")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(events), "B/event")
}

func histCount(reg interface {
	Gather() ([]*dto.MetricFamily, error)
}, name string) float64 {
	c, _ := hist(reg, name)
	return c
}

func histSum(reg interface {
	Gather() ([]*dto.MetricFamily, error)
}, name string) float64 {
	_, s := hist(reg, name)
	return s
}

func hist(reg interface {
	Gather() ([]*dto.MetricFamily, error)
}, name string) (count, sum float64) {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				count += float64(m.GetHistogram().GetSampleCount())
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return count, sum
}
