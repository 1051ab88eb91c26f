package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/topics"
)

// inputTime is what the bench knows of one produced input event.
type inputTime struct {
	ms   int64 // produce timestamp, Unix milliseconds (as Kafka stores it)
	user string
	seq  int64
}

// produceTimes is a kgo hook that records the produce timestamp of the first
// acknowledged record of every event ID. It is safe for concurrent use.
type produceTimes struct {
	mu   sync.Mutex
	dec  topics.Decoder
	byID map[string]inputTime
	hs   []topics.Header
}

var _ kgo.HookProduceRecordUnbuffered = (*produceTimes)(nil)

// OnProduceRecordUnbuffered implements kgo.HookProduceRecordUnbuffered.
func (p *produceTimes) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hs = p.hs[:0]
	for _, h := range r.Headers {
		p.hs = append(p.hs, topics.Header{Key: h.Key, Value: h.Value})
	}
	ev, derr := p.dec.Decode(&topics.Record{Key: r.Key, Value: r.Value, Headers: p.hs, Timestamp: r.Timestamp})
	if derr != nil {
		return // malformed: it causes no aggregate
	}
	ms := r.Timestamp.UnixMilli()
	if old, ok := p.byID[ev.ID]; ok && old.ms <= ms {
		return // a duplicate: the first delivery is the one applied
	}
	p.byID[ev.ID] = inputTime{ms: ms, user: ev.AggregateID, seq: ev.Sequence}
}

// readyTimes returns, for every event ID, the time its aggregate could first
// have been output: the latest produce time of it and of every event of the
// same user with a lower sequence (the worker holds an event back until its
// predecessors arrive). An unsequenced event is ready when produced.
func (p *produceTimes) readyTimes() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	type ev struct {
		id  string
		seq int64
		ms  int64
	}
	byUser := map[string][]ev{}
	ready := make(map[string]int64, len(p.byID))
	for id, in := range p.byID {
		if in.seq == 0 {
			ready[id] = in.ms
			continue
		}
		byUser[in.user] = append(byUser[in.user], ev{id, in.seq, in.ms})
	}
	for _, evs := range byUser {
		slices.SortFunc(evs, func(a, b ev) int { return compare(a.seq, b.seq) })
		latest := int64(math.MinInt64)
		for _, e := range evs {
			latest = max(latest, e.ms)
			ready[e.id] = latest
		}
	}
	return ready
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// percentiles are exact order statistics of a sample, in milliseconds.
type percentiles struct {
	n                   int
	p50, p99, p999, max float64
}

// exactPercentiles returns the nearest-rank percentiles of samples; it sorts
// samples.
func exactPercentiles(samples []float64) percentiles {
	if len(samples) == 0 {
		nan := math.NaN()
		return percentiles{p50: nan, p99: nan, p999: nan, max: nan}
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(samples)))) - 1
		return samples[min(max(i, 0), len(samples)-1)]
	}
	return percentiles{n: len(samples), p50: at(0.50), p99: at(0.99), p999: at(0.999), max: samples[len(samples)-1]}
}

// latencyResult is one end-to-end latency measurement.
type latencyResult struct {
	offered     float64     // acknowledged input records per second
	fromProduce percentiles // output timestamp − its cause's produce timestamp
	fromReady   percentiles // output timestamp − the cause's ready time
	missing     int         // outputs whose cause the bench did not produce
	histP50     float64     // the worker's end_to_end_latency_seconds histogram, ms
	histP99     float64
	workerCores float64 // worker CPU at the offered rate
	redisCores  float64
	otherCores  float64 // the rest of the machine but the bench process
}

