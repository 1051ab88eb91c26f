package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/topics"
)

// Workload fractions of every measurement (inputs of docs/contract.md with the
// defects a production stream has).
const (
	duplicates = 0.05
	outOfOrder = 0.03
	malformed  = 0.005
	seed       = 1
	// pollRecords is the records taken per poll, the worker's default
	// kafka.max_poll_records, so the ceiling copy works in the same batches.
	pollRecords = 10000
	// drainTimeout bounds one throughput measurement.
	drainTimeout = 10 * time.Minute
	// stopTimeout bounds a worker's drain after SIGTERM.
	stopTimeout = 30 * time.Second
)

// workload is the loadgen configuration of users and events.
func workload(users, events int) loadgen.Config {
	return loadgen.Config{
		Users:      users,
		Events:     events,
		Duplicates: duplicates,
		OutOfOrder: outOfOrder,
		Malformed:  malformed,
		Seed:       seed,
	}
}

// drainResult is one throughput measurement: a consumer group reading a
// pre-produced input from the start until its committed offsets reach the
// log end.
type drainResult struct {
	events  int64         // input records
	elapsed time.Duration // start of the consumer to the drain
	// firstConsumed is the time from start to the first consumed record,
	// as seen on the worker's metrics (0 when unknown).
	firstConsumed time.Duration
	cpu           cpuUse
	peakRSS       int64         // worker VmHWM, bytes (0 in this process)
	produce       produceCounts // produce requests the broker received
	// From the worker's /metrics (zero for the measurements in this
	// process).
	redisTrips    float64 // round trips but pings
	workerBatches float64 // partition batches processed
	kpromBatches  float64 // streamworker_kafka_produce_batches_total
	kpromHas      bool    // whether that family was exported
	// outputs are the output records: those acknowledged, from the
	// worker's metrics, or, for the measurements in this process, those on
	// the aggregates topic at the drain.
	outputs float64
	// redis is what the bench's redis-server did over the measurement,
	// from its own INFO.
	redis redisUse
}

// rate returns events per second over the whole measurement.
func (r drainResult) rate() float64 { return float64(r.events) / r.elapsed.Seconds() }

// steadyRate returns events per second after the first consumed record.
func (r drainResult) steadyRate() float64 {
	if r.firstConsumed <= 0 || r.firstConsumed >= r.elapsed {
		return r.rate()
	}
	return float64(r.events) / (r.elapsed - r.firstConsumed).Seconds()
}

// perCPUSecond returns input events per CPU-second of the named processes.
func (r drainResult) perCPUSecond(names ...string) float64 {
	var cores float64
	for _, n := range names {
		cores += r.cpu.Cores[n]
	}
	return float64(r.events) / (cores * r.cpu.Wall.Seconds())
}

// cpuPerEvent returns the CPU time the named process used per input event,
// in microseconds.
func (r drainResult) cpuPerEvent(name string) float64 {
	return r.cpu.Cores[name] * r.cpu.Wall.Seconds() * 1e6 / float64(r.events)
}

// redisPerEvent returns the CPU time redis-server reported (INFO cpu) per
// input event, in microseconds.
func (r drainResult) redisPerEvent() float64 {
	return float64(r.redis.cpu.Microseconds()) / float64(r.events)
}

// callsPerEvent returns, by command, redis-server's calls per input event.
func (r drainResult) callsPerEvent() map[string]float64 {
	m := make(map[string]float64, len(r.redis.calls))
	for cmd, n := range r.redis.calls {
		m[cmd] = float64(n) / float64(r.events)
	}
	return m
}

// perThousand returns n per 1000 input events.
func (r drainResult) perThousand(n float64) float64 { return n * 1000 / float64(r.events) }

