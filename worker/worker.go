// Package worker is streamworker's runtime: a franz-go consumer group that
// runs one goroutine per assigned partition and, for every batch, decodes,
// dedupes, sequences and processes the events, produces the outputs, persists
// state and dedupe marks atomically in the store, and only then lets the
// partition's commit point move (docs/contract.md, "Delivery guarantees";
// docs/architecture.md draws the stages and the goroutines).
//
// Where things are: worker.go (this file) creates the client and runs the
// poll loop; group.go handles assignments, revokes and offset commits;
// partition.go is a partition's lifecycle and its batch loop, whose stages
// live in decode.go, load.go, sequence.go, produce.go and persist.go;
// emit.go queues outputs; progress.go moves the commit point; retry.go is
// the one retry policy; lag.go and metrics.go are observability.
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
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

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
	proc  *processors.Processor

	// abort is cancelled when a drain overruns ShutdownTimeout: partition
	// goroutines then give up the batch in hand without committing it.
	abort       context.Context
	abortCancel context.CancelFunc

	mu    sync.Mutex
	parts map[int32]*partition // assigned input partitions

	commitMu sync.Mutex // serializes offset commits with revokes

	owned         atomic.Int32 // len(parts), for readers without mu
	storeOK       atomic.Bool
	pingLogged    time.Time    // when pingStore last logged a failure; owned by its goroutine
	faulting      atomic.Int32 // partitions currently retrying a failed Redis or Kafka call
	kafkaOK       atomic.Int64 // unix nanoseconds of the last answer of a broker (stall.go)
	commitFailing atomic.Int64 // unix nanoseconds since offset commits fail; 0 when they do not
	stallLogged   atomic.Bool
	clientClosed  chan struct{} // closed once the Kafka client has closed
	closed        atomic.Bool
}

// New validates opts and creates a Worker with its Kafka client. It does not
// connect: the client dials lazily when Run starts.
func New(opts Options) (*Worker, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	proc, err := processors.New(opts.Processors)
	if err != nil {
		return nil, fmt.Errorf("worker: processors: %w", err)
	}
	w := &Worker{
		opts:  opts,
		log:   opts.Logger,
		m:     newMetrics(opts.Registerer),
		parts: make(map[int32]*partition),
		store: opts.Store,
		proc:  proc,

		clientClosed: make(chan struct{}),
	}
	w.abort, w.abortCancel = context.WithCancel(context.Background())
	w.kafkaOK.Store(time.Now().UnixNano())
	if w.store == nil {
		w.store = state.NewRedisStore(opts.Redis, dedupe.Keys{Prefix: opts.KeyPrefix}, opts.DedupeTTL,
			state.WithObserver(w.m), state.WithReplicaAcks(opts.MinReplicasAcked, opts.ReplicaAckTimeout))
	}

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
		// Transaction markers come as records (decode skips them), so
		// that the commit point passes them and the aborted records
		// before them: otherwise it stops after the last data record.
		kgo.KeepControlRecords(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(newParkedPartitioner(opts.Topics.Parked)),
		// A short wait for a few KiB: at low rates a fetch gathers a few
		// milliseconds of records (fewer, larger batches cost less CPU per
		// event), and a fetch for partitions with nothing new does not hold
		// back partitions resumed meanwhile for the 5s default.
		kgo.FetchMaxWait(opts.FetchMaxWait),
		kgo.FetchMinBytes(int32(min(opts.FetchMinBytes, math.MaxInt32))),
		kgo.FetchMaxPartitionBytes(int32(min(opts.FetchMaxPartitionBytes, math.MaxInt32))),
		kgo.MaxBufferedRecords(1<<20),
		kgo.ProducerBatchMaxBytes(int32(min(opts.MaxMessageBytes, math.MaxInt32))),
		kgo.WithLogger(kgoLogger{opts.Logger}),
		kgo.WithHooks(kafkaHealth{w}),
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

// Ready reports whether the worker has joined its group, the store answers,
// no partition is stuck retrying a failed call, and no call to Kafka has
// hung, Kafka been silent or offset commits failed for longer than
// StallBound. It backs /readyz.
func (w *Worker) Ready() bool {
	if w.closed.Load() {
		return false
	}
	_, gen := w.cl.GroupMetadata()
	return gen > 0 && w.storeOK.Load() && w.faulting.Load() == 0 && !w.stalled()
}

// Run first refuses to start, with an error naming the topic, when an
// output topic's max.message.bytes is below MaxMessageBytes. It consumes
// until ctx is cancelled, then drains within ShutdownTimeout: it stops
// fetching, lets every partition finish the batch in hand, commits,
// flushes the producer and leaves the group. Run returns nil after a clean
// drain. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.checkTopicLimits(ctx); err != nil {
		w.cl.Close()
		w.closed.Store(true)
		return err
	}
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { every(bg, w.opts.CommitInterval, false, w.commitDone) })
	wg.Go(func() { every(bg, w.opts.LagInterval, true, w.updateLag) })
	wg.Go(func() { every(bg, time.Second, true, w.pingStore) })

	w.pollLoop(ctx)
	err := w.shutdown()
	stopBG()
	wg.Wait()
	return err
}

// closeGrace is how long shutdown waits past ShutdownTimeout for the Kafka
// client to close once the batches in hand were abandoned.
const closeGrace = 2 * time.Second

// shutdown drains and leaves the group within ShutdownTimeout (plus
// closeGrace): a Kafka that does not answer cannot hold it longer.
func (w *Worker) shutdown() error {
	w.log.Info("draining", "timeout", w.opts.ShutdownTimeout)
	timer := time.AfterFunc(w.opts.ShutdownTimeout, func() {
		w.log.Warn("drain overran the shutdown timeout; abandoning batches in hand (they will be re-read)")
		w.abortCancel()
	})
	defer timer.Stop()

	// Close revokes every partition through onRevoked (finish, commit)
	// and leaves the group. Its offset commit and leave request wait on
	// the brokers, for as long as they retry when those do not answer.
	go func() {
		w.cl.Close()
		close(w.clientClosed)
	}()
	giveUp := time.NewTimer(w.opts.ShutdownTimeout + closeGrace)
	defer giveUp.Stop()
	select {
	case <-w.clientClosed:
	case <-giveUp.C:
		w.closed.Store(true)
		w.m.ready.Set(0)
		w.log.Error("could not commit and leave the group within the shutdown timeout (Kafka does not answer); " +
			"stopping without: the group gives the partitions away after kafka.session_timeout, and what was not committed is read again")
		return errors.New("worker: drain did not finish within the shutdown timeout")
	}
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

// pingStore records whether the store answers, for /readyz.
func (w *Worker) pingStore(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := w.store.Ping(pctx)
	was := w.storeOK.Swap(err == nil)
	w.m.ready.Set(boolGauge(w.Ready()))
	now := time.Now()
	switch {
	case err != nil && (was || now.Sub(w.pingLogged) >= pingLogEvery):
		// A wrong password or an unreachable Redis is an error, said at
		// start and every pingLogEvery while it lasts.
		w.pingLogged = now
		w.log.Error("state store does not answer; the worker is not ready", "err", err)
	case err == nil && !was && !w.pingLogged.IsZero():
		w.log.Info("state store answers again")
	}
}

// pingLogEvery is how often a store that keeps failing its ping is logged.
const pingLogEvery = 10 * time.Second

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

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
