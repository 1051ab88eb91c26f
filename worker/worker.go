// Package worker is streamworker's runtime: a franz-go consumer group that
// runs one goroutine per assigned partition and, for every batch, decodes,
// dedupes, sequences and processes the events, produces the outputs, persists
// state and dedupe marks atomically in Redis, and only then lets the
// partition's commit point move (DESIGN §4).
//
// Ownership and commits. Rebalances are blocked while a poll's records are
// handed to the partition goroutines (kgo.BlockRebalanceOnPoll), so records
// fetched under one assignment never reach a goroutine of a later one. The
// handoff never blocks: a partition with batches queued is paused instead.
// Offsets are committed by the worker itself, never by the client: every
// CommitInterval, and synchronously when a partition is revoked (after its
// goroutine has finished the batch in hand) and on shutdown. A revoked or
// lost partition leaves the commit map before the callback returns, so no
// offset of a partition this member no longer owns is ever committed.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kprom"
	"golang.org/x/sync/errgroup"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
)

// Worker is one member of the streamworker consumer group. Create it with
// New and run it with Run; its methods are safe for concurrent use.
type Worker struct {
	opts  Options
	log   *slog.Logger
	m     *metrics
	cl    *kgo.Client
	adm   *kadm.Client
	store state.Store
	keys  dedupe.Keys

	// abort is cancelled when a drain overruns ShutdownTimeout: partition
	// goroutines then give up the batch in hand without committing it.
	abort       context.Context
	abortCancel context.CancelFunc

	mu    sync.Mutex
	parts map[int32]*partition // assigned input partitions

	commitMu sync.Mutex // serializes offset commits with revokes

	owned    atomic.Int32 // len(parts), for readers without mu
	redisOK  atomic.Bool
	faulting atomic.Int32 // partitions currently retrying a failed Redis or Kafka call
	closed   atomic.Bool
}

// New validates opts and creates a Worker with its Kafka client. It does not
// connect: the client dials lazily when Run starts.
func New(opts Options) (*Worker, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if _, err := processors.New(opts.Processors); err != nil {
		return nil, fmt.Errorf("worker: processors: %w", err)
	}
	w := &Worker{
		opts:  opts,
		log:   opts.Logger,
		m:     newMetrics(opts.Registerer),
		parts: make(map[int32]*partition),
		keys:  dedupe.Keys{Prefix: opts.KeyPrefix},
	}
	w.abort, w.abortCancel = context.WithCancel(context.Background())
	w.store = state.NewRedisStore(opts.Redis, w.keys, opts.DedupeTTL, state.WithObserver(w.m))

	start := kgo.NewOffset().AtStart()
	if opts.StartAtEnd {
		start = kgo.NewOffset().AtEnd()
	}
	kopts := append([]kgo.Opt{}, opts.Kafka...)
	kopts = append(kopts,
		kgo.ConsumerGroup(opts.Group),
		kgo.ConsumeTopics(opts.Topics.Input),
		kgo.ConsumeResetOffset(start),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(opts.SessionTimeout),
		kgo.RebalanceTimeout(opts.RebalanceTimeout),
		kgo.OnPartitionsAssigned(w.onAssigned),
		kgo.OnPartitionsRevoked(w.onRevoked),
		kgo.OnPartitionsLost(w.onLost),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		// A short wait for a few KiB: at low rates a fetch gathers a few
		// milliseconds of records (fewer, larger batches cost less CPU per
		// event), and a fetch for partitions with nothing new does not hold
		// back partitions resumed meanwhile for the 5s default.
		kgo.FetchMaxWait(opts.FetchMaxWait),
		kgo.FetchMinBytes(int32(min(opts.FetchMinBytes, math.MaxInt32))),
		kgo.FetchMaxPartitionBytes(int32(min(opts.FetchMaxPartitionBytes, math.MaxInt32))),
		kgo.MaxBufferedRecords(1<<20),
		kgo.WithLogger(kgoLogger{opts.Logger}),
	)
	if opts.Registerer != nil {
		kopts = append(kopts, kgo.WithHooks(kprom.NewMetrics(Namespace, kprom.Subsystem("kafka"), kprom.Registerer(opts.Registerer),
			kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Batches, kprom.Records, kprom.UncompressedBytes))))
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("worker: kafka client: %w", err)
	}
	w.cl = cl
	w.adm = kadm.NewClient(cl)
	return w, nil
}

// Ready reports whether the worker has joined its group, Redis answers, and
// no partition is stuck retrying a failed call. It backs /readyz.
func (w *Worker) Ready() bool {
	if w.closed.Load() {
		return false
	}
	_, gen := w.cl.GroupMetadata()
	return gen > 0 && w.redisOK.Load() && w.faulting.Load() == 0
}

// Run consumes until ctx is cancelled, then drains within ShutdownTimeout:
// it stops fetching, lets every partition finish the batch in hand, commits,
// flushes the producer and leaves the group. Run returns nil after a clean
// drain. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error { every(gctx, w.opts.CommitInterval, false, w.commitDone); return nil })
	g.Go(func() error { every(gctx, w.opts.LagInterval, true, w.updateLag); return nil })
	g.Go(func() error { every(gctx, time.Second, true, w.pingRedis); return nil })

	w.pollLoop(ctx)
	err := w.shutdown()
	stopBG()
	_ = g.Wait()
	return err
}