// ceiling measures a plain franz-go consume→produce copy of the
// pre-produced workload in this process: a consumer group, one output
// record per input record, acknowledgements awaited and offsets committed
// at each poll.
func (b *bencher) ceiling(ctx context.Context, users, events int) (drainResult, error) {
	return b.inBench(ctx, users, events, "ceiling", ceilingProc, func(ctx context.Context, c *cluster, group string) error {
		return pollLoop(ctx, c.seeds, group, c.names.Input, func(recs []*kgo.Record, fs kgo.Fetches) ([]*kgo.Record, error) {
			fs.EachRecord(func(r *kgo.Record) { recs = append(recs, forward(r, c.names.Aggregates)) })
			return recs, nil
		})
	})
}

// The names of the bench process in the CPU figures of the in-process
// measurements.
const (
	ceilingProc   = "bench (kfake + copy)"
	referenceProc = "bench (kfake + reference)"
)

// reference measures the reference system of the pipeline's Redis and CPU
// use, in this process: franz-go with one pipelined SET key 1 NX EX per
// event (dedupe + forward). A consumer group polls the pre-produced workload
// like the ceiling; for every record the product's decoder yields the event
// ID and aggregate, which name the dedupe mark the worker would check
// (dedupe.Keys, the default prefix); the SETs of one poll go to the bench's
// redis-server in one go-redis pipeline; the records whose SET succeeded
// are forwarded to the aggregates topic with ProduceSync, and offsets are
// committed at each poll. The server is flushed first, as for the pipeline.
func (b *bencher) reference(ctx context.Context, users, events int) (drainResult, error) {
	if err := b.redis.flush(ctx); err != nil {
		return drainResult{}, err
	}
	rdb := b.redis.client
	return b.inBench(ctx, users, events, "reference", referenceProc, func(ctx context.Context, c *cluster, group string) error {
		return dedupeLoop(ctx, c.seeds, group, c.names, rdb)
	})
}

// inBench measures loop, a consumer group of this process that reads the
// pre-produced workload of users and events: from its start until the
// group's committed offsets reach the log end. loop runs until its context
// ends. proc names the bench process in the CPU figures; the records on the
// aggregates topic at the drain are the result's outputs.
func (b *bencher) inBench(ctx context.Context, users, events int, kind, proc string, loop func(context.Context, *cluster, string) error) (drainResult, error) {
	c, err := newCluster(ctx, b.cfg.Partitions)
	if err != nil {
		return drainResult{}, err
	}
	defer c.close()
	ends, err := c.preProduce(ctx, workload(users, events))
	if err != nil {
		return drainResult{}, err
	}
	group := b.group(kind)
	c.startCounting()
	redisBefore, err := b.redis.usage(ctx)
	if err != nil {
		return drainResult{}, err
	}
	meter := startCPU(map[string]int{proc: os.Getpid(), "redis-server": b.redis.pid()})
	start := time.Now()
	lctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- loop(lctx, c, group) }()
	end, err := c.waitDrained(ctx, group, ends, drainTimeout, func() error {
		select {
		case err := <-errc:
			return fmt.Errorf("bench: %s loop stopped: %w", kind, err)
		default:
			return nil
		}
	})
	cancel()
	cpu := meter.stop()
	loopErr := <-errc
	if err != nil {
		return drainResult{}, errors.Join(err, loopErr)
	}
	r := drainResult{events: total(ends), elapsed: end.Sub(start), cpu: cpu, produce: c.stopCounting()}
	if r.redis, err = b.redisSince(ctx, redisBefore); err != nil {
		return drainResult{}, err
	}
	out, err := c.endOffsets(ctx, c.names.Aggregates)
	if err != nil {
		return drainResult{}, err
	}
	r.outputs = float64(total(out))
	return r, nil
}

// redisSince returns what the bench's redis-server did since before.
func (b *bencher) redisSince(ctx context.Context, before redisUse) (redisUse, error) {
	after, err := b.redis.usage(ctx)
	if err != nil {
		return redisUse{}, err
	}
	return after.since(before), nil
}

