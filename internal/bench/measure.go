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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/loadgen"
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
	pollRecords = 5000
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
	peakRSS       int64         // worker VmHWM, bytes (0 for the ceiling)
	produce       produceCounts // produce requests the broker received
	// From the worker's /metrics (zero for the ceiling).
	redisTrips    float64 // round trips but pings
	workerBatches float64 // partition batches processed
	outputs       float64 // output records acknowledged
	kpromBatches  float64 // streamworker_kafka_produce_batches_total
	kpromHas      bool    // whether that family was exported
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

// perThousand returns n per 1000 input events.
func (r drainResult) perThousand(n float64) float64 { return n * 1000 / float64(r.events) }

// ceiling measures a plain franz-go consume→produce copy of the
// pre-produced workload in this process: a consumer group, one output
// record per input record, acknowledgements awaited and offsets committed
// at each poll.
func (b *bencher) ceiling(ctx context.Context, users, events int) (drainResult, error) {
	c, err := newCluster(ctx, b.cfg.Partitions)
	if err != nil {
		return drainResult{}, err
	}
	defer c.close()
	ends, err := c.preProduce(ctx, workload(users, events))
	if err != nil {
		return drainResult{}, err
	}
	group := b.group("ceiling")
	c.startCounting()
	meter := startCPU(map[string]int{"bench (kfake + copy)": os.Getpid()})
	start := time.Now()
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- copyLoop(cctx, c.seeds, group, c.names.Input, c.names.Aggregates) }()
	end, err := c.waitDrained(ctx, group, ends, drainTimeout, func() error {
		select {
		case err := <-errc:
			return fmt.Errorf("bench: copy stopped: %w", err)
		default:
			return nil
		}
	})
	cancel()
	cpu := meter.stop()
	copyErr := <-errc
	if err != nil {
		return drainResult{}, errors.Join(err, copyErr)
	}
	return drainResult{
		events:  total(ends),
		elapsed: end.Sub(start),
		cpu:     cpu,
		produce: c.stopCounting(),
	}, nil
}

// copyLoop copies every record of in to out until ctx ends.
func copyLoop(ctx context.Context, seeds []string, group, in, out string) error {
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
		recs = recs[:0]
		fs.EachRecord(func(r *kgo.Record) {
			recs = append(recs, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value, Headers: r.Headers})
		})
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// pipeline measures the worker as a child process over the pre-produced
// workload of users and events: from its start to the group's committed
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

// offsets reaching the log end.
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