// shutdown drains and leaves the group within ShutdownTimeout.
func (w *Worker) shutdown() error {
	w.log.Info("draining", "timeout", w.opts.ShutdownTimeout)
	timer := time.AfterFunc(w.opts.ShutdownTimeout, func() {
		w.log.Warn("drain overran the shutdown timeout; abandoning batches in hand (they will be re-read)")
		w.abortCancel()
	})
	defer timer.Stop()

	// Close revokes every partition through onRevoked (finish, commit)
	// and leaves the group.
	w.cl.Close()
	w.closed.Store(true)
	w.m.ready.Set(0)
	if w.abort.Err() != nil {
		return errors.New("worker: drain did not finish within the shutdown timeout")
	}
	w.log.Info("drained")
	return nil
}

// pollLoop hands fetched records to the partition goroutines until ctx ends.
func (w *Worker) pollLoop(ctx context.Context) {
	for {
		fetches := w.cl.PollRecords(ctx, w.opts.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			w.cl.AllowRebalance()
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			w.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		w.mu.Lock()
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if fp.Topic != w.opts.Topics.Input {
				return
			}
			if p := w.parts[fp.Partition]; p != nil {
				p.enqueue(fp.Records, fp.HighWatermark)
			}
		})
		w.mu.Unlock()
		w.cl.AllowRebalance()
	}
}

func (w *Worker) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	ps := assigned[w.opts.Topics.Input]
	w.m.rebalances.WithLabelValues("assigned").Inc()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ps {
		if w.parts[id] != nil {
			continue
		}
		p := newPartition(w, id)
		w.parts[id] = p
		go p.run()
	}
	w.owned.Store(int32(len(w.parts)))
	w.m.assigned.Set(float64(len(w.parts)))
	w.log.Info("partitions assigned", "topic", w.opts.Topics.Input, "partitions", ps, "owned", len(w.parts))
}

// onRevoked lets each revoked partition finish the batch in hand, commits
// what is done, and forgets the partition before returning.
func (w *Worker) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	w.m.rebalances.WithLabelValues("revoked").Inc()
	ps := w.detach(revoked[w.opts.Topics.Input])
	if len(ps) == 0 {
		return
	}
	deadline := time.AfterFunc(w.opts.ShutdownTimeout, func() {
		for _, p := range ps {
			p.cancel()
		}
	})
	for _, p := range ps {
		p.stopAndWait()
	}
	deadline.Stop()

	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	offsets := make(map[int32]kgo.EpochOffset, len(ps))
	for _, p := range ps {
		if eo, ok := p.committable(); ok && eo.Offset > p.committed {
			offsets[p.id] = eo
		}
	}
	w.commit(ctx, offsets)
	w.log.Info("partitions revoked", "topic", w.opts.Topics.Input, "partitions", revoked[w.opts.Topics.Input])
}

// onLost abandons the partitions without committing: another member may
// already own them.
func (w *Worker) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	w.m.rebalances.WithLabelValues("lost").Inc()
	ps := w.detach(lost[w.opts.Topics.Input])
	for _, p := range ps {
		p.cancel()
		p.stopAndWait()
	}
	w.log.Warn("partitions lost", "topic", w.opts.Topics.Input, "partitions", lost[w.opts.Topics.Input])
}

// detach removes the partitions from the worker and resumes their fetching
// so a later assignment starts unpaused.
func (w *Worker) detach(ids []int32) []*partition {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ps []*partition
	for _, id := range ids {
		if p := w.parts[id]; p != nil {
			ps = append(ps, p)
			delete(w.parts, id)
			p.clearGauges()
		}
	}
	if len(ids) > 0 {
		w.cl.ResumeFetchPartitions(map[string][]int32{w.opts.Topics.Input: ids})
	}
	w.owned.Store(int32(len(w.parts)))
	w.m.assigned.Set(float64(len(w.parts)))
	return ps
}

// every calls fn each period until ctx ends, and once at the start when now
// is true.
func every(ctx context.Context, period time.Duration, now bool, fn func(context.Context)) {
	if now {
		fn(ctx)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// commitDone commits the done offset of every owned partition that moved.
func (w *Worker) commitDone(ctx context.Context) {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	w.mu.Lock()
	offsets := make(map[int32]kgo.EpochOffset)
	for id, p := range w.parts {
		if eo, ok := p.committable(); ok && eo.Offset > p.committed {
			offsets[id] = eo
		}
	}
	w.mu.Unlock()
	w.commit(ctx, offsets)
}

// commit sends one offset commit; the caller holds commitMu.
func (w *Worker) commit(ctx context.Context, offsets map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 {
		return
	}
	w.m.commitsTotal.Inc()
	req := map[string]map[int32]kgo.EpochOffset{w.opts.Topics.Input: offsets}
	var commitErr error
	w.cl.CommitOffsetsSync(ctx, req, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil && commitErr == nil {
					commitErr = fmt.Errorf("partition %d: %w", p.Partition, perr)
				}
			}
		}
	})
	if commitErr != nil {
		w.m.commitErrors.Inc()
		w.log.Warn("offset commit failed; retrying at the next interval", "err", commitErr)
		return
	}
	w.mu.Lock()
	for id, eo := range offsets {
		if p := w.parts[id]; p != nil {
			p.committed = eo.Offset
		}
	}
	w.mu.Unlock()
	w.log.Debug("committed", "offsets", len(offsets))
}

// pingRedis records whether Redis answers, for /readyz.
func (w *Worker) pingRedis(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	err := w.opts.Redis.Ping(pctx).Err()
	w.m.ObserveRedis("ping", time.Since(start), err)
	w.redisOK.Store(err == nil)
	w.m.ready.Set(boolGauge(w.Ready()))
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