// forward returns a copy of r for topic out.
func forward(r *kgo.Record, out string) *kgo.Record {
	return &kgo.Record{Topic: out, Key: r.Key, Value: r.Value, Headers: r.Headers}
}

// pollLoop polls up to pollRecords records of topic in at a time as
// consumer group, until ctx ends; handle appends to recs the records to
// produce for each poll, and pollLoop produces them with ProduceSync, then
// commits the poll's offsets.
func pollLoop(ctx context.Context, seeds []string, group, in string, handle func(recs []*kgo.Record, fs kgo.Fetches) ([]*kgo.Record, error)) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(in),
		kgo.DisableAutoCommit(),
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(1<<20),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []*kgo.Record
	// ended tells an error caused by the end of ctx, the loop's normal
	// stop, from a failure.
	ended := func(err error) error {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for {
		fs := cl.PollRecords(ctx, pollRecords)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			fetchErr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
		})
		if fetchErr != nil {
			return fetchErr
		}
		if recs, err = handle(recs[:0], fs); err != nil {
			return ended(err)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return ended(err)
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return ended(err)
		}
	}
}

// dedupeLoop is the reference system's loop (see reference): it forwards to
// the aggregates topic every record of the input whose dedupe mark a
// pipelined SET NX EX could create, until ctx ends. A malformed record
// (rejected by the decoder) sets no mark and is forwarded to the dead-letter
// topic, as the worker does, so it costs a produce and no Redis command.
func dedupeLoop(ctx context.Context, seeds []string, group string, names topics.Names, rdb *redis.Client) error {
	var (
		dec     topics.Decoder
		keys    = dedupe.Keys{Prefix: dedupe.DefaultPrefix}
		ttl     = config.Default().Dedupe.TTL
		hs      []topics.Header
		key     []byte
		pending []*redis.BoolCmd // per record of the poll; nil for a malformed one
		polled  []*kgo.Record
	)
	pipe := rdb.Pipeline()
	return pollLoop(ctx, seeds, group, names.Input, func(recs []*kgo.Record, fs kgo.Fetches) ([]*kgo.Record, error) {
		pending, polled = pending[:0], polled[:0]
		fs.EachRecord(func(r *kgo.Record) {
			hs = hs[:0]
			for _, h := range r.Headers {
				hs = append(hs, topics.Header(h))
			}
			polled = append(polled, r)
			ev, err := dec.Decode(&topics.Record{Key: r.Key, Value: r.Value, Headers: hs, Timestamp: r.Timestamp})
			if err != nil {
				pending = append(pending, nil)
				return
			}
			key = keys.AppendSeen(key[:0], ev.AggregateID, ev.ID)
			pending = append(pending, pipe.SetNX(ctx, string(key), 1, ttl))
		})
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return recs, fmt.Errorf("SET NX pipeline: %w", err)
			}
		}
		for i, r := range polled {
			switch set := pending[i]; {
			case set == nil:
				recs = append(recs, forward(r, names.DLQ))
			case set.Val():
				recs = append(recs, forward(r, names.Aggregates))
			}
		}
		return recs, nil
	})
}

// pipelineAcked is the pipeline over the main workload with
// redis.min_replicas_acked = 1: every commit ends with WAIT 1. It runs on a
// master and a replica of its own, both started for it: a master that once
// had a replica keeps feeding its replication backlog for an hour, which
// would slow every later measurement on the bench's own Redis.
func (b *bencher) pipelineAcked(ctx context.Context) (drainResult, error) {
	master, err := startRedis(ctx, b.dir)
	if err != nil {
		return drainResult{}, err
	}
	defer master.stop()
	replica, err := master.startReplica(ctx, b.dir)
	if err != nil {
		return drainResult{}, err
	}
	defer replica.stop()
	own := b.redis
	b.redis = master
	defer func() { b.redis = own }()
	return b.pipeline(ctx, b.cfg.Users, b.cfg.Events, "SW_REDIS_MIN_REPLICAS_ACKED=1")
}