// latency offers the workload at a fixed rate to a running worker and
// measures, for every output on the aggregates topic, the time from its
// cause's produce to the output's produce.
func (b *bencher) latency(ctx context.Context) (latencyResult, error) {
	c, err := newCluster(ctx, b.cfg.Partitions)
	if err != nil {
		return latencyResult{}, err
	}
	defer c.close()
	if err := b.redis.flush(ctx); err != nil {
		return latencyResult{}, err
	}
	group := b.group("latency")
	w, err := startWorker(b.workerEnv(c, group))
	if err != nil {
		return latencyResult{}, err
	}
	defer w.stop(stopTimeout)
	if err := w.waitAssigned(ctx, b.cfg.Partitions, time.Minute); err != nil {
		return latencyResult{}, err
	}
	profiled := b.profileWorker(ctx, w, group)

	times := &produceTimes{byID: map[string]inputTime{}}
	// No linger: the input's produce timestamp is taken when the record
	// is handed to the client, and producer-side batching is not the
	// worker's latency.
	pcl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds...), kgo.ProducerLinger(0), kgo.WithHooks(times))
	if err != nil {
		return latencyResult{}, err
	}
	defer pcl.Close()
	wl := workload(b.cfg.Users, int(b.cfg.LatencyRate*b.cfg.LatencyFor.Seconds()))
	wl.Rate = b.cfg.LatencyRate
	wl.Topic = c.names.Input
	g, err := loadgen.New(wl)
	if err != nil {
		return latencyResult{}, err
	}
	meter := startCPU(map[string]int{"worker": w.pid(), "redis-server": b.redis.pid(), "bench (kfake + producer)": os.Getpid()})
	stats, err := loadgen.Produce(ctx, pcl, g, b.cfg.LatencyRate, nil)
	if err != nil {
		return latencyResult{}, err
	}
	cpu := meter.stop()
	ends, err := c.endOffsets(ctx, c.names.Input)
	if err != nil {
		return latencyResult{}, err
	}
	if _, err := c.waitDrained(ctx, group, ends, 2*time.Minute, nil); err != nil {
		return latencyResult{}, w.failed(err)
	}
	mfs, err := w.scrape(ctx)
	if err != nil {
		return latencyResult{}, err
	}
	if err := profiled(); err != nil {
		return latencyResult{}, err
	}
	if err := w.stop(stopTimeout); err != nil {
		return latencyResult{}, w.failed(fmt.Errorf("bench: worker did not drain cleanly: %w", err))
	}
	outs, err := c.readOutputs(ctx, c.names.Aggregates)
	if err != nil {
		return latencyResult{}, err
	}

	r := latencyResult{
		offered:     stats.Rate(),
		histP50:     mfs.histogramQuantile("streamworker_end_to_end_latency_seconds", 0.50) * 1000,
		histP99:     mfs.histogramQuantile("streamworker_end_to_end_latency_seconds", 0.99) * 1000,
		workerCores: cpu.Cores["worker"],
		redisCores:  cpu.Cores["redis-server"],
		otherCores:  cpu.Cores["other"],
	}
	ready := times.readyTimes()
	fromProduce := make([]float64, 0, len(outs))
	fromReady := make([]float64, 0, len(outs))
	for _, o := range outs {
		in, ok := times.byID[o.cause]
		if !ok {
			r.missing++
			continue
		}
		fromProduce = append(fromProduce, float64(o.ms-in.ms))
		fromReady = append(fromReady, float64(o.ms-ready[o.cause]))
	}
	r.fromProduce = exactPercentiles(fromProduce)
	r.fromReady = exactPercentiles(fromReady)
	if r.fromProduce.n == 0 {
		return r, fmt.Errorf("bench: no output on %s names a produced input", c.names.Aggregates)
	}
	return r, nil
}

// output is an output record's timestamp and cause.
type output struct {
	ms    int64
	cause string
}

// readOutputs reads every record of topic up to its current end.
func (c *cluster) readOutputs(ctx context.Context, topic string) ([]output, error) {
	ends, err := c.endOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := total(ends)
	parts := map[int32]kgo.Offset{}
	for p := range ends {
		parts[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	outs := make([]output, 0, want)
	var n int64
	for n < want {
		fs := cl.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			return nil, fmt.Errorf("bench: read %s: %d of %d records: %w", topic, n, want, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("bench: read %s/%d: %w", t, p, err) })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var o topics.Output
			if json.Unmarshal(r.Value, &o) != nil {
				return
			}
			outs = append(outs, output{ms: r.Timestamp.UnixMilli(), cause: o.Metadata.CausationID})
		})
	}
	return outs, nil
}