// pipeline measures the worker as a child process over the pre-produced
// workload of users and events: from its start to the group's committed
// offsets reaching the log end. env are more KEY=VALUE entries of the
// worker's environment.
func (b *bencher) pipeline(ctx context.Context, users, events int, env ...string) (drainResult, error) {
	c, err := newCluster(ctx, b.cfg.Partitions)
	if err != nil {
		return drainResult{}, err
	}
	defer c.close()
	if err := b.redis.flush(ctx); err != nil {
		return drainResult{}, err
	}
	ends, err := c.preProduce(ctx, workload(users, events))
	if err != nil {
		return drainResult{}, err
	}
	group := b.group("pipeline")
	c.startCounting()
	redisBefore, err := b.redis.usage(ctx)
	if err != nil {
		return drainResult{}, err
	}
	start := time.Now()
	we := b.workerEnv(c, group)
	we.extra = append(slices.Clip(we.extra), env...)
	w, err := startWorker(we)
	if err != nil {
		return drainResult{}, err
	}
	defer w.stop(stopTimeout)
	cpuProfile := b.profileWorker(ctx, w, group)
	meter := startCPU(map[string]int{"worker": w.pid(), "redis-server": b.redis.pid(), "bench (kfake)": os.Getpid()})
	var first time.Duration
	end, err := c.waitDrained(ctx, group, ends, drainTimeout, func() error {
		if w.exited() {
			return w.failed(fmt.Errorf("bench: worker exited: %v", w.err))
		}
		if first == 0 {
			if mfs, err := w.scrape(ctx); err == nil && mfs.value("streamworker_events_consumed_total", nil) > 0 {
				first = time.Since(start)
			}
		}
		return nil
	})
	if err != nil {
		return drainResult{}, w.failed(err)
	}
	cpu := meter.stop()
	r := drainResult{events: total(ends), elapsed: end.Sub(start), firstConsumed: first, cpu: cpu}
	if r.redis, err = b.redisSince(ctx, redisBefore); err != nil {
		return drainResult{}, err
	}
	if r.peakRSS, err = peakRSS(w.pid()); err != nil {
		return drainResult{}, err
	}
	mfs, err := w.scrape(ctx)
	if err != nil {
		return drainResult{}, err
	}
	r.produce = c.stopCounting()
	r.redisTrips = mfs.value("streamworker_redis_duration_seconds", map[string]string{"op": "!ping"})
	r.workerBatches = mfs.value("streamworker_batch_duration_seconds", nil)
	r.outputs = mfs.value("streamworker_outputs_total", nil)
	r.kpromBatches, r.kpromHas = mfs.sum("streamworker_kafka_produce_batches_total", nil)
	if err := cpuProfile(); err != nil {
		return drainResult{}, err
	}
	if err := w.stop(stopTimeout); err != nil {
		return drainResult{}, w.failed(fmt.Errorf("bench: worker did not drain cleanly: %w", err))
	}
	return r, nil
}

// profileWorker starts a CPU profile of w when worker profiles are asked
// for; the returned function waits for it and saves the heap profiles.
func (b *bencher) profileWorker(ctx context.Context, w *workerProc, group string) func() error {
	dir := b.cfg.WorkerProfiles
	if dir == "" {
		return func() error { return nil }
	}
	path := func(kind string) string { return filepath.Join(dir, group+"."+kind+".pprof") }
	secs := max(int(b.cfg.ProfileFor.Seconds()), 1)
	done := make(chan error, 1)
	go func() {
		// The worker's HTTP server starts after it connects; retry
		// until it answers.
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := w.saveProfile(ctx, "profile", "seconds="+strconv.Itoa(secs), path("cpu"))
			if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
				done <- err
				return
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}()
	return func() error {
		if err := <-done; err != nil {
			return err
		}
		if err := w.saveProfile(ctx, "heap", "", path("heap")); err != nil {
			return err
		}
		return w.saveProfile(ctx, "allocs", "", path("allocs"))
	}
}
